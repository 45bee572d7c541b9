"""Bad arguments and inputs of MixedPrecisionSpectralConv: each a clear error before any
work, or a documented handling checked against the float64 reference."""
import re

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

from .reference import finite, reference_forward, rel_err

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("n_modes", [(0, 4), (4, -2), (4, 2.5), ()])
def test_nonpositive_or_fractional_modes_are_refused(n_modes):
    with pytest.raises(ValueError, match=r"Invalid n_modes=.*one integer >= 1 per spatial dimension"):
        MixedPrecisionSpectralConv(4, 4, n_modes)


@pytest.mark.parametrize("name, args", [("in_channels", (0, 4)), ("out_channels", (4, -1))])
def test_nonpositive_channels_are_refused(name, args):
    with pytest.raises(ValueError, match=rf"Invalid {name}=.*integers >= 1"):
        MixedPrecisionSpectralConv(*args, (4, 4))


@pytest.mark.parametrize("factorization, rank, message", [
    ("tucker", 100, r"rank=100 with factorization='tucker' on the spectral weight of shape \(4, 4, 5, 3\) \(dense: "
                    r"240 parameters\): its Tucker factors would hold 100001600 parameters.*a Tucker rank above 5 "
                    r"\(the weight's largest dimension; rank 100 alone builds a core of 100000000\)"),
    ("tucker", 2.0, r"rank=2.0 with factorization='tucker': a float rank is the fraction of the dense "
                    r"weight's 240 parameters"),
    ("cp", 1.5, r"rank=1.5 with factorization='cp'"),
    ("tt", 50, r"rank=50 with factorization='tt' on the spectral weight of shape \(4, 4, 5, 3\) \(dense: 240 "
               r"parameters\): its TT factors would hold 22850 parameters, 95x the dense weight, and a TT rank "
               r"above 15 "),
    ("cp", 300, r"rank=300 with factorization='cp' on the spectral weight of shape \(4, 4, 5, 3\) \(dense: 240 "
                r"parameters\): its CP factors would hold 5100 parameters, 21x the dense weight, and a CP rank "
                r"above 48 \(the product of all the weight's dimensions but the largest"),
    ("CP", 300, r"rank=300 with factorization='CP' .*its CP factors would hold 5100 parameters"),
    ("cp", 0, r"Invalid rank=0"),
    ("tucker", -0.5, r"Invalid rank=-0.5"),
])
def test_oversized_or_nonpositive_factorization_ranks_are_refused(factorization, rank, message):
    with pytest.raises(ValueError, match=message):
        MixedPrecisionSpectralConv(4, 4, (5, 5), factorization=factorization, rank=rank)


def test_factorization_names_map_to_one_kind_for_the_checks_and_the_contraction():
    """The rank check and the contraction read a factorization's kind from the same names:
    tensorly-torch's, any case, with or without its "Complex" prefix."""
    from neuralop_mp.layers.weight_contractions import factorization_kind, weight_kind

    assert [factorization_kind(n) for n in ("CP", "ComplexCP", "tucker", "ComplexTucker", "TT", "complextt",
                                            "Dense", "ComplexDense")] == ["cp", "cp", "tucker", "tucker", "tt",
                                                                          "tt", "dense", "dense"]
    assert factorization_kind("svd") is None
    for name in ("cp", "tucker", "tt"):
        layer = MixedPrecisionSpectralConv(2, 2, (4, 4), factorization=name, rank=0.5, implementation="factorized")
        assert weight_kind(layer.weight, "factorized") == factorization_kind(layer.weight.name) == name


def _upstream_and_ours(**kwargs):
    """Upstream's layer and ours with the same arguments, ours holding upstream's state_dict."""
    up = SpectralConv(**kwargs)
    ours = MixedPrecisionSpectralConv(**kwargs)
    ours.load_state_dict(up.state_dict(), strict=True)
    return up, ours


