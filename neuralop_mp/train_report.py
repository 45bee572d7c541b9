"""What ``neuralop-mp train`` shows and writes: summary table, results.json, loss curve.

Most functions take the result dict of :func:`neuralop_mp.train_pipeline.run_training`.
:func:`best_epoch` and :func:`best_metric_key` are the one rule of a run's best epoch:
the epoch whose model the trainer keeps, the report names, and ``eval`` runs in the
precision of.
"""
import io
import json
import math
import re
import textwrap
from pathlib import Path

import torch

from .vocabulary import dtype_name
from .run_records import human_bytes, parameters_text  # noqa: F401 (human_bytes: part of this module's interface)


def precision_as_run(mode, half_dtype, device, sizes):
    """What the spectral layers compute in ``mode`` on ``device``, in words.

    "half" asks for half-precision FFTs, which only cuFFT computes, in float16 and at
    power-of-2 sizes; elsewhere the layer runs the FFTs in float32 (the same
    fallback rules as :class:`~neuralop_mp.MixedPrecisionSpectralConv`), so on a CPU
    "half" computes exactly what "mixed" does. A report must say so.

    Parameters
    ----------
    mode : {"full", "mixed", "half"}
    half_dtype : torch.dtype
        The resolved half type (float16 or bfloat16).
    device : torch.device or str
    sizes : iterable of int
        Grid sizes the model sees (training and test resolutions).
    """
    device = torch.device(device)
    dtype = dtype_name(half_dtype)
    if mode == "full":
        return "full: fp32 FFT, complex64 contraction"
    if mode == "mixed":
        return f"mixed: fp32 FFT, {dtype} contraction"
    if device.type != "cuda":
        return f"half: runs as mixed on {device.type.upper()}, fp32 FFT, {dtype} contraction"
    if half_dtype != torch.float16:
        return f"half: fp32 FFT (cuFFT has no {dtype}), {dtype} contraction"
    odd = sorted({int(n) for n in sizes if int(n) & (int(n) - 1)})
    if odd:
        return (f"half: fp16 FFT at power-of-2 sizes, fp32 FFT at sizes {', '.join(map(str, odd))}, "
                "float16 contraction")
    return "half: fp16 FFT, float16 contraction"


# the count of optimizer steps skipped, as train's table and run's summary label it: a step is skipped
# for an inf/NaN loss (no backward) as well as for inf/NaN gradients, and the count holds both (short:
# a longer quantity widens the table's first column and wraps its values)
SKIPPED_STEPS = "skipped steps (inf/nan)"


def _fmt_error(value):
    """A test error with 4 significant digits (0.02614, 4.2e-05: a fixed count of decimals shows
    errors below 1e-4 as 0.0000), ``inf``/``nan`` as they are (a NaN was evaluated: it is no
    missing value), "n/a" for one not evaluated (None)."""
    return "n/a" if value is None else f"{float(value):.4g}"


def metric_rows(result):
    """``[(quantity, value), ...]``: test relative L2 and H1 at every test resolution."""
    metrics = result["metrics"]
    train_res = result["train_resolution"]
    rows = []
    for res in result["test_resolutions"]:
        res = int(res)
        tag = f"{res}" + (" (train)" if res == train_res else f" ({res / train_res:g}x)")
        rows.append((f"test rel. L2 @ {tag}", _fmt_error(metrics.get(f"{res}_l2"))))
        rows.append((f"test H1 @ {tag}", _fmt_error(metrics.get(f"{res}_h1"))))
    return rows


def auto_decision_text(decision):
    """An "auto" decision (or a schedule phase's recheck) in words: the mode, and why.

    A layer that stays "full" is named with the reason its record gives (further ones by
    index); otherwise the layer with the least headroom (smallest bound / error) is named
    with its own error and bound, since the rule holds per layer, e.g.
    ``mixed (layer 1: precision error 2.5e-03 <= bound 4.6e-02)``. A "full" decision
    without a "full" layer says why: the ranks' choices, or no 16-bit mode that every
    layer accepts. Records written before layers carried a ``reason`` (a "full" layer
    then recorded a precision error of 0.0) read as layers without an error. Where the
    decision's autocast was checked (``autocast_note``), the note follows, e.g.
    ``; autocast off: mixed-bfloat16+autocast precision error 3.7e-03 > bound 1.9e-03``.
    """
    note = decision.get("autocast_note")
    return _mode_text(decision) + (f"; {note}" if note else "")


