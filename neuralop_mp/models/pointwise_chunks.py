"""Recompute in backward of a pointwise module, a chunk of grid points at a time.

A module that acts on each grid point on its own (a channel MLP: 1x1 convolutions and
an activation) gives, on a slice of the grid, the same slice of its output. So it can
run on one slice of points after another, each slice under
``torch.utils.checkpoint`` (non-reentrant): the forward keeps only the module's input
for backward, and the replay in backward rebuilds one slice's hidden tensors at a
time, back-propagates through them and frees them before the next slice. The widest
tensors of an FNO's lifting and projection (their hidden layers, twice the hidden
channels wide) are then never alive at full resolution, neither in the forward nor in
the replay.

A slice is a few whole samples where a sample fits one, otherwise a slice of the first
spatial dimension across the batch (:func:`split_points`, the rule
:mod:`~neuralop_mp.models.pointwise_tiles` cuts tiles by too, so that sliced recompute
and the tiles of a run without recompute compute the same pieces); each slice is a view
of the input, so what is kept for backward is the input's own storage, not a copy.
Each point's output is computed by the same operations as without slicing; the
gradients of the module's weights are summed over the points slice by slice instead of
in one reduction, a different order of float32 additions.

References
----------
.. [1] T. Chen, B. Xu, C. Zhang, C. Guestrin, "Training Deep Nets with Sublinear
   Memory Cost", arXiv:1604.06174, 2016.
"""
import math

import torch
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.fno_block import FNOBlocks
from torch.utils.checkpoint import checkpoint


__all__ = ["DEFAULT_CHUNK_POINTS", "pointwise_in_chunks", "pointwise_in_slices", "pointwise_targets",
           "split_points"]

# Grid points (batch x spatial) per slice. A 128-channel float32 hidden tensor of this
# many points is 8 MiB; fewer points per slice would add per-slice overhead (each
# slice is a separate matmul and checkpoint) for little memory.
DEFAULT_CHUNK_POINTS = 16384


def pointwise_targets(model):
    """The ``ChannelMLP`` modules of ``model`` outside its ``FNOBlocks``: the ones
    ``"block"`` recompute in slices of grid points (lifting and projection of FNO, TFNO
    and UNO). Those inside a block are recomputed with it; one that slices would change
    (dropout, an activation that is not elementwise, a subclass's own forward:
    :func:`~neuralop_mp.models.pointwise_tiles.mlp_sliceable`) is recomputed whole instead."""
    inside_blocks = {id(m) for block in model.modules() if isinstance(block, FNOBlocks) for m in block.modules()}
    return [m for m in model.modules() if isinstance(m, ChannelMLP) and id(m) not in inside_blocks]


def split_points(shape, points):
    """``(dim, size)`` to cut a ``(batch, channels, *spatial)`` tensor of ``shape`` into
    pieces of at most ``points`` grid points (batch x spatial) with ``tensor.split(size,
    dim)``, or None when it fits one piece.

    Whole samples per piece where a sample fits one (``dim=0``: contiguous pieces);
    otherwise slices of the first spatial dimension across the batch (``dim=2``), at
    least one row each, so a piece may exceed ``points`` when one row of the batch does.
    """
    if len(shape) < 3:  # every caller cuts through here first: the shape is checked once, before it is read
        raise ValueError(f"pointwise_in_chunks needs (batch, channels, *spatial) input, got shape {tuple(shape)}.")
    per_sample = math.prod(shape[2:])
    if shape[0] * per_sample <= points:
        return None
    if per_sample <= points:
        return 0, points // per_sample
    rows = max(1, points // (shape[0] * math.prod(shape[3:])))
    return (2, rows) if rows < shape[2] else None


def pointwise_in_chunks(forward, x, chunk_points=DEFAULT_CHUNK_POINTS):
    """``forward(x)`` computed and recomputed in backward a slice of grid points at a time.

    Parameters
    ----------
    forward : callable
        A pointwise map of ``(batch, channels, *spatial)`` tensors: each grid point's
        output depends only on that point's input (no norm across points, no dropout,
        whose random mask would differ between sliced and whole calls).
    x : torch.Tensor
        Input of shape ``(batch, channels, n_1, ...)``, at least one spatial dimension.
    chunk_points : int
        Most grid points (batch x spatial) per slice.

    Returns
    -------
    torch.Tensor
        ``forward(x)``: a plain (checkpointed) call when ``x`` fits one slice; without
        grad mode the same slices, not checkpointed (the pieces a tiled run computes,
        :mod:`~neuralop_mp.models.pointwise_tiles`, so evaluation gives the same sums).
    """
    return pointwise_in_slices(forward, x, split_points(x.shape, chunk_points))


def pointwise_in_slices(forward, x, split):
    """:func:`pointwise_in_chunks` with the cut already decided: ``split`` is
    :func:`split_points`' ``(dim, size)`` for ``x``, or None (one slice), for a caller that
    decides other things by it first (recompute's 1x1 products), so that it is computed once
    (:func:`split_points` refuses an input of fewer than 3 dimensions)."""
    if not torch.is_grad_enabled():
        return forward(x) if split is None else torch.cat([forward(part) for part in x.split(*split[::-1])], split[0])
    if split is None:
        return checkpoint(forward, x, use_reentrant=False)
    # torch.cat keeps nothing for backward: the slices' outputs are freed once joined
    return torch.cat([checkpoint(forward, part, use_reentrant=False) for part in x.split(*split[::-1])], split[0])
