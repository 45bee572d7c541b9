"""The ``neuralop-mp`` command: ``train``, ``eval``, ``data`` and ``run``.

``neuralop-mp train CONFIG [--key value ...]`` loads a config (a built-in name or
``path.py[:ClassName]``), applies the dotted overrides, trains, prints a summary
table and writes a run folder (:mod:`neuralop_mp.run_folder`): ``results.json``,
``loss_curve.png``, the final model and the training state ``--resume`` continues
from. ``eval`` evaluates a saved model (:mod:`neuralop_mp.evaluate`). ``data`` and
``run`` hand their arguments unchanged to :func:`neuralop_mp.data.cli.main` and
:func:`neuralop_mp.runner.cli.main`. A command is a line in :data:`COMMANDS` and a
function in :data:`HANDLERS`. While one runs, but ``run`` (the user's script's process), each warning
shown is one ``[neuralop-mp] WARNING:`` line on standard error (:mod:`neuralop_mp.warning_lines`).
"""
import difflib
import os
import shlex
import signal
import sys
import traceback
from pathlib import Path

from .bench.cli import BENCHMARKS
from .option_check import load_checked, parse_typed_overrides
from .signals import Terminated, exit_status, interrupt_name, terminate_as_interrupt

PROG = "neuralop-mp"

COMMANDS = {
    "train": "train a model from a config: neuralop-mp train CONFIG [--key value ...] [--save_best] [--resume RUN_DIR]",
    "eval": "evaluate a saved model: neuralop-mp eval CHECKPOINT_OR_RUN_DIR [--res 16 32] [--precision MODE]",
    "data": "generate the built-in datasets offline: neuralop-mp data {darcy,navier_stokes,burgers} ...",
    "run": "run an upstream training script with the plugin: neuralop-mp run SCRIPT.py [--mp.* ...] -- [args]",
    # the benchmarks as `bench --help` lists them: one table
    "bench": f"run a benchmark: neuralop-mp bench {{{','.join(BENCHMARKS)}}} [--quick] [--out DIR]",
    "diagnose": "precision vs discretization error per layer: neuralop-mp diagnose CONFIG_OR_CHECKPOINT [...]",
}


