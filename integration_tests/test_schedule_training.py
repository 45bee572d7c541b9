"""Darcy flow, end to end: config -> get_model -> MixedPrecisionTrainer with the paper schedule.

Over seeds 0-2, the mean final 16x16 test relative L2 error with the default ("paper")
schedule may be at most ``1 + TOLERANCE`` times the mean of full-precision training with
the same seeds and epochs (one-sided: ending better is fine).

Measured seed spread (this configuration, seeds 0-4, 2026-12-06 at fd795b4, one thread on
this repository's 2-core CPU machine, torch 2.13; ``train_darcy(root, None, seed)`` and
``train_darcy(root, "paper", seed)`` on the ``darcy_root`` data for each seed):
full L2 0.2090, 0.1637, 0.3998, 0.2718, 0.2211; paper 0.2090, 0.1636, 0.3997, 0.2729,
0.2215; per-seed ratio paper/full 0.9998, 0.9994, 0.9999, 1.0042, 1.0016 (mean 1.0010,
std s = 0.0020). The ten 3-seed ratios of means of the five seeds ranged 0.9998-1.0021;
seeds 0-2 give 0.9998.

As in ``test_spectral_layer_training.py``: a mean over 3 seeds has a standard error of
about s / sqrt(3), and the tolerance is 3 of those, sqrt(3) s = 0.0035, rounded up to
the next percent: 1% (about three times that bound, in a unit a reader compares at a glance).
"""
import contextlib
import io
import statistics

import pytest
import torch
from neuralop.losses import H1Loss, LpLoss

import neuralop_mp
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .conftest import DARCY_N_TEST

pytestmark = pytest.mark.slow  # multi-seed training comparisons: the end-to-end tier (pyproject.toml)

N_TRAIN = 120
SEEDS = (0, 1, 2)
TOLERANCE = 0.01  # from the measured seed spread, see the module docstring
N_EPOCHS = 8
MODEL = {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [6, 6],
         "hidden_channels": 16, "n_layers": 3}


def train_darcy(darcy_root, schedule, seed=0):
    with contextlib.redirect_stdout(io.StringIO()):  # upstream's dataset prints while loading
        train_loader, test_loaders, data_processor = neuralop_mp.data.load_darcy(
            data_root=darcy_root, n_train=N_TRAIN, n_tests=(DARCY_N_TEST, DARCY_N_TEST), batch_size=16,
            test_batch_sizes=(50, 50), train_resolution=16, test_resolutions=(16, 32), generate=False,
            progress=False)
    torch.manual_seed(seed)
    model = neuralop_mp.get_model({"model": dict(MODEL), "opt": {"precision_schedule": schedule}})
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=N_EPOCHS)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=N_EPOCHS, data_processor=data_processor,
                                    precision_schedule=schedule)
    l2, h1 = LpLoss(d=2, reduction="sum"), H1Loss(d=2, reduction="sum")
    torch.manual_seed(100 + seed)  # same shuffling in both runs of a seed
    metrics = trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=h1,
                            eval_losses={"l2": l2, "h1": h1})
    return {k: float(v) for k, v in metrics.items() if k.startswith(("16_", "32_"))}, trainer


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_paper_schedule_ends_within_tolerance_of_full_precision(darcy_root):
    full, scheduled = [], []
    for seed in SEEDS:
        full.append(train_darcy(darcy_root, None, seed)[0]["16_l2"])
        metrics, trainer = train_darcy(darcy_root, "paper", seed)
        scheduled.append(metrics["16_l2"])

        # the schedule really ran: half -> mixed -> full, layers switched, nothing skipped
        assert [h["precision"] for h in trainer.history] == ["half"] * 2 + ["mixed"] * 4 + ["full"] * 2
        assert [h["autocast"] for h in trainer.history] == [True] * 6 + [False] * 2
        assert sum(h["skipped_steps"] for h in trainer.history) == 0
        assert neuralop_mp.get_precision(trainer.model)[0] == "full"

    mean_full, mean_scheduled = statistics.mean(full), statistics.mean(scheduled)
    assert mean_full < 0.3  # it learned something, so the comparison means something
    assert mean_scheduled <= (1 + TOLERANCE) * mean_full, (scheduled, full)
