"""Show a diagnosis: a text table, a JSON file and a picture of error vs mode band."""
import json
import math
from pathlib import Path

from ..train_report import to_jsonable
from .measure import variant_name

LAYER_VARIANTS = [(mode, dtype, tanh) for mode in ("mixed",) for dtype in ("float16", "bfloat16")
                  for tanh in (False, True)]


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.2e}"


def format_table(diagnosis, recommendation):
    """The per-layer table, the model-level table and the recommendation, as text."""
    res = "x".join(map(str, diagnosis["resolution"]))
    fine = "x".join(map(str, diagnosis["fine_resolution"]))
    lines = [f"Precision vs discretization error at {res} (discretization: {res} vs {fine} restricted), "
             f"{diagnosis['n_samples']} samples, device {diagnosis['device']}"]
    lines += [f"note: {note}" for note in diagnosis["notes"]]
    keys = [variant_name(*v) for v in LAYER_VARIANTS]
    header = ["layer", "discret.", "fp16 margin"] + keys + ["choice"]
    rows = []
    for entry, choice in zip(diagnosis["layers"], recommendation["layers"]):
        rows.append([entry["name"], _fmt(entry["discretization_error"]), _fmt(entry["overflow"]["float16_margin"])]
                    + [_fmt(entry["precision"].get(k, {}).get("error")) for k in keys]
                    + [choice["mode"] + (f"-{choice['half_dtype']}" if choice["half_dtype"] else "")])
    lines += [""] + _columns(header, rows)
    model = diagnosis["model"]
    disc = model["discretization_error"]
    lines += ["", f"Model output: discretization error {_fmt(disc)}"]
    rows = [[key, _fmt(v["error"]), f"{v['error'] / disc:.3g}" if disc else "-"]
            for key, v in model["precision"].items() if key.startswith("mixed")]
    lines += _columns(["recipe", "precision err.", "/ discret."], rows)
    rec = recommendation["model"]
    lines += ["", f"Rule: {recommendation['rule']['text']}.",
              f"Recommended: fno_block_precision={rec['fno_block_precision']!r} half_dtype={rec['half_dtype']!r} "
              f"stabilizer={rec['stabilizer']!r} autocast={rec['autocast']}",
              f"Schedule: {recommendation['schedule']}"]
    return "\n".join(lines)


def _columns(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return out


def write_json(diagnosis, recommendation, path):
    """``{"diagnosis": ..., "recommendation": ...}`` to ``path`` (non-finite numbers as strings:
    :func:`~neuralop_mp.train_report.to_jsonable`)."""
    Path(path).write_text(json.dumps(to_jsonable({"diagnosis": diagnosis, "recommendation": recommendation}),
                                     indent=1))
    return path


def plot_bands(diagnosis, path):
    """One panel per spectral layer and one for the model output: error per mode band,
    discretization error (black) and precision errors (colours) on one log axis."""
    # an Agg canvas on a bare Figure: no pyplot, so no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(e["name"], e["discretization_bands"], e["precision"]) for e in diagnosis["layers"]]
    panels.append(("model output", diagnosis["model"]["discretization_bands"], diagnosis["model"]["precision"]))
    labels = [f"{lo}-{hi - 1}" for lo, hi in diagnosis["bands"]]
    fig = Figure(figsize=(4 * len(panels), 3.5))
    FigureCanvasAgg(fig)
    for i, (name, disc, precision) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        x = range(len(labels))
        if disc is not None:
            ax.plot(x, [max(v, 1e-12) for v in disc], color="black", linewidth=2.5, marker="o", label="discretization")
        for key, value in precision.items():
            if key.startswith("mixed") and (i < len(panels) - 1 or "autocast" in key or "tanh" not in key):
                ax.plot(x, [max(v, 1e-12) if math.isfinite(v) else 1e3 for v in value["bands"]], marker=".",
                        linewidth=1, label=key)
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels)
        ax.set_xlabel("mode band |k|")
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if i == 0:
            ax.set_ylabel("error share in band / ||reference||")
        if i == len(panels) - 1:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
