"""Review mends of MixedPrecisionSpectralConv: the float16 range of the spectral product for every
``fft_norm``, the early output where no mode is kept, the weight's mode slices computed once."""
import math
import warnings

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.bench import cufft_float16_standin
from neuralop_mp.layers import spectral_conv as sc
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.tests.reference import (
    DEVICES,
    U,
    finite,
    float32_accumulation,
    half_fft_relative_term,
    half_relative_bound,
    kept_index,
    rel_err,
)
from neuralop_mp.layers.truncated_fft import rfft_scale
from neuralop_mp.layers.weight_storage import spectral_weight_parameters

NORMS = ["backward", "ortho", "forward"]


def _reference(x, weight, norm, out_spatial=None, complex_data=False, separable=False):
    """float64 layer with ``norm`` on both transforms (dense weight ``(in, [out], *kept)``, no bias):
    the output, the kept spectrum and the einsum, for :func:`reference.half_relative_bound`."""
    x = x.to(torch.complex128 if complex_data else torch.float64)
    weight = weight.to(torch.complex128)
    spatial = list(x.shape[2:])
    dims = list(range(-len(spatial), 0))
    kept = list(weight.shape[1 if separable else 2:])
    spectrum = (torch.fft.fftn if complex_data else torch.fft.rfftn)(x, dim=dims, norm=norm)
    index = (slice(None), slice(None)) + kept_index(spatial, kept, complex_data)
    x_kept = spectrum[index]
    eq = "bixy,ixy->bixy" if separable else "bixy,ioxy->boxy"
    out = torch.zeros(x.shape[0], weight.shape[0 if separable else 1], *spectrum.shape[2:],
                      dtype=torch.complex128)
    out[index] = torch.einsum(eq, x_kept, weight)
    inverse = torch.fft.ifftn if complex_data else torch.fft.irfftn
    return inverse(out, s=out_spatial or spatial, dim=dims, norm=norm), x_kept, weight, eq


def _float16_layer(norm, stabilizer="tanh", mode="mixed", separable=False, complex_data=False, bias=True):
    torch.manual_seed(0)
    return MixedPrecisionSpectralConv(4, 4, (16, 16), fno_block_precision=mode, half_dtype="float16",
                                      stabilizer=stabilizer, fft_norm=norm, separable=separable,
                                      complex_data=complex_data, bias=bias)


def _check_against_float64(layer, x, output_shape=None, device="cpu"):
    """The layer's output less its bias within the 16-bit bound of the float64 layer: k = 3
    roundings (spectrum, weight, result), contraction length 2 x in_channels (1 if separable)."""
    complex_data, separable = layer.complex_data, layer.separable
    x_in = x.to(torch.complex128 if complex_data else torch.float64)
    if layer.stabilizer == "tanh":  # upstream's ctanh for complex data: of each part
        x_in = torch.complex(torch.tanh(x_in.real), torch.tanh(x_in.imag)) if complex_data else torch.tanh(x_in)
    ref, x_kept, w, eq = _reference(x_in, layer.weight.to_tensor().detach().cpu(), layer.fft_norm, output_shape,
                                    complex_data, separable)
    bound = half_relative_bound(x_kept, [w], eq, 3, U[torch.float16], 2 if separable else 2 * 4)
    with warnings.catch_warnings(), float32_accumulation():
        warnings.simplefilter("ignore")  # float16 on a CPU without fp16 units (test_mode_matmul checks it)
        layer = layer.to(device)
        y = layer(x.to(device), output_shape=output_shape)
    if layer.last_product_path["fft"] == "float16 (cuFFT)":
        bound += half_fft_relative_term(x_in, w, x_kept, torch.einsum(eq, x_kept, w), U[torch.float16], complex_data,
                                        layer.fft_norm)
    y = y.cpu()
    if layer.bias is not None:
        y = y - layer.bias.detach().cpu()
    assert finite(y), "float16 overflow"
    assert tuple(y.shape[2:]) == tuple(output_shape or x.shape[2:])
    err = rel_err(y, ref)
    assert 1e-5 < err <= bound, (err, bound)  # and the float16 product really ran
    return err


