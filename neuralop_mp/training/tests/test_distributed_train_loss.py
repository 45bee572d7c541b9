"""The training loss recorded under DDP is the quantity one process records, whatever the
number of ranks: it follows the loss's reduction and the batch size of each rank, not the rank count.

``train_loss`` is the batches' losses summed and divided by their samples (upstream's ``avg_loss``),
``train_err`` their mean over the batches, both over every rank's batches. With ``b`` samples per
batch and per-sample losses ``s``: a loss summed over the batch records ``mean(s)`` and
``b * mean(s)``, one averaged over it ``mean(s) / b`` and ``mean(s)``. Two ranks keeping one
process's batch size therefore record its values; two ranks of half its batch (the same global
batch per step, the same training) record twice its ``train_loss`` with a mean loss, as one process
of that half batch would. docs/distributed.md states this.

The runs use a learning rate of 0, so the per-sample losses are the initial model's on every
batch and the records can be checked against a float64 reference; one trained run checks the
global-batch relation on weights that change.
"""
import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from neuralop.losses import LpLoss

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed import _START_METHOD, _free_port
from .tiny import DictDataset, tiny_fno

N_SAMPLES, SIZE, WORLD_SIZE = 16, 16, 2
# (reduction, samples per batch on each rank, learning rate, epochs)
FROZEN = [(reduction, batch, 0.0, 1) for reduction in ("sum", "mean") for batch in (4, 2)]
TRAINED = ("mean", 2, 0.1, 2)  # as one process of batch 4 over the same samples, step for step


def _data():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(N_SAMPLES, 1, SIZE, SIZE, generator=gen)
    return x, torch.tanh(x) + 0.5 * x.roll(1, dims=-1)


def _shard(rank, world_size):
    """Rank ``rank``'s samples: pairs in turn (rank 0: 0, 1, 4, 5, ...), so that with 2 samples per
    batch the ranks' k-th batches together are one process's k-th batch of 4."""
    return [i for i in range(N_SAMPLES) if (i // 2) % world_size == rank] if world_size > 1 else list(range(N_SAMPLES))


def _history(world_size, rank, reduction, batch, lr, n_epochs):
    x, y = _data()
    shard = _shard(rank, world_size)
    loader = torch.utils.data.DataLoader(DictDataset(x[shard], y[shard]), batch_size=batch)
    model = tiny_fno(seed=0)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, use_distributed=world_size > 1)
    trainer.train(loader, {}, torch.optim.SGD(model.parameters(), lr=lr), None,
                  training_loss=LpLoss(d=2, reduction=reduction))
    return [(h["world_size"], h["train_loss"], h["train_err"]) for h in trainer.history]


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a rank left waiting fails the test in seconds instead of hanging it
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=20))
    try:
        result = {case: _history(WORLD_SIZE, rank, *case) for case in FROZEN + [TRAINED]}
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


# upstream's train() warns that it expects a loss summed over the batch: the mean losses here are on purpose
pytestmark = pytest.mark.filterwarnings("ignore:training_loss.reduction='mean':UserWarning")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_loss")
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD_SIZE, join=True,
                       start_method=_START_METHOD)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    assert ranks[0] == ranks[1]  # every rank records the same numbers
    return ranks[0]


def _per_sample_losses():
    """The initial model's relative L2 error of each sample, in float64 (the reference)."""
    x, y = _data()
    with torch.no_grad():
        out = tiny_fno(seed=0)(x).double()
    return torch.stack([LpLoss(d=2, reduction="sum")(out[i:i + 1], y[i:i + 1].double()) for i in range(N_SAMPLES)])


@pytest.mark.parametrize("reduction,batch,lr,n_epochs", FROZEN)
def test_two_ranks_record_the_loss_of_one_process_of_the_same_batch_size(two_ranks, reduction, batch, lr, n_epochs):
    """With a learning rate of 0 every record is a function of the per-sample losses ``s``: a
    summed loss gives ``train_loss == mean(s)``, ``train_err == batch * mean(s)``; a mean loss
    ``mean(s) / batch`` and ``mean(s)``: on 2 ranks as on 1 process of that batch size (rel 1e-6:
    float32 forwards of other batch groupings, summed in other orders; about 3e-8 here). Counting one rank's samples
    only would double ``train_loss``; one rank's batches only, ``train_err``."""
    mean_loss = float(_per_sample_losses().mean())
    expected = dict(sum=(mean_loss, batch * mean_loss), mean=(mean_loss / batch, mean_loss))[reduction]
    one = _history(1, 0, reduction, batch, lr, n_epochs)
    for records, world_size in ((one, 1), (two_ranks[(reduction, batch, lr, n_epochs)], WORLD_SIZE)):
        [(recorded_world_size, train_loss, train_err)] = records
        assert recorded_world_size == world_size
        assert train_loss == pytest.approx(expected[0], rel=1e-6)
        assert train_err == pytest.approx(expected[1], rel=1e-6)


def test_at_one_process_global_batch_a_mean_loss_records_world_size_times_its_train_loss(two_ranks):
    """2 ranks of 2 samples per batch train as one process of 4 (a mean loss: DDP's averaged
    gradient is that of the 4 samples' mean), so ``train_err`` agrees to rounding every epoch, and
    ``train_loss``, divided by the ranks' batch of 2 instead of 4, is twice one process's: what one
    process of batch 2 would record, not a count of ranks (rel 1e-6: 2 trained epochs in float32; about
    2e-8 here)."""
    one = _history(1, 0, "mean", 2 * TRAINED[1], *TRAINED[2:])
    two = two_ranks[TRAINED]
    assert len(one) == len(two) == TRAINED[3]
    assert one[1][1] != pytest.approx(one[0][1], rel=1e-3)  # the weights changed
    for (_, one_loss, one_err), (_, two_loss, two_err) in zip(one, two):
        assert two_err == pytest.approx(one_err, rel=1e-6)
        assert two_loss == pytest.approx(WORLD_SIZE * one_loss, rel=1e-6)
