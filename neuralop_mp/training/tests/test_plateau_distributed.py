"""The epoch-end decisions under DDP, on two gloo ranks whose shards differ.

- ReduceLROnPlateau: every rank steps the scheduler with one value, the epoch's loss over
  both ranks, so their learning rates and weights stay equal (stepped with its own shard's
  loss, each rank decayed its learning rate at its own epochs and the weights drifted apart).
- an epoch without a finite loss on one rank: every rank stops with the same error naming
  that rank (before, that rank stopped alone and the others waited in their next collective
  until the process group's timeout).

Both come from one all-reduce per epoch. Each case runs in its own process group with a
short timeout, so a rank left waiting fails the test in seconds instead of hanging it.
"""
import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.training import distributed
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


class OwnLossTrainer(MixedPrecisionTrainer):
    """Records this rank's own finite batch losses per epoch (the history's are over both ranks)."""

    def _guarded_step(self):
        batch = dict(self._batch)
        super()._guarded_step()
        if batch["finite"]:
            self.own_losses.setdefault(self.epoch, []).append(batch["loss"])


def _weights(model):
    return torch.cat([torch.view_as_real(p.detach()).reshape(-1) if p.is_complex() else p.detach().reshape(-1)
                      for p in unwrap(model).parameters()])


def _data(rank, nan_rank=None, nan_inputs=0):
    """This rank's samples; the first ``nan_inputs`` of ``nan_rank`` are NaN.

    Rank 0 learns a smooth map. Rank 1 sees that map on even epochs and, on odd ones, targets
    of small noise, whose relative loss is far higher: by itself rank 1 would decay the
    learning rate at every odd epoch, rank 0 not at epoch 1."""
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(2 * N_PER_RANK, 1, 16, 16, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-1)
    y[N_PER_RANK:] = 0.01 * torch.randn(N_PER_RANK, 1, 16, 16, generator=gen)
    if rank == nan_rank:
        x[:nan_inputs] = float("nan")
    return x, y


def _train(rank, nan_rank, nan_inputs, n_epochs, plateau):
    """Train on this rank's own data (:func:`_data`)."""
    data = DictDataset(*_data(rank, nan_rank, nan_inputs))
    sampler = ParitySampler(N_PER_RANK) if rank == 1 else range(N_PER_RANK)
    train = torch.utils.data.DataLoader(data, batch_size=BATCH, sampler=sampler)
    model = tiny_fno(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    if plateau:
        scheduler = RecordingPlateau(optimizer, factor=0.5, patience=0)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = OwnLossTrainer(model=model, n_epochs=n_epochs, use_distributed=True)
    trainer.own_losses = {}
    error = None
    try:
        # no test loader: the only collectives are the training's own
        trainer.train(train, {}, optimizer, scheduler, training_loss=loss())
    except RuntimeError as err:
        error = str(err)
    return dict(seen=getattr(scheduler, "seen", None), history=trainer.history, weights=_weights(trainer.model),
                error=error, own=trainer.own_losses)


CASES = dict(
    # rank 0's first batch is NaN every epoch
    one_nan_batch=dict(nan_rank=0, nan_inputs=1, n_epochs=4, plateau=True),
    # no finite loss on one rank in epoch 0; a second epoch, so that a rank going on alone
    # waits in that epoch's collectives
    rank0_all_nan=dict(nan_rank=0, nan_inputs=N_PER_RANK, n_epochs=2, plateau=True),
    rank1_all_nan_no_plateau=dict(nan_rank=1, nan_inputs=N_PER_RANK, n_epochs=2, plateau=False),
)


def _worker(rank, port, out_dir, case):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a rank left waiting in a collective fails the test after seconds instead of hanging CI
    # (a tiny model's steps keep the ranks far closer together than that)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=10))
    reductions = []  # the length of each sum_over_ranks all-reduce (the trainer's epoch-end collectives)
    real_sum_over_ranks = distributed.sum_over_ranks

    def counting_sum_over_ranks(values):
        reductions.append(len(values))
        return real_sum_over_ranks(values)

    distributed.sum_over_ranks = counting_sum_over_ranks  # this forked rank's module only
    try:
        result = dict(_train(rank, **CASES[case]), reductions=reductions)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def _run(tmp_path, case):
    """Both ranks' results of ``case`` (each case in its own process group)."""
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path), case), nprocs=2, join=True,
                       start_method=_START_METHOD)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_plateau_scheduler_gets_the_same_loss_on_every_rank_so_learning_rates_and_weights_stay_equal(tmp_path):
    """Every rank steps ReduceLROnPlateau (patience 0) with the finite losses' sum over all
    ranks scaled to all ranks' batches, also when the ranks' numbers of finite batches differ;
    the learning rates and the weights stay equal."""
    # rank 0's first batch is NaN every epoch (the step is skipped on both ranks): it has 1
    # finite batch of 2, rank 1 has 2 of 2
    a, b = _run(tmp_path, "one_nan_batch")
    assert [h["skipped_steps"] for h in a["history"]] == [1] * 4
    def own_err(result, epoch):
        return sum(result["own"][epoch]) / len(result["own"][epoch])

    # at epoch 1 rank 0's own loss falls and rank 1's rises: stepped with them, only rank 1 would decay
    assert own_err(a, 1) < own_err(a, 0)
    assert own_err(b, 1) > 2 * own_err(b, 0)
    assert len(a["seen"]) == 4 and a["seen"] == b["seen"]
    assert [h["train_err"] for h in a["history"]] == [h["train_err"] for h in b["history"]]
    for epoch, value in enumerate(a["seen"]):
        assert [len(a["own"][epoch]), len(b["own"][epoch])] == [1, 2]
        # the finite losses' sum over both ranks, scaled to both ranks' 4 batches; recorded as their mean
        loss_sum = sum(a["own"][epoch]) + sum(b["own"][epoch])
        assert value == pytest.approx(loss_sum * 4 / 3, rel=1e-12)
        assert a["history"][epoch]["train_err"] == pytest.approx(loss_sum / 3, rel=1e-12)
    lrs = [h["lr"] for h in a["history"]]
    assert lrs == [h["lr"] for h in b["history"]]
    assert lrs[1] == lrs[0] / 2  # decayed by the epoch-1 rise, on both ranks
    assert torch.equal(a["weights"], b["weights"])
    # one all-reduce per epoch (5 sums and one slot per rank for the stop decision): the
    # plateau's numbers, the recorded loss's and the stop decision travel together
    assert a["reductions"] == b["reductions"] == [7] * 4


