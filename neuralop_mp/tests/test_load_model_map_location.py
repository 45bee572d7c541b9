"""``load_model``'s ``map_location`` is checked before the files are read: a value ``torch.load``
cannot use was reported as checkpoint files that "cannot be loaded together"."""
import pytest
import torch

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.run_folder import load_model_and_precision, save_model
from neuralop_mp.training.checkpointing import CheckpointError

KINDS = ("allowed values: None, a device (torch.device, or a name such as 'cpu', 'cuda', 'cuda:0'), a dict of "
         "location names to device names, a callable (storage, location).")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("saved")
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    save_model(model, folder)
    return folder, model


def _loaders(folder, map_location):
    return (lambda: neuralop_mp.load_model(folder, "model", map_location=map_location),
            lambda: load_model_and_precision(folder, map_location=map_location))


@pytest.mark.parametrize("map_location, error, said", [
    ("bogus", ValueError, "Invalid map_location='bogus': 'bogus' is no device name; "),
    (5, TypeError, "Invalid map_location=5 (int); "),
    ({"cuda:0": "bogus"}, ValueError, "Invalid map_location={'cuda:0': 'bogus'}: 'bogus' is no device name; "),
    ({"cuda:0": 0}, TypeError, "Invalid map_location={'cuda:0': 0}: its value 0 is no device name; "),
], ids=["name", "int", "dict-name", "dict-int"])
def test_a_map_location_torch_cannot_use_is_refused_naming_it_not_the_files(saved, map_location, error, said):
    folder, _ = saved
    for load in _loaders(folder, map_location):
        with pytest.raises(error) as raised:
            load()
        assert not isinstance(raised.value, CheckpointError)
        assert str(raised.value) == said + KINDS


def test_a_cuda_device_this_machine_lacks_is_refused_naming_it():
    folder = "never-read"  # refused before any file is looked at
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"^Invalid map_location='cuda:{count}': 'cuda:{count}' is not available on "
                                         rf"this machine \({count} CUDA devices? visible\); load onto 'cpu'"):
        neuralop_mp.load_model(folder, "model", map_location=f"cuda:{count}")


@pytest.mark.parametrize("map_location", [None, "cpu", torch.device("cpu"), {"cpu": "cpu"},
                                          lambda storage, location: storage],
                         ids=["None", "name", "device", "dict", "callable"])
def test_every_kind_torch_load_takes_still_loads_the_saved_weights(saved, map_location):
    folder, model = saved
    expected = {k: v for k, v in model.state_dict().items() if k != "_metadata"}
    for load in _loaders(folder, map_location):
        loaded = load()
        loaded = loaded[0] if isinstance(loaded, tuple) else loaded
        got = {k: v for k, v in loaded.state_dict().items() if k != "_metadata"}
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], v) for k, v in expected.items())


@pytest.mark.parametrize("load", [lambda path, m: neuralop_mp.load_model(path, "model", map_location=m),
                                  lambda path, m: load_model_and_precision(path, map_location=m)],
                         ids=["load_model", "load_model_and_precision"])
def test_a_bad_map_location_is_named_before_the_checkpoint_is_looked_for(tmp_path, load):
    """Checked first, as said: a missing checkpoint beside a bad value names the value, not the files."""
    with pytest.raises(ValueError, match=r"^Invalid map_location='bogus'"):
        load(tmp_path / "nothing here", "bogus")
