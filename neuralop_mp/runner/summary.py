"""The text ``neuralop-mp run`` prints after the script: what ran, in which precision, at what cost.

The precision is told as ``neuralop-mp train`` tells it (the same functions): each phase with
its autocast and resolved half type, and what the spectral layers computed on the device
(:func:`neuralop_mp.train_report.precision_as_run`: "half" runs as "mixed" off CUDA).
"""
import os
import re
import traceback
from pathlib import Path

import torch
import zencfg

from ..configs.zencfg_compat import PYDANTIC_CONFIGS
from ..run_records import human_bytes as _bytes
from ..run_records import phase_ranges
from ..train_report import SKIPPED_STEPS, precision_as_run
from ..signals import status_name
from ..vocabulary import dtype_name, public_name, resolve_half_dtype
from .activation import optimizer_replacement_reason
from .intercept import requested_precision


def _history(report):
    rows = []
    for trainer in report.trainers:
        rows += trainer.get("history") or []
    return rows


def _calls(report):
    """``(trainer entry, call)`` of every ``train()`` call, in order (a report of a trainer whose
    calls were not recorded: its history as one call)."""
    calls = []
    for trainer in report.trainers:
        recorded = trainer.get("calls") or ([{"history": trainer["history"]}] if trainer.get("history") else [])
        calls += [(trainer, call) for call in recorded if call["history"]]
    return calls


def _resolved(half_dtype, device):
    """``half_dtype`` as it resolves on ``device`` ("auto (bfloat16)"); as it is without a device."""
    if half_dtype is None or device is None:
        return str(half_dtype)
    name = dtype_name(resolve_half_dtype(half_dtype, device))
    return name if name == half_dtype else f"{half_dtype} ({name})"


def _phase_text(phase, history):
    """One phase: its mode, ``+autocast``, ``+stabilizer``, the 16-bit type it computed in and
    its epochs, e.g. ``half+autocast in bfloat16 (epochs 0-1)``."""
    first, last = phase["start_epoch"], phase["end_epoch"] - 1
    # full precision computes in no half type, but its autocast does (the epoch's record names it)
    half = phase["half_dtype"] or (next((h.get("half_dtype") for h in history if h.get("epoch") == first), None)
                                   if phase["autocast"] else None)
    text = (f"{phase['mode']}{'+autocast' if phase['autocast'] else ''}"
            f"{'+' + phase['stabilizer'] if phase['stabilizer'] else ''}{' in ' + half if half else ''}")
    return f"{text} ({f'epochs {first}-{last}' if first != last else f'epoch {first}'})"


def _grid_sizes(history):
    """The resolutions a call evaluated at, as its metrics name them (``"32_l2"``: upstream's scripts
    key their test loaders by resolution), for :func:`precision_as_run` (cuFFT's half FFT: powers of 2)."""
    return sorted({int(key.partition("_")[0]) for h in history for key in h
                   if key.partition("_")[0].isdigit() and key.partition("_")[2]})


def _as_run(phase, device, sizes):
    """:func:`precision_as_run` of a phase on ``device`` (None where the device or half type is unknown)."""
    if device is None or (phase["mode"] != "full" and not phase["half_dtype"]):
        return None
    half = getattr(torch, phase["half_dtype"]) if phase["half_dtype"] else None
    return precision_as_run(phase["mode"], half, device, sizes)


def _trained_model_line(trainer, options):
    """The model a trainer received that the script built itself: its plugin layers, and whose
    schedule switched them (the requested option's, or the script's own precision_schedule)."""
    count = trainer.get("plugin_layers") or 0
    text = (f"trained model: {trainer['trained_model']} (built by the script, not through get_model) with "
            f"{count} MixedPrecisionSpectralConv layer(s)")
    upstream = len(trainer.get("upstream_layers") or ())
    if upstream:
        text += f" and {upstream} upstream spectral layer(s)"
    if not count:
        return text + ": no precision was switched"
    source = trainer.get("schedule_from")
    if source == "options":
        return text + f"; precision set by the trainer's schedule from {requested_precision(options)}"
    if source == "the script":
        return text + "; precision set by the script's own precision_schedule"
    return text + "; precision as the script built it"


# what upstream's scripts import as neuralop.training.AdamW, where the report records its class
UPSTREAM_ADAMW = "neuralop.training.adamw.AdamW"


