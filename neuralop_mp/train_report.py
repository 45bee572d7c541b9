"""What ``neuralop-mp train`` shows and writes: summary table, results.json, loss curve.

All functions take the result dict of :func:`neuralop_mp.train_pipeline.run_training`.
"""
import json
import math
from pathlib import Path

import torch


def phase_ranges(schedule, n_epochs, half_dtype=None):
    """The epochs each phase of ``schedule`` runs in a run of ``n_epochs`` (skipped phases omitted).

    With ``half_dtype`` (a torch dtype) a phase's "auto" stabilizer is resolved to
    what it applies with that half type.
    """
    ranges = []
    for phase, (start, end) in zip(schedule, schedule.boundaries(n_epochs)):
        if end > start:
            stabilizer = phase.stabilizer_for(half_dtype) if half_dtype is not None else phase.stabilizer
            ranges.append({
                "mode": phase.mode,
                "start_epoch": start,
                "end_epoch": end,
                "autocast": phase.autocast,
                "stabilizer": stabilizer,
            })
    return ranges


def human_bytes(n):
    """``1536`` -> ``"1.5 KiB"``; None -> ``"n/a"``."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def _fmt_error(value):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def summary_rows(result):
    """``[(quantity, value), ...]`` of the final summary table."""
    metrics = result["metrics"]
    train_res = result["train_resolution"]
    rows = []
    for res in result["test_resolutions"]:
        tag = f"{res}" + (" (train)" if res == train_res else f" ({res / train_res:g}x)")
        rows.append((f"test rel. L2 @ {tag}", _fmt_error(metrics.get(f"{res}_l2"))))
        rows.append((f"test H1 @ {tag}", _fmt_error(metrics.get(f"{res}_h1"))))
    precision = result["precision"]
    phases = ", ".join(
        f"{p['mode']}{'+autocast' if p['autocast'] else ''}{'+' + p['stabilizer'] if p['stabilizer'] else ''}"
        f" [epochs {p['start_epoch']}-{p['end_epoch'] - 1}]"
        for p in precision["phases"]
    )
    memory = result["memory"]
    rows += [
        ("seconds / epoch (training)", f"{result['seconds_per_epoch']:.2f}"),
        ("precision (final)", f"{precision['final_mode']} (half_dtype {precision['half_dtype']})"),
        ("precision phases", phases or str(precision["schedule"])),
        ("spectral weights stored in", precision.get("spectral_weight_dtype", "complex64")),
    ]
    if precision.get("auto_decision"):  # fno_block_precision="auto": what the calibration decided
        decision = precision["auto_decision"]
        worst = max(layer["precision_error"] for layer in decision["per_layer"])
        rows.append(("precision (auto decision)", f"{decision['fno_block_precision']} (largest layer precision "
                     f"error {worst:.1e}, model discretization error {decision['discretization_error']:.1e})"))
    rows += [
        ("skipped steps (inf/nan)", str(result["skipped_steps"])),
        ("parameters", f"{memory['n_params']:,} ({human_bytes(memory['params_bytes'])})"),
        ("optimizer state", human_bytes(memory["optimizer_state_bytes"])),
    ]
    if memory.get("cuda_peak_bytes") is not None:
        rows.append(("CUDA peak memory", human_bytes(memory["cuda_peak_bytes"])))
    rows.append(("saved activations / step", human_bytes(memory.get("saved_bytes"))))
    rows.append(("wall time", f"{result['wall_time_s']:.1f} s"))
    if result.get("output_dir"):
        rows.append(("output folder", result["output_dir"]))
    return rows


def format_summary(result):
    """The final summary as a plain-text table."""
    rows = summary_rows(result)
    title = f"{result['config_name']}: {result['model']} on {result['device']}"
    width = max(len(q) for q, _ in rows)
    value_width = max(len(v) for _, v in rows)
    rule = "+" + "-" * (width + 2) + "+" + "-" * (value_width + 2) + "+"
    lines = [title, rule]
    lines += [f"| {q.ljust(width)} | {v.ljust(value_width)} |" for q, v in rows]
    lines.append(rule)
    return "\n".join(lines)


def to_jsonable(value):
    """Tensors, numpy scalars, paths and dtypes to plain JSON values (NaN/inf as strings)."""
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
        f"test rel. L2 @ {train_resolution}": f"{train_resolution}_l2",
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
    fig.savefig(path, dpi=100)
    return path


def write_outputs(result, output_dir):
    """Write ``results.json`` and ``loss_curve.png`` into ``output_dir``; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "results": str(output_dir / "results.json"),
        "loss_curve": str(output_dir / "loss_curve.png"),
    }
    plot_loss_curve(result["history"], files["loss_curve"], result["train_resolution"])
    payload = {k: v for k, v in result.items() if k != "model_object"}
    payload["files"] = files
    with open(files["results"], "w") as f:
        json.dump(to_jsonable(payload), f, indent=2)
    return files
