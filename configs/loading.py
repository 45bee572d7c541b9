"""Find a config by name or path, apply ``--key value`` overrides, validate it.

``neuralop-mp train CONFIG [--key value ...]``: CONFIG is a built-in name
(``darcy``, ``navier_stokes``, ``burgers``) or a Python file, optionally followed by
``:ClassName``. Overrides use zencfg's dotted keys (``--model.fno_block_precision
mixed``, ``--data.test_resolutions "[16,32]"``); a key that is not a field of the
config is rejected with the closest valid keys, before zencfg sees it.
"""
import difflib
import typing
from pathlib import Path

from zencfg import ConfigBase, load_config_from_file, make_config

from neuralop_mp.vocabulary import none_if_null

from .base import TrainConfig
from .burgers import BurgersConfig
from .darcy import DarcyConfig
from .navier_stokes import NavierStokesConfig
from .validation import validate_config

CONFIGS = {
    "darcy": DarcyConfig,
    "navier_stokes": NavierStokesConfig,
    "burgers": BurgersConfig,
}


def available_configs():
    """Names accepted by :func:`load_config` and ``neuralop-mp train``."""
    return sorted(CONFIGS)


def _load_from_file(spec):
    path, _, class_name = str(spec).partition(":")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    if class_name:
        item = load_config_from_file(path.parent, path.name, config_name=class_name)
    else:
        item = _default_config_in_file(path)
    config_cls = item if isinstance(item, type) else type(item)
    if not issubclass(config_cls, TrainConfig):
        raise TypeError(
            f"{spec}: {config_cls.__name__} is not a neuralop_mp.configs.TrainConfig; "
            "subclass TrainConfig (or DarcyConfig, ...) so the config has the model, "
            "opt, data and patching sections the trainer reads."
        )
    return item


def _default_config_in_file(path):
    """``Default`` if the file defines it, else its only TrainConfig subclass."""
    try:
        return load_config_from_file(path.parent, path.name, config_name="Default")
    except AttributeError:
        pass
    import sys

    defined = []
    for module_name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path.resolve():
            defined = [
                value for value in vars(module).values()
                if isinstance(value, type) and issubclass(value, TrainConfig)
                and value.__module__ == module_name
            ]
            break
    if len(defined) != 1:
        names = ", ".join(sorted(c.__name__ for c in defined)) or "none"
        raise ValueError(
            f"{path}: name the config class as {path}:ClassName (TrainConfig classes found: {names})."
        )
    return defined[0]


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
    key = text.strip().lower().replace("-", "_")
    if key in CONFIGS:
        return CONFIGS[key]
    if text.partition(":")[0].endswith(".py") or Path(text).exists():
        return _load_from_file(text)
    close = difflib.get_close_matches(key, CONFIGS, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown config {text!r}; built-in configs: {', '.join(available_configs())}, "
        f"or a path to a .py file (path.py or path.py:ClassName).{hint}"
    )


def config_keys(config):
    """Every dotted key of a config (class or instance), sections included."""
    config_cls = config if isinstance(config, type) else type(config)
    keys = []
    for name, field in config_cls.model_fields.items():
        value = getattr(config, name) if not isinstance(config, type) else field.default
        keys.append(name)
        if isinstance(value, ConfigBase):
            keys.extend(f"{name}.{sub}" for sub in config_keys(value))
    return keys


def parse_overrides(args):
    """``["--a.b", "1", "--c=2"]`` -> ``{"a.b": "1", "c": "2"}`` (values stay strings)."""
    overrides = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ValueError(
                f"Expected an option like --model.n_layers 4 (or --model.n_layers=4), got {arg!r}."
            )
        key = arg[2:]
        if "=" in key:
            key, _, value = key.partition("=")
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"Missing value for option --{key}.")
            value = args[i + 1]
            i += 2
        overrides[key] = value
    return overrides


def _check_keys(config, overrides):
    valid = set(config_keys(config))
    for key in overrides:
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


def _is_section(config, key):
    return "." not in key and isinstance(getattr(config, key, None), ConfigBase)


def _none_for_null_strings(config):
    """``--model.norm None`` arrives as the string "None": make it None where None is allowed."""
    for name, field in type(config).model_fields.items():
        value = getattr(config, name)
        if isinstance(value, ConfigBase):
            _none_for_null_strings(value)
        elif (isinstance(value, str) and none_if_null(value) is None
                and type(None) in typing.get_args(field.annotation)):
            setattr(config, name, None)


def load_config(spec="darcy", overrides=None, *, validate=True):
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

    Returns
    -------
    TrainConfig

    Raises
    ------
    ValueError
        Unknown config name or key (with the closest valid keys), or a bad value.
    """
    source = resolve_config(spec)
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, dict):
        overrides = parse_overrides(list(overrides))
    overrides = {str(k): v for k, v in overrides.items()}

    base = source if isinstance(source, ConfigBase) else source()
    # section selections first (--model TFNOConfig): they decide which keys exist
    selections = {k: v for k, v in overrides.items() if _is_section(base, k)}
    if selections:
        base = make_config(base, **selections)
    rest = {k: v for k, v in overrides.items() if k not in selections}
    _check_keys(base, rest)
    config = make_config(base, **rest) if rest else base
    _none_for_null_strings(config)
    if validate:
        validate_config(config)
    return config


def config_to_dict(config):
    """A JSON-ready nested dict of the config (``_config_name`` keys included)."""
    return _plain(config.to_dict())


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
