"""Recompute in backward (activation checkpointing) of the Fourier path or of whole FNO blocks.

``set_recompute(model, "fourier")`` makes every spectral convolution of ``model``
(upstream's ``SpectralConv`` and its subclasses, the mixed-precision one included)
keep only its input for backward: its FFT, mode contraction and inverse FFT run
again in backward to rebuild what the gradient needs. ``"block"`` does the same
for each call of an ``FNOBlocks`` (spectral path, skips, channel MLP and
activation), and recomputes every ``ChannelMLP`` outside the FNO blocks (the lifting
and the projection of FNO, TFNO and UNO) a slice of grid points at a time
(:mod:`~neuralop_mp.models.pointwise_chunks`), so their hidden tensors, the widest
of the model, are never alive at full resolution (a call made while a hook or a
parametrization sits on one of their layers, or a global module hook is registered,
replays them whole: the hook sees the whole grid); ``"none"`` restores the ordinary forward.

Recompute uses ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``,
which replays the forward under the autocast state and RNG state of the original
call, so the tanh stabilizer, autocast and the layer's current precision (set by a
precision schedule before the epoch) are the same in the replay: gradients equal
those without recompute. A norm layer with running statistics (``norm="batch_norm"``)
updates them in the replay on copies that are then dropped, so they are updated once
per step, as without recompute.

References
----------
.. [1] T. Chen, B. Xu, C. Zhang, C. Guestrin, "Training Deep Nets with Sublinear
   Memory Cost", arXiv:1604.06174, 2016.
"""
import contextlib
import functools

import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.checkpoint import checkpoint

from ..vocabulary import RECOMPUTE_MODES, normalize_recompute, normalize_recompute_chunk_points
from .bound_forward import BoundToModule
from .pointwise_chunks import DEFAULT_CHUNK_POINTS, pointwise_in_slices, pointwise_targets, split_points
from .pointwise_tiles import mlp_piece_forward, mlp_sliceable, mlp_sliceable_now, reinstall_pointwise_tiles

__all__ = ["RECOMPUTE_MODES", "check_recompute_mode", "pointwise_targets", "recompute_chunk_points", "recompute_mode",
           "set_recompute"]


_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _norms_with_running_stats(module):
    """The norm layers of ``module`` that track running statistics (BatchNorm, InstanceNorm with
    ``track_running_stats``)."""
    return [norm for norm in module.modules() if isinstance(norm, _NormBase) and norm.track_running_stats]


@contextlib.contextmanager
def _running_stats_on_copies(norms):
    """Within the context, the ``norms`` (:func:`_norms_with_running_stats`) hold copies of their
    running statistics; the originals are put back, untouched, on exit.

    The replay of a training-mode forward would otherwise update the statistics a second
    time for the same batch. Copies rather than a restore afterwards: the replayed layer
    saves its statistics for its backward, and writing into them would fail that
    backward's version check; its output does not depend on them (batch statistics)."""
    kept = [(norm, {name: norm._buffers[name] for name in _RUNNING_STATS if norm._buffers.get(name) is not None})
            for norm in norms]
    for norm, buffers in kept:
        for name, buffer in buffers.items():
            norm._buffers[name] = buffer.clone()
    try:
        yield
    finally:
        for norm, buffers in kept:
            norm._buffers.update(buffers)


class _RecomputedForward(BoundToModule):
    """An instance-level ``forward`` that runs the class's forward under checkpoint."""

    _norms = None  # found at the first replay, not at each one (a copy's module is still being built here)
    # how pointwise_tiles (imported by this module) knows it: it may recompute the layer's
    # forward_after_tanh through run() instead
    recomputes_class_forward = True

    def __call__(self, *args, **kwargs):
        return self.run(type(self.module).forward, *args, **kwargs)

    def run(self, function, *args, **kwargs):
        """``function(module, *args, **kwargs)``, under checkpoint where autograd records."""
        if not torch.is_grad_enabled():
            return function(self.module, *args, **kwargs)
        return checkpoint(function, self.module, *args, use_reentrant=False, context_fn=self._contexts, **kwargs)

    def _contexts(self):
        """checkpoint's (forward, replay) contexts: the replay leaves running statistics alone."""
        if self._norms is None:
            self._norms = _norms_with_running_stats(self.module)
        # an FNO has no such norm by default: its replay needs no context
        replay = _running_stats_on_copies(self._norms) if self._norms else contextlib.nullcontext()
        return contextlib.nullcontext(), replay

    def __reduce__(self):  # a pickled or deep-copied model recomputes too
        return (_RecomputedForward, (self.module,))


