"""Build a model by name from a config, as upstream's ``get_model`` does, plus the plugin keys.

:func:`get_model` is upstream's ``get_model`` plus the plugin's model keys in
``config.model`` (the fields of :class:`~neuralop_mp.PrecisionPolicy`:
``fno_block_precision``, ``half_dtype``, ``stabilizer``, ``spectral_weight_dtype``).
When they ask for anything but upstream's defaults (or a precision schedule is
configured), the model is the plugin's class for the architecture
(:mod:`neuralop_mp.models.mixed_precision_models`), which takes those keys as
constructor arguments, so its checkpoints keep them.
"""

from neuralop.models.base_model import BaseModel
from neuralop.models.base_model import available_models as _upstream_available_models

from ..layers.input_checks import check_rank_value
from ..precision_policy import PrecisionPolicy
from ..run_setup import parse_device
from ..vocabulary import check_int_at_least, none_if_null, normalize_recompute_chunk_points, read_key
from .constructor_args import check_flag_arguments, constructor_params
from .mixed_precision_models import PLUGIN_MODEL_CLASSES, build_in_settings, set_recompute_settings
from .recompute import check_recompute_mode
from .uno_registration import UNO

__all__ = ["UNO", "PLUGIN_MODEL_KEYS", "available_models", "get_model"]

# config.model keys that belong to the plugin (one list: the policy's fields)
PLUGIN_MODEL_KEYS = PrecisionPolicy.keys()
# config.model keys that get_model reads itself, none a constructor argument (data_channels gives in_channels):
# the one list of them, which get_model withholds from the constructor and the config's validation skips
CONFIG_ONLY_KEYS = ("model_arch", "arch", "recompute", "recompute_chunk_points", "data_channels", *PLUGIN_MODEL_KEYS)


def unaccepted_keys_error(cls, keys):
    """The ValueError for the constructor arguments ``keys`` (of ``config.model``, less
    :data:`CONFIG_ONLY_KEYS`) that ``cls`` does not take, or None where it takes them all (or
    takes any keyword: then they cannot be told apart)."""
    params, takes_any = constructor_params(cls)
    unknown = sorted(k for k in keys if k not in params)
    if not unknown or takes_any:
        return None
    return ValueError(f"config.model has keys {unknown} that {cls.__name__} does not accept; "
                      f"its arguments are: {', '.join(params)}.")


def available_models():
    """Names ``get_model`` accepts (upstream's plus the ones registered here)."""
    return _upstream_available_models()


def _no_arch_message(config, no_section, allowed):
    """Why ``config`` names no architecture: no ``model`` section (naming upstream's older layout,
    a top-level ``arch`` with a section of that name, where the config has it), or no ``model_arch``."""
    allowed = ", ".join(allowed)
    if not no_section:
        return f"config.model has no model_arch (the architecture to build); allowed values: {allowed}."
    older = none_if_null(read_key(config, "arch"))
    layout = "" if older is None else (
        f" (it has the older layout of upstream's config/default_config.py, arch={older!r} with the model's "
        f"arguments in a {str(older)!r} section: move them into 'model' with model_arch={older!r})")
    return (f"config has no 'model' section{layout}; get_model builds config.model, whose model_arch is one of: "
            f"{allowed}.")


def _run_device(config):
    """The device type the config's run computes on, which decides a ``half_dtype`` of "auto":
    ``config.device`` as ``neuralop-mp train`` reads it (:func:`~neuralop_mp.run_setup.parse_device`:
    "auto" is CUDA when available), CUDA when available for a config without one (upstream's configs)."""
    device = none_if_null(read_key(config, "device"))
    return parse_device("auto" if device is None else device).type


