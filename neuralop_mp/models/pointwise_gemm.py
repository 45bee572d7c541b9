"""1x1 convolutions as matrix products, one per sample (CPU speed).

The 1x1 convolutions of an FNO (each block's skip and channel MLP, the lifting and the
projection) are ``nn.Conv1d`` layers with kernel size 1 on ``(batch, channels, points)``
tensors: per sample, ``out[b] = W @ x[b] + bias``. On a CPU, torch runs them as
convolutions, which in the pointwise tiles (:mod:`.pointwise_tiles`) costs more than the
product itself:

- in float32, the convolution copies each tile (a strided slice of the grid) to a
  contiguous buffer and fills its output with the bias before the product; the product
  reads the slice where it is and adds the bias in the product (``addmm``): an FNO or
  TFNO step at 256^2, batch 2 took about 4% less time (2-core AVX512-BF16 EPYC, one
  thread);
- under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (autocast scope "model" or
  "fno_blocks", the paper's recipe), oneDNN's bfloat16 convolution is no faster than
  float32's on a CPU with bfloat16 units (1.7 against 2.2 ms forward for 64 channels and
  16384 points), while the bfloat16 matrix product takes 0.8 ms, and its backward (two
  more products per sample) about 1.6 ms against the convolution's 4.1 ms.

:func:`pointwise_product` computes the layer so. In float32: float32 products, the
convolution's numbers up to the order of float32 sums. Under autocast: autocast's
numbers, the input, the weight and the bias rounded to the 16-bit type, the products
accumulated in float32 and rounded once to the 16-bit type, the input's gradient in the
16-bit type; the weight's and the bias's gradients are summed over the samples in
float32 (each sample's weight product rounded to the 16-bit type first) and rounded to
the 16-bit type once, where the convolution rounds its whole sum once. A caller that
runs a layer on several tiles (or recompute's slices, replayed in backward) passes a
``casts`` dict for the call: the weight and the bias are cast once, on the first tile, as
autocast's convolution reuses one cast per forward; each tile's weight gradient still
reaches the parameter on its own, rounded to the 16-bit type and summed over the tiles in
the parameter's type. Saved for backward: the (rounded) input, as the convolution saves
it, and the (cast) weight. Second derivatives work: a backward that builds a graph runs
differentiable products instead.

:func:`pointwise_product_dtype` says when and in which type it applies: on a CPU, in
float32 outside autocast, and inside CPU autocast with a 16-bit type the CPU multiplies
natively (:func:`~neuralop_mp.layers.complex_half.native_half_matmul`); elsewhere the
callers run upstream's modules unchanged.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (the layers outside the spectral
   convolution under autocast).
"""
import torch
from neuralop.layers.skip_connections import Flattened1dConv
from torch import nn

from ..layers.complex_half import native_half_matmul

__all__ = ["channel_mlp_products", "is_pointwise_conv", "mlp_is_products", "pointwise_product",
           "pointwise_product_dtype", "skip_is_product", "skip_product"]


def pointwise_product_dtype(x):
    """The type the 1x1 convolutions of ``x`` run in as matrix products, or None (run the
    modules): ``x`` on a CPU, and either CPU autocast with a type the CPU multiplies
    natively, or no CPU autocast; ``x`` in float32 (or already in the 16-bit type) either way."""
    if x.device.type != "cpu" or x.ndim < 3:  # (channels, points) without a batch: the modules
        return None
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        # autocast casts float32 (a 16-bit input stays); it leaves float64 alone, so do we
        return dtype if x.dtype in (torch.float32, dtype) and native_half_matmul(dtype, x.device) else None
    return torch.float32 if x.dtype == torch.float32 else None


def is_pointwise_conv(module):
    """Whether ``module`` is a plain ``nn.Conv1d`` with kernel size 1 (no stride, padding,
    dilation or groups) whose forward is ``nn.Conv1d``'s own: a matrix product per sample."""
    return (type(module) is nn.Conv1d and "forward" not in module.__dict__ and module.kernel_size == (1,)
            and module.stride == (1,) and module.padding in ((0,), "valid") and module.dilation == (1,)
            and module.groups == 1 and module.weight.is_floating_point())


# Batches of at most this many samples run one product per sample, the loop torch's
# float32 convolution of a 1x1 kernel runs on one thread (the same numbers there, bit for
# bit: tests compare tiled and whole-grid runs exactly; torch loops up to 15 samples, so
# batches of 9-15 differ from it by float32 rounding); larger ones one batched
# product (many small samples: 1.5 against 2.2 ms for 128 samples of 128 points in float32,
# 0.8 against 3.6 ms in bfloat16, on the AVX512-BF16 EPYC). The weight's gradient of a
# large bfloat16 batch is the slow case the other way round (3.7 against 0.7 ms batched
# for 2 samples of 8192 points), hence per sample for small batches.
PER_SAMPLE_BATCH = 8


