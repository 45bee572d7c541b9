"""The tanh stabilizer: forward values unchanged, nothing wide kept for its backward."""
import contextlib
import warnings

import pytest
import torch

from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.stabilizer import tanh_stabilizer
from neuralop_mp.layers.tests.reference import DEVICES, U, rel_err, with_and_without_tiles
from neuralop_mp.memory import SavedTensorBytes


# float32's own 1 - y^2 next to 1 (tanh, its square, the difference: a few ulps of 1, 2**-24 each);
# what torch.tanh's float32 backward loses too
FLOAT32_DERIVATIVE_ERROR = 2.0**-21


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("centre", [0.0, 4.0])
def test_from_a_wide_input_the_gradient_is_within_u_of_float64_also_where_tanh_saturates(half, centre):
    """Fresh float32 inputs over tanh's range and where it saturates (centre 4: |x| up to ~12,
    past float32's own tanh = 1 at ~9): the output is torch.tanh's bit for bit; the input
    gradient, from tanh's derivative kept in ``half``, is within ``u |g d|`` (one rounding) plus
    float32's own error of ``1 - y^2`` (2**-21 |g|) of float64's entry by entry, and within 2u of it
    as a whole. Keeping tanh's output rounded instead (the old backward) was off by about 2u |g|
    wherever d << 2u: bfloat16 gave gradient 0 past |x| ~ 3.5, 100% off there."""
    torch.manual_seed(0)
    x = (centre + 2 * torch.randn(3, 5, 16, 16)).requires_grad_()
    g = torch.randn(3, 5, 16, 16)
    y = tanh_stabilizer(x, half)
    assert torch.equal(y, torch.tanh(x.detach()))
    (grad,) = torch.autograd.grad(y, x, g)
    x64 = x.detach().double().requires_grad_()
    (exact,) = torch.autograd.grad(torch.tanh(x64), x64, g.double())
    err = (grad.double() - exact).abs()
    assert (err <= U[half] * exact.abs() + FLOAT32_DERIVATIVE_ERROR * g.double().abs()).all()
    assert rel_err(grad, exact) <= 2 * U[half]
    assert err.max() > 1e-6  # the 16-bit derivative really was used


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_layer_with_tanh_on_saturating_inputs_gives_the_input_gradient_of_float64_tanh(half):
    """The layer's own tanh in "mixed" on inputs where tanh saturates (x = 4 + 0.5 randn, the
    review's case): the input gradient is what the same layer's product gradient (the layer
    without stabilizer, fed torch.tanh(x): the same forward values and product) times float64's
    tanh derivative gives, within 2u relative. Measured 0.48 off in bfloat16 when the backward
    kept tanh's output rounded (0.08 in float16); 0.4u now."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8), fno_block_precision="mixed", half_dtype=half,
                                       stabilizer="tanh")
    x = 4 + 0.5 * torch.randn(2, 4, 32, 32)
    r = torch.randn(2, 4, 32, 32)
    xi = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 on a CPU without fp16 units
        (layer(xi) * r).sum().backward()
        layer.stabilizer = None
        t = torch.tanh(x).requires_grad_()
        (layer(t) * r).sum().backward()
    exact = t.grad.double() / torch.cosh(x.double()).square()  # float64 tanh's derivative
    assert rel_err(xi.grad, exact) <= 2 * U[half]


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_from_a_16_bit_input_it_keeps_the_input_and_matches_torch_exactly(half):
    """A 16-bit input (an activation under autocast) widened to float32: backward
    recomputes tanh from the input it kept (the same storage: nothing new), and output and
    gradient equal torch's tanh of the widened input bit for bit."""
    x = (4 * torch.randn(2, 4, 16, 16)).to(half).requires_grad_()
    g = torch.randn(2, 4, 16, 16)
    kept = []

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = tanh_stabilizer(x, half, torch.float32)
    assert len(kept) == 1 and kept[0].data_ptr() == x.data_ptr()
    (grad,) = torch.autograd.grad(y, x, g)
    x2 = x.detach().clone().requires_grad_()
    y2 = torch.tanh(x2.float())
    (grad2,) = torch.autograd.grad(y2, x2, g)
    assert y.dtype == torch.float32 and torch.equal(y, y2)
    assert grad.dtype == half and torch.equal(grad, grad2)