def get_model(config, *, mixed_precision_layer=None, precision_policy=None):
    """Build the model described by ``config.model``, as upstream's ``get_model`` does.

    Parameters
    ----------
    config : dict-like or zencfg config
        Must have ``model`` with ``model_arch`` (a registered name: "fno", "tfno",
        "uno", ...), ``data_channels`` and the model's constructor arguments. May
        have the plugin keys ``model.fno_block_precision`` ("full" | "mixed" |
        "half"), ``model.recompute`` ("none" | "fourier" | "block", see
        :func:`~neuralop_mp.models.recompute.set_recompute`) and, with "block",
        ``model.recompute_chunk_points`` (its ``chunk_points``), ``model.half_dtype``
        ("auto" | "float16" | "bfloat16"),
        ``model.stabilizer`` (None | "off" | "tanh"), ``model.spectral_weight_dtype``
        ("complex64" | "complex32"), and ``patching.levels`` (an integer >= 0: the
        model's in_channels are ``data_channels``, an integer >= 1, times levels + 1) and
        ``opt.precision_schedule``. A stabilizer of None (unset; also "None", "none",
        "null") is the mode's default, as ``neuralop-mp train`` runs the config:
        "tanh" for "half" in float16, none otherwise
        (:meth:`~neuralop_mp.PrecisionPolicy.with_mode_stabilizer`). With
        ``half_dtype="auto"`` the device decides (float16 on CUDA): the config's
        ``device`` ("auto", "cpu", "cuda", "cuda:N"), or CUDA when available for a
        config without one; the stabilizer built stays when the model moves to
        another device. "off" builds no stabilizer, whatever the mode (float16
        "half" without tanh).
    mixed_precision_layer : bool, optional
        Force (True) or forbid (False) the mixed-precision spectral layer. By default
        it is used when the plugin keys are not upstream's defaults or a precision
        schedule is set; otherwise the model is exactly upstream's. False with
        ``fno_block_precision`` "mixed" or "half" builds upstream's own mixed/half mode
        (CUDA only: it fails at the first forward on CPU), whose stabilizer is the
        config's as given (no mode default).
    precision_policy : PrecisionPolicy, optional
        The precision keys of ``config.model`` already parsed (by a caller that
        shares the policy with the schedule and the trainer); ``config.model``'s own
        precision keys are then ignored.

    Returns
    -------
    torch.nn.Module
        Upstream's class, or the plugin's class for the architecture
        (:class:`~neuralop_mp.models.MixedPrecisionFNO`, ``...TFNO``, ``...UNO``).

    Raises
    ------
    ValueError or TypeError
        For a config without a ``model`` section or ``model.model_arch`` (naming the
        registered names), and for a bad value of a key, naming it (TypeError for a
        ``model.data_channels`` or ``patching.levels`` that is no integer, and for an on/off
        key such as ``model.separable`` that is no bool, 0 or 1; ValueError for a factorization's
        ``model.rank`` <= 0, NaN or a fraction above 1).
    """
    from ..configs.zencfg_compat import section_dict  # the configs import the model classes

    # read as the runner reads it: zencfg 1.0 keeps upstream's "None" strings, which 0.7 made None
    section = read_key(config, "model")
    model_cfg = section_dict(section) or {}
    # what get_model reads itself (CONFIG_ONLY_KEYS); the rest are the constructor's arguments
    own = {key: model_cfg.pop(key) for key in CONFIG_ONLY_KEYS if key in model_cfg}
    named = [none_if_null(own.get(key)) for key in ("model_arch", "arch")]
    registry = BaseModel._models
    if all(name is None for name in named):
        raise ValueError(_no_arch_message(config, section is None, sorted(registry)))
    arch = str(next(name for name in named if name is not None)).lower()
    if arch not in registry:
        raise ValueError(
            f"Invalid model.model_arch={arch!r}; allowed values: {', '.join(sorted(registry))}."
        )
    cls = registry[arch]
    # before the (possibly large) model is built; set on the built model (upstream's classes take no such argument)
    recompute = check_recompute_mode(own.get("recompute"), key="model.recompute")
    chunk_points = normalize_recompute_chunk_points(own.get("recompute_chunk_points"), recompute,
                                                    key="model.recompute_chunk_points",
                                                    recompute_key="model.recompute")
    if precision_policy is None:
        given = set(PrecisionPolicy.keys()) & set(own)  # the settings the config itself gives
        policy, _ = PrecisionPolicy.pop_from(own, prefix="model")
    else:  # parsed by the caller: config.model's keys are not read again
        given = set(PrecisionPolicy.keys())
        policy = PrecisionPolicy.coerce(precision_policy)

    if "data_channels" not in own:  # upstream's name for the model's input channels (in_channels)
        raise ValueError("config.model needs data_channels: the input's channel count, an integer >= 1 "
                         "(the model's in_channels, times patching.levels + 1 with patching).")
    # as the missing-key message promises: 0, -1 or 1.5 would build a model that fails at its first forward
    data_channels = check_int_at_least("model.data_channels", own["data_channels"], minimum=1,
                                       unit="the input's channel count")
    patching_levels = none_if_null(read_key(read_key(config, "patching"), "levels", 0))
    if patching_levels is not None:
        patching_levels = check_int_at_least("patching.levels", patching_levels, minimum=0,
                                             unit="0: no patching")
        data_channels *= patching_levels + 1
    model_cfg["in_channels"] = data_channels

    # the plugin's classes and a user's registered subclass of one: always our layer
    ours = issubclass(cls, tuple(PLUGIN_MODEL_CLASSES.values()))
    schedule = none_if_null(read_key(read_key(config, "opt"), "precision_schedule"))
    params, _ = constructor_params(cls)
    if mixed_precision_layer is None:
        # a stabilizer on a model whose constructor has none (UNO) is applied by our layer
        needs_layer_stabilizer = policy.stabilizer == "tanh" and "stabilizer" not in params
        mixed_precision_layer = (ours or bool(schedule) or needs_layer_stabilizer
                                 or not policy.replace(stabilizer=None).is_default)


    error = unaccepted_keys_error(cls, model_cfg)
    if error is not None:
        raise error
    _check_model_values(arch, cls, model_cfg)

    if not mixed_precision_layer:
        policy = policy.applied()  # "off": upstream's stabilizer=None (upstream's FNOBlocks know no "off")
        # exactly upstream: upstream's own flags pass through where the constructor takes them
        upstream_flags = {key: value for key, value in policy.as_dict().items() if key in params}
        plugin_only = {key: value for key, value in policy.as_dict().items()
                       if key not in params and value != PrecisionPolicy.defaults()[key]}
        if ours or plugin_only:
            shown = ", ".join(f"model.{key}={value!r}" for key, value in plugin_only.items()) or repr(arch)
            raise ValueError(f"{shown} needs the mixed-precision spectral layer; do not pass "
                             "mixed_precision_layer=False.")
        return set_recompute_settings(cls(**model_cfg, **upstream_flags), recompute, chunk_points)

    plugin_cls = PLUGIN_MODEL_CLASSES.get(arch)
    if not ours and plugin_cls is None:  # the settings as given: before the mode's stabilizer is filled in
        raise _no_mixed_precision_version(arch, cls, policy, schedule)
    # an unset stabilizer is the mode's default, as `neuralop-mp train` runs the config: tanh in
    # float16 "half" (precision_policy.auto_stabilizer, the rule of the schedule's phases too); "off" is none
    resolved = policy.with_mode_stabilizer(lambda: _run_device(config))
    if resolved != policy:
        policy, given = resolved, given | {"stabilizer"}
    if ours:
        # the settings the config gives (a subclass's constructor may pick its own for the others)
        settings = {key: value for key, value in policy.as_dict().items() if key in given}
        return set_recompute_settings(build_in_settings(cls, (), model_cfg, settings), recompute, chunk_points)
    return set_recompute_settings(plugin_cls(**model_cfg, **policy.as_dict()), recompute, chunk_points)


