"""Bad arguments and inputs of MixedPrecisionSpectralConv: each a clear error before any
work, or a documented handling checked against the float64 reference."""
import pytest
import torch

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
    ("tucker", 100, r"rank=100 with factorization='tucker': larger than every dimension of the weight "
                    r"\(4, 4, 5, 3\) \(dense: 240 parameters; a Tucker rank of 100 alone builds a core of 100000000\)"),
    ("tucker", 2.0, r"rank=2.0 with factorization='tucker': a float rank is the fraction of the dense "
                    r"weight's 240 parameters"),
    ("cp", 1.5, r"rank=1.5 with factorization='cp'"),
    ("tt", 50, r"rank=50 with factorization='tt'"),
    ("cp", 0, r"Invalid rank=0"),
    ("tucker", -0.5, r"Invalid rank=-0.5"),
])
def test_oversized_or_nonpositive_factorization_ranks_are_refused(factorization, rank, message):
    with pytest.raises(ValueError, match=message):
        MixedPrecisionSpectralConv(4, 4, (5, 5), factorization=factorization, rank=rank)


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
    layer = MixedPrecisionSpectralConv(3, 2, n_modes, fno_block_precision=mode)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float32
    ref, *_ = reference_forward(x, layer.weight.to_tensor().detach(), bias=layer.bias.detach())
    assert rel_err(y, ref) <= (1e-5 if mode == "full" else 2e-2)


def test_more_modes_than_the_input_has_keeps_the_modes_that_exist():
    """n_modes (12, 12) on a 6x6 input: the centred 6 x-frequencies and the 4 rfft columns
    of the weight are used, as the float64 reference with that sub-weight computes."""
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
@pytest.mark.parametrize("fft_norm, overflows", [("forward", False), ("backward", True)])
def test_1e5_magnitude_input_in_fp16_with_and_without_tanh(mode, fft_norm, overflows):
    """Inputs of magnitude 1e5, fp16 product. With upstream's default ``fft_norm="forward"``
    the spectrum is averaged over the grid and stays inside fp16's 65504 here; with
    "backward" it is summed and the product overflows (non-finite output, which the
    trainer skips). tanh bounds the input: finite in every case."""
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
    layer = MixedPrecisionSpectralConv(3, 3, n_modes, factorization=factorization, separable=separable, rank=0.5)
    x = torch.randn(2, 3, *spatial)
    weight = layer.weight.to_tensor().detach()
    ref, *_ = reference_forward(x, weight, separable=separable, bias=layer.bias.detach())
    assert rel_err(layer(x), ref) <= 1e-5
