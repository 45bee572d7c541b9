"""The text ``neuralop-mp run`` prints after the script: what ran, in which precision, at what cost."""
from ..run_records import human_bytes as _bytes
from ..run_records import phase_ranges



def _history(report):
    rows = []
    for trainer in report.trainers:
        rows += trainer.get("history") or []
    return rows


def end_warnings(report):
    """What was requested but, judging from what was actually intercepted, did not happen, and
    the report's notes.

    The report's exit status tells a script that stopped early: one that failed or was
    interrupted before it built a model gets one line saying so, not the warnings about
    what a finished script should have built.
    """
    options = report.options
    status = report.exit_status
    if not report.models and status not in (None, 0):
        ended = "was interrupted" if report.interrupted else f"ended with exit status {status}"
        return [f"the script {ended} before it built a model through neuralop.get_model: nothing ran with the "
                "plugin."] + report.notes
    warnings = []
    wants_precision = options.get("precision") not in (None, "full") or options.get("schedule") is not None
    if not report.models:
        warnings.append(
            "no model was built through neuralop.get_model"
            + (": the requested precision was NOT applied." if wants_precision else ".")
        )
    elif wants_precision and not any("MixedPrecisionSpectralConv" in m["layer_types"] for m in report.models):
        warnings.append("no model got the mixed-precision layer: the requested precision was NOT applied.")
    if not report.trainers:
        warnings.append("the script never created neuralop.Trainer: no schedule or loss scaling was applied.")
    if options.get("optimizer") is not None and not any(o["kind"] == options["optimizer"] for o in report.optimizers):
        warnings.append(f"no optimizer was replaced by the requested {options['optimizer']!r} optimizer.")
    return warnings + report.notes


def format_summary(report):
    """Multi-line summary of an activation: models, optimizer, phases, skipped steps, memory, time."""
    exit_status = report.exit_status
    lines = ["", "=" * 24 + " neuralop-mp summary " + "=" * 24]
    if report.interrupted:
        lines.append(f"script interrupted (Ctrl-C), exit status {exit_status}: what it finished before is below")
    elif exit_status not in (None, 0):
        lines.append(f"script exit status: {exit_status}")
    for m in report.models:
        precision = m.get("precision")
        prec = (
            f"{precision['mode']} (half dtype {precision['half_dtype']}, stabilizer {precision['stabilizer']}, "
            f"spectral weights {m.get('spectral_weight_dtype', 'complex64')})"
            if precision
            else "upstream layer"
        )
        lines.append(f"model: {m['model_class']} with {', '.join(m['layer_types']) or 'no spectral layer'}; built in {prec}")
        if m.get("pointwise_work"):
            lines.append(f"pointwise work: {m['pointwise_work']}")
    for o in report.optimizers:
        lines.append(f"optimizer: {o['replaced']} -> {o['class']} ({o['kind']})")
    for d in report.datasets:
        lines.append(f"data: {d['dataset']} read offline from {d['root']}")
    history = _history(report)
    for t in report.trainers:
        lines.append(f"trainer: {t['class']} (a {t['bases'][0] if t['bases'] else 'Trainer'}), schedule {t['schedule']}")
    if history:
        ranges = [(r["mode"], r["start_epoch"], r["end_epoch"] - 1) for r in phase_ranges(history)]
        lines.append(
            "precision phases: "
            + ", ".join(f"{mode} (epochs {a}-{b})" if a != b else f"{mode} (epoch {a})" for mode, a, b in ranges)
        )
        skipped = sum(int(h.get("skipped_steps") or 0) for h in history)
        lines.append(f"skipped steps (non-finite gradients): {skipped}")
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
        lines.append(f"training time: {epoch_time:.2f} s over {len(history)} epochs")
    if report.elapsed is not None:
        lines.append(f"script wall time: {report.elapsed:.2f} s")
    lines += report.information
    for w in end_warnings(report):
        lines.append(f"WARNING: {w}")
    lines.append("=" * 69)
    return "\n".join(lines)