@pytest.mark.parametrize("implementation", ["reconstructed", "factorized"])
@pytest.mark.parametrize("kwargs", [
    # integer ranks above every dimension of the (4, 4, 4, 3) weight: valid for CP (any tensor of
    # that shape has CP rank <= 48) and TT (the middle bond can use 12)
    dict(in_channels=4, out_channels=4, n_modes=(4, 4), factorization="cp", rank=8),
    dict(in_channels=4, out_channels=4, n_modes=(4, 4), factorization="tt", rank=8),
    # upstream's weight is (2, 2, 16, 16), sized by max_n_modes: Tucker rank 8 is below 16
    dict(in_channels=2, out_channels=2, n_modes=(2, 2), max_n_modes=(16, 16), factorization="tucker", rank=8),
    dict(in_channels=3, out_channels=3, n_modes=(4, 4), separable=True, factorization="cp", rank=20),
    # per-mode ranks, as tensorly-torch takes them
    dict(in_channels=4, out_channels=4, n_modes=(4, 4), factorization="tucker", rank=(2, 2, 3, 3)),
    dict(in_channels=4, out_channels=4, n_modes=(4, 4), factorization="tt", rank=(1, 2, 3, 2, 1)),
])
def test_integer_ranks_upstream_builds_are_accepted_and_load_its_checkpoint(kwargs, implementation):
    """Our layer builds every such rank upstream does, and with upstream's state_dict computes
    upstream's output (float32 rounding: relative L2 1e-5; even grid, real data)."""
    torch.manual_seed(0)
    up, ours = _upstream_and_ours(**kwargs, implementation=implementation)
    assert tuple(ours.weight.shape) == tuple(up.weight.shape)
    x = torch.randn(2, kwargs["in_channels"], 8, 8)
    ref = up(x).double()
    assert ref.abs().max() > 0
    assert rel_err(ours(x), ref) <= 1e-5


@pytest.mark.parametrize("factorization, weight", [
    ("cp", dict(n_modes=(5, 5))),  # (4, 4, 5, 3)
    ("tucker", dict(n_modes=(5, 5))),
    ("tt", dict(n_modes=(5, 5))),
    ("tucker", dict(n_modes=(2, 2), max_n_modes=(16, 16))),  # (4, 4, 16, 16): max_n_modes sizes the weight
    ("tt", dict(n_modes=(4, 6), separable=True)),  # (4, 4, 4)
])
def test_the_largest_allowed_integer_rank_builds_and_the_next_is_refused(factorization, weight):
    """The bound the message states is the bound applied: that rank builds (and runs like
    upstream), one more is refused; every rank up to the factorization's useful rank builds."""
    with pytest.raises(ValueError, match=r"Allowed values: integers <= (\d+) ") as refused:
        MixedPrecisionSpectralConv(4, 4, factorization=factorization, rank=10**4, **weight)
    allowed = int(re.search(r"integers <= (\d+) ", str(refused.value)).group(1))
    useful = int(re.search(rf"every {factorization.upper() if factorization != 'tucker' else 'Tucker'} rank up to "
                           r"(\d+),", str(refused.value)).group(1))
    assert allowed >= useful >= 1
    torch.manual_seed(0)
    up, ours = _upstream_and_ours(in_channels=4, out_channels=4, factorization=factorization, rank=allowed, **weight)
    x = torch.randn(1, 4, 8, 8)
    assert rel_err(ours(x), up(x).double()) <= 1e-5
    with pytest.raises(ValueError, match=rf"Invalid rank={allowed + 1} with factorization='{factorization}'"):
        MixedPrecisionSpectralConv(4, 4, factorization=factorization, rank=allowed + 1, **weight)
    MixedPrecisionSpectralConv(4, 4, factorization=factorization, rank=useful, **weight)


@pytest.mark.parametrize("max_n_modes", [(16,), (4, 0), (4, 2.5)])
def test_malformed_max_n_modes_are_refused(max_n_modes):
    with pytest.raises(ValueError, match=r"Invalid max_n_modes=.*one integer >= 1 per spatial dimension \(2,"):
        MixedPrecisionSpectralConv(4, 4, (4, 4), max_n_modes=max_n_modes, factorization="tucker", rank=2)


