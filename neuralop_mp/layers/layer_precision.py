"""The precision attributes of a built model's layers: find its mixed-precision layers,
read their settings, set a fixed mode ("full", "mixed", "half"), restore.

Upstream neuraloperator stores ``fno_block_precision`` at three levels (FNO,
FNOBlocks, SpectralConv) and reads it only in the spectral layer; it never
validates it, so a typo silently runs in full precision. :func:`set_fixed_precision`
validates (through :class:`~neuralop_mp.PrecisionPolicy`) and keeps all copies in
sync. It makes no decision: "auto", which measures data to decide, is
:func:`neuralop_mp.set_precision` (:mod:`.precision_switch`), built on this module,
as is the measurement itself (:mod:`neuralop_mp.diagnose`), so that neither imports
the other in a circle.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import contextlib
import os
import warnings
import weakref
from contextlib import contextmanager

import neuralop
import torch
from neuralop.layers.fno_block import FNOBlocks
from torch import nn

from ..caller_frames import stacklevel_outside
from ..precision_policy import PrecisionPolicy
from ..vocabulary import applied_stabilizer, normalize_stabilizer
from .autocast_scope import check_recorded_precision, deferred_precision_check, get_autocast_scope
from .soft_gating import adopt_half_safe_soft_gating
from .spectral_conv import MixedPrecisionSpectralConv
from .weight_storage import layer_weight_dtype

_UNCHANGED = object()
# what to do with a model that has no MixedPrecisionSpectralConv layer (every message that refuses one)
NO_LAYER_HINT = ("build it with neuralop_mp.get_model(config) or pass "
                  "conv_module=neuralop_mp.MixedPrecisionSpectralConv; a module of your own that creates "
                  "SpectralConv(...) itself: use MixedPrecisionSpectralConv in its place (same arguments "
                  "and state_dict).")


class UpstreamLayersKeptWarning(UserWarning):
    """Upstream spectral layers of a model that a precision switch leaves in their own precision
    and stabilizer (:func:`set_fixed_precision`)."""


# model -> (upstream layer names, whether of a stabilizer) it was warned about (weakly held: it keeps no model alive)
_WARNED_KEPT = weakref.WeakKeyDictionary()
_HERE = os.path.dirname(__file__)
# frames the warning skips to name the user's line: the setters here, the trainer's schedule and the
# calibration that call them, upstream's training loop that calls the trainer's hooks, context managers
_SWITCHING_CODE = [_HERE, os.path.join(os.path.dirname(neuralop.__file__), "training")] + [
    os.path.join(os.path.dirname(_HERE), name) for name in ("training", "diagnose")]
_PASSING_FILES = [contextlib.__file__, torch.nn.modules.module.__file__]


def mixed_precision_layers(model, layer_class=None):
    """Every :class:`~neuralop_mp.MixedPrecisionSpectralConv` in ``model`` (a bare layer included).

    ``layer_class`` replaces that class (the runner's tests look for a fake one).
    """
    layer_class = MixedPrecisionSpectralConv if layer_class is None else layer_class
    return [m for m in model.modules() if isinstance(m, layer_class)]


def _fno_blocks(model):
    return [m for m in model.modules() if isinstance(m, FNOBlocks)]


def _flag_holders(model):
    """``(name, module)`` of every module of ``model`` that stores ``fno_block_precision``."""
    return [(name, m) for name, m in model.named_modules() if "fno_block_precision" in m.__dict__]


def upstream_spectral_layers(model, layer_class=None):
    """``(name, layer)`` of every spectral layer of ``model`` that is not a
    :class:`~neuralop_mp.MixedPrecisionSpectralConv`: upstream's ``SpectralConv`` (and its
    subclasses), or any module of the user's that stores ``fno_block_precision`` and holds no
    module that stores it (a container such as FNO or FNOBlocks holds the layers it passes it to).

    A precision switch leaves them in their own precision: upstream's half modes crash on CPU.
    ``layer_class`` replaces the plugin's class, as in :func:`mixed_precision_layers`.
    """
    layer_class = MixedPrecisionSpectralConv if layer_class is None else layer_class
    holders = _flag_holders(model)
    return [(name, m) for name, m in holders if not isinstance(m, layer_class)
            and not any(other is not m and "fno_block_precision" in other.__dict__ for other in m.modules())]


def _kept_warning(model, mode, kept, stabilizer=_UNCHANGED):
    """Warn, once per model and set of layers, that ``kept`` (upstream layers not in ``mode``, or not
    under ``stabilizer`` where one is set) stay as they are."""
    names = tuple(name or type(layer).__name__ for name, layer in kept)
    given = _WARNED_KEPT.setdefault(model, set())
    told = (names, stabilizer is not _UNCHANGED)  # a stabilizer they keep is told once more, after the precision
    if told in given:
        return
    own = sorted({layer.fno_block_precision for _, layer in kept})
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    setting = f"fno_block_precision={mode!r}" + ("" if stabilizer is _UNCHANGED else f" and stabilizer={stabilizer!r}")
    warnings.warn(f"{setting} {'is' if stabilizer is _UNCHANGED else 'are'} set on the MixedPrecisionSpectralConv "
                  f"layers of {type(model).__name__} only; its {len(names)} upstream spectral layer(s) keep their "
                  f"own precision ({', '.join(map(repr, own))}) and stabilizer: {shown}. That part runs as it was "
                  "built (upstream's half modes crash on CPU); to switch it too, " + NO_LAYER_HINT,
                  UpstreamLayersKeptWarning,
                  stacklevel=stacklevel_outside(_SWITCHING_CODE, _PASSING_FILES))
    given.add(told)


def _layers_or_raise(model, what):
    layers = mixed_precision_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no MixedPrecisionSpectralConv layer, so {what}; "
                         + NO_LAYER_HINT)
    return layers


def get_precision(model):
    """Return ``(mode, half_dtype, stabilizer)`` of the model's mixed-precision layers.

    The stabilizer of a layer inside an ``FNOBlocks`` is the block's (upstream applies
    it there). Raises a ValueError if the layers disagree (a model is switched as a
    whole by :func:`set_fixed_precision`), or if the model has no such layer.
    """
    layers = _layers_or_raise(model, "it has no precision to read")
    owner = {id(conv): block for block in _fno_blocks(model) for conv in block.convs}
    states = set()
    for layer in layers:
        # what it applies (an FNOBlocks built directly with "off" applies none)
        stabilizer = applied_stabilizer(owner[id(layer)].stabilizer if id(layer) in owner else layer.stabilizer)
        states.add((layer.fno_block_precision, layer.half_dtype, stabilizer))
    if len(states) != 1:
        raise ValueError(f"Layers of the model are in different precisions: {sorted(map(str, states))}")
    return states.pop()


def get_spectral_weight_dtype(model):
    """Storage dtype name of the model's spectral weights (raises if layers disagree)."""
    layers = _layers_or_raise(model, "its spectral weights have no plugin storage dtype")
    names = {layer_weight_dtype(layer) for layer in layers}
    if len(names) != 1:
        raise ValueError(f"Spectral layers of the model store their weights in different dtypes: {sorted(names)}.")
    return names.pop()


