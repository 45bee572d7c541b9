"""The spectral layer's on/off settings and ``init_std``: values upstream's ``SpectralConv`` uses
wrongly or fails on deep inside are refused by name; the ones it means are built as it builds them.

Upstream reads ``separable="False"`` for its truth (True: a separable weight), draws the weight
with an infinite ``init_std`` into NaN without a word, and fails on a negative or NaN one inside
torch or tensorly-torch. Accepted values are compared with upstream's layer built from the same
seed: the same weights and bias, bit for bit (the same draws), and on fresh random inputs the
same output within float32 rounding (1e-5 of the largest entry).
"""
import re

import numpy as np
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.layers.input_checks import check_rank_value
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

ATOL = 1e-5  # of the largest output entry: float32 rounding of the same sums


def _pair(**kwargs):
    """Upstream's layer and ours, each built from seed 0 with ``kwargs`` (upstream's given them as
    the plain values ``_plain`` says)."""
    plain = {key: _plain(value) for key, value in kwargs.items()}
    torch.manual_seed(0)
    upstream = SpectralConv(4, 4, (4, 4), **plain)
    torch.manual_seed(0)
    ours = MixedPrecisionSpectralConv(4, 4, (4, 4), **kwargs)
    return upstream, ours


def _plain(value):
    if isinstance(value, np.bool_) or isinstance(value, int) and value in (0, 1) and not isinstance(value, bool):
        return bool(value)
    if isinstance(value, (np.floating, torch.Tensor)):
        return float(value)
    return value


def _assert_same_layer(upstream, ours):
    for name, param in upstream.named_parameters():
        ours_param = dict(ours.named_parameters())[name]
        assert ours_param.shape == param.shape, name
        assert torch.equal(ours_param.detach(), param.detach()), name
    assert (ours.bias is None) == (upstream.bias is None)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = upstream(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL * expected.abs().max().item())


@pytest.mark.parametrize("key", ["separable", "bias", "complex_data"])
@pytest.mark.parametrize("value", ["False", "True", "no", None, 0.0, 2, -1])
def test_a_flag_that_is_no_bool_is_refused_naming_it(key, value):
    """A string (truthy whatever it says), None, a float or an integer other than 0 and 1: refused
    in the constructor, naming the setting, the value and the allowed ones."""
    with pytest.raises((TypeError, ValueError),
                       match=rf"^Invalid {key}={re.escape(repr(value))}; allowed values: True, False"):
        MixedPrecisionSpectralConv(4, 4, (4, 4), **{key: value})


@pytest.mark.parametrize("kwargs", [
    {"separable": np.True_}, {"separable": 1}, {"separable": np.False_, "bias": np.False_}, {"bias": 0},
    {"separable": True, "bias": False},
])
def test_numpy_bools_and_the_integers_0_and_1_build_upstreams_layer_for_that_bool(kwargs):
    """A numpy bool, or 0 / 1 (upstream's own default_config writes ``use_channel_mlp: int = 0``),
    builds what upstream builds for the bool: the same parameters and output."""
    upstream, ours = _pair(**kwargs)
    assert ours.separable is bool(_plain(kwargs.get("separable", False)))
    _assert_same_layer(upstream, ours)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -1.0, -1e-9, "foo", "0.5", "Auto",
                                   True, None, [0.5]])
def test_an_init_std_that_is_no_finite_number_of_at_least_zero_nor_auto_is_refused(value):
    """NaN, an infinity (upstream: NaN weights, silently), a negative number (upstream: torch's or
    tensorly-torch's error inside), a string other than "auto", a bool, None or a list: refused in
    the constructor with a ValueError naming ``init_std``, the value and what is allowed."""
    expected = rf"^Invalid init_std={re.escape(repr(value))}; allowed values: 'auto' .*finite number >= 0"
    with pytest.raises(ValueError, match=expected):
        MixedPrecisionSpectralConv(4, 4, (4, 4), init_std=value)


@pytest.mark.parametrize("value", ["auto", 0.0, 0, 0.5, 2, np.float32(0.25), torch.tensor(0.25)])
@pytest.mark.parametrize("factorization", [None, "tucker", "cp"])
def test_an_init_std_upstream_means_builds_upstreams_weights(value, factorization):
    """"auto", 0 (zero weights and bias) and positive numbers (numpy's and 0-d tensors' as the
    float they hold) draw the weights upstream draws: the same parameters and output."""
    upstream, ours = _pair(init_std=value, factorization=factorization)
    _assert_same_layer(upstream, ours)
    if _plain(value) == 0:  # the whole weight (a CP weight's factors are zero, its weights vector is not)
        assert not ours.weight.to_tensor().detach().any() and not ours.bias.detach().any()


@pytest.mark.parametrize("rank", [0, 0.0, -1, -0.5, float("nan"), True, None, (2, 0, 2, 2)])
def test_the_shape_free_rank_check_refuses_ranks_of_no_kind_tensorly_means(rank):
    """``check_rank_value``, which ``get_model`` runs before upstream's own layer is built: 0 (a
    divide by zero in tensorly-torch), negative, NaN, a bool, None, a tuple with a 0."""
    with pytest.raises(ValueError,
                       match=rf"^Invalid model\.rank={re.escape(repr(rank))}; allowed values: a fraction in \(0, 1\]"):
        check_rank_value(rank, "tucker", key="model.rank")


def test_the_shape_free_rank_check_refuses_a_fraction_above_one_and_keeps_the_others():
    """A float above 1 is more parameters than the dense weight (as the layer refuses it); the kinds
    tensorly-torch means pass, numpy numbers as the Python number they hold."""
    with pytest.raises(ValueError, match=r"^Invalid rank=1\.5 with factorization='cp': a float rank is the fraction"):
        check_rank_value(1.5, "cp")
    with pytest.raises(ValueError, match=r"^Invalid rank='half' with factorization='cp'; allowed values: 'same'"):
        check_rank_value("half", "cp")
    kept = [check_rank_value(r, "tucker") for r in ("same", 0.1, 1.0, 3, np.int64(3), np.float32(0.5), (2, 2, 3, 3))]
    assert kept == ["same", 0.1, 1.0, 3, 3, 0.5, (2, 2, 3, 3)]
    assert type(kept[4]) is int and type(kept[5]) is float
