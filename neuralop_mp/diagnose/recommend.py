"""From a measurement to a precision choice: per layer, for the model, and a schedule.

Rule: a precision is acceptable for a layer when its precision error is at most
``fraction`` times the layer's discretization error (default 0.5: the rounding error
stays well inside the error the grid already makes), and, for float16 without tanh,
when the float16 overflow margin is at least ``overflow_margin`` (default 16: the
largest pre-FFT magnitude may grow 16-fold during training before float16 overflows).
Among the acceptable precisions the cheapest is chosen: "half" before "mixed" before
"full" on CUDA ("half" is "mixed" elsewhere, so there "mixed" is named); between 16-bit types, float16 first on CUDA (tensor cores, half FFTs) and
bfloat16 first elsewhere. Only the model's own stabilizer is considered: switching
tanh on or off changes the function the model computes.

The model as a whole runs in one precision: the cheapest that every layer accepts. ``autocast`` is recommended when the model-level error with autocast
also meets the rule against the model's discretization error; that error was measured with
autocast over the whole model (autocast scope "model"), so the ``train`` options then set that
scope, unless the model's own scope is it on the device anyway (:func:`scope_to_train_with`).

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import math

from ..vocabulary import check_real, resolve_autocast_scope
from .measure import AUTOCAST_SCOPE_MEASURED, variant_name

DEFAULT_FRACTION = 0.5
DEFAULT_OVERFLOW_MARGIN = 16.0
_COST_ORDER = ("half", "mixed", "full")


def _dtype_order(device_type):
    return ("float16", "bfloat16") if device_type == "cuda" else ("bfloat16", "float16")


def check_settings(fraction, overflow_margin):
    """``(fraction, overflow_margin)`` as floats, each a finite number > 0 (a numpy or 0-d
    tensor number becomes a float, so the JSON rule holds plain numbers); ValueError naming
    the bad one otherwise."""
    return (check_real("fraction", fraction, low=0, low_open=True),
            check_real("overflow_margin", overflow_margin, low=0, low_open=True))


def _acceptable(error, bound):
    return error is not None and math.isfinite(error) and error <= bound


def _candidates(device_type, half_dtypes):
    """``(mode, half_dtype)`` pairs cheapest first ("half" only where it differs from "mixed")."""
    modes = _COST_ORDER[:-1] if device_type == "cuda" else ("mixed",)
    return [(mode, dtype) for mode in modes for dtype in half_dtypes or _dtype_order(device_type)]


def _judge(entry, mode, dtype, *, tanh, bound, overflow_margin):
    """The rule for one layer entry and one candidate: ``(error, None)`` when it accepts
    the candidate, ``(None, reason)`` when not (the reason in words, for the record)."""
    measured = entry["precision"].get(variant_name(mode, dtype, tanh))
    if measured is None:
        return None, f"{variant_name(mode, dtype, tanh)} not measured"
    if bound is None:
        return None, "no bound: no discretization error was measured"
    margin = entry["overflow"]["float16_margin"]
    if dtype == "float16" and not tanh and margin < overflow_margin:
        return None, f"float16 overflow margin {margin:.3g} < {overflow_margin:g}"  # overflow risk: a safer choice
    error = measured["error"]
    if _acceptable(error, bound):
        return error, None
    if error == math.inf and entry.get("zero_output"):
        return None, "precision error inf: the full-precision output is exactly zero and this one is not"
    if error is None or not math.isfinite(error):
        return None, f"precision error {error} is not finite"
    return None, f"precision error {error:.1e} > bound {bound:.1e}"


def _bound(entry, fraction, discretization_error):
    disc = entry.get("discretization_error")
    disc = discretization_error if disc is None else disc
    return fraction * disc if disc is not None else None


def choose_layer(entry, *, tanh, device_type, fraction=DEFAULT_FRACTION, overflow_margin=DEFAULT_OVERFLOW_MARGIN,
                 discretization_error=None, half_dtypes=None):
    """The cheapest acceptable ``(mode, half_dtype)`` of one layer entry of
    :func:`~neuralop_mp.diagnose.measure.measure`, with its error, the bound it met and
    ``reason`` None; else ``("full", None)`` with ``precision_error`` None (no 16-bit
    error was accepted) and ``reason``: why each candidate was refused, e.g. "float16
    overflow margin 3.2 < 16" (prefixed by the candidate's name when several were tried
    and refused for different reasons). ``discretization_error`` stands in for a layer
    whose own could not be measured."""
    fraction, overflow_margin = check_settings(fraction, overflow_margin)
    bound = _bound(entry, fraction, discretization_error)
    refused = {}
    for mode, dtype in _candidates(device_type, half_dtypes):
        error, reason = _judge(entry, mode, dtype, tanh=tanh, bound=bound, overflow_margin=overflow_margin)
        if reason is None:
            return {"mode": mode, "half_dtype": dtype, "precision_error": error, "bound": bound, "reason": None}
        refused[variant_name(mode, dtype, tanh)] = reason
    if len(set(refused.values())) == 1:
        reason = next(iter(refused.values()))
    else:
        reason = "; ".join(f"{name}: {why}" for name, why in refused.items())
    return {"mode": "full", "half_dtype": None, "precision_error": None, "bound": bound, "reason": reason}


def recommend(diagnosis, *, fraction=DEFAULT_FRACTION, overflow_margin=DEFAULT_OVERFLOW_MARGIN, device_type=None,
              half_dtypes=None):
    """Per-layer and model precision, autocast, and a schedule string from a measurement.

    Parameters
    ----------
    diagnosis : dict
        What :func:`~neuralop_mp.diagnose.measure.measure` returned.
    fraction : float, default 0.5
        Precision error allowed, as a fraction of the discretization error.
    overflow_margin : float, default 16
        Smallest float16 overflow margin accepted for float16 without tanh.
    device_type : str, optional
        The device the model will train on (decides float16 vs bfloat16 preference);
        defaults to the device measured on.
    half_dtypes : sequence of {"float16", "bfloat16"}, optional
        The 16-bit types allowed, in order of preference; default: both, the
        device's preferred one first.

    Returns
    -------
    dict
        ``rule``, ``layers`` (name, mode, half_dtype, precision_error, bound, reason: see
        :func:`choose_layer`),
        ``model`` (fno_block_precision, half_dtype, stabilizer, autocast), ``train_flags``
        (the ``neuralop-mp train`` options that run it: :func:`train_flags`) and
        ``schedule`` (a :class:`~neuralop_mp.PrecisionSchedule` string).
    """
    fraction, overflow_margin = check_settings(fraction, overflow_margin)
    device_type = device_type or diagnosis["device"]
    tanh = diagnosis["stabilizer"] == "tanh"
    model_disc = diagnosis["model"]["discretization_error"]
    layers = []
    for entry in diagnosis["layers"]:
        choice = choose_layer(entry, tanh=tanh, device_type=device_type, fraction=fraction,
                              overflow_margin=overflow_margin, discretization_error=model_disc,
                              half_dtypes=half_dtypes)
        layers.append({"name": entry["name"], **choice})
    # the model runs in one precision: the cheapest candidate that every layer accepts
    mode, dtype = "full", None
    for candidate, candidate_dtype in _candidates(device_type, half_dtypes):
        if all(_judge(entry, candidate, candidate_dtype, tanh=tanh, overflow_margin=overflow_margin,
                      bound=_bound(entry, fraction, model_disc))[1] is None for entry in diagnosis["layers"]):
            mode, dtype = candidate, candidate_dtype
            break
    autocast = False
    if mode != "full":
        key = variant_name(mode, dtype, tanh, autocast=True)
        measured = diagnosis["model"]["precision"].get(key)
        autocast = bool(measured) and _acceptable(measured["error"], fraction * model_disc)
    scope = scope_to_train_with(diagnosis, device_type) if autocast else None
    stab = "/tanh" if tanh else "/notanh"
    ac = "/autocast" if autocast else "/noautocast"
    if mode == "half":
        schedule = f"half:0.25{stab}{ac},mixed:0.5{stab}{ac},full:0.25{stab}/noautocast"
    elif mode == "mixed":
        schedule = f"mixed:0.75{stab}{ac},full:0.25{stab}/noautocast"
    else:
        schedule = f"full{stab}/noautocast"
    model = {"fno_block_precision": mode, "half_dtype": dtype if mode != "full" else None,
             "stabilizer": diagnosis["stabilizer"], "autocast": autocast}
    return {
        "rule": {"fraction": fraction, "overflow_margin": overflow_margin, "device_type": device_type,
                 "text": f"cheapest precision with precision error <= {fraction:g} x discretization error; "
                         f"float16 without tanh only with overflow margin >= {overflow_margin:g}"},
        "layers": layers,
        "model": model,
        "train_flags": train_flags(model, autocast_scope=scope),
        "schedule": schedule,
    }


def scope_to_train_with(diagnosis, device_type):
    """The autocast scope a run must be given (``--model.autocast_scope``) to autocast as the
    model-level "+autocast" errors of ``diagnosis`` were measured: that scope (``diagnosis["model"]
    ["autocast_scope"]``, "model"), or None where the model's own (``diagnosis["autocast_scope"]``)
    resolves to it on ``device_type`` anyway ("model", or "auto" on CUDA). A diagnosis that does not
    record the model's own scope (or whose models disagree) gets the scope named."""
    measured = diagnosis["model"].get("autocast_scope", AUTOCAST_SCOPE_MEASURED)
    own = diagnosis.get("autocast_scope")
    if own is not None and resolve_autocast_scope(own, device_type) == measured:
        return None
    return measured


