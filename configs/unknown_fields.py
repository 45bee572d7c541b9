"""Keys of a config (file) that no reader reads: refused when the config loads, as the command line
refuses an unknown ``--key``, where they were ignored without a word.

A config file sets such a key in one of three ways:

* a keyword its section class does not have, ``OptimizationConfig(n_epoch=1)``: zencfg 0.7 keeps it
  as an attribute of the instance (:func:`stray_attributes`); zencfg 1.0 refuses it while the file
  runs, in a multi-line pydantic report (:func:`unknown_keyword_error` says it in this module's line);
* a field of its own in a subclass of :class:`~.base.TrainConfig` (``n_epoch: int = 1`` in the class
  body), which no step of the trainer reads. An UPPER_CASE constant of the class body is no field; a
  section of the user's own (a config of a category other than the plugin's sections, or a dict, e.g.
  upstream's ``WandbConfig``) is left alone unless its name is a near-miss of one of the trainer's:
  the trainer reads none of it, so none of its keys is a misspelling of one it reads;
* a field of its own in a subclass of ``OptimizationConfig`` or ``PatchingConfig``, whose fields the
  trainer reads by name. A model section's fields are checked against its model's constructor
  (``validation._section_problem``), a data section's against its loader
  (:func:`check_data_fields`): a subclass may add an argument they take.

Under zencfg 0.7 and 1.0 alike; zencfg's bookkeeping (``_config_name``, ``_target_class``, the
registry) is private and never a key.
"""
import difflib
import inspect
import re
import weakref
from typing import get_args

from zencfg import ConfigBase

from .base import TrainConfig
from .models import ModelConfig
from .datasets import DataConfig
from .opt import OptimizationConfig, PatchingConfig
from .zencfg_compat import category, config_fields, config_keys, field_names, is_config, is_constant

# the sections of the trainer: a section of these categories is read only at its own key
_TRAINER_SECTIONS = (ModelConfig, OptimizationConfig, DataConfig, PatchingConfig)
# the sections whose every field the trainer reads by name: a field of a subclass's own is never read
_READ_BY_NAME = (OptimizationConfig, PatchingConfig)

# config class -> the ``path.py:ClassName`` it was loaded from (zencfg 0.7 drops the file's module,
# so the class cannot say where it was defined)
_FILES = weakref.WeakKeyDictionary()


def remember_file(config_cls, spec):
    """Record that ``config_cls`` was loaded from the config file ``spec`` (for the messages here)."""
    _FILES[config_cls] = str(spec)


def _file_of(config):
    config_cls = config if isinstance(config, type) else type(config)
    return _FILES.get(config_cls)


def stray_attributes(section):
    """Public attributes of the config instance ``section`` that are no field of its class: keywords
    its constructor was given (zencfg 0.7 keeps them; 1.0 refuses them), or attributes set later."""
    if not is_config(section):
        return []
    fields = config_fields(section)
    return [name for name in vars(section) if not name.startswith("_") and name not in fields]


def _own_section(value, annotation):
    """Whether a field of a TrainConfig subclass's own is a section of the user's own: a config of
    another category than the trainer's sections, a dict, or None where the annotation names one."""
    if is_config(value):
        return not issubclass(category(type(value)), _TRAINER_SECTIONS)
    if isinstance(value, dict):
        return True
    return value is None and _names_a_section(annotation)


def _names_a_section(annotation):
    if isinstance(annotation, type):
        return issubclass(annotation, (ConfigBase, dict)) and not (
            issubclass(annotation, ConfigBase) and issubclass(category(annotation), _TRAINER_SECTIONS))
    return any(_names_a_section(arg) for arg in get_args(annotation) if arg is not type(None))


def _close(name, candidates):
    """The dotted keys of ``candidates`` closest to ``name``, by the whole key or its last part
    (``n_epoch`` -> ``opt.n_epochs``)."""
    leaves = {}
    for key in candidates:
        leaves.setdefault(key.rpartition(".")[2], []).append(key)
    found = difflib.get_close_matches(name.rpartition(".")[2], sorted(leaves), n=3, cutoff=0.75)
    close = [key for leaf in found for key in leaves[leaf]]
    close += difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.75)
    return list(dict.fromkeys(close))[:3]


def unknown_fields_message(class_name, names, candidates, where, why, hint="", ignored=True):
    """The one line that refuses the keys ``names`` (dotted) of the config class ``class_name``.

    Parameters
    ----------
    candidates : list of str
        The keys that exist, for the close matches.
    where : str or None
        The config file (``path.py:ClassName`` or ``path.py:LINE``), when known.
    why : str
        Why they are no keys, e.g. "keywords it does not take".
    hint : str
        A sentence said after the close matches.
    ignored : bool
        Whether the keys would be ignored (else refused later, when the data loads).
    """
    plural = "s" if len(names) > 1 else ""
    close = [match for name in names for match in _close(name, candidates)[:1]]
    text = f"Unknown field{plural} {', '.join(names)} of {class_name}" + (f" in {where}" if where else "")
    fate = "ignored" if ignored else "refused when the data loads"
    text += f" ({why}; {'they' if plural else 'it'} would be {fate})."
    if close:
        text += f" Did you mean: {', '.join(dict.fromkeys(close))}?"
    text += f" {hint}" if hint else ""
    if where and not re.search(r":\d+$", where):  # a class, not a line: its keys can be listed
        text += f" `neuralop-mp train {where} --help` lists the keys."
    return text


