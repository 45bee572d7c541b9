"""A new ``neuralop-mp train`` run refused at its data (or stopped) before its first epoch leaves no
folder it created itself: an ``--output_dir`` that did not exist is removed again with the parents the
run made for it (it held command.json alone). A folder that existed before keeps what it held, the
files the run wrote included, and says, to a ``--resume``, that the same command runs again there; a
run stopped after its first epoch, and a ``--resume``, keep everything. Small real runs on four random
8x8 samples."""
import pytest

from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config

from .test_run_folder_reuse import (_interrupted_after_the_data_load, _refused_at_the_data_load, folder_bytes,
                                    quiet, train)
from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("stop", ["data refused", "ctrl-c"])
def test_a_new_output_folder_and_its_parents_are_removed_when_the_run_stops_before_its_first_epoch(
        tmp_path, monkeypatch, capsys, stop):
    (tmp_path / "mine.txt").write_text("kept")
    out = tmp_path / "new" / "deeper" / "run"
    if stop == "ctrl-c":
        _interrupted_after_the_data_load(monkeypatch)  # command.json and data_processor.pt written by then
    else:
        monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    assert train("--output_dir", str(out)) == (130 if stop == "ctrl-c" else 2)
    err = capsys.readouterr().err
    assert ("no data file x.pt" if stop == "data refused" else "nothing to resume; run the command again") in err
    assert _tree(tmp_path) == ["mine.txt"]


def test_only_the_parents_the_run_made_are_removed(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    assert train("--output_dir", str(tmp_path / "mine" / "a" / "run")) == 2
    assert _tree(tmp_path) == ["mine"]


@pytest.mark.parametrize("name", ["other.txt", "command.json"])
def test_a_parent_that_came_to_hold_something_else_is_kept(tmp_path, monkeypatch, name):
    """The run's folder is removed; its parent, made by the run, is not empty then, and stays with
    what came to be in it: also a file named as one the run writes (command.json: another run's,
    started there meanwhile), which is not this run's to remove."""
    out = tmp_path / "made" / "run"

    def refused_after_a_file_beside(config, progress=True):
        (tmp_path / "made" / name).write_text("someone else's")
        raise FileNotFoundError("no data file x.pt")

    monkeypatch.setattr(pipeline, "build_data", refused_after_a_file_beside)
    assert train("--output_dir", str(out)) == 2
    assert _tree(tmp_path) == ["made", f"made/{name}"]


def test_a_folder_that_existed_keeps_the_runs_files_and_resume_says_to_run_the_command_again(
        tmp_path, monkeypatch, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "mine"
    out.mkdir()
    good = pipeline.build_data
    monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    assert train("--output_dir", str(out)) == 2
    assert _tree(out) == ["command.json"]  # never removed: the user made the folder
    capsys.readouterr()
    assert train("--resume", str(out)) == 2
    err = capsys.readouterr().err
    assert (f"Nothing to resume in {out}: it has no checkpoint/ folder (a run writes one after its first epoch). "
            "The run recorded in its command.json stopped before its first epoch: run its command again without "
            "--resume (a new run may use this folder, which holds no run).") in err, err
    assert _tree(out) == ["command.json"]
    monkeypatch.setattr(pipeline, "build_data", good)
    assert train("--output_dir", str(out)) == 0, capsys.readouterr().err  # as the message says
    assert (out / "results.json").is_file()


def test_resume_of_a_folder_without_a_run_record_says_nothing_of_a_command(tmp_path):
    from neuralop_mp.run_setup import RunSetupError

    out = tmp_path / "empty"
    out.mkdir()
    with pytest.raises(RunSetupError) as refused:
        pipeline.checkpoint_to_resume(out, out / "checkpoint")
    assert str(refused.value) == (f"Nothing to resume in {out}: it has no checkpoint/ folder (a run writes one "
                                  "after its first epoch).")


def test_a_created_folder_is_kept_once_the_run_saved_an_epoch(tmp_path, monkeypatch):
    _four_random_samples_as_data(monkeypatch)
    def fails(*args, **kwargs):
        raise RuntimeError("after training")

    monkeypatch.setattr(pipeline, "evaluate_final", fails)
    out = tmp_path / "new" / "run"
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
    with pytest.raises(RuntimeError, match="after training"):
        pipeline.run_training(config, progress=False, output_dir=out, log=quiet)
    assert (out / "checkpoint").is_dir()


def test_a_resume_refused_at_its_data_keeps_every_file(tmp_path, monkeypatch):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert train("--output_dir", str(out)) == 0
    before = folder_bytes(out)
    monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    assert train("--resume", str(out), "--opt.n_epochs", "2") == 2
    assert folder_bytes(out) == before