def _optimizer_lines(report):
    """How the script's optimizer came about: replaced (by what, because of which option), or
    kept; a kept one is named where a trainer trained with it (a hand-written loop's is unknown)."""
    lines = []
    for o in report.optimizers:
        because = f" because {o['reason']}" if o.get("reason") else ""
        lines.append(f"optimizer: upstream {public_name(o['replaced'])} replaced by {o['class']} "
                     f"({o['kind']}){because}")
    if optimizer_replacement_reason(report.options) is None:  # nothing was replaced: what the trainers got
        used = list(dict.fromkeys(path for t in report.trainers for path in t.get("optimizers") or ()))
        if UPSTREAM_ADAMW in used:
            lines.append("optimizer: the script's own (upstream neuralop.training.AdamW is kept: no option asked "
                         "for the plugin's optimizer)")
        others = [public_name(path) for path in used if path != UPSTREAM_ADAMW]
        if others:
            lines.append(f"optimizer: the script's own {', '.join(others)}")
    return lines


#: pyproject.toml's zencfg requirement: the versions that load neuraloperator 2.0.0's configs
ZENCFG_REQUIREMENT = "zencfg>=0.7,<1.0"

# zencfg 1.0 raises a pydantic validation error's text: "1 validation error for FNO_Small2d\narch\n  Field required"
_MISSING_FIELD = re.compile(r"^\d+ validation errors? for (\w+)\n(\S+)\n\s+Field required", re.M)


def zencfg_cause(error):
    """One line naming zencfg >= 1.0 as the cause of ``error``, the exception a script ended
    with, or None.

    neuraloperator 2.0.0's ``config/models.py`` declares ``ModelConfig.arch`` without a default:
    zencfg 1.0 makes it a required field, so every upstream script fails while it imports its
    config with "1 validation error for FNO_Small2d / arch / Field required", which names
    neither zencfg's version nor the fix. Told so only for that error (a required field missing)
    raised through zencfg's own code while zencfg >= 1.0 is installed.
    """
    if error is None or not PYDANTIC_CONFIGS:
        return None
    match = _MISSING_FIELD.search(str(error))
    package = Path(zencfg.__file__).resolve().parent
    through_zencfg = any(package in Path(frame.filename).resolve().parents
                         for frame in traceback.extract_tb(error.__traceback__))
    if match is None or not through_zencfg:
        return None
    return (f"neuraloperator 2.0.0's configs need zencfg<1.0 (installed: {zencfg.__version__}, which requires their "
            f"field {match[1]}.{match[2]}: it has no default): pip install '{ZENCFG_REQUIREMENT}'")


def script_folder_cause(error, script, cwd=None):
    """One line for a script that could not import a module kept beside its own folder, or None.

    neuraloperator's scripts import their configs with ``sys.path.insert(0, "../")``: ``../``
    of the working directory, which is the folder beside ``scripts/`` only when the script is
    run from inside ``scripts/``. From elsewhere (``neuralop-mp run scripts/train_darcy.py``)
    the import fails with "No module named 'config'", which says neither why nor where to run it.
    Told so only for a :class:`ModuleNotFoundError` whose module is in the script folder's parent
    while the working directory (``cwd``, default the current one) is another folder.
    """
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not name:
        return None
    folder = Path(script).resolve().parent
    top = name.partition(".")[0]
    beside = folder.parent / top
    if not (beside.is_dir() or beside.with_suffix(".py").is_file()):
        return None
    here = Path(cwd or Path.cwd()).resolve()
    if here == folder:
        return None
    shown = os.path.relpath(folder, here)
    shown = shown if not shown.startswith(os.pardir * 2) else str(folder)  # far away: the whole path
    return (f"{Path(script).name} imports {top!r} through '../' of the working directory, which reaches {beside} only "
            f"from inside {folder.name}/: run it from its {folder.name}/ folder (cd {shown}).")


#: what our flags start with (neuralop_mp.runner.cli reads them before '--' in any of these spellings)
_FLAG_STARTS = ("--mp.", "--mp-", "--mp_")


