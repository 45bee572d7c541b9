"""The real FFT that saves nothing for backward: same values and gradients as torch's."""
import pytest
import torch

from neuralop_mp.layers.fft import rfftn
from neuralop_mp.memory import SavedTensorBytes


@pytest.mark.parametrize("shape,dims", [((3, 2, 8), [-1]), ((2, 3, 7), [-1]), ((2, 2, 6, 8), [-2, -1]),
                                        ((2, 2, 5, 9), [-2, -1]), ((1, 2, 4, 6, 5), [-3, -2, -1])])
@pytest.mark.parametrize("norm", ["forward", "backward", "ortho"])
def test_values_and_gradient_match_torch_in_float64(shape, dims, norm):
    """Even and odd last sizes (with and without a Nyquist column), 1-3 transformed axes."""
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ref = torch.fft.rfftn(x, dim=dims, norm=norm)
    y = rfftn(x, dim=dims, norm=norm)
    assert torch.allclose(y, ref, atol=1e-12)
    g = torch.randn_like(ref)
    (expected,) = torch.autograd.grad(ref, x, g)
    (got,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(got, expected, atol=1e-12)


def test_saves_nothing_for_backward():
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with SavedTensorBytes() as meter:
        rfftn(x * 1.0, dim=[-2, -1])
    with SavedTensorBytes() as torch_meter:
        torch.fft.rfftn(x * 1.0, dim=[-2, -1])
    assert meter.bytes == 0 < torch_meter.bytes
