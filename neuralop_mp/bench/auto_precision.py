"""Benchmark: ``fno_block_precision="auto"`` vs full vs mixed vs the paper schedule.

Run ``neuralop-mp bench auto`` (about 8 minutes of one CPU core). It trains one small
FNO per (dataset, recipe, seed) on the built-in Darcy and Navier-Stokes data, through
the same pipeline as ``neuralop-mp train`` (:func:`neuralop_mp.train_pipeline.run_training`),
and reports the test relative L2 error at the training resolution and at twice it, the
training time per epoch, and the precision each spectral layer ended up with under
"auto". It writes the tables to ``--out DIR`` (with ``--update-docs`` also to the
"auto" section of docs/benchmarks.md).

Recipes (``model.fno_block_precision`` / ``opt.precision_schedule``):

- ``full``: full precision throughout.
- ``mixed``: "mixed" throughout (its defaults: half-type contraction, autocast on).
- ``auto``: "auto", decided from the first two training batches
  (:mod:`neuralop_mp.diagnose.auto`), then trained as decided.
- ``paper``: the paper's schedule, half 25% / mixed 50% / full 25%.
- ``paper+auto``: the paper's schedule with "auto": each 16-bit phase re-decided
  from the first two training batches when it starts (:mod:`neuralop_mp.training.auto_phases`).

Every recipe of one seed starts from the same initial weights and sees the same data.

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision
       Neural Operators". ICLR 2024, arXiv:2307.15034.
"""
import contextlib
import io
import os
import statistics
import sys
import warnings

import torch

from ..vocabulary import OneLineErrorParser, ignoring_upstream_unused_keys, plain_text
from ..data.cli import non_negative_int
from .cli import data_root_errors, fill_defaults, threads_type
from .report import (add_output_arguments, header, markdown_table, refuse_partial_docs_update,
                     shown_command, write_results)

RECIPES = {
    "full": {"model.fno_block_precision": "full"},
    "mixed": {"model.fno_block_precision": "mixed"},
    "auto": {"model.fno_block_precision": "auto"},
    "paper": {"opt.precision_schedule": "paper"},
    "paper+auto": {"model.fno_block_precision": "auto", "opt.precision_schedule": "paper"},
}
# small enough for 16 runs in ~10 CPU minutes; the grids are the configs' own
SIZES = {
    "full": {"data.n_train": 400, "data.n_tests": [100, 100], "data.test_batch_sizes": [50, 50],
             "data.batch_size": 16, "model.hidden_channels": 16, "model.n_layers": 3, "opt.n_epochs": 6,
             "opt.step_size": 2},
    "quick": {"data.n_train": 16, "data.n_tests": [8, 8], "data.test_batch_sizes": [8, 8],
              "data.batch_size": 8, "model.hidden_channels": 8, "model.n_layers": 2, "opt.n_epochs": 2,
              "opt.step_size": 1},
}
DATASETS = {
    "darcy": {"model.n_modes": [8, 8]},  # 16x16 training grid, tested at 16 and 32
    "navier_stokes": {"model.n_modes": [12, 12]},  # 32x32 training grid, tested at 32 and 64
}
QUICK_DATASETS = {  # the same data on half the grid, so that a test generates it in seconds
    "darcy": {"model.n_modes": [4, 4]},
    "navier_stokes": {"model.n_modes": [6, 6], "data.train_resolution": 16, "data.test_resolutions": [16, 32]},
}


