"""Arguments and inputs of MixedPrecisionSpectralConv that upstream's SpectralConv drops silently
or fails on deep inside: ``resolution_scaling_factor`` as a tuple, numpy number or malformed
value, a numpy integer or string factorization rank, a zero channel count, an empty batch.
Each is either honoured (checked against the float64 reference) or refused in the constructor
by a message naming the argument, the value and the allowed values."""
import re

import numpy as np
import pytest
import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

from .reference import reference_forward, rel_err

pytestmark = pytest.mark.reliability


def _dense_weight(layer):
    return layer.weight.to_tensor().detach()


# ------------------------------------------------------------ resolution_scaling_factor
@pytest.mark.parametrize("factor, sizes", [
    ((0.5, 0.5), (6, 5)),           # a tuple: upstream keeps the input's size (12, 10)
    ((2, 1.5), (24, 15)),
    (np.int64(2), (24, 20)),        # a numpy integer: upstream keeps the input's size
    (np.float32(0.5), (6, 5)),      # not a Python float: upstream keeps the input's size
    ([np.float64(0.5), 2], (6, 20)),
    (torch.tensor(0.5), (6, 5)),
])
def test_a_tuple_or_numpy_scaling_factor_scales_the_output_as_the_list_it_spells(factor, sizes):
    """Upstream's ``validate_scaling_factor`` turns a tuple or a numpy integer into None: the
    layer returned the input's grid where the caller asked for another. Each is now the factor
    per dimension it spells: the output's grid is round(size * factor), and the values are the
    float64 reference's on that grid."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, (4, 4), resolution_scaling_factor=factor)
    x = torch.randn(2, 3, 12, 10)
    y = layer(x)
    assert y.shape == (2, 2, *sizes)
    ref = reference_forward(x, _dense_weight(layer), bias=layer.bias.detach(), out_spatial=list(sizes))[0]
    assert rel_err(y, ref) <= 1e-5  # float32 FFTs and product against float64
    # stored as upstream stores a list: floats, one per spatial dimension
    assert all(type(f) is float for f in layer.resolution_scaling_factor)


ALLOWED_FACTORS = (r"allowed values: None, a finite number > 0 \(the same along every spatial dimension\), or a "
                   r"list or tuple of 2 finite numbers > 0 \(one per spatial dimension\)\.")


@pytest.mark.parametrize("factor", ["2", float("nan"), float("inf"), 0, -1.0, True, [2], [2, 2, 2], [[2, 2]],
                                    [0.5, "2"], (0.5, float("nan")), (1, 0), np.array([2.0, 2.0])],
                         ids=["str", "nan", "inf", "zero", "negative", "bool", "one-of-2", "three-of-2",
                              "per-layer-form", "str-entry", "nan-entry", "zero-entry", "array"])
def test_a_malformed_scaling_factor_is_refused_in_the_constructor_by_name(factor):
    """Upstream (and ours before) took each of these: a string silently as None, NaN, inf and a
    list of another length failing at the first forward (``round()`` of NaN or of a list), a
    factor <= 0 failing there or leaving the size alone (True: 1). Now the constructor refuses it,
    naming the value and what a 2-D layer takes."""
    with pytest.raises(ValueError, match=rf"^Invalid resolution_scaling_factor={re.escape(repr(factor))} for this "
                                         rf"2-D layer; {ALLOWED_FACTORS}$"):
        MixedPrecisionSpectralConv(3, 3, (4, 4), resolution_scaling_factor=factor)


def test_a_1d_layer_takes_a_one_entry_list_and_refuses_two():
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(2, 2, (4,), resolution_scaling_factor=[2])
    x = torch.randn(3, 2, 9)
    y = layer(x)
    ref = reference_forward(x, _dense_weight(layer), bias=layer.bias.detach(), out_spatial=[18])[0]
    assert y.shape == (3, 2, 18) and rel_err(y, ref) <= 1e-5
    with pytest.raises(ValueError, match=r"^Invalid resolution_scaling_factor=\[2, 2\] for this 1-D layer; .*a "
                                         r"list or tuple of 1 finite number > 0 \(one per spatial dimension\)\.$"):
        MixedPrecisionSpectralConv(2, 2, (4,), resolution_scaling_factor=[2, 2])


@pytest.mark.parametrize("factor", [0.5, [1, 0.5], [[1, 1], [0.5, 2]]], ids=["number", "per-layer", "per-layer-dim"])
def test_the_factors_fnoblocks_passes_each_layer_give_upstreams_output(factor):
    """FNOBlocks turns its own ``resolution_scaling_factor`` (a number, one per layer, or one
    list per layer) into one list per layer and passes each layer its entry: every such
    entry is accepted, and the blocks give upstream's output grid and values with the same
    weights (float32 on both sides)."""
    torch.manual_seed(0)
    kwargs = dict(in_channels=3, out_channels=3, n_modes=(4, 4), n_layers=2, resolution_scaling_factor=factor)
    ours = FNOBlocks(conv_module=MixedPrecisionSpectralConv, **kwargs)
    upstream = FNOBlocks(conv_module=SpectralConv, **kwargs)
    upstream.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 16, 12)
    with torch.no_grad():
        for index in range(2):
            expected = upstream(x, index)
            got = ours(x, index)
            assert got.shape == expected.shape and rel_err(got, expected) <= 1e-5
            x = expected


# ------------------------------------------------------------------------------ rank
@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("rank_type", [np.int64, np.int32, torch.tensor])
def test_a_numpy_or_tensor_integer_rank_builds_the_rank_of_that_int(factorization, rank_type):
    """Tucker and TT took a numpy integer rank for a sequence of ranks inside tensorly-torch
    ("'numpy.int64' object is not iterable", "has no len()"); the rank check accepted it. It is
    passed on as the int: the same factor shapes as ``rank=3``, and the float64 reference's
    output."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, (4, 4), factorization=factorization, rank=rank_type(3))
    as_int = MixedPrecisionSpectralConv(3, 2, (4, 4), factorization=factorization, rank=3)
    assert [p.shape for p in layer.parameters()] == [p.shape for p in as_int.parameters()]
    assert layer.rank == 3 and type(layer.rank) is int
    x = torch.randn(2, 3, 10, 9)
    ref = reference_forward(x, _dense_weight(layer), bias=layer.bias.detach())[0]
    assert rel_err(layer(x), ref) <= 1e-5


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("rank_type", [np.float32, np.float64, torch.tensor])
def test_a_numpy_or_tensor_fraction_rank_builds_the_rank_of_that_float(factorization, rank_type):
    """A numpy float32 or 0-d tensor fraction was refused as "Invalid rank=np.float32(0.5); allowed
    values: a fraction in (0, 1]", which it is: it is taken as the float, the factor shapes of
    ``rank=0.5``, the float64 reference's output."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, (4, 4), factorization=factorization, rank=rank_type(0.5))
    as_float = MixedPrecisionSpectralConv(3, 2, (4, 4), factorization=factorization, rank=0.5)
    assert [p.shape for p in layer.parameters()] == [p.shape for p in as_float.parameters()]
    x = torch.randn(2, 3, 10, 9)
    ref = reference_forward(x, _dense_weight(layer), bias=layer.bias.detach())[0]
    assert rel_err(layer(x), ref) <= 1e-5


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("rank", ["0.5", "bogus", "SAME", ""])
def test_a_string_rank_other_than_same_is_refused_naming_the_allowed_forms(factorization, rank):
    """A string rank skipped the rank check and failed in torch.empty ("must be tuple of ints,
    not str"); tensorly-torch knows one string, 'same' (exactly so spelled)."""
    with pytest.raises(ValueError, match=rf"^Invalid rank={re.escape(repr(rank))} with factorization="
                                         rf"'{factorization}'; allowed values: 'same' \(as many parameters as the "
                                         r"dense weight\), a fraction in \(0, 1\]"):
        MixedPrecisionSpectralConv(3, 3, (4, 4), factorization=factorization, rank=rank)


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_rank_same_still_builds_upstreams_weight(factorization):
    torch.manual_seed(0)
    ours = MixedPrecisionSpectralConv(3, 3, (4, 4), factorization=factorization, rank="same")
    upstream = SpectralConv(3, 3, (4, 4), factorization=factorization, rank="same")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in
                                                                   upstream.state_dict().items()}


