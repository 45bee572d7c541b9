"""An int or tuple Tucker rank above a weight's mode sizes is clipped to them, and the weight,
no longer smaller compressed, keeps plain AdamW moments: the constructor says so once per
group, naming the rank and the shapes; ``create_optimizer`` does not say it again."""
import warnings

import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.factory import create_optimizer
from neuralop_mp.optim.tests.helpers import random_tensor


def _weights():
    shapes = [(8, 8, 4, 3), (8, 8, 4, 3), (10, 6, 5, 2), (16,)]
    return [torch.nn.Parameter(random_tensor(s, len(s) > 1, seed=i)) for i, s in enumerate(shapes)]


def _said(build):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = build()
    return [str(w.message) for w in said], result


@pytest.mark.parametrize("rank", [10**6, (100, 8, 9, 9)])
def test_a_rank_above_the_mode_sizes_is_named_once_per_group(rank):
    params = _weights()
    lines, opt = _said(lambda: TensorGRaD([{"params": params[:1]}, {"params": params[1:]}], rank=rank,
                                          sparse_ratio=None, min_params=10))
    assert lines == [
        f"TensorGRaD: rank={rank!r} of param group {i} is above a mode size of its parameters of shape "
        f"{shapes}: clipped to the mode sizes, their compressed state would not be smaller than AdamW "
        "moments, so they keep plain AdamW moments. A rank below the mode sizes compresses them."
        for i, shapes in [(0, "(8, 8, 4, 3)"), (1, "(8, 8, 4, 3), (10, 6, 5, 2)")]]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert not any(bool(opt.state[p]["compressed"]) for p in params)  # what the warning says


@pytest.mark.parametrize("settings", [
    dict(rank=(20, 2, 2, 2)),  # mode 0 clipped, the others compress: no plain weight
    dict(rank=1.0),  # a fraction: full rank asked for
    dict(rank=10**6, compress=False),
    dict(rank=10**6, min_params=10**4),  # too small to compress anyway
])
def test_no_warning_where_the_clipping_leaves_no_weight_plain(settings):
    params = _weights()
    lines, _ = _said(lambda: TensorGRaD(params, **{"min_params": 10, "sparse_ratio": None, **settings}))
    assert lines == []


def test_create_optimizer_says_it_once():
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
    lines, _ = _said(lambda: create_optimizer(model, {"optimizer": "tensorgrad", "tensorgrad_min_params": 768,
                                                      "tensorgrad_rank": 10**6}))
    assert len(lines) == 1 and lines[0].startswith("TensorGRaD: rank=1000000 of param group 1 is above"), lines