def test_saved_bytes_and_the_cases_that_stay_torch_tanh():
    x = torch.randn(2, 4, 32, 32, requires_grad=True)
    with SavedTensorBytes() as full:
        tanh_stabilizer(x)
    with SavedTensorBytes() as half:
        tanh_stabilizer(x, torch.bfloat16)
    assert full.bytes == x.numel() * 4 and half.bytes == x.numel() * 2
    with torch.no_grad():
        assert tanh_stabilizer(x, torch.float16).grad_fn is None
    z = torch.randn(2, 4, 8, dtype=torch.cfloat)  # complex data: upstream's ctanh, unchanged
    assert torch.equal(tanh_stabilizer(z, torch.float16), tanh_stabilizer(z))


@pytest.mark.parametrize("input_dtype, extra_bytes", [(torch.float32, 2), (torch.bfloat16, 0)])
def test_layer_with_tanh_keeps_at_most_16_bits_more(input_dtype, extra_bytes):
    """A 64-channel layer at 32^2 in "mixed": tanh adds the 16-bit output (2 bytes an input
    entry) for a float32 input, and nothing for a bfloat16 one (kept by the caller)."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(64, 64, (8, 8), fno_block_precision="mixed", half_dtype="bfloat16")
    x = torch.randn(2, 64, 32, 32).to(input_dtype).requires_grad_()
    sizes = {}
    for stabilizer in (None, "tanh"):
        layer.stabilizer = stabilizer
        with SavedTensorBytes(exclude=[*layer.parameters(), x]) as meter:
            layer(x)
        sizes[stabilizer] = meter.bytes
    assert sizes["tanh"] - sizes[None] == x.numel() * extra_bytes


@pytest.mark.parametrize("device", ["cpu", "cpu, as a GPU"] + DEVICES[1:])
def test_fno_block_tanh_keeps_the_block_input_not_its_output(device, monkeypatch):
    """An FNO (our layer, "mixed" bf16, tanh, autocast over the whole model) on a grid
    smaller than one pointwise tile (the whole-grid path a GPU takes): with the plugin's
    block forward, each block's tanh keeps the block input its skip keeps anyway, so the
    step keeps one 16-bit block-sized tensor per block less than upstream's forward, the
    lifting and projection (on a GPU; forced on a CPU in "cpu, as a GPU") only their
    input, and output and gradients are upstream's bit for bit."""
    from neuralop.models import FNO

    from neuralop_mp.layers.autocast_scope import set_autocast_scope
    from neuralop_mp.layers.precision_switch import set_precision
    from neuralop_mp.models import pointwise_gemm
    from neuralop_mp.layers.product_paths import force_device_choices

    # autocast's own 1x1 convolutions on every CPU (on one with bfloat16 units the tiles would
    # run them as matrix products, test_pointwise_gemm.py): the two forwards differ in the tanh only
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: False)
    as_gpu = device != "cpu"
    choices = force_device_choices("cuda") if device == "cpu, as a GPU" else contextlib.nullcontext()
    device = "cpu" if device == "cpu, as a GPU" else device
    torch.manual_seed(0)
    model = FNO(conv_module=MixedPrecisionSpectralConv, n_modes=(8, 8), in_channels=1, out_channels=1,
                hidden_channels=16, n_layers=3).to(device)
    set_precision(model, "mixed", half_dtype="bfloat16", stabilizer="tanh")
    set_autocast_scope(model, "model")
    x = torch.randn(2, 1, 32, 32, device=device)
    with choices:
        runs = with_and_without_tiles(model, x, device)
    (upstream, y0, g0), (ours, y1, g1) = runs[None], runs["default"]
    points, bf16 = 2 * 32 * 32, 2
    block = 16 * points * bf16  # one bf16 tensor of the blocks' size
    kept_less = 3 * block
    if as_gpu:
        # the lifting and projection keep only their input, narrower than their 32 hidden
        # channels: not their hidden layer's input and output, nor autocast's bf16 copies of
        # their weights; the lifting keeps its float32 input (1 + 2 positional channels)
        # instead of fc1's bf16 copy of it; the projection's input (the last block's bf16
        # output, the plugin's soft gating keeping 16 bits) is the tensor its fc1 keeps anyway
        hidden = 2 * 2 * 32 * points * bf16
        weights = sum(fc.weight.numel() * bf16 for mlp in (model.lifting, model.projection) for fc in mlp.fcs)
        kept_less += hidden + weights + 3 * points * (bf16 - 4)
    assert upstream - ours == kept_less
    assert torch.equal(y0, y1) and all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_second_derivatives_from_a_kept_input_and_a_clear_error_from_a_rounded_derivative():
    """From a kept input (an FNO block's tanh) second derivatives equal torch's (float64,
    fresh input); from a derivative kept rounded there is nothing to differentiate: a clear error."""
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    xi, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    (g,) = torch.autograd.grad(tanh_stabilizer(xi, keep_input=True).square().sum(), xi, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), xi)
    (g2,) = torch.autograd.grad(torch.tanh(xr).square().sum(), xr, create_graph=True)
    (gg2,) = torch.autograd.grad(g2.sum(), xr)
    torch.testing.assert_close(gg, gg2, rtol=1e-12, atol=0)
    xf = torch.randn(2, 3, 8, requires_grad=True)
    y = tanh_stabilizer(xf, torch.bfloat16)  # float32 input, derivative kept rounded
    with pytest.raises(RuntimeError, match="Second derivatives .* not supported.*stabilizer=None"):
        torch.autograd.grad(y.sum(), xf, create_graph=True)


