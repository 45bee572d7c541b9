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
        # y = R F x (R keeps the first n//2+1 frequencies of the last axis), so
        # dL/dx = Re(F^H R^T g): zero-pad the dropped half, inverse FFT, real part
        missing = shape[last] - grad.shape[last]
        if missing:
            pad_shape = list(grad.shape)
            pad_shape[last] = missing
            grad = torch.cat((grad, grad.new_zeros(pad_shape)), dim=last)
        full = torch.fft.ifftn(grad, dim=dims, norm=_ADJOINT_NORM[norm])
        return full.real.to(dtype), None, None


def rfftn(x, dim, norm="backward"):
    """``torch.fft.rfftn(x, dim=dim, norm=norm)`` that saves no tensor for backward.

    ``dim`` must list the transformed axes as negative indices.
    """
    dims = tuple(dim)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return torch.fft.rfftn(x, dim=dims, norm=norm)
    return _RealFFTN.apply(x, dims, norm)
