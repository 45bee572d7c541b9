"""Benchmark: what autocast's rounding costs in test error, time and memory, per autocast scope.

Run ``neuralop-mp bench scope`` (about 10 minutes of one CPU core). On built-in Darcy and
Navier-Stokes it trains the same FNO, from the same initial weights and with the same
data order, once per (run, seed) with :class:`~neuralop_mp.MixedPrecisionTrainer`, and
writes test relative L2 at the training resolution and at 2x, the ratio to full
precision, seconds per epoch, the median time of one training step (the runs
interleaved, so that load from other jobs hits them alike) and the bytes autograd saved for backward on the first
batch (:class:`neuralop_mp.memory.SavedTensorBytes`, parameters excluded) to
``--out DIR`` (with ``--update-docs`` also to the "scope" section of docs/benchmarks.md).

Runs (the spectral layers' half type is bfloat16, the CPU default):

- ``full``: upstream's SpectralConv, float32, no autocast;
- ``mixed``: "mixed" spectral layers, no autocast;
- ``mixed+autocast``: "mixed" with autocast over the whole model (scope "model"), the
  constant "mixed" schedule's recipe;
- ``mixed+autocast fno_blocks``: the same, lifting and projection in float32;
- ``mixed+autocast spectral``: the same, every layer but the spectral product in float32.

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision Neural
       Operators". ICLR 2024, arXiv:2307.15034.
"""
import contextlib
import io
import statistics
import sys
import time

import torch
from neuralop.losses import H1Loss, LpLoss

from ..vocabulary import OneLineErrorParser, ignoring_upstream_unused_keys
from ..data.cli import non_negative_int, positive_float, positive_int
from ..models.mixed_precision_models import ignoring_unrecorded_precision
from .cli import announce_data, data_root_errors, fill_defaults, threads_type
from .report import (add_output_arguments, fno_description, markdown_table, refuse_partial_docs_update,
                     shown_command, timed_section, write_results)

# name -> (precision schedule, autocast scope); None: upstream's layer in full precision
RUNS = {
    "full": (None, None),
    "mixed": ("mixed/noautocast", "model"),
    "mixed+autocast": ("mixed", "model"),
    "mixed+autocast fno_blocks": ("mixed", "fno_blocks"),
    "mixed+autocast spectral": ("mixed", "spectral"),
}
DATASETS = {"darcy": "load_darcy", "navier_stokes": "load_navier_stokes"}
# the options' defaults, and those of --quick (which an option given on the command line overrides)
DEFAULTS = {"epochs": 4, "seeds": [0, 1, 2], "n_train": 200, "n_test": 100, "datasets": list(DATASETS)}
QUICK = {"epochs": 1, "seeds": [0], "n_train": 32, "n_test": 16, "datasets": ["darcy"]}
MODEL = {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [8, 8],
         "hidden_channels": 16, "n_layers": 3, "half_dtype": "bfloat16"}


def train_once(loaders, run, seed, n_epochs, lr, resolution):
    """Train one model; returns (test L2 at N, test L2 at 2N, seconds per epoch, saved bytes)."""
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    schedule = RUNS[run][0]
    train_loader, test_loaders, data_processor = loaders
    model = _build(run, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, data_processor=data_processor,
                                    precision_schedule=schedule, half_dtype="bfloat16")
    l2, h1 = LpLoss(d=2, reduction="sum"), H1Loss(d=2, reduction="sum")
    torch.manual_seed(seed + 1000)  # data order: the same for every run of this seed
    metrics = trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=h1,
                            eval_losses={"l2": l2})
    history = trainer.history
    seconds = sum(h["epoch_time"] for h in history) / len(history)
    return (float(metrics[f"{resolution}_l2"]), float(metrics[f"{2 * resolution}_l2"]), seconds,
            history[0]["saved_bytes"] or 0)


def _build(run, seed):
    import neuralop_mp

    schedule, scope = RUNS[run]
    if scope is None:  # upstream's model and layer
        model_config = {k: v for k, v in MODEL.items() if k != "half_dtype"}
    else:
        model_config = {**MODEL, "autocast_scope": scope}
    torch.manual_seed(seed)
    return neuralop_mp.get_model({"model": model_config, "opt": {"precision_schedule": schedule}})


def step_times(loaders, runs, repeats=15):
    """``{run: median seconds}`` of one training step (forward, H1 loss, backward) on the
    same batch, the runs interleaved so that a change of machine load hits all alike."""
    import neuralop_mp

    train_loader, _, processor = loaders
    batch = processor.preprocess(next(iter(train_loader)))
    loss_fn = H1Loss(d=2)
    models = {}
    for run in runs:
        model = _build(run, 0)
        if RUNS[run][1] is not None:
            with ignoring_unrecorded_precision():  # never saved
                neuralop_mp.set_precision(model, "mixed", half_dtype="bfloat16")
        models[run] = (model, RUNS[run][0] == "mixed")  # the constant "mixed" schedule autocasts
    times = {run: [] for run in runs}
    for repeat in range(repeats + 1):
        for run, (model, autocast) in models.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(batch["x"])
            loss_fn(out.float(), batch["y"]).backward()
            if repeat:  # the first round warms up
                times[run].append(time.perf_counter() - start)
    return {run: statistics.median(values) for run, values in times.items()}


def _mean_std(values, digits=4):
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.{digits}f}{spread}"


