"""ReduceLROnPlateau under DDP: two gloo ranks whose shards give different losses step
the scheduler with one value, the epoch's loss over both ranks, so their learning rates
and weights stay equal (stepped with its own shard's loss, each rank decayed its
learning rate at its own epochs and the weights drifted apart)."""
import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.training.checkpointing import unwrap
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed import _START_METHOD, _free_port
from .tiny import DictDataset, loss, tiny_fno

N_PER_RANK, BATCH = 8, 4  # 2 batches per rank and epoch


class RecordingPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """Records the value of every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, metrics, epoch=None):
        self.seen.append(float(metrics))
        super().step(metrics)


class ParitySampler(torch.utils.data.Sampler):
    """The first ``n`` samples on even epochs, the next ``n`` on odd ones (the trainer calls
    ``set_epoch`` as it does on a DistributedSampler)."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        return iter(range(self.n * (self.epoch % 2), self.n * (self.epoch % 2 + 1)))

    def __len__(self):
        return self.n


def _train(rank, nan_inputs, n_epochs):
    """Train on this rank's own data; the first ``nan_inputs`` samples of rank 0 are NaN.

    Rank 0 learns a smooth map. Rank 1 sees that map on even epochs and, on odd ones, targets
    of small noise, whose relative loss is far higher: by itself rank 1 would decay the
    learning rate at every odd epoch, rank 0 not at epoch 1."""
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(2 * N_PER_RANK, 1, 16, 16, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-1)
    y[N_PER_RANK:] = 0.01 * torch.randn(N_PER_RANK, 1, 16, 16, generator=gen)
    if rank == 0:
        x[:nan_inputs] = float("nan")
    data = DictDataset(x, y)
    sampler = ParitySampler(N_PER_RANK) if rank == 1 else range(N_PER_RANK)
    train = torch.utils.data.DataLoader(data, batch_size=BATCH, sampler=sampler)
    model = tiny_fno(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = RecordingPlateau(optimizer, factor=0.5, patience=0)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, use_distributed=True)
    error = None
    try:
        # no test loader: evaluation runs no collective, so a rank that stops alone leaves none waiting
        trainer.train(train, {}, optimizer, scheduler, training_loss=loss())
    except RuntimeError as err:
        error = str(err)
    weights = torch.cat([torch.view_as_real(p.detach()).reshape(-1) if p.is_complex() else p.detach().reshape(-1)
                         for p in unwrap(trainer.model).parameters()])
    return dict(seen=scheduler.seen, history=trainer.history, weights=weights, error=error)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a rank left waiting in a collective fails the test after a minute instead of hanging CI
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        result = dict(one_nan_batch=_train(rank, nan_inputs=1, n_epochs=4),
                      rank0_all_nan=_train(rank, nan_inputs=N_PER_RANK, n_epochs=1))
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_plateau_scheduler_gets_the_same_loss_on_every_rank_so_learning_rates_and_weights_stay_equal(tmp_path):
    """Every rank steps ReduceLROnPlateau (patience 0) with the finite losses' sum over all
    ranks scaled to all ranks' batches, also when the ranks' numbers of finite batches differ
    and when one rank has none; the learning rates and the weights stay equal."""
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method=_START_METHOD)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    # rank 0's first batch is NaN every epoch (the step is skipped on both ranks): it has 1
    # finite batch of 2, rank 1 has 2 of 2
    a, b = r0["one_nan_batch"], r1["one_nan_batch"]
    assert [h["skipped_steps"] for h in a["history"]] == [1] * 4
    # at epoch 1 rank 0's own loss falls and rank 1's rises: stepped with them, only rank 1 would decay
    assert a["history"][1]["train_err"] < a["history"][0]["train_err"]
    assert b["history"][1]["train_err"] > 2 * b["history"][0]["train_err"]
    assert len(a["seen"]) == 4 and a["seen"] == b["seen"]
    for epoch, value in enumerate(a["seen"]):
        # the finite losses' sum over both ranks, scaled to both ranks' 4 batches
        loss_sum = a["history"][epoch]["train_err"] * 1 + b["history"][epoch]["train_err"] * 2
        assert value == pytest.approx(loss_sum * 4 / 3, rel=1e-12)
    lrs = [h["lr"] for h in a["history"]]
    assert lrs == [h["lr"] for h in b["history"]]
    assert lrs[1] == lrs[0] / 2  # decayed by the epoch-1 rise, on both ranks
    assert torch.equal(a["weights"], b["weights"])

    # no finite loss on rank 0, all finite on rank 1: both ranks step, with rank 1's losses
    # scaled to both ranks' batches (rank 0 then stops with the every-loss-NaN error)
    a, b = r0["rank0_all_nan"], r1["rank0_all_nan"]
    assert "Every training loss of epoch 0 was inf/NaN" in a["error"] and b["error"] is None
    assert len(a["seen"]) == 1 and a["seen"] == b["seen"]
    assert a["seen"][0] == pytest.approx(b["history"][0]["train_err"] * 2 * 4 / 2, rel=1e-12)
