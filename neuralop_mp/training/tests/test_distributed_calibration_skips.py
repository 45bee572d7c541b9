"""Skipped steps on 2 gloo ranks (CPU, forked): a step skipped because one rank's loss is not
finite is no skip of a loss scale calibrating itself, on any rank, and the epoch's
"skipped K optimizer step(s)" warning is rank 0's alone, the same as one process's would be.

Before: each rank judged calibration by its own loss, so rank 0 (finite losses) took rank 1's
NaN batches for calibration and stayed quiet, while rank 1 warned.
"""
import math
import warnings

import pytest
import torch

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed_mends import _run_ranks
from .tiny import DictDataset, loss, tiny_fno

N_TRAIN, BATCH, SIZE = 32, 4, 8  # 4 batches per rank
NAN_STEPS = (0, 1, 2)  # rank 1's first three batches: 3 of the epoch's 4 steps skipped on both ranks


def _train(world_size, rank):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN, 1, SIZE, SIZE, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-1)
    if rank == 1:  # rank r reads samples 16r ... 16r + 15, in order
        for step in NAN_STEPS:
            x[16 * rank + BATCH * step] = math.nan
    shard = torch.utils.data.Subset(DictDataset(x, y), range(16 * rank, 16 * rank + 16))
    train = torch.utils.data.DataLoader(shard, batch_size=BATCH)
    model = tiny_fno(seed=0)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="bfloat16",
                                    loss_scaling="dynamic", use_distributed=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train(train, {}, torch.optim.SGD(model.parameters(), lr=1e-3), None, training_loss=loss())
    return dict(skipped=trainer.history[0]["skipped_steps"], scale=trainer.scaler.get_scale(),
                calibrating=trainer._epoch_stats["calibration_skips"],
                said=[str(w.message) for w in caught if "optimizer step(s)" in str(w.message)])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return _run_ranks(tmp_path_factory.mktemp("calibration"), _train)


def test_one_ranks_non_finite_losses_are_no_calibration_skips_on_any_rank(ranks):
    for result in ranks:
        assert result["skipped"] == len(NAN_STEPS)
        assert result["scale"] == 2.0 ** 16  # a non-finite loss leaves the scale: nothing calibrated
        assert result["calibrating"] == 0  # was 3 on rank 0, 0 on rank 1


def test_the_mostly_skipped_epoch_is_said_once_by_rank_0(ranks):
    (message,) = ranks[0]["said"]  # was: none (rank 0 counted rank 1's skips as calibration)
    assert message.startswith("Epoch 0: skipped 3 optimizer step(s) of 4 with non-finite loss or gradients")
    assert "most of the epoch's steps did not change the weights. Try: " in message
    assert ranks[1]["said"] == []  # was: rank 1's own copy
