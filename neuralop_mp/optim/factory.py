"""Build an optimizer from a config's ``opt`` section: ``create_optimizer(model, opt_config)``.

A small registry (name -> builder) behind one function, so configs, the CLI and
tests share the same list of names, and an unknown name is reported together with
the known ones.

A plain dict is checked key by key (a misspelt ``"lr"`` would otherwise train at the
default learning rate); config objects may carry fields of their own and are read
by name. Every value is checked here, so an error names the ``opt.<key>`` it came from.
"""
import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Callable

import torch

from ..vocabulary import CONFIG_NAME_KEY, check_choice, read_key
from .adam_math import compute_dtype
from .param_groups import spectral_parameters
from .settings import DEFAULTS, OPTIONS_BY_NAME, TENSORGRAD_OPTIONS

# opt.tensorgrad_<key> fields: every TensorGRaD setting; the ones in configs (and on
# the command line) are CONFIG_OPTIONS, absent fields keep TensorGRaD's defaults
TENSORGRAD_FIELDS = tuple(option.name for option in TENSORGRAD_OPTIONS
                          if option.name not in ("lr", "betas", "weight_decay", "compress"))
#: the keys create_optimizer reads besides the tensorgrad_<key> fields, with the setting checking each
COMMON_FIELDS = {"learning_rate": "lr", "weight_decay": "weight_decay", "betas": "betas"}
_TENSORGRAD_KEYS = tuple(f"tensorgrad_{k}" for k in TENSORGRAD_FIELDS)
# the fields create_optimizer reads: optimizer, learning_rate, weight_decay, betas and every tensorgrad_<key>
_READ_FIELDS = ("optimizer", *COMMON_FIELDS, *_TENSORGRAD_KEYS)
# the settings that take a float (eps, rank, sparse_ratio, scale, ...): text that is a number
# is read as one, as for learning_rate (YAML reads 1e-8, without a dot, as text)
_FLOAT_SETTINGS = frozenset(key for key in TENSORGRAD_FIELDS if isinstance(DEFAULTS[key], float))
# the part a single-branch kind drops (galore: low-rank only; sparse: sparse only)
DROPPED_SETTING = {"galore": "sparse_ratio", "sparse": "rank"}

