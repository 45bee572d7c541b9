"""``neuralop-mp data {darcy,navier_stokes,burgers}``: generate datasets offline.

Example::

    neuralop-mp data darcy --root ~/data --res 16 32 --n-train 1000 --n-test 200 --seed 0
    neuralop-mp data navier_stokes --res 32 --viscosity 1e-3 --t-final 10
    neuralop-mp data navier_stokes --res 64 --t-final 50 --dt 0.0125
    neuralop-mp data burgers --res 16 --n-time 17
    neuralop-mp data darcy --res 64 --n-train 0 --n-test 200   # a test set alone
    neuralop-mp data darcy --res 16 --solver-resolution 241    # labels solved on 241 points

Prints one line per file: those this run did not generate itself (found up to date, or written
by another run on the same root meanwhile) are marked ``(cached)``; then, where it removed
temporary files that a killed generation left, one line naming them. Exit status 0 on success,
2 on bad arguments (the message names the bad value and the allowed ones) and on a data
folder or lock file that cannot be written or opened (one line naming it, as ``neuralop-mp
train``), 1 for a data file that cannot be written (one line naming it and, on a full disk,
the free space), 130 after Ctrl-C and 143 after SIGTERM (one line on stderr: the files
finished before it are kept, the one being written is not, and no temporary file is left).
"""
import argparse
import errno
import math
import sys
import time

from ..vocabulary import OneLineErrorParser
from ..signals import exit_status, interrupt_name, terminate_as_interrupt
from ..training.checkpointing import CheckpointWriteError
from .darcy import FACE_AVERAGES