def flags_after_separator_cause(script_args):
    """One line for ``--mp.*`` flags given after ``--``, which went to the script, or None: a script
    that stopped on them (zencfg's "Got key 'mp' that is not a valid field") names neither the flags nor
    where they go."""
    flags = [arg.partition("=")[0] for arg in script_args if arg.startswith(_FLAG_STARTS)]
    if not flags:
        return None
    flags = list(dict.fromkeys(flags))
    return (f"{', '.join(flags)} came after '--', so {'they' if len(flags) > 1 else 'it'} went to the script, not to "
            "neuralop-mp run: the --mp.* flags go before '--' (neuralop-mp run SCRIPT.py --mp.precision mixed -- "
            "SCRIPT ARGS).")


def trainer_failure(refusal):
    """``(what, why)`` of an entry of the report's ``trainer_refusals``, as the summary says it: a
    refusal of the plugin's own checks (``refused_by_plugin``; an entry without it too) "refused to be
    created", anything else (an error inside upstream's constructor, or torch's) "raised TYPE while
    being created", pointing at its traceback where the script ended with it (``ended_script``)."""
    trainer = f"neuralop.Trainer ({refusal['class']})"
    if refusal.get("refused_by_plugin", True):
        return f"{trainer} refused to be created", refusal["error"]
    kind, _, message = refusal["error"].partition(":")  # the entry's error: "TypeName: first line of its message"
    shown = "its traceback above shows where" if refusal.get("ended_script") else ""
    return f"{trainer} raised {kind} while being created", "; ".join(filter(None, (message.strip(), shown))) or kind


def end_warnings(report):
    """What was requested but, judging from what was actually intercepted, did not happen, and
    the report's notes.

    The report's exit status tells a script that stopped early: one that failed or was
    interrupted before it built a model gets one line saying so, not the warnings about
    what a finished script should have built; one that stopped after its model without a
    Trainer is told how it ended and that it had created none, not that it never creates one; one
    whose ``Trainer(...)`` raised is told that the trainer refused to be created, and why, or, for an
    error raised inside upstream's constructor, that it raised one (the report's ``trainer_refusals``,
    :func:`trainer_failure`).
    A model the script built itself with the plugin's layers counts by what its trainer
    trained: the precision was applied to its plugin layers (the upstream layers beside them,
    which keep their own precision, are named).
    """
    options = report.options
    status = report.exit_status
    stopped = status not in (None, 0)
    ended = "was interrupted" if report.interrupted else f"ended with exit status {status}"
    # a model the script built itself with the plugin's layers (MixedPrecisionFNO(...), conv_module=...) and
    # handed to a trainer: what that trainer trained is what tells whether the precision was applied
    trained = [t for t in report.trainers if t.get("plugin_layers")]
    refusal = report.trainer_refusals[-1] if report.trainer_refusals else None
    if not report.models and not trained and stopped:
        refused = " (its {}: {})".format(*trainer_failure(refusal)) if refusal is not None else ""
        return [f"the script {ended} before it built a model through neuralop.get_model{refused}: nothing ran "
                "with the plugin."] + report.notes
    warnings = []
    wants_precision = options.get("precision") not in (None, "full") or options.get("schedule") is not None
    if not report.models:
        if not (wants_precision and trained):
            warnings.append(
                "no model was built through neuralop.get_model"
                + (": the requested precision was NOT applied." if wants_precision else ".")
            )
    elif wants_precision and not trained and not any("MixedPrecisionSpectralConv" in m["layer_types"] for m in report.models):
        warnings.append("no model got the mixed-precision layer: the requested precision was NOT applied.")
    if wants_precision:
        for t in trained:
            if t.get("upstream_layers"):
                names = t["upstream_layers"]
                warnings.append(f"{t['trained_model']} (trained by {t['class']}) has {len(names)} upstream spectral "
                                f"layer(s) that stayed in their own precision: {', '.join(names[:6])}"
                                f"{f' and {len(names) - 6} more' if len(names) > 6 else ''}; only its "
                                "MixedPrecisionSpectralConv layers took the requested precision.")
    if not report.trainers and refusal is not None:
        # the script created one, whose constructor raised: what it refused, not that none was created
        refused = "{} ({})".format(*trainer_failure(refusal))
        warnings.append(f"the script {ended} after its {refused}: no schedule or loss scaling was applied." if stopped
                        else f"the script's {refused}, and it created no other: no schedule or loss scaling was "
                             "applied.")
    elif not report.trainers:
        # a script stopped early: how it ended, and that it had created none so far (not "never", nor
        # "before it created", which says it would have)
        warnings.append(f"the script {ended + ', and had not created' if stopped else 'never created'} "
                        "neuralop.Trainer: no schedule or loss scaling was applied.")
    if options.get("optimizer") is not None and not any(o["kind"] == options["optimizer"] for o in report.optimizers):
        warnings.append(f"no optimizer was replaced by the requested {options['optimizer']!r} optimizer.")
    return warnings + report.notes


