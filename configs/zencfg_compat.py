"""Reading zencfg configs the same way under zencfg 0.7 and 1.0.

neuraloperator 2.0.0's own ``config/`` classes load under zencfg 0.7 only (under
1.0 their field ``ModelConfig.arch``, which has no default, becomes required and
``FNO_Small2d()`` fails), so the plugin requires 0.7; our own configs and every
place that reads a config must still work with 1.0, which users may have. The two
versions differ where we read configs:

* 1.0's ``ConfigBase`` is a pydantic model: its fields are ``model_fields`` and
  ``to_dict()`` adds a ``_config_name`` key to every section;
* 0.7's ``ConfigBase`` is a plain class: its fields are the annotated names plus
  the public, non-callable class attributes, and ``to_dict()`` returns a
  ``Bunch`` whose attribute access raises ``KeyError`` (not ``AttributeError``)
  for a missing key, so ``hasattr(bunch, "to_dict")`` raises, and which turns the
  strings "None"/"none" into None (:func:`section_dict` does so for 1.0's too).

Every function here takes either version's objects, and plain dicts.
"""
import typing

from zencfg import ConfigBase

# one reader for a key of a dict, Bunch or config object, and zencfg's bookkeeping key in to_dict() output
# (never a config field), shared with the rest of the package
from neuralop_mp.vocabulary import CONFIG_NAME_KEY, read_key  # noqa: F401  (re-exported)

#: True under zencfg >= 1.0 (configs are pydantic models)
PYDANTIC_CONFIGS = hasattr(ConfigBase, "model_fields")

#: default of a field that has none (a required field)
REQUIRED = object()


def is_config(value):
    """True for a zencfg config instance (either version)."""
    return isinstance(value, ConfigBase)


def _config_class(config):
    return config if isinstance(config, type) else type(config)


