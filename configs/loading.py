"""Find a config by name or path, apply ``--key value`` overrides, validate it.

``neuralop-mp train CONFIG [--key value ...]``: CONFIG is a built-in name
(``darcy``, ``navier_stokes``, ``burgers``) or a Python file, optionally followed by
``:ClassName``. Overrides use zencfg's dotted keys (``--model.fno_block_precision
mixed``, ``--data.test_resolutions "[16,32]"``); a key that is not a field of the
config is rejected with the closest valid keys, before zencfg sees it.
"""
import copy
import difflib
import sys
import traceback
import types
import typing
from pathlib import Path

from zencfg import ConfigBase, load_config_from_file

from neuralop_mp.vocabulary import CONFIG_NAME_KEY, none_if_null, normalize_flag

from .base import TrainConfig
from .burgers import BurgersConfig
from .darcy import DarcyConfig
from .navier_stokes import NavierStokesConfig
from .unknown_fields import remember_file, unknown_keyword_error
from .validation import validate_config
from .zencfg_compat import (config_fields, config_keys, invalid_default, is_config, is_constant, section_class,
                             select_subclass)

CONFIGS = {
    "darcy": DarcyConfig,
    "navier_stokes": NavierStokesConfig,
    "burgers": BurgersConfig,
}


def available_configs():
    """Names accepted by :func:`load_config` and ``neuralop-mp train``."""
    return sorted(CONFIGS)


class ConfigClassNotFound(ValueError):
    """``path.py:ClassName`` where the file defines no ``ClassName`` (a usage error)."""


def raised_in_file(error, path):
    """The innermost frame of ``error``'s traceback that runs the file ``path`` (its code raised
    the error, or called what did), or None: a frame of the file itself, not a guess from where
    other files live (libraries may be installed anywhere). A ``SyntaxError`` of the file counts
    as raised at its line."""
    if syntax_error_of(error, path):
        return traceback.FrameSummary(error.filename, error.lineno or 0, "<module>")
    target = Path(path).resolve()
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if _is_file(frame.filename, target):
            return frame
    return None


def syntax_error_of(error, path):
    """Whether ``error`` is a SyntaxError in the file ``path`` itself (its message names the line)."""
    return (isinstance(error, SyntaxError) and bool(error.filename)
            and _is_file(error.filename, Path(path).resolve()))


def raised_beside(error, path):
    """The innermost frame of ``error``'s traceback in another file of the folder of the config
    file ``path`` (or below it), under the file's own frame: a helper module the config file
    imports or calls, where the error was raised. None when there is none. Files under an
    import root inside that folder other than the folder itself (a project's local
    ``site-packages``, a ``PYTHONPATH`` entry there) and the plugin's and neuraloperator's own
    packages (a checkout of them may hold the config file) are libraries, not the user's."""
    folder = Path(path).resolve().parent
    target = Path(path).resolve()
    # import roots below the folder (not "", the current folder, where the user works), and this
    # plugin's and neuraloperator's own code, which a checkout of them may hold below the folder
    roots = {Path(entry).resolve() for entry in sys.path if entry}
    library_roots = {root for root in roots if folder in root.parents}
    library_roots |= {Path(module.__file__).resolve().parent
                      for module in (sys.modules.get("neuralop_mp"), sys.modules.get("neuralop_mp.configs"),
                                     sys.modules.get("neuralop"))
                      if module is not None and getattr(module, "__file__", None)}
    frames = traceback.extract_tb(error.__traceback__)
    inside = [i for i, frame in enumerate(frames) if _is_file(frame.filename, target)]
    for frame in reversed(frames[inside[-1] + 1:] if inside else []):
        if frame.filename.startswith("<"):
            continue
        parents = set(Path(frame.filename).resolve().parents)
        if folder in parents and not parents & library_roots:
            return frame
    return None


def _is_file(filename, target):
    return not filename.startswith("<") and Path(filename).resolve() == target


