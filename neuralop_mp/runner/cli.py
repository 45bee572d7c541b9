"""``neuralop-mp run SCRIPT.py [--mp.* ...] -- [script args]``: an upstream script with the plugin on.

The script runs in this process exactly as ``python SCRIPT.py ARGS`` would run
it (``__name__ == "__main__"``, its directory first on ``sys.path``,
``sys.argv == [SCRIPT.py, *ARGS]``, the working directory unchanged), inside
:func:`neuralop_mp.enabled`. Afterwards ``sys.argv``, ``sys.path``, the modules
imported from the script's folders and every patched name are restored, also
when the script fails. Before the script starts we print what the plugin will
intercept (and what it cannot); after it ends, a summary.

Everything before ``--`` belongs to ``neuralop-mp run`` (the script path and
``--mp.*`` flags, as ``--mp.flag value`` or ``--mp.flag=value``); everything
after ``--`` goes to the script untouched, ``--mp.*`` look-alikes included.
"""
import json
import runpy
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..run_setup import RunSetupError, check_output_file, check_update_in_backward_launch
from ..signals import exit_status, terminate_as_interrupt
from ..train_report import to_jsonable
from ..training.distributed import launch_rank
from ..vocabulary import (HALF_DTYPES, PRECISION_MODES, RECOMPUTE_MODES, SPECTRAL_WEIGHT_DTYPES, STABILIZER_REQUESTS,
                          normalize_flag, normalize_stabilizer_request, plain_text)
from .activation import _enable_keywords, _enabled_checked, _validated_options, optimizer_replacement_reason
from .static_check import describe_plan, scan_source, start_warnings
from .summary import flags_after_separator_cause, format_summary, script_folder_cause, zencfg_cause
from .upstream_scripts import refusal_reason

def usage():
    """The usage line, its allowed values from the lists the checks use (the optimizer kinds:
    the factory's registry, a kind registered since included)."""
    from ..optim.factory import list_optimizers

    def one_of(values):
        return "{" + ",".join(str(v) for v in values) + "}"

    return (
        f"usage: neuralop-mp run SCRIPT.py [--mp.precision {one_of(PRECISION_MODES)}] [--mp.half_dtype "
        f"{one_of(HALF_DTYPES)}] [--mp.schedule SCHEDULE] [--mp.stabilizer "
        f"{one_of('none' if v is None else v for v in STABILIZER_REQUESTS)}] "
        f"[--mp.spectral_weight_dtype {one_of(SPECTRAL_WEIGHT_DTYPES)}] "
        f"[--mp.optimizer {one_of(list_optimizers())}] [--mp.tensorgrad_* VALUE] "
        f"[--mp.loss_scaling VALUE] [--mp.recompute {one_of(RECOMPUTE_MODES)}] [--mp.recompute_chunk_points N] "
        "[--mp.update_in_backward {true,false}] "
        "[--mp.data-root DIR] [--mp.report FILE.json] [-- SCRIPT ARGS...]"
    )


#: what our flags start with; the messages about an option name it with it
FLAG_PREFIX = "--mp."


# Converters of a flag's text into the value a Python caller of enable() would pass. They
# check nothing else: every value is checked by enable's own check (_checked_options).
def _number(kind):
    def convert(flag, value):
        try:
            return kind(value)
        except ValueError:
            raise UsageError(f"Invalid {flag}={value!r}; expected {'an integer' if kind is int else 'a number'}.") from None

    return convert


def _int_or_float(flag, value):
    """An int stays an int ("8": a rank per mode), any other number is a float ("0.25": a fraction),
    as the configs read ``model.rank`` and ``opt.tensorgrad_rank``."""
    try:
        return int(value)
    except ValueError:
        return _number(float)(flag, value)


def _text(flag, value):
    return value


def _on_off(flag, value):
    try:
        return normalize_flag(value, flag)
    except TypeError as error:
        raise UsageError(str(error)) from None


def _stabilizer(flag, value):
    # typed on a command line, "none" (or "None", "null") and "off" in any case ask for no
    # stabilizer: "off", which the mode's default (tanh for float16 "half") does not replace, as a
    # config's None would mean (an empty value is refused); a bad value's message lists the typed
    # values, not a config's None
    try:
        return normalize_stabilizer_request(value, flag, given=True)
    except ValueError as error:
        raise UsageError(str(error)) from None


