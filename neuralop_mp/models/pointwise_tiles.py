"""The pointwise work of an FNO, a tile of grid points at a time (CPU speed).

After its spectral convolution, an FNO block only does pointwise work: the skip (a 1x1
convolution), the sum, the activation, the channel MLP (two 1x1 convolutions around
an activation), the soft-gating skip and the last activation; the lifting and the
projection are channel MLPs too. On the whole grid every one of these operations
reads and writes a tensor of batch x channels x points floats (32 MiB at 64 channels,
256^2, batch 2), far more than a CPU core's caches hold, so a CPU step spends most of
its time waiting on memory. Applied to one tile of grid points at a time (a few whole
samples, or a slice of the first spatial dimension across the batch where one sample
is larger), a tile's intermediates stay in cache from one operation to the next: at
256^2 the part of an FNO step that the spectral layers do not touch took 8-16% less
time on a 2-core CPU (docs/training.md, "Pointwise work in tiles").

Each point's output is computed by the same operations, in the same order, as on the
whole grid; the matrix kernels may order a point's sum over channels differently for a
tile than for the whole grid, and the gradients of the weights are summed over the
points tile by tile instead of in one reduction: float32 rounding differences, no more.
What is saved for backward is the same tensors, cut in tiles.

Tiles apply only where they are exact and pay:

- on CPU (on a GPU, one kernel over the whole grid is what is fast);
- when the grid has more points than one tile;
- in blocks with post-activation, no norm, real data, no dropout in the channel MLP,
  an elementwise activation, and no resampling (no ``output_shape``, no
  ``resolution_scaling_factor``: UNO's blocks); other blocks and calls run upstream's
  forward, unchanged.

Where tiles do not run on a GPU, the lifting and projection keep only their input and
recompute the rest in backward (:mod:`.recomputed_activation`, the same numbers): on a
1024^2 grid 4 GiB less than upstream's MLPs keep, of the 13.6 GiB a mixed-precision FNO
keeps for backward with them. A block
with the tanh stabilizer keeps the block's input for tanh's backward, which its skip
keeps anyway, instead of tanh's output (:func:`~neuralop_mp.layers.stabilizer.tanh_stabilizer`,
the same numbers), tiled or not.

The 1x1 convolutions of the tiles (the skips, the channel MLPs, the lifting and the
projection) run as matrix products, one per sample (:mod:`.pointwise_gemm`): in float32,
reading each tile where it is instead of copying it (the same numbers up to the order of
float32 sums), and under CPU autocast with a 16-bit type the CPU multiplies natively
(autocast scope "model" or "fno_blocks" on a CPU with bfloat16 units) as 16-bit products
with autocast's numbers, 2-2.6x faster than oneDNN's 16-bit convolution there; in that
case a grid of one tile's worth of points runs this tiled forward too, as one tile.

A hook sees what it sees without tiles: a tiled call falls back to upstream's forward
when a forward or backward hook (or a global one) sits on a module it would call once
per tile (a skip, a channel MLP or one of its layers, the block's activation where it is
a module), and hooks on the block, the lifting or the projection themselves run once
around the tiled call. No parameter or buffer is added:
``state_dict`` keys and checkpoints are unchanged, and the setting is not saved (a
plugin model loaded from a checkpoint tiles by default again).
"""
import functools

import torch
import torch.nn.functional as F
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.skip_connections import Flattened1dConv, SoftGating
from neuralop.layers.spectral_convolution import SpectralConv
from torch import nn
from torch.nn.modules import module as torch_module

from ..vocabulary import check_int_at_least
from ..layers.product_paths import choice_device_type
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..layers.stabilizer import tanh_stabilizer
from .bound_forward import BoundToModule
from .pointwise_chunks import DEFAULT_CHUNK_POINTS, pointwise_targets, split_points
from .pointwise_gemm import (channel_mlp_products, mlp_is_products, pointwise_product_dtype, skip_is_product,
                             skip_product)
from .recomputed_activation import mlp_recomputing_activation, recomputes_activation

__all__ = ["DEFAULT_TILE_POINTS", "describe_pointwise_tiles", "pointwise_tile_points",
           "reinstall_pointwise_tiles", "set_pointwise_tiles"]

# Grid points (batch x spatial) per tile: 4096-16384 timed alike at FNO 256^2 batch 2 (smaller
# tiles pay per-call overhead). Recompute's slice size, so that "block" recompute replays the
# lifting and projection in the pieces the run without recompute computes (the same sums).
DEFAULT_TILE_POINTS = DEFAULT_CHUNK_POINTS

