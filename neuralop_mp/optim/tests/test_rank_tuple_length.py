"""A tuple Tucker rank is one rank per mode: a tuple of another length than a compressed
weight's modes is refused as its group joins, naming the rank, the shape and what is allowed;
whether a rank asks more than a weight's mode sizes is read from the group's own Tucker
projector (``TuckerProjector.asked_ranks``), never from a truncating zip of the tuple."""
import re

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import random_tensor
from neuralop_mp.optim.tucker_projector import TuckerProjector

SHAPE = (8, 8, 4, 3)


def _weight(shape=SHAPE, seed=0):
    return torch.nn.Parameter(random_tensor(shape, complex_=len(shape) > 1, seed=seed))


@pytest.mark.parametrize("rank", [(100, 2), (2, 2, 2), (2, 2, 2, 2, 2)])
def test_a_tuple_of_another_length_is_refused_at_construction_naming_rank_shape_and_what_is_allowed(rank):
    with pytest.raises(ValueError) as raised:
        TensorGRaD([_weight()], rank=rank, sparse_ratio=None, min_params=10)
    message = str(raised.value)
    assert f"rank={rank!r}" in message and f"shape {SHAPE}" in message, message
    assert "a tuple of 4 ints" in message and "an int, or a float fraction" in message, message


def test_a_tuple_of_another_length_is_no_matter_for_a_weight_the_group_does_not_compress():
    bias = _weight((16,), seed=1)  # one long mode: never compressed, so the tuple does not apply to it
    opt = TensorGRaD([bias], rank=(2, 2), sparse_ratio=None, min_params=1)
    bias.grad = random_tensor((16,), complex_=False, seed=2)
    before = bias.detach().clone()
    opt.step()
    assert not opt.state[bias]["compressed"] and not torch.equal(bias.detach(), before)


@pytest.mark.parametrize("rank, above", [
    (9, True),  # above every mode
    (4, True),  # above the last mode only (3)
    (3, False),  # none above its mode (the last mode is 3)
    ((8, 8, 4, 3), False),  # each mode's own size: full, not above
    ((2, 2, 9, 2), True),  # above mode 2 alone
    ((9, 2, 2, 2), True),  # above mode 0 alone
    (0.5, False),  # a fraction never asks more than a mode
])
@pytest.mark.filterwarnings("ignore:TensorGRaD. rank=")  # the warning of rank 9: test_rank_above_modes.py's
def test_rank_above_modes_is_the_projectors_reading_of_the_rank(rank, above):
    weight = _weight()
    group = dict(TensorGRaD([weight], rank=rank, sparse_ratio=None, min_params=10).param_groups[0])
    assert TensorGRaD.asks_rank_above_modes(weight, group) is above
    asked = TuckerProjector(rank).asked_ranks(SHAPE)
    assert above == any(r > d for r, d in zip(asked, SHAPE))
    assert above == (TuckerProjector(rank).unclipped_ranks(SHAPE) != tuple(asked))  # what clipping changes


@pytest.mark.parametrize("check", ["rank_exceeds_modes", "asks_rank_above_modes"])
@pytest.mark.parametrize("rank", [(100, 2), (2, 2, 2, 2, 2)])
def test_a_group_changed_to_a_tuple_of_another_length_is_refused_not_truncated(rank, check):
    """The old reading zipped the tuple with the shape: (2, 2, 2, 2, 2) on four modes read as four
    2s, its fifth rank dropped, and "no rank above the modes" came back without a word. The
    projector's reading refuses it, naming the rank and the shape."""
    weight = _weight()
    group = dict(TensorGRaD([weight], rank=2, sparse_ratio=None, min_params=10).param_groups[0])
    group["rank"] = rank
    with pytest.raises(ValueError, match=re.escape(f"rank={rank!r} for a tensor of shape {SHAPE}")):
        getattr(TensorGRaD, check)(weight, group)
