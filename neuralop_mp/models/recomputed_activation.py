"""A two-layer channel MLP whose hidden activation is recomputed in backward, not kept.

Upstream's ``ChannelMLP`` with two layers (the lifting and the projection of an FNO)
computes ``fc2(act(fc1(x)))``. For backward autograd keeps fc1's input ``x``, the
activation's input ``h`` (for its derivative) and fc2's input ``a = act(h)``. ``h`` and
``a`` have the hidden width, twice the model's by default: with 64 channels on a
1024^2 grid in batches of 4 each is 1 GiB in 16 bits, and the two MLPs' ``a`` are 2 of
the 13.6 GiB a mixed-precision FNO keeps. Here the MLP runs under
``torch.utils.checkpoint`` (non-reentrant) and backward computes it again:

- where ``x`` takes no more bytes than ``h`` (the lifting: 3 input channels against 128
  hidden ones; the projection: 64 against 128), the whole MLP: only ``x`` is kept,
  and backward runs fc1, the activation and fc2 again. For the lifting that is ``h``
  (1 GiB in the example above) less at the cost of a 1x1 convolution from 3 channels;
  for the projection, whose ``x`` fc1 keeps anyway, ``h`` less for one more 1x1
  convolution;
- otherwise ``fc2(act(.))``: ``x`` and ``h`` are kept, and backward computes ``act(h)``
  and fc2 again (one elementwise kernel and one 1x1 convolution more).

The whole MLP runs a slice of grid points at a time
(:func:`~.pointwise_chunks.pointwise_in_chunks`) where its hidden layer would take more
than :data:`~neuralop_mp.chunk_budget.DEVICE_CHUNK_BYTES` (256 MiB): ``h`` and ``a`` are
then never alive at full size, in the forward (the projection runs at its end, where
everything the forward keeps is alive) nor in the replay. With 64 channels at 1024^2
in batches of 4 in 16 bits that is 4 slices, and 1.5 of the 2 GiB ``h`` and ``a`` take
together at once. Below that size (every grid up to 512^2 at that width and batch) it is
one call, as a GPU step at those sizes is bound by kernel launches.

The numbers are upstream's, bit for bit: the same operations in the same dtypes (the
checkpoint replays them under the autocast state of the forward), and second
derivatives (``create_graph=True``) work as without it. In slices, each point's output
is computed by the same operations, and the weights' gradients are summed slice by
slice (float32 rounding, no more).
"""
import functools

import torch
from torch.utils.checkpoint import checkpoint

from .. import chunk_budget
from .pointwise_chunks import pointwise_in_chunks


def recomputes_activation(mlp):
    """Whether :func:`mlp_recomputing_activation` runs ``mlp``, an upstream ``ChannelMLP``
    (its caller's check): two layers, the shape the lifting and projection have."""
    return mlp.n_layers == 2


def mlp_recomputing_activation(mlp, x):
    """``mlp(x)`` for a two-layer ``ChannelMLP`` without dropout (see
    :func:`recomputes_activation`), keeping the smaller of its input and its hidden
    activation's input for backward, and neither the activation's output nor what its
    second layer would keep."""
    size = list(x.shape)
    flat = x.reshape(*size[:2], -1) if x.ndim > 3 else x
    fc1, fc2 = mlp.fcs
    hidden_size = _hidden_element_size(flat)
    if fc1.in_channels * flat.element_size() <= fc1.out_channels * hidden_size:  # x is the smaller
        slice_points = max(1, chunk_budget.DEVICE_CHUNK_BYTES // (fc1.out_channels * hidden_size))
        y = pointwise_in_chunks(functools.partial(type(mlp).forward, mlp), flat, slice_points)
    else:
        y = checkpoint(_activation_then, fc2, mlp.non_linearity, fc1(flat), use_reentrant=False)
    return y.reshape(size[0], mlp.out_channels, *size[2:]) if x.ndim > 3 else y


def _hidden_element_size(x):
    # bytes per element of fc1(x): autocast's type where autocast is on (and casts x)
    device_type = x.device.type
    dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
             and x.dtype in (torch.float32, torch.float16, torch.bfloat16) else x.dtype)
    return dtype.itemsize


def _activation_then(fc, activation, h):
    return fc(activation(h))
