"""A run folder's last saved epoch is read one way (``run_folder.saved_epoch``: the manifest of
``checkpoint/``, else of the ``checkpoint.old`` a crashed save leaves), by ``eval``'s message for a
run stopped before its final save and by ``train``'s for an interrupted run; ``eval_config``
runs a ``.py`` config file once."""
import pytest
import torch

from neuralop_mp.cli import _interrupted_message
from neuralop_mp.evaluate import ConfigSource, eval_config
from neuralop_mp.run_folder import find_checkpoint, load_model_and_precision, saved_epoch

from .test_configs import COUNTED_CONFIG, restore_registries  # noqa: F401 (a fixture)


def _training_state(run_dir, folder="checkpoint", epoch=3):
    """A training state holding only its manifest (all that the epoch is read from)."""
    checkpoint = run_dir / folder
    checkpoint.mkdir(parents=True)
    torch.save({"format_version": 2, "epoch": epoch, "files": {}}, checkpoint / "manifest.pt")
    (run_dir / "command.json").write_text('{"config": "darcy", "overrides": []}\n')
    return checkpoint


@pytest.mark.parametrize("folder", ["checkpoint", "checkpoint.old"])
def test_a_run_stopped_before_its_final_save_names_the_epoch_its_manifest_records(tmp_path, folder):
    _training_state(tmp_path, folder)
    assert saved_epoch(tmp_path) == 3
    with pytest.raises(FileNotFoundError) as raised:
        find_checkpoint(tmp_path)
    message = str(raised.value)
    # the folder named is the one that holds the epoch (checkpoint.old when a save crashed)
    assert "stopped before its final save" in message and f"{tmp_path / folder} holds epoch 3, the last saved" in message
    assert f"neuralop-mp train --resume {tmp_path}" in message
    # train's message for an interrupted run reads the same epoch, in the same folder
    assert f"{tmp_path / folder} holds epoch 3, the last saved" in _interrupted_message(tmp_path)
    # the training state itself (the trainer's weights, no metadata) is no model: load_model_and_precision says
    # whose it is, for either folder
    torch.save({}, tmp_path / folder / "model_state_dict.pt")
    with pytest.raises(FileNotFoundError, match=rf"is the training state of the run {tmp_path}, not a model"):
        load_model_and_precision(tmp_path / folder)


def test_an_unreadable_manifest_still_names_the_stopped_run(tmp_path):
    checkpoint = _training_state(tmp_path)
    (checkpoint / "manifest.pt").write_bytes(b"not a torch file")
    assert saved_epoch(tmp_path) is None
    with pytest.raises(FileNotFoundError) as raised:
        find_checkpoint(tmp_path)
    assert "holds an unreadable epoch" in str(raised.value)
    assert "before any epoch was saved" in _interrupted_message(tmp_path)


def test_a_folder_without_training_state_gets_the_plain_error(tmp_path):
    (tmp_path / "results.json").write_text("{}\n")
    assert saved_epoch(tmp_path) is None
    with pytest.raises(FileNotFoundError) as raised:
        find_checkpoint(tmp_path)
    assert str(raised.value) == f"No single model checkpoint in {tmp_path}: expected model_state_dict.pt."


@pytest.mark.parametrize("resolutions", [None, ["16"]], ids=["run-resolutions", "given-resolutions"])
def test_eval_config_runs_a_config_file_once_with_overrides(tmp_path, restore_registries, resolutions):  # noqa: F811
    path = tmp_path / "counted.py"
    path.write_text(COUNTED_CONFIG + "class Wide(DarcyConfig):\n    name: str = 'wide'\n")
    source = ConfigSource(str(path), ["--opt.n_epochs", "2"], True)
    config = eval_config(source, ["--data.data_root", str(tmp_path)], resolutions)
    assert (config.name, config.opt.n_epochs, config.data.data_root) == ("wide", 2, str(tmp_path))
    if resolutions:
        assert config.data.test_resolutions == [16]
    assert path.with_suffix(".runs").read_text().splitlines() == ["run"]
    # an override of the data the model was trained on is still refused
    with pytest.raises(ValueError, match=r"--data\.n_train 3 \(the run's: "):
        eval_config(source, ["--data.n_train", "3"], resolutions)
