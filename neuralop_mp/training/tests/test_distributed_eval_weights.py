"""Evaluation metrics under data parallelism are means over every rank's samples.

Each rank evaluates its own shard of a test set; its metric is the mean over that shard's
samples. Shards of unequal sizes (3 and 2 of 5 samples) must give the mean over the 5 samples,
as one process evaluating them all does, not the mean of the two ranks' means (which weighed
each of rank 1's samples 1.5 times as much). Two forked gloo ranks, as test_distributed.py.
"""
import contextlib
import datetime
import io
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.training import distributed
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed import _START_METHOD, _free_port
from .tiny import DictDataset, loss, tiny_fno

N_TEST = 5
SHARDS = ([0, 1, 2], [3, 4])  # rank 0's samples, rank 1's


def _test_set():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TEST, 1, 8, 8, generator=gen)
    # targets of another scale per sample: their relative errors differ, so the weighting shows
    y = torch.tanh(x * torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0]).view(-1, 1, 1, 1))
    return x, y


def _loader(indices, batch_size=2):
    x, y = _test_set()
    return torch.utils.data.DataLoader(DictDataset(x[indices], y[indices]), batch_size=batch_size)


def _evaluate_on_rank(rank):
    """Both evaluations of one rank: the trainer's (2 test loaders, one all-reduce counted,
    the verbose "Eval:" line captured) and the helper's own weighting."""
    all_reduces = []
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        all_reduces.append(tensor.numel())
        return real_all_reduce(tensor, *args, **kwargs)

    trainer = MixedPrecisionTrainer(model=distributed.wrap_model(tiny_fno(seed=0), "cpu"), n_epochs=1,
                                    verbose=rank == 0)
    x, y = _test_set()
    padded = torch.utils.data.DataLoader(  # upstream's scripts shard test sets this way: 3 + 3, one repeated
        DictDataset(x, y), batch_size=2,
        sampler=torch.utils.data.DistributedSampler(DictDataset(x, y), shuffle=False))
    printed = io.StringIO()
    dist.all_reduce = counting_all_reduce  # this forked rank's module only
    try:
        with contextlib.redirect_stdout(printed):
            metrics = trainer.evaluate_all(epoch=0, eval_losses={"l2": loss()},
                                           test_loaders={"uneven": _loader(SHARDS[rank]), "padded": padded},
                                           eval_modes={})
    finally:
        dist.all_reduce = real_all_reduce
    helper = distributed.mean_over_ranks(
        {"a": torch.tensor(float(rank)), "b": float(rank), "name": "x"}, counts={"a": 1 + 2 * rank})
    return dict(metrics={k: float(v) for k, v in metrics.items()}, printed=printed.getvalue(),
                all_reduces=all_reduces, helper=helper)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        result = _evaluate_on_rank(rank)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_weights")
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=2, join=True, start_method=_START_METHOD)
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def _one_process(indices):
    """The metric one process computes over ``indices`` (the same weights: tiny_fno(seed=0))."""
    trainer = MixedPrecisionTrainer(model=tiny_fno(seed=0), n_epochs=1)
    return float(trainer.evaluate({"l2": loss()}, _loader(indices), log_prefix="all")["all_l2"])


def test_uneven_shards_give_the_mean_over_all_samples_on_every_rank(ranks):
    """3 + 2 samples: each rank reports one process's mean over the 5 samples (to float32 sums),
    not the mean of the shards' means; one all-reduce holds every loader's metrics and counts."""
    everything = _one_process(list(range(N_TEST)))
    means_of_shards = (_one_process(SHARDS[0]) + _one_process(SHARDS[1])) / 2
    assert abs(means_of_shards - everything) > 1e-2 * everything  # the two readings differ here
    for result in ranks:
        assert result["metrics"]["uneven_l2"] == pytest.approx(everything, rel=1e-6)
        assert result["all_reduces"] == [4]  # 2 metrics and their 2 counts, one collective
    assert ranks[0]["metrics"] == ranks[1]["metrics"]


def test_a_distributed_samplers_padding_counts_its_repeated_sample_twice(ranks):
    """What docs/distributed.md says: a DistributedSampler pads 5 samples to 3 + 3 by repeating
    sample 0; the trainer cannot tell, so the metric is the mean over those 6 samples."""
    padded = _one_process([0, 2, 4, 1, 3, 0])
    assert padded != pytest.approx(_one_process(list(range(N_TEST))), rel=1e-4)
    for result in ranks:
        assert result["metrics"]["padded_l2"] == pytest.approx(padded, rel=1e-6)


def test_the_verbose_eval_line_prints_the_metrics_over_all_ranks(ranks):
    """Rank 0 prints upstream's "Eval:" line once, with the metrics over both ranks (it printed its
    own shard's); rank 1 (verbose off) prints nothing."""
    metrics = ranks[0]["metrics"]
    assert ranks[0]["printed"].count("Eval:") == 1
    assert f"uneven_l2={metrics['uneven_l2']:.4f}" in ranks[0]["printed"]
    assert f"uneven_l2={_one_process(SHARDS[0]):.4f}" not in ranks[0]["printed"]
    assert ranks[1]["printed"] == ""


def test_mean_over_ranks_weighs_each_rank_by_its_count(ranks):
    """``a``: 0 over 1 sample and 1 over 3 -> 3/4; ``b`` without a count: the plain mean; text kept."""
    for result in ranks:
        assert result["helper"] == {"a": 0.75, "b": 0.5, "name": "x"}


def test_one_rank_metrics_are_upstreams_bitwise(tmp_path):
    """On one rank (no group, or a DDP model in a group of one) the metrics are the values
    upstream's evaluation computes, unchanged."""
    from neuralop.training import Trainer

    loaders = {"all": _loader(list(range(N_TEST)))}
    kwargs = dict(epoch=0, eval_losses={"l2": loss()}, test_loaders=loaders, eval_modes={})
    reference = Trainer(model=tiny_fno(seed=0), n_epochs=1).evaluate_all(**kwargs)
    alone = MixedPrecisionTrainer(model=tiny_fno(seed=0), n_epochs=1).evaluate_all(**kwargs)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = MixedPrecisionTrainer(model=distributed.wrap_model(tiny_fno(seed=0), "cpu"),
                                        n_epochs=1).evaluate_all(**kwargs)
    finally:
        dist.destroy_process_group()
    for metrics in (alone, wrapped):
        assert metrics.keys() == reference.keys() == {"all_l2"}
        assert torch.equal(metrics["all_l2"], reference["all_l2"])