# flag (as written after --mp.) -> (destination, converter)
FLAGS = {
    "precision": ("precision", _text),
    "half_dtype": ("half_dtype", _text),
    "schedule": ("schedule", _text),
    "stabilizer": ("stabilizer", _stabilizer),
    "spectral_weight_dtype": ("spectral_weight_dtype", _text),
    "optimizer": ("optimizer", _text),
    "loss_scaling": ("loss_scaling", _text),
    "recompute": ("recompute", _text),
    "recompute_chunk_points": ("recompute_chunk_points", _number(int)),
    "update_in_backward": ("update_in_backward", _on_off),
    "data-root": ("data_root", _text),
    "report": ("report", _text),
}


# TensorGRaD settings whose int and float mean different things (a rank per mode, a fraction)
_INT_OR_FLOAT = ("rank",)


def _tensorgrad_flags():
    """``--mp.tensorgrad_<name>`` for every TensorGRaD setting configs expose (one table)."""
    from ..optim.settings import CONFIG_OPTIONS

    flags = {}
    for option in CONFIG_OPTIONS:
        number = isinstance(option.default, (int, float)) and not isinstance(option.default, bool)
        convert = _number(type(option.default)) if number else _text
        if option.name in _INT_OR_FLOAT:
            convert = _int_or_float
        flags[option.config_field] = (option.config_field, convert)
    return flags


FLAGS.update(_tensorgrad_flags())
KNOWN_FLAGS = tuple(f"{FLAG_PREFIX}{name}" for name in FLAGS)


class UsageError(ValueError):
    """Bad command line for ``neuralop-mp run``."""


def _checked_options(options):
    """:func:`run_script`'s ``options`` as the keywords of :func:`~neuralop_mp.enable` (the
    ``tensorgrad_*`` settings in ``optimizer_options``), checked and normalized by enable's
    own check, each value named as its ``--mp.*`` flag.

    Raises
    ------
    TypeError
        For a keyword that ``enable`` does not take (the command line refuses unknown
        flags before this).
    UsageError
        For a bad value or settings that cannot be combined (only these become usage
        errors in ``main``: an error of the plugin's own code elsewhere keeps its traceback).
    """
    keywords = {k: v for k, v in options.items() if not k.startswith("tensorgrad_")}
    optimizer_options = {k: v for k, v in options.items() if k.startswith("tensorgrad_")}
    if optimizer_options:
        keywords["optimizer_options"] = optimizer_options
    keywords = _enable_keywords(keywords)  # outside the try: an unknown keyword stays a TypeError
    try:
        checked = _validated_options(keywords, prefix=FLAG_PREFIX)
        # one rank of several under torchrun: refused at start, not by the trainer once the data are loaded
        check_update_in_backward_launch(checked["update_in_backward"], f"{FLAG_PREFIX}update_in_backward")
        return checked
    except (TypeError, ValueError) as exc:  # a RunSetupError is a ValueError
        raise UsageError(str(exc)) from exc


def _canonical(name):
    """Flag name after ``--mp.``, with ``-`` and ``_`` accepted alike."""
    wanted = name.replace("-", "_")
    for known in FLAGS:
        if known.replace("-", "_") == wanted:
            return known
    return None


def _split_args(argv):
    """``(script, options, script_args)`` of ``argv``, each flag's text turned into its value
    (a number, True or False, None), the values not checked yet (:func:`parse_args`)."""
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        ours, script_args = argv[:split], argv[split + 1:]
    else:
        ours, script_args = argv, []
    script, options, i = None, {}, 0
    while i < len(ours):
        token = ours[i]
        if token.startswith(("--mp.", "--mp-", "--mp_")):
            name, has_value, value = token[5:].partition("=")
            flag = _canonical(name)
            if flag is None:
                raise UsageError(f"Unknown flag {token.split('=')[0]!r}; known flags: {', '.join(KNOWN_FLAGS)}.")
            if not has_value:
                if i + 1 >= len(ours) or ours[i + 1].startswith(FLAG_PREFIX):
                    raise UsageError(f"{FLAG_PREFIX}{flag} needs a value.")
                i += 1
                value = ours[i]
            dest, convert = FLAGS[flag]
            options[dest] = convert(f"{FLAG_PREFIX}{flag}", value)
        elif script is None and not token.startswith("-"):
            script = token
        else:
            raise UsageError(
                f"Unexpected argument {token!r} before '--'. The script's own arguments go after '--', "
                f"e.g. neuralop-mp run train.py --mp.precision mixed -- --opt.n_epochs 3"
            )
        i += 1
    if script is None:
        raise UsageError("No script given. " + usage())
    return script, options, script_args