def test_a_dense_layer_still_ignores_its_rank_as_upstream_does():
    """Without a factorization no rank is used: upstream builds with any; so does ours."""
    layer = MixedPrecisionSpectralConv(3, 3, (4, 4), rank="bogus")
    assert layer(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


# -------------------------------------------------------------------------- channels
@pytest.mark.parametrize("name, args, value", [("in_channels", (0, 3), "0"), ("in_channels", ("4", 3), "'4'"),
                                               ("out_channels", (3, 0), "0")])
def test_a_bad_channel_count_says_it_is_the_spectral_layers(name, args, value):
    """A model's hidden_channels=0 reached the layer's check and read "Invalid in_channels=0",
    as if the model's in_channels were wrong: the message says whose argument it is."""
    with pytest.raises(ValueError, match=rf"^Invalid {name}={value}: the spectral layer's {name} \(in a model, "
                                         r"the width it gives its spectral layers, e\.g\. FNO's hidden_channels\); "
                                         r"allowed values: integers >= 1\.$"):
        MixedPrecisionSpectralConv(*args, (4, 4))


# ----------------------------------------------------------------------- empty batch
@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_an_empty_batch_gives_an_empty_output_and_zero_gradients(mode, complex_data, factorization):
    """An empty batch failed in the FFT (MKL: "Inconsistent configuration parameters"). As
    torch's convolutions do, it now gives an empty output of the shape and dtype a non-empty
    batch gets (resolution_scaling_factor applied), and backward gives zero gradients (a sum
    over no sample), the input's of its own empty shape."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, (4, 4), complex_data=complex_data, factorization=factorization,
                                       fno_block_precision=mode, resolution_scaling_factor=(2, 0.5))
    dtype = torch.complex64 if complex_data else torch.float32
    x = torch.randn(0, 3, 8, 10, dtype=dtype, requires_grad=True)
    y = layer(x)
    full = layer(torch.randn(1, 3, 8, 10, dtype=dtype))
    assert y.shape == (0, 2, 16, 5) and y.dtype == full.dtype and full.shape[1:] == y.shape[1:]
    (y.abs().sum() if complex_data else y.sum()).backward()
    assert x.grad.shape == x.shape
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and g.shape == p.shape and not g.any() for g, p in zip(grads, layer.parameters()))


def test_an_empty_batch_with_output_shape_and_no_bias():
    layer = MixedPrecisionSpectralConv(2, 3, (4,), bias=False)
    y = layer(torch.randn(0, 2, 12), output_shape=(7,))
    assert y.shape == (0, 3, 7) and y.dtype == torch.float32
    # a non-empty batch after it runs as before (nothing kept from the empty one)
    torch.manual_seed(1)
    x = torch.randn(2, 2, 12)
    ref = reference_forward(x, _dense_weight(layer), out_spatial=[7])[0]
    assert rel_err(layer(x, output_shape=(7,)), ref) <= 1e-5