def format_summary(report):
    """Multi-line summary of an activation: models, optimizer, phases, skipped steps, memory, time."""
    exit_status = report.exit_status
    lines = ["", "=" * 24 + " neuralop-mp summary " + "=" * 24]
    if report.interrupted:
        # the exit status tells the signal (128 + its number): SIGTERM is a scheduler's or torchrun's stop
        lines.append(f"script {status_name(exit_status)}, exit status {exit_status}: what it finished before is below")
    elif exit_status not in (None, 0):
        lines.append(f"script exit status: {exit_status}")
    trainer_device = next((t["device"] for t in report.trainers if t.get("device")), None)
    for m in report.models:
        precision = m.get("precision")
        device = m.get("device") or trainer_device  # where it ran (a model gone before the end: its trainer's)
        prec = (
            f"{precision['mode']} (half dtype {_resolved(precision['half_dtype'], device)}, stabilizer "
            f"{precision['stabilizer']}, spectral weights {m.get('spectral_weight_dtype', 'complex64')})"
            if precision
            else "upstream layer"
        )
        lines.append(f"model: {m['model_class']} with {', '.join(m['layer_types']) or 'no spectral layer'}; built in {prec}")
        if m.get("pointwise_work"):
            lines.append(f"pointwise work: {m['pointwise_work']}")
    lines += _optimizer_lines(report)
    for d in report.datasets:
        lines.append(f"data: {d['dataset']} read offline from {d['root']}")
    history = _history(report)
    for t in report.trainers:
        device = f", on {t['device']}" if t.get("device") else ""
        lines.append(f"trainer: {t['class']} (a {t['bases'][0] if t['bases'] else 'Trainer'}), schedule "
                     f"{t['schedule']}{device}")
        if t.get("built_by") == "the script":  # not in the model lines above: say what it trained
            lines.append(_trained_model_line(t, report.options))
    calls = _calls(report)
    ran_as = []
    for index, (trainer, call) in enumerate(calls):
        which = f" (train() call {index + 1} of {len(calls)})" if len(calls) > 1 else ""
        phases = phase_ranges(call["history"])
        lines.append(f"precision phases{which}: " + ", ".join(_phase_text(p, call["history"]) for p in phases))
        ran_as += [_as_run(p, trainer.get("device"), _grid_sizes(call["history"])) for p in phases]
    lines += [f"precision as run: {text}" for text in dict.fromkeys(ran_as) if text]
    if history:
        skipped = sum(int(h.get("skipped_steps") or 0) for h in history)
        lines.append(f"{SKIPPED_STEPS}: {skipped}")  # train's label: the count holds inf/NaN losses too
        scales = [h.get("loss_scale") for h in history if h.get("loss_scale") is not None]
        if scales:
            lines.append(f"final loss scale: {scales[-1]:g}")
        saved = [h["saved_bytes"] for h in history if h.get("saved_bytes") is not None]
        peak = [h["cuda_peak_bytes"] for h in history if h.get("cuda_peak_bytes") is not None]
        if peak:
            lines.append(f"peak CUDA memory: {_bytes(max(peak))}")
        if saved:
            lines.append(f"activation memory saved for backward (max per step): {_bytes(max(saved))}")
        epoch_time = sum(float(h.get("epoch_time") or 0.0) for h in history)
        calls_text = f" in {len(calls)} train() calls" if len(calls) > 1 else ""
        lines.append(f"training time: {epoch_time:.2f} s over {len(history)} epochs{calls_text}")
    if report.elapsed is not None:
        lines.append(f"script wall time: {report.elapsed:.2f} s")
    lines += report.information
    for w in end_warnings(report):
        lines.append(f"WARNING: {w}")
    lines.append("=" * 69)
    return "\n".join(lines)
