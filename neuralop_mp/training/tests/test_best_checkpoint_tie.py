"""With ``save_best``, an epoch whose metric ties the best earlier one does not replace the best
checkpoint (strictly lower only, as upstream's loop), the epochs before a resume included."""
from .test_resume_and_step_edges import _best_run, _checkpoint_epoch


def _run(save_dir, n_epochs, crash_at=None, resume=False):
    """lr=0: the weights never move, so every epoch's test metric ties the first's."""
    return _best_run(save_dir, crash_at=crash_at, resume=resume, n_epochs=n_epochs, lr=0.0)


def test_a_tie_after_a_resume_does_not_replace_the_best_checkpoint(tmp_path):
    first = _run(tmp_path, 3, crash_at=2)  # epochs 0 and 1, then killed
    assert [entry["epoch"] for entry in first.history] == [0, 1]
    assert first.history[0]["8_l2"] == first.history[1]["8_l2"]  # the premise: a tie
    assert _checkpoint_epoch(tmp_path) == 0
    # the resumed call's own best starts at inf: its first epoch (a tie) must not be saved
    resumed = _run(tmp_path, 3, resume=True)
    assert resumed.history[-1]["epoch"] == 2 and resumed.history[-1]["8_l2"] == first.history[0]["8_l2"]
    assert _checkpoint_epoch(tmp_path) == 0