def _load_class(path, class_name):
    """zencfg's load of ``class_name`` from the file ``path``. The file not defining it is a
    :class:`ConfigClassNotFound`: zencfg's AttributeError with no frame of the file in its
    traceback (the file ran through); one that the file's code raised, or a library it called,
    passes as it is."""
    try:
        return load_config_from_file(path.parent, path.name, config_name=class_name)
    except ValueError as err:  # zencfg 1.0's multi-line report of a keyword a class does not take
        frame = raised_in_file(err, path)
        unknown = unknown_keyword_error(err, f"{frame.filename}:{frame.lineno}") if frame is not None else None
        if unknown is None:
            raise
        raise unknown from None
    except TypeError as err:  # zencfg's refusal of a name that is no config ("must be a ConfigBase class")
        if raised_in_file(err, path) is not None:
            raise
        raise TypeError(_not_a_train_config(f"{path}:{class_name}", class_name,
                                            "not a config (no zencfg ConfigBase class or instance)")) from None
    except AttributeError as err:
        if raised_in_file(err, path) is not None:
            raise
        missing = ConfigClassNotFound(f"{path}: {err}")
        missing.module = _module_run_from(err, path)
        raise missing from None


def _module_run_from(error, path):
    """The module that zencfg ran the file ``path`` as, read from the frames of ``error`` (its
    AttributeError for a missing name, raised while the module is at hand: zencfg 0.7 then drops
    it from ``sys.modules``), or None."""
    target = Path(path).resolve()
    tb = error.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, types.ModuleType) and _is_file(getattr(value, "__file__", None) or "<", target):
                return value
        tb = tb.tb_next
    return None


def _load_from_file(spec):
    path, _, class_name = str(spec).partition(":")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Invalid config file {path}: it is a folder; name a .py file in it.")
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    if path.suffix != ".py":
        raise ValueError(f"Invalid config file {path}: a config file is a Python file (.py), as "
                         "path.py or path.py:ClassName, or a built-in config name.")
    if class_name:
        item = _load_class(path, class_name)
    else:
        item = _default_config_in_file(path)
    config_cls = item if isinstance(item, type) else type(item)
    if not issubclass(config_cls, TrainConfig):
        raise TypeError(_not_a_train_config(spec, config_cls.__name__))
    remember_file(config_cls, f"{path}:{config_cls.__name__}")  # named by a refusal of its unknown keys
    return item


def _not_a_train_config(spec, name, what="not a neuralop_mp.configs.TrainConfig"):
    """The refusal of the config file's ``name`` (as ``spec`` names it), which is ``what`` instead of
    a TrainConfig: the file and what is expected there."""
    path = str(spec).rpartition(":")[0] or spec
    return (f"{spec}: {name} is {what}; expected in {path} a subclass of neuralop_mp.configs.TrainConfig (or "
            "DarcyConfig, ...), or an instance of one, so the config has the model, opt, data and patching "
            "sections the trainer reads.")


def _default_config_in_file(path):
    """``Default`` if the file defines it, else its only TrainConfig subclass."""
    try:
        return _load_class(path, "Default")
    except ConfigClassNotFound as missing:
        module = missing.module
    if module is None:  # a zencfg that no longer holds the module where its error is raised
        raise ValueError(f"{path}: name the config class as {path}:ClassName (the file defines no Default).")
    # the file's own TrainConfig classes, from the run that looked for Default: running the
    # file again to list them would repeat its side effects (and make new copies of its classes)
    defined = [
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, TrainConfig)
        and value.__module__ == module.__name__
    ]
    if len(defined) != 1:
        names = ", ".join(sorted(c.__name__ for c in defined)) or "none"
        raise ValueError(
            f"{path}: name the config class as {path}:ClassName (TrainConfig classes found: {names})."
        )
    return defined[0]


def _builtin_name(text):
    return text.strip().lower().replace("-", "_")  # dashes and case are ignored


