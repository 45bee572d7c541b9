"""A schedule phase that gets no epoch: ``neuralop-mp train`` says it in one ``[neuralop-mp] WARNING:``
line on standard error (as every warning of the command, :mod:`neuralop_mp.warning_lines`), not Python's
display with its file, line and source line; the Python API warns (a ``SkippedPhaseWarning``) at the
line that built the trainer."""
import warnings

from neuralop_mp import cli
from neuralop_mp.training.schedule import SkippedPhaseWarning
from neuralop_mp.training.tests.tiny import tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data
from .test_warning_lines import PYTHON_DISPLAY, shown_by_python

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
# on 2 epochs "half" ends at floor(0.25 * 2) = 0: it gets no epoch (docs/training.md)
SCHEDULE = "half:0.25,mixed:0.25,full:0.5"
SKIPPED = ("Precision schedule 'half:0.25,mixed:0.25,full:0.5': phase(s) ['half:0.25'] get no epoch in a run of "
           "2 epochs and are skipped.")


def test_train_says_a_phase_without_epochs_in_one_warning_line_of_its_own(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    with shown_by_python():  # as a terminal shows it, pytest's recording set aside
        assert cli.main(["train", "darcy", "--output_dir", str(tmp_path / "run"), "--opt.n_epochs", "2",
                         "--threads", "1", "--opt.precision_schedule", SCHEDULE, *TINY_ARGS]) == 0
    said = capsys.readouterr()
    assert [line for line in said.err.splitlines() if "get no epoch" in line] == [
        f"[neuralop-mp] WARNING: {SKIPPED}"]
    assert "get no epoch" not in said.out and "SkippedPhaseWarning" not in said.err
    assert not PYTHON_DISPLAY.search(said.err)


def test_the_python_api_still_warns_of_a_phase_without_epochs_at_the_line_that_built_the_trainer():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MixedPrecisionTrainer(model=tiny_fno(seed=0), n_epochs=2, precision_schedule=SCHEDULE)
    skipped = [w for w in caught if w.category is SkippedPhaseWarning]
    assert [str(w.message) for w in skipped] == [SKIPPED]
    assert skipped[0].filename == __file__  # was: trainer.py, the package's own line

