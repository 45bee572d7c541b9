"""Benchmark: accuracy and time of full vs mixed vs precision-schedule training on Darcy.

Run ``neuralop-mp bench schedule`` (about 3-5 minutes on 2 CPU cores). It
trains the same FNO, from the same initial weights and with the same data order,
once per (run, seed) and writes the table to ``--out DIR`` (with ``--update-docs``
also to the "schedule" section of docs/benchmarks.md).

Runs:

- ``full``: upstream's SpectralConv, float32, no autocast.
- ``mixed``: constant "mixed" schedule (half-type Fourier contraction + autocast).
- ``paper``: the paper's schedule, half 25% / mixed 50% / full 25% (tanh where the
  half type is float16, see :mod:`neuralop_mp.training.schedule`).
- ``paper+tanh``: the same with tanh forced in the first phase, the paper's exact
  fp16 recipe, run in the bfloat16 of a CPU.

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision
       Neural Operators". ICLR 2024, arXiv:2307.15034 (Navier-Stokes: schedule
       H1 0.00515 vs full 0.00536 at equal wall-clock).
"""
import contextlib
import io
import statistics
import sys

import torch
from neuralop.losses import H1Loss, LpLoss

from ..vocabulary import OneLineErrorParser, ignoring_upstream_unused_keys
from ..data.cli import non_negative_int, positive_float, positive_int
from .cli import announce_data, data_root_errors, fill_defaults, threads_type
from .report import (add_output_arguments, fno_description, markdown_table, refuse_partial_docs_update,
                     shown_command, timed_section, write_results)

RUNS = {
    "full": None,
    "mixed": "mixed",
    "paper": "paper",
    "paper+tanh": "half:0.25/tanh,mixed:0.5,full:0.25",
}
METRICS = ("16_l2", "16_h1", "32_l2", "32_h1")
N_TESTS, TEST_RESOLUTIONS = (200, 200), (16, 32)  # test samples at each test resolution
# the options' defaults, and those of --quick (which an option given on the command line overrides)
DEFAULTS = {"epochs": 10, "seeds": [0, 1], "n_train": 500, "runs": list(RUNS)}
QUICK = {"epochs": 1, "seeds": [0], "n_train": 64, "runs": ["full", "mixed"]}
# autocast phases over the whole model (scope "model"), as when docs/benchmarks.md's table was made;
# `neuralop-mp bench scope` compares the scopes
MODEL = {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [8, 8],
         "hidden_channels": 16, "n_layers": 3, "autocast_scope": "model"}


def train_once(loaders, schedule, seed, n_epochs, lr):
    """Train one model; returns final metrics, seconds per epoch and the trainer's history."""
    import neuralop_mp
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    train_loader, test_loaders, data_processor = loaders
    torch.manual_seed(seed)
    # without a schedule: upstream's model and layer (a plugin key would select the plugin's)
    model_config = dict(MODEL) if schedule else {k: v for k, v in MODEL.items() if k != "autocast_scope"}
    model = neuralop_mp.get_model({"model": model_config, "opt": {"precision_schedule": schedule}})
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, data_processor=data_processor,
                                    precision_schedule=schedule)
    l2, h1 = LpLoss(d=2, reduction="sum"), H1Loss(d=2, reduction="sum")
    torch.manual_seed(seed + 1000)  # data order: the same for every run of this seed
    metrics = trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=h1,
                            eval_losses={"l2": l2, "h1": h1})
    history = trainer.history
    seconds = sum(h["epoch_time"] for h in history) / len(history)
    return {k: float(metrics[k]) for k in METRICS}, seconds, history


def signed_percent(change):
    """``change`` (a fraction) as the table's percentage: "+0.8%", "-1.2%", and "0.0%" where it
    rounds to zero (no "-0.0%" for a change a hair below zero)."""
    text = f"{100 * change:+.1f}%"
    return "0.0%" if text in ("+0.0%", "-0.0%") else text


def summarize(name, schedule, results):
    """One table row: mean (and spread) over seeds."""
    def mean(key):
        return statistics.fmean(r[key] for r in results)

    row = {"run": name, "schedule": schedule or "(upstream SpectralConv)"}
    for key in METRICS:
        values = [r[key] for r in results]
        spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
        row[key] = f"{statistics.fmean(values):.4f}{spread}"
    row["s/epoch"] = f"{mean('seconds'):.2f}"
    row["skipped"] = sum(r["skipped"] for r in results)
    row["saved MiB (phase 1)"] = f"{mean('saved_bytes') / 2**20:.2f}"
    row["phases"] = results[0]["phases"]
    return row