def train_once(dataset, recipe, seed, overrides, threads=None):
    """One training run; returns its row (errors, time, what ran)."""
    from ..configs import load_config
    from ..train_pipeline import run_training

    with ignoring_upstream_unused_keys(), contextlib.redirect_stdout(io.StringIO()):
        # the paper schedule skipping phases in a short --quick run; every other warning (the plugin's) shown
        warnings.filterwarnings("ignore", message=r"Precision schedule .* get no epoch in a run of")
        config = load_config(dataset, {**overrides, **RECIPES[recipe], "seed": seed})
        result = run_training(config, progress=False, write=False, log=lambda *a, **k: None, threads=threads)
    train_res = result["train_resolution"]
    coarse, fine = result["test_resolutions"][:2]
    row = {"dataset": dataset, "recipe": recipe, "seed": seed, "train_resolution": train_res,
           "test_resolutions": [coarse, fine], "l2": result["metrics"][f"{coarse}_l2"],
           "l2_2x": result["metrics"][f"{fine}_l2"], "seconds_per_epoch": result["seconds_per_epoch"],
           "phases": ", ".join(f"{p['mode']}{'+autocast' if p['autocast'] else ''} x{p['end_epoch'] - p['start_epoch']}"
                               for p in result["precision"]["phases"]),
           "skipped_steps": result["skipped_steps"]}
    precision = result["precision"]
    checks = ([dict(precision["auto_decision"], when="before training")] if precision.get("auto_decision")
              else [dict(c, when=f"epoch {c['epoch']}, {c['phase_mode']} phase")
                    for c in precision.get("auto_rechecks") or []])
    if checks:
        row["auto_decision"] = ", ".join(c["fno_block_precision"] for c in checks)
        row["auto_checks"] = [{"when": c["when"], "mode": c["fno_block_precision"], "layers": [
            {"name": layer["name"], "mode": layer["mode"], "half_dtype": layer["half_dtype"],
             "precision_error": layer["precision_error"], "bound": layer["bound"],
             "reason": layer.get("reason")} for layer in c["per_layer"]]}
            for c in checks]
    return row


def _number(value):
    """``value`` as the table writes it; "-" where there is none (a layer that stays full has no
    accepted precision error; a layer may have no bound)."""
    return "-" if value is None else f"{value:.2e}"