# opt-section fields of upstream neuraloperator 2.0.0's configs (OptimizationConfig and the
# scripts' subclasses; ``alpha`` is read by its UQNO script) that create_optimizer does not
# read: a dict copied from such a section is accepted with them
UPSTREAM_OPT_FIELDS = frozenset({
    "n_epochs", "training_loss", "testing_loss", "eval_interval", "mixed_precision", "scheduler",
    "scheduler_T_max", "scheduler_patience", "step_size", "gamma", "resume", "loss_aggregator",
    "loss_weights", "pino_method", "alpha",
})
# what a user may write for a field: torch's keyword names and TensorGRaD's setting names
_ALIASES = {"lr": "learning_rate", "wd": "weight_decay", "beta": "betas", "name": "optimizer",
            "optim": "optimizer", **{f"tensorgrad_{k}": f for f, k in COMMON_FIELDS.items()},
            **{k: f"tensorgrad_{k}" for k in TENSORGRAD_FIELDS}}


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: its name, a one-line description and its builder."""

    name: str
    description: str
    build: Callable


_REGISTRY = {}


def setting_readers():
    """The optimizer kinds that read TensorGRaD settings: every registered kind but "adamw"
    (a kind registered with :func:`register_optimizer` is handed them too)."""
    return tuple(name for name in _REGISTRY if name != "adamw")


def unread_settings_error(kind, given, optimizer_key, prefix):
    """ValueError for the first of ``given`` (``{"tensorgrad_<name>": value}`` set by the user) that
    optimizer ``kind`` does not read, else None: AdamW reads none of them, galore and sparse do not
    read the part they drop (:data:`DROPPED_SETTING`); set, it would be recorded and ignored.
    ``optimizer_key`` and ``prefix`` spell the option and the fields as the caller's user typed them
    (``opt.optimizer``, ``opt.``; ``--mp.optimizer``, ``--mp.``)."""
    dropped = DROPPED_SETTING.get(kind)
    for key, value in given.items():
        if kind == "adamw":
            kinds = "|".join(setting_readers())
            return ValueError(f"Invalid {prefix}{key}={value!r} with {optimizer_key}={kind!r}: AdamW reads no "
                              f"TensorGRaD setting; leave it out, or use {optimizer_key} {kinds}.")
        if dropped and key == f"tensorgrad_{dropped}":
            return ValueError(f"Invalid {prefix}{key}={value!r} with {optimizer_key}={kind!r}: that kind does not "
                              f"read it; leave it out, or use {optimizer_key} tensorgrad for both parts.")
    return None


def register_optimizer(name, description):
    """Decorator registering ``build(model, common_kwargs, tensorgrad_settings)`` under ``name``."""
    def wrap(build):
        if name in _REGISTRY:
            raise ValueError(f"Optimizer name {name!r} is already registered.")
        _REGISTRY[name] = OptimizerSpec(name, description, build)
        return build
    return wrap


def list_optimizers():
    """Names ``create_optimizer`` accepts."""
    return tuple(_REGISTRY)


def _get(cfg, key, default=None):
    return read_key(cfg, key, default)


def _field_names(cfg):
    if isinstance(cfg, dict):
        return list(cfg)
    if hasattr(cfg, "to_dict"):
        return list(cfg.to_dict())
    return [k for k in vars(cfg) if not k.startswith("_")] if hasattr(cfg, "__dict__") else []


@functools.lru_cache(maxsize=None)
def _section_fields():
    """Fields of a config's ``opt`` section that create_optimizer does not read (n_epochs,
    scheduler, precision_schedule, ...): this package's and upstream's."""
    from ..configs.opt import OptimizationConfig  # the configs import the optimizer's settings
    from ..configs.zencfg_compat import field_names

    return tuple(sorted((set(field_names(OptimizationConfig)) | UPSTREAM_OPT_FIELDS) - set(_READ_FIELDS)))


def _is_plain_mapping(opt_config):
    # a zencfg Bunch is a config section turned into a dict (upstream's scripts pass
    # config.to_dict()), which may carry a script's own fields: read by name, as a config
    from ..configs.zencfg_compat import is_zencfg_dict

    return isinstance(opt_config, Mapping) and not is_zencfg_dict(opt_config)


def _unknown_text(unknown, known):
    """``Unknown opt field(s) [...] (did you mean ...?)``: each key's alias or close match in ``known``."""
    close = {}
    for key in unknown:
        match = _ALIASES.get(key) or next(iter(difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)), None)
        if match:
            close[key] = match
    if len(unknown) == 1 and close:
        hint = f" (did you mean {close[unknown[0]]!r}?)"
    else:
        hint = f" (did you mean {', '.join(f'{m!r} for {k!r}' for k, m in close.items())}?)" if close else ""
    return f"Unknown opt field(s) {unknown}{hint}"


def _check_known_keys(opt_config):
    """Refuse a key of a plain dict that is neither read nor an opt-section field."""
    read, section = _READ_FIELDS, _section_fields()
    unknown = [key for key in opt_config if key not in read and key not in section and key != CONFIG_NAME_KEY]
    if unknown:
        raise ValueError(
            f"{_unknown_text(unknown, read + section)}; create_optimizer reads optimizer, learning_rate, "
            f"weight_decay, betas and tensorgrad_{{{', '.join(TENSORGRAD_FIELDS)}}}, and accepts the opt-section "
            f"fields it leaves to the training loop: {', '.join(section)}.")


def _unknown_tensorgrad_fields(opt_config):
    """Refuse a ``tensorgrad_<key>`` field of a config object that names no TensorGRaD setting."""
    unknown = [name for name in _field_names(opt_config)
               if name.startswith("tensorgrad_") and name not in _TENSORGRAD_KEYS]
    if unknown:
        raise ValueError(f"{_unknown_text(unknown, _TENSORGRAD_KEYS)}; known TensorGRaD fields: "
                         f"{', '.join(_TENSORGRAD_KEYS)}.")