def _sections(config, key=""):
    """``(dotted key, config instance)`` of ``config`` and of every config in its fields."""
    yield key, config
    for name in config_fields(config):
        value = getattr(config, name, None)
        if is_config(value):
            yield from _sections(value, f"{key}.{name}" if key else name)


def refuse_unknown_fields(config):
    """Refuse a key of the training config ``config`` (a TrainConfig instance) that no reader reads
    (see the module's docstring); the one line names the class, the keys, their close matches and
    the config file. Returns ``config``.

    Raises
    ------
    ValueError
    """
    if not is_config(config):  # not a zencfg config (a stand-in of a test): no fields to compare
        return config
    where = _file_of(config)
    top = list(config_fields(TrainConfig))
    extra = [name for name, (annotation, _) in config_fields(config).items() if name not in top
             and not is_constant(name)
             and (not _own_section(getattr(config, name, None), annotation) or _close(name, top))]
    known = [key for key in config_keys(config) if key.partition(".")[0] not in extra]
    for key, section in _sections(config):
        stray = stray_attributes(section)
        if stray:
            prefix = f"{key}." if key else ""
            fields = [prefix + name for name in config_fields(section)] if key else known
            name = type(section).__name__
            raise ValueError(unknown_fields_message(name, [prefix + s for s in stray], fields, where,
                                                    f"keyword{'s' if len(stray) > 1 else ''} it does not take"))
    if extra:
        raise ValueError(unknown_fields_message(
            type(config).__name__, extra, known, where, "no field of TrainConfig, the fields the trainer reads",
            "Settings of your own go in a section of your own (a config class of another category, or a dict) "
            "named apart from the trainer's sections; constants of the class body are written in UPPER_CASE."))
    check_data_fields(getattr(config, "data", None), where)
    for name in top:
        section = getattr(config, name, None)
        base = next((c for c in _READ_BY_NAME if isinstance(section, c)), None)
        own = [field for field in config_fields(section)
               if field not in config_fields(base) and not is_constant(field)] if base else []
        if own:
            raise ValueError(unknown_fields_message(
                type(section).__name__, [f"{name}.{field}" for field in own],
                [f"{name}.{field}" for field in config_fields(base)], where,
                f"no field of {base.__name__}, the fields the trainer reads"))
    return config


def data_fields_not_taken(data, loader=None):
    """``(loader name, [fields], [its arguments])``: the fields of the data section ``data`` that the
    function reading it does not take, or None when it takes them all. ``loader``: that function
    (default: the built-in loader of ``neuralop_mp.data`` that the section's ``loader_name()`` names;
    None where there is none, or it takes ``**kwargs``)."""
    from neuralop_mp import data as data_module
    from neuralop_mp.data.loaders import LOADER_FILES

    named = getattr(data, "loader_name", None)
    name = named() if callable(named) else getattr(loader, "__name__", None)
    if loader is None:  # a built-in loader only: another name is _check_loader's to refuse
        loader = getattr(data_module, name, None) if isinstance(name, str) and name in LOADER_FILES else None
    if not callable(loader):
        return None
    params = inspect.signature(loader).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    not_taken = sorted(field for field in field_names(data) if field not in params)
    return (name, not_taken, list(params)) if not_taken else None


def check_data_fields(data, where=None, loader=None):
    """A field of the data section that its loader does not take (a data section's own, e.g.
    ``n_trian: int = 8``): refused when the config loads, before anything is written, and by
    ``build_data`` again for ``loader``, the function it calls (a config it did not see)."""
    found = data_fields_not_taken(data, loader)
    if found is not None:
        loader, not_taken, params = found
        raise ValueError(unknown_fields_message(
            type(data).__name__, [f"data.{field}" for field in not_taken], [f"data.{p}" for p in params], where,
            f"no argument of neuralop_mp.data.{loader}, which takes the section's fields", ignored=False))


def unknown_keyword_error(error, where):
    """zencfg 1.0's ValueError for keywords a config class does not take (pydantic's
    "extra_forbidden"), raised while a config file ran (``where``: ``path.py:LINE``), as
    :func:`unknown_fields_message`'s line; None for any other error (one that also reports another
    problem stays as it is)."""
    from pydantic import ValidationError

    report = error.__context__  # zencfg 1.0 raises its ValueError from None, in pydantic's except block
    if not isinstance(error, ValueError) or not isinstance(report, ValidationError):
        return None
    problems = report.errors()
    if not problems or any(p["type"] != "extra_forbidden" for p in problems):
        return None
    names = [".".join(map(str, p["loc"])) for p in problems]
    section = _config_constructed(error)
    class_name = type(section).__name__ if section is not None else report.title
    fields = list(config_fields(type(section))) if section is not None else []
    return ValueError(unknown_fields_message(
        class_name, names, fields, where, f"keyword{'s' if len(names) > 1 else ''} it does not take"))


def _config_constructed(error):
    """The config instance whose ``__init__`` raised ``error`` (the innermost), read from its
    traceback's frames, or None."""
    found, tb = None, error.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if tb.tb_frame.f_code.co_name == "__init__" and is_config(candidate):
            found = candidate
        tb = tb.tb_next
    return found
