"""Every setting of :class:`~neuralop_mp.optim.tensorgrad.TensorGRaD` in one table.

Each :class:`Option` holds a setting's name, default, allowed values and the check
that enforces them. The optimizer's defaults and validation, the factory's
``opt.tensorgrad_*`` fields, the config fields of ``configs/opt.py`` and the
command-line flags are read from (or tested against) this table, so a default or
a name lives in one place.
"""
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Callable

import numpy as np
import torch

from ..caller_frames import stacklevel_outside
from ..vocabulary import check_choice, check_real
from .adam_math import ADAM_CONVENTIONS, STATE_DTYPES
from .composite_projector import ORDERS
from .nonfinite import OPTIMIZER_CODE_FILES, OPTIMIZER_CODE_FOLDERS
from .seeds import SEED_LIMIT
from .sparse_projector import SPARSE_TYPES, _check_ratio
from .tucker_projector import RANK_CONVENTIONS, _check_rank

NONFINITE_GRAD_ACTIONS = ("raise", "skip")


def _real(low=None, high=None, low_open=False, high_open=False):
    """Check of a finite real number in an interval (:func:`~neuralop_mp.vocabulary.check_real`),
    in this table's wording; wrong types raise TypeError. The value is returned as a Python
    float, except a 0-d tensor, which is kept (a tensor learning rate, as torch allows): a
    numpy scalar in a param group would make a state dict that ``torch.load(weights_only=True)``
    refuses."""
    # a one-sided bound as an inequality: "in [0.0, inf]" next to "finite" read as a contradiction
    if low is not None and high is not None:
        text = f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        text = f"a finite number {'>' if low_open else '>='} {low}"
    elif high is not None:
        text = f"a finite number {'<' if high_open else '<='} {high}"
    else:
        text = "a finite number"

    def check(key, value):
        try:
            number = check_real(key, value, low, high, low_open, high_open)
        except TypeError:
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); expected {text}.") from None
        except ValueError:
            raise ValueError(f"Invalid {key}={value!r}; expected {text}.") from None
        return value if isinstance(value, torch.Tensor) else number

    return check, text


def _int(low, high=None, high_text=None):
    """Check of an int in ``[low, high)`` (``high=None``: no upper bound); ``high_text``
    writes ``high`` in the message (e.g. "2**64")."""
    text = f"an int >= {low}" if high is None else f"an int in [{low}, {high_text or high})"

    def check(key, value):
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); expected {text}.")
        if value < low or (high is not None and value >= high):
            raise ValueError(f"Invalid {key}={value!r}; expected {text}.")
        return int(value)

    return check, text


def _bool():
    """Check of True or False; a numpy bool (a mask's ``.any()``) is taken as the Python bool it is,
    and returned as one (a numpy scalar in a param group would make a state dict that
    ``torch.load(weights_only=True)`` refuses). A string is refused: "False" is truthy."""
    def check(key, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"Invalid {key}={value!r}; expected True or False.")
        return bool(value)

    return check, "True or False"


def _choice(allowed):
    text = "one of " + ", ".join(repr(a) for a in allowed)

    def check(key, value):
        if not isinstance(value, str):
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); allowed values: "
                            + ", ".join(repr(a) for a in allowed) + ".")
        check_choice(key, value, allowed)  # the one format, with its "Did you mean" for another case or -/_
        return str(value)  # a str subclass (numpy.str_) would not load with weights_only=True

    return check, text


def _betas():
    beta, _ = _real(0.0, 1.0, high_open=True)
    text = "two finite numbers in [0, 1)"

    def check(key, value):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); expected {text}.")
        if len(value) != 2:
            raise ValueError(f"Invalid {key}={value!r}; expected {text}.")
        checked = []
        for i, b in enumerate(value):
            try:
                checked.append(beta(f"{key}[{i}]", b))
            except (TypeError, ValueError) as error:
                raise type(error)(f"Invalid {key}[{i}]={b!r} in {key}={tuple(value)!r}; expected {text}.") from None
        return tuple(checked)

    return check, text


def _rank():
    text = "a float in (0, 1], a positive int, a sequence of positive ints (one per mode), or None (no low-rank part)"

    def check(key, value):
        if isinstance(value, list):
            value = tuple(value)
        if value is not None and not isinstance(value, (Real, tuple)) or isinstance(value, bool):
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); expected {text}.")
        try:
            return None if value is None else _check_rank(value, key)
        except ValueError:
            raise ValueError(f"Invalid {key}={value!r}; expected {text}.") from None

    return check, text


