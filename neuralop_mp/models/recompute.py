"""Recompute in backward (activation checkpointing) of the Fourier path or of whole FNO blocks.

``set_recompute(model, "fourier")`` makes every spectral convolution of ``model``
(upstream's ``SpectralConv`` and its subclasses, the mixed-precision one included)
keep only its input for backward: its FFT, mode contraction and inverse FFT run
again in backward to rebuild what the gradient needs. ``"block"`` does the same
for each call of an ``FNOBlocks`` (spectral path, skips, channel MLP and
activation); ``"none"`` restores the ordinary forward.

Recompute uses ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``,
which replays the forward under the autocast state and RNG state of the original
call, so the tanh stabilizer, autocast and the layer's current precision (set by a
precision schedule before the epoch) are the same in the replay: gradients equal
those without recompute.

References
----------
.. [1] T. Chen, B. Xu, C. Zhang, C. Guestrin, "Training Deep Nets with Sublinear
   Memory Cost", arXiv:1604.06174, 2016.
"""
import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from torch.utils.checkpoint import checkpoint

from ..vocabulary import RECOMPUTE_MODES, normalize_recompute

__all__ = ["RECOMPUTE_MODES", "check_recompute_mode", "recompute_mode", "set_recompute"]


class _RecomputedForward:
    """An instance-level ``forward`` that runs the class's forward under checkpoint."""

    def __init__(self, module):
        self.module = module

    def __call__(self, *args, **kwargs):
        forward = type(self.module).forward
        if not torch.is_grad_enabled():
            return forward(self.module, *args, **kwargs)
        return checkpoint(forward, self.module, *args, use_reentrant=False, **kwargs)

    def __reduce__(self):  # a pickled or deep-copied model recomputes too
        return (_RecomputedForward, (self.module,))


def _targets(model, mode):
    kind = SpectralConv if mode == "fourier" else FNOBlocks
    return [m for m in model.modules() if isinstance(m, kind)]


def check_recompute_mode(mode, key="recompute"):
    """``mode`` lower-cased ("none" for None); ValueError naming it and the allowed ones otherwise."""
    return normalize_recompute(mode, key)


def set_recompute(model, mode):
    """Recompute the Fourier path (``"fourier"``), whole FNO blocks (``"block"``) or
    nothing (``"none"``) in backward; returns ``model``.

    Parameters
    ----------
    model : nn.Module
        Any model built from neuraloperator's ``FNOBlocks`` / ``SpectralConv`` (FNO,
        TFNO, UNO, the plugin's mixed-precision models).
    mode : {"none", "fourier", "block"}

    Raises
    ------
    ValueError
        Unknown ``mode``, or ``mode`` is not "none" and ``model`` has no layer it applies to.
    """
    mode = check_recompute_mode(mode)
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _RecomputedForward):
            del module.forward
    if mode == "none":
        return model
    targets = _targets(model, mode)
    if not targets:
        kind = "SpectralConv" if mode == "fourier" else "FNOBlocks"
        raise ValueError(f"recompute={mode!r} needs a {kind} layer, and {type(model).__name__} has none.")
    for module in targets:
        module.forward = _RecomputedForward(module)
    return model


def recompute_mode(model):
    """The mode :func:`set_recompute` last set on ``model``."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _RecomputedForward):
            return "fourier" if isinstance(module, SpectralConv) else "block"
    return "none"
