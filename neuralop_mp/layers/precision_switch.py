"""Switching the precision of a built model: a fixed mode, or "auto" decided from data.

:func:`set_precision` and :func:`precision` (the same switch as a context manager
that restores the previous settings) take "full", "mixed" and "half", set through
:mod:`.layer_precision`, and "auto": given a few input batches (or a loader), the
precision error of each spectral layer is measured against its discretization error
and the cheapest precision the rule accepts is set
(:func:`neuralop_mp.diagnose.calibrate_precision`). The measurement is built on
:mod:`.layer_precision`, not on this module, and is imported only when "auto" is
asked for, so importing the layers never imports the measurement.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import torch
from torch import nn

from ..precision_policy import PrecisionPolicy
from ..vocabulary import check_int_at_least, normalize_spectral_weight_dtype
from .layer_precision import (  # noqa: F401  (the public names of a model's precision live here)
    _UNCHANGED,
    _layers_or_raise,
    get_precision,
    get_precision_policy,
    get_spectral_weight_dtype,
    mixed_precision_layers,
    restore_precision,
    set_fixed_precision,
    switched_precision,
)
from .autocast_scope import check_recorded_precision, deferred_precision_check, set_autocast_scope
from .weight_storage import store_layer_weights

_CALIBRATION_HINT = ("pass calibration= a batch of model inputs (batch, channels, *spatial), a list of such "
                     "batches, or a DataLoader (with data_processor= when its batches need preprocessing), "
                     "e.g. set_precision(model, 'auto', calibration=x)")


def _calibrate(model, calibration, data_processor, n_batches):
    """Decide and set "auto" from ``calibration`` (tensor, tensors, or a loader)."""
    # deferred: the measurement imports the layers; importing the layers must not import it
    from ..diagnose.auto import calibrate_from_loader, calibrate_precision

    if torch.is_tensor(calibration) or (isinstance(calibration, (list, tuple)) and calibration
                                        and all(torch.is_tensor(b) for b in calibration)):
        if data_processor is not None:
            raise ValueError("data_processor= is used with a DataLoader as calibration; a tensor calibration "
                             "is taken as model inputs as they are.")
        return calibrate_precision(model, calibration)
    if isinstance(calibration, (str, bytes, dict)) or not hasattr(calibration, "__iter__"):
        raise TypeError(f"Invalid calibration of type {type(calibration).__name__}; {_CALIBRATION_HINT}.")
    return calibrate_from_loader(model, calibration, data_processor, n_batches=n_batches)


def set_precision(model: nn.Module, mode, *, half_dtype=_UNCHANGED, stabilizer=_UNCHANGED, calibration=None,
                  data_processor=None, n_batches=2):
    """Switch every mixed-precision spectral layer of a built model, in place.

    Parameters
    ----------
    model : nn.Module
        A model containing :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers
        (FNO, TFNO, UNO, FNOBlocks, or a bare layer).
    mode : {"full", "mixed", "half", "auto"}
        New ``fno_block_precision``. Also written to upstream's copies of the flag
        on ``FNO`` and ``FNOBlocks`` so that they never disagree with the layers.
        "auto" measures ``calibration`` and sets the cheapest precision whose
        precision error stays within the rule of
        :func:`neuralop_mp.diagnose.recommend` (default: at most 0.5 x the
        discretization error; float16 without tanh only with an overflow margin of at
        least 16), with the model's half type and stabilizer (after ``half_dtype``
        and ``stabilizer`` are applied). The decision is kept in
        ``model.precision_decision``.
    half_dtype, stabilizer : optional
        As for :func:`~neuralop_mp.layers.layer_precision.set_fixed_precision`;
        unchanged if not given.
    calibration : torch.Tensor, sequence of torch.Tensor or iterable of batches, optional
        Only with ``mode="auto"``, and required there: model inputs
        ``(batch, channels, *spatial)``, or a loader whose batches are
        ``{"x": ...}`` dicts, ``(x, y)`` pairs or input tensors (the first
        ``n_batches`` are used). Spatial sizes are the fine grid: errors are
        measured at half of it.
    data_processor : neuralop DataProcessor, optional
        Applied to each loader batch before the measurement, as the trainer would.
    n_batches : int, default 2
        Loader batches used for the calibration.

    A fixed mode is set by :func:`~neuralop_mp.layers.layer_precision.set_fixed_precision`
    (which also makes upstream ``SoftGating`` skips half-safe).

    Returns
    -------
    list
        A snapshot of the previous settings for :func:`restore_precision`.

    Raises
    ------
    ValueError
        On an invalid value; "auto" without ``calibration`` (the message says how to
        pass it); ``calibration`` with another mode; a ``calibration`` holding NaN or inf
        (named, before anything is decided); ``mode != "full"`` on a model
        without mixed-precision layer (upstream's own half modes crash on CPU, so we
        refuse to silently hand the request to them).
    TypeError
        A ``calibration`` that is neither tensors nor an iterable of batches.

    Warns
    -----
    UnrecordedPrecisionWarning
        Once per model, where upstream's checkpoint of ``model`` would not rebuild the
        new settings (:func:`~.autocast_scope.check_recorded_precision`).
    """
    wanted = PrecisionPolicy(fno_block_precision=mode)  # validates the mode, with the policy's message
    if wanted.fno_block_precision != "auto":
        if calibration is not None or data_processor is not None:
            raise ValueError(f"calibration= and data_processor= are only used with mode='auto' (they decide it); "
                             f"got mode={mode!r}.")
        return set_fixed_precision(model, wanted.fno_block_precision, half_dtype=half_dtype, stabilizer=stabilizer)
    if calibration is None:
        raise ValueError(f"set_precision(model, 'auto') decides from data: {_CALIBRATION_HINT}. "
                         "In a config, model.fno_block_precision='auto' calibrates on the first training batches.")
    check_int_at_least("n_batches", n_batches)
    current, _, _ = get_precision(model)
    with deferred_precision_check(model):  # one warning, for the decision
        # the half type and stabilizer are set first: the calibration measures the model as it will run
        snapshot = set_fixed_precision(model, current, half_dtype=half_dtype, stabilizer=stabilizer)
        try:
            _calibrate(model, calibration, data_processor, n_batches)
        except BaseException:
            restore_precision(snapshot)
            raise
    return snapshot


def precision(model, mode, **kwargs):
    """Context manager: run a block with ``model`` switched to ``mode``, then restore.

    Takes the arguments of :func:`set_precision` ("auto" with ``calibration=``).

    Examples
    --------
    >>> with neuralop_mp.precision(model, "full"):
    ...     reference = model(x)
    """
    return switched_precision(set_precision, model, mode, **kwargs)


def set_spectral_weight_dtype(model, dtype):
    """Store every mixed-precision spectral layer's weights in ``dtype``, in place.

    Parameters
    ----------
    model : nn.Module
        A model with :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers.
    dtype : {"complex64", "complex32"} or torch dtype
        "complex32" halves the memory of the spectral weights and their gradients.

    Returns
    -------
    str
        The previous storage dtype.

    Warns
    -----
    UnrecordedPrecisionWarning
        Once per model, where upstream's checkpoint of ``model`` would not rebuild the
        new storage (:func:`~.autocast_scope.check_recorded_precision`).

    Notes
    -----
    Call it before building the optimizer: an optimizer's existing state was made
    for the old dtype. Checkpoints load across dtypes (``load_state_dict`` casts).
    """
    target = normalize_spectral_weight_dtype(dtype)  # a bad value fails before anything changes
    previous = get_spectral_weight_dtype(model)
    for layer in mixed_precision_layers(model):
        store_layer_weights(layer, target)
    check_recorded_precision(model)
    return previous


def _current_policy(model):
    """``model``'s policy where its layers agree on one, else None."""
    try:
        return get_precision_policy(model)
    except ValueError:
        return None