def _mode_text(decision):
    """:func:`auto_decision_text` without the autocast note."""
    layers = list(enumerate(decision.get("per_layer") or []))
    mode = decision["fno_block_precision"]
    full = [(i, layer["reason"]) for i, layer in layers if layer["mode"] == "full" and layer.get("reason")]
    if full:
        (first, reason), rest = full[0], [str(i) for i, _ in full[1:]]
        also = f"; layer{'s' if len(rest) > 1 else ''} {', '.join(rest)} also full" if rest else ""
        return f"{mode} (layer {first}: {reason}{also})"
    if mode == "full" and decision.get("per_rank"):  # agree_across_ranks: another rank's choice
        return f"{mode} (the most precise of the ranks' {', '.join(decision['per_rank'])})"
    if mode == "full" and layers:
        return f"{mode} (no 16-bit mode that every layer accepts)"
    checked = [(layer["bound"] / layer["precision_error"], i, layer) for i, layer in layers
               if isinstance(layer.get("precision_error"), (int, float)) and layer["precision_error"] > 0
               and isinstance(layer.get("bound"), (int, float))]
    if not checked:
        return mode
    _, i, layer = min(checked, key=lambda c: c[:2])
    # a layer's record is of its own choice, which may differ from the model's mode (another layer holds the
    # model at a more precise one, or a schedule's phase at a cheaper one): its error is that choice's
    choice = f" ({layer['mode']})" if layer.get("mode") != mode else ""
    return (f"{mode} (layer {i}{choice}: precision error {layer['precision_error']:.1e} "
            f"<= bound {layer['bound']:.1e})")


def with_half_type(text, half_dtype, modes):
    """``text`` (a precision) followed by ``(half_dtype ...)`` where one of ``modes`` (the modes the
    run or evaluation computed in) is a 16-bit one: a full-precision run computes in no half type,
    and naming one ("full (half_dtype auto (bfloat16))") would say it did; no mode (a run that
    trained no epoch) names none either."""
    return text + (f" (half_dtype {half_dtype})" if any(mode != "full" for mode in modes) else "")


def summary_rows(result):
    """``[(quantity, value), ...]`` of the final summary table."""
    rows = metric_rows(result)
    precision = result["precision"]
    # the half type of each 16-bit span, where a resume changed it (the final row names the run's own)
    halves = {p.get("half_dtype") for p in precision["phases"] if p.get("half_dtype")}
    phases = ", ".join(
        f"{p['mode']}{'+autocast' if p['autocast'] else ''}{'+' + p['stabilizer'] if p['stabilizer'] else ''}"
        f"{' (' + p['half_dtype'] + ')' if len(halves) > 1 and p.get('half_dtype') else ''}"
        f" [epochs {p['start_epoch']}-{p['end_epoch'] - 1}]"
        for p in precision["phases"]
    )
    memory = result["memory"]
    ran_as = list(dict.fromkeys(p["ran_as"] for p in precision["phases"] if p.get("ran_as")))
    rows += [
        ("seconds / epoch (training)", f"{result['seconds_per_epoch']:.2f}"),
        ("precision (final)", with_half_type(precision["final_mode"], precision["half_dtype"],
                                             [p["mode"] for p in precision["phases"]])),
        ("precision phases", phases or str(precision["schedule"])),
        *(("precision as run", text) for text in ran_as),
        *(("spectral product path", text) for text in precision.get("product_paths", [])),
        *((("pointwise work", result["pointwise_work"]),) if result.get("pointwise_work") else ()),
        ("spectral weights stored in", precision.get("spectral_weight_dtype", "complex64")),
    ]
    if precision.get("stabilizer_note"):  # model.stabilizer "off" in float16 "half"
        rows.append(("stabilizer", precision["stabilizer_note"]))
    if precision.get("autocast_scope") and any(p["autocast"] for p in precision["phases"]):
        rows.append(("autocast scope", precision["autocast_scope"]))
    if precision.get("auto_decision"):  # fno_block_precision="auto": what the calibration decided
        decision = precision["auto_decision"]
        rows.append(("precision (auto decision)", auto_decision_text(decision)))
    for check in precision.get("auto_rechecks") or []:  # "auto" under a schedule: one row per phase start
        recheck = f" (re-checked: {check['recheck_reason']})" if check.get("recheck_reason") else ""
        rows.append((f"precision (auto, epoch {check['epoch']})",
                     f"phase {check['phase_mode']} runs {auto_decision_text(check)}{recheck}"))
    rows.append((SKIPPED_STEPS, str(result["skipped_steps"])))
    parallel = data_parallel_text(result)
    if parallel:
        rows.append(("data parallel", parallel))
    # on several ranks every rank holds the model, its optimizer state and its own batches' activations:
    # the memory figures (rank 0's) are those of one rank
    each = " (per rank)" if parallel else ""
    rows += [
        (f"parameters{each}", f"{parameters_text(memory)}, {human_bytes(memory['params_bytes'])}"),
        (f"optimizer state{each}", human_bytes(memory["optimizer_state_bytes"])),
    ]
    if memory.get("cuda_peak_bytes") is not None:
        rows.append((f"CUDA peak memory{each}", human_bytes(memory["cuda_peak_bytes"])))
    rows.append((f"saved activations / step{each}", human_bytes(memory.get("saved_bytes"))))
    if memory.get("step_peak_bytes") is not None:
        rows.append((f"peak tensor memory / step{each}", human_bytes(memory["step_peak_bytes"])))
    if result.get("threads"):
        rows.append(("torch CPU threads", str(result["threads"])))
    if result.get("cpu_allocator"):
        rows.append(("CPU memory", result["cpu_allocator"]))
    if result.get("best"):
        rows.append(("best model", best_model_text(result)))
    rows.append(("wall time", f"{result['wall_time_s']:.1f} s"))
    if result.get("output_dir"):
        rows.append(("output folder", result["output_dir"]))
    return rows