def _check_model_values(arch, cls, model_cfg):
    """Refuse, before the model is built and whichever layer builds it (upstream's checks none of
    these), an on/off setting of ``config.model`` that is no bool
    (:func:`~neuralop_mp.models.constructor_args.check_flag_arguments`; it is made a Python bool in
    ``model_cfg``), and a factorization's rank of no kind tensorly-torch means
    (:func:`~neuralop_mp.layers.input_checks.check_rank_value`: a TFNO's ``rank=0`` built upstream's
    model with a divide-by-zero warning). A rank is checked where a factorization takes it: the
    config's ``factorization`` (``fno_factorization`` beside ``fno_rank``: GINO, FNOGNO), or the
    architecture's default (TFNO's "Tucker": its plugin class's signature holds upstream's defaults), and
    passed on as tensorly-torch takes it (a numpy number as the Python number it holds)."""
    params, _ = constructor_params(cls)
    check_flag_arguments("model", model_cfg, params)
    defaults, _ = constructor_params(PLUGIN_MODEL_CLASSES.get(arch, cls))
    for prefix in ("", "fno_"):
        rank_key, factorization_key = f"{prefix}rank", f"{prefix}factorization"
        if rank_key not in model_cfg:
            continue
        default = defaults[factorization_key].default if factorization_key in defaults else None
        factorization = none_if_null(model_cfg.get(factorization_key, default))
        if factorization is not None:  # a numpy number as the Python one: upstream's layer fails on a numpy float
            model_cfg[rank_key] = check_rank_value(model_cfg[rank_key], factorization, key=f"model.{rank_key}")


def _no_mixed_precision_version(arch, cls, policy, schedule):
    """The ValueError for an architecture without a plugin class asked for the mixed-precision
    layer: it names what asked for it, the ``policy`` keys not at their defaults and the
    ``schedule`` (a key alone, e.g. ``model.half_dtype='bfloat16'``, is no request for "mixed",
    and a message saying "only full precision" would not say which key to drop); where none did
    (a caller's ``mixed_precision_layer=True``), the precision the architecture runs in."""
    available = ", ".join(sorted(PLUGIN_MODEL_CLASSES))
    head = f"model.model_arch={arch!r} ({cls.__name__}) has no mixed-precision version"
    defaults = PrecisionPolicy.defaults()
    # stabilizer "off" is upstream's None: it asks for no layer of ours (get_model builds upstream's model with it)
    changed = {key: value for key, value in policy.as_dict().items()
               if value != defaults[key] and not (key == "stabilizer" and value == "off")}
    shown = [f"model.{key}={value!r}" for key, value in changed.items()]
    if schedule:
        shown.append(f"opt.precision_schedule={schedule!r}")
    if not shown:
        return ValueError(f"{head}, so it can only run in full precision (fno_block_precision='full', no schedule); "
                          f"mixed precision is available for: {available}.")
    it = "it" if len(shown) == 1 else "them"
    kept = f" (default{'s' if len(changed) > 1 else ''}: {', '.join(f'model.{k}={defaults[k]!r}' for k in changed)})"
    return ValueError(f"{head}: it runs as upstream's model, with the plugin's keys at their defaults, and the config "
                      f"sets {', '.join(shown)}. Leave {it} out{kept if changed else ''}; mixed precision is available "
                      f"for: {available}.")
