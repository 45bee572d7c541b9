"""Precision vocabulary, validation, and switching the precision of a built model.

One place defines what the plugin's precision flags may be, so that every entry
point (layer constructor, ``set_precision``, configs, CLI, schedule) rejects a bad
value with the same message naming the key, the value and the allowed values.

Upstream neuraloperator stores ``fno_block_precision`` at three levels (FNO,
FNOBlocks, SpectralConv) and reads it only in the spectral layer; it never
validates it, so a typo silently runs in full precision. :func:`set_precision`
validates and keeps all copies in sync.
"""
from contextlib import contextmanager

import torch
from torch import nn

PRECISION_MODES = ("full", "mixed", "half")
HALF_DTYPES = ("auto", "float16", "bfloat16")
STABILIZERS = (None, "tanh")

_TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_UNCHANGED = object()


def check_choice(key, value, allowed):
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError.

    The message names the key, the bad value and every allowed value, e.g.
    ``Invalid model.fno_block_precision='hlaf'; allowed values: 'full', 'mixed', 'half'``.
    """
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"Invalid {key}={value!r}; allowed values: {shown}.")
    return value


def normalize_stabilizer(value, key="stabilizer"):
    """Map the spellings configs use for "no stabilizer" ("None", "none", "") to None."""
    if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        value = None
    return check_choice(key, value, STABILIZERS)


def normalize_half_dtype(value, key="half_dtype"):
    """Accept a torch dtype or its name; return the canonical name."""
    if value is None:
        value = "auto"
    if isinstance(value, torch.dtype):
        names = {v: k for k, v in _TORCH_HALF.items()}
        if value not in names:
            check_choice(key, str(value), HALF_DTYPES)
        value = names[value]
    return check_choice(key, value, HALF_DTYPES)


def resolve_half_dtype(half_dtype, device):
    """The torch dtype that ``half_dtype`` means on ``device``.

    "auto" is float16 on CUDA (tensor cores, cuFFT half) and bfloat16 elsewhere:
    CPUs with AVX512-BF16/AMX run bf16 matmuls fast while fp16 CPU matmuls are
    slow, and bf16 has fp32's exponent range, so it cannot overflow.
    """
    name = normalize_half_dtype(half_dtype)
    if name == "auto":
        device = torch.device(device)
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return _TORCH_HALF[name]


def _mp_layers(model):
    from .layers.spectral_conv import MixedPrecisionSpectralConv

    return [m for m in model.modules() if isinstance(m, MixedPrecisionSpectralConv)]


def _fno_blocks(model):
    from neuralop.layers.fno_block import FNOBlocks

    return [m for m in model.modules() if isinstance(m, FNOBlocks)]


def get_precision(model):
    """Return ``(mode, half_dtype, stabilizer)`` of the model's mixed-precision layers.

    Raises if the layers disagree (a model is switched as a whole by
    :func:`set_precision`), or if the model has no such layer.
    """
    layers = _mp_layers(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no MixedPrecisionSpectralConv layer; build it "
            "with neuralop_mp.get_model(...) or conv_module=MixedPrecisionSpectralConv."
        )
    blocks = _fno_blocks(model)
    in_block = {id(c) for b in blocks for c in b.convs}
    states = set()
    for layer in layers:
        if id(layer) in in_block:
            stab = next(b.stabilizer for b in blocks if any(c is layer for c in b.convs))
        else:
            stab = layer.stabilizer
        states.add((layer.fno_block_precision, layer.half_dtype, stab))
    if len(states) != 1:
        raise ValueError(f"Layers of the model are in different precisions: {sorted(map(str, states))}")
    return states.pop()


def _snapshot(model):
    """Every precision-related attribute of every module, for an exact restore."""
    snap = []
    for m in model.modules():
        for attr in ("fno_block_precision", "half_dtype", "stabilizer"):
            if attr in m.__dict__:
                snap.append((m, attr, m.__dict__[attr]))
    return snap


def set_precision(model: nn.Module, mode, *, half_dtype=_UNCHANGED, stabilizer=_UNCHANGED):
    """Switch every mixed-precision spectral layer of a built model, in place.

    Parameters
    ----------
    model : nn.Module
        A model containing :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers
        (FNO, TFNO, UNO, FNOBlocks, or a bare layer).
    mode : {"full", "mixed", "half"}
        New ``fno_block_precision``. Also written to upstream's copies of the flag
        on ``FNO`` and ``FNOBlocks`` so that they never disagree with the layers.
    half_dtype : {"auto", "float16", "bfloat16"}, optional
        Half type of the layers; unchanged if not given.
    stabilizer : {None, "tanh"}, optional
        Pre-activation before every forward FFT; unchanged if not given. Set on
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
    """
    check_choice("fno_block_precision", mode, PRECISION_MODES)
    if half_dtype is not _UNCHANGED:
        half_dtype = normalize_half_dtype(half_dtype)
    if stabilizer is not _UNCHANGED:
        stabilizer = normalize_stabilizer(stabilizer)

    layers = _mp_layers(model)
    if not layers and (mode != "full" or half_dtype is not _UNCHANGED):
        raise ValueError(
            f"Cannot set fno_block_precision={mode!r}: {type(model).__name__} has no "
            "MixedPrecisionSpectralConv layer. Build it with neuralop_mp.get_model(config) "
            "or pass conv_module=neuralop_mp.MixedPrecisionSpectralConv."
        )
    snapshot = _snapshot(model)
    if layers:
        # the block's soft-gating skip would otherwise promote autocast activations to fp32
        from .layers.soft_gating import adopt_half_safe_soft_gating

        adopt_half_safe_soft_gating(model)
    blocks = _fno_blocks(model)
    in_block = {id(c) for b in blocks for c in b.convs}

    for m in model.modules():
        # upstream's copies of the flag (FNO, TFNO, FNOBlocks, ...)
        if "fno_block_precision" in m.__dict__:
            m.fno_block_precision = mode
    for layer in layers:
        layer.fno_block_precision = mode
        if half_dtype is not _UNCHANGED:
            layer.half_dtype = half_dtype
        if stabilizer is not _UNCHANGED and id(layer) not in in_block:
            layer.stabilizer = stabilizer
    if stabilizer is not _UNCHANGED:
        for block in blocks:
            block.stabilizer = stabilizer
        for m in model.modules():  # FNO keeps a copy of the stabilizer flag too
            if "stabilizer" in m.__dict__ and not isinstance(m, nn.ModuleList):
                m.stabilizer = stabilizer
        for layer in layers:
            if id(layer) in in_block:
                layer.stabilizer = None  # the enclosing FNOBlocks applies it
    return snapshot


def restore_precision(snapshot):
    """Undo :func:`set_precision` given the snapshot it returned."""
    for module, attr, value in snapshot:
        setattr(module, attr, value)


@contextmanager
def precision(model, mode, **kwargs):
    """Context manager: run a block with ``model`` switched to ``mode``, then restore.

    Examples
    --------
    >>> with neuralop_mp.precision(model, "full"):
    ...     reference = model(x)
    """
    snapshot = set_precision(model, mode, **kwargs)
    try:
        yield model
    finally:
        restore_precision(snapshot)
