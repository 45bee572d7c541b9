"""A two-layer channel MLP whose hidden activation is recomputed in backward, not kept.

Upstream's ``ChannelMLP`` with two layers (the lifting and the projection of an FNO)
computes ``fc2(act(fc1(x)))``. For backward autograd keeps fc1's input ``x``, the
activation's input ``h`` (for its derivative) and fc2's input ``a = act(h)``. ``h`` and
``a`` have the hidden width, twice the model's by default: with 64 channels on a
1024^2 grid in batches of 4 each is 1 GiB in 16 bits, and the two MLPs' ``a`` are 2 of
the 13.6 GiB a mixed-precision FNO keeps. Here ``fc2(act(.))`` runs under
``torch.utils.checkpoint`` (non-reentrant): only ``h`` is kept, and backward computes
``act(h)`` and fc2 again (one elementwise kernel and one 1x1 convolution more).

The numbers are upstream's, bit for bit: the same operations in the same dtypes (the
checkpoint replays them under the autocast state of the forward), and second
derivatives (``create_graph=True``) work as without it.
"""
import torch
from torch.utils.checkpoint import checkpoint


def recomputes_activation(mlp):
    """Whether :func:`mlp_recomputing_activation` runs ``mlp``, an upstream ``ChannelMLP``
    (its caller's check): two layers, the shape the lifting and projection have."""
    return mlp.n_layers == 2


def mlp_recomputing_activation(mlp, x):
    """``mlp(x)`` for a two-layer ``ChannelMLP`` without dropout (see
    :func:`recomputes_activation`), keeping its hidden activation's input but not its
    output for backward."""
    size = list(x.shape)
    flat = x.reshape(*size[:2], -1) if x.ndim > 3 else x
    fc1, fc2 = mlp.fcs
    y = checkpoint(_activation_then, fc2, mlp.non_linearity, fc1(flat), use_reentrant=False)
    return y.reshape(size[0], mlp.out_channels, *size[2:]) if x.ndim > 3 else y


def _activation_then(fc, activation, h):
    return fc(activation(h))