def _legacy_fields(config_cls):
    """zencfg 0.7: annotated public names and public non-callable class attributes, base first."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
        for klass in reversed(config_cls.__mro__):
            hints.update(vars(klass).get("__annotations__", {}))
    fields = {}
    for klass in reversed(config_cls.__mro__):
        if klass is object or klass is ConfigBase:
            continue
        for name in vars(klass).get("__annotations__", {}):
            if not name.startswith("_"):
                fields.setdefault(name, [hints.get(name, typing.Any), REQUIRED])
        for name, value in vars(klass).items():
            if name.startswith("_") or callable(value):
                continue
            fields.setdefault(name, [hints.get(name, typing.Any), REQUIRED])[1] = value
    return {name: tuple(entry) for name, entry in fields.items()}


def config_fields(config):
    """``{name: (annotation, default)}`` of a config class or instance, in definition order.

    ``default`` is the class-level default (:data:`REQUIRED` when there is none),
    also when ``config`` is an instance; read current values with ``getattr``.
    """
    config_cls = _config_class(config)
    if PYDANTIC_CONFIGS:
        return {
            name: (field.annotation, REQUIRED if field.is_required() else field.default)
            for name, field in config_cls.model_fields.items()
        }
    return _legacy_fields(config_cls)


def field_names(config):
    """Names of the fields of a config class or instance."""
    return list(config_fields(config))


# the strings zencfg 0.7's Bunch reads as None (its __init__, at every level of nested dicts, not in lists)
_NONE_STRINGS = ("None", "none")


def is_zencfg_dict(value):
    """A zencfg ``Bunch`` (``to_dict()``'s result, either version), not a plain dict."""
    return isinstance(value, dict) and type(value).__module__.split(".")[0] == "zencfg"


def section_dict(value):
    """A config section (zencfg config, Bunch, dict or plain object) as a plain dict.

    Nested sections become plain dicts too; zencfg's ``_config_name`` keys are
    dropped. None stays None. In a zencfg config or Bunch the strings "None" and
    "none" become None, as zencfg 0.7's ``Bunch`` turns them (upstream's configs write
    ``factorization: str = "None"``); 1.0's keeps them, so both read alike. A plain
    dict's strings stay as they are.
    """
    if value is None:
        return None
    if is_config(value):
        value = value.to_dict()
    elif not isinstance(value, dict):
        value = {k: v for k, v in vars(value).items() if not k.startswith("_")}
    zencfg_dict = is_zencfg_dict(value)
    return {
        k: (section_dict(v) if isinstance(v, dict) or is_config(v)
            else None if zencfg_dict and isinstance(v, str) and v in _NONE_STRINGS else v)
        for k, v in value.items() if k != CONFIG_NAME_KEY
    }


def category(config_cls):
    """The zencfg category of a config class: its ancestor right below ``ConfigBase``."""
    config_cls = _config_class(config_cls)
    for klass in config_cls.__mro__:
        if ConfigBase in klass.__bases__:
            return klass
    return config_cls


def section_class(config, name):
    """The config class that the section field ``name`` of ``config`` (class or instance) admits:
    its annotation when that is a config class (a config may narrow ``model: ModelConfig`` to
    ``model: TFNOConfig``, and zencfg then refuses any other class), else the category of its
    value (an unannotated field under zencfg 0.7)."""
    annotation, default = config_fields(config)[name]
    if isinstance(annotation, type) and issubclass(annotation, ConfigBase):
        return annotation
    return category(default if isinstance(config, type) else getattr(config, name))


def invalid_default(config_cls):
    """``(name, value, annotation)`` of the first field of ``config_cls`` whose class-level
    default zencfg's type check refuses, or None.

    Each default is assigned to an instance made without ``__init__`` (which would stop at the
    bad default): zencfg checks an assignment as it checks a default, under 0.7 (in
    ``__setattr__``) and 1.0 (pydantic's ``validate_assignment``) alike.
    """
    config_cls = _config_class(config_cls)
    probe = config_cls.model_construct() if PYDANTIC_CONFIGS else object.__new__(config_cls)
    for name, (annotation, default) in config_fields(config_cls).items():
        if default is REQUIRED:
            continue
        try:
            setattr(probe, name, default)
        except TypeError:
            return name, default, annotation
    return None


def subclass_choices(config_cls):
    """Class names selectable in place of ``config_cls`` (itself and its registered subclasses)."""
    config_cls = _config_class(config_cls)
    registry = getattr(category(config_cls), "_registry", {}) or {}
    names = [config_cls.__name__] + [c.__name__ for c in registry.values() if issubclass(c, config_cls)]
    return list(dict.fromkeys(names))


def select_subclass(config_cls, name):
    """The subclass of ``config_cls`` (or itself) whose class name is ``name``, case ignored.

    Raises
    ------
    ValueError
        Naming the allowed class names.
    """
    config_cls = _config_class(config_cls)
    wanted = str(name).strip().lower()
    registry = getattr(category(config_cls), "_registry", {}) or {}
    for candidate in [config_cls, *registry.values()]:
        if candidate.__name__.lower() == wanted and issubclass(candidate, config_cls):
            return candidate
    raise ValueError(
        f"Invalid {config_cls.__name__} class {name!r}; allowed values: "
        f"{', '.join(subclass_choices(config_cls))}."
    )


def config_keys(config):
    """Every dotted key of a config (class or instance), sections included; not the UPPER_CASE
    constants of a class body (:func:`is_constant`), which no override can change."""
    keys = []
    for name, (_, default) in config_fields(config).items():
        if is_constant(name):
            continue
        value = getattr(config, name) if not isinstance(config, type) else default
        keys.append(name)
        if is_config(value):
            keys.extend(f"{name}.{sub}" for sub in config_keys(value))
    return keys


def is_constant(name):
    """Whether a class-body name is a constant (UPPER_CASE, as PEP 8 writes them: ``EPOCHS = 1``
    used by the fields below it). zencfg keeps it as a field, but the fields that used it were
    set when the class was defined: no key of the trainer, and no override reaches them."""
    return name.isupper()
