"""With ``save_best``, an epoch whose metric ties the best earlier one does not replace the best
checkpoint (strictly lower only, as upstream's loop), the epochs before a resume included."""
import warnings
from pathlib import Path

import torch

from .tiny import CrashingTrainer, Interrupted, loss, tiny_data, tiny_fno


def _run(save_dir, n_epochs, crash_at=None, resume=False):
    """lr=0: the weights never move, so every epoch's test metric ties the first's."""
    train, test = tiny_data()
    model = tiny_fno(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100)
    trainer = CrashingTrainer(model=model, n_epochs=n_epochs, precision_schedule="full", verbose=False)
    trainer.crash_at = crash_at
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_best="8_l2",
                          save_dir=save_dir, resume_from_dir=save_dir if resume else None)
        except Interrupted:
            pass
    return trainer


def _checkpoint_epoch(save_dir):
    return torch.load(Path(save_dir) / "manifest.pt", weights_only=True)["epoch"]


def test_a_tie_after_a_resume_does_not_replace_the_best_checkpoint(tmp_path):
    first = _run(tmp_path, 3, crash_at=2)  # epochs 0 and 1, then killed
    assert [entry["epoch"] for entry in first.history] == [0, 1]
    assert first.history[0]["8_l2"] == first.history[1]["8_l2"]  # the premise: a tie
    assert _checkpoint_epoch(tmp_path) == 0
    # the resumed call's own best starts at inf: its first epoch (a tie) must not be saved
    resumed = _run(tmp_path, 3, resume=True)
    assert resumed.history[-1]["epoch"] == 2 and resumed.history[-1]["8_l2"] == first.history[0]["8_l2"]
    assert _checkpoint_epoch(tmp_path) == 0