def _int_at_least(low, allowed):
    """An argparse type: an integer >= ``low``, else an error naming the value and ``allowed``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed values: {allowed}")
        return value
    return parse


#: argparse type of a count (an integer >= 1); the bench commands use it too
positive_int = _int_at_least(1, "positive integers")
non_negative_int = _int_at_least(0, "integers >= 0")


def _number(text, accepted, allowed):
    """``text`` as a float where ``accepted(value)``, else an argparse error naming it and ``allowed``
    (NaN fails every comparison, so a rule of comparisons refuses it)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not accepted(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed values: {allowed}")
    return value


def positive_float(text):
    """An argparse type: a number > 0, else an error naming the value (the bench commands use it too)."""
    return _number(text, lambda value: value > 0, "positive numbers")


def seconds(text):
    """An argparse type: seconds >= 0, or inf (never)."""
    return _number(text, lambda value: value >= 0, "seconds >= 0, or inf (never)")


def finite_seconds(text):
    """An argparse type: a finite number of seconds >= 0."""
    return _number(text, lambda value: math.isfinite(value) and value >= 0, "a finite number of seconds >= 0")


def _retry_advice(error_number):
    """What to do before running the command again after a write failed with ``error_number``: space
    comes back once freed; a permission or a read-only disk (another user's file in a shared
    folder, where the rename over it is refused) fails the same way again until it is fixed."""
    again = "run the same command again (finished files are reused)"
    if error_number == errno.ENOSPC:
        return f"free some space and {again}"
    if error_number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ("fix the folder's permissions (or its files': another user's cannot be replaced in a shared "
                f"folder), or give another --root, and {again}")
    return again


def build_parser(prog="neuralop-mp data"):
    """The argument parser of the ``data`` command."""
    parser = OneLineErrorParser(prog=prog, description="Generate PDE datasets offline, in neuraloperator's file layouts.")
    from .loaders import GENERATORS, resolution_rules_text

    parser.add_argument("dataset", choices=tuple(GENERATORS), help="which dataset to generate")
    parser.add_argument("--root", default=None, help="output folder (default: $NEURALOP_MP_DATA or ~/.cache/neuralop_mp/data)")
    parser.add_argument("--res", type=positive_int, nargs="+", default=None,
                        help=f"stored resolutions ({resolution_rules_text()})")
    parser.add_argument("--n-train", type=non_negative_int, default=None,
                        help="training samples per resolution (0: no training file)")
    parser.add_argument("--n-test", type=non_negative_int, default=None,
                        help="test samples per resolution (0: no test file)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="base seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if matching files exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    darcy = parser.add_argument_group("darcy")
    darcy.add_argument("--face-average", choices=FACE_AVERAGES, default=None,
                       help="permeability averaged onto cell faces (default harmonic)")
    # a physics flag of every dataset: its own group, not under navier_stokes and burgers
    solver = parser.add_argument_group("darcy, navier_stokes and burgers")
    solver.add_argument("--solver-resolution", type=positive_int, default=None,
                        help="smallest grid solved on (darcy: >= 4, solved on the nested (res-1)k+1 points, default "
                             "the stored grid; navier_stokes: a power of 2 >= 32; burgers: >= 65)")
    physics = parser.add_argument_group("navier_stokes and burgers")
    physics.add_argument("--viscosity", type=positive_float, default=None, help="nu (default 1e-3 / 0.01)")
    physics.add_argument("--t-final", type=positive_float, default=None, help="final time (default 10 / 1)")
    physics.add_argument("--n-time", type=positive_int, default=None, help="burgers: stored time points (default 17)")
    physics.add_argument("--dt", type=positive_float, default=None,
                         help="navier_stokes: largest time step (default 0.05*32/n on the n-point solver grid)")
    return parser


def _generate(args):
    # the loaders' list of the physics flags and of each dataset's physics: a setting a file
    # records is one the loaders keep and name in their advice (a flag of its own here drifted)
    from .loaders import CLI_FLAGS, GENERATORS, LOADER_FILES, PHYSICS

    # what is not given keeps the generator's default (the loaders' advice takes the same)
    given = {key: value for key, value in (("resolutions", tuple(args.res or ())), ("n_train", args.n_train),
                                           ("n_test", args.n_test)) if value not in (None, ())}
    physics = {k: getattr(args, k) for k in CLI_FLAGS if getattr(args, k) is not None}
    allowed = {k for prefix, _, name in LOADER_FILES.values() if name == args.dataset for k in PHYSICS[prefix]}
    unused = sorted(set(physics) - allowed)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise ValueError(f"{flags} does not apply to dataset {args.dataset!r}")
    return GENERATORS[args.dataset](args.root, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite,
                                    **given, **physics)


def main(argv=None):
    """Run ``neuralop-mp data ...``; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on bad arguments
        return int(exit_.code or 0)
    start = time.perf_counter()
    # SIGTERM as Ctrl-C: the save's cleanup runs (no temporary left), one line instead of a traceback
    with terminate_as_interrupt():
        try:
            from .cache import (data_os_error, data_root_option, removed_temporaries_line, reporting_generation,
                                resolve_root)

            # a data root that cannot be written, or an empty --root, names this command's option;
            # the files this run generates itself, told from those another run wrote meanwhile
            with data_root_option("--root"), reporting_generation() as report:
                root = resolve_root(args.root)
                files = _generate(args)
        except (ValueError, FileExistsError) as err:
            print(f"neuralop-mp data: error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            error = data_os_error(root, err)
            fix = _retry_advice(error.errno)
            if isinstance(err, CheckpointWriteError):  # a data file not saved (save_data_file): its temporary removed
                print(f"neuralop-mp data: error: {error}; the files finished before it are kept, the one being "
                      f"written was not saved; {fix}", file=sys.stderr)
                return 1
            # before a file's save (its lock file, its folder): a setup error, exit 2 as in `neuralop-mp train`
            print(f"neuralop-mp data: error: {error}; the files finished before it are kept; {fix}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as interrupt:
            if not args.quiet:
                print(file=sys.stderr)  # after the progress bar's line
            print(f"neuralop-mp data: {interrupt_name(interrupt)}; the files finished before it are kept, the one "
                  "being written was not saved; run the same command again to go on (finished files are reused)",
                  file=sys.stderr)
            return exit_status(interrupt)
    for res, paths in files.items():
        for path in filter(None, paths):  # None: a split of 0 samples, not written
            print(f"{path}{'' if path in report.generated else '  (cached)'}")
    if report.removed:
        print(removed_temporaries_line(report.removed))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
