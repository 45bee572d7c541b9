"""The model metadata that the ``Trainer`` of ``neuralop_mp.enabled()`` / ``neuralop-mp run`` writes
beside its checkpoint's weights stays that of those weights when ``save_best`` skips an epoch.

Tiny model and data (an 8x8 grid, 8 samples); the evaluation metric is a constant per run, so
that the resumed epoch is worse than the saved one whatever the weights."""
import warnings

import neuralop
import neuralop.training
import torch

import neuralop_mp
from neuralop_mp.training.checkpointing import MANIFEST_FILE
from neuralop_mp.training.tests.tiny import loss, tiny_data

# the plugin left disabled after each test, a failing one too (autouse)
from .test_boundary_mends import TINY_CONFIG, _left_disabled  # noqa: F401


class ConstantMetric:
    """An evaluation loss of ``value`` per sample, whatever the model predicts."""

    def __init__(self, value):
        self.value = value

    def __call__(self, out, y=None, **kwargs):
        return out.sum() * 0 + self.value * out.shape[0]


def _train(save_dir, schedule, n_epochs, metric, resume):
    with neuralop_mp.enabled(schedule=schedule):
        model = neuralop.get_model(TINY_CONFIG)
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-2)
        train, test = tiny_data(n=8)
        trainer = neuralop.Trainer(model=model, n_epochs=n_epochs, device="cpu", verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the schedule's phases move at the resume: said, and beside the point
            trainer.train(train, test, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2), training_loss=loss(),
                          eval_losses={"l2": ConstantMetric(metric)}, save_best="8_l2", save_dir=save_dir,
                          resume_from_dir=save_dir if resume else None)
    return trainer


def _recorded_precision(save_dir):
    return torch.load(save_dir / "best_model_metadata.pkl", weights_only=False)["fno_block_precision"]


def test_a_worse_epoch_after_a_resume_leaves_the_metadata_of_the_saved_weights(tmp_path):
    """The override wrote the metadata after every checkpoint() call, also one that skipped the save:
    the best epoch's mixed weights were then described as the resumed run's full-precision model."""
    save_dir = tmp_path / "ckpt"
    _train(save_dir, "mixed", n_epochs=1, metric=1.0, resume=False)
    assert _recorded_precision(save_dir) == "mixed"
    trainer = _train(save_dir, "full", n_epochs=2, metric=2.0, resume=True)
    assert [h["precision"] for h in trainer.history] == ["mixed", "full"]
    assert torch.load(save_dir / MANIFEST_FILE, weights_only=True)["epoch"] == 0  # epoch 1 was worse: not saved
    assert _recorded_precision(save_dir) == "mixed"


def test_a_better_epoch_after_a_resume_records_its_own_precision(tmp_path):
    save_dir = tmp_path / "ckpt"
    _train(save_dir, "mixed", n_epochs=1, metric=2.0, resume=False)
    _train(save_dir, "full", n_epochs=2, metric=1.0, resume=True)
    assert torch.load(save_dir / MANIFEST_FILE, weights_only=True)["epoch"] == 1
    assert _recorded_precision(save_dir) == "full"
