"""The tanh stabilizer before the forward FFT, with its backward's operand kept in 16 bits.

tanh's derivative is ``1 - y^2`` of its output ``y``, so autograd keeps ``y`` until
backward, in the dtype it was computed in: a float32 tensor of the layer's full input
size (1 GiB per layer for 64 channels at 1024^2 in batches of 4) while only the 16-bit
kept spectrum of the same layer is saved for the product. In the 16-bit modes
:func:`tanh_stabilizer` keeps ``y`` rounded to the layer's half type instead: the
forward values are unchanged (tanh in the input's dtype), and since ``|y| <= 1`` the
rounded ``y`` is within ``u |y|`` of the exact one, so the derivative ``1 - y^2`` (in
``[0, 1]``) is off by at most about ``2u``: a gradient error of at most ``2u |g|``
entry by entry, below the 16-bit rounding the product's backward applies to the same
gradient anyway.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (tanh pre-activation before the FFT).
"""
import torch
from neuralop.layers.complex import ctanh


class _TanhKeptInHalf(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, half):
        y = torch.tanh(x)
        ctx.save_for_backward(y.to(half))
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y = y.to(grad.dtype)
        return grad * (1 - y * y), None


def tanh_stabilizer(x, half=None):
    """``tanh(x)`` (upstream's ``ctanh`` for complex ``x``); with ``half`` a 16-bit dtype,
    the output kept for backward is rounded to it (real ``x`` in a wider dtype only)."""
    if x.is_complex():
        return ctanh(x)
    if half is None or not torch.is_grad_enabled() or not x.requires_grad or x.dtype.itemsize <= half.itemsize:
        return torch.tanh(x)
    return _TanhKeptInHalf.apply(x, half)
