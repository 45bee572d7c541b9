"""``neuralop_mp.load_model`` names a damaged checkpoint file, as the run folder's loader does:
torch's own errors (``OSError: [Errno 22]``, ``EOFError``, ``UnpicklingError``, a zip reader's
``RuntimeError``) name none."""
import pytest
import torch
from zencfg.bunch import Bunch

import neuralop_mp
from neuralop_mp.training.checkpointing import CheckpointError

from .test_registry import SMALL

DAMAGE = {"truncated": lambda raw: raw[: len(raw) // 2], "empty": lambda raw: b"", "garbage": lambda raw: b"\0junk" * 9}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    neuralop_mp.get_model(Bunch({"model": SMALL["fno"]})).save_checkpoint(folder, "model")
    return folder


def _copy(saved, tmp_path):
    for file in saved.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    return tmp_path


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["model_state_dict.pt", "model_metadata.pkl"])
def test_a_damaged_checkpoint_file_is_named(saved, tmp_path, name, damage):
    folder = _copy(saved, tmp_path)
    path = folder / name
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(CheckpointError) as raised:
        neuralop_mp.load_model(folder, "model")
    assert str(raised.value).startswith(f"Cannot load the model from {folder}: {path} is not a readable torch "
                                        "file"), str(raised.value)


@pytest.mark.parametrize("name", ["model_state_dict.pt", "model_metadata.pkl"])
def test_a_missing_checkpoint_file_is_still_a_file_not_found_error_naming_it(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        neuralop_mp.load_model(folder, "model")


def test_the_undamaged_checkpoint_loads_its_weights(saved):
    weights = torch.load(saved / "model_state_dict.pt", weights_only=False)
    loaded = neuralop_mp.load_model(saved, "model").state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in weights.items() if key != "_metadata")