def test_a_rank_without_a_finite_loss_stops_every_rank_with_the_same_error_naming_it(tmp_path):
    """No finite loss on rank 0, all finite on rank 1: both ranks step the plateau scheduler with
    rank 1's losses scaled to both ranks' batches, then both stop with one error naming rank 0,
    in the plateau's all-reduce (no second collective)."""
    a, b = _run(tmp_path, "rank0_all_nan")
    assert a["error"] is not None and a["error"] == b["error"]
    assert "Every training loss of epoch 0 was inf/NaN on rank(s) [0] of 2 (2 batches per rank)" in a["error"]
    assert a["history"] == b["history"] == []  # stopped in epoch 0 on both ranks
    # a NaN loss on rank 0 skipped every step on both ranks: the weights are the initial ones
    assert torch.equal(a["weights"], b["weights"])
    assert torch.equal(a["weights"], _weights(tiny_fno(seed=0)))
    # so rank 1's losses are the initial model's on its epoch-0 samples: their sum, scaled from
    # rank 1's 2 finite batches to both ranks' 4
    model, (x, y) = tiny_fno(seed=0), _data(1)
    with torch.no_grad():
        rank1_sum = sum(float(loss()(model(x[i:i + BATCH]), y[i:i + BATCH])) for i in range(0, N_PER_RANK, BATCH))
    assert len(a["seen"]) == 1 and a["seen"] == b["seen"]
    assert a["seen"][0] == pytest.approx(rank1_sum * 4 / 2, rel=1e-5)
    assert a["reductions"] == b["reductions"] == [7]  # the plateau's all-reduce decided the stop too


def test_without_a_plateau_scheduler_a_rank_without_a_finite_loss_also_stops_every_rank(tmp_path):
    """The same stop with a scheduler that needs no loss (StepLR): one all-reduce at the
    epoch's end decides it; here rank 1 has no finite loss and is the one named."""
    a, b = _run(tmp_path, "rank1_all_nan_no_plateau")
    assert a["error"] is not None and a["error"] == b["error"]
    assert "Every training loss of epoch 0 was inf/NaN on rank(s) [1] of 2 (2 batches per rank)" in a["error"]
    assert "every rank stops" in a["error"]
    assert a["history"] == b["history"] == []
    assert a["reductions"] == b["reductions"] == [7]
    assert torch.equal(a["weights"], b["weights"])
    assert torch.equal(a["weights"], _weights(tiny_fno(seed=0)))
