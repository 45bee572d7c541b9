"""The tanh stabilizer before the forward FFT, with nothing wide kept for its backward.

tanh's derivative is ``1 - y^2`` of its output ``y``, so autograd keeps ``y`` until
backward, in the dtype it was computed in: a tensor of the layer's full input size
(0.5 GiB in 16 bits, 1 GiB in float32, per layer for 64 channels at 1024^2 in batches
of 4), where only the 16-bit kept spectrum of the same layer is saved for the product.
:func:`tanh_stabilizer` keeps instead

- the input itself, when it is 16-bit (under autocast, the activations between layers)
  or the caller says it keeps it anyway (an FNO block, whose skip connection saves the
  same tensor): tanh then adds nothing, and backward recomputes ``tanh`` from it, bit
  for bit the forward's values and torch's gradient;
- otherwise, in the 16-bit modes, the derivative ``d = 1 - y^2`` itself, computed from
  the wide ``y`` and rounded to the layer's half type, times ``2**15`` (exact: a power of
  two) so that every nonzero float32 derivative, down to ``2**-23`` at ``|x| ~ 9``, is a
  normal float16 number: the same 2 bytes an entry, and a gradient
  ``g d`` within ``u |g d|`` of the exact one entry by entry, plus float32's own rounding of
  ``1 - y^2`` (a few ``2**-24 |g|``, as torch's float32 tanh backward). A float64 input's
  derivative below ``2**-29`` (``|x| > ~10.9``) is a float16 subnormal, off by at most
  ``2**-40 |g|``, and one below ``2**-40`` (``|x| > ~14.5``) rounds to 0. Keeping ``y`` rounded
  instead (as this module once did) puts an absolute error of about ``2u`` on ``d``:
  where tanh saturates ``d`` is far smaller than that (bfloat16's ``y`` is 1.0 from
  ``|x| ~ 3.5``, gradient 0), and the input gradient of a layer fed ``x = 4 + 0.5 randn``
  in bfloat16 was 0.48 off float32's.

The forward values are those of ``tanh`` of the input widened to the FFT's dtype.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (tanh pre-activation before the FFT).
"""
import torch
from neuralop.layers.complex import ctanh

# tanh's derivative (in [0, 1]) is kept times this power of two: every nonzero float32 one (down to
# 2**-23, |x| ~ 9) is then a normal float16 number (from 2**-14), and at most 2**15 < 65504
DERIVATIVE_SCALE = 2.0**15


class _TanhKeptNarrow(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out_dtype, kept_half):
        # kept_half None: keep x itself; else keep tanh's derivative rounded to kept_half
        y = torch.tanh(x.to(out_dtype))
        ctx.input_dtype, ctx.out_dtype = x.dtype, out_dtype
        ctx.from_input = kept_half is None
        if ctx.from_input:
            ctx.save_for_backward(x)
        else:
            # 1 - y^2 from a float32 y at least (a 16-bit y, cuFFT's float16 input, would bring back
            # the 2u error), times a power of two that keeps it out of kept_half's subnormals
            wide = y if y.dtype.itemsize >= 4 else torch.tanh(x.to(out_dtype).float())
            derivative = (wide * wide).neg_().add_(1).mul_(DERIVATIVE_SCALE)  # one wide temporary
            ctx.save_for_backward(derivative.to(kept_half))
        return y

    @staticmethod
    def backward(ctx, grad):
        (kept,) = ctx.saved_tensors
        if not ctx.from_input:
            if torch.is_grad_enabled():
                # a rounded copy of tanh's derivative has no history to differentiate again
                raise RuntimeError(
                    "Second derivatives (create_graph=True) through the tanh stabilizer of a spectral layer "
                    "in a 16-bit mode with a float32 input are not supported: its backward keeps tanh's "
                    "derivative rounded to 16 bits. Run that layer with stabilizer=None and apply torch.tanh "
                    "before it, or feed it 16-bit inputs (autocast), whose tanh backward is recomputed exactly.")
            # the power of two off exactly, in float32 at least (the input's dtype): one rounding, g d
            wide = torch.promote_types(grad.dtype, ctx.input_dtype)
            derivative = kept.to(wide) * (1.0 / DERIVATIVE_SCALE)
            return (grad.to(wide) * derivative).to(ctx.input_dtype), None, None
        # from the input: the forward's own values again (differentiable with create_graph), and
        # torch's own kernel for grad * (1 - y^2): the numbers of torch.tanh's backward
        y = torch.tanh(kept.to(ctx.out_dtype))
        return torch.ops.aten.tanh_backward(grad, y.to(grad.dtype)).to(ctx.input_dtype), None, None


def tanh_stabilizer(x, half=None, out_dtype=None, keep_input=False):
    """``tanh`` of ``x`` widened to ``out_dtype`` (default: ``x``'s dtype); upstream's
    ``ctanh`` for complex ``x``, in ``out_dtype`` too.

    For backward it keeps ``x`` itself where ``x`` is 16-bit or ``keep_input`` says the
    caller keeps ``x`` anyway (an FNO block's skip saves the same tensor), and recomputes
    tanh from it; else, with ``half`` a 16-bit dtype, tanh's derivative rounded to ``half``
    (a gradient within ``half``'s unit roundoff of the exact one, entry by entry, plus float32's
    rounding of the derivative);
    else the output, as ``torch.tanh``. Forward values are always those of ``torch.tanh``
    of the widened input, and from a kept input the gradient is torch's bit for bit.
    """
    out_dtype = out_dtype or x.dtype
    if x.is_complex():
        # ctanh returns complex64 whatever it is given; from complex32 its values are float16's,
        # so the cast back is exact, and the FFT after it runs in the dtype the layer records
        return ctanh(x.to(out_dtype)).to(out_dtype)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return torch.tanh(x.to(out_dtype))
    if keep_input or x.dtype.itemsize <= 2:  # x is kept anyway, or as narrow as anything we could keep
        return _TanhKeptNarrow.apply(x, out_dtype, None)
    if half is not None:
        return _TanhKeptNarrow.apply(x, out_dtype, half)
    return torch.tanh(x.to(out_dtype))
