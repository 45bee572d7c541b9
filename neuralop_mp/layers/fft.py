"""A real FFT whose backward pass keeps nothing alive.

``torch.fft.rfftn`` saves its whole input for backward (torch 2.x), although the
adjoint of a linear map needs only the input's shape. In a Fourier layer that input
is a full-resolution fp32 activation per layer, which would undo most of what
half precision saves. This module's rfftn computes the same thing and saves only
shapes; its backward is the adjoint of the real DFT.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024 (memory of the Fourier layer).
"""
import torch

# the adjoint of an FFT with one normalisation is the inverse FFT with the other
_ADJOINT_NORM = {"forward": "backward", "backward": "forward", "ortho": "ortho", None: "forward"}


class _RealFFTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dims, norm):
        ctx.meta = (x.shape, x.dtype, dims, norm)
        return torch.fft.rfftn(x, dim=dims, norm=norm)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, dims, norm = ctx.meta
        last = dims[-1]
        n = shape[last]
        # y = R F x (R keeps the first n//2+1 frequencies of the last axis), so
        # dL/dx = Re(F^H R^T g). irfftn computes exactly that sum when the columns it
        # counts twice (all but the zero and, for even n, the Nyquist frequency) are
        # halved: one complex-to-real transform instead of zero-padding the missing
        # half and a full complex inverse transform
        halved = grad.clone()
        halved.narrow(last, 1, (n + 1) // 2 - 1).mul_(0.5)
        sizes = [shape[d] for d in dims]
        return torch.fft.irfftn(halved, s=sizes, dim=dims, norm=_ADJOINT_NORM[norm]).to(dtype), None, None


def rfftn(x, dim, norm="backward"):
    """``torch.fft.rfftn(x, dim=dim, norm=norm)`` that saves no tensor for backward.

    ``dim`` must list the transformed axes as negative indices.
    """
    dims = tuple(dim)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return torch.fft.rfftn(x, dim=dims, norm=norm)
    return _RealFFTN.apply(x, dims, norm)