# --------------------------------------------------------------------- float16 range, every norm
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("stabilizer", ["tanh", None])
@pytest.mark.parametrize("mode", ["mixed", "half"])
def test_float16_product_at_256_squared_with_mean_3_input_is_finite_and_accurate(norm, stabilizer, mode):
    """The finding: inputs of mean 3 at 256^2 (65536 points). "backward" sums them into the zero
    frequency, past float16's 65504 with tanh (about 0.96 x 65536 times the weights) and without
    it (3 x 65536): without the scaling the layer gave inf/NaN here. The product now takes the
    spectrum at most 2**FLOAT16_HEADROOM_BITS above "forward"'s scale, for every norm, and the output
    is within the 16-bit bound of a float64 layer with that norm (same weights, fresh random input)."""
    layer = _float16_layer(norm, stabilizer, mode)
    x = 3 + torch.randn(2, 4, 256, 256)
    _check_against_float64(layer, x)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("separable, complex_data", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("spatial, output_shape", [
    ((256, 256), None),
    ((256, 256), (128, 96)),   # coarser output: the inverse divides by other points ("backward", "ortho")
    ((96, 80), (200, 150)),    # another input grid, finer output
    ((45, 37), None),          # odd sizes: 1665 points, not a power of two
])
def test_float16_output_for_every_norm_and_output_grid(norm, separable, complex_data, spatial, output_shape):
    """Dense (mode-batched), separable (pairwise plan) and complex-data (whole-spectrum FFT)
    products; changed input and output grids: within the 16-bit bound of the float64 layer for
    each norm. The output less the bias is compared: the bias, added to the kept spectrum
    after the power of two is given back, would be 2^shift times too large before it."""
    layer = _float16_layer(norm, separable=separable, complex_data=complex_data)
    dtype = torch.complex64 if complex_data else torch.float32
    x = 3 + torch.randn(2, 4, *spatial, dtype=dtype)
    _check_against_float64(layer, x, output_shape)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("output_shape", [None, (48, 40)])
def test_float16_gradients_for_every_norm(norm, output_shape):
    """Backward through the power of two and back: the input's and the weight's gradients match
    those of the float64 layer within float16 accuracy (a few roundings of u = 4.9e-4: measured
    5e-4, a gradient a power of two off would be O(1)), the bias's is exact to float32."""
    torch.manual_seed(0)
    layer = _float16_layer(norm)
    x = (1 + torch.randn(2, 4, 64, 64)).requires_grad_()
    g = torch.randn(2, 4, *(output_shape or (64, 64)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (layer(x, output_shape=output_shape) * g).sum().backward()
    weight = layer.weight.tensor
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().to(torch.complex128).requires_grad_()
    bias64 = layer.bias.detach().double().requires_grad_()
    y64, *_ = _reference(torch.tanh(x64), w64, norm, output_shape)
    ((y64 + bias64) * g.double()).sum().backward()
    assert finite(x.grad) and finite(weight.grad)
    assert rel_err(x.grad, x64.grad) <= 5e-3
    assert rel_err(weight.grad, w64.grad) <= 5e-3
    assert rel_err(layer.bias.grad, bias64.grad) <= 1e-6


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("device", [d for d in DEVICES if not isinstance(d, str)])  # CUDA only
def test_float16_cufft_transforms_stay_in_range(norm, size, device):
    """"half" with float16 on CUDA at power-of-2 sizes runs both FFTs in float16. cuFFT sums
    unnormalised (torch applies fft_norm afterwards), 65536 tanh values near 1 at 256^2 and four
    times that at 512^2, past 65504 for every norm: the input is scaled down by a power of two
    first, the inverse runs unnormalised on a small spectrum and fft_norm's scale is applied in
    float32. Within the bound of both FFTs' and the product's float16 error."""
    layer = _float16_layer(norm, mode="half", bias=False)
    x = 3 + torch.randn(1, 4, size, size)
    _check_against_float64(layer, x, device=device)
    assert layer.last_product_path["fft"] == "float16 (cuFFT)"


def _emulate_float16_cufft(monkeypatch):
    """cuFFT's float16 transforms on CPU, and "half" takes the float16-FFT path there: the
    package's stand-in (:mod:`neuralop_mp.bench.cufft_float16_standin`), undone by monkeypatch."""
    for owner, name, value in cufft_float16_standin.replacements():
        monkeypatch.setattr(owner, name, value)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("size, output_shape", [(256, None), (512, None), (256, (128, 64)), (128, (256, 512))])
@pytest.mark.parametrize("complex_data", [False, True])
def test_float16_fft_path_stays_in_range_with_emulated_cufft(norm, size, output_shape, complex_data, monkeypatch):
    """The float16-FFT path's scaling (input scaled down by a power of two, unnormalised float16
    inverse, fft_norm's factor in float32) on CPU, cuFFT emulated as :func:`_emulate_float16_cufft`
    describes. The old layer overflowed here with "backward" from 256^2 and with every norm at
    512^2 (0.96 x 262144 summed); now finite and within the 16-bit bound for every norm and grid."""
    _emulate_float16_cufft(monkeypatch)
    layer = _float16_layer(norm, mode="half", complex_data=complex_data)
    x = 3 + torch.randn(1, 4, size, size, dtype=torch.complex64 if complex_data else torch.float32)
    with torch.no_grad():
        _check_against_float64(layer, x, output_shape)
    assert layer.last_product_path["fft"] == "float16 (cuFFT)"


def test_full_precision_spectrum_is_not_rescaled(monkeypatch):
    """Only a float16 product changes scale: in "full" and with bfloat16 (float32's range) the
    exponent is never asked for, so their numbers are as before."""
    asked = []
    original = sc.forward_norm_exponent
    monkeypatch.setattr(sc, "forward_norm_exponent", lambda *a: asked.append(a) or original(*a))
    x = torch.randn(2, 4, 32, 32)
    for mode, half in (("full", "float16"), ("mixed", "bfloat16"), ("half", "bfloat16")):
        layer = MixedPrecisionSpectralConv(4, 4, (8, 8), fno_block_precision=mode, half_dtype=half,
                                           fft_norm="backward")
        layer(x)
    assert asked == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MixedPrecisionSpectralConv(4, 4, (8, 8), fno_block_precision="mixed", half_dtype="float16",
                                   fft_norm="backward")(x)
    assert asked == [("backward", 32 * 32)]


def _smooth_field(shape, std):
    """A float32 Gaussian random field over the last two axes with spectrum ``(1 + |k|^2)^-2`` (a
    smooth field, like Darcy's coefficients), scaled to standard deviation ``std``."""
    n1, n2 = shape[-2:]
    k1 = torch.fft.fftfreq(n1, 1 / n1)[:, None]
    k2 = torch.fft.rfftfreq(n2, 1 / n2)[None, :]
    white = torch.fft.rfftn(torch.randn(*shape, dtype=torch.float64), dim=(-2, -1))
    x = torch.fft.irfftn(white * (1 + k1**2 + k2**2) ** -2.0, s=(n1, n2), dim=(-2, -1))
    return (std * x / x.std()).float()


@pytest.mark.parametrize("norm", ["backward", "ortho"])
@pytest.mark.parametrize("size, amplitude", [(256, 1e-3), (256, 1e-4), (512, 1e-3)])
def test_float16_product_keeps_small_inputs_out_of_the_subnormals(norm, size, amplitude):
    """White noise of amplitude 1e-3 or 1e-4: at "forward"'s scale its kept spectrum is about
    amplitude / size, float16 subnormals (below 6.1e-5) that keep few digits: 8.6e-3 and 8.7e-2
    against the bound's 4.9e-3 at 256^2. The headroom of 2**FLOAT16_HEADROOM_BITS keeps it normal:
    within the 16-bit bound of the float64 layer (measured 3.6e-4 and 4.3e-4)."""
    layer = _float16_layer(norm, stabilizer=None, bias=False)  # a bias would drown the small output
    _check_against_float64(layer, amplitude * torch.randn(2, 4, size, size))


@pytest.mark.parametrize("norm", ["backward", "ortho"])
@pytest.mark.parametrize("size", [256, 512])
def test_float16_product_keeps_the_upper_modes_of_a_smooth_field(norm, size):
    """A smooth field of standard deviation 0.01: its kept modes at least 5 from zero along both
    axes are about 1e-3 of the lowest ones, subnormals at "forward"'s scale (relative error 1.7e-2
    and 2.1e-2 there against a bound of 5e-3, where the whole output's stays 3e-4). Compared on those
    modes of the output spectrum (off the zero column of the last axis, which the real inverse
    symmetrises) with the float64 layer's, within the 16-bit bound of the product restricted to
    them (measured 3.5e-4)."""
    layer = _float16_layer(norm, stabilizer=None, bias=False)
    x = _smooth_field((2, 4, size, size), 0.01)
    _, x_kept, weight, eq = _reference(x, layer.weight.to_tensor().detach(), norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 on a CPU without fp16 units
        y = layer(x).detach()
    kept = list(weight.shape[2:])
    spectrum = torch.fft.rfftn(y.double(), dim=(-2, -1), norm=norm)
    out_kept = spectrum[(slice(None), slice(None)) + kept_index([size, size], kept, False)]
    k1 = (torch.arange(kept[0]) - kept[0] // 2).abs()[:, None]  # the signed order of kept_index
    k2 = torch.arange(kept[1])[None, :]
    upper = (k1 >= 5) & (k2 >= 5)
    bound = half_relative_bound(x_kept[..., upper], [weight[..., upper]], "bim,iom->bom", 3, U[torch.float16], 2 * 4)
    err = rel_err(out_kept[..., upper], torch.einsum(eq, x_kept, weight)[..., upper])
    assert 1e-5 < err <= bound, (err, bound)


@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_float16_fft_path_keeps_small_inputs_out_of_the_subnormals(norm, monkeypatch):
    """The same headroom on the float16-FFT path (cuFFT emulated, :func:`_emulate_float16_cufft`):
    the kept block is scaled with the product's shift there. Amplitude 1e-4 at 512^2: 0.18 at
    "forward"'s scale, past the bound of both FFTs' and the product's error (0.09, 0.11); measured
    3e-3 with the headroom."""
    _emulate_float16_cufft(monkeypatch)
    layer = _float16_layer(norm, stabilizer=None, mode="half", bias=False)
    with torch.no_grad():
        _check_against_float64(layer, 1e-4 * torch.randn(1, 4, 512, 512))
    assert layer.last_product_path["fft"] == "float16 (cuFFT)"


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("mode, spatial", [("mixed", (12, 12)), ("mixed", (64, 64)), ("mixed", (45, 37)),
                                           ("mixed", (256, 256)), ("half", (64, 64)), ("half", (512, 512))])
def test_float16_product_spectrum_sits_within_the_headroom(norm, mode, spatial, monkeypatch):
    """The scale contract, on a constant input (its zero frequency is the whole sum): the spectrum
    the float16 product takes is at most 2**FLOAT16_HEADROOM_BITS times max|x|, and at least the
    smaller of fft_norm's own spectrum and 2**(FLOAT16_HEADROOM_BITS - 1): never pushed further down than the product's
    range needs. "half" runs the float16-FFT path (cuFFT emulated)."""
    if mode == "half":
        _emulate_float16_cufft(monkeypatch)
    largest = []
    product = sc.dense_mode_product
    monkeypatch.setattr(sc, "dense_mode_product", lambda x_kept, *args: largest.append(
        torch.view_as_real(x_kept).float().abs().max().item()) or product(x_kept, *args))
    layer = _float16_layer(norm, stabilizer=None, mode=mode, bias=False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer(torch.ones(1, 4, *spatial))
    points = math.prod(spatial)
    own = points * rfft_scale(norm, points)  # fft_norm's zero frequency of ones
    headroom = 2.0**sc.FLOAT16_HEADROOM_BITS
    assert len(largest) == 1  # up to the float32 FFT's rounding:
    assert min(own, headroom / 2) * (1 - 1e-6) <= largest[0] <= headroom * (1 + 1e-6), (largest, own)


# ------------------------------------------------------------------ no mode kept: early zeros
BEYOND_MAX = [  # (n_modes, max_n_modes, spatial): n_modes past max_n_modes along a shifted axis
    ((12, 12), (8, 8), (32, 32)),
    ((17, 17), (16, 16), (32, 30)),
    ((12, 8), (8, 8), (32, 32)),
    ((4, 12, 4), (4, 8, 4), (8, 16, 8)),
]


@pytest.mark.parametrize("n_modes, max_n_modes, spatial", BEYOND_MAX)
@pytest.mark.parametrize("mode", ["full", "mixed"])
@pytest.mark.parametrize("device", DEVICES)
def test_no_mode_kept_gives_bias_and_upstreams_gradients_without_any_fft(n_modes, max_n_modes, spatial, mode,
                                                                         device, monkeypatch):
    """Output: the bias over the output grid, in float32, on the input's device. Gradients as
    upstream's empty product gives them: zeros (tensors, not None) for the input and the weight,
    the bias's as usual. No FFT, no tanh, no product runs."""
    torch.manual_seed(0)
    upstream = SpectralConv(3, 5, n_modes, max_n_modes=max_n_modes)
    ours = MixedPrecisionSpectralConv(3, 5, n_modes, max_n_modes=max_n_modes, fno_block_precision=mode,
                                      stabilizer="tanh")
    ours.load_state_dict(upstream.state_dict())
    upstream.to(device), ours.to(device)
    x = torch.randn(2, 3, *spatial, device=device)
    g = torch.randn(2, 5, *spatial, device=device)

    def refused(*args, **kwargs):
        raise AssertionError("no transform, tanh or product where no mode is kept")

    for name in ("truncated_rfftn", "rfftn_saving_nothing", "tanh_stabilizer", "dense_mode_product",
                 "choose_product_path"):
        monkeypatch.setattr(sc, name, refused)
    monkeypatch.setattr(torch.fft, "fftn", refused)

    xs = [x.clone().requires_grad_() for _ in range(2)]
    outputs = [layer(xi) for layer, xi in ((upstream, xs[0]), (ours, xs[1]))]
    assert outputs[1].shape == outputs[0].shape == (2, 5, *spatial)
    assert outputs[1].dtype == torch.float32 and outputs[1].device == x.device
    assert torch.equal(outputs[1], ours.bias.detach().expand(2, 5, *spatial))
    grads = []
    for layer, xi, y in zip((upstream, ours), xs, outputs):
        params = [xi, layer.bias, *spectral_weight_parameters(layer)]
        grads.append(torch.autograd.grad((y * g).sum(), params))  # no allow_unused: every input is used
    for up_grad, our_grad in zip(*grads):
        assert our_grad.shape == up_grad.shape and our_grad.dtype == up_grad.dtype
        assert torch.allclose(our_grad, up_grad, rtol=1e-6, atol=1e-6)
    x_grad, bias_grad, *weight_grads = grads[1]
    assert not x_grad.any() and not any(w.any() for w in weight_grads) and bias_grad.abs().sum() > 0
    assert ours.last_product_path["kernel"] is None


def test_no_mode_kept_with_complex_data_factorized_weight_and_output_shape():
    """Complex data: a complex64 output. A CP weight in complex32 storage: zero gradients of
    each factor, in its dtype. output_shape: the bias over the requested grid."""
    layer = MixedPrecisionSpectralConv(3, 4, (12, 12), max_n_modes=(8, 8), complex_data=True, factorization="cp",
                                       implementation="factorized", spectral_weight_dtype="complex32")
    x = torch.randn(2, 3, 32, 32, dtype=torch.complex64, requires_grad=True)
    y = layer(x, output_shape=(20, 24))
    assert y.shape == (2, 4, 20, 24) and y.dtype == torch.complex64
    assert torch.equal(y.real, layer.bias.detach().expand(2, 4, 20, 24)) and not y.imag.any()
    factors = spectral_weight_parameters(layer)
    y.abs().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.complex64 and not x.grad.any()
    for factor in factors:
        assert factor.grad is not None and factor.grad.dtype == torch.complex32
        assert not factor.grad.to(torch.complex64).any()


def test_no_mode_kept_without_grad_or_bias():
    layer = MixedPrecisionSpectralConv(3, 4, (12, 12), max_n_modes=(8, 8), bias=False)
    with torch.no_grad():
        y = layer(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 4, 16, 16) and not y.any() and not y.requires_grad


# --------------------------------------------------------------- the weight's mode slices, once
@pytest.mark.parametrize("factorization, n_modes", [(None, (8, 8)), ("tucker", (6, 4))])
def test_weight_mode_slices_computed_once_per_forward(factorization, n_modes, monkeypatch):
    """Every mode kept, and fewer modes than the weight holds (a real slice): one call."""
    layer = MixedPrecisionSpectralConv(4, 4, n_modes, max_n_modes=(8, 8), factorization=factorization,
                                       implementation="factorized" if factorization else "reconstructed")
    calls = []
    original = MixedPrecisionSpectralConv._weight_mode_slices
    monkeypatch.setattr(MixedPrecisionSpectralConv, "_weight_mode_slices",
                        lambda self, fft_size: calls.append(fft_size) or original(self, fft_size))
    for mode in ("full", "mixed"):
        calls.clear()
        layer.fno_block_precision = mode
        layer(torch.randn(2, 4, 24, 24)).sum().backward()
        assert calls == [[24, 13]]
    calls.clear()
    layer.contraction_plan((2, 4, 24, 24))
    assert len(calls) == 1


def test_float16_weight_gradients_of_a_mean_loss_without_loss_scaling_stay_accurate():
    """fft_norm="forward" (upstream's default) with tanh, a mean loss over a 64^2 grid, 32 channels,
    no loss scaler (upstream's ``Trainer(mixed_precision=True)``, ``loss_scaling="none"``): the
    spectral weight's gradient against the float32 layer's with the same weights. Measured 4.1e-4;
    with the spectrum raised 2**8 above "forward"'s scale after tanh (d387584, reverted) 2.0e-2,
    the incoming gradient 2**-8 smaller and nearer float16's subnormals. Tolerance 5e-3: about ten
    float16 roundings (2**-11 each), far below what that change gave."""
    torch.manual_seed(0)
    x = torch.randn(4, 32, 64, 64)

    def weight_gradient(mode):
        torch.manual_seed(1)
        layer = MixedPrecisionSpectralConv(32, 32, (16, 16), fno_block_precision=mode, half_dtype="float16",
                                           stabilizer="tanh", fft_norm="forward", bias=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float16 on a CPU without fp16 units
            layer(x).pow(2).mean().backward()
        return layer.weight.tensor.grad

    half, full = weight_gradient("mixed"), weight_gradient("full")
    assert 1e-5 < rel_err(half, full) <= 5e-3


@pytest.mark.parametrize("amplitude", [1.0, 1e-4])
@pytest.mark.parametrize("stabilizer", ["tanh", "off"])
def test_float16_fno_with_forward_norm_small_inputs_and_mean_loss_gradients(amplitude, stabilizer):
    """Why fft_norm="forward" (upstream's default) keeps its own scale (docs/spectral_layer.md, "float16
    range"): an FNO (upstream init, 4 layers, 32 channels, 64^2, batch 4) fed a smooth field of
    amplitude 1 or 1e-4. Its spectral layers see the lifted hidden state (the lifting's biases and
    positional channels), not the data's amplitude: each layer's float16 output is as accurate at 1e-4
    as at 1 (measured 2.1e-4 to 2.8e-4, the same with the spectrum taken 2**4 or 2**8 above
    "forward"'s scale). The weight gradients of a mean squared loss without loss scaling are within
    1.5e-3 of float32's (measured 3.0e-4 to 4.2e-4); taking the spectrum 2**4 (2**8) up makes the
    product's incoming gradient that much smaller, nearer float16's subnormals: up to 3.2e-3 (5.0e-2),
    failing here. Against the float32 model ("full", about 1e-6 off float64): tolerances about two
    float16 roundings (2**-11 each) for the outputs, three for the gradients."""
    from neuralop_mp import MixedPrecisionFNO
    from neuralop_mp.layers.precision_switch import set_precision

    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(16, 16), in_channels=1, out_channels=1, hidden_channels=32, n_layers=4,
                              fno_block_precision="full")
    x = _smooth_field((4, 1, 64, 64), amplitude)
    target = _smooth_field((4, 1, 64, 64), 1.0)

    def run(mode):
        set_precision(model, mode, half_dtype="float16", stabilizer=stabilizer)
        outputs = []
        hooks = [conv.register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
                 for conv in model.fno_blocks.convs]
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float16 on a CPU without fp16 units
            y = model(x)
            (y - target).pow(2).mean().backward()  # no loss scaling
        for hook in hooks:
            hook.remove()
        assert finite(y)
        return outputs, [conv.weight.tensor.grad.clone() for conv in model.fno_blocks.convs]

    (full_out, full_grad), (half_out, half_grad) = run("full"), run("mixed")
    assert all(1e-5 < rel_err(a, b) <= 1e-3 for a, b in zip(half_out, full_out))
    assert all(rel_err(a, b) <= 1.5e-3 for a, b in zip(half_grad, full_grad))
