"""A precision mode beside a precision schedule that does not start in it is warned about, as a
stabilizer beside one is: each phase sets its own mode from the first epoch on, so
``--model.fno_block_precision half --opt.precision_schedule mixed:0.5,full:0.5`` built the model in
"half" and never trained in it, without a word. ``neuralop-mp run``'s ``--mp.precision`` beside
``--mp.schedule``: neuralop_mp/runner/tests/test_run_messages.py."""
import pytest

import neuralop_mp.train_pipeline as pipeline
from neuralop_mp import build_steps
from neuralop_mp.cli import main
from neuralop_mp.configs import load_config
from neuralop_mp.run_setup import RunSetupError

WARNED = ("model.fno_block_precision='half' is not what the run starts in: with "
          "opt.precision_schedule='mixed:0.5,full:0.5' each phase sets its own mode from the first epoch on "
          "(mixed then full), and no phase runs 'half'. To start in 'half', make it the first phase of "
          "opt.precision_schedule; to run 'half' throughout, leave opt.precision_schedule unset; to run the schedule "
          "as written, leave model.fno_block_precision out.")


def test_the_warning_says_what_the_phases_run_and_the_ways_out():
    assert build_steps.precision_schedule_warning("half", "mixed:0.5,full:0.5") == WARNED
    # a mode a later phase runs: no "no phase runs", the start is what is said
    paper = build_steps.precision_schedule_warning("mixed", "paper", precision_key="--mp.precision",
                                                   schedule_key="--mp.schedule")
    assert paper.startswith("--mp.precision='mixed' is not what the run starts in: with "
                            "--mp.schedule='half:0.25,mixed:0.5,full:0.25' each phase sets its own mode from the first "
                            "epoch on (half then mixed then full). To start in 'mixed'")


@pytest.mark.parametrize("precision, schedule", [
    ("mixed", "mixed:0.5,full:0.5"),  # the run starts in the mode the model was built in
    ("half", "half@2/notanh,full"),
    ("auto", "paper"),  # re-decided at each phase's start: its documented use with a schedule
    ("half", None), (None, "paper"), ("null", "paper"), ("half", ""),
])
def test_no_warning_where_the_run_starts_in_the_mode_asked_or_nothing_is_overruled(precision, schedule):
    assert build_steps.precision_schedule_warning(precision, schedule) is None


def _stopped_at_the_data(monkeypatch, capsys, flags):
    """The warnings ``run_training`` gives for ``flags`` on darcy before it loads the data."""
    def stop(*args, **kwargs):
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(pipeline, "build_data", stop)
    config = load_config("darcy", flags)
    with pytest.raises(RunSetupError):
        pipeline.run_training(config, progress=False, write=False)
    out, err = capsys.readouterr()
    assert "WARNING" not in out
    return err


def test_train_warns_on_stderr_once(monkeypatch, capsys):
    err = _stopped_at_the_data(monkeypatch, capsys, ["--model.fno_block_precision", "half",
                                                     "--opt.precision_schedule", "mixed:0.5,full:0.5"])
    assert err.count(f"[neuralop-mp] WARNING: {WARNED}") == 1, err


@pytest.mark.parametrize("flags", [
    ["--opt.precision_schedule", "half:0.5,mixed:0.5"],  # model.fno_block_precision's default, "full": asks nothing
    ["--model.fno_block_precision", "mixed", "--opt.precision_schedule", "mixed:0.5,full:0.5"],
    ["--model.fno_block_precision", "auto", "--opt.precision_schedule", "paper"],
    ["--model.fno_block_precision", "half"],
])
def test_train_does_not_warn_where_nothing_asked_is_overruled(flags, monkeypatch, capsys):
    assert "is not what the run starts in" not in _stopped_at_the_data(monkeypatch, capsys, flags)


def test_the_train_command_prints_it(monkeypatch, capsys, tmp_path):
    def stop(*args, **kwargs):
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(pipeline, "build_data", stop)
    assert main(["train", "darcy", "--model.fno_block_precision", "half", "--opt.precision_schedule",
                 "mixed:0.5,full:0.5", "--opt.n_epochs", "2", "--threads", "1", "--output_dir",
                 str(tmp_path / "run")]) != 0
    assert f"[neuralop-mp] WARNING: {WARNED}" in capsys.readouterr().err