def train_flags(model, autocast_scope=None):
    """The ``neuralop-mp train`` options that run a model as ``model`` (the ``"model"`` entry of
    :func:`recommend`) says, throughout training.

    Always a one-phase ``opt.precision_schedule`` that says the mode, stabilizer and autocast
    explicitly: given after the config's own options it replaces any schedule they set (a
    config file's, or ``--opt.precision_schedule`` among the overrides passed on), which would
    otherwise govern the run. ``model.stabilizer`` names the phase's stabilizer too ("none", typed:
    no stabilizer, or "tanh"): it replaces one the config sets, which beside a schedule that does
    not run it would be warned about as not applied; the same as the phase, it is not.
    ``autocast_scope`` (with autocast only; None: the run's own) is given as ``model.autocast_scope``:
    the scope the autocast error was measured with, where the run's own would be another
    (:func:`scope_to_train_with`).

    Returns
    -------
    list of str
        Tokens such as ``["--model.fno_block_precision", "mixed", "--model.half_dtype",
        "bfloat16", "--model.stabilizer", "none", "--opt.precision_schedule",
        "mixed/notanh/noautocast"]``.
    """
    mode, dtype, stabilizer, autocast = (model["fno_block_precision"], model["half_dtype"], model["stabilizer"],
                                         bool(model["autocast"]))
    flags = ["--model.fno_block_precision", mode]
    if dtype is not None:
        flags += ["--model.half_dtype", dtype]
    flags += ["--model.stabilizer", "tanh" if stabilizer else "none"]
    if autocast and autocast_scope is not None:
        flags += ["--model.autocast_scope", autocast_scope]
    return flags + ["--opt.precision_schedule",
                    f"{mode}/{'tanh' if stabilizer else 'notanh'}/{'autocast' if autocast else 'noautocast'}"]
