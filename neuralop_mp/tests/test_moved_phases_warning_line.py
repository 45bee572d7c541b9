"""``train --resume`` whose schedule's phase boundaries move: one ``[neuralop-mp] WARNING:`` line on
standard error (as every warning of the command, :mod:`neuralop_mp.warning_lines`), not Python's display
with its file, line and source line; the Python API warns at the caller's line."""
from neuralop_mp import cli
from neuralop_mp.training.tests import tiny
from neuralop_mp.training.tests.tiny import crash_then_resume

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data
from .test_warning_lines import PYTHON_DISPLAY, shown_by_python

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
MOVED = "the phase boundaries move"


def test_train_resume_says_moved_phase_boundaries_in_one_warning_line_of_its_own(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "2", "--threads", "1",
                     "--opt.precision_schedule", "half:0.5,full:0.5", *TINY_ARGS]) == 0
    capsys.readouterr()
    with shown_by_python():  # as a terminal shows it, pytest's recording set aside
        # 8 epochs: "half" runs epochs 0-3, so epochs 2 and 3, "full" in the saved run, move to "half"
        assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "8"]) == 0
    said = capsys.readouterr()
    lines = [line for line in said.err.splitlines() if MOVED in line]
    assert lines == ["[neuralop-mp] WARNING: Resuming a run saved with (schedule, n_epochs)=('half:0.5,full:0.5', 2) "
                     "as ('half:0.5,full:0.5', 8): the phase boundaries move (epoch 2 changes phase)."]
    assert MOVED not in said.out and "UserWarning" not in said.err
    assert not PYTHON_DISPLAY.search(said.err)


def test_the_python_api_still_warns_of_moved_phase_boundaries_at_the_callers_line(tmp_path):
    caught = crash_then_resume(tmp_path, ("half:0.5,full", 4), ("half:0.5,full", 8), crash_at=2)
    moved = [w for w in caught if MOVED in str(w.message)]
    assert len(moved) == 1 and moved[0].category is UserWarning
    assert moved[0].filename == tiny.__file__  # the line that called train(); was: trainer.py, the package's own
