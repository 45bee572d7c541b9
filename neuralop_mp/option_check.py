"""Command-line overrides checked against a config's keys: an unknown ``--key`` is named,
with close matches, before whatever else a config that does not load reports. Used by
``neuralop-mp train``, ``eval`` and ``diagnose``; :func:`parse_typed_overrides` says what a typed
``--model.stabilizer none`` means in ``train`` and ``diagnose`` (``eval`` takes no model keys)."""
import difflib


def check_options(args, source, spec, flags, base=()):
    """Every ``--key`` of ``args`` is a config key of ``source`` (the config that ``spec`` names,
    resolved) or one of ``flags``, else a did-you-mean.

    The keys are those of ``source`` with the section classes that ``base`` (overrides applied
    before ``args``: a run's recorded ones) and ``args`` select, e.g. ``--model UNOConfig``
    makes ``--model.uno_out_channels`` a key: the rule of ``load_config``
    (:func:`~neuralop_mp.configs.loading.select_sections`), on what can be read of a
    command line that may not parse.
    """
    from .configs import config_keys
    from .configs.loading import parse_overrides, select_sections

    config, _ = select_sections(source, parse_overrides([*base, *args], lenient=True))
    known = {f"--{k}" for k in config_keys(config)} | set(flags)
    for arg in args:
        name = arg.partition("=")[0]
        if name.startswith("--") and name not in known:
            close = _run_flag_keys(name, known) or difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.8)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown option {name}.{hint} Options: {', '.join(sorted(flags))} and the "
                             f"config keys (`neuralop-mp train {spec} --help` lists them).")


# ``neuralop-mp run``'s --mp.<flag> whose config key has another name (the others keep theirs)
_RUN_FLAG_FIELDS = {"precision": "fno_block_precision", "schedule": "precision_schedule"}


def _run_flag_keys(name, known):
    """The config keys of ``known`` that ``neuralop-mp run``'s flag ``name`` (``--mp.schedule``)
    sets, where a config command was given it: a close spelling would name another setting
    (``--opt.scheduler`` is the learning-rate scheduler)."""
    flag = name[len("--mp."):] if name.startswith("--mp.") else None
    if not flag:
        return []
    field = _RUN_FLAG_FIELDS.get(flag, flag)
    return sorted(key for key in known if key.rpartition(".")[2] == field)


def load_checked(build, args, spec, flags, base=()):
    """``build(source)``: the config of ``spec`` (``source``, the config class it names) with the
    overrides ``base`` then the ``--key value`` ``args``; when it fails, an unknown ``--key`` of
    ``args`` (neither a config key nor one of ``flags``: :func:`check_options`) is said first,
    whatever else is wrong: a misspelled key or a run option given a value explains most configs
    that do not load.

    ``spec`` is resolved once, for both: a config file runs once (its own error is raised from
    here, with no option check, as no key of it can be read).

    A config that loads has no unknown option to say: each ``--`` token of ``args`` was read
    as a key that ``load_config`` checked (``parse_overrides`` reads none as a value).
    """
    from .configs import resolve_config

    source = resolve_config(spec)
    try:
        return build(source)
    except Exception:
        check_options(args, source, spec, flags, base=base)
        raise


def parse_typed_overrides(tokens, typed=None):
    """``tokens`` parsed (:func:`~neuralop_mp.configs.parse_overrides`): the overrides ``train`` and
    ``diagnose`` load a config with, a ``--model.stabilizer`` among ``typed`` (the tokens typed now;
    default ``tokens``) as a spelling of None (``none``, ``None``, ``null``) made ``"off"``: no
    stabilizer, whatever the mode. In a config None means "the mode's default" (tanh for float16
    "half"), as upstream's configs write it; typed on a command line it is a request of its own,
    and ``command.json`` records it as "off", so a ``--resume`` or ``eval`` of the run keeps it.
    A resume gives its own ``typed`` (not the run's recorded tokens, which older runs wrote meaning
    the default); they come last in ``tokens``. A typed empty value is refused."""
    from .configs.loading import parse_overrides

    parsed = parse_overrides(tokens)
    # tokens typed now and parsed above: their keys are those of that one parse
    typed_keys = parsed if typed is None else parse_overrides(list(typed), lenient=True)
    return _typed_null_is_off(parsed, typed_keys)


def _typed_null_is_off(parsed, typed_keys):
    """``parsed`` with its ``model.stabilizer`` made "off" where it is a null spelling and among
    ``typed_keys`` (the keys typed now): :func:`parse_typed_overrides`' rule."""
    from .vocabulary import typed_null_is_off

    key = "model.stabilizer"
    if key in typed_keys:
        parsed = {**parsed, key: typed_null_is_off(parsed.get(key), key)}
    return parsed