def _number_text(field, option, value, strict=True):
    """A number written as text (``"1e-3"``: YAML reads exponents without a dot as text) as a
    float; text that is no number raises the setting's message (``strict``) or is returned."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        if not strict:
            return value
        raise ValueError(f"Invalid opt.{field}={value!r}; expected {option.allowed}.") from None


def _common_settings(opt_config):
    """``lr``, ``weight_decay`` and ``betas`` (when set) from ``opt.learning_rate``,
    ``opt.weight_decay`` and ``opt.betas``, checked as TensorGRaD checks them."""
    common = {}
    for field, name in COMMON_FIELDS.items():
        option = OPTIONS_BY_NAME[name]
        # an absent learning rate or weight decay is TensorGRaD's default, for every kind
        value = _get(opt_config, field, DEFAULTS["lr"] if name == "lr" else None)
        if value is None:
            if name == "weight_decay":
                common[name] = DEFAULTS["weight_decay"]
            continue
        if field == "betas":
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, tuple, list)):
                value = list(value)  # an array or a tensor of two numbers
            if isinstance(value, (tuple, list)):  # text that is no number: the check names the element
                value = [_number_text(field, option, b, strict=False) for b in value]
            common[name] = tuple(float(b) for b in option.check(f"opt.{field}", value))
        else:
            common[name] = float(option.check(f"opt.{field}", _number_text(field, option, value)))
    return common


def _tensorgrad_settings(opt_config, name, plain):
    """The ``opt.tensorgrad_<key>`` fields present, checked (messages name ``opt.tensorgrad_<key>``),
    for optimizer ``name``; absent fields keep TensorGRaD's defaults.

    Every present field is checked, whatever the kind (as ``load_config`` checks a config's),
    "adamw", which reads none, included. A ``plain`` dict may not set a field its kind does not
    read (:func:`unread_settings_error`: any for "adamw", the dropped part for galore and sparse)
    to another value than its default or None: it would not be used. Its default is what a
    dict copied from a config section carries.
    """
    _unknown_tensorgrad_fields(opt_config)
    present = set(_field_names(opt_config))
    settings = {}
    for key in TENSORGRAD_FIELDS:
        if f"tensorgrad_{key}" in present:  # an explicit None (e.g. no sparse part) is kept
            option, value = OPTIONS_BY_NAME[key], _get(opt_config, f"tensorgrad_{key}")
            if key in _FLOAT_SETTINGS:
                value = _number_text(f"tensorgrad_{key}", option, value, strict=False)
            settings[key] = option.check(f"opt.tensorgrad_{key}", value)
    if plain:  # the rule of configs and of neuralop-mp run
        error = unread_settings_error(name, {f"tensorgrad_{k}": v for k, v in settings.items()
                                             if v is not None and v != DEFAULTS[k]}, "opt.optimizer", "opt.")
        if error is not None:
            raise error
    if name == "adamw":
        return settings
    dropped = DROPPED_SETTING.get(name)
    part = {"sparse_ratio": "sparse", "rank": "low-rank"}.get(dropped)
    kept = [k for k in ("rank", "sparse_ratio") if k != dropped]
    if all(settings.get(k, DEFAULTS[k]) is None for k in kept):
        only = f" (opt.optimizer={name!r} has no {part} part)" if dropped else ""
        fields = " with ".join(f"opt.tensorgrad_{k}=None" for k in kept)
        raise ValueError(f"Invalid {fields}{only}: the compressed weights need a low-rank or a sparse part; set "
                         f"{' or '.join(f'opt.tensorgrad_{k}' for k in kept)}, or use opt.optimizer='adamw'.")
    return settings


def _tensorgrad_groups(model, settings):
    """Spectral weights compressed, everything else plain AdamW; models without
    spectral layers are routed by shape and memory (see ``TensorGRaD.routes_to_compression``)."""
    spectral = spectral_parameters(model, settings.get("min_params", DEFAULTS["min_params"]))
    if not spectral:
        return [dict(settings, params=[p for p in model.parameters() if p.requires_grad])]
    ids = {id(p) for p in spectral}
    regular = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [dict(settings, params=spectral, compress=True)]
    if regular:
        groups.insert(0, dict(settings, params=regular, compress=False))  # same Adam convention
    return groups


def adamw_class(sixteen_bit_weights):
    """The class ``opt.optimizer`` "adamw" builds (:func:`create_optimizer`) for a model that holds
    16-bit weights (complex32 spectral weights, ``model.spectral_weight_dtype``) or not:
    TensorGRaD without compression for 16-bit weights, else torch's AdamW. The one rule of the
    build and of ``neuralop-mp train --resume``'s refusal of a dtype that switches the class.

    torch's AdamW keeps moments in the parameter's dtype: for complex32 weights the squared
    gradients underflow in fp16 and updates below the fp16 spacing are lost. TensorGRaD without
    compression is the same AdamW update with fp32 moments and stochastically rounded weight writes.
    """
    if sixteen_bit_weights:
        from .tensorgrad import TensorGRaD

        return TensorGRaD
    return torch.optim.AdamW


@register_optimizer("adamw", "torch.optim.AdamW on every parameter")
def _build_adamw(model, common, settings):
    cls = adamw_class(any(compute_dtype(p) != p.dtype for p in model.parameters()))
    if cls is torch.optim.AdamW:
        return cls(model.parameters(), **common)
    # eps is torch's default (TensorGRaD's own differs)
    return cls([p for p in model.parameters() if p.requires_grad], compress=False, **{"eps": 1e-8, **common})


def nothing_compressed_warning(model, optimizer, kind):
    """What to say when the TensorGRaD ``optimizer`` (``opt.optimizer`` ``kind``) built for ``model``
    compresses no parameter, else None: it then keeps plain AdamW moments for every weight, the
    memory TensorGRaD was chosen to save. Named: ``opt.tensorgrad_min_params``, against the
    largest candidate weight (the model's spectral weights, any weight of two or more modes
    longer than 1 in a model without them) where that is below it. None too where the constructor
    warned of why, for every candidate: an int or tuple rank above their mode sizes
    (:meth:`TensorGRaD.rank_exceeds_modes`), or a rank or sparse ratio of the user's that leaves their
    compressed state no smaller (:meth:`TensorGRaD.keeps_plain_for_chosen_settings`)."""
    from .tensorgrad import TensorGRaD

    triples = [(p, g, i) for i, g in enumerate(optimizer.param_groups) if g.get("compress") for p in g["params"]]
    pairs = [(p, g) for p, g, _ in triples]
    if not pairs or any(TensorGRaD.routes_to_compression(p, g) for p, g in pairs):
        return None
    candidates = [(p, g, i) for p, g, i in triples if TensorGRaD.eligible_for_compression(p, g)]
    # none routes to compression (above): a candidate's rank above its modes is rank_exceeds_modes
    if candidates and all(TensorGRaD.asks_rank_above_modes(p, g) or optimizer.keeps_plain_for_chosen_settings(p, i)
                          for p, g, i in candidates):
        return None  # the constructor named the cause, group by group
    matrices = [p for p in (spectral_parameters(model, 0) or [p for p, _ in pairs])
                if sum(1 for d in p.shape if d > 1) >= 2]
    threshold = max(1, pairs[0][1]["min_params"])
    head = f"opt.optimizer={kind!r} compresses no weight and keeps plain AdamW moments for all of them: "
    if not matrices:
        return head + "the model has no weight of two or more modes longer than 1 to compress."
    largest = max(p.numel() for p in matrices)
    if largest < threshold:
        return (head + f"the largest candidate weight has {largest:,} entries, below opt.tensorgrad_min_params="
                f"{threshold}; set opt.tensorgrad_min_params to {largest} or less to compress it.")
    return head + ("the compressed state of each candidate weight would not be smaller than its AdamW moments "
                   "(a lower opt.tensorgrad_rank or opt.tensorgrad_sparse_ratio makes it smaller).")


def _compressing(model, common, settings, kind):
    """TensorGRaD of kind ``kind`` on :func:`_tensorgrad_groups`, warning once where it compresses nothing."""
    import warnings

    from .tensorgrad import TensorGRaD

    optimizer = TensorGRaD(_tensorgrad_groups(model, settings), **common)
    warning = nothing_compressed_warning(model, optimizer, kind)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=2)
    return optimizer


@register_optimizer("tensorgrad", "TensorGRaD: sparse + low-rank compressed moments for spectral weights")
def _build_tensorgrad(model, common, settings):
    return _compressing(model, common, settings, "tensorgrad")


@register_optimizer("galore", "TensorGRaD with the low-rank (Tucker) part only (Tensor-GaLore)")
def _build_galore(model, common, settings):
    return _compressing(model, common, dict(settings, sparse_ratio=None), "galore")


@register_optimizer("sparse", "TensorGRaD with the sparse part only")
def _build_sparse(model, common, settings):
    return _compressing(model, common, dict(settings, rank=None), "sparse")


def _check_config_kind(what, config):
    """``config`` if it is a mapping or an object with attributes (a zencfg or pydantic config),
    which fields are read from; a TypeError naming ``what``, the value and the accepted kinds
    otherwise. Any other value reads as no field at all: ``create_optimizer(model, "tensorgrad")``
    would build AdamW."""
    if isinstance(config, Mapping) or (hasattr(config, "__dict__") and not isinstance(config, type)):
        return config
    raise TypeError(f"Invalid {what}={config!r} ({type(config).__name__}); allowed values: a dict of the opt "
                    "section's fields (e.g. {'optimizer': 'tensorgrad'}), a zencfg Bunch, or a zencfg or "
                    "pydantic config object (an opt section, or a whole config with one).")


def create_optimizer(model, opt_config):
    """Build the optimizer ``opt_config.optimizer`` names for ``model``.

    Parameters
    ----------
    model : nn.Module
    opt_config : dict, Bunch, zencfg config or pydantic model
        The ``opt`` section (a whole config with an ``opt`` attribute is accepted
        too). Fields read: ``optimizer`` ("adamw" | "tensorgrad" | "galore" |
        "sparse", default "adamw"), ``learning_rate`` (1e-3), ``weight_decay``
        (0.0), ``betas`` (optional), and ``tensorgrad_<key>`` for any TensorGRaD
        setting ``<key>`` but lr, betas, weight_decay and compress
        (:data:`~neuralop_mp.optim.settings.TENSORGRAD_OPTIONS`; defaults are
        TensorGRaD's; checked whatever the kind, read by the TensorGRaD kinds only;
        the float ones may be numbers written as text, as ``learning_rate``). A
        plain dict may not set the part its kind drops (``tensorgrad_sparse_ratio``
        with "galore", ``tensorgrad_rank`` with "sparse") but to None. It may also
        hold the opt-section fields left to the training loop (``n_epochs``,
        ``scheduler``, ...: this package's ``OptimizationConfig`` and upstream's);
        any other key is refused, with the field it likely meant.

    Returns
    -------
    torch.optim.Optimizer

    Raises
    ------
    ValueError or TypeError
        An unknown key of a dict, or a bad value: the message names ``opt.<field>``,
        the value and the allowed values. TypeError for an ``opt_config`` (or its
        ``opt`` section) of another kind (a string, a number, a list, None).
    """
    _check_config_kind("opt_config", opt_config)
    if _get(opt_config, "optimizer") is None and _get(opt_config, "opt") is not None:
        opt_config = _check_config_kind("opt_config.opt", _get(opt_config, "opt"))
    plain = _is_plain_mapping(opt_config)
    if plain:
        _check_known_keys(opt_config)
    name = _get(opt_config, "optimizer", "adamw") or "adamw"
    # any case, a documented exception to the one spelling rule (docs/configs.md): upstream's configs
    # write "AdamW"; our configs' opt.optimizer is checked exactly before it gets here
    name = check_choice("opt.optimizer", name, list_optimizers(), ignore_case=True)
    common = _common_settings(opt_config)
    settings = _tensorgrad_settings(opt_config, name, plain)  # checked for adamw too, which reads none
    return _REGISTRY[name].build(model, common, settings)