def parse_args(argv):
    """Split ``argv`` into ``(script, options, script_args)``.

    Raises
    ------
    UsageError
        On a missing script, an unknown ``--mp.*`` flag (the message lists the
        known ones), a flag without value, or an argument before ``--`` that is
        not ours. Bad values raise a ValueError naming the flag and the allowed
        values: each value is checked by the library's own check (TensorGRaD's
        settings, the trainer's loss scaling, the schedule parser, the checks of
        ``update_in_backward``: the check of :func:`neuralop_mp.enable`), as
        :func:`run_script` checks them before the script starts; ``update_in_backward``
        is also refused in one of several ranks ``torchrun`` started.
    """
    script, options, script_args = _split_args(argv)
    _checked_options({k: v for k, v in options.items() if k != "report"})
    return script, options, script_args


@dataclass
class RunResult:
    """Outcome of :func:`run_script`: the script's exit status and the activation report."""

    exit_status: int
    report: object
    error: BaseException = None  # how it ended, interrupted or not: the report's record_end


def _under(path, folders):
    try:
        path = Path(path).resolve()
    except (OSError, TypeError):
        return False
    return any(folder == path or folder in path.parents for folder in folders)


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints it, as Python does
    return 1


def _check_report_path(report_path):
    """Refuse, before the script starts, a ``--mp.report`` file that could not be written after it.

    Raises
    ------
    UsageError
        When the path is a folder, or its folder is missing or not writable.
    """
    try:
        check_output_file(report_path, f"{FLAG_PREFIX}report", "report.json")
    except RunSetupError as error:
        raise UsageError(str(error)) from None


def _raised_by_plugin(error):
    """Whether ``error`` was raised in the plugin's own code (an argument check of its trainer), not
    inside upstream's or torch's code, which a one-line message would leave without its traceback."""
    from .. import configs

    # the package, and its configs wherever they live (an editable install keeps them beside it)
    roots = (Path(__file__).resolve().parents[1], *(Path(p).resolve() for p in configs.__path__))
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _under(frames[-1].filename, roots)


def _plugin_refusal(error):
    """Whether ``error`` is a refusal of the plugin's own checks: a ValueError or TypeError raised in its
    code (:func:`_raised_by_plugin`), said in one line; anything else keeps its traceback."""
    return isinstance(error, (ValueError, TypeError)) and _raised_by_plugin(error)


def _script_line(error, script):
    """``"train.py, line 120: "``: the last line of ``script`` that ``error`` passed through ("" for none)."""
    try:
        target = Path(script).resolve()
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
                 if Path(frame.filename).resolve() == target]
    except (OSError, ValueError):
        return ""
    return f"{Path(script).name}, line {lines[-1]}: " if lines else ""


def _write_report(report, report_path):
    """Write the report as JSON; False, after one message on stderr, when it cannot be written."""
    try:
        # an inf/NaN metric as a string, as results.json and eval --json write it: JSON has no Infinity
        Path(report_path).write_text(json.dumps(to_jsonable(report.to_dict()), indent=2, default=str))
    except OSError as error:  # the folder was checked before the script: it changed since
        print(f"neuralop-mp run: error: the report could not be written to {str(report_path)!r} "
              f"({error.strerror or error}).", file=sys.stderr)
        return False
    return True


