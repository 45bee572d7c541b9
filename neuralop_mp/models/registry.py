"""Registry glue: make upstream's models buildable by name, with our spectral layer.

neuraloperator registers every ``BaseModel`` subclass under its lowercased name and
``neuralop.get_model(config)`` builds ``config.model.model_arch`` from the remaining
``config.model`` fields. Upstream's ``UNO`` is a plain ``nn.Module``, so it cannot be
built that way; subclassing it together with ``BaseModel`` registers it under
``"uno"`` without touching any name upstream already uses.

:func:`get_model` is upstream's ``get_model`` plus four plugin keys in
``config.model``: ``fno_block_precision``, ``half_dtype``, ``stabilizer`` and
``spectral_weight_dtype``. When the precision is not "full" (or a precision schedule
is configured, or the spectral weights are stored in complex32), the model is built
with :class:`~neuralop_mp.MixedPrecisionSpectralConv` as its spectral layer.
"""
import functools
import inspect

from neuralop.models.base_model import BaseModel
from neuralop.models.base_model import available_models as _upstream_available_models
from neuralop.models.uno import UNO as _UpstreamUNO
from torch import nn

from ..layers.weight_storage import normalize_spectral_weight_dtype, set_spectral_weight_dtype
from ..precision import (
    PRECISION_MODES,
    check_choice,
    normalize_half_dtype,
    normalize_stabilizer,
)

# config.model keys that belong to the plugin, never passed to a constructor as-is
PLUGIN_MODEL_KEYS = ("fno_block_precision", "half_dtype", "stabilizer", "spectral_weight_dtype")


class UNO(_UpstreamUNO, BaseModel, name="UNO"):
    """Upstream's U-shaped neural operator, registered as ``"uno"``.

    Identical to :class:`neuralop.models.UNO` (same constructor, same state_dict
    keys); it only adds ``BaseModel``'s registration and init-argument recording so
    ``get_model`` can build it from a config.
    """


def available_models():
    """Names ``get_model`` accepts (upstream's plus the ones registered here)."""
    return _upstream_available_models()