def phases_text(history):
    """``half x2, mixed x4, full x2`` from a history."""
    parts, last, count = [], None, 0
    for h in history + [{"precision": None}]:
        if h["precision"] != last and last is not None:
            parts.append(f"{last} x{count}")
            count = 0
        last, count = h["precision"], count + 1
    return ", ".join(parts)


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench schedule", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch, 1 seed, 64 training samples, runs full and mixed (seconds); --epochs, "
                             "--seeds, --n-train and --runs given as well override these")
    parser.add_argument("--epochs", type=positive_int, default=None, help=f"default {DEFAULTS['epochs']}")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                        help="default " + " ".join(map(str, DEFAULTS["seeds"])))
    parser.add_argument("--n-train", type=positive_int, default=None, help=f"default {DEFAULTS['n_train']}")
    parser.add_argument("--lr", type=positive_float, default=5e-3, help="default 5e-3")
    parser.add_argument("--runs", nargs="+", default=None, choices=list(RUNS), help="default: all")
    parser.add_argument("--threads", type=threads_type, default=None, metavar="N|auto",
                        help="torch intra-op threads; auto: the CPUs other processes leave idle (default: torch's "
                             "choice); 1 is faster on a busy machine")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a tiny run, or some of the table's rows, is not the docs' table
    refuse_partial_docs_update(parser, "schedule", args, {"--quick": args.quick, "--runs": args.runs})
    fill_defaults(args, QUICK, DEFAULTS)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    # upstream's unused-keys warning only: the plugin's own warnings reach the user, and the
    # filters are as they were when main returns; an unwritable data root is a one-line error
    with data_root_errors(parser), ignoring_upstream_unused_keys():
        return _measure(args, argv)


def _measure(args, argv):
    """Run the benchmark ``args`` (parsed and filled in) asks for; write its results."""
    import neuralop_mp

    announce_data("neuralop-mp bench schedule", "Darcy", args.n_train, N_TESTS, 16, TEST_RESOLUTIONS)
    # the loader's own lines kept off stdout (the table's); its progress bar goes to stderr, in a terminal
    with contextlib.redirect_stdout(io.StringIO()):
        loaders = neuralop_mp.data.load_darcy(n_train=args.n_train, n_tests=N_TESTS, batch_size=16,
                                              test_batch_sizes=(50, 50), train_resolution=16,
                                              test_resolutions=TEST_RESOLUTIONS, progress=True)
    rows, means, raw = [], {}, {}
    for name in args.runs:
        results = []
        for seed in args.seeds:
            metrics, seconds, history = train_once(loaders, RUNS[name], seed, args.epochs, args.lr)
            metrics.update(seconds=seconds, skipped=sum(h["skipped_steps"] for h in history),
                           saved_bytes=history[0]["saved_bytes"] or 0, phases=phases_text(history))
            results.append(metrics)
            raw.setdefault(name, []).append(dict(seed=seed, **metrics))
            print(f"{name:>10} seed {seed}: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in METRICS)
                  + f", {seconds:.2f} s/epoch", file=sys.stderr, flush=True)
        rows.append(summarize(name, RUNS[name], results))
        means[name] = {k: statistics.fmean(r[k] for r in results) for k in ("16_l2", "16_h1", "seconds")}
    if "full" in means:  # relative to full precision, so the table reads at a glance
        for row in rows:
            m, ref = means[row["run"]], means["full"]
            row["L2/H1 vs full"] = (f"{signed_percent(m['16_l2'] / ref['16_l2'] - 1)} / "
                                   f"{signed_percent(m['16_h1'] / ref['16_h1'] - 1)}")
            row["time vs full"] = f"{m['seconds'] / ref['seconds']:.2f}x"

    columns = ["run", "schedule", *METRICS, "L2/H1 vs full", "s/epoch", "time vs full", "skipped",
               "saved MiB (phase 1)", "phases"]
    table = markdown_table(rows, columns)
    command = shown_command("neuralop-mp bench schedule", argv)
    body = timed_section(
        "Precision schedule: full vs mixed vs schedule (Darcy)", command,
        f"{fno_description(MODEL)}; built-in Darcy, train {args.n_train} samples "
        f"at 16x16, test 200 at 16x16 and 32x32 (zero-shot 2x); AdamW lr {args.lr}, cosine, "
        f"{args.epochs} epochs, H1 training loss, batch 16; seeds {args.seeds} (mean ± std). Same "
        "initial weights and data order for every run of a seed. Half type: bfloat16 (CPU default); "
        "on CPU \"half\" runs as \"mixed\" (torch.fft has no CPU half). s/epoch is training time only; "
        "saved MiB = bytes autograd saved for backward on the first batch of the first phase (MiB: 2^20 "
        "bytes).", table)
    print(table)
    # raw: each (run, seed)'s unrounded numbers, from which every cell and ratio of the table can be recomputed
    write_results("schedule", body, dict(rows=rows, raw=raw, epochs=args.epochs, seeds=args.seeds,
                                         n_train=args.n_train, n_tests=list(N_TESTS),
                                         test_resolutions=list(TEST_RESOLUTIONS), lr=args.lr, runs=args.runs,
                                         batch_size=16, threads=torch.get_num_threads()),
                  out=args.out, update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
