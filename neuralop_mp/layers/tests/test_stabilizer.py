"""The tanh stabilizer: forward values unchanged, its backward operand kept in 16 bits."""
import pytest
import torch

from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.stabilizer import tanh_stabilizer
from neuralop_mp.layers.tests.reference import U
from neuralop_mp.memory import SavedTensorBytes


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_gradient_within_2u_of_float64_and_values_exact(half):
    """Fresh inputs spread over tanh's range (|x| up to ~8): the output is torch.tanh's
    bit for bit; the input gradient is within 2u |g| (+ float32 rounding) of float64's."""
    x = (4 * torch.randn(3, 5, 16, 16)).requires_grad_()
    g = torch.randn(3, 5, 16, 16)
    y = tanh_stabilizer(x, half)
    assert torch.equal(y, torch.tanh(x.detach()))
    (grad,) = torch.autograd.grad(y, x, g)
    x64 = x.detach().double().requires_grad_()
    (exact,) = torch.autograd.grad(torch.tanh(x64), x64, g.double())
    err = (grad.double() - exact).abs()
    assert (err <= 2 * U[half] * g.double().abs() + 1e-6).all()
    assert err.max() > 1e-6  # the 16-bit operand really was used


def test_saved_bytes_halve_and_full_or_no_grad_keep_torch_tanh():
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


def test_layer_in_mixed_keeps_the_stabilizer_output_in_16_bits():
    """A 64-channel layer at 32^2: with tanh in "mixed" the saved bytes grow by the 16-bit
    tanh output (2 bytes an input entry), not by a float32 one."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(64, 64, (8, 8), fno_block_precision="mixed", half_dtype="bfloat16")
    x = torch.randn(2, 64, 32, 32, requires_grad=True)
    sizes = {}
    for stabilizer in (None, "tanh"):
        layer.stabilizer = stabilizer
        with SavedTensorBytes(exclude=layer.parameters()) as meter:
            layer(x)
        sizes[stabilizer] = meter.bytes
    assert sizes["tanh"] - sizes[None] == x.numel() * 2
