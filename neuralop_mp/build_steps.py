"""The steps from a config to a model, an optimizer and a trainer's precision arguments.

``neuralop-mp train`` (:mod:`neuralop_mp.train_pipeline`) and ``neuralop-mp run`` /
:func:`neuralop_mp.enable` (:mod:`neuralop_mp.runner.intercept`, which builds when an
upstream script calls ``get_model``, ``Trainer`` or ``neuralop.training.AdamW``) both
call these functions, so a config means the same model, optimizer and precision
schedule on either path.

Each step takes the function it builds with as an optional argument (``get_model``,
``create_optimizer``), defaulting to the plugin's own: the runner passes the parts it
bound before patching upstream's names (and its tests pass fakes).
"""
from .precision_policy import PrecisionPolicy
from .vocabulary import STABILIZER_OFF, none_if_null, normalize_flag, normalize_stabilizer, read_key


def precision_policy(config, prefix="model"):
    """The :class:`PrecisionPolicy` of ``config.model`` (a whole config or the section).

    Parsed and validated once; the model, the schedule and the trainer share it.
    """
    section = read_key(config, "model", None)
    return PrecisionPolicy.from_config(config if section is None else section, prefix=prefix)


def parse_precision_schedule(value):
    """``opt.precision_schedule`` as a :class:`PrecisionSchedule`, or None when unset.

    Raises
    ------
    ValueError
        Naming the value and what is wrong with it.
    """
    from .training.schedule import PrecisionSchedule

    if isinstance(value, PrecisionSchedule):
        return value
    value = none_if_null(value)
    if value is None:
        return None
    try:
        return PrecisionSchedule.from_config(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Invalid opt.precision_schedule={value!r}: {error}") from None


def precision_schedule(schedule, policy, autocast=None):
    """The schedule the trainer runs: ``schedule`` if set, else ``policy``'s mode throughout.

    The constant schedule keeps that mode's defaults (autocast on for "mixed" and
    "half"; for "half", tanh with float16 and none with bfloat16, whose range needs no
    stabilizer) unless the policy names a stabilizer ("tanh", or "off": the phase runs
    none, whatever the mode), or ``autocast`` (True / False) says otherwise: "auto" turns
    autocast off where its calibration does not accept it.
    """
    from .training.schedule import PrecisionSchedule

    parsed = parse_precision_schedule(schedule)
    if parsed is not None:
        return parsed
    # None is no request (the phase's default); "off" a phase stabilizer of None, said explicitly
    phase_kwargs = {"stabilizer": policy.applied().stabilizer} if policy.stabilizer is not None else {}
    if autocast is not None:
        phase_kwargs["autocast"] = autocast
    return PrecisionSchedule.constant(policy.fno_block_precision, **phase_kwargs)


def stabilizer_schedule_warning(stabilizer, schedule, half_dtype=None, *, stabilizer_key="model.stabilizer",
                                schedule_key="opt.precision_schedule"):
    """The warning for a stabilizer set beside a precision schedule, or None when there is none.

    Each phase of a schedule sets its own stabilizer when it starts, so the stabilizer the
    model is built with does not run. ``neuralop-mp train`` (``model.stabilizer`` with
    ``opt.precision_schedule``) and ``neuralop-mp run`` (``--mp.stabilizer`` with
    ``--mp.schedule``) say so with this message. No warning where every phase runs the
    stabilizer asked anyway (``"off"`` beside ``mixed/notanh``, as ``neuralop-mp diagnose``
    recommends; ``"tanh"`` beside ``half/tanh`` with a known half type). Its advice is the phase
    suffix of the request: ``/tanh`` for ``"tanh"``, ``/notanh`` for ``"off"``.

    Parameters
    ----------
    stabilizer : str or None
        The request: None (also its null spellings) is none, "off" or "tanh".
    schedule : str, PrecisionSchedule or None
    half_dtype : torch.dtype or str, optional
        The half type the run computes in (a dtype, or "float16" / "bfloat16"), which
        decides a half phase's default stabilizer (tanh with float16, none with
        bfloat16); unknown when None or "auto" (the device decides).
    stabilizer_key, schedule_key : str
        The names the user gave the two settings, for the message.
    """
    stabilizer = none_if_null(stabilizer)
    parsed = parse_precision_schedule(schedule)
    if stabilizer is None or parsed is None:
        return None
    if isinstance(half_dtype, str):
        from .vocabulary import normalize_half_dtype, resolve_half_dtype

        half_dtype = None if normalize_half_dtype(half_dtype) == "auto" else resolve_half_dtype(half_dtype, "cpu")

    def runs_with(phase):
        if phase.stabilizer == "auto" and half_dtype is None:
            return "tanh with float16, none with bfloat16"
        return phase.stabilizer_for(half_dtype) or "none"

    # what the request applies ("off": none); every phase running it anyway leaves nothing unapplied
    asked = normalize_stabilizer(stabilizer) or "none"
    if all(runs_with(phase) == asked for phase in parsed):
        return None

    phases = "; ".join(f"'{phase}': {runs_with(phase)}" for phase in parsed)
    # the way to what was asked, phase by phase: tanh with '/tanh', none ("off") with '/notanh'
    advice = ("with tanh, write '/tanh' after it in {key}, e.g. 'mixed/tanh'" if asked == "tanh" else
              "without tanh, write '/notanh' after it in {key}, e.g. 'half/notanh'").format(key=schedule_key)
    return (f"{stabilizer_key}={stabilizer!r} is not applied: with {schedule_key}={str(parsed)!r} each phase "
            f"runs with its own stabilizer ({phases}). To run a phase {advice}; to use {stabilizer_key} for "
            f"the whole run, leave {schedule_key} unset.")


def precision_schedule_warning(precision, schedule, *, precision_key="model.fno_block_precision",
                               schedule_key="opt.precision_schedule"):
    """The warning for a precision mode set beside a precision schedule that does not start in
    it, or None when there is none.

    Each phase of a schedule sets the spectral layers' mode as it starts, the first one at the
    first epoch, so the mode the model is built in (``model.fno_block_precision`` beside
    ``opt.precision_schedule`` in ``neuralop-mp train``, ``--mp.precision`` beside
    ``--mp.schedule`` in ``neuralop-mp run``) trains only where a phase runs it. No warning
    where the first phase runs the mode asked: the run starts in the mode the model was built
    in and the schedule moves on from it, as it says (``mixed`` beside ``mixed:0.5,full:0.5``).
    None for ``"auto"``, which each phase re-decides at its start (its documented use with a
    schedule), and without a mode or a schedule.

    Parameters
    ----------
    precision : str or None
        The mode asked: "full", "mixed", "half" or "auto"; None (also its null spellings): none.
    schedule : str, PrecisionSchedule or None
    precision_key, schedule_key : str
        The names the user gave the two settings, for the message.
    """
    from .vocabulary import AUTO_PRECISION

    precision = none_if_null(precision)
    parsed = parse_precision_schedule(schedule)
    if precision is None or precision == AUTO_PRECISION or parsed is None or parsed[0].mode == precision:
        return None
    modes = [phase.mode for phase in parsed]
    never = "" if precision in modes else f", and no phase runs {precision!r}"
    return (f"{precision_key}={precision!r} is not what the run starts in: with {schedule_key}={str(parsed)!r} "
            f"each phase sets its own mode from the first epoch on ({' then '.join(modes)}){never}. To start in "
            f"{precision!r}, make it the first phase of {schedule_key}; to run {precision!r} throughout, leave "
            f"{schedule_key} unset; to run the schedule as written, leave {precision_key} out.")


def stabilizer_off_note(policy, schedule, half_dtype, *, stabilizer_key="model.stabilizer"):
    """A note for a stabilizer of "off" that leaves a float16 "half" run without tanh, or None: the
    stabilizer that runs and what it risks (``"none, as model.stabilizer asks: ..."``), which the
    callers give after the word "stabilizer".

    tanh is the "half" mode's default in float16 for a reason: float16's largest value is
    65504, and the FFT's inputs can exceed it. A run whose ``policy`` asks "off" (``--model.stabilizer
    none`` / ``--mp.stabilizer none``, typed) gets what it asked, and this one note says what it
    risks. Only where the policy's request decides the stabilizer: a constant "half" phase (no
    ``schedule`` given: a schedule's phases set their own) in float16.

    Parameters
    ----------
    policy : PrecisionPolicy
    schedule : str, PrecisionSchedule or None
        The schedule the run was given (``opt.precision_schedule``, ``--mp.schedule``).
    half_dtype : torch.dtype or None
        The half type the run computes in (None: not known).
    stabilizer_key : str
        The option as the user gave it, for the note.
    """
    import torch

    if (policy.stabilizer != STABILIZER_OFF or policy.fno_block_precision != "half"
            or half_dtype != torch.float16 or parse_precision_schedule(schedule) is not None):
        return None
    return (f"none, as {stabilizer_key} asks: no tanh before the FFTs of the float16 'half' run (the mode's "
            "default there), so spectral values beyond float16's 65504 overflow to inf and the steps they spoil "
            f"are skipped (see the skipped steps); if many are, set {stabilizer_key} tanh or use the bfloat16 "
            "half type.")


def build_model(config, policy, get_model=None):
    """``config.model`` built with the parsed ``policy`` (:func:`neuralop_mp.get_model`)."""
    if get_model is None:
        from .models.registry import get_model
    return get_model(config, precision_policy=policy)


def build_optimizer(model, opt_config, create_optimizer=None):
    """The optimizer ``opt_config`` (an ``opt`` section or a dict of its fields) names.

    See :func:`neuralop_mp.optim.factory.create_optimizer` for the fields.
    """
    if create_optimizer is None:
        from .optim.factory import create_optimizer
    return create_optimizer(model, opt_config)


def trainer_precision_kwargs(schedule, half_dtype=None, loss_scaling=None):
    """The :class:`~neuralop_mp.MixedPrecisionTrainer` arguments that carry the precision.

    Parameters
    ----------
    schedule : PrecisionSchedule or None
        What the trainer runs: its phases decide autocast (no ``mixed_precision``).
    half_dtype : str, optional
        The policy's half type ("auto" | "float16" | "bfloat16").
    loss_scaling : str, optional
        ``opt.loss_scaling``.

    Returns
    -------
    dict
        ``precision_schedule``, ``half_dtype`` and ``loss_scaling``, each only when its
        input was given (the trainer's defaults apply to the others).
    """
    kwargs = {}
    if schedule is not None:
        kwargs["precision_schedule"] = schedule
    if half_dtype is not None:
        kwargs["half_dtype"] = half_dtype
    if loss_scaling is not None:
        kwargs["loss_scaling"] = loss_scaling
    return kwargs


def trainer_memory_kwargs(update_in_backward=None):
    """The :class:`~neuralop_mp.MixedPrecisionTrainer` arguments that carry the memory settings.

    Parameters
    ----------
    update_in_backward : bool or str, optional
        ``opt.update_in_backward`` (``"true"`` / ``"false"`` from a command line
        accepted): step each parameter during backward and free its gradient.

    Returns
    -------
    dict
        ``update_in_backward`` when given (the trainer's default, off, applies otherwise).
    """
    if update_in_backward is None:
        return {}
    return {"update_in_backward": normalize_flag(update_in_backward, "opt.update_in_backward")}