@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("output_shape", [(8,), (16,), (8, 8, 8), (8, 0), (8, -2), (8, 2.5), 8])
def test_output_shape_of_the_wrong_length_or_with_bad_sizes_is_refused(output_shape, complex_data):
    """Upstream's inverse FFT refuses a wrong length; ours refuses it, and non-positive or
    fractional sizes, by name before any work (real and complex data)."""
    layer = MixedPrecisionSpectralConv(3, 4, (4, 4), complex_data=complex_data)
    x = torch.randn(2, 3, 8, 8, dtype=torch.complex64 if complex_data else torch.float32)
    with pytest.raises(ValueError, match=rf"Invalid output_shape={re.escape(repr(output_shape))}: this 2-D layer "
                                         r"allows None or a sequence of 2 integer\(s\) >= 1"):
        layer(x, output_shape=output_shape)


def test_output_shape_as_a_list_or_torch_size_matches_upstream():
    torch.manual_seed(0)
    up, ours = _upstream_and_ours(in_channels=3, out_channels=4, n_modes=(4, 4))
    x = torch.randn(2, 3, 8, 8)
    for output_shape in ([12, 10], torch.Size([6, 8])):
        assert rel_err(ours(x, output_shape=output_shape), up(x, output_shape=output_shape).double()) <= 1e-5
    # a 1-D layer takes its one size as an int too, as upstream's does
    up, ours = _upstream_and_ours(in_channels=2, out_channels=2, n_modes=(4,))
    x = torch.randn(1, 2, 12)
    assert ours(x, output_shape=24).shape == up(x, output_shape=24).shape == (1, 2, 24)
    assert rel_err(ours(x, output_shape=24), up(x, output_shape=24).double()) <= 1e-5


def test_output_shape_is_normalised_once_to_the_sizes_the_forward_uses():
    """The check returns the output sizes as a tuple of ints (what the forward uses): numpy and
    tensor integers, a list, a torch.Size, a 1-D layer's single int."""
    import numpy as np

    from neuralop_mp.layers.input_checks import check_input, check_output_shape

    layer = MixedPrecisionSpectralConv(3, 4, (4, 4))
    x = torch.randn(2, 3, 8, 8)
    for given in ([12, np.int64(10)], (torch.tensor(12), 10), torch.Size([12, 10])):
        sizes = check_input(layer, x, given)
        assert sizes == (12, 10) and type(sizes) is tuple and all(type(s) is int for s in sizes)
        assert layer(x, output_shape=given).shape == (2, 4, 12, 10)
    assert check_input(layer, x) is None
    assert check_output_shape(MixedPrecisionSpectralConv(2, 2, (4,)), np.int64(24)) == (24,)


@pytest.mark.parametrize("output_shape", [0, -3, True, 2.0])
def test_a_bad_single_size_of_a_1d_layer_is_named_as_given(output_shape):
    layer = MixedPrecisionSpectralConv(2, 2, (4,))
    with pytest.raises(ValueError, match=rf"Invalid output_shape={re.escape(repr(output_shape))}: this 1-D layer "
                                         r"allows None or a sequence of 1 integer\(s\) >= 1.* \(or one integer\)\."):
        layer(torch.randn(1, 2, 12), output_shape=output_shape)


@pytest.mark.parametrize("complex_data", [False, True])
# a factor <= 0 is refused in the constructor (test_layer_input_refusals.py); a positive one
# rounds a size to 0 only on a small enough input
@pytest.mark.parametrize("factor, spatial, sizes", [(0.1, (4, 4), (0, 0)), ([1, 0.1], (4, 4), (4, 0)),
                                                    (0.1, (4,), (0,)), ((0.1, 1), (4, 4), (0, 4))])