def test_complex_data_comes_back_in_the_dtype_asked_for():
    """Upstream's ctanh returns complex64 whatever it is given: the stabilizer returns the
    caller's dtype (complex32 before cuFFT's float16 transform), with ctanh's values (a
    complex32 input's are float16's: the cast is exact) and a gradient for the input."""
    from neuralop.layers.complex import ctanh

    z = (3 * torch.randn(2, 4, 8, dtype=torch.cfloat)).requires_grad_()
    y = tanh_stabilizer(z, torch.float16, torch.complex32)
    assert y.dtype == torch.complex32
    expected = ctanh(z.detach().to(torch.complex32))
    assert torch.equal(torch.view_as_real(y.detach().to(torch.cfloat)), torch.view_as_real(expected))
    (grad,) = torch.autograd.grad(torch.view_as_real(y.to(torch.cfloat)).sum(), z)
    assert grad.dtype == torch.cfloat and grad.abs().min() > 0
    assert tanh_stabilizer(z.detach().to(torch.complex32)).dtype == torch.complex32  # default: x's dtype
    assert tanh_stabilizer(z, torch.float16).dtype == torch.cfloat


def test_complex_data_with_tanh_runs_the_forward_fft_in_the_recorded_float16(monkeypatch):
    """complex_data, tanh, "half" float16 where cuFFT's float16 transforms run (forced here: a
    CPU has none): the forward FFT gets complex32, the "float16 (cuFFT)" the layer's path
    record names, as without tanh; the first FFT call is caught before the CPU would refuse it."""
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4), complex_data=True, fno_block_precision="half",
                                       half_dtype="float16")
    monkeypatch.setattr(MixedPrecisionSpectralConv, "_fft_in_half", lambda self, *args: True)
    seen = {}

    class Caught(Exception):
        pass

    def fftn(x, *args, **kwargs):
        seen["dtype"] = x.dtype
        raise Caught

    monkeypatch.setattr(torch.fft, "fftn", fftn)
    x = torch.randn(1, 2, 8, 8, dtype=torch.cfloat)
    for stabilizer in (None, "tanh"):
        layer.stabilizer = stabilizer
        seen.clear()
        with pytest.raises(Caught):
            layer(x)
        assert seen["dtype"] == torch.complex32, stabilizer
