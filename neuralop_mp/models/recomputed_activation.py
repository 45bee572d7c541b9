"""A two-layer channel MLP whose hidden activation is recomputed in backward, not kept.

Upstream's ``ChannelMLP`` with two layers (the lifting and the projection of an FNO)
computes ``fc2(act(fc1(x)))``. For backward autograd keeps fc1's input ``x``, the
activation's input ``h`` (for its derivative) and fc2's input ``a = act(h)``. ``h`` and
``a`` have the hidden width, twice the model's by default: with 64 channels on a
1024^2 grid in batches of 4 each is 1 GiB in 16 bits, and the two MLPs' ``a`` are 2 of
the 13.6 GiB a mixed-precision FNO keeps. ``a`` is a cheap elementwise function of
``h``, so here backward computes it again from ``h`` instead.

The numbers are upstream's, bit for bit: the same kernels (the 1x1 convolution forward,
``convolution_backward`` for its gradients, the activation's own backward through
autograd) on the same dtypes, with the casts autocast would make done here the way it
makes them (16-bit operands, float32 weight gradients).
"""
import torch
import torch.nn.functional as F


def _autocast_dtype(device_type):
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def _conv_backward(grad, inp, weight, has_bias):
    return torch.ops.aten.convolution_backward(
        grad, inp, weight, [weight.shape[0]] if has_bias else None, [1], [0], [1], False, [0], 1,
        [True, True, has_bias])


class _RecomputedActivationMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, activation, w1, b1, w2, b2):
        device_type = x.device.type
        dtype = _autocast_dtype(device_type)

        def cast(t):
            return t if t is None or dtype is None or not t.is_floating_point() else t.to(dtype)

        with torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else _null():
            xc, w1c, b1c, w2c, b2c = (cast(t) for t in (x, w1, b1, w2, b2))
            h = F.conv1d(xc, w1c, b1c)
            y = F.conv1d(activation(h), w2c, b2c)
        ctx.activation = activation
        ctx.dtypes = (x.dtype, w1.dtype, None if b1 is None else b1.dtype, w2.dtype, None if b2 is None else b2.dtype)
        ctx.save_for_backward(xc, h, w1c, w2c)  # not activation(h): recomputed below
        return y

    @staticmethod
    def backward(ctx, grad):
        xc, h, w1c, w2c = ctx.saved_tensors
        x_dtype, w1_dtype, b1_dtype, w2_dtype, b2_dtype = ctx.dtypes
        with torch.enable_grad():
            h = h.detach().requires_grad_()
            a = ctx.activation(h)
        grad = grad.to(a.dtype)
        grad_a, grad_w2, grad_b2 = _conv_backward(grad, a.detach(), w2c, b2_dtype is not None)
        (grad_h,) = torch.autograd.grad(a, h, grad_a)
        del a, grad_a
        grad_x, grad_w1, grad_b1 = _conv_backward(grad_h, xc, w1c, b1_dtype is not None)
        return (
            grad_x.to(x_dtype) if ctx.needs_input_grad[0] else None,
            None,
            grad_w1.to(w1_dtype),
            None if grad_b1 is None else grad_b1.to(b1_dtype),
            grad_w2.to(w2_dtype),
            None if grad_b2 is None else grad_b2.to(b2_dtype),
        )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def recomputes_activation(mlp):
    """Whether :func:`mlp_recomputing_activation` runs ``mlp``: two 1x1 convolutions of
    upstream's ``ChannelMLP`` (stride 1, no padding, one group) around an activation."""
    fcs = getattr(mlp, "fcs", None)
    return (getattr(mlp, "n_layers", None) == 2 and fcs is not None and len(fcs) == 2
            and all(isinstance(fc, torch.nn.Conv1d) and fc.kernel_size == (1,) and fc.stride == (1,)
                    and fc.padding == (0,) and fc.dilation == (1,) and fc.groups == 1 for fc in fcs))


def mlp_recomputing_activation(mlp, x):
    """``mlp(x)`` for a two-layer ``ChannelMLP`` without dropout (see
    :func:`recomputes_activation`), keeping its hidden activation's input but not its
    output for backward."""
    size = list(x.shape)
    flat = x.reshape(*size[:2], -1) if x.ndim > 3 else x
    fc1, fc2 = mlp.fcs
    y = _RecomputedActivationMLP.apply(flat, mlp.non_linearity, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    return y.reshape(size[0], mlp.out_channels, *size[2:]) if x.ndim > 3 else y