def config_file(spec):
    """The file that ``spec`` names, when it names a config file rather than a built-in
    config: ``(path, rest)`` with ``rest`` the ``":ClassName"`` after it (or ``""``); None
    otherwise. The rule of :func:`resolve_config`: a built-in name first, then
    ``path.py[:ClassName]`` or a path that exists.
    """
    text = str(spec)
    if _builtin_name(text) in CONFIGS:
        return None
    path = text.partition(":")[0]
    if path.endswith(".py") or Path(text).exists():
        return path, text[len(path):]
    return None


def resolve_config(spec):
    """The config class (or instance) that ``spec`` names.

    Parameters
    ----------
    spec : str, Path, TrainConfig subclass or instance
        A built-in name (``"darcy"``; dashes and case are ignored), a path to a
        ``.py`` file with an optional ``:ClassName``, or a config itself.
    """
    if isinstance(spec, ConfigBase) or (isinstance(spec, type) and issubclass(spec, ConfigBase)):
        return spec
    text = str(spec)
    key = _builtin_name(text)
    if key in CONFIGS:
        return CONFIGS[key]
    if config_file(text) is not None:
        return _load_from_file(text)
    close = difflib.get_close_matches(key, CONFIGS, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown config {text!r}; built-in configs: {', '.join(available_configs())}, "
        f"or a path to a .py file (path.py or path.py:ClassName).{hint}"
    )


def parse_overrides(args, *, lenient=False):
    """``["--a.b", "1", "--c=2"]`` -> ``{"a.b": "1", "c": "2"}`` (values stay strings).

    A token that starts with ``--`` is an option, never the value of the option before
    it: in ``--a --b 1``, ``--a`` has no value (a ValueError naming it), where reading
    ``a="--b"`` would lose ``--b`` without a word. A value that starts with ``--`` is
    written ``--a=--b``; negative numbers (``--a -1``) are values.

    With ``lenient=True``, what can be read of a command line that does not parse (for a
    message about its options): a token that is not an option is skipped, and an option
    without a value is left out (the option after it is read as usual), where they would
    raise a ValueError.
    """
    overrides = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("--") or len(arg) <= 2:
            if lenient:
                continue
            raise ValueError(
                f"Expected an option like --model.n_layers 4 (or --model.n_layers=4), got {arg!r}."
            )
        key = arg[2:]
        if "=" in key:
            key, _, value = key.partition("=")
        elif i < len(args) and not args[i].startswith("--"):
            value = args[i]
            i += 1
        elif lenient:
            continue
        elif i < len(args):
            raise ValueError(f"Missing value for option --{key} (it is followed by the option {args[i]}; "
                             f"a value that starts with '--' is written --{key}=VALUE).")
        else:
            raise ValueError(f"Missing value for option --{key}.")
        overrides[key] = value
    return overrides


def _check_keys(config, overrides):
    valid = set(config_keys(config))
    for key in overrides:
        if key not in valid and is_constant(key.rpartition(".")[2]) and _has_key(config, key):
            raise ValueError(f"Invalid --{key}: {key.rpartition('.')[2]} is a constant of the config class's body "
                             "(UPPER_CASE), read once when the class is defined; set the key that uses it "
                             "(`neuralop-mp train CONFIG --help` lists the keys).")
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=5, cutoff=0.6)
            section = key.rpartition(".")[0]
            same_section = sorted(k for k in valid if k.rpartition(".")[0] == section and k != section)
            suggestions = close or same_section[:12]
            raise ValueError(
                f"Unknown config key --{key}; "
                + (f"did you mean: {', '.join('--' + k for k in suggestions)}? " if suggestions else "")
                + "Run `neuralop-mp train CONFIG --help` to list every key."
            )


def _has_key(config, key):
    """Whether the dotted ``key`` names a field of ``config`` (constants included)."""
    try:
        section, name = _owner(config, key)
    except AttributeError:  # a section on the way that the config does not have
        return False
    return is_config(section) and name in config_fields(section)