def test_a_resolution_scaling_factor_that_rounds_a_size_below_1_is_refused_by_name(factor, spatial, sizes,
                                                                                   complex_data):
    """A factor that rounds an output axis to no point (0.1 on 4 points) failed deep inside the
    inverse FFT ("Invalid number of data points (0)", MKL's); an output_shape with a 0 is refused
    by name: so is this, naming the factor, the input's size and the output sizes it gives."""
    layer = MixedPrecisionSpectralConv(2, 2, (2,) * len(spatial), complex_data=complex_data,
                                       resolution_scaling_factor=factor)
    x = torch.randn(1, 2, *spatial, dtype=torch.complex64 if complex_data else torch.float32)
    factors = factor if isinstance(factor, (list, tuple)) else [factor] * len(spatial)
    rounded = re.escape(str([float(f) for f in factors]))
    with pytest.raises(ValueError, match=rf"^Invalid resolution_scaling_factor={rounded} for an input of spatial size "
                                         rf"{re.escape(str(tuple(spatial)))}: the output would have "
                                         rf"{re.escape(str(sizes))} points .*>= 1"):
        layer(x)


def test_the_same_resolution_scaling_factor_on_a_larger_grid_matches_float64():
    """0.1 of 40 points is 4: the same layer runs, against the float64 reference on that grid."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(2, 3, (4, 4), resolution_scaling_factor=0.1)
    x = torch.randn(2, 2, 40, 40)
    y = layer(x)
    ref = reference_forward(x, layer.weight.to_tensor().detach(), bias=layer.bias.detach(), out_spatial=[4, 4])[0]
    assert y.shape == (2, 3, 4, 4) and rel_err(y, ref) <= 1e-5


# look-alikes of an integer >= 1 that have __index__ (every tensor has): a float, bool or complex
# tensor, and a one-element tensor that is no scalar
NOT_INTEGERS = [torch.tensor(12.7), torch.tensor(4.0), torch.tensor(True), torch.tensor(4 + 0j), torch.tensor([4])]
NOT_INTEGER_IDS = ["float", "whole-float", "bool", "complex", "1-element-1d"]


def _refused(key, value, allowed, build):
    with pytest.raises(ValueError, match=rf"Invalid {key}={re.escape(repr(value))}[;:] .*{allowed}"):
        build()


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=NOT_INTEGER_IDS)
def test_integer_arguments_refuse_float_bool_and_complex_tensors(bad):
    """Each integer argument, and each entry of an integer tuple, refuses a tensor that is not a
    0-d integer one, by name, value and allowed values: never truncated (12.7 became 12 and
    True 1 before), never a failure deep inside the layer."""
    layer = MixedPrecisionSpectralConv(3, 4, (4, 4))
    _refused("n_modes", (bad, 4), "one integer >= 1 per spatial dimension",
             lambda: MixedPrecisionSpectralConv(3, 4, (bad, 4)))
    _refused("max_n_modes", (bad, 4), "None, or one integer >= 1 per spatial dimension",
             lambda: MixedPrecisionSpectralConv(3, 4, (4, 4), max_n_modes=(bad, 4)))
    _refused("in_channels", bad, r"integers >= 1\.", lambda: MixedPrecisionSpectralConv(bad, 4, (4, 4)))
    _refused("out_channels", bad, r"integers >= 1\.", lambda: MixedPrecisionSpectralConv(3, bad, (4, 4)))
    # a float tensor rank is the float it holds (a fraction, 5cd8f34's numpy ranks): above 1, refused as one
    float_rank = not bad.dtype.is_complex and bad.dtype.is_floating_point and bad.dim() == 0
    for rank in (bad, (bad, 2, 2, 2)):
        if float_rank and rank is bad:
            with pytest.raises(ValueError, match=rf"^Invalid rank={re.escape(repr(bad))} with factorization='tucker': "
                                                 r"a float rank is the fraction .* Allowed values: \(0, 1\], or an "
                                                 r"integer rank\.$"):
                MixedPrecisionSpectralConv(3, 4, (4, 4), factorization="tucker", rank=rank)
            continue
        _refused("rank", rank, r"a fraction in \(0, 1\] of the dense weight's parameters, an integer >= 1",
                 lambda: MixedPrecisionSpectralConv(3, 4, (4, 4), factorization="tucker", rank=rank))
    _refused("output_shape", (bad, 10), r"allows None or a sequence of 2 integer\(s\) >= 1",
             lambda: layer(torch.randn(2, 3, 8, 8), output_shape=(bad, 10)))
    _refused("output_shape", bad, r"\(or one integer\)",
             lambda: MixedPrecisionSpectralConv(2, 2, (4,))(torch.randn(1, 2, 12), output_shape=bad))


def test_integer_arguments_take_python_numpy_and_0d_tensor_integers():
    import numpy as np

    from neuralop_mp.layers.input_checks import check_output_shape

    layer = MixedPrecisionSpectralConv(np.int64(3), torch.tensor(4), (torch.tensor(4), np.int32(4)),
                                       max_n_modes=(np.int64(4), torch.tensor(3, dtype=torch.uint8)),
                                       factorization="tucker", rank=(torch.tensor(2), np.int64(2), 2, 2))
    assert layer(torch.randn(2, 3, 8, 8)).shape == (2, 4, 8, 8)
    assert check_output_shape(layer, (torch.tensor(12, dtype=torch.int32), np.int16(10))) == (12, 10)
    assert MixedPrecisionSpectralConv(3, 4, (4, 4), factorization="cp", rank=torch.tensor(3)).weight.rank == 3


# CP and TT ignore fixed_rank_modes (upstream builds them with an int, a list or True); Tucker keeps
# those modes at full rank and takes a list or True (an int fails in tensorly-torch, for upstream too)
@pytest.mark.parametrize("factorization, fixed_rank_modes", [
    ("cp", 0), ("cp", [0]), ("cp", True), ("tt", 0), ("tt", [0]), ("tt", True), ("tucker", [0]), ("tucker", True)])
def test_fixed_rank_modes_upstream_takes_build_and_load_its_weights(factorization, fixed_rank_modes):
    torch.manual_seed(0)
    up, ours = _upstream_and_ours(in_channels=3, out_channels=3, n_modes=(4, 4), factorization=factorization,
                                  rank=0.5, fixed_rank_modes=fixed_rank_modes)
    x = torch.randn(1, 3, 8, 8)
    assert rel_err(ours(x), up(x).double()) <= 1e-5


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_valid_fractional_ranks_build_fewer_parameters_than_dense(factorization):
    dense = MixedPrecisionSpectralConv(4, 4, (5, 5))
    factorized = MixedPrecisionSpectralConv(4, 4, (5, 5), factorization=factorization, rank=0.5)
    count = lambda layer: sum(p.numel() for p in layer.parameters())  # noqa: E731
    assert count(factorized) < count(dense)
    assert finite(factorized(torch.randn(2, 4, 10, 10)))


def test_complex_input_to_a_real_weight_layer_is_refused():
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4))
    x = torch.randn(1, 2, 8, 8, dtype=torch.complex64)
    with pytest.raises(TypeError, match=r"complex_data=False but got a torch.complex64 input: its imaginary part"):
        layer(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_floating_input_is_refused(dtype):
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4))
    with pytest.raises(TypeError, match=rf"Invalid input dtype {dtype}"):
        layer(torch.ones(1, 2, 8, 8, dtype=dtype))


@pytest.mark.parametrize("shape, message", [
    ((1, 3, 8, 8), r"3 channels, the layer has in_channels=2"),
    ((2, 8, 8), r"this 2-D layer expects \(batch, 2, d, d\)"),
    ((1, 2, 8, 8, 8), r"this 2-D layer expects"),
    ((1, 2, 0, 8), r"every spatial size must be >= 1"),
])
def test_wrong_channels_or_dimensions_are_refused(shape, message):
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4))
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(*shape))


@pytest.mark.parametrize("n_modes, spatial", [((6,), (13,)), ((6, 4), (9, 11)), ((4, 4, 4), (7, 8, 5))])
@pytest.mark.parametrize("mode", ["full", "mixed"])
def test_float64_input_is_computed_in_float32_and_returned_as_float32(n_modes, spatial, mode):
    """Documented handling: the layer's arithmetic is fp32 (or half) whatever the input;
    float64 input gives the float32 answer (tolerance: fp32 rounding 1e-5, bf16 product 2e-2)."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, n_modes, fno_block_precision=mode)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float32
    ref, *_ = reference_forward(x, layer.weight.to_tensor().detach(), bias=layer.bias.detach())
    assert rel_err(y, ref) <= (1e-5 if mode == "full" else 2e-2)