class _PointwiseProduct(torch.autograd.Function):
    """``out[b] = W x[b] + bias`` for every sample ``b``, ``x``, ``weight`` and ``bias`` of one
    dtype; ``weight`` and ``bias`` are detached casts of ``weight_param`` and ``bias_param``,
    which receive their gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_param, bias_param):
        # the caller casts every operand once; nothing here is autocast's to cast again
        with torch.autocast("cpu", enabled=False):
            if x.shape[0] > PER_SAMPLE_BATCH:
                batched = weight.expand(x.shape[0], -1, -1)
                out = torch.bmm(batched, x) if bias is None else torch.baddbmm(bias[None, :, None], batched, x)
            else:
                out = x.new_empty(x.shape[0], weight.shape[0], x.shape[2])
                for i in range(x.shape[0]):
                    if bias is None:
                        torch.mm(weight, x[i], out=out[i])
                    else:
                        torch.addmm(bias.unsqueeze(1), weight, x[i], out=out[i])
        ctx.save_for_backward(x, weight)
        # not saved: only a backward that builds a graph reads the parameter (to cast it again,
        # differentiably), and saving it would refuse an in-place update of it before backward
        # in 16 bits, where the saved weight is a copy (as autocast's convolution saves its cast)
        ctx.weight_param = weight_param
        ctx.bias_dtype = None if bias_param is None else bias_param.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, _, _, need_w, need_b = ctx.needs_input_grad
        param = ctx.weight_param
        # a backward called inside autocast must not round these products (nor the float32 ones)
        with torch.autocast("cpu", enabled=False):
            grad = grad.to(x.dtype)
            if torch.is_grad_enabled():  # a backward that builds a graph (second derivatives)
                weight = param.squeeze(-1).to(weight.dtype)  # the same values, now a function of the parameter
                grad_w = torch.matmul(grad, x.transpose(1, 2)).sum(0) if need_w else None
                return (torch.matmul(weight.t(), grad) if need_x else None, None, None,
                        grad_w.to(param.dtype).view_as(param) if need_w else None,
                        grad.sum((0, 2)).to(ctx.bias_dtype) if need_b else None)
            grad_x = grad_w = grad_b = None
            per_sample = x.shape[0] <= PER_SAMPLE_BATCH
            if need_x and per_sample:
                grad_x = grad.new_empty(x.shape)
                for i in range(x.shape[0]):
                    torch.mm(weight.t(), grad[i], out=grad_x[i])
            elif need_x:
                grad_x = torch.bmm(weight.t().expand(x.shape[0], -1, -1), grad)
            if need_w and per_sample:
                grad_w = weight.new_zeros(weight.shape, dtype=torch.float32)
                for i in range(x.shape[0]):
                    grad_w.add_(torch.mm(grad[i], x[i].t()).float())
            elif need_w:
                grad_w = torch.bmm(grad, x.transpose(1, 2)).float().sum(0)
            # rounded to the product's type, then given to the parameter in its own type: each
            # tile's gradient is summed into the parameter's in that type, not in the 16-bit one
            if need_w:
                grad_w = grad_w.to(weight.dtype).to(param.dtype).view_as(param)
            if need_b:
                grad_b = grad.sum((0, 2), dtype=torch.float32).to(weight.dtype).to(ctx.bias_dtype)
        return grad_x, None, None, grad_w, grad_b


def pointwise_product(x, conv, dtype, casts=None):
    """``conv(x)`` for a 1x1 ``nn.Conv1d`` (see :func:`is_pointwise_conv`) and ``x`` of shape
    ``(batch, in_channels, points)``, with the input, the weight and the bias cast to
    ``dtype`` (float32, or autocast's 16-bit type inside CPU autocast): the output in
    ``dtype``; gradients for ``x``, the weight and the bias as autograd expects.

    ``casts``, a dict the caller keeps for one call in one ``dtype``, holds each layer's cast
    weight and bias from its first tile on, so that the other tiles reuse them."""
    operands = None if casts is None else casts.get(conv)
    if operands is None:
        # detached: each tile's gradient goes to the parameter itself (see _PointwiseProduct)
        operands = (conv.weight.detach().squeeze(-1).to(dtype),
                    None if conv.bias is None else conv.bias.detach().to(dtype))
        if casts is not None:
            casts[conv] = operands
    return _PointwiseProduct.apply(x.to(dtype), *operands, conv.weight, conv.bias)


def skip_is_product(skip):
    """Whether ``skip`` is upstream's ``Flattened1dConv`` around a 1x1 convolution, run by
    its class's forward (:func:`skip_product` computes it)."""
    return type(skip) is Flattened1dConv and "forward" not in skip.__dict__ and is_pointwise_conv(skip.conv)


def skip_product(skip, x, dtype, casts=None):
    """``skip(x)`` with its convolution as :func:`pointwise_product` in ``dtype`` (and its
    ``casts``), for a skip that :func:`skip_is_product`."""
    size = x.shape
    out = pointwise_product(x.reshape(*size[:2], -1), skip.conv, dtype, casts)
    return out.view(size[0], skip.conv.out_channels, *size[2:])


def mlp_is_products(mlp):
    """Whether every layer of the ``ChannelMLP`` ``mlp`` is a 1x1 convolution that
    :func:`pointwise_product` computes. The caller has checked that ``mlp`` runs upstream's
    ``ChannelMLP.forward`` without dropout (a mask is drawn per call): the pointwise tiles'
    rule for slicing it (``mlp_sliceable``)."""
    return all(is_pointwise_conv(fc) for fc in mlp.fcs)


def channel_mlp_products(mlp, x, dtype, casts=None):
    """``ChannelMLP.forward(mlp, x)`` step for step, its layers as :func:`pointwise_product`
    in ``dtype`` (and its ``casts``), for an ``mlp`` that :func:`mlp_is_products`."""
    size = x.shape
    h = x.reshape(*size[:2], -1) if x.ndim > 3 else x
    for i, fc in enumerate(mlp.fcs):
        h = pointwise_product(h, fc, dtype, casts)
        if i < mlp.n_layers - 1:
            h = mlp.non_linearity(h)
    return h.reshape(size[0], mlp.out_channels, *size[2:]) if x.ndim > 3 else h