# activations that act on each element alone (a tile gives the same values as the whole grid)
_ELEMENTWISE = (F.gelu, F.relu, torch.relu, F.silu, F.elu, F.leaky_relu, F.tanh, torch.tanh, torch.sigmoid,
                F.sigmoid, F.mish, F.softplus, F.hardswish, F.selu, F.celu, F.relu6, F.hardtanh, F.hardsigmoid)
_ELEMENTWISE_MODULES = (nn.GELU, nn.ReLU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Mish,
                        nn.Softplus, nn.Hardswish, nn.SELU, nn.CELU, nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid)
# upstream's skips: each acts on every grid point alone
_POINTWISE_SKIPS = (Flattened1dConv, SoftGating, nn.Identity)
_RECORD = "_pointwise_tile_points"  # the setting, kept on each tiled module


def _device_type(x):
    """The device type this module's choices for ``x`` are made for: ``x``'s, unless
    :func:`~neuralop_mp.layers.product_paths.force_device_choices` forces another. Forced
    "cuda" on a CPU gives a GPU step's choices: the whole grid (no tiles), upstream's 1x1
    modules, and the lifting and projection recomputed (:func:`recomputes_on`); the matrix
    products of 1x1 convolutions (:func:`~.pointwise_gemm.pointwise_product_dtype`) run only
    on a CPU tensor, whatever is forced."""
    return choice_device_type(x.device)


def _tiling(x, tile_points):
    """``(dim, size)`` to split ``x`` into tiles along (:func:`~.pointwise_chunks.split_points`,
    the rule of recompute's slices), or None when tiles do not apply."""
    if _device_type(x) != "cpu" or x.ndim < 3:
        return None
    return split_points(x.shape, tile_points)


def _elementwise(activation):
    # identity, not ==: an activation object may define __eq__ without __hash__
    return any(activation is f for f in _ELEMENTWISE) or isinstance(activation, _ELEMENTWISE_MODULES)


def _seen_whole(modules):
    """Whether these modules may run on tiles or slices and be seen as on the whole grid: no
    forward or backward hook on them or their children, and no global one (a backward hook on a
    module called once per tile would run once per tile, on that tile's gradients; a global
    forward hook too, e.g. torch's ModuleTracker, which FlopCounterMode uses: while one is
    registered the tiles and block recompute's slices run whole); nor a parametrization
    (torch.nn.utils.parametrize), computed again at every read of its weight: once per tile,
    which steps a stateful one such as spectral_norm's power iteration once per tile in training.
    Asked at every call: cheap (dictionary lookups)."""
    if (torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
            or torch_module._global_backward_hooks or torch_module._global_backward_pre_hooks):
        return False
    # "parametrizations" in _modules: parametrize.is_parametrized's own test, without the
    # AttributeError Module.__getattr__ raises and catches for a module without one (3x the cost)
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   or "parametrizations" in m._modules for root in modules for m in root.modules())


def mlp_sliceable(mlp):
    """Whether a ChannelMLP gives the same values run on slices of the grid as on the whole grid:
    upstream's forward (a subclass may do anything), no dropout (a mask drawn per slice would
    differ from one drawn for the whole grid) and an elementwise activation (one across grid
    points, e.g. a softmax, would see a slice). The rule of the tiles and of block recompute."""
    return (isinstance(mlp, ChannelMLP) and type(mlp).forward is ChannelMLP.forward and mlp.dropout is None
            and _elementwise(mlp.non_linearity))


def mlp_sliceable_now(mlp):
    """Whether a ChannelMLP (lifting, projection) may run on slices of the grid now:
    :func:`mlp_sliceable`, and no hook (forward or backward, or a global one) nor parametrization
    on its layers, which a sliced call would run (or compute) once per slice, on that slice
    (:func:`_seen_whole`). A hook on ``mlp`` itself runs once around the sliced call and sees the
    whole grid. Asked at every call, since layers and
    hooks may change after slicing was set: the rule of the tiles and of block recompute."""
    return mlp_sliceable(mlp) and _seen_whole(mlp.children())


def _pointwise_skips(skips):
    return skips is None or all(isinstance(m, _POINTWISE_SKIPS) for m in skips)


def block_tiles_apply(block):
    """Whether the pointwise work of this ``FNOBlocks`` can run in tiles: upstream's own
    post-activation forward (not a subclass's), no norm, real data, elementwise activations,
    upstream's pointwise skips, channel MLPs without dropout, and spectral layers with
    upstream's ``transform`` (the tiled path relies on it being the identity without
    resampling)."""
    return (isinstance(block, FNOBlocks)
            and type(block).forward_with_postactivation is FNOBlocks.forward_with_postactivation
            and not block.preactivation and block.norm is None and not block.complex_data
            and _elementwise(block.non_linearity)
            and _pointwise_skips(block.fno_skips)
            and (not block.use_channel_mlp
                 or (all(mlp_sliceable(m) for m in block.channel_mlp) and _pointwise_skips(block.channel_mlp_skips)))
            and all(type(conv).transform is SpectralConv.transform for conv in block.convs))


