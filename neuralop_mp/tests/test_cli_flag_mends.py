"""Options of ``train`` and ``eval`` that were ignored, dangerous or misread: ``--resume DIR`` with
another ``--output_dir`` or ``--name`` (DIR was trained on and replaced; the folder given never
made), a ``--name`` that is no folder name, a ``--threads`` count above the CPUs, and ``eval``
without its checkpoint. Each is refused (or said) before any data loads. Small real runs on four
random 8x8 samples (a second each)."""
import json

import pytest

from neuralop_mp import cli
from neuralop_mp import run_setup
from neuralop_mp import train_pipeline as pipeline

from .test_eval_and_best import TINY_ARGS, train_tiny_run
from .test_train_pipeline import _four_random_samples_as_data


class WorkStarted(AssertionError):
    """The data were asked for where the command should have been refused first."""


def _no_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise WorkStarted("the data load started")

    monkeypatch.setattr(pipeline, "build_data", refuse)


def _error_line(capsys, command="train"):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.startswith(f"neuralop-mp {command}: error:")]
    return line


@pytest.fixture
def finished_run(monkeypatch, tmp_path, capsys):
    """A finished one-epoch run folder of `neuralop-mp train`, and the bytes of its results.json."""
    out = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)
    return out, (out / "results.json").read_bytes()


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_a_resume_into_another_output_dir_is_refused_before_any_work(finished_run, monkeypatch, tmp_path, capsys,
                                                                     form):
    """It trained on RUN_DIR, replaced its final model and results, and never made the folder given."""
    out, results = finished_run
    other = tmp_path / "other"
    _no_data(monkeypatch)
    given = ["--output_dir", str(other)] if form == "separate" else [f"--output_dir={other}"]
    assert cli.main(["train", "--resume", str(out), *given, "--opt.n_epochs", "2", "--threads", "1"]) == 2
    line = _error_line(capsys)
    assert line == (f"neuralop-mp train: error: --output_dir {str(other)!r} cannot be given with --resume {out}: "
                    "a resume trains on in the run's own folder, replacing its final model and results; leave out "
                    f"--output_dir, or, to continue a copy, cp -r {out} {other}, then neuralop-mp train --resume "
                    f"{other}.")
    assert not other.exists()
    assert (out / "results.json").read_bytes() == results


def test_a_resume_with_its_own_folder_as_output_dir_goes_on(finished_run, monkeypatch, capsys):
    """The folder itself, written another way (relative, with a trailing slash), is no other folder."""
    out, _ = finished_run
    monkeypatch.chdir(out.parent)
    assert cli.main(["train", "--resume", str(out), "--output_dir", f"./{out.name}/", "--opt.n_epochs", "2",
                     "--threads", "1"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["opt"]["n_epochs"] == 2


def test_a_resume_with_another_name_is_refused_before_any_work(finished_run, monkeypatch, capsys):
    out, results = finished_run
    _no_data(monkeypatch)
    assert cli.main(["train", "--resume", str(out), "--name", "other", "--threads", "1"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"neuralop-mp train: error: --name 'other' cannot be given with --resume {out} (the run's "
                           "name: 'darcy'): ")
    assert line.endswith(f"to continue a copy, cp -r {out} NEW_DIR, then neuralop-mp train --resume NEW_DIR.")
    assert (out / "results.json").read_bytes() == results


@pytest.mark.parametrize("name", ["../../escape", "a/b", "", "  "])
def test_a_name_that_is_no_folder_name_is_refused_before_any_work(monkeypatch, tmp_path, capsys, name):
    """``../../escape`` wrote the run outside runs/, "" made runs/-<timestamp>."""
    monkeypatch.chdir(tmp_path)
    _no_data(monkeypatch)
    assert cli.main(["train", "--name", name, "--threads", "1", *TINY_ARGS]) == 2
    assert _error_line(capsys) == (
        f"neuralop-mp train: error: Invalid name {name!r}; allowed values: one folder name, not empty and without "
        "'/', as it names the default run folder runs/<name>-<timestamp> (--output_dir DIR chooses any folder).")
    assert list(tmp_path.iterdir()) == []


def test_a_name_with_an_output_dir_names_no_folder(monkeypatch, tmp_path, capsys):
    """Where --output_dir names the folder, the name is free text."""
    _four_random_samples_as_data(monkeypatch)
    assert cli.main(["train", "--name", "a/b", "--output_dir", str(tmp_path / "run"), "--threads", "1",
                     *TINY_ARGS]) == 0
    assert (tmp_path / "run" / "results.json").is_file()


def test_a_thread_count_above_the_cpus_is_said_once(monkeypatch, tmp_path, capsys):
    """--threads 1000 ran silently, many times slower than --threads 1 on a 2-CPU machine."""
    monkeypatch.setattr(run_setup, "available_cpus", lambda: 2)
    _no_data(monkeypatch)
    with pytest.raises(WorkStarted):
        cli.main(["train", "--threads", "1000", "--output_dir", str(tmp_path / "run"), *TINY_ARGS])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert warnings == ["[neuralop-mp] WARNING: --threads 1000 is more than the 2 CPU(s) this process may run "
                        "on: torch's threads wait for each other and each step runs slower; --threads auto uses the "
                        "idle ones."]


def test_a_thread_count_within_the_cpus_is_not_warned_of(monkeypatch):
    monkeypatch.setattr(run_setup, "available_cpus", lambda: 4)
    assert run_setup.threads_above_cpus(4) is None
    assert run_setup.threads_above_cpus(5) is not None


def test_ranks_on_a_node_share_its_cpus(monkeypatch):
    monkeypatch.setattr(run_setup, "available_cpus", lambda: 8)
    monkeypatch.setattr(run_setup, "_local_ranks", lambda: 4)
    assert run_setup.threads_above_cpus(2) is None
    assert "on each of this node's 4 ranks (12 in all)" in run_setup.threads_above_cpus(3)


@pytest.mark.parametrize("args", [["--threads", "1"], ["--json=out.json"], ["--res", "16"]])
def test_eval_without_its_checkpoint_says_so(capsys, args):
    """It read the first option as the checkpoint: "No model checkpoint at --threads"."""
    assert cli.main(["eval", *args]) == 2
    option = args[0].partition("=")[0]
    assert _error_line(capsys, "eval") == (
        f"neuralop-mp eval: error: the checkpoint or run folder to evaluate is missing (got the option {option} "
        "first); usage: neuralop-mp eval CHECKPOINT_OR_RUN_DIR [options].")