def _usage():
    lines = [f"usage: {PROG} COMMAND [ARGS ...]", "", "Mixed-precision training for neuraloperator.", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += ["", f"Run `{PROG} COMMAND --help` for the options of a command."]
    return "\n".join(lines)


# how long a rank other than 0 waits before it exits on a stop of train (one every rank meets alike, which
# rank 0 alone says): torchrun stops every rank as soon as one exits with an error, and rank 0 must get to
# say it first
_QUIET_RANK_EXIT_DELAY_S = 1.0
# how long a rank other than 0 waits, after an error of train, for torchrun to stop it: rank 0 met the
# same error (a usage error: the same command line on every rank) and said it, and its exit makes
# torchrun stop this rank, which then says nothing. Long enough for a rank 0 that meets the error
# seconds later (it started later, on a loaded machine); a rank still running past it did not meet the
# error, which is this rank's own (a file missing on its node), then said
_RANK_ERROR_WAIT_S = 15.0


def _wait_to_be_stopped(seconds):
    """Sleep ``seconds``; True when a Ctrl-C or SIGTERM (torchrun stopping this rank, as it does
    every rank once one exits with an error) cut the wait short, False when it ran out."""
    import time

    try:
        time.sleep(seconds)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (main's terminate_as_interrupt)
        return True
    return False


def _quiet_rank_exit(code, rank0):
    """``code``, returned at once by rank 0 and after :data:`_QUIET_RANK_EXIT_DELAY_S` by another rank
    (a stop every rank meets alike: rank 0 says it), or as soon as torchrun stops that rank in the wait:
    the rank, which says nothing of the stop, says nothing of that either."""
    if not rank0 and code:
        _wait_to_be_stopped(_QUIET_RANK_EXIT_DELAY_S)
    return code


def _rank_error_exit(rank0, fail):
    """``fail()``: print an error, return the exit code. Rank 0 prints it at once. Another rank
    first waits up to :data:`_RANK_ERROR_WAIT_S`: stopped by torchrun in the wait (rank 0 met the
    error too, said it and exited: a usage error, the same command line on every rank), it says
    nothing; the wait run out (rank 0 goes on: the error is this rank's alone, a file missing on
    its node), it says the error, prefixed with its rank. Either way it returns the code: a usage
    error is said once, by rank 0, whatever the ranks' timing."""
    if rank0:
        return fail()
    import contextlib
    import io

    from .training.distributed import launch_rank

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = fail()
    if _wait_to_be_stopped(_RANK_ERROR_WAIT_S):
        return code
    for line in said.getvalue().splitlines():
        print(f"[rank {launch_rank()}] {line}", file=sys.stderr)
    return code


def _warn_threads(given, threads, rank0=True):
    """Say once, on rank 0, where a count typed now (``given``: ``--threads N``) is more than the
    CPUs the process may run on (:func:`~neuralop_mp.run_setup.threads_above_cpus`): it runs as
    given, slower. Not for "auto" (one per rank at least, under torchrun too) nor for a count read
    back from the run (a resume keeps it to go on bitwise)."""
    from .run_setup import threads_above_cpus
    from .warning_lines import write_warning_line

    if given is None or str(given).strip().lower() == "auto":
        return
    warning = threads_above_cpus(threads)
    if warning and rank0:
        write_warning_line(warning)  # as every warning of a command (warning_lines)


def _section_keys_set(spec, parsed, config, sections):
    """``{section: field names}`` of ``config``'s ``sections`` (``"opt"``, ``"patching"``) a user set
    for ``train`` (``config``, loaded from ``spec`` with the overrides ``parsed``): those of ``parsed``
    (with ``--resume``, the run's recorded ones too), and for a config file (its class runs no second
    time) every one whose value differs from the built-in config the class derives from (loaded once;
    from its section class's own default where it derives from none): a built-in config's own values
    are its defaults, not the user's."""
    from .configs import CONFIGS, load_config
    from .configs.loading import config_file
    from .configs.zencfg_compat import section_dict

    keys = {section: {key.partition(".")[2] for key in parsed if key.startswith(f"{section}.")}
            for section in sections}
    if config_file(spec) is None:
        return keys
    base = next((c for c in type(config).__mro__ if c in CONFIGS.values()), None)
    base_config = load_config(base, validate=False) if base is not None else None
    for section in sections:
        mine = getattr(config, section)
        default = section_dict(getattr(base_config, section) if base_config is not None else type(mine)())
        keys[section] |= {key for key, value in section_dict(mine).items() if default.get(key, object()) != value}
    return keys


def _warn_unread_keys(spec, parsed, config, rank0):
    """Say once, on rank 0, the keys the user set that the run does not read: a scheduler key
    ``opt.scheduler`` does not read, a patching key with patching off
    (:func:`~neuralop_mp.train_pipeline.unread_scheduler_keys_warning`,
    :func:`~neuralop_mp.train_pipeline.unread_patching_keys_warning`)."""
    from .train_pipeline import unread_patching_keys_warning, unread_scheduler_keys_warning
    from .warning_lines import write_warning_line

    given = _section_keys_set(spec, parsed, config, ("opt", "patching"))
    warnings = (unread_scheduler_keys_warning(config.opt, given["opt"]),
                unread_patching_keys_warning(config.patching, given["patching"]))
    for warning in filter(None, warnings):
        if rank0:
            write_warning_line(warning)


def _error(message, command=None):
    """Print ``message`` as the command's error; the exit code 2."""
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: error: {message}", file=sys.stderr)
    return 2


def train_help(spec="darcy", args=()):
    """``neuralop-mp train --help``: usage and every field of the config with its value.

    ``args``, the rest of the command line, selects section classes (``--model UNOConfig``):
    the fields listed are those of the classes the command would train with.
    """
    from .configs import available_configs, config_keys, load_config, parse_overrides, resolve_config
    from .configs.loading import select_sections
    from .configs.zencfg_compat import is_config, section_class, subclass_choices

    source = resolve_config(spec)  # once: a config file runs once
    # read as the option check reads a command line that may not parse ("-h" would be read as a value)
    parsed = parse_overrides([a for a in args if a not in ("-h", "--help")], lenient=True)
    _, rest = select_sections(source, parsed)
    try:  # the values given too: the help lists the fields as this command line sets them
        config = load_config(source, parsed, validate=False)
    except USAGE_ERRORS:  # a value that does not load (said by the command without --help): the defaults
        config = load_config(source, {k: v for k, v in parsed.items() if k not in rest}, validate=False)
    lines = [
        f"usage: {PROG} train [CONFIG] [--key value ...]",
        "",
        f"CONFIG: a built-in config ({', '.join(available_configs())}; default darcy) or",
        "        path/to/file.py[:ClassName] with a neuralop_mp.configs.TrainConfig subclass.",
        "Override any field with its dotted key, e.g.",
        "  --model.fno_block_precision mixed --opt.n_epochs 5 --data.test_resolutions \"[16,32]\"",
        "  --model TFNOConfig            (select another section class; starts from its defaults)",
        "Run options (not config keys):",
        "  --save_best         also keep the model with the lowest test L2 at the training resolution",
        "  --resume RUN_DIR    continue a run from the last epoch its folder saved",
        "  --threads N|auto    torch CPU threads (auto: the CPUs other processes leave idle; --resume",
        "                      keeps the count the run used)",
        "  --cpu-allocator keep|system",
        "                      on a CPU, keep freed memory in the process for the next step (keep, the",
        "                      default: no page faults on every step's tensors) or leave malloc as it is",
        "Field reference: docs/configs.md.",
        "",
        f"Fields of {type(config).__name__} (current values):",
    ]
    for key in config_keys(config):
        *path, name = key.split(".")
        parent = config
        for part in path:
            parent = getattr(parent, part)
        value = getattr(parent, name)
        if is_config(value):  # the classes the field admits: a config may narrow model to TFNOConfig
            # less the bases a config file subclasses: ModelConfig builds no model, DataConfig is Darcy
            # without its encoding keys (both still accepted when typed)
            choices = [c for c in subclass_choices(section_class(parent, name)) if c not in BASE_SECTIONS]
            lines.append(f"  --{key} {{{', '.join(choices)}}}  (current: {type(value).__name__})")
        else:
            lines.append(f"  --{key} {value!r}")
    return "\n".join(lines)


# Section classes --help leaves out of a section's choices: the bases of the others (docs/configs.md).
BASE_SECTIONS = ("ModelConfig", "DataConfig")
# Options of `train` that are not config keys: name -> metavar (None: a switch without value).
TRAIN_FLAGS = {"--resume": "RUN_DIR", "--save_best": None, "--threads": "N|auto", "--cpu-allocator": "keep|system"}
# Options of `eval` besides --key value config overrides.
EVAL_FLAGS = {"--res": "RES [RES ...]", "--precision": "{full,mixed,half}", "--config": "CONFIG",
              "--threads": "N|auto", "--json": "FILE"}


def _pop_flags(args, flags):
    """Split ``args`` into ``({flag: value}, rest)``; a flag may be written ``--flag=value``.

    ``--res`` takes every following value up to the next option.
    """
    found, rest, i = {}, [], 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in flags:
            rest.append(args[i])
            i += 1
            continue
        i += 1
        if flags[name] is None:  # a switch
            if eq:  # `--save_best=false` would otherwise turn the switch on
                raise ValueError(f"{name} is a switch and takes no value (got {args[i - 1]!r}): write {name} "
                                 "to turn it on, leave it out to keep it off.")
            found[name] = True
            continue
        if eq:
            values = [value]
        else:
            values = []
            while i < len(args) and (not args[i].startswith("--")) and (name == "--res" or not values):
                values.append(args[i])
                i += 1
        if not values:
            raise ValueError(f"Missing value for option {name} ({flags[name]}).")
        found[name] = values if name == "--res" else values[0]
    return found, rest


def _absolute_spec(spec):
    """``spec`` as recorded in ``command.json``: a built-in name as it is, a config file
    (``path.py[:ClassName]``) with its absolute path, so ``eval`` and ``--resume`` find it
    from any folder."""
    from .configs.loading import config_file

    file = config_file(spec)
    if file is None:
        return str(spec)
    path, class_part = file
    return os.path.abspath(path) + class_part


# config keys holding a path, relative to the folder the command runs in
PATH_KEYS = ("output_dir", "data.data_root")


def _recorded_overrides(overrides, config):
    """The overrides written to ``command.json``, from the parsed ``overrides`` (one value
    per key: a later one wins, so a resume's overrides replace the run's own), paths made
    absolute, as tokens that read back the same (:func:`~neuralop_mp.run_folder.override_tokens`).

    A relative ``data.data_root`` that the config file itself sets is recorded too, so
    ``eval`` and ``--resume`` read the same data from any folder.
    """
    from .run_folder import override_tokens
    from .vocabulary import none_if_null

    merged = dict(overrides)
    data_root = getattr(config.data, "data_root", None)
    if none_if_null(data_root) is not None and not Path(os.path.expanduser(data_root)).is_absolute():
        merged["data.data_root"] = data_root
    for key in PATH_KEYS:
        value = merged.get(key)
        if isinstance(value, str) and none_if_null(value) is None:
            continue
        if value is not None:
            merged[key] = os.path.abspath(os.path.expanduser(value))
    return override_tokens(merged.items())


# what our checks raise for a bad CONFIG, --key value or flag: a usage error (exit 2), not a traceback.
# Any exception that a user's config file raises is one too (:func:`_config_error`); any other is a
# bug of ours, raised with its traceback
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError)


# Python's own hint searches at most this many names (a larger namespace gets none)
_MAX_HINT_CANDIDATES = 750


def _did_you_mean(error):
    """``. Did you mean: 'x'?`` for a NameError or AttributeError with a close name (as Python's own
    traceback hints; our one-line message has no traceback to show it), else "". Never raises: a
    failing ``dir()`` or odd names give no hint."""
    try:
        name = getattr(error, "name", None)
        if not isinstance(name, str) or isinstance(error, ImportError):
            return ""
        if isinstance(error, NameError):
            tb = error.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is None:
                return ""
            import builtins

            candidates = [*tb.tb_frame.f_locals, *tb.tb_frame.f_globals, *dir(builtins)]
        elif isinstance(error, AttributeError) and getattr(error, "obj", None) is not None:
            candidates = dir(error.obj)
        else:
            return ""
        candidates = [c for c in candidates if isinstance(c, str)]
        if len(candidates) > _MAX_HINT_CANDIDATES:
            return ""
        match = difflib.get_close_matches(name, candidates, n=1)
        return f". Did you mean: {match[0]!r}?" if match else ""
    except Exception:  # a hint is never worth an error of its own
        return ""


def _config_error(error, command, spec=None):
    """:func:`_error` for an exception raised while the config ``spec`` was loaded.

    Where a frame of the user's config file (``spec``'s ``path.py``) is in the traceback, the
    file's code raised it or called what did (whatever its type: an AttributeError, a NameError,
    a SyntaxError): a usage error naming the innermost such line, which the traceback would
    otherwise have given (and first the line of a module beside the file that it called, where
    that raised). Otherwise one of :data:`USAGE_ERRORS` is our checks' own message, and any
    other error a bug of ours, raised again with its traceback.
    """
    from .configs.loading import config_file, raised_beside, raised_in_file, syntax_error_of

    found = config_file(spec) if spec is not None else None
    user_file = found[0] if found else None
    frame = raised_in_file(error, user_file) if user_file else None
    if frame is None and not isinstance(error, USAGE_ERRORS):
        raise error
    # our checks' messages as they are; the user's Python error as the last line of its traceback
    # gives it ("KeyError: 'k'"), with the "Did you mean" hint Python 3.11 adds only to a traceback
    if isinstance(error, USAGE_ERRORS):
        message = str(error)
    elif isinstance(error, SyntaxError):  # its traceback's last line would be its caret
        message = f"SyntaxError: {error}"
    else:
        message = list(traceback.TracebackException.from_exception(error).format_exception_only())[-1].strip()
        if "Did you mean" not in message:
            message += _did_you_mean(error)
    if frame is not None and not syntax_error_of(error, user_file):  # that one's message names its line
        helper = raised_beside(error, user_file)  # a module of the user's that the file called
        where = f"{helper.filename}:{helper.lineno}, from " if helper else ""
        message += f" (raised at {where}{frame.filename}:{frame.lineno})"
    return _error(message, command)


def train_command(argv):
    """``neuralop-mp train``; returns the exit code."""
    from .configs import load_config
    from .cpu_allocator import CPU_ALLOCATOR_MODES, DEFAULT_CPU_ALLOCATOR
    from .run_folder import read_command
    from .run_setup import RunSetupError, train_threads
    from .training.distributed import launch_rank
    from .vocabulary import check_choice

    # under torchrun every rank meets the same error, stop or Ctrl-C: rank 0 alone says it (torchrun's
    # rank: the process group may be gone); every rank returns the exit code
    rank0 = launch_rank() == 0
    args = list(argv)
    spec = None
    if args and not args[0].startswith("-"):
        spec = args.pop(0)
    try:
        if any(a in ("-h", "--help") for a in args):
            print(train_help(spec or "darcy", args))
            return 0
        flags, overrides = _pop_flags(args, TRAIN_FLAGS)
        # what a --resume gives now, which its run records only once it saves an epoch: the command that
        # continues an interrupted resume repeats it
        given_now = [*overrides, *(token for flag, value in flags.items() if flag != "--resume"
                                   for token in ([flag] if value is True else [flag, str(value)]))]
        resume = flags.get("--resume")
        save_best = bool(flags.get("--save_best"))
        recorded_threads = None
        if resume is not None:
            recorded = read_command(resume)
            if recorded is None:
                from .training.checkpointing import run_folder_of

                run_dir = run_folder_of(resume)  # RUN/checkpoint given for RUN: name the run folder
                hint = (f" It is the checkpoint folder of the run {run_dir}: give --resume {shlex.quote(str(run_dir))}."
                        if run_dir is not None else "")
                raise RunSetupError(f"Nothing to resume in {resume}: it has no command.json (it is not a "
                                    f"run folder of `{PROG} train`, or the run never started).{hint}")
            if spec is not None and recorded["config"] not in (spec, _absolute_spec(spec)):
                raise ValueError(f"--resume {resume} continues a run of config {recorded['config']!r}; "
                                 f"leave out the config {spec!r}.")
            spec = recorded["config"]
            recorded_flags = recorded.get("flags", {})
            save_best = save_best or bool(recorded_flags.get("save_best"))
            # the run's own --cpu-allocator and thread count (train_threads), unless given again now
            if "--cpu-allocator" not in flags and recorded_flags.get("cpu_allocator") is not None:
                flags["--cpu-allocator"] = str(recorded_flags["cpu_allocator"])
            recorded_threads = recorded_flags.get("threads")
            given = overrides
            # absolute, as command.json records it: results.json names the run's files from any folder
            overrides = [*recorded["overrides"], *overrides, "--output_dir", os.path.abspath(os.path.expanduser(resume))]
        spec = spec or "darcy"
        def build(source):  # the overrides parsed once: for the config, and for command.json below
            parsed = parse_typed_overrides(overrides, None if resume is None else given)
            if resume is None:
                return load_config(source, parsed), parsed
            # before any data or model: the checkpoint holds the saved architecture, trained on the saved data
            saved = load_config(source, recorded["overrides"])
            _check_resume_folder(resume, saved, given)  # first: a resume replaces the run's own results
            _check_resume_sections(resume, source, saved, given)  # the run's keys may not exist in another class
            _check_resume_optimizer_kind(resume, saved, given)  # before the run's settings meet another kind
            config = load_config(source, parsed)
            _check_resume_model(resume, config, saved, given)
            _check_resume_optimizer_class(resume, config, saved)
            _check_resume_data(resume, config, saved)
            return config, parsed

        # the options typed now are checked (with the run's recorded selections): a key the run
        # recorded is no typo of the user's, whatever else fails
        config, parsed = load_checked(build, overrides if resume is None else given, spec, TRAIN_FLAGS,
                                      base=() if resume is None else recorded["overrides"])
        threads, threads_reason = train_threads(flags.get("--threads"), recorded_threads, resume is not None)
        _warn_threads(flags.get("--threads"), threads, rank0)
        cpu_allocator = check_choice("--cpu-allocator", flags.get("--cpu-allocator", DEFAULT_CPU_ALLOCATOR),
                                     CPU_ALLOCATOR_MODES)
        _warn_unread_keys(spec, parsed, config, rank0)
        # with --resume: the run's overrides and the ones given now, which command.json then records
        command = (_absolute_spec(spec), _recorded_overrides(parsed, config))
    except Exception as error:  # _config_error raises again what is neither the user's nor a usage error
        return _rank_error_exit(rank0, lambda error=error: _config_error(error, "train", spec))

    from .run_folder import RunFolderRemoved, check_run_folder_present, give_back_claimed
    from .train_pipeline import output_dir_for, run_training
    from .train_report import format_summary
    from .training.checkpointing import CheckpointError, CheckpointWriteError
    from .training.guarded_step import TrainingStopped

    # the run folder, known here for the messages of an interrupted run: a default one is claimed now (by
    # the process that writes, torchrun's rank 0), so they name the one this run took; given back when the
    # run is refused or stopped before it saved any of itself (release_run_folder)
    claimed = resume is None and not config.output_dir and rank0
    made = []  # the claimed folder, then the folders above it the claim created (runs/)
    try:
        out = output_dir_for(config, claim=claimed, created=made)
    except RunSetupError as error:  # the folder of the default one is not writable
        return _rank_error_exit(rank0, lambda error=error: _error(str(error), "train"))
    try:
        result = run_training(config, progress=True, output_dir=out, resume=resume is not None,
                              save_best=save_best, threads=threads, command=command, cpu_allocator=cpu_allocator,
                              threads_reason=threads_reason,
                              # the count used, not "auto": a resume goes on with it whatever the load then
                              command_flags={"threads": str(threads), "cpu_allocator": cpu_allocator})
    except (RunSetupError, CheckpointError) as error:  # a CheckpointError names the file (--resume's)
        return _rank_error_exit(rank0, lambda error=error: _error(str(error), "train"))
    except CheckpointWriteError as error:  # a full disk while saving a file of the run: the previous one is kept
        if rank0:
            print(file=sys.stderr)  # after the progress bar's line, as for Ctrl-C
            # a removed run folder took its checkpoint with it: its message says there is nothing to resume
            # (also where the removal met a save halfway, which then failed on a missing file)
            # (not where the run gave back the folder it had made, nothing of it saved: run_training)
            if not isinstance(error, RunFolderRemoved) and not getattr(error, "run_folder_released", False):
                try:
                    check_run_folder_present(out)
                except RunFolderRemoved as removed:
                    error = removed
            print(f"{PROG} train: error: {error}" if isinstance(error, RunFolderRemoved) else
                  _interrupted_message(out, given_now if resume is not None else (),
                                       stopped=f"error: {error}; stopped"), file=sys.stderr)
        return _quiet_rank_exit(1, rank0)
    except TrainingStopped as error:  # the trainer's own stop (overflow, NaN weights): why, and what is kept
        if rank0:
            print(file=sys.stderr)
            print(f"{PROG} train: {error}", file=sys.stderr)
            # the same settings would stop the same way: what is kept, and to go on with a change
            print(_interrupted_message(out, given_now if resume is not None else (), stopped="stopped",
                                       change=" with one of the changes above"), file=sys.stderr)
        return _quiet_rank_exit(1, rank0)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (main): what is kept and how to go on, no traceback
        if rank0:
            print(file=sys.stderr)
            # Ctrl-C's line keeps its short word; SIGTERM's says the signal (signals.interrupt_name)
            stopped = interrupt_name(interrupt) if isinstance(interrupt, Terminated) else "interrupted"
            print(_interrupted_message(out, given_now if resume is not None else (), stopped=stopped), file=sys.stderr)
        return _quiet_rank_exit(exit_status(interrupt), rank0)
    except BrokenPipeError:  # stdout's reader gone (`| head`): the run stops there, what is kept said on stderr
        if not _stdout_closed():  # another pipe (a data loader's): not the reader's doing
            raise
        said = _interrupted_message(out, given_now if resume is not None else (), stopped=f"{_OUTPUT_CLOSED}: stopped")
        return _quiet_rank_exit(_output_closed(said if rank0 else None), rank0)
    except RuntimeError as error:  # a collective of the ranks failed (a peer rank's process is gone): one line
        from .training.distributed import collective_failure

        if not collective_failure(error):  # any other (a model's bug) keeps its traceback
            raise
        # a default folder's name rank 0 alone knows: it took the first free one of the second it claimed it
        known = rank0 or resume is not None or bool(config.output_dir)
        return _collective_failure_exit(error, out, given_now if resume is not None else (), folder_known=known)
    finally:
        if claimed:  # the folder, then the empty folders above it made for it
            give_back_claimed(made)
    if rank0:  # under torchrun every rank has the result; rank 0 alone prints it
        try:
            print()
            print(format_summary(result))
            sys.stdout.flush()  # a reader gone is met here, where the run's folder can be named
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            folder = Path(result.get("output_dir") or out)
            return _output_closed(f"{PROG} train: {_OUTPUT_CLOSED} before its summary: the run finished, and "
                                  f"{folder / 'results.json'} holds its results.")
    return 0


# model keys that leave the weights as they are, which a resume may change (docs/configs.md, --resume):
# the precision and activation recompute of the same weights, and settings without weights of their
# own (dropout, domain padding, where the activation sits, how a factorized weight is multiplied)
def _non_architecture_keys():
    from .precision_policy import PrecisionPolicy

    return {*PrecisionPolicy.keys(), "recompute", "recompute_chunk_points", "channel_mlp_dropout", "domain_padding",
            "preactivation", "implementation"}


def _check_resume_folder(resume, saved, given):
    """Refuse a resume whose ``given`` overrides name another run folder than ``resume``: an
    ``--output_dir`` elsewhere, or a ``--name`` other than the run's (recorded config ``saved``),
    which names the folder of a run started without ``--output_dir``. A resume continues the run in
    its own folder, replacing its final model and results: the folder given would be ignored.

    Raises
    ------
    ValueError
        One line naming the option, the run's folder and how to continue a copy instead.
    """
    from .configs import parse_overrides
    from .vocabulary import none_if_null

    keys = parse_overrides(given, lenient=True)
    here = os.path.realpath(os.path.expanduser(resume))
    value = none_if_null(keys.get("output_dir"))
    # the folder given, where cp -r makes it the copy (into one that exists, cp -r puts the run in a subfolder)
    new = shlex.quote(str(value)) if value is not None and not os.path.exists(os.path.expanduser(str(value))) \
        else "NEW_DIR"
    copy = f"to continue a copy, cp -r {shlex.quote(str(resume))} {new}, then {PROG} train --resume {new}"
    if "output_dir" in keys:
        if value is None or os.path.realpath(os.path.expanduser(str(value))) != here:
            raise ValueError(f"--output_dir {keys['output_dir']!r} cannot be given with --resume {resume}: a resume "
                             f"trains on in the run's own folder, replacing its final model and results; leave out "
                             f"--output_dir, or, {copy}.")
    if "name" in keys and str(keys["name"]) != str(saved.name):
        raise ValueError(f"--name {keys['name']!r} cannot be given with --resume {resume} (the run's name: "
                         f"{saved.name!r}): a resume trains on in the run's own folder under its own name; leave out "
                         f"--name, or, {copy}.")


def _check_resume_optimizer_kind(resume, saved, given):
    """Refuse a resume whose ``given`` overrides name another ``opt.optimizer`` than the run's
    recorded config ``saved``, before that config is built: the checkpoint holds the state of the
    run's optimizer, and the run's recorded TensorGRaD settings would otherwise be refused first
    under the new kind, naming keys the user never typed.

    Raises
    ------
    ValueError
        Naming the kind given and the run's, and what to do.
    """
    from .configs import parse_overrides
    from .training.resume import given_and_saved

    kind = parse_overrides(given, lenient=True).get("opt.optimizer")
    run_kind = getattr(saved.opt, "optimizer", None)
    # ``kind`` is as typed, not yet checked: "AdamW" for an adamw run is the same kind, refused next by
    # the config's check with its "Did you mean 'adamw'?", not here as another optimizer
    if kind is None or str(kind).strip().lower() == str(run_kind).strip().lower():
        return
    changed = given_and_saved({"opt.optimizer": (kind, run_kind)})
    raise ValueError(f"Cannot resume {resume} with another opt.optimizer ({changed}): its checkpoint holds the "
                     f"state of {run_kind!r}. Resume without --opt.optimizer, or start a new run.")


def _check_resume_sections(resume, source, saved, given):
    """Refuse a resume whose ``given`` overrides select another section class (``--model
    FNOConfig``) than the run's recorded config ``saved``: the run's recorded keys of its own
    class (``--model.uno_out_channels``) would not exist in the other, and its checkpoint holds
    the weights of its own (``source``: the config class, resolved).

    Raises
    ------
    ValueError
        One line naming the section, the class given and the run's.
    """
    from .configs import parse_overrides
    from .configs.loading import select_sections
    from .configs.zencfg_compat import is_config
    from .training.resume import given_and_saved

    sections = {key: value for key, value in parse_overrides(given, lenient=True).items()
                if "." not in key and is_config(getattr(saved, key, None))}
    if not sections:
        return
    selected, _ = select_sections(source, sections)  # an unknown class name: its own one-line error
    for key in sections:
        new, old = type(getattr(selected, key)).__name__, type(getattr(saved, key)).__name__
        if new != old:
            changed = given_and_saved({key: (new, old)})
            raise ValueError(f"Cannot resume {resume} with another --{key} class ({changed}): "
                             f"cannot change --{key} at resume, the run's recorded keys and checkpoint are those of "
                             f"{old}. Resume without --{key} {new}, or start a new run.")


def _check_resume_data(resume, config, saved):
    """Refuse a resume whose data keys change what the run was trained on or how its data are
    encoded: the rule of ``eval``'s refusal (:func:`~neuralop_mp.evaluate.changed_trained_data`).
    The resume would fit other normalizers, replace the run's ``data_processor.pt`` and go on
    training on other data, with a history whose metric keys (and ``--save_best``'s) change.

    Raises
    ------
    ValueError
        Naming each key with the value given and the value the run recorded.
    """
    from .evaluate import changed_trained_data
    from .training.resume import given_and_saved

    changed = changed_trained_data(saved.data, config.data)
    if changed:
        raise ValueError(
            f"Cannot resume {resume} with other training data than it was trained on ({given_and_saved(changed)}): "
            "its checkpoint and data_processor.pt hold a model and normalizers of the saved data. Resume without "
            "these overrides, or start a new run.")


def _check_resume_model(resume, config, saved, given):
    """Refuse a resume whose ``--model.*`` or ``--model CLASS`` overrides (of ``given``, the ones
    given now; another class than the run's is refused before, by :func:`_check_resume_sections`)
    change the architecture of the run's recorded config ``saved``: the
    checkpoint holds that architecture's weights, and would fail to load, after the data,
    listing the tensors instead of the override at fault. Precision and recompute keys may
    change (:func:`_non_architecture_keys`).

    Raises
    ------
    ValueError
        Naming each key with the value given and the value saved.
    """
    from .configs import config_keys, parse_overrides
    from .training.resume import given_and_saved

    keys = parse_overrides(given, lenient=True)
    changed = {}
    free = _non_architecture_keys()
    # a section class given again starts from its defaults: every key may differ from the run's
    compared = config_keys(config) if "model" in keys else keys
    for key in compared:
        section, _, name = key.partition(".")
        if section != "model" or not name or name in free:
            continue
        new, old = getattr(config.model, name, None), getattr(saved.model, name, None)
        if new != old:
            changed[key] = (new, old)
    if changed:
        raise ValueError(
            f"Cannot resume {resume} with another model than it was saved with ({given_and_saved(changed)}): the "
            "checkpoint holds "
            "the saved model's weights. Resume without these overrides (the precision keys may change), "
            "or start a new run.")
    _check_resume_rank(resume, config)


def _check_resume_optimizer_class(resume, config, saved):
    """Refuse a resume whose ``model.spectral_weight_dtype`` changes the class ``opt.optimizer``
    "adamw" builds (:func:`neuralop_mp.optim.factory.adamw_class`, the one rule: the message names
    the two classes it gives, not the rule). The checkpoint's optimizer state is the saved class's,
    which the resume would refuse only after the data load, blaming the optimizer. The TensorGRaD
    kinds build TensorGRaD either way: the dtype may change with them.

    Raises
    ------
    ValueError
        Naming the key with the value given and the value saved, and the optimizer switch.
    """
    import torch

    from .optim.factory import adamw_class
    from .training.resume import given_and_saved
    from .vocabulary import normalize_spectral_weight_dtype

    def built(run):  # as a message names it; None for another kind
        # both configs are checked (validate_opt): opt.optimizer is spelled as list_optimizers() spells it
        if getattr(run.opt, "optimizer", "adamw") != "adamw":
            return None
        sixteen_bit = normalize_spectral_weight_dtype(getattr(run.model, "spectral_weight_dtype", None)) == "complex32"
        cls = adamw_class(sixteen_bit)
        return "torch's AdamW" if cls is torch.optim.AdamW else cls.__name__

    new, old = built(config), built(saved)
    if new is None or old is None or new == old:
        return
    key = "model.spectral_weight_dtype"
    changed = given_and_saved({key: (getattr(config.model, "spectral_weight_dtype", None),
                                     getattr(saved.model, "spectral_weight_dtype", None))})
    raise ValueError(
        f"Cannot resume {resume} with another {key} ({changed}): with opt.optimizer 'adamw' it switches the "
        f"optimizer from {old} to {new}, and the checkpoint holds the state of {old}. Resume without this "
        "override, or start a new run (with opt.optimizer tensorgrad, galore or sparse the dtype may change at "
        "a resume).")


def _check_resume_rank(resume, config):
    """Refuse a resume whose factorized ``model.rank`` is the number the run was saved with but not
    its kind: a float is a fraction of the full rank, an int the rank itself (``1.0`` and ``1`` are
    different models). A run recorded ``--model.rank 1`` when the key read every number as a
    float; read now as the int 1, its weights would not fit, failing after the data load.

    The kind is read from the constructor arguments the run folder's model files record
    (``model_metadata.pkl``, else ``best_model_metadata.pkl``): ``checkpoint/`` holds weights
    only, so a run stopped before its end without ``--save_best`` is not checked here.

    Raises
    ------
    ValueError
        Naming the rank saved and the one given, and the override that resumes the run.
    """
    from .vocabulary import none_if_null

    rank = getattr(config.model, "rank", None)
    if none_if_null(getattr(config.model, "factorization", None)) is None or isinstance(rank, (bool, type(None))):
        return
    saved = _saved_model_arguments(resume).get("rank")
    if isinstance(saved, (int, float)) and not isinstance(saved, bool) and saved == rank and \
            type(saved) is not type(rank):
        def kind(value):
            return "a fraction of the full rank" if isinstance(value, float) else "the rank itself"

        raise ValueError(
            f"Cannot resume {resume}: it was saved with model.rank={saved!r} ({kind(saved)}), and model.rank now "
            f"reads {rank!r} ({kind(rank)}), a model whose weights do not fit the checkpoint's (a run recorded "
            f"when every model.rank was read as a float). Resume with --model.rank {saved!r}.")


def _saved_model_arguments(run_dir):
    """The constructor arguments recorded beside the run folder's final model, else its best
    model (``{}`` where there is neither, or none that reads: the load that needs it says why)."""
    from .models.checkpoints import read_checkpoint_metadata
    from .run_folder import BEST_MODEL, FINAL_MODEL

    for name in (FINAL_MODEL, BEST_MODEL):
        try:
            arguments = read_checkpoint_metadata(run_dir, name)
        except Exception:  # missing or damaged (a pickle fails in many ways): not this check's to report
            continue
        if isinstance(arguments, dict):
            return arguments
    return {}


def _interrupted_message(out, again=(), stopped="interrupted", change=""):
    """One line for a run stopped by Ctrl-C (or, ``stopped`` saying why, by a checkpoint that could
    not be written or by the trainer's own stop): the last epoch its checkpoint holds (read from the
    checkpoint's manifest alone) and the command that continues it (with ``again``, the options an
    interrupted ``--resume`` was given), or that none was saved. ``change`` follows the advice to run
    again or resume, where the same settings would stop the same way."""
    from .run_folder import saved_state

    out = Path(out).absolute()
    checkpoint, epoch = saved_state(out)
    if epoch is None:
        return (f"{PROG} train: {stopped} before any epoch was saved in {out}: nothing to resume; run the command "
                f"again{change}.")
    return (f"{PROG} train: {stopped}; {checkpoint} holds epoch {epoch}, the last saved. "
            f"Continue{change} with: {_train_launch()} --resume {shlex.join([str(out), *again])}")


def _collective_failure_exit(error, out, again=(), folder_known=True):
    """Say, in one line, that the run stopped because a collective of the data-parallel ranks failed
    (``error``, :func:`~neuralop_mp.training.distributed.collective_failure`: another rank's process
    stopped), what its run folder ``out`` keeps and the command that continues it
    (:func:`_interrupted_message`); where ``out`` is a default folder's name that only rank 0 knows
    for sure (not ``folder_known``: it claimed the first free one), the folder it is one of. The
    exit code 1.

    Said by every rank that meets it, at once: the rank that stopped may be rank 0 (the others'
    lines are prefixed with their rank; on 2 ranks one line). SIGTERM is ignored while it is said:
    torchrun sends it to every rank it sees still running once it sees the stopped one, which would
    otherwise cut the line short or add a "terminated" one. Under :func:`main` it stays ignored until
    main returns (and restores the handler it replaced): the command is over. Called otherwise
    (``train_command`` from Python), the previous handler is back as this returns.
    """
    import threading

    from .signals import _raise_terminated
    from .training.distributed import collective_failure_text, launch_rank

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stopped = (f"error: the data-parallel ranks could not communicate ({collective_failure_text(error)}): "
                   "another rank's process stopped (its own output, or torchrun's report, says why); stopped")
        if folder_known:
            line = _interrupted_message(out, again, stopped=stopped)
        else:
            line = (f"{PROG} train: {stopped}. Continue with: {_train_launch()} --resume RUN_DIR, RUN_DIR the folder "
                    f"rank 0 created for the run ({Path(out).absolute()}, or the same name with -2, -3, ...)")
        rank = launch_rank()
        print(file=sys.stderr)  # after the progress bar's line, as for Ctrl-C
        print(line if rank == 0 else f"[rank {rank}] {line}", file=sys.stderr)
    finally:
        # main's own handler (signals.terminate_as_interrupt) main restores as it returns; any other is
        # restored here, but None (a handler set outside Python, which Python cannot put back)
        if previous is not None and previous is not _raise_terminated:
            signal.signal(signal.SIGTERM, previous)
    return 1


def _train_launch(environ=None):
    """How the command that continues a run starts ``train``: as this process was launched
    (``WORLD_SIZE`` / ``LOCAL_WORLD_SIZE``: the same number of ranks continues each rank's RNG
    stream; another continues differently, and the resume warns), by
    :func:`~neuralop_mp.training.resume.train_launch`."""
    from .training.resume import train_launch

    environ = os.environ if environ is None else environ
    try:
        world, local = int(environ.get("WORLD_SIZE", "1")), int(environ.get("LOCAL_WORLD_SIZE", "0"))
    except ValueError:  # not torchrun's: no launch of its to repeat
        return f"{PROG} train"
    return train_launch(world, local)


def eval_help():
    return "\n".join([
        f"usage: {PROG} eval CHECKPOINT_OR_RUN_DIR [--res RES ...] [--precision {{full,mixed,half}}]",
        "                   [--config CONFIG] [--threads N|auto] [--json FILE] [--key value ...]",
        "",
        "Evaluate a saved model (a run folder of `neuralop-mp train`, or a NAME_state_dict.pt written by",
        "save_checkpoint, upstream's FNO included) and print the test errors as `train` does.",
        "",
        "  --res RES ...     test resolutions (default: the run's, else the config's)",
        "  --precision MODE  evaluate in this precision (default: the one the run finished in)",
        "  --config CONFIG   take data and settings from this config instead of the run's own",
        "                    (default for a checkpoint without a run folder: darcy)",
        "  --threads N|auto  torch CPU threads (default: the run's, else auto)",
        "  --json FILE       also write the result as JSON (its folder must exist)",
        "  --key value       a config override of the data and evaluation settings, e.g.",
        "                    --data.data_root DIR --device cpu; not --model.* nor --model CLASS: the model",
        "                    and its settings come from the checkpoint (--precision chooses the precision)",
    ])


def _refuse_model_overrides(overrides):
    """``eval``'s ``--model.*`` / ``--model CLASS`` overrides are refused, naming them: the model is
    rebuilt from the checkpoint, so they would change nothing while the command looked as if
    they had (the run's own recorded model keys still build the config, silently)."""
    given = [arg.partition("=")[0] for arg in overrides
             if arg.partition("=")[0] == "--model" or arg.startswith("--model.")]
    if given:
        raise ValueError(f"{', '.join(dict.fromkeys(given))} cannot be given to eval: the model and its settings "
                         "come from the checkpoint; --precision {full,mixed,half} chooses the precision.")


def _run_threads(folder, source):
    """The thread count the run in ``folder`` recorded, for ``eval`` to run as it did
    (:func:`~neuralop_mp.run_setup.train_threads`, as a resume): the one its ``command.json``
    records (``source.flags``, :func:`~neuralop_mp.evaluate.config_source`), else, for a run
    recorded before the count was (none, or "auto"), the ``threads`` of its ``results.json``."""
    from .run_folder import read_results
    from .run_setup import parse_threads

    recorded = (source.flags or {}).get("threads")
    if recorded is not None and parse_threads(recorded) is not None:  # a count, not "auto"
        return recorded
    return (read_results(folder) or {}).get("threads")


def eval_command(argv):
    """``neuralop-mp eval``; returns the exit code."""
    import json

    from .evaluate import config_source, eval_config
    from .run_folder import find_checkpoint
    from .run_setup import RunSetupError, check_output_file, train_threads
    from .training.checkpointing import CheckpointError, CheckpointWriteError

    args = list(argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print(eval_help())
        return 0 if args else 2
    if args[0].startswith("--"):  # not a path: the options would be read from the second token on
        option = args[0].partition("=")[0]
        return _error(f"the checkpoint or run folder to evaluate is missing (got the option {option} first); "
                      f"usage: {PROG} eval CHECKPOINT_OR_RUN_DIR [options].", "eval")
    path = args.pop(0)
    spec = None  # the config loaded, once known: a config error raised in the user's file names its line
    try:
        flags, overrides = _pop_flags(args, EVAL_FLAGS)
        _refuse_model_overrides(overrides)
        if flags.get("--json"):
            check_output_file(flags["--json"], "--json", "eval.json")
        spec = flags.get("--config")
        # found once (a run's final model: checked current), and evaluated as found
        found = find_checkpoint(path)
        folder = found.folder
        # the run's own overrides come first, section selections included; command.json is read
        # here only, for the config, the option check and the evaluation
        source = config_source(folder, flags.get("--config"))
        spec = source.spec
        # built once, and evaluated with; the option check runs only if the build fails
        config = load_checked(lambda resolved: eval_config(source._replace(spec=resolved), overrides,
                                                            flags.get("--res")),
                               overrides, source.spec, EVAL_FLAGS, base=source.overrides)
        # a resume's rule: --threads given now, else the run's count (read only then), else auto
        given = flags.get("--threads")
        threads, _ = train_threads(given, _run_threads(folder, source) if given is None else None, resume=True)
        _warn_threads(given, threads)
    except Exception as error:  # _config_error raises again what is neither the user's nor a usage error
        return _config_error(error, "eval", spec)

    import torch

    from .evaluate import evaluate_with_config, given_encoding
    from .train_report import format_eval_summary, to_jsonable

    torch.set_num_threads(threads)
    try:
        result = evaluate_with_config(found, source, config, precision=flags.get("--precision"), progress=True,
                                      encoding_given=given_encoding(overrides))
    except (RunSetupError, CheckpointError, ValueError, FileNotFoundError) as error:
        return _error(str(error), "eval")
    except CheckpointWriteError as error:  # a test set generated on a full disk: its temporary removed
        print(f"{PROG} eval: error: {error}", file=sys.stderr)
        return 1
    result["threads"] = threads
    if flags.get("--json"):  # before the summary: a closed output (`| head`) stops the command at its print
        # an inf/NaN metric as a string, as results.json writes it: JSON has no Infinity or NaN
        Path(flags["--json"]).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print()
    print(format_eval_summary(result))
    return 0


def _data_command(argv):
    from .data.cli import main as data_main

    return data_main(argv)


def _run_command(argv):
    from .runner.cli import main as run_main

    return run_main(argv)


def _bench_command(argv):
    from .bench.cli import main as bench_main

    return bench_main(argv)


def _diagnose_command(argv):
    from .diagnose.cli import main as diagnose_main

    return diagnose_main(argv)


# command -> function(argv) -> exit code; the help lines are in COMMANDS
HANDLERS = {"train": train_command, "eval": eval_command, "data": _data_command, "run": _run_command,
            "bench": _bench_command, "diagnose": _diagnose_command}


def main(argv=None):
    """Entry point of the ``neuralop-mp`` console script; returns the exit code.

    SIGTERM (a scheduler's preemption, ``kill``, ``timeout``, torchrun stopping its ranks) ends a
    command as Ctrl-C does (:mod:`neuralop_mp.signals`): its own handler says what is kept, exit
    143. An interrupt no command handles (while a command imports, after a summary) is one line,
    exit 130 (143), not a traceback.
    """
    with terminate_as_interrupt():
        try:
            return _dispatch(argv)
        except KeyboardInterrupt as interrupt:
            print(f"\n{PROG}: {interrupt_name(interrupt)}", file=sys.stderr)
            return exit_status(interrupt)


def _dispatch(argv):
    """:func:`main`'s work: the command of ``argv`` run, its exit code returned."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":  # the process is the user's upstream script's: its warnings as Python shows them
        return HANDLERS[command](rest)
    if command in HANDLERS:
        from .warning_lines import warnings_as_lines

        with warnings_as_lines():  # every warning shown while our command runs: one line on stderr
            return HANDLERS[command](rest)
    close = difflib.get_close_matches(command, list(COMMANDS), n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    return _error(f"unknown command {command!r}; choose from: {', '.join(COMMANDS)}.{hint}")


def console_main():
    """The ``neuralop-mp`` console script (and ``python -m neuralop_mp.cli``, torchrun's form):
    :func:`main`, then SIGINT and SIGTERM ignored while the interpreter shuts down: the command's
    work and exit status are settled, and a late signal would turn a finished run into a
    traceback or a failure status (130 / 143) without a word.

    A command whose output's reader closed early (``neuralop-mp run s.py | head``) stops at the
    print that meets it, with the status of a process SIGPIPE stopped (141), as the shell's own tools do, and without a traceback; one line on
    standard error says it stopped (``train`` says what its run folder keeps and how to continue,
    :func:`_interrupted_message`). What a command was asked to write (``run``'s ``--mp.report``,
    ``eval``'s ``--json``, ``diagnose``'s results) is written before its summary is printed.
    A help text read in part (``neuralop-mp train --help | head -1``) is no lost work: nothing is
    said and the status is 0, for every command, as argparse's ``--help`` (``data``, ``diagnose``)
    drops a write that fails.
    """
    try:
        status = main()
        if sys.stdout is not None:  # what is left in its buffer meets a closed reader here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe (a data loader's, a launcher's): not the reader's doing
            raise
        if _asks_for_help(sys.argv[1:]):  # a help read in part (`| head -1`) loses no work: quiet, exit 0,
            _reader_gone()                # as argparse's --help of data and diagnose
            status = 0
        else:
            command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in HANDLERS else None
            where = f"{PROG} {command}" if command else PROG
            status = _output_closed(f"{where}: {_OUTPUT_CLOSED}: stopped there, and what it had left to print is lost.")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return status


def _asks_for_help(argv):
    """Whether the command line ``argv`` (without the program) asks for a help text, as the
    commands read it: ``--help``, ``-h`` or ``help`` as the command; ``-h`` or ``--help`` as
    ``run``'s first argument (what follows its script is the script's, whose output is a run's);
    ``-h`` or ``--help`` anywhere in another command's arguments."""
    if argv and argv[0] in ("-h", "--help", "help"):
        return True
    own = argv[1:2] if argv[:1] == ["run"] else argv[1:]
    return any(arg in ("-h", "--help") for arg in own)


# what a command says, on standard error, when its standard output's reader is gone
_OUTPUT_CLOSED = "its output was closed (the program reading it exited)"


def _stdout_closed():
    """Whether standard output is a pipe (or socket) whose reader has closed it (``poll``'s POLLERR;
    False where that cannot be asked)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file behind sys.stdout
        return False


def _output_closed(message):
    """The end of a command whose standard output's reader is gone: ``message`` (None: nothing)
    said on standard error, the stream left to say it on, then :func:`_reader_gone`'s status.
    A standard error closed too is pointed at the null device: the message is lost, quietly."""
    if message is None or sys.stderr is None:  # print(file=None) would write to stdout
        return _reader_gone()
    try:
        print(message, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):  # closed as well: the interpreter's last flush must not fail on it
        _to_null(sys.stderr)
    return _reader_gone()


def _to_null(stream):
    """Point ``stream``'s file descriptor at the null device (nothing where it has none)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _reader_gone():
    """Point standard output at the null device, so that the interpreter's last flush of what the
    command printed writes nowhere instead of failing again; the exit status of SIGPIPE."""
    _to_null(sys.stdout)
    return 128 + getattr(signal, "SIGPIPE", 13)


if __name__ == "__main__":
    sys.exit(console_main())