def _tail_modules(block, index):
    """The modules :meth:`_TiledPostactivation._tail` calls once per tile for layer ``index``:
    its skips, its channel MLP and, but in the last layer, the block's activation where
    that is a module (one shared by every layer)."""
    parts = [block.fno_skips, block.channel_mlp if block.use_channel_mlp else None,
             block.channel_mlp_skips if block.use_channel_mlp else None]
    modules = [p[index] for p in parts if p is not None]
    if index < block.n_layers - 1 and isinstance(block.non_linearity, nn.Module):
        modules.append(block.non_linearity)
    return modules


class _TiledPostactivation(BoundToModule):
    """An ``FNOBlocks``'s ``forward_with_postactivation``: the spectral layer on the whole
    grid, then the skips, activations and channel MLP a tile at a time."""

    def __init__(self, block, tile_points):
        super().__init__(block)
        self.tile_points = tile_points
        self.last_tiles = None  # tiles of the last call (1: the whole grid)
        self.last_product_dtype = None  # dtype of the last call's 1x1 convolutions as matrix products

    @property
    def block(self):
        return self.module

    def _skips(self, x, index, product_dtype, casts):
        # both skips of x, in upstream's order (the order x's gradients are summed in)
        b = self.block
        fno = _skip(b.fno_skips[index], x, product_dtype, casts) if b.fno_skips is not None else None
        mlp = (_skip(b.channel_mlp_skips[index], x, product_dtype, casts)
               if b.use_channel_mlp and b.channel_mlp_skips is not None else None)
        return fno, mlp

    def _tail(self, x_fno, index, skips, product_dtype, casts):
        # upstream's forward_with_postactivation after its spectral layer, same operations, same order
        b, last = self.block, index == self.block.n_layers - 1
        skip_fno, skip_mlp = skips
        y = x_fno + skip_fno if skip_fno is not None else x_fno
        if not last:
            y = b.non_linearity(y)
        if b.use_channel_mlp:
            mlp = b.channel_mlp[index]
            mlp = (channel_mlp_products(mlp, y, product_dtype, casts)
                   if product_dtype is not None and _runs_as_products(mlp) else mlp(y))
            y = mlp + skip_mlp if skip_mlp is not None else mlp
        if not last:
            y = b.non_linearity(y)
        return y

    def __call__(self, x, index=0, output_shape=None):
        conv = self.block.convs[index]
        tiling = _tiling(x, self.tile_points)
        # a resampling layer (UNO; an FNO's output_shape) needs upstream's transform of the skips;
        # checked at every call, since a block's layers or hooks may change after tiles were set
        ours = (output_shape is None and block_tiles_apply(self.block)
                and getattr(conv, "resolution_scaling_factor", None) is None
                and _seen_whole(_tail_modules(self.block, index)))
        tanh = self.block.stabilizer == "tanh"
        product_dtype = _product_dtype(x, tiling) if ours else None
        self.last_product_dtype = product_dtype
        if not ours or (tiling is None and not tanh and product_dtype is None):
            self.last_tiles = 1
            return type(self.block).forward_with_postactivation(self.block, x, index, output_shape)
        casts = {}  # the 1x1 weights and biases cast to product_dtype once, for every tile
        # the skips keep x for backward: tanh keeps it too instead of its own output (same numbers)
        if tiling is None:  # whole grid (a GPU; one tile's worth of points): upstream's order throughout
            self.last_tiles = 1
            skips = self._skips(x, index, product_dtype, casts)
            return self._tail(_conv_after_tanh(conv, x) if tanh else conv(x), index, skips, product_dtype, casts)
        x_fno = _conv_after_tanh(conv, x) if tanh else conv(x)
        dim, size = tiling
        tiles = [self._tail(ft, index, self._skips(xt, index, product_dtype, casts), product_dtype, casts)
                 for xt, ft in zip(x.split(size, dim), x_fno.split(size, dim))]
        self.last_tiles = len(tiles)
        return torch.cat(tiles, dim)  # cat keeps nothing for backward

    def __reduce__(self):  # a pickled or deep-copied model tiles too
        return (_TiledPostactivation, (self.block, self.tile_points))