def run_script(script, script_args=(), *, report_path=None, out=None, **options):
    """Run ``script`` as ``python script *script_args`` would, with the plugin enabled.

    Parameters
    ----------
    script : str or Path
    script_args : sequence of str
        The script's ``sys.argv[1:]``.
    report_path : str or Path, optional
        Write the activation report there as JSON (also when the script fails or is
        interrupted). Its folder must exist and be writable: checked before the script
        starts.
    out : file, optional
        Where our own messages go (default: ``sys.stdout``).
    **options
        Keyword arguments of :func:`neuralop_mp.enable` plus optimizer settings
        (``tensorgrad_rank``, ...), which are passed as ``optimizer_options``.

    Returns
    -------
    RunResult
        ``exit_status`` is the script's: 0, its ``sys.exit`` status, 1 after an uncaught
        exception, 130 after Ctrl-C, 143 after SIGTERM (``interrupted``; the summary and the report then cover
        what the script finished); 1 also when the script succeeded but the report could
        not be written.

    Raises
    ------
    ValueError
        For a bad option or options that cannot be combined, named as their ``--mp.*``
        flags (:func:`parse_args`' check), before anything is printed or run.
    UsageError
        When ``script`` is missing, or is one of neuraloperator's own scripts that
        cannot run with the plugin (:mod:`neuralop_mp.runner.upstream_scripts`,
        the message says why), or ``report_path`` is a folder or its folder cannot be
        written, before anything runs.
    """
    out = out or sys.stdout
    checked = _checked_options(options)  # before anything is printed or run
    path = Path(script)
    if not path.is_file():
        raise UsageError(f"Script {str(script)!r} not found.")

    source = path.read_text()
    reason = refusal_reason(path.name, source)
    if reason is not None:
        raise UsageError(
            f"{path.name} is one of neuraloperator's own scripts that neuralop-mp run does not run: {reason}. "
            "The scripts it runs: train_darcy.py, train_navier_stokes.py, train_burgers.py, "
            "train_burgers_pino.py (docs/upstream_scripts.md)."
        )
    if report_path:
        _check_report_path(report_path)
    scan = scan_source(source, filename=str(path))
    shown = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None) or "defaults"
    # under torchrun every rank runs the script; one prints the header, as one prints the summary
    is_printer = launch_rank() == 0
    if is_printer:
        print(f"neuralop-mp run: {path} with the plugin enabled ({shown})", file=out)
        replaces_optimizer = optimizer_replacement_reason(checked) is not None
        print(f"neuralop-mp run: intercepting {describe_plan(scan, replaces_optimizer)}", file=out)

    script_dir = path.resolve().parent
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_modules = set(sys.modules)
    status, error, interrupted, report = 0, None, False, None
    try:
        sys.argv = [str(path)] + list(script_args)
        sys.path.insert(0, str(script_dir))
        with _enabled_checked(checked, prefix=FLAG_PREFIX) as report:
            # what the plugin cannot reach, then the activation's notes (a stabilizer beside a
            # schedule), which the summary repeats
            for warning in (start_warnings(scan, options) + report.notes) if is_printer else ():
                print(f"neuralop-mp run: WARNING: {warning}", file=out)
            out.flush()
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exit_:
                status = _exit_status(exit_.code)
            except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (main) ends the script, not the run: the
                status, interrupted = exit_status(interrupt), True  # summary and report follow, exit 130 / 143
            except Exception as exc:  # the script's own failure: report it like Python would
                refusal = report.refused_trainer(exc)
                if refusal is not None and _plugin_refusal(exc):
                    # a Trainer refusing its arguments (the options' among them) is said as the refusal it is;
                    # an error inside upstream's constructor (or torch's) keeps its traceback
                    print(f"neuralop-mp run: error: {_script_line(exc, path)}neuralop.Trainer ({refusal['class']}) "
                          f"refused to be created: {exc}", file=sys.stderr)
                else:
                    traceback.print_exc()
                status, error = 1, exc
            # each trainer that raised, as the summary tells it: refused by our checks, or raised in
            # upstream's code (the traceback above); one the script caught included
            report.mark_trainer_refusals(_plugin_refusal, error)
    finally:
        added = [p for p in sys.path if p and p not in saved_path]
        added_paths = [Path(p).resolve() for p in added]
        sys.argv, sys.path[:] = saved_argv, saved_path
        # the import system caches a finder per sys.path string, resolved once: a relative entry
        # ("../", as upstream's scripts add) would find the next script's `config` in this folder
        for entry in added:
            sys.path_importer_cache.pop(entry, None)
        folders = [script_dir] + added_paths
        for name in set(sys.modules) - saved_modules:
            if _under(getattr(sys.modules[name], "__file__", None), folders):
                del sys.modules[name]
    report.record_end(status, error, interrupted)
    if not report.models and status != 0 and not interrupted:  # a script that failed before it built a model: why
        causes = (zencfg_cause(error), script_folder_cause(error, path), flags_after_separator_cause(script_args))
        for cause in filter(None, causes):
            report.note(cause)  # the summary's last warnings, after the script's traceback
    # under torchrun every rank runs the script; one writes the report and prints the summary. The report
    # first: a summary that meets a closed output (`| head`) stops the command there, and must not lose it
    printer = launch_rank() == 0
    if printer and report_path and not _write_report(report, report_path):
        status = status or 1
    sys.stdout.flush()
    if printer:
        print(format_summary(report), file=out)
    return RunResult(status, report, error)


def main(argv=None):
    """Entry point of ``neuralop-mp run``; returns the exit status (2 on a usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        print(plain_text(__doc__))
        return 0 if argv else 2
    try:
        script, options, script_args = _split_args(argv)  # run_script checks the values
        report_path = options.pop("report", None)
        # SIGTERM (a scheduler's preemption, torchrun stopping its ranks) ends the script as Ctrl-C does
        with terminate_as_interrupt():
            return run_script(script, script_args, report_path=report_path, **options).exit_status
    except UsageError as exc:  # a bad command line or option value (its check names the flag)
        print(f"neuralop-mp run: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
