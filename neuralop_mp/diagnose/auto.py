"""``fno_block_precision="auto"``: choose the spectral layers' precision from a short calibration.

The calibration is the measurement of :func:`~neuralop_mp.diagnose.measure.measure` on
the first training batches, followed by the rule of
:func:`~neuralop_mp.diagnose.recommend.recommend`, restricted to the model's own 16-bit
type and stabilizer. Training batches exist at one resolution N only, so they serve as
the fine grid: the discretization error is that of N/2 against N, which is larger than
the error at N, so the bound errs towards the cheaper precision by at most that factor
(the paper's estimate: order N^(-1/d)). Odd sizes lose their last point first.

The measurement also holds the model's output under ``torch.autocast`` (over the
whole model: autocast scope "model"); ``autocast_check`` of a decision says whether
autocast meets the same rule with the layers in the decided mode, and
:func:`decide_autocast` turns it off where a run would autocast and it does not.

The decision is applied to the layers and kept in
``model.precision_decision``; a plugin model's checkpoint records the decided
precision (its ``save_checkpoint`` writes the current settings), so
:func:`neuralop_mp.load_model` rebuilds it in that precision.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import torch

from ..layers.layer_precision import get_precision, set_fixed_precision
from ..vocabulary import dtype_name, normalize_half_dtype, resolve_half_dtype
from .measure import measure, variant_name
from .recommend import DEFAULT_FRACTION, DEFAULT_OVERFLOW_MARGIN, recommend


def calibrate_precision(model, batches, *, fraction=DEFAULT_FRACTION, overflow_margin=DEFAULT_OVERFLOW_MARGIN,
                        n_bands=None, apply=True):
    """Decide ``fno_block_precision`` of ``model`` from a few input batches, and apply it.

    Parameters
    ----------
    model : nn.Module
        A model with :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers. Its
        ``half_dtype`` and stabilizer are kept; only the mode is decided.
    batches : torch.Tensor or sequence of torch.Tensor
        Model inputs ``(batch, channels, *spatial)`` (after the data processor).
    fraction, overflow_margin : float
        The rule of :func:`~neuralop_mp.diagnose.recommend.recommend`.
    n_bands : int or None
        Mode bands recorded in the decision, as :func:`~neuralop_mp.diagnose.measure.measure`
        reads them (None: the default, 4, capped at what the grid holds; a number given is not
        capped: above what the grid holds, 4 included, it is refused).
    apply : bool, default True
        Switch the model to the decided precision.

    Returns
    -------
    dict
        ``fno_block_precision``, ``half_dtype``, ``per_layer`` (name, mode, half_dtype,
        precision_error, bound, reason: see :func:`~neuralop_mp.diagnose.recommend.choose_layer`),
        ``discretization_error``, ``calibration_resolution`` and ``autocast_check``
        (:func:`autocast_check`, for the decided mode); also stored as
        ``model.precision_decision``.

    Raises
    ------
    ValueError
        For inputs holding inf or NaN (in float32), naming how many entries and which samples;
        the model is left as it was.
    """
    decision = _calibrate(model, batches, fraction=fraction, overflow_margin=overflow_margin, n_bands=n_bands)
    if apply:
        set_fixed_precision(model, decision["fno_block_precision"])
    model.precision_decision = decision
    return decision


def _calibrate(model, batches, *, fraction=DEFAULT_FRACTION, overflow_margin=DEFAULT_OVERFLOW_MARGIN, n_bands=None,
               runs_in=None):
    """The decision of :func:`calibrate_precision`, nothing applied; its ``autocast_check`` is for
    the mode ``runs_in(decided mode)`` (default: the decided mode), the one the layers will run in."""
    if torch.is_tensor(batches):
        batches = [batches]
    batches = list(batches)
    if not batches or not all(torch.is_tensor(b) for b in batches):
        raise TypeError("calibrate_precision needs one or more input tensors (batch, channels, *spatial); "
                        f"got {type(batches).__name__}.")
    x = torch.cat([b.detach() for b in batches]).float()  # an odd grid: measure drops its last point
    _check_finite_calibration(x)
    _, half_name, _ = get_precision(model)
    half = dtype_name(resolve_half_dtype(half_name, x.device))
    diagnosis = measure(model, x, n_bands=n_bands, half_dtypes=(half,),
                        modes=("mixed", "half") if x.device.type == "cuda" else ("mixed",))
    rec = recommend(diagnosis, fraction=fraction, overflow_margin=overflow_margin, half_dtypes=(half,))
    decision = {
        "fno_block_precision": rec["model"]["fno_block_precision"],
        "half_dtype": normalize_half_dtype(half_name),
        "per_layer": rec["layers"],
        "discretization_error": diagnosis["model"]["discretization_error"],
        "calibration_resolution": diagnosis["fine_resolution"],
        "rule": rec["rule"]["text"],
    }
    mode = decision["fno_block_precision"]
    decision["autocast_check"] = autocast_check(diagnosis, runs_in(mode) if runs_in else mode, half,
                                                fraction=fraction, overflow_margin=overflow_margin)
    return decision


def _check_finite_calibration(x):
    """Refuse calibration inputs holding inf or NaN (in float32, which the measurement computes in):
    every precision's error would be NaN and the rule would decide "full" for no reason of
    precision. The data loaders refuse such data (:func:`~neuralop_mp.data.file_checks.check_data_file`)."""
    from ..data.file_checks import non_finite_samples

    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        bad = non_finite_samples(x)
        raise ValueError(
            f"Invalid calibration inputs: {n_bad} of their {x.numel()} entries are not finite (inf or NaN in "
            f"float32), in {len(bad)} of {x.shape[0]} samples, at sample indices {bad[:10]}"
            f"{' ...' if len(bad) > 10 else ''}; allowed values: finite numbers. 'auto' measures each precision's "
            "error on them, which inf/NaN makes NaN: fix or drop these samples.")


def autocast_check(diagnosis, mode, half_dtype, *, fraction=DEFAULT_FRACTION,
                   overflow_margin=DEFAULT_OVERFLOW_MARGIN):
    """Whether autocast over the whole model meets the rule of
    :func:`~neuralop_mp.diagnose.recommend.recommend` with the layers in ``mode``.

    The rule is recommend's own, applied to the measurement restricted to ``mode``'s
    variants: recommend's model-level autocast verdict is for the cheapest mode it
    accepts, and a schedule's phase may keep the layers in a more precise one.

    Parameters
    ----------
    diagnosis : dict
        What :func:`~neuralop_mp.diagnose.measure.measure` returned (with ``mode``'s
        variants in ``half_dtype``).
    mode : {"half", "mixed", "full"}
        The mode the layers run in. Off CUDA "half" computes as "mixed", whose
        measurement is used.
    half_dtype : {"float16", "bfloat16"}
    fraction, overflow_margin : float
        The rule of :func:`~neuralop_mp.diagnose.recommend.recommend`.

    Returns
    -------
    dict or None
        ``variant`` (e.g. "mixed-bfloat16+autocast"), its model-output ``error``, the
        ``bound`` it is held to (``fraction`` x the model's discretization error) and
        ``accepted``; None for "full" (no 16-bit mode, nothing measured to autocast with).
    """
    if mode == "full":
        return None
    measured = mode if diagnosis["device"] == "cuda" else "mixed"
    prefix = f"{measured}-"

    def only(variants):
        return {name: value for name, value in variants.items() if name.startswith(prefix)}

    view = {**diagnosis, "layers": [{**entry, "precision": only(entry["precision"])} for entry in diagnosis["layers"]],
            "model": {**diagnosis["model"], "precision": only(diagnosis["model"]["precision"])}}
    rec = recommend(view, fraction=fraction, overflow_margin=overflow_margin, half_dtypes=(half_dtype,))
    variant = variant_name(measured, half_dtype, diagnosis["stabilizer"] == "tanh", autocast=True)
    measured_error = (diagnosis["model"]["precision"].get(variant) or {}).get("error")
    disc = diagnosis["model"]["discretization_error"]
    return {"variant": variant, "error": measured_error, "bound": rec["rule"]["fraction"] * disc if disc else None,
            "accepted": rec["model"]["fno_block_precision"] == measured and rec["model"]["autocast"]}


def decide_autocast(decision, requested, scope):
    """``decision`` with ``autocast`` (whether the run autocasts) and ``autocast_note`` (why
    not, or the check it passed; None where nothing was checked).

    A run that would autocast (``requested``: its schedule's phase says so) keeps it where
    ``decision["autocast_check"]`` accepts it, or where the autocast ``scope`` (resolved
    on the device) is "spectral": there autocast rounds nothing outside the spectral
    layers, whose rounding the decision measured. A "full" decision runs without
    autocast: no 16-bit rounding was accepted. The check measured autocast over the whole
    model, so with scope "fno_blocks" it judges more rounding than the run does.
    """
    check = decision.get("autocast_check")
    if not requested:
        autocast, note = False, None
    elif decision["fno_block_precision"] == "full":
        autocast, note = False, "autocast off: the layers run full"
    elif scope == "spectral":
        autocast, note = True, None
    elif check and check["accepted"]:
        autocast, note = True, f"autocast kept: {_check_text(check, '<=')}"
    else:
        autocast, note = False, f"autocast off: {_check_text(check, '>')}" if check else "autocast off: not measured"
    return {**decision, "autocast": autocast, "autocast_note": note}


def _check_text(check, relation):
    error, bound = check["error"], check["bound"]
    if error is None or bound is None:
        return f"{check['variant']} not measured against a bound"
    return f"{check['variant']} precision error {error:.1e} {relation} bound {bound:.1e}"


def _model_input(batch):
    """The model input of a loader batch: ``batch["x"]``, the first item of an ``(x, y)``
    pair, or the batch itself."""
    if isinstance(batch, dict) and "x" in batch:
        return batch["x"]
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return batch[0]
    if torch.is_tensor(batch):
        return batch
    raise TypeError(f"Cannot find the model input in a loader batch of type {type(batch).__name__}"
                    + (f" with keys {sorted(batch)}" if isinstance(batch, dict) else "")
                    + "; allowed: {'x': ...} dicts, (x, y) pairs or input tensors.")


def loader_inputs(model, train_loader, data_processor=None, *, n_batches=2):
    """The model inputs of the first ``n_batches`` batches of a loader, each passed
    through the data processor as the trainer would, on the model's device. Batches are
    ``{"x": ...}`` dicts (what neuraloperator's loaders give), ``(x, y)`` pairs or
    input tensors. The batches are drawn with the global RNG forked: a shuffling loader
    draws its order from it, and the training that follows keeps the order it would
    have had without the calibration."""
    was_training = getattr(data_processor, "training", False)
    if data_processor is not None:
        data_processor.eval()  # statistics of a fitted normalizer stay as they are
    device = next(model.parameters()).device
    xs = []
    try:
        with torch.random.fork_rng(devices=[]):
            for i, batch in enumerate(train_loader):
                if i >= n_batches:
                    break
                if data_processor is not None:
                    batch = data_processor.preprocess(batch)
                xs.append(_model_input(batch).to(device))
    finally:
        if data_processor is not None:
            data_processor.train(was_training)
    if not xs:
        raise ValueError("The calibration loader gave no batch; 'auto' needs at least one batch of inputs.")
    return xs


def calibrate_from_loader(model, train_loader, data_processor=None, *, n_batches=2, **kwargs):
    """:func:`calibrate_precision` on the first ``n_batches`` of a training loader
    (:func:`loader_inputs`)."""
    return calibrate_precision(model, loader_inputs(model, train_loader, data_processor, n_batches=n_batches),
                               **kwargs)


_PRECISION_ORDER = ("half", "mixed", "full")  # cheapest first


def agree_across_ranks(model, decision, *, apply=True):
    """The most precise of every rank's ``decision``, applied to ``model`` (unless
    ``apply=False``: a caller that switches the layers itself).

    Under DDP each rank calibrates on its own shard of the data and may decide
    differently; one model must run one precision, and the safe choice is the most
    precise (an overflow seen by one rank rules 16 bits out for all). Autocast
    (``autocast_check``) is accepted where every rank accepts it. Outside a process
    group ``decision`` is returned unchanged. A collective: every rank must call it.

    Returns
    -------
    dict
        ``decision`` with the agreed ``fno_block_precision`` and, in a group, ``"per_rank"``:
        each rank's own choice. Also stored as ``model.precision_decision``.
    """
    from ..training import distributed

    check = decision.get("autocast_check")
    choices = distributed.gather_objects((decision["fno_block_precision"], bool(check and check["accepted"])))
    if len(choices) == 1:
        return decision
    modes = [mode for mode, _ in choices]
    agreed = max(modes, key=_PRECISION_ORDER.index)
    decision = {**decision, "fno_block_precision": agreed, "per_rank": modes}
    if check:  # one model, one autocast: only where every rank's measurement accepts it
        decision["autocast_check"] = {**check, "accepted": all(accepted for _, accepted in choices)}
    if apply and get_precision(model)[0] != agreed:
        set_fixed_precision(model, agreed)
    model.precision_decision = decision
    return decision


def recheck_phase(model, batches, phase_mode, *, apply=True, **kwargs):
    """Re-decide "auto" at the start of a precision-schedule phase.

    The phase's mode is the cheapest the layers may run in; the measurement of
    :func:`calibrate_precision` (with the model's current half type and stabilizer,
    i.e. the phase's) decides whether it is accurate and safe enough, and the layers
    run in the more precise of the phase's mode and the cheapest accepted one: a
    "half" phase may end up "mixed" or "full", a "mixed" phase "full". Overflow risk
    (float16 without tanh, margin below ``overflow_margin``) rules a 16-bit mode out
    as it does in :func:`calibrate_precision`. Outside CUDA "half" runs as "mixed", so
    an accepted "mixed" keeps a "half" phase as it is.

    Parameters
    ----------
    model : nn.Module
        A model with :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers, in the
        phase's half type and stabilizer.
    batches : torch.Tensor or sequence of torch.Tensor
        Model inputs, as for :func:`calibrate_precision`.
    phase_mode : {"half", "mixed", "full"}
        The mode the phase asks for; "full" is kept without measuring.
    apply : bool, default True
        Switch the layers to the decided mode.
    **kwargs
        ``fraction``, ``overflow_margin``, ``n_bands`` of :func:`calibrate_precision`.

    Returns
    -------
    dict
        The decision of :func:`calibrate_precision` with ``fno_block_precision`` the
        mode the layers run in, ``phase_mode``, ``cheapest_accepted`` (the
        measurement's own choice) and ``autocast_check`` for the mode the layers run
        in; also stored as ``model.precision_decision``.
    """
    if phase_mode not in _PRECISION_ORDER:
        raise ValueError(f"Invalid phase_mode={phase_mode!r}; allowed values: {', '.join(_PRECISION_ORDER)}.")
    if phase_mode == "full":
        decision = {"fno_block_precision": "full", "phase_mode": "full", "cheapest_accepted": None,
                    "per_layer": [], "discretization_error": None, "rule": "full phase: nothing to decide",
                    "autocast_check": None}
    else:
        device = next(model.parameters()).device.type

        def runs_in(accepted):
            covers = "half" if accepted == "mixed" and device != "cuda" else accepted  # same computation there
            return max(phase_mode, covers, key=_PRECISION_ORDER.index)

        # autocast is judged with the layers in the mode they will run in
        decision = _calibrate(model, batches, runs_in=runs_in, **kwargs)
        accepted = decision["fno_block_precision"]
        decision.update(fno_block_precision=runs_in(accepted), phase_mode=phase_mode, cheapest_accepted=accepted)
    if apply:
        set_fixed_precision(model, decision["fno_block_precision"])
    model.precision_decision = decision
    return decision