def summarize(dataset, name, results, full):
    """One table row: means (± std over seeds) and ratios to the mean of full precision."""
    row = {"data": dataset, "run": name}
    for index, label in ((0, "L2 @ N"), (1, "L2 @ 2N")):
        values = [r[index] for r in results]
        row[label] = _mean_std(values)
        if full is not None:
            row[f"{label} / full"] = f"{statistics.fmean(values) / statistics.fmean(r[index] for r in full):.3f}"
    row["s/epoch"] = f"{statistics.fmean(r[2] for r in results):.2f}"
    row["saved MiB"] = f"{statistics.fmean(r[3] for r in results) / 2**20:.2f}"
    return row


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench scope", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch, 1 seed, 32 training and 16 test samples, Darcy only (seconds); --epochs, "
                             "--seeds, --n-train, --n-test and --datasets given as well override these")
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(DATASETS), help="default: all")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--epochs", type=positive_int, default=None, help=f"default {DEFAULTS['epochs']}")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                        help="default " + " ".join(map(str, DEFAULTS["seeds"])))
    parser.add_argument("--n-train", type=positive_int, default=None, help=f"default {DEFAULTS['n_train']}")
    parser.add_argument("--n-test", type=positive_int, default=None, help=f"default {DEFAULTS['n_test']}")
    parser.add_argument("--resolution", type=positive_int, default=16,
                        help="training resolution N (tests at N and 2N; default 16)")
    parser.add_argument("--lr", type=positive_float, default=5e-3, help="default 5e-3")
    parser.add_argument("--threads", type=threads_type, default=1, metavar="N|auto",
                        help="torch intra-op threads; auto: the CPUs other processes leave idle (default 1)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a tiny run, or some of the table's rows, is not the docs' table
    refuse_partial_docs_update(parser, "scope", args, {"--quick": args.quick, "--datasets": args.datasets,
                                                       "--runs": args.runs != list(RUNS)})
    fill_defaults(args, QUICK, DEFAULTS)
    torch.set_num_threads(args.threads)

    # upstream's unused-keys warning only: the plugin's own warnings reach the user, and the
    # filters are as they were when main returns; an unwritable data root is a one-line error
    with data_root_errors(parser), ignoring_upstream_unused_keys():
        return _measure(args, argv)


def _measure(args, argv):
    """Run the benchmark ``args`` (parsed and filled in) asks for; write its results."""
    import neuralop_mp

    step_repeats = 2 if args.quick else 15
    n = args.resolution
    rows, raw = [], {}
    for dataset in args.datasets:
        announce_data("neuralop-mp bench scope", dataset, args.n_train, (args.n_test, args.n_test), n, (n, 2 * n))
        # the loader's own lines kept off stdout (the table's); its progress bar goes to stderr, in a terminal
        with contextlib.redirect_stdout(io.StringIO()):
            loaders = getattr(neuralop_mp.data, DATASETS[dataset])(
                n_train=args.n_train, n_tests=(args.n_test, args.n_test), batch_size=16,
                test_batch_sizes=(50, 50), train_resolution=n, test_resolutions=(n, 2 * n), progress=True)
        per_run = {}
        for name in args.runs:
            per_run[name] = []
            for seed in args.seeds:
                result = train_once(loaders, name, seed, args.epochs, args.lr, n)
                per_run[name].append(result)
                print(f"{dataset} {name:>26} seed {seed}: L2 {result[0]:.4f} / {result[1]:.4f}, "
                      f"{result[2]:.2f} s/epoch, {result[3] / 2**20:.2f} MiB", file=sys.stderr, flush=True)
        steps = step_times(loaders, args.runs, repeats=step_repeats)
        for name, results in per_run.items():
            rows.append(summarize(dataset, name, results, per_run.get("full")))
            rows[-1]["step ms"] = f"{1000 * steps[name]:.1f}"
        raw[dataset] = per_run

    columns = ["data", "run", "L2 @ N", "L2 @ N / full", "L2 @ 2N", "L2 @ 2N / full", "s/epoch", "step ms", "saved MiB"]
    table = markdown_table(rows, [c for c in columns if any(c in r for r in rows)])
    command = shown_command("neuralop-mp bench scope", argv)
    body = timed_section(
        "Autocast scope: what autocast's rounding costs (Darcy, Navier-Stokes)", command,
        f"{fno_description(MODEL)}, bfloat16; train {args.n_train} samples at "
        f"{n}x{n}, test {args.n_test} at N={n} and 2N={2 * n}; AdamW lr {args.lr}, cosine, {args.epochs} "
        f"epochs, H1 training loss, batch 16; seeds {args.seeds} (mean ± std), the same initial weights "
        f"and data order for every run of a seed. s/epoch: training time only; step ms: median of {step_repeats} "
        "training steps (forward, loss, backward) on one batch of 16, the runs interleaved; saved MiB: bytes "
        "autograd saved for backward on the first batch (MiB: 2^20 bytes).", table)
    print(table)
    # raw: per dataset and run, one (L2 @ N, L2 @ 2N, s/epoch, saved bytes) per seed, in the order of seeds
    write_results("scope", body, dict(rows=rows, raw=raw, epochs=args.epochs, seeds=args.seeds,
                                      n_train=args.n_train, n_test=args.n_test, resolution=n, lr=args.lr,
                                      step_repeats=step_repeats, threads=torch.get_num_threads()),
                  out=args.out, update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