def _product_dtype(x, tiling):
    """The dtype the 1x1 convolutions of a tiled call run in as matrix products
    (:mod:`.pointwise_gemm`), or None (the modules). In float32 only where the grid is cut
    in tiles: the product reads a tile where it is, where the convolution copies it; on
    a whole grid the float32 modules stay, upstream's forward bit for bit."""
    dtype = pointwise_product_dtype(x) if _device_type(x) == "cpu" else None
    # float32 pays by reading tiles in place: not with no tiles, nor with strided points (the
    # real part of complex data), which the product would copy as the convolution does
    return None if dtype == torch.float32 and (tiling is None or x.stride(-1) != 1) else dtype


def mlp_piece_forward(mlp, x, tiling, sliceable=None, casts=None):
    """``(forward, dtype)`` for the pieces of ``x`` (cut by ``tiling``) of the lifting or
    projection ``mlp``: ``forward(mlp, piece)`` is the class's forward, its 1x1 convolutions
    as matrix products in ``dtype`` where those apply (else ``dtype`` is None). The rule of
    the tiles, shared with recompute's slices so that both compute the same sums;
    ``sliceable`` is the caller's :func:`mlp_sliceable_now`, if it asked it;
    ``casts``, a dict for one call, makes the products cast the weights once for every piece
    (see :func:`~.pointwise_gemm.pointwise_product`)."""
    if sliceable is None:
        sliceable = mlp_sliceable_now(mlp)
    dtype = _product_dtype(x, tiling) if sliceable and mlp_is_products(mlp) else None
    if dtype is None:
        return type(mlp).forward, None
    return functools.partial(channel_mlp_products, dtype=dtype, casts=casts), dtype


def _skip(skip, x, product_dtype, casts):
    if product_dtype is not None and skip_is_product(skip):
        return skip_product(skip, x, product_dtype, casts)
    return skip(x)


def _runs_as_products(mlp):
    # a block's channel MLP (upstream's forward without dropout: block_tiles_apply) of 1x1
    # convolutions, with no forward replaced on the instance
    return mlp_is_products(mlp) and "forward" not in mlp.__dict__


def _conv_after_tanh(conv, x):
    """``conv(tanh(x))``; our layer applies the tanh itself where nothing would notice that
    its call is bypassed, so that tanh's output is freed once widened for the FFT instead
    of living through the layer. Under recompute's "fourier" wrapper the layer's
    ``forward_after_tanh`` is what is recomputed: the checkpoint keeps ``x`` alone, where
    ``conv(tanh(x))`` would keep tanh's output beside the ``x`` tanh keeps."""
    if _plain_call(conv):
        recomputed = conv.__dict__.get("forward")
        if recomputed is not None:
            return recomputed.run(MixedPrecisionSpectralConv.forward_after_tanh, x)
        return conv.forward_after_tanh(x)
    return conv(tanh_stabilizer(x, keep_input=True))


def _plain_call(conv):
    # our own class (a subclass may change any step of the forward), called as it is
    # defined: no forward replaced on the instance but by recompute's wrapper of the class's
    # forward (known by its marker: recompute imports this module), not compiled, and no
    # hook on it or global (``forward_after_tanh`` runs no ``Module.__call__``)
    forward = conv.__dict__.get("forward")
    return (type(conv) is MixedPrecisionSpectralConv
            and (forward is None or getattr(forward, "recomputes_class_forward", False))
            and getattr(conv, "_compiled_call_impl", None) is None and _seen_whole([conv]))


class _TiledPointwiseForward(BoundToModule):
    """A ``ChannelMLP``'s ``forward`` (lifting, projection) a tile of grid points at a time."""

    def __init__(self, module, tile_points):
        super().__init__(module)
        self.tile_points = tile_points
        self.last_tiles = None
        self.last_recomputed = False  # whether the last call recomputes its hidden activation
        self.last_product_dtype = None

    def __call__(self, x):
        tiling = _tiling(x, self.tile_points)
        self.last_recomputed = False
        sliceable = mlp_sliceable_now(self.module)
        forward, self.last_product_dtype = mlp_piece_forward(self.module, x, tiling, sliceable, casts={})
        if tiling is None or not sliceable:
            self.last_tiles = 1
            if sliceable and recomputes_on(self.module, _device_type(x)):
                self.last_recomputed = True
                return mlp_recomputing_activation(self.module, x)
            return forward(self.module, x)
        tiles = [forward(self.module, part) for part in x.split(tiling[1], tiling[0])]
        self.last_tiles = len(tiles)
        return torch.cat(tiles, tiling[0])

    def __reduce__(self):
        return (_TiledPointwiseForward, (self.module, self.tile_points))


