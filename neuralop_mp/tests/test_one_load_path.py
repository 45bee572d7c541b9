"""``neuralop_mp.load_model`` and ``run_folder.load_model_and_precision`` load through one path
(``models.checkpoints.load_saved_model``): the same model, the same errors for the same files."""
import pytest
import torch

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.run_folder import FoundCheckpoint, load_model_and_precision, save_model
from neuralop_mp.training.checkpointing import CheckpointError


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    save_model(model, tmp_path)
    return tmp_path, model


def _weights(model):
    return {k: v for k, v in model.state_dict().items() if k != "_metadata"}


def test_both_loaders_give_the_saved_weights(saved):
    folder, model = saved
    for loaded in (neuralop_mp.load_model(folder, "model"), load_model_and_precision(folder)[0]):
        assert type(loaded) is MixedPrecisionFNO
        got = _weights(loaded)
        assert got.keys() == _weights(model).keys()
        assert all(torch.equal(got[k], v) for k, v in _weights(model).items())


def test_missing_weights_are_a_file_not_found_error_naming_them_from_either_loader(saved):
    """A FoundCheckpoint whose weights went since it was found: load_model_and_precision called the
    missing file unreadable (a CheckpointError), load_model a FileNotFoundError."""
    folder, _ = saved
    (folder / "model_state_dict.pt").unlink()
    messages = []
    for load in (lambda: neuralop_mp.load_model(folder, "model"),
                 lambda: load_model_and_precision(FoundCheckpoint(folder, "model"))):
        with pytest.raises(FileNotFoundError) as raised:
            load()
        assert not isinstance(raised.value, CheckpointError)
        messages.append(str(raised.value))
    # as clear as the missing-metadata message: what is missing, and what writes it (was a bare "[Errno 2] ...")
    assert messages[0] == messages[1] == (
        f"No model checkpoint weights at {folder / 'model_state_dict.pt'}: model.save_checkpoint writes them next "
        "to the metadata model_metadata.pkl, which is there, and the model cannot be loaded without them (a save "
        "cut short, or the file moved or removed)."), messages


def test_damaged_weights_are_the_same_checkpoint_error_from_either_loader(saved):
    folder, _ = saved
    path = folder / "model_state_dict.pt"
    path.write_bytes(path.read_bytes()[:100])
    messages = []
    for load in (lambda: neuralop_mp.load_model(folder, "model"), lambda: load_model_and_precision(folder)):
        with pytest.raises(CheckpointError) as raised:
            load()
        messages.append(str(raised.value))
    assert messages[0] == messages[1] == (f"Cannot load the model from {folder}: {path} is not a readable torch file: "
                                          "not a zip archive (truncated or overwritten with other bytes).")