def apply_precision_policy(model, policy):
    """Put a built model in ``policy``; changes only what differs.

    ``policy`` is a :class:`~neuralop_mp.PrecisionPolicy` (every field applied), or some of
    its fields: a precision mode (``"half"``) or a dict of fields, which change those and
    keep the model's other settings (they reset them to the defaults, complex32 weights
    to complex64 included).

    Returns the previous policy. Warns as :func:`set_precision` does, once for all it changed.
    """
    fields = PrecisionPolicy.fields_of(policy)  # validated: unknown keys and bad values named
    some = isinstance(policy, (str, dict))
    has_layers = bool(mixed_precision_layers(model))
    if some and set(fields) == {"autocast_scope"}:  # a scope alone: any model, a container of them too
        previous = _current_policy(model) if has_layers else None
        set_autocast_scope(model, fields["autocast_scope"])  # checks (and warns of) each model inside
        return previous
    if some and has_layers:
        policy = get_precision_policy(model).replace(**fields)
    policy = PrecisionPolicy.coerce(policy)
    if not has_layers:
        if policy.fno_block_precision == "full" and policy.spectral_weight_dtype == "complex64":
            with deferred_precision_check(model):
                # upstream's layers: a stabilizer and a scope, each where given (all of them for a whole policy)
                set_precision(model, "full", stabilizer=policy.stabilizer if "stabilizer" in fields else _UNCHANGED)
                if "autocast_scope" in fields:
                    set_autocast_scope(model, policy.autocast_scope)
            return None
        _layers_or_raise(model, f"it cannot take {policy}")
    previous = get_precision_policy(model)
    with deferred_precision_check(model):  # one warning naming every setting it changed
        if previous.replace(spectral_weight_dtype=policy.spectral_weight_dtype,
                            autocast_scope=policy.autocast_scope) != policy:
            set_precision(model, policy.fno_block_precision, half_dtype=policy.half_dtype,
                          stabilizer=policy.stabilizer)
        if previous.spectral_weight_dtype != policy.spectral_weight_dtype:
            set_spectral_weight_dtype(model, policy.spectral_weight_dtype)
        if previous.autocast_scope != policy.autocast_scope:
            set_autocast_scope(model, policy.autocast_scope)
    return previous