def test_more_modes_than_the_input_has_keeps_the_modes_that_exist():
    """n_modes (12, 12) on a 6x6 input: the centred 6 x-frequencies and the 4 rfft columns
    of the weight are used, as the float64 reference with that sub-weight computes."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 2, (12, 12))
    x = torch.randn(2, 3, 6, 6)
    weight = layer.weight.to_tensor().detach()  # (3, 2, 12, 7)
    ref, *_ = reference_forward(x, weight[:, :, 3:9, :4], bias=layer.bias.detach())
    assert rel_err(layer(x), ref) <= 1e-5


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
def test_non_finite_input_gives_non_finite_output_never_an_exception(bad, mode):
    """Documented handling: no per-forward check (a device sync per layer); the trainer
    skips the step and the data loaders refuse such samples before training."""
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4), fno_block_precision=mode)
    x = torch.randn(1, 2, 8, 8)
    x[0, 1, 2, 3] = bad
    assert not finite(layer(x))


@pytest.mark.parametrize("mode", ["mixed", "half"])
@pytest.mark.parametrize("fft_norm, overflows", [("forward", False), ("backward", True), ("ortho", True)])
def test_1e5_magnitude_input_in_fp16_with_and_without_tanh(mode, fft_norm, overflows):
    """Inputs of magnitude 1e5, fp16 product. With upstream's default ``fft_norm="forward"``
    the spectrum is averaged over the grid and stays inside fp16's 65504 here; "backward"
    and "ortho" sum it, and the product takes it at most 2**FLOAT16_HEADROOM_BITS (256) above
    "forward"'s scale: on these 144 points that is the spectrum as it is, so it overflows
    (non-finite output, which the trainer skips). tanh bounds the input: finite in every case."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(8, 8, (6, 6), fno_block_precision=mode, half_dtype="float16",
                                       init_std=1.0, bias=False, fft_norm=fft_norm)
    x = 1e5 * torch.randn(2, 8, 12, 12)
    assert finite(layer(x)) is not overflows
    layer.stabilizer = "tanh"
    assert finite(layer(x))


def test_1e5_magnitude_input_in_bfloat16_stays_finite_without_tanh():
    """bfloat16 has float32's exponent range (its documented default: no tanh)."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(8, 8, (6, 6), fno_block_precision="mixed", half_dtype="bfloat16",
                                       init_std=1.0, bias=False, fft_norm="backward")
    assert finite(layer(1e5 * torch.randn(2, 8, 12, 12)))


@pytest.mark.parametrize("factorization", [None, "cp", "tucker", "tt"])
@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("n_modes, spatial", [((5,), (11,)), ((4, 3), (9, 7)), ((3, 3, 3), (6, 5, 7))])
def test_every_factorization_and_dimension_matches_the_float64_reference(factorization, separable, n_modes, spatial):
    """1-3D, odd sizes, dense/CP/Tucker/TT, separable: full precision equals the float64
    reference with the reconstructed weight (tolerance 1e-5: fp32 rounding)."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 3, n_modes, factorization=factorization, separable=separable, rank=0.5)
    x = torch.randn(2, 3, *spatial)
    weight = layer.weight.to_tensor().detach()
    ref, *_ = reference_forward(x, weight, separable=separable, bias=layer.bias.detach())
    assert rel_err(layer(x), ref) <= 1e-5