def get_precision_policy(model):
    """The model's current settings as one :class:`~neuralop_mp.PrecisionPolicy`."""
    mode, half_dtype, stabilizer = get_precision(model)
    return PrecisionPolicy(mode, half_dtype, stabilizer, get_spectral_weight_dtype(model),
                           get_autocast_scope(model))


def _snapshot(model):
    """Every precision-related attribute of every module, for an exact restore."""
    snap = []
    for m in model.modules():
        for attr in ("fno_block_precision", "half_dtype", "stabilizer"):
            if attr in m.__dict__:
                snap.append((m, attr, m.__dict__[attr]))
    return snap


def set_fixed_precision(model: nn.Module, mode, *, half_dtype=_UNCHANGED, stabilizer=_UNCHANGED):
    """Switch every mixed-precision spectral layer of a built model to a fixed mode, in place.

    Parameters
    ----------
    model : nn.Module
        A model containing :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers
        (FNO, TFNO, UNO, FNOBlocks, or a bare layer).
    mode : {"full", "mixed", "half"}
        New ``fno_block_precision``. Also written to upstream's copies of the flag
        on the ``FNO`` and ``FNOBlocks`` that hold these layers, so that they never
        disagree with them. Upstream spectral layers of the same model (a frozen
        upstream FNO beside a plugin one) and the containers holding only them keep
        their own precision and stabilizer, with an ``UpstreamLayersKeptWarning``
        naming them, once per model (:func:`upstream_spectral_layers`). A model
        without mixed-precision layer takes only "full", written to every copy.
        "auto" raises a ValueError: it is decided from data by
        :func:`neuralop_mp.set_precision` with ``calibration=``.
    half_dtype : {"auto", "float16", "bfloat16"}, optional
        Half type of the layers; unchanged if not given.
    stabilizer : {None, "off", "tanh"}, optional
        Pre-activation before every forward FFT (None and "off": none); unchanged if not given. Set on
        each ``FNOBlocks`` (upstream applies its stabilizer right before each
        spectral convolution) and on layers that live outside an FNOBlocks, so
        tanh is applied exactly once per forward FFT.

    Upstream ``SoftGating`` skips of a model with mixed-precision layers become
    :class:`~neuralop_mp.layers.soft_gating.HalfSafeSoftGating` (same parameters,
    same outputs in fp32) so that autocast activations stay in half.

    Returns
    -------
    list
        An opaque snapshot of the previous settings, accepted by :func:`restore_precision`.

    Raises
    ------
    ValueError
        On an invalid value, or if ``mode != "full"`` and the model has no
        mixed-precision layer (upstream's own half modes crash on CPU, so we refuse
        to silently hand the request to them).

    Warns
    -----
    UnrecordedPrecisionWarning
        Once per model, where upstream's checkpoint of ``model`` would not rebuild the
        new settings (:func:`~.autocast_scope.check_recorded_precision`).
    UpstreamLayersKeptWarning
        Once per model (and set of layers), where upstream spectral layers of ``model``
        stay in a precision other than ``mode``, and once more where they keep another
        stabilizer than the one set.
    """
    # validated together, with the policy's messages; unchanged fields are not applied
    changes = {"fno_block_precision": mode}
    if half_dtype is not _UNCHANGED:
        changes["half_dtype"] = half_dtype
    if stabilizer is not _UNCHANGED:  # "off" and None: no stabilizer (layers and blocks store None)
        changes["stabilizer"] = normalize_stabilizer(stabilizer)
    wanted = PrecisionPolicy(**changes)
    mode = wanted.fno_block_precision
    if mode == "auto":
        # deciding needs data and the measurement (neuralop_mp.diagnose), which is built on this module
        raise ValueError("set_fixed_precision() takes 'full', 'mixed' or 'half', not 'auto'; 'auto' is decided "
                         "from data: neuralop_mp.set_precision(model, 'auto', calibration=batch_or_loader).")

    layers = mixed_precision_layers(model)
    if not layers and (mode != "full" or half_dtype is not _UNCHANGED):
        raise ValueError(f"Cannot set fno_block_precision={mode!r}: {type(model).__name__} has no "
                         "MixedPrecisionSpectralConv layer; " + NO_LAYER_HINT)
    snapshot = _snapshot(model)
    if layers:
        # the block's soft-gating skip would otherwise promote autocast activations to fp32
        adopt_half_safe_soft_gating(model)
    blocks = _fno_blocks(model)
    in_block = {id(c) for b in blocks for c in b.convs}
    # what is switched: our layers and the containers holding them (FNO, TFNO, FNOBlocks, ...: upstream's
    # copies of the flags); a model without our layers (only "full" gets here) is switched as a whole
    ours = {id(layer) for layer in layers}
    switched = [m for m in model.modules() if not layers or any(id(sub) in ours for sub in m.modules())]
    # upstream's part keeps its stabilizer too (its FNOBlocks' flag): told where that differs from the one set
    switched_ids = {id(m) for m in switched}
    other_stabilizer = stabilizer is not _UNCHANGED and any(
        m.stabilizer != wanted.stabilizer for m in model.modules()
        if id(m) not in switched_ids and "stabilizer" in m.__dict__ and not isinstance(m, nn.ModuleList))
    kept = [(name, layer) for name, layer in upstream_spectral_layers(model)
            if layer.fno_block_precision != mode or other_stabilizer]
    if layers and kept:
        _kept_warning(model, mode, kept, stabilizer=wanted.stabilizer if other_stabilizer else _UNCHANGED)

    for m in switched:
        if "fno_block_precision" in m.__dict__:
            m.fno_block_precision = mode
    for layer in layers:
        if half_dtype is not _UNCHANGED:
            layer.half_dtype = wanted.half_dtype
    if stabilizer is not _UNCHANGED:
        for m in switched:  # FNO and FNOBlocks keep a copy of the stabilizer flag
            if "stabilizer" in m.__dict__ and not isinstance(m, (nn.ModuleList, MixedPrecisionSpectralConv)):
                m.stabilizer = wanted.stabilizer
        for layer in layers:
            # a layer inside an FNOBlocks leaves it to the block: tanh once per forward FFT
            layer.stabilizer = None if id(layer) in in_block else wanted.stabilizer
    check_recorded_precision(model)
    return snapshot


def restore_precision(snapshot):
    """Undo :func:`set_fixed_precision` given the snapshot it returned."""
    for module, attr, value in snapshot:
        setattr(module, attr, value)


@contextmanager
def switched_precision(setter, model, mode, **kwargs):
    """Context manager: ``setter(model, mode, **kwargs)`` for a block, then restore.

    ``setter`` returns a snapshot for :func:`restore_precision`
    (:func:`set_fixed_precision`, or ``neuralop_mp.set_precision`` for "auto").
    """
    with deferred_precision_check(model):  # restored: no warning for the switch itself
        snapshot = setter(model, mode, **kwargs)
        try:
            yield model
        finally:
            restore_precision(snapshot)


def precision(model, mode, **kwargs):
    """Context manager: run a block with ``model`` switched to a fixed ``mode``, then restore.

    Takes the arguments of :func:`set_fixed_precision`.

    Examples
    --------
    >>> with neuralop_mp.precision(model, "full"):
    ...     reference = model(x)
    """
    return switched_precision(set_fixed_precision, model, mode, **kwargs)
