"""``neuralop-mp bench NAME [--quick] [--out DIR] [--update-docs] ...``: run one benchmark.

Each benchmark writes ``NAME.md`` and ``NAME.json`` (and ``NAME_memory.png`` where it
plots) into ``--out DIR`` (default ``./runs/bench-NAME-TIMESTAMP``); only
``--update-docs`` rewrites its section of docs/benchmarks.md.
"""
import argparse
import importlib
import sys
from contextlib import contextmanager

from ..vocabulary import did_you_mean

BENCHMARKS = {
    "spectral": ("neuralop_mp.bench.spectral", "step time and saved bytes of FNO/TFNO, upstream vs ours"),
    "optimizer": ("neuralop_mp.bench.optimizer", "optimizer state and training memory of TensorGRaD"),
    "schedule": ("neuralop_mp.bench.schedule", "accuracy and time of full vs mixed vs precision schedule"),
    "scope": ("neuralop_mp.bench.autocast_scope", "test error, time and memory of autocast over the whole model vs "
              "float32 lifting/projection/pointwise layers"),
    "auto": ("neuralop_mp.bench.auto_precision",
             '"auto" precision vs full, mixed and the paper schedule on Darcy and Navier-Stokes'),
    "allocator": ("neuralop_mp.bench.cpu_allocator", "step time, page faults and resident memory with freed CPU "
                  "memory kept vs malloc as it is"),
    "gpu": ("neuralop_mp.bench.gpu", "the GPU campaign: CUDA tests, spectral and optimizer rows (--dry-run on CPU)"),
    "trainer": ("neuralop_mp.bench.trainer_overhead", "time per epoch of MixedPrecisionTrainer in full precision vs "
                "upstream's Trainer (CPU, one thread)"),
}


def threads_type(value):
    """argparse ``type`` of every benchmark's ``--threads``, read as ``neuralop-mp train`` reads its own.

    Returns
    -------
    int
        ``value`` as an integer >= 1; "auto" gives the CPUs other processes leave idle
        (:func:`neuralop_mp.run_setup.default_threads`).

    Raises
    ------
    argparse.ArgumentTypeError
        Naming the value and the allowed ones: argparse shows only this type's message
        as the error line (for a ValueError it would say just "invalid value").
    """
    from ..run_setup import RunSetupError, resolve_threads

    try:
        return resolve_threads(value)
    except RunSetupError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def fill_defaults(args, quick, defaults):
    """Set each option of ``defaults`` or ``quick`` (by ``args.quick``) that was not given (None):
    an option given on the command line wins over ``--quick``'s settings."""
    for key, default in (quick if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, default)


@contextmanager
def data_root_errors(parser):
    """Within this block, a data root that cannot be written is ``parser``'s one-line usage error,
    naming what chooses the folder: a benchmark has no data-root option of its own, so the message
    names ``$NEURALOP_MP_DATA`` (:data:`~neuralop_mp.data.cache.ENVIRONMENT_DATA_ROOT_OPTION`)."""
    from ..data.cache import ENVIRONMENT_DATA_ROOT_OPTION, data_root_option
    from ..run_setup import RunSetupError

    try:
        with data_root_option(ENVIRONMENT_DATA_ROOT_OPTION):
            yield
    except RunSetupError as error:
        parser.error(str(error))


def announce_data(prog, dataset, n_train, n_tests, train_resolution, test_resolutions):
    """Say on stderr, before a benchmark loads its data, how many samples it asks for: the built-in
    data are generated into the data root on first use, which for a large ``--n-train`` takes long
    (the loaders' progress bar is drawn in a terminal only)."""
    tests = " and ".join(f"{n} at {r}x{r}" for n, r in zip(n_tests, test_resolutions))
    print(f"{prog}: {dataset} data: {n_train} training samples at {train_resolution}x{train_resolution}, test "
          f"{tests}; read from the data root, or generated there first (longer the more samples)",
          file=sys.stderr, flush=True)


def usage():
    lines = ["usage: neuralop-mp bench {" + ",".join(BENCHMARKS) + "} [--quick] [--out DIR] [--update-docs] ...",
             "", "benchmarks:"]
    width = max(map(len, BENCHMARKS))
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in BENCHMARKS.items()]
    lines += ["", "Run `neuralop-mp bench NAME --help` for the options of one benchmark."]
    return "\n".join(lines)


def main(argv):
    """Dispatch to the benchmark's ``main``; returns the exit code."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"neuralop-mp bench: error: unknown benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}."
              f"{did_you_mean(name, BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    from ..training.checkpointing import CheckpointWriteError

    try:
        return module.main(rest)
    except CheckpointWriteError as error:  # a results file or the docs not written (a full disk): kept whole
        print(f"neuralop-mp bench {name}: error: {error}", file=sys.stderr)
        return 1