def data_parallel_text(result):
    """How a run of several ranks (``result["world_size"]`` > 1) trained, in words: the ranks, the
    backend they communicated through and the batch per rank and over all ranks (each optimizer
    step averages the gradients of the global batch); None for one process."""
    from .training.distributed import backend_for

    ranks = int(result.get("world_size") or 1)
    if ranks <= 1:
        return None
    backend = backend_for(result["device"])  # the rule the run joined its process group by
    batch = ((result.get("config") or {}).get("data") or {}).get("batch_size")
    batches = (f", batch {batch} per rank, {int(batch) * ranks} global (each step averages the ranks' gradients)"
               if isinstance(batch, int) and not isinstance(batch, bool) else "")
    return f"{ranks} ranks ({backend}){batches}"


def best_metric_key(train_resolution):
    """The evaluation key the best epoch is judged by: the test relative L2 at the training
    resolution (``"16_l2"``)."""
    return f"{train_resolution}_l2"


def best_epoch(history, metric):
    """``{"metric", "value", "epoch"}`` of the lowest finite ``metric`` in the history (the
    earliest of equal ones), or None when no epoch has one.

    The rule by which :class:`~neuralop_mp.run_trainer.RunFolderTrainer` keeps its best
    model: an inf or NaN epoch is never best (``min`` would keep a NaN met first).
    """
    if metric is None:
        return None
    values = [(h[metric], h["epoch"]) for h in history
              if isinstance(h.get(metric), float) and math.isfinite(h[metric])]
    if not values:
        return None
    value, epoch = min(values)
    return {"metric": metric, "value": value, "epoch": epoch}


def best_model_text(result):
    """The summary's "best model" value: the best epoch when its ``best_model`` file was
    written (listed in ``result["files"]``), else that no file was written, and why.

    ``result["best"]`` is the best evaluated epoch of the history, file or not."""
    best = result["best"]
    epoch = f"epoch {best['epoch']}, {best['metric']} {_fmt_error(best['value'])}"
    if (result.get("files") or {}).get("best_model"):
        return epoch
    if not result.get("output_dir"):
        why = "this run wrote no output folder"
    else:  # run_training logs the same reason
        why = no_best_model_reason(best["metric"], best)
    return f"no file written ({epoch}): {why}"


def no_best_model_reason(metric, best=None, *, name_epoch=False):
    """Why a ``--save_best`` run has no ``best_model`` file, in the words of both
    :func:`best_model_text` and :func:`~neuralop_mp.train_pipeline.run_training`'s log: no
    evaluated epoch had a finite ``metric`` (``best`` None or not finite), else the best epoch
    ``best`` was trained before ``--save_best`` was given (at a resume) and no later epoch beat
    it; ``name_epoch`` names that epoch and its value."""
    if best is None or not math.isfinite(best["value"]):
        return f"no evaluated epoch had a finite {metric}"
    named = f" ({best['epoch']}, {metric} {best['value']:.4g})" if name_epoch else ""
    return f"the best epoch{named} came before --save_best was given, and no later epoch beat it"


def format_summary(result):
    """The final summary as a plain-text table."""
    return format_table(f"{result['config_name']}: {result['model']} on {result['device']}", summary_rows(result))