def _sparse_ratio():
    def check(key, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise TypeError(f"Invalid {key}={value!r} ({type(value).__name__}); expected a float in (0, 1], "
                            "or None (no sparse part).")
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(f"Invalid {key}={value!r}; expected a float in (0, 1], or None (no sparse part).")
        return None if value is None else _check_ratio(value, key)

    return check, "a float in (0, 1], or None (no sparse part)"


@dataclass(frozen=True)
class Option:
    """One TensorGRaD setting.

    Attributes
    ----------
    name : str
        Constructor keyword and param-group key.
    default : object
        Default of the constructor (and of the config field, when ``in_config``).
    check : callable
        ``check(key, value) -> value``; raises TypeError (wrong type) or ValueError
        (out of range) with a message naming ``key``, the value and ``allowed``.
    allowed : str
        The allowed values, in words.
    in_config : bool
        Exposed as ``opt.tensorgrad_<name>`` in configs and on the command line.
    choices : tuple or None
        The allowed values of a text setting.
    layout : bool
        Decides the layout of a parameter's state (whether it is compressed, the parts'
        shapes, the moments' shapes and dtype): fixed once a parameter of the group has
        stepped (see :data:`LAYOUT_KEYS`).
    """

    name: str
    default: object
    check: Callable
    allowed: str
    in_config: bool = False
    choices: tuple = None
    layout: bool = False

    @property
    def config_field(self):
        return f"tensorgrad_{self.name}"


def _option(name, default, check_text, in_config=False, choices=None, layout=False):
    check, text = check_text
    return Option(name, default, check, text, in_config, choices, layout)


#: every setting, in constructor order
TENSORGRAD_OPTIONS = (
    _option("lr", 1e-3, _real(0.0)),
    _option("betas", (0.9, 0.999), _betas()),
    _option("eps", 1e-6, _real(0.0)),
    _option("weight_decay", 0.0, _real(0.0)),
    _option("correct_bias", True, _bool()),
    _option("adam_convention", "torch", _choice(ADAM_CONVENTIONS), True, ADAM_CONVENTIONS, layout=True),
    _option("compress", True, _bool(), layout=True),
    _option("min_params", 1000, _int(0), True, layout=True),
    _option("rank", 0.25, _rank(), True, layout=True),
    _option("rank_convention", "core", _choice(RANK_CONVENTIONS), choices=RANK_CONVENTIONS, layout=True),
    _option("sparse_ratio", 0.05, _sparse_ratio(), True, layout=True),
    _option("sparse_type", "randk", _choice(SPARSE_TYPES), True, SPARSE_TYPES, layout=True),
    _option("sparse_mode", 0, _int(0), layout=True),
    _option("order", "sparse_first", _choice(ORDERS), choices=ORDERS),
    _option("update_proj_gap", 100, _int(1), True),
    _option("scale", 4.0, _real(0.0), True),  # measured: docs/tensorgrad.md, "Default scale"
    _option("sparse_scale", 1.0, _real(0.0)),
    _option("lambda_sparse", 1.0, _real(0.0)),
    _option("scale_by_mask_ratio", False, _bool()),
    _option("warm_restart", True, _bool()),
    _option("tucker_n_iter_max", 1, _int(0)),
    _option("reset_sparse_moments", True, _bool()),
    _option("reset_lowrank_moments", False, _bool()),
    _option("state_dtype", "float32", _choice(tuple(STATE_DTYPES)), True, tuple(STATE_DTYPES), layout=True),
    _option("nonfinite_grad", "raise", _choice(NONFINITE_GRAD_ACTIONS), True, NONFINITE_GRAD_ACTIONS),
    _option("seed", 0, _int(0, SEED_LIMIT, "2**64")),  # torch.Generator's range
    # accepted for upstream compatibility; a refresh builds no autograd graph
    _option("activation_checkpoint", False, _bool()),
)
OPTIONS_BY_NAME = {option.name: option for option in TENSORGRAD_OPTIONS}
DEFAULTS = {option.name: option.default for option in TENSORGRAD_OPTIONS}
CONFIG_OPTIONS = tuple(option for option in TENSORGRAD_OPTIONS if option.in_config)
#: the settings a parameter's state is laid out by: a stepped parameter's state would no
#: longer fit another value (a step fails, or trains on and then fails to load)
LAYOUT_KEYS = tuple(option.name for option in TENSORGRAD_OPTIONS if option.layout)


def layout_of(group):
    """``{key: value}`` of a param group's :data:`LAYOUT_KEYS` (a list as a tuple, as the
    checks make it, so a rank set back as a list compares equal)."""
    return {key: tuple(group[key]) if isinstance(group[key], list) else group[key] for key in LAYOUT_KEYS}


def layout_change_error(group_index, built, now):
    """The ValueError of param group ``group_index``'s layout changed from ``built`` (what its
    parameters' state was built with) to ``now`` (both :func:`layout_of`), naming each changed
    key with both values."""
    listed = ", ".join(f"{key}={now[key]!r} (the state was built with {key}={built[key]!r})"
                       for key in LAYOUT_KEYS if now[key] != built[key])
    return ValueError(
        f"TensorGRaD: param group {group_index} was changed to {listed} after its parameters stepped. "
        f"The settings that lay out a parameter's state ({', '.join(LAYOUT_KEYS)}) are fixed once a "
        "parameter of the group has stepped: set the built value back, or build a new TensorGRaD with the "
        "new one (which restarts the state). The other settings (lr, betas, eps, weight_decay, scale, "
        "update_proj_gap, ...) may change at any time.")


# Group keys of upstream neuraloperator's TensorGRaD (main branch). A group that
# names ``tensorgrad`` is written for upstream's class: it gets upstream's
# meaning for the keys it leaves out (low-rank first, no sparse part unless
# sparse_ratio is given, tensorly's float-rank convention, gap 50, 10 HOOI sweeps,
# no size threshold, |g|^2 moments with upstream's eps and weight-decay placement,
# low-rank update not scaled).
UPSTREAM_GROUP_DEFAULTS = {
    "order": "lowrank_first",
    "sparse_ratio": None,
    "rank_convention": "params",
    "update_proj_gap": 50,
    "tucker_n_iter_max": 10,
    "min_params": 0,  # upstream compresses every weight of a tensorgrad group
    "adam_convention": "neuralop",
    "scale": 1.0,
}


# Beside groups naming ``tensorgrad``, a group naming neither ``tensorgrad`` nor
# ``compress`` is upstream's plain AdamW: uncompressed, with upstream's arithmetic.
UPSTREAM_PLAIN_GROUP_DEFAULTS = {"compress": False, "adam_convention": "neuralop"}


#: group keys that are no setting but are expected in a param group: upstream's switch,
#: names (torch's ``param_names``; a ``name`` label), and what torch's LR schedulers and
#: SWA write into groups (an optimizer built from another's groups carries them)
BOOKKEEPING_KEYS = frozenset({
    "tensorgrad", "param_names", "name", "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum",
    "swa_lr",
})


@dataclass(frozen=True)
class TorchKey:
    """A keyword (and group key) of ``torch.optim.AdamW`` that TensorGRaD accepts for drop-in
    use without being one of its settings: ``allowed`` are the values TensorGRaD's step
    matches (compared after ``bool``, None apart), the others are refused (with
    ``any_without_decay``, only beside a nonzero ``weight_decay``)."""

    default: object
    allowed: tuple
    refused_because: str = ""
    any_without_decay: bool = False


#: torch AdamW's keywords and group keys (``torch.optim.AdamW(...).param_groups`` carry them all)
TORCH_ADAMW_KEYS = {
    "maximize": TorchKey(False, (None, False), "it minimises the loss"),
    "foreach": TorchKey(None, (None, False, True)),  # torch's implementation choice: no effect here
    "capturable": TorchKey(False, (None, False), "its step is not CUDA-graph capturable"),
    "differentiable": TorchKey(False, (None, False), "its step is not differentiable"),
    "fused": TorchKey(None, (None, False), "it has no fused implementation"),
    "amsgrad": TorchKey(False, (None, False), "it keeps no running maximum of the second moments"),
    # False is torch Adam's L2 penalty, which is the decoupled decay when there is no decay
    "decoupled_weight_decay": TorchKey(True, (True,), "its weight decay is always decoupled, as AdamW's; Adam's "
                                                      "L2 penalty on the gradient is not available", True),
}
TORCH_ADAMW_DEFAULTS = {key: spec.default for key, spec in TORCH_ADAMW_KEYS.items()}


def _allowed_words(spec):
    words = [repr(value) for value in spec.allowed if value is not None] + (["None"] if None in spec.allowed else [])
    return ", ".join(words) + " or leaving it out" + (", or any with weight_decay=0" if spec.any_without_decay else "")


def check_torch_keys(group, weight_decay):
    """Refuse a torch AdamW key asking for what TensorGRaD lacks (:data:`TORCH_ADAMW_KEYS`:
    ``maximize=True``, ``fused=True``, ``decoupled_weight_decay=False`` with a nonzero
    ``weight_decay``, the group's): ValueError naming the key, its value and the allowed ones."""
    for key, spec in TORCH_ADAMW_KEYS.items():
        value = group.get(key, spec.default)
        if (None if value is None else bool(value)) in spec.allowed or (spec.any_without_decay and not weight_decay):
            continue
        decay = f" with weight_decay={weight_decay!r}" if spec.any_without_decay else ""
        raise ValueError(f"Invalid {key}={value!r}{decay}: TensorGRaD does not support {key}={value!r}, "
                         f"{spec.refused_because} (allowed: {_allowed_words(spec)}). torch AdamW's keys are "
                         "accepted for drop-in use with the values TensorGRaD's step matches.")


def unknown_group_keys(group):
    """The keys of param group ``group`` that are neither a setting, a torch AdamW key nor
    bookkeeping (:data:`BOOKKEEPING_KEYS`), in the group's order: likely a misspelt setting
    or another optimizer's key, which the step would ignore."""
    return [key for key in group if key != "params" and key not in OPTIONS_BY_NAME
            and key not in BOOKKEEPING_KEYS and key not in TORCH_ADAMW_KEYS]


def warn_unknown_keys(group, where, warned=()):
    """Warn, in one line, of the :func:`unknown_group_keys` of ``group`` but those in ``warned``
    (named for this group before), listing the settings TensorGRaD reads. ``where``: words after
    the keys that name the group, e.g. "of param group 1" or "of param group 1 of the loaded
    state dict": with several groups, the user finds the one that holds the key. The warning
    names the caller's line, so the default filter shows it once per line of user code and group."""
    keys = [key for key in unknown_group_keys(group) if key not in warned]
    if keys:
        named = f"key{'s' if len(keys) > 1 else ''} {', '.join(repr(key) for key in keys)}"
        warnings.warn(f"TensorGRaD ignores the unknown param-group {named} {where}; its "
                      f"settings are {', '.join(OPTIONS_BY_NAME)}.", UserWarning,
                      stacklevel=stacklevel_outside(OPTIMIZER_CODE_FOLDERS, OPTIMIZER_CODE_FILES))


def upstream_compress_flag(value):
    """A group's upstream ``tensorgrad`` key as its ``compress``: True or False, as ``compress``
    itself is checked (the string "False" would be truthy); TypeError naming ``tensorgrad`` otherwise."""
    return OPTIONS_BY_NAME["compress"].check("tensorgrad", value)


def group_settings(group, defaults, explicit=(), upstream=False):
    """Every setting of param group ``group`` (its ``params`` left out), checked.

    Each key comes from the first of: the group itself (its ``tensorgrad`` is its
    ``compress``, unless it names ``compress`` too; its torch AdamW keys are checked by
    :func:`check_torch_keys`, its unknown keys are the caller's to name, once per group:
    :func:`warn_unknown_keys`); the constructor keywords
    named in ``explicit`` (those its caller passed, whatever their values);
    upstream's defaults, for a group naming ``tensorgrad``
    (:data:`UPSTREAM_GROUP_DEFAULTS`) and, when ``upstream`` (some group of the
    optimizer names ``tensorgrad``), for a group naming neither ``tensorgrad`` nor
    ``compress`` (:data:`UPSTREAM_PLAIN_GROUP_DEFAULTS`); ``defaults``.
    """
    own = {key: value for key, value in group.items() if key != "params"}
    upstream_defaults = upstream_defaults_of(own, upstream)
    if "tensorgrad" in own and "compress" not in own:
        # the checked flag in both: a numpy bool stays in the group as the Python bool it is
        own["tensorgrad"] = own["compress"] = upstream_compress_flag(own["tensorgrad"])
    passed = {key: defaults[key] for key in explicit}
    settings = validate_group({**defaults, **upstream_defaults, **passed, **own})
    check_torch_keys(own, settings["weight_decay"])
    return settings


def upstream_defaults_of(keys, upstream=False):
    """The upstream defaults of a param group that names ``keys``: :data:`UPSTREAM_GROUP_DEFAULTS`
    where it names ``tensorgrad`` and not ``compress``; :data:`UPSTREAM_PLAIN_GROUP_DEFAULTS` where
    it names neither and ``upstream`` (some group of its optimizer names ``tensorgrad``); else none."""
    if "tensorgrad" in keys and "compress" not in keys:
        return UPSTREAM_GROUP_DEFAULTS
    if upstream and "tensorgrad" not in keys and "compress" not in keys:
        return UPSTREAM_PLAIN_GROUP_DEFAULTS
    return {}


def validate_group(group):
    """Check every setting of a param group (defaults filled in), in place; returns it."""
    for option in TENSORGRAD_OPTIONS:
        if option.name in group:
            group[option.name] = option.check(option.name, group[option.name])
    if group["compress"] and group["rank"] is None and group["sparse_ratio"] is None:
        raise ValueError(
            "Invalid rank=None with sparse_ratio=None in a compressed group; set one of them or compress=False."
        )
    return group


def check_config_fields(opt):
    """Check the ``tensorgrad_<name>`` fields of a config's ``opt`` section (an
    object with attributes) with the same checks as the optimizer; messages name
    ``opt.tensorgrad_<name>``."""
    for option in CONFIG_OPTIONS:
        if hasattr(opt, option.config_field):
            option.check(f"opt.{option.config_field}", getattr(opt, option.config_field))
