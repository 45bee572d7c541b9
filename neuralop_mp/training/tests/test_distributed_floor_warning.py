"""The loss scale's floor on 2 gloo ranks (CPU, forked): every rank reaches it at the same step
(the skip decisions are all-reduced), and rank 0 alone says so, once, as it alone logs.

Before: :meth:`ComplexGradScaler.update` warned on every rank, so a data-parallel run printed the
"reached its floor" warning once per rank.
"""
import math
import warnings

import pytest
import torch

from neuralop_mp.training.loss_scaling import ComplexGradScaler

from .test_distributed_mends import _run_ranks

FLOOR = "The loss scale reached its floor"


def _two_floor_steps(world_size, rank):
    """Two steps at the floor (``init_scale`` = ``min_scale`` = 1) whose gradient is not finite on
    rank 1 only (rank 0's random data give it finite ones): the all-reduced decision skips both on
    both ranks."""
    gen = torch.Generator().manual_seed(rank)
    weight = torch.nn.Parameter(torch.randn(3, generator=gen))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = ComplexGradScaler(init_scale=1.0, min_scale=1.0, max_floor_hits=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            optimizer.zero_grad()
            x = torch.randn(3, generator=gen)
            if rank == 1:
                x[0] = math.inf
            scaler.scale((weight * x).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
    return dict(floor_hits=scaler.floor_hits, scale=scaler.get_scale(), skipped=scaler.skipped_steps,
                said=[str(w.message) for w in caught if FLOOR in str(w.message)])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return _run_ranks(tmp_path_factory.mktemp("floor"), _two_floor_steps)


def test_every_rank_reaches_the_floor_at_the_same_steps(ranks):
    for result in ranks:
        assert result["skipped"] == 2 and result["floor_hits"] == 2 and result["scale"] == 1.0


def test_the_floor_is_said_once_by_rank_0_alone(ranks):
    (message,) = ranks[0]["said"]  # once: the second step at the floor says nothing new
    assert message.startswith(f"{FLOOR} 1 and a step was still not finite")
    assert ranks[1]["said"] == []  # was: rank 1's own copy