def format_eval_summary(result):
    """What ``neuralop-mp eval`` prints: the metric rows of :func:`format_summary`, then
    the precision the model ran in."""
    precision = result["precision"]
    mode = precision["mode"] + ("+autocast" if precision["autocast"] else "") + \
        (f"+{precision['stabilizer']}" if precision["stabilizer"] else "")
    samples = result.get("n_test_samples")  # how many samples each resolution's errors average
    rows = metric_rows(result) + ([("samples per test set", ", ".join(f"{n} at {res}" for res, n in samples.items()))]
                                  if samples else []) + [
        ("precision", with_half_type(mode, precision["half_dtype"], [precision["mode"]])),
        ("precision as run", precision["ran_as"]),
        ("checkpoint", result["checkpoint"]),
    ]
    if result.get("threads"):
        rows.append(("torch CPU threads", str(result["threads"])))
    rows.append(("wall time", f"{result['wall_time_s']:.1f} s"))
    return format_table(f"eval: {result['model']} on {result['device']}", rows)


TABLE_WIDTH = 100  # columns of a summary table: one long value must not make every row wrap in a terminal


# a number and its unit ("86.63 KiB") stay on one line of a wrapped value
_NUMBER_AND_UNIT = re.compile(r"(\d) (B|KiB|MiB|GiB|TiB|s|ms)\b")


def _wrap(value, width):
    """``value`` in lines of at most ``width`` characters, words and a number with its unit kept whole."""
    joined = _NUMBER_AND_UNIT.sub("\\1\u00a0\\2", value)  # textwrap does not break at a no-break space
    lines = textwrap.wrap(joined, width, break_long_words=False, break_on_hyphens=False) or [""]
    return [line.replace("\u00a0", " ") for line in lines]


def format_table(title, rows):
    """``title`` over a two-column plain-text table of ``(quantity, value)`` rows.

    A value too long for a table of :data:`TABLE_WIDTH` columns continues on the next
    lines, under an empty quantity cell (results.json keeps it on one line). A single
    word longer than that, such as a path, stays whole so that it can be copied.
    """
    width = max(len(q) for q, _ in rows)
    room = max(20, TABLE_WIDTH - width - len("|  |  |"))
    wrapped = [(q, [v] if len(v) <= room else _wrap(v, room)) for q, v in rows]
    value_width = max(len(line) for _, lines in wrapped for line in lines)
    rule = "+" + "-" * (width + 2) + "+" + "-" * (value_width + 2) + "+"
    lines = [title, rule]
    for q, values in wrapped:
        lines += [f"| {(q if i == 0 else '').ljust(width)} | {v.ljust(value_width)} |" for i, v in enumerate(values)]
    lines.append(rule)
    return "\n".join(lines)


def to_jsonable(value):
    """Tensors, numpy scalars, paths and dtypes to plain JSON values; NaN/inf as the strings
    "nan", "inf", "-inf" (strict JSON has no such numbers). The one rule of the package's JSON
    files: results.json, eval --json, run's report, diagnose's and the benchmarks' JSON."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return to_jsonable(value.item())
    return str(value)


def plot_loss_curve(history, path, train_resolution):
    """Training loss and test errors at the training resolution per epoch (log scale)."""
    # an Agg canvas on a bare Figure: no pyplot, so no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    series = {
        "train loss": "train_loss",
        f"test rel. L2 @ {train_resolution}": best_metric_key(train_resolution),
        f"test H1 @ {train_resolution}": f"{train_resolution}_h1",
    }
    for label, key in series.items():
        points = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    for i in range(1, len(history)):  # mark precision switches
        if history[i].get("precision") != history[i - 1].get("precision"):
            ax.axvline(epochs[i] - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / relative error")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # a file object (write_outputs') has no suffix to tell it
    return path


def write_outputs(result, output_dir, extra_files=None):
    """Write ``results.json`` and ``loss_curve.png`` into ``output_dir``; return every file's path.

    ``extra_files`` (name -> path, e.g. the model files) are listed in results.json too.
    Both are written atomically (:func:`~neuralop_mp.run_folder.write_atomic`): a resume rewrites
    them, and a kill or a full disk during the write must leave the previous one whole (a write
    that fails raises its ``CheckpointWriteError``, naming the file).
    """
    from .run_folder import LOSS_CURVE_FILE, RESULTS_FILE, write_atomic

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "results": str(output_dir / RESULTS_FILE),
        "loss_curve": str(output_dir / LOSS_CURVE_FILE),
        **(extra_files or {}),
    }
    # drawn first: an error of the plot is the plot's, not a failed write of the file
    png = io.BytesIO()
    plot_loss_curve(result["history"], png, result["train_resolution"])
    write_atomic(files["loss_curve"], lambda f: f.write(png.getvalue()))
    payload = {k: v for k, v in result.items() if k != "model_object"}
    payload["files"] = files
    text = json.dumps(to_jsonable(payload), indent=2)
    write_atomic(files["results"], lambda f: f.write(text.encode("utf-8")))
    return files
