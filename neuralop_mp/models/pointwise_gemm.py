"""1x1 convolutions under CPU autocast as 16-bit matrix products (CPU speed).

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (autocast scope "model" or
"fno_blocks", the paper's recipe) every 1x1 convolution of an FNO block (its skip, its
channel MLP) and of the lifting and projection runs in bfloat16 through oneDNN's
convolution. On a CPU with bfloat16 matrix units that convolution is no faster than
float32's (1.7 against 2.2 ms forward for 64 channels and 16384 points on a 2-core
AVX512-BF16 EPYC, one thread), while the same product written as one matrix product
per sample, ``out[b] = W @ x[b] + bias``, takes 0.8 ms, and its backward (two more
products per sample) about 1.6 ms against the convolution's 4.1 ms.

:func:`pointwise_product` computes a ``Conv1d`` with kernel size 1 that way, with
autocast's numbers: the input, the weight and the bias rounded to the 16-bit type,
products accumulated in float32 by the matrix kernel and the output rounded once to the
16-bit type, the input's gradient in the 16-bit type. Two sums differ from autocast's
convolution in where they round: the weight's gradient is summed over the samples in
float32 (each sample's product rounded to the 16-bit type first: at most the batch's
worth of roundings, where the convolution rounds once), and the bias's gradient is summed
in float32 without rounding. Only the 16-bit input is saved for backward, as autocast's
convolution saves it.

:func:`autocast_gemm_dtype` says when it applies: on a CPU, inside CPU autocast, with an
autocast type the CPU multiplies natively (:func:`~neuralop_mp.layers.complex_half.native_half_matmul`);
elsewhere the callers (the pointwise tiles, :mod:`.pointwise_tiles`) run upstream's
modules unchanged.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (the layers outside the spectral
   convolution under autocast).
"""
import torch
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.skip_connections import Flattened1dConv
from torch import nn

from ..layers.complex_half import native_half_matmul

__all__ = ["autocast_gemm_dtype", "channel_mlp_products", "is_pointwise_conv", "mlp_is_products", "pointwise_product",
           "skip_is_product", "skip_product"]


def autocast_gemm_dtype(x):
    """The 16-bit type 1x1 convolutions of ``x`` run in as matrix products, or None: CPU
    autocast is on, ``x`` is on the CPU and the CPU multiplies autocast's type natively."""
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return None
    dtype = torch.get_autocast_dtype("cpu")
    return dtype if native_half_matmul(dtype, x.device) else None


def is_pointwise_conv(module):
    """Whether ``module`` is a plain ``nn.Conv1d`` with kernel size 1 (no stride, padding,
    dilation or groups) whose forward is ``nn.Conv1d``'s own: a matrix product per sample."""
    return (type(module) is nn.Conv1d and "forward" not in module.__dict__ and module.kernel_size == (1,)
            and module.stride == (1,) and module.padding in ((0,), "valid") and module.dilation == (1,)
            and module.groups == 1 and module.weight.is_floating_point())


class _PointwiseProduct(torch.autograd.Function):
    """``out[b] = W x[b] + bias`` in ``dtype``, one matrix product per sample."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        # out= products are not autocast's to cast: every operand is cast here, once
        with torch.autocast("cpu", enabled=False):
            x16, w16 = x.to(dtype), weight.to(dtype)
            out = x16.new_empty(x.shape[0], weight.shape[0], x.shape[2])
            if bias is None:
                for i in range(x.shape[0]):
                    torch.mm(w16, x16[i], out=out[i])
            else:
                b16 = bias.to(dtype).unsqueeze(1)
                for i in range(x.shape[0]):
                    torch.addmm(b16, w16, x16[i], out=out[i])
        ctx.save_for_backward(x16, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x16, weight = ctx.saved_tensors
        grad = grad.to(x16.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            w16_t = weight.to(x16.dtype).t()
            grad_x = grad.new_empty(x16.shape)
            for i in range(x16.shape[0]):
                torch.mm(w16_t, grad[i], out=grad_x[i])
        if ctx.needs_input_grad[1]:
            for i in range(x16.shape[0]):
                part = torch.mm(grad[i], x16[i].t()).float()
                grad_w = part if grad_w is None else grad_w.add_(part)
            grad_w = grad_w.to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2), dtype=torch.float32)
        return grad_x, grad_w, grad_b, None


def pointwise_product(x, conv, dtype):
    """``conv(x)`` under CPU autocast in ``dtype``, for a 1x1 ``nn.Conv1d`` (see
    :func:`is_pointwise_conv`) and ``x`` of shape ``(batch, in_channels, points)``: the
    output in ``dtype``; gradients for ``x``, the weight and the bias as autograd expects."""
    weight = conv.weight.squeeze(-1)
    bias = conv.bias
    if bias is not None:
        bias = bias.to(weight.dtype)
    return _PointwiseProduct.apply(x, weight, bias, dtype)


def skip_is_product(skip):
    """Whether ``skip`` is upstream's ``Flattened1dConv`` around a 1x1 convolution, run by
    its class's forward (:func:`skip_product` computes it)."""
    return type(skip) is Flattened1dConv and "forward" not in skip.__dict__ and is_pointwise_conv(skip.conv)


def skip_product(skip, x, dtype):
    """``skip(x)`` under CPU autocast in ``dtype``, for a skip that :func:`skip_is_product`."""
    size = x.shape
    out = pointwise_product(x.reshape(*size[:2], -1), skip.conv, dtype)
    return out.view(size[0], skip.conv.out_channels, *size[2:])


def mlp_is_products(mlp):
    """Whether ``mlp`` is upstream's ``ChannelMLP`` (its class's forward) of 1x1 convolutions
    without dropout (a mask is drawn per call): :func:`channel_mlp_products` computes it.
    The caller checks that nothing replaced the instance's forward."""
    return (isinstance(mlp, ChannelMLP) and type(mlp).forward is ChannelMLP.forward and mlp.dropout is None
            and all(is_pointwise_conv(fc) for fc in mlp.fcs))


def channel_mlp_products(mlp, x, dtype):
    """``ChannelMLP.forward(mlp, x)`` under CPU autocast in ``dtype``, step for step, its
    layers as :func:`pointwise_product`, for an ``mlp`` that :func:`mlp_is_products`."""
    size = x.shape
    h = x.reshape(*size[:2], -1) if x.ndim > 3 else x
    for i, fc in enumerate(mlp.fcs):
        h = pointwise_product(h, fc, dtype)
        if i < mlp.n_layers - 1:
            h = mlp.non_linearity(h)
    return h.reshape(size[0], mlp.out_channels, *size[2:]) if x.ndim > 3 else h
