"""The ``neuralop-mp`` command: ``train``, ``data`` and ``run``.

``neuralop-mp train CONFIG [--key value ...]`` loads a config (a built-in name or
``path.py[:ClassName]``), applies the dotted overrides, trains, prints a summary
table and writes ``results.json`` and ``loss_curve.png``. ``data`` and ``run``
hand their arguments unchanged to :func:`neuralop_mp.data.cli.main` and
:func:`neuralop_mp.runner.cli.main`.
"""
import sys
import warnings

PROG = "neuralop-mp"

COMMANDS = {
    "train": "train a model from a config: neuralop-mp train CONFIG [--key value ...]",
    "data": "generate the built-in datasets offline: neuralop-mp data {darcy,navier_stokes,burgers} ...",
    "run": "run an upstream training script with the plugin: neuralop-mp run SCRIPT.py [--mp.* ...] -- [args]",
    "diagnose": "precision vs discretization error per layer: neuralop-mp diagnose CONFIG_OR_CHECKPOINT [...]",
}


def _usage():
    lines = [f"usage: {PROG} COMMAND [ARGS ...]", "", "Mixed-precision training for neuraloperator.", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += ["", f"Run `{PROG} COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def _error(message, command=None):
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: error: {message}", file=sys.stderr)
    return 2


def train_help(spec="darcy"):
    """``neuralop-mp train --help``: usage and every field of the config with its value."""
    from .configs import available_configs, config_keys, load_config
    from .configs.zencfg_compat import category, is_config, subclass_choices

    config = load_config(spec, validate=False)
    lines = [
        f"usage: {PROG} train [CONFIG] [--key value ...]",
        "",
        f"CONFIG: a built-in config ({', '.join(available_configs())}; default darcy) or",
        "        path/to/file.py[:ClassName] with a neuralop_mp.configs.TrainConfig subclass.",
        "Override any field with its dotted key, e.g.",
        "  --model.fno_block_precision mixed --opt.n_epochs 5 --data.test_resolutions \"[16,32]\"",
        "  --model TFNOConfig            (select another section class; starts from its defaults)",
        "Field reference: docs/configs.md.",
        "",
        f"Fields of {type(config).__name__} (current values):",
    ]
    for key in config_keys(config):
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if is_config(value):
            choices = [c for c in subclass_choices(category(value)) if c != "ModelConfig"]
            lines.append(f"  --{key} {{{', '.join(choices)}}}  (current: {type(value).__name__})")
        else:
            lines.append(f"  --{key} {value!r}")
    return "\n".join(lines)


def train_command(argv):
    """``neuralop-mp train``; returns the exit code."""
    from .configs import load_config

    args = list(argv)
    spec = "darcy"
    if args and not args[0].startswith("-"):
        spec = args.pop(0)
    try:
        if any(a in ("-h", "--help") for a in args):
            print(train_help(spec))
            return 0
        config = load_config(spec, args)
    except (ValueError, TypeError, FileNotFoundError, AttributeError, ImportError) as error:
        return _error(str(error), "train")

    from .train_pipeline import run_training
    from .train_report import format_summary

    with warnings.catch_warnings():
        # upstream's Trainer passes the whole batch dict to the model and the losses;
        # the resulting "unexpected keyword arguments" warnings are noise here
        warnings.filterwarnings("ignore", message=r".*received unexpected keyword arguments")
        result = run_training(config, progress=True)
    print()
    print(format_summary(result))
    return 0


def main(argv=None):
    """Entry point of the ``neuralop-mp`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train_command(rest)
    if command == "data":
        from .data.cli import main as data_main

        return data_main(rest)
    if command == "diagnose":
        from .diagnose.cli import main as diagnose_main

        return diagnose_main(rest)
    if command == "run":
        from .runner.cli import main as run_main

        return run_main(rest)
    return _error(f"unknown command {command!r}; choose from: {', '.join(COMMANDS)}.")


if __name__ == "__main__":
    sys.exit(main())