def _get(obj, key, default=None):
    """Read a key from a dict, a Bunch or a zencfg config alike."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _as_dict(section):
    # dicts first: a zencfg 0.7 Bunch raises KeyError (not AttributeError) in hasattr
    if not isinstance(section, dict) and hasattr(section, "to_dict"):
        section = section.to_dict()
    section = dict(section)
    section.pop("_config_name", None)  # zencfg's subclass tag, not a model argument
    return section


def _constructor_params(cls):
    """Named constructor arguments of ``cls``, following ``**kwargs`` up the MRO.

    TFNO's own ``__init__`` is ``(*args, **kwargs)`` and forwards to FNO's, so its
    real arguments are FNO's. Returns ``(params, takes_any)``: ``takes_any`` is True
    when the ``**kwargs`` chain reaches ``nn.Module`` (a model that consumes arbitrary
    keywords itself), so unknown keys cannot be told apart from valid ones.
    """
    params = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for klass in cls.__mro__:
        if klass is nn.Module:
            return params, True
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(vars(klass)["__init__"]).parameters
        params.update({k: p for k, p in sig.items() if k != "self" and p.kind in named})
        if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
            return params, False
    return params, True


def _spectral_layer_kwarg(cls):
    """Name of the constructor argument that takes the spectral layer class."""
    params, _ = _constructor_params(cls)
    for name in ("conv_module", "integral_operator"):
        if name in params:
            return name
    return None


def get_model(config, *, mixed_precision_layer=None):
    """Build the model described by ``config.model``, as upstream's ``get_model`` does.

    Parameters
    ----------
    config : dict-like or zencfg config
        Must have ``model`` with ``model_arch`` (a registered name: "fno", "tfno",
        "uno", ...), ``data_channels`` and the model's constructor arguments. May
        have ``model.fno_block_precision`` ("full" | "mixed" | "half"),
        ``model.half_dtype`` ("auto" | "float16" | "bfloat16"), ``model.stabilizer``
        (None | "tanh"), ``model.spectral_weight_dtype`` ("complex64" | "complex32":
        storage of the spectral weights and their gradients), ``patching.levels``
        and ``opt.precision_schedule``.
    mixed_precision_layer : bool, optional
        Force (True) or forbid (False) the mixed-precision spectral layer. By default
        it is used when the precision is not "full", a precision schedule is set or
        the spectral weights are stored in complex32,
        and with "full" and no schedule the model is exactly upstream's.

    Returns
    -------
    torch.nn.Module
    """
    model_cfg = _as_dict(config["model"] if isinstance(config, dict) else config.model)
    arch = str(model_cfg.pop("model_arch", model_cfg.pop("arch", ""))).lower()
    registry = BaseModel._models
    if arch not in registry:
        raise ValueError(
            f"Invalid model.model_arch={arch!r}; allowed values: {', '.join(sorted(registry))}."
        )
    cls = registry[arch]

    mode = check_choice(
        "model.fno_block_precision", model_cfg.pop("fno_block_precision", "full"), PRECISION_MODES
    )
    half_dtype = normalize_half_dtype(model_cfg.pop("half_dtype", "auto"), key="model.half_dtype")
    stabilizer = normalize_stabilizer(model_cfg.pop("stabilizer", None), key="model.stabilizer")
    weight_dtype = normalize_spectral_weight_dtype(model_cfg.pop("spectral_weight_dtype", "complex64"),
                                                   key="model.spectral_weight_dtype")

    data_channels = model_cfg.pop("data_channels")
    patching_levels = _get(_get(config, "patching"), "levels", 0) or 0
    if patching_levels:
        data_channels *= patching_levels + 1
    model_cfg["in_channels"] = data_channels

    schedule = _get(_get(config, "opt"), "precision_schedule", None)
    params, takes_any = _constructor_params(cls)
    if mixed_precision_layer is None:
        # a stabilizer on a model whose constructor has none (UNO) is applied by our layer
        needs_layer_stabilizer = stabilizer is not None and "stabilizer" not in params
        mixed_precision_layer = (mode != "full" or bool(schedule) or needs_layer_stabilizer
                                 or weight_dtype != "complex64")

    unknown = sorted(k for k in model_cfg if k not in params)
    if unknown and not takes_any:
        raise ValueError(
            f"config.model has keys {unknown} that {cls.__name__} does not accept; "
            f"its arguments are: {', '.join(params)}."
        )

    if not mixed_precision_layer:
        if weight_dtype != "complex64":
            raise ValueError(f"model.spectral_weight_dtype={weight_dtype!r} needs the mixed-precision spectral "
                             "layer; do not pass mixed_precision_layer=False.")
        # exactly upstream: pass the flags through where the constructor takes them
        if "fno_block_precision" in params:
            model_cfg["fno_block_precision"] = mode
        if "stabilizer" in params:
            model_cfg["stabilizer"] = stabilizer
        if mode != "full" and "fno_block_precision" not in params:
            raise ValueError(f"{cls.__name__} has no fno_block_precision argument.")
        return cls(**model_cfg)

    from ..layers.spectral_conv import MixedPrecisionSpectralConv
    from ..precision import set_precision

    layer_kwarg = _spectral_layer_kwarg(cls)
    if layer_kwarg is None:
        raise ValueError(
            f"model.model_arch={arch!r} ({cls.__name__}) takes no spectral layer "
            "(conv_module / integral_operator), so it cannot run in mixed precision; "
            "use fno_block_precision='full'."
        )
    model_cfg[layer_kwarg] = MixedPrecisionSpectralConv
    if "operator_block" in params:
        # upstream UNO stores integral_operator but never hands it to its blocks:
        # give the blocks our layer directly
        block = model_cfg.get("operator_block", params["operator_block"].default)
        model_cfg["operator_block"] = functools.partial(block, conv_module=MixedPrecisionSpectralConv)
    model = cls(**model_cfg)
    set_precision(model, mode, half_dtype=half_dtype, stabilizer=stabilizer)
    if weight_dtype != "complex64":
        set_spectral_weight_dtype(model, weight_dtype)
    return model
