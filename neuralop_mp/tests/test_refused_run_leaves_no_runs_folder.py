"""A run refused after its default folder was claimed gave the folder back but left the ``runs/``
folder the claim had created for it, empty, in the current folder (found because the CLI's tests
left one in the repository)."""
import pytest

from neuralop_mp import cli
from neuralop_mp.configs import load_config
from neuralop_mp.run_setup import RunSetupError


def _missing_data_args(tmp_path):
    """A run refused at its data load, after the claim: no file there, and generation off."""
    return ["--data.data_root", str(tmp_path / "nodata"), "--data.generate", "false", "--threads", "1"]


def test_a_refused_train_command_leaves_no_runs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nodata").mkdir()
    assert cli.main(["train", "darcy", *_missing_data_args(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata"]


def test_a_refused_run_training_leaves_no_runs_folder(tmp_path, monkeypatch):
    from neuralop_mp.train_pipeline import run_training

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nodata").mkdir()
    config = load_config("darcy", ["--data.data_root", str(tmp_path / "nodata"), "--data.generate", "false"])
    with pytest.raises(RunSetupError):
        run_training(config, progress=False, threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata"]


def test_a_runs_folder_that_was_there_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nodata").mkdir()
    (tmp_path / "runs").mkdir()
    assert cli.main(["train", "darcy", *_missing_data_args(tmp_path)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata", "runs"] and not any((tmp_path / "runs").iterdir())