def recomputes_on(mlp, device_type):
    """Whether the lifting or projection ``mlp``, one the tiles could run (the caller's check:
    upstream's forward, no dropout, an elementwise activation, no hook or parametrization on its
    layers),
    recomputes its hidden activation in backward (:mod:`.recomputed_activation`) on
    ``device_type``: on a GPU, where memory is what a 16-bit step runs out of and the extra
    elementwise kernel is small, for two-layer MLPs. On a CPU the tiles keep their speed."""
    return device_type != "cpu" and recomputes_activation(mlp)


def _outside_block_mlps(model):
    return [m for m in pointwise_targets(model) if mlp_sliceable(m)]


def reinstall_pointwise_tiles(model):
    """Put back the tiled ``forward`` of the lifting and projection wherever
    :func:`set_pointwise_tiles` recorded one and nothing else (a recompute wrapper)
    holds the module's ``forward`` now; :func:`~.recompute.set_recompute` calls this
    after removing its own wrappers. Returns ``model``."""
    for module in _outside_block_mlps(model):
        tile_points = module.__dict__.get(_RECORD)
        if tile_points is not None and "forward" not in module.__dict__:
            module.forward = _TiledPointwiseForward(module, tile_points)
    return model


def set_pointwise_tiles(model, tile_points=DEFAULT_TILE_POINTS):
    """Run ``model``'s pointwise work (FNO blocks after their spectral layers, lifting,
    projection) a tile of at most ``tile_points`` grid points at a time on CPU; ``None``
    restores upstream's forward. Returns ``model``.

    Parameters
    ----------
    model : nn.Module
        Any model built from neuraloperator's ``FNOBlocks`` / ``ChannelMLP`` (FNO, TFNO,
        UNO, the plugin's models); blocks where tiles would not be exact
        (:func:`block_tiles_apply`: norms, pre-activation, complex data, dropout,
        activations that are not elementwise, subclasses with a forward of their own)
        are left as they are, and every tiled call falls back to upstream's forward when
        that has changed since, or a forward hook sits on a module it would call per tile.
    tile_points : int or None, default DEFAULT_TILE_POINTS
        Most grid points (batch x spatial) per tile.

    Raises
    ------
    TypeError, ValueError
        ``tile_points`` is not None nor an integer >= 1 (the message names it).
    """
    if tile_points is not None:
        tile_points = check_int_at_least("tile_points", tile_points, unit="grid points per tile")
    for block in model.modules():
        if isinstance(block.__dict__.get("forward_with_postactivation"), _TiledPostactivation):
            del block.forward_with_postactivation
        if tile_points is not None and block_tiles_apply(block):
            block.forward_with_postactivation = _TiledPostactivation(block, tile_points)
    for module in _outside_block_mlps(model):
        if isinstance(module.__dict__.get("forward"), _TiledPointwiseForward):
            del module.forward
        module.__dict__.pop(_RECORD, None)
        if tile_points is not None:
            module.__dict__[_RECORD] = tile_points
    return reinstall_pointwise_tiles(model)


def _tilers(model):
    for module in model.modules():
        for name in ("forward_with_postactivation", "forward"):
            tiler = module.__dict__.get(name)
            if isinstance(tiler, (_TiledPostactivation, _TiledPointwiseForward)):
                yield tiler


def pointwise_tile_points(model):
    """The ``tile_points`` :func:`set_pointwise_tiles` last set on ``model`` (None: off)."""
    tiler = next(_tilers(model), None)
    if tiler is not None:
        return tiler.tile_points
    # the lifting and projection keep the setting while recompute's slices hold their forward
    return next((m.__dict__[_RECORD] for m in model.modules() if _RECORD in m.__dict__), None)


def describe_pointwise_tiles(model):
    """One line for a training summary: the tile size and how many tiles the last forward used."""
    tile_points = pointwise_tile_points(model)
    if tile_points is None:
        return "whole grid (tiles off)"
    text = f"tiles of at most {tile_points} grid points on CPU"
    used = [t.last_tiles for t in _tilers(model) if t.last_tiles is not None]
    if not used:
        return text + " (no forward yet, or no layer they apply to)"
    if any(getattr(t, "last_recomputed", False) for t in _tilers(model)):
        text += "; lifting and projection recompute their hidden activation in backward (not on CPU)"
    products = {t.last_product_dtype for t in _tilers(model)} - {None}
    if products:
        text += f"; 1x1 convolutions as {' / '.join(sorted(str(d).replace('torch.', '') for d in products))} matrix products"
    if max(used) == 1:
        return text + "; last forward: whole grid at once (it fit in one tile, or it ran off the CPU, where tiles do not apply)"
    return text + f"; last forward: up to {max(used)} tiles per layer"
