"""Reading a trainer's per-epoch history for reports: precision phases and byte sizes.

Shared by the summary of ``neuralop-mp train`` (:mod:`neuralop_mp.train_report`) and
the one of ``neuralop-mp run`` (:mod:`neuralop_mp.runner.summary`).
"""


def phase_ranges(history):
    """Consecutive epochs of ``history`` that ran in the same precision, in order.

    Parameters
    ----------
    history : list of dict
        :attr:`MixedPrecisionTrainer.history` entries (``epoch``, ``precision`` and,
        where recorded, ``autocast``, ``stabilizer`` and ``half_dtype``).

    Returns
    -------
    list of dict
        ``{"mode", "autocast", "stabilizer", "half_dtype", "start_epoch", "end_epoch"}`` with
        ``end_epoch`` exclusive, as in ``range(start_epoch, end_epoch)``; ``half_dtype`` is
        None in full precision, which computes in no half type (a resume that changed the
        half type splits only the 16-bit spans).
    """
    ranges = []
    for entry in history:
        half = entry.get("half_dtype") if entry.get("precision") != "full" else None
        key = (entry.get("precision"), entry.get("autocast"), entry.get("stabilizer"), half)
        epoch = entry.get("epoch")
        if ranges and ranges[-1]["key"] == key and ranges[-1]["end_epoch"] == epoch:
            ranges[-1]["end_epoch"] = epoch + 1
        else:
            ranges.append({"key": key, "mode": key[0], "autocast": key[1], "stabilizer": key[2], "half_dtype": half,
                           "start_epoch": epoch, "end_epoch": epoch + 1})
    for r in ranges:
        del r["key"]
    return ranges


def human_bytes(n):
    """``1536`` -> ``"1.50 KiB"``; ``512`` -> ``"512 B"``; None -> ``"n/a"``."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def parameters_text(counts):
    """``"357,217 (701,281 real numbers, upstream's count_model_params)"`` of a run's parameter
    counts (``n_params`` entries; ``n_real_params`` where recorded, a complex entry counting
    twice), the second part only where the two differ."""
    entries, real = counts["n_params"], counts.get("n_real_params", counts["n_params"])
    return f"{entries:,}" + (f" ({real:,} real numbers, upstream's count_model_params)" if real != entries else "")