def _numeric_type(annotation):
    """``int`` for a field annotated ``int``, ``float`` for ``float`` or a union of numbers
    (``Union[int, float]``: ``model.rank``), ``Optional`` included; else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        numbers = {a for a in typing.get_args(annotation) if a is not type(None)}
        if not numbers or not numbers <= {int, float}:
            return None
        # a union that takes a float takes any number: it is refused as a float field is
        return int if numbers == {int} else float
    return annotation if annotation in (int, float) else None


def _is_on_off(value):
    """Whether ``value`` is an on/off setting as the plugin reads one (True/False or their
    spellings: :func:`~neuralop_mp.vocabulary.normalize_flag`)."""
    try:
        normalize_flag(value, "")
    except TypeError:
        return False
    return True


def _owner(config, key):
    """``(section, field name)`` of the dotted ``key`` in ``config``."""
    *path, name = key.split(".")
    section = config
    for part in path:
        section = getattr(section, part)
    return section, name


def _check_numeric_overrides(config, overrides):
    """Refuse a boolean for a number field: zencfg turns ``--opt.n_epochs true`` into 1
    (and ``false`` into 0) without a word, under 0.7 and 1.0 alike."""
    for key, value in overrides.items():
        section, name = _owner(config, key)
        kind = _numeric_type(config_fields(section).get(name, (None, None))[0])
        if kind is None:
            continue
        if _is_on_off(value):
            allowed = "integers" if kind is int else "numbers"
            raise ValueError(f"Invalid {key}={value!r}; allowed values: {allowed} ({key} is a number, "
                             "not an on/off setting).")


def _is_section(config, key):
    return "." not in key and is_config(getattr(config, key, None))


def select_sections(spec, overrides):
    """``(config, rest)``: a copy of the default config of ``spec`` (:func:`resolve_config`)
    with the section classes that the dict ``overrides`` selects (``{"model": "TFNOConfig"}``,
    each from its own defaults), and the other overrides. The selections decide which keys
    exist: ``config`` has every key ``rest`` may set (:func:`config_keys`), the keys that
    :func:`load_config` and the command line's option check accept.
    """
    source = resolve_config(spec)
    # a copy: zencfg 0.7 assigns class-level default sections to instances as they
    # are, so editing the config in place would edit every later config's defaults
    config = copy.deepcopy(source if is_config(source) else _instantiate(source))
    selections = {k: v for k, v in overrides.items() if _is_section(config, k)}
    for key, class_name in selections.items():
        # the field's own class, not its category: a config that narrows ``model`` to
        # TFNOConfig takes TFNOConfig and its subclasses only (zencfg refuses the others)
        setattr(config, key, _instantiate(select_subclass(section_class(config, key), class_name)))
    return config, {k: v for k, v in overrides.items() if k not in selections}


def _instantiate(config_cls):
    """``config_cls()``; a class default of the wrong type (``name: str = 5`` in a config file)
    is a one-line ValueError naming the field, its value and what the field takes, where
    zencfg raises a multi-line pydantic report."""
    try:
        return config_cls()
    except TypeError:
        bad = invalid_default(config_cls)
        if bad is None:
            raise
        name, value, annotation = bad
        raise ValueError(f"Invalid {config_cls.__name__}.{name}={value!r} (the class default); "
                         f"allowed values: {_type_words(annotation)}.") from None


def _is_null_for(value, annotation):
    """Whether ``value`` is a spelling of None ("None", "none", "null") for a field that may be None."""
    return isinstance(value, str) and none_if_null(value) is None and type(None) in typing.get_args(annotation)


def _none_for_null_strings(config):
    """``--model.norm None`` arrives as the string "None": make it None where None is allowed."""
    for name, (annotation, _) in config_fields(config).items():
        value = getattr(config, name)
        if is_config(value):
            _none_for_null_strings(value)
        elif _is_null_for(value, annotation):
            setattr(config, name, None)


def _apply_overrides(config, overrides):
    """Set each dotted key on ``config`` in place; zencfg parses and type-checks the value.

    Assignment rather than ``zencfg.make_config``: zencfg 0.7's ``make_config`` rebuilds
    an instance from its flat dict and loses a selected section class (``--model
    TFNOConfig`` would come back as an ``FNOConfig``).
    """
    for key, value in overrides.items():
        section, name = _owner(config, key)
        annotation = config_fields(section).get(name, (None, None))[0]
        if _is_null_for(value, annotation):
            value = None  # before zencfg's type check, which reads "None" as the field's type
        try:
            setattr(section, name, value)
        except TypeError:  # zencfg's type check: a multi-line pydantic report under 0.7 and 1.0 alike
            raise ValueError(f"Invalid {key}={value!r}; allowed values: {_type_words(annotation)}.") from None
    return config


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {int: ("integers", "[16, 32]"), float: ("numbers", "[0.5, 1.0]"), str: ("strings", "['a', 'b']")}


def _type_words(annotation):
    """``annotation`` (a config field's type) as the values it allows, in words: "an integer",
    "a list of integers, e.g. [16, 32]", "a number or None"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _TYPE_WORDS:
        return _TYPE_WORDS[annotation]
    if origin in (list, tuple) and args and args[0] in _PLURALS:
        plural, example = _PLURALS[args[0]]
        return f"a list of {plural}, e.g. {example}"
    if origin is typing.Union:
        words = [_type_words(a) for a in args if a is not type(None)]
        return " or ".join(words + (["None"] if type(None) in args else []))
    if origin is typing.Literal:
        return ", ".join(map(repr, args))
    return str(annotation).replace("typing.", "")


def load_config(spec="darcy", overrides=None, *, validate=True, training=True):
    """Build a validated config instance.

    Parameters
    ----------
    spec : str, Path or config
        See :func:`resolve_config`.
    overrides : dict or list of str, optional
        ``{"model.fno_block_precision": "mixed"}`` or the command-line form
        ``["--model.fno_block_precision", "mixed"]``. A section name with a class
        name (``{"model": "TFNOConfig"}``) selects another section class.
    validate : bool
        Check every enumerated value (:func:`validate_config`).
    training : bool
        Also refuse a model that the package's training loop (``neuralop-mp train``,
        :func:`~neuralop_mp.train_pipeline.run_training`) cannot run: one whose forward needs
        more than a sample's ``x`` and ``y``. False for a model trained by a loop of your own
        (:func:`~neuralop_mp.get_model` builds it).

    Returns
    -------
    TrainConfig

    Raises
    ------
    ValueError
        Unknown config name or key (with the closest valid keys), or a bad value; with ``validate``,
        also a key of the config (file) that no field has (:mod:`.unknown_fields`).
    """
    source = resolve_config(spec)
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, dict):
        overrides = parse_overrides(list(overrides))
    overrides = {str(k): v for k, v in overrides.items()}

    # section selections first (--model TFNOConfig): they decide which keys exist, and
    # the selected class starts from its own defaults (same under zencfg 0.7 and 1.0)
    base, rest = select_sections(source, overrides)
    _check_keys(base, rest)
    _check_numeric_overrides(base, rest)
    config = _apply_overrides(base, rest)
    _none_for_null_strings(config)
    if validate:
        validate_config(config, training=training)
    return config


def config_to_dict(config):
    """A JSON-ready nested dict of the config's fields.

    Each section carries its class name under ``_config_name``, so
    ``make_config_from_nested_dict(type(config), config_to_dict(config))`` rebuilds
    the same config, section classes included (under zencfg 0.7 and 1.0 alike).
    """
    result = {CONFIG_NAME_KEY: type(config).__name__}
    for name in config_fields(config):
        value = getattr(config, name)
        result[name] = config_to_dict(value) if is_config(value) else _plain(value)
    return result


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