def _spread(values, digits=4):
    """``mean (min-max)`` over seeds, or the single value."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summary_rows(rows, recipes):
    """One row per (dataset, recipe): means over seeds, and time relative to full."""
    table = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        runs = {recipe: [r for r in rows if r["dataset"] == dataset and r["recipe"] == recipe] for recipe in recipes}
        full_time = statistics.fmean(r["seconds_per_epoch"] for r in runs["full"]) if runs.get("full") else None
        for recipe, found in runs.items():
            if not found:
                continue
            res, fine = found[0]["train_resolution"], found[0]["test_resolutions"][1]
            seconds = statistics.fmean(r["seconds_per_epoch"] for r in found)
            name = recipe
            if "auto_decision" in found[0]:
                decided = sorted({r["auto_decision"] for r in found})
                name = f"{recipe} (decided: {'; '.join(decided)})"
            table.append({"dataset": f"{dataset} {res}x{res}", "recipe": name,
                          "seeds": len(found), "L2 @ train res": _spread([r["l2"] for r in found]),
                          "L2 @ 2x": _spread([r["l2_2x"] for r in found]) + f" ({fine}x{fine})",
                          "s / epoch": f"{seconds:.2f}",
                          "time vs full": f"{seconds / full_time:.2f}x" if full_time else "",
                          "phases": found[0]["phases"], "skipped": sum(r["skipped_steps"] for r in found)})
    return table


DECISION_COLUMNS = ["dataset", "recipe", "seed", "checked", "layer", "layer choice", "model runs in", "precision error",
                    "bound (0.5 x discretization)", "why full"]


def decision_rows(rows):
    """One row per (dataset, recipe, seed, check, layer) of the "auto" runs: the mode chosen and why."""
    table = []
    for row in rows:
        for check in row.get("auto_checks", []):
            for layer in check["layers"]:
                choice = layer["mode"] + (f" ({layer['half_dtype']})" if layer["half_dtype"] else "")
                table.append({"dataset": row["dataset"], "recipe": row["recipe"], "seed": row["seed"],
                              "checked": check["when"], "layer": layer["name"], "layer choice": choice,
                              "model runs in": check["mode"], "precision error": _number(layer["precision_error"]),
                              "bound (0.5 x discretization)": _number(layer["bound"]),
                              "why full": layer.get("reason") or ""})
    return table


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench auto", description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 2 epochs, 16 samples on half the grids, every recipe and dataset (seconds); "
                             "--seeds given as well win")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=None, help="default 0 1; 0 with --quick")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--threads", type=threads_type, default=1, metavar="N|auto",
                        help="torch intra-op threads; auto: the CPUs other processes leave idle (default 1: the "
                             "fastest on a shared 2-core machine)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a tiny run, or some of the table's rows, is not the docs' table
    refuse_partial_docs_update(parser, "auto", args, {"--quick": args.quick,
                                                      "--datasets": args.datasets != list(DATASETS),
                                                      "--recipes": args.recipes != list(RECIPES)})
    sizes, datasets = SIZES["full"], DATASETS
    if args.quick:
        sizes, datasets = SIZES["quick"], QUICK_DATASETS
    fill_defaults(args, {"seeds": [0]}, {"seeds": [0, 1]})
    threads_before = torch.get_num_threads()
    rows = []
    try:
        with data_root_errors(parser):  # an unwritable data root: a one-line error
            for dataset in args.datasets:
                for seed in args.seeds:
                    for recipe in args.recipes:
                        row = train_once(dataset, recipe, seed, {**sizes, **datasets[dataset]}, threads=args.threads)
                        rows.append(row)
                        print(f"{dataset:>13} {recipe:>10} seed {seed}: L2 {row['l2']:.4f}, "
                              f"L2@2x {row['l2_2x']:.4f}, {row['seconds_per_epoch']:.2f} s/epoch"
                              + (f", auto -> {row['auto_decision']}" if "auto_decision" in row else ""),
                              file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads_before)

    summary = markdown_table(summary_rows(rows, args.recipes),
                             ["dataset", "recipe", "seeds", "L2 @ train res", "L2 @ 2x", "s / epoch",
                              "time vs full", "phases", "skipped"])
    decisions = markdown_table(decision_rows(rows), DECISION_COLUMNS)
    command = shown_command("neuralop-mp bench auto", argv)
    body = (header('"auto" precision vs full, mixed and the paper schedule (Darcy, Navier-Stokes)', command)
            + f"\nFNO {sizes['model.n_layers']} layers, {sizes['model.hidden_channels']} channels, modes "
            + ", ".join(f"{d} {datasets[d]['model.n_modes'][0]}" for d in args.datasets)
            + f"; built-in data, {sizes['data.n_train']} training samples, {sizes['data.n_tests'][0]} test "
            f"samples per resolution, batch {sizes['data.batch_size']}, {sizes['opt.n_epochs']} epochs of each "
            f"config's optimizer (AdamW, StepLR every {sizes['opt.step_size']} epochs, H1 training loss); "
            f"seeds {args.seeds}: mean (min-max). Every recipe of a seed starts from the same weights. Half "
            "type: the config's (bfloat16 on CPU, where \"half\" runs as \"mixed\"). s/epoch is training "
            f"time only, {args.threads} torch thread(s); load average when the run ended: "
            f"{os.getloadavg()[0]:.1f} (times compare only within one run).\n\n"
            + summary + "\n\nPrecision each spectral layer chose under \"auto\" (the model runs in the "
            "cheapest precision every layer accepts; under a schedule, never cheaper than the phase; `why full`: "
            "why a layer that stays full refused each 16-bit precision):\n\n"
            + decisions + "\n")
    print(summary)
    print()
    print(decisions)
    write_results("auto", body, dict(rows=rows, seeds=args.seeds, sizes=sizes, datasets=args.datasets,
                                     threads=args.threads), out=args.out, update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