class _ChunkedPointwiseForward(BoundToModule):
    """An instance-level ``forward`` of a pointwise module, recomputed a slice of grid points at a
    time; replayed whole (as :class:`_RecomputedForward`) at a call where slices would not be exact
    or a hook or parametrization sits on one of its layers (:func:`~.pointwise_tiles.mlp_sliceable_now`)."""

    def __init__(self, module, chunk_points):
        super().__init__(module)
        self.chunk_points = chunk_points
        self.whole = _RecomputedForward(module)

    def __call__(self, x):
        # asked at every call: a hook put on a layer after set_recompute would otherwise see each
        # slice (forward and replay) and its changes to the output would act slice by slice
        if not mlp_sliceable_now(self.module):
            return self.whole(x)
        split = split_points(x.shape, self.chunk_points)  # once: the products' rule and the slices
        # 1x1 convolutions as matrix products where the tiles would run them so: the same sums.
        # One casts dict per call: each 1x1 weight and bias is cast once for all the slices, and
        # their replays in backward reuse the casts (kept until then: 16-bit copies of the small
        # 1x1 weights). Safe: the casts are detached, the gradients reach the parameters through
        # the products, and they hold what a replay would cast again (the parameters do not
        # change between forward and backward)
        forward, _ = mlp_piece_forward(self.module, x, split, sliceable=True, casts={})
        return pointwise_in_slices(functools.partial(forward, self.module), x, split)

    def __reduce__(self):
        return (_ChunkedPointwiseForward, (self.module, self.chunk_points))


_WRAPPERS = (_RecomputedForward, _ChunkedPointwiseForward)


def _targets(model, mode):
    kind = SpectralConv if mode == "fourier" else FNOBlocks
    return [m for m in model.modules() if isinstance(m, kind)]


def check_recompute_mode(mode, key="recompute"):
    """``mode`` lower-cased ("none" for None); ValueError naming it and the allowed ones otherwise."""
    return normalize_recompute(mode, key)


def set_recompute(model, mode, chunk_points=None):
    """Recompute the Fourier path (``"fourier"``), whole FNO blocks and the lifting and
    projection (``"block"``) or nothing (``"none"``) in backward; returns ``model``.

    Parameters
    ----------
    model : nn.Module
        Any model built from neuraloperator's ``FNOBlocks`` / ``SpectralConv`` (FNO,
        TFNO, UNO, the plugin's mixed-precision models).
    mode : {"none", "fourier", "block"}
    chunk_points : int, optional
        ``"block"`` only: most grid points (batch x spatial) per slice of the lifting
        and projection's recompute; None: ``DEFAULT_CHUNK_POINTS``.

    Raises
    ------
    ValueError
        Unknown ``mode``, or ``mode`` is not "none" and ``model`` has no layer it applies
        to, or ``chunk_points`` is not positive (TypeError if it is not an int), or
        ``chunk_points`` is given with a mode other than "block" (it would change nothing).
    """
    mode = check_recompute_mode(mode, key="mode")  # named as this function names it
    # the constructor's and the config's check, with this function's argument names
    chunk_points = normalize_recompute_chunk_points(chunk_points, mode, key="chunk_points", recompute_key="mode")
    if chunk_points is None:
        chunk_points = DEFAULT_CHUNK_POINTS
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _WRAPPERS):
            del module.forward
    if mode == "none":
        return reinstall_pointwise_tiles(model)  # the lifting and projection's tiles, if set
    targets = _targets(model, mode)
    if not targets:
        kind = "SpectralConv" if mode == "fourier" else "FNOBlocks"
        raise ValueError(f"recompute={mode!r} needs a {kind} layer, and {type(model).__name__} has none.")
    for module in targets:
        module.forward = _RecomputedForward(module)
    if mode == "block":
        for module in pointwise_targets(model):
            # the tiles' rule: upstream's forward, no dropout (a mask drawn per slice would differ)
            # and an elementwise activation (one across grid points, e.g. a softmax, would see a slice)
            sliceable = mlp_sliceable(module)
            module.forward = _ChunkedPointwiseForward(module, chunk_points) if sliceable else _RecomputedForward(module)
    return reinstall_pointwise_tiles(model)


def recompute_mode(model):
    """The mode :func:`set_recompute` last set on ``model``."""
    for module in model.modules():  # "fourier" wraps SpectralConvs, "block" never does
        if isinstance(module.__dict__.get("forward"), _WRAPPERS):
            return "fourier" if isinstance(module, SpectralConv) else "block"
    return "none"


def recompute_chunk_points(model):
    """The ``chunk_points`` of the slices that :func:`set_recompute`'s ``"block"`` last set on
    ``model``; None where nothing is sliced (another mode, or a lifting and projection with
    dropout or an activation that is not elementwise, recomputed whole). A call made while a hook
    sits on one of their layers is replayed whole whatever this returns
    (:func:`~.pointwise_tiles.mlp_sliceable_now`)."""
    for module in model.modules():
        forward = module.__dict__.get("forward")
        if isinstance(forward, _ChunkedPointwiseForward):
            return forward.chunk_points
    return None
