"""A rank or sparse ratio the user chose that leaves a weight's compressed state no smaller than
AdamW's moments gives it plain AdamW moments: the constructor says so once per group, naming the
settings, the shapes and both sizes (it was silent). The defaults' own routing, a part that keeps
the whole weight (AdamW itself) and a rank above the mode sizes (its own warning) are not named;
``create_optimizer`` does not say it again."""
import warnings

import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.factory import create_optimizer
from neuralop_mp.optim.state_memory import compressed_state_bytes, plain_state_bytes
from neuralop_mp.optim.tests.helpers import random_tensor

SHAPE = (4, 5, 60)


def _weights(n=2, complex_=False):
    return [torch.nn.Parameter(random_tensor(SHAPE, complex_, seed=i, dtype=torch.float32)) for i in range(n)]


def _said(build):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = build()
    return [str(w.message) for w in said], result


def _sizes(opt, index, dtype):
    group = opt.param_groups[index]
    return (compressed_state_bytes(SHAPE, dtype, group, opt.projector_for(group)),
            plain_state_bytes(SHAPE, dtype, group["adam_convention"]))


@pytest.mark.parametrize("settings, named", [
    (dict(rank=(2, 2, 40)), "rank=(2, 2, 40)"),
    (dict(sparse_ratio=0.6), "sparse_ratio=0.6"),
    (dict(rank=0.9, sparse_ratio=0.2), "rank=0.9, sparse_ratio=0.2"),
])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_chosen_settings_that_keep_weights_plain_are_named_once_per_group(settings, named, complex_):
    params = _weights(3, complex_)
    lines, opt = _said(lambda: TensorGRaD([{"params": params[:1]}, {"params": params[1:]}], min_params=0, **settings))
    dtype = torch.complex64 if complex_ else torch.float32
    expected = []
    for index in (0, 1):
        compressed, adamw = _sizes(opt, index, dtype)
        assert compressed >= adamw
        expected.append(
            f"TensorGRaD: {named} of param group {index} leaves its parameters of shape {SHAPE} with plain AdamW "
            "moments: their compressed state (moments, Tucker factors, sparse indices) would be no smaller than "
            f"AdamW's moments ({SHAPE} {str(dtype)[6:]}: {compressed:,} bytes against {adamw:,}). A lower rank "
            "or sparse_ratio compresses them.")
    assert lines == expected
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert not any(bool(opt.state[p]["compressed"]) for p in params)  # what the warning says


def test_a_group_added_later_and_an_upstream_style_group_are_named_too():
    first, second = _weights()
    opt = TensorGRaD([first], min_params=0)
    lines, _ = _said(lambda: opt.add_param_group({"params": [second], "rank": (2, 2, 40)}))
    assert len(lines) == 1 and lines[0].startswith("TensorGRaD: rank=(2, 2, 40) of param group 1 leaves"), lines
    lines, _ = _said(lambda: TensorGRaD([{"params": [first], "tensorgrad": True, "rank": (2, 2, 40)}]))
    assert len(lines) == 1 and lines[0].startswith("TensorGRaD: rank=(2, 2, 40) of param group 0 leaves"), lines


@pytest.mark.parametrize("settings", [
    dict(),  # the defaults keep this weight plain too: their routing, documented, not the user's choice
    dict(rank=0.25, sparse_ratio=0.05),  # the defaults passed by name, as a config passes every field
    dict(rank=(2, 2, 20)),  # compresses
    dict(rank=(2, 2, 40), min_params=10**4),  # too small to be compressed anyway
    dict(rank=(2, 2, 40), compress=False),
    dict(rank=1.0, sparse_ratio=None, scale=1.0),  # every mode at full rank: AdamW itself, as documented
    dict(rank=None, sparse_ratio=1.0),  # every entry: AdamW itself
])
def test_no_warning_for_the_defaults_routing_or_a_part_that_keeps_the_whole_weight(settings):
    lines, opt = _said(lambda: TensorGRaD(_weights(), **{"min_params": 0, **settings}))
    assert lines == []


def test_a_rank_above_the_mode_sizes_gets_its_own_warning_alone():
    lines, _ = _said(lambda: TensorGRaD(_weights(), rank=(5, 6, 61), sparse_ratio=None, min_params=0))
    assert len(lines) == 1 and "is above a mode size" in lines[0], lines


def test_create_optimizer_says_it_once():
    """The factory's own "compresses no weight" warning named the same cause in other words."""
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
    lines, _ = _said(lambda: create_optimizer(model, {"optimizer": "tensorgrad", "tensorgrad_min_params": 768,
                                                      "tensorgrad_sparse_ratio": 0.6}))
    assert len(lines) == 1 and lines[0].startswith("TensorGRaD: sparse_ratio=0.6 of param group 1 leaves"), lines
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_optimizer(model, {"optimizer": "tensorgrad", "tensorgrad_min_params": 768})  # compresses: silent
