"""Validate every enumerated field of a training config before anything is built.

zencfg checks types (an int field gets an int); this module checks values: each
enumerated flag against its allowed values, with the plugin's one error format
(:func:`neuralop_mp.vocabulary.check_choice`: key, bad value, allowed values), the
plugin's precision keys through :meth:`PrecisionPolicy.from_config`, the precision
schedule through :meth:`PrecisionSchedule.from_config`, and the few numeric ranges
and list lengths that would otherwise fail deep inside training.

Allowed values that upstream defines are read from upstream at run time, so they
follow the installed version: normalization layers and skip connections from the
``Literal`` annotations of ``FNO``'s constructor, factorizations from tltorch's
registry of factorized tensors.
"""
import inspect
import math
import typing

import torch

from neuralop_mp.precision_policy import PrecisionPolicy
from neuralop_mp.run_setup import parse_device
from neuralop_mp.vocabulary import (check_choice, check_each_once, none_if_null, normalize_flag, normalize_recompute,
                                   normalize_recompute_chunk_points)

from .grid_checks import check_grid_settings

TRAINING_LOSSES = ("h1", "l2")
SCHEDULERS = ("StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "none")
# upstream compares positional_embedding with "grid" and names these two in its error,
# but defines no list of either
POSITIONAL_EMBEDDINGS = ("grid", None)
IMPLEMENTATIONS = ("factorized", "reconstructed")
DEVICES = ("cpu", "cuda", "cuda:<index>", "auto")

_MISSING = object()


def _literal_choices(cls, argument):
    """The values of a ``Literal[...]`` annotation of ``cls.__init__``'s ``argument``,
    plus None when that is the argument's default."""
    param = inspect.signature(cls.__init__).parameters[argument]
    values = tuple(typing.get_args(param.annotation))
    if param.default is None and None not in values:
        values += (None,)
    return values


def upstream_choices():
    """Allowed values of the model fields that upstream defines, read from the installed version."""
    from neuralop.models import FNO

    from neuralop_mp.layers.input_checks import factorization_choices

    skips = _literal_choices(FNO, "fno_skip")
    dropped = _unbuildable_norms()
    return {
        "norm": tuple(norm for norm in _literal_choices(FNO, "norm") if norm not in dropped),
        "fno_skip": skips,
        "channel_mlp_skip": _literal_choices(FNO, "channel_mlp_skip"),
        "horizontal_skip": skips,  # UNO's argument is not annotated; it builds the same skips
        "factorization": factorization_choices(),  # the spectral layer's own list
    }


def _unbuildable_norms():
    """``{norm: why}``: the values of ``FNO``'s ``norm`` annotation that it cannot build. Its
    blocks make ``ada_in`` from ``ada_in_features``, which FNO (and so TFNO and UNO) does not
    pass on: the build failed after the data load. Read from the installed FNO's signature."""
    from neuralop.models import FNO

    if "ada_in_features" in inspect.signature(FNO.__init__).parameters:
        return {}
    return {"ada_in": "FNO takes no ada_in_features, the embedding size AdaIN needs, so it cannot build it"}


def _check_optional_choice(key, value, allowed, *, ignore_case=False):
    """``value`` (a spelling of None read as None) checked against ``allowed``
    (:func:`~neuralop_mp.vocabulary.check_choice`; ``ignore_case``: returned as allowed spells it)."""
    return check_choice(key, none_if_null(value), allowed, ignore_case=ignore_case)


def _is_finite(value):
    # math.isfinite on a huge int overflows; every int is finite (a numpy or 0-d tensor float is a float here)
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    try:
        return math.isfinite(value)
    except (TypeError, ValueError, OverflowError):  # no number: the comparisons that follow name it
        return True


def _check_positive(key, value, *, allow_zero=False):
    """``value`` > 0 (>= 0 with ``allow_zero``), and finite when it is a float: NaN fails
    every comparison and inf passes these, and either reaches torch only as a traceback."""
    if not _is_finite(value) or not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        number = "" if isinstance(value, int) and not isinstance(value, bool) else "a finite number "
        raise ValueError(f"Invalid {key}={value!r}; it must be {number}{bound}.")


def _field(section, name):
    return getattr(section, name, _MISSING)


def validate_model(model, prefix="model", *, training=True):
    """Check the enumerated fields of a model section (those it has), and that its ``model_arch``
    builds from it (:func:`_check_architecture`; ``training``: and that the training loop can run it)."""
    _check_architecture(model, str(model.model_arch).lower(), prefix, training=training)
    policy = PrecisionPolicy.from_config(model, prefix=prefix)
    enumerated = {name: (allowed, name == "factorization") for name, allowed in upstream_choices().items()}
    enumerated["positional_embedding"] = (POSITIONAL_EMBEDDINGS, False)
    enumerated["implementation"] = (IMPLEMENTATIONS, False)
    unbuildable_norms = _unbuildable_norms()
    for name, (allowed, ignore_case) in enumerated.items():
        value = _field(model, name)
        reason = unbuildable_norms.get(value) if name == "norm" and isinstance(value, str) else None
        if reason is not None:  # a value upstream lists: said why it is not allowed
            raise ValueError(f"Invalid {prefix}.norm={value!r} ({reason}); allowed values: "
                             f"{', '.join(map(repr, allowed))}.")
        if value is not _MISSING:
            _check_optional_choice(f"{prefix}.{name}", value, allowed, ignore_case=ignore_case)
    recompute = _field(model, "recompute")
    if recompute is not _MISSING:
        normalize_recompute(recompute, key=f"{prefix}.recompute")
    chunk_points = _field(model, "recompute_chunk_points")
    if chunk_points is not _MISSING:
        normalize_recompute_chunk_points(chunk_points, "none" if recompute is _MISSING else normalize_recompute(recompute),
                                         key=f"{prefix}.recompute_chunk_points", recompute_key=f"{prefix}.recompute")
    return policy


# what a training sample hands the model's forward (the trainer passes the keys it takes)
SAMPLE_KEYS = ("x", "y")


def _unbuildable_reason(cls, training=True):
    """Why no config can build ``cls`` (a registered model class), or None: its constructor needs
    a model (UQNO's ``base_model``), which no config value is; with ``training``, also why the
    package's training loop cannot run it: its forward needs inputs other than a sample's (GINO's
    and FNOGNO's point clouds), which a loop of the user's own may give."""
    from torch import nn

    forward = inspect.signature(cls.forward).parameters
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    needs = [name for name, p in list(forward.items())[1:]
             if p.default is p.empty and p.kind in named and name not in SAMPLE_KEYS]
    if needs and training:
        return (f"{cls.__name__}'s forward needs {', '.join(needs)}; neuralop-mp's training loop gives a sample's "
                f"{' and '.join(SAMPLE_KEYS)}; for a loop of your own, load_config(..., training=False) loads it "
                "with a model section whose keys are its arguments")
    from neuralop_mp.models.constructor_args import constructor_params

    params, _ = constructor_params(cls)
    models = [name for name, p in params.items() if p.default is p.empty and isinstance(p.annotation, type)
              and issubclass(p.annotation, nn.Module)]
    if models:
        return f"{cls.__name__} needs {', '.join(models)}, a model, which no config value is"
    return None


def trainable_architectures(training=True):
    """The names of the model registry that a config section can build and (``training``) the
    package's training loop can run: upstream's registry less those :func:`_unbuildable_reason`
    refuses (read from the installed version)."""
    from neuralop.models.base_model import BaseModel

    import neuralop_mp  # noqa: F401  (registers "uno")

    return tuple(sorted(name for name, cls in BaseModel._models.items()
                        if _unbuildable_reason(cls, training) is None))


def _check_architecture(model, arch, prefix="model", training=True):
    """Refuse, before any data loads, a ``model_arch`` that is not registered or that no config
    can build or (``training``) train (:func:`_unbuildable_reason`), and a section whose fields cannot build it
    (:func:`_section_problem`: ``uno`` with FNOConfig's ``n_modes``), naming a section class that
    can. Each failed when the model was built, after the data."""
    from neuralop.models.base_model import BaseModel

    from neuralop_mp.configs.zencfg_compat import category, config_fields, select_subclass, subclass_choices

    allowed = trainable_architectures(training)  # first: it registers "uno"
    cls = BaseModel._models.get(arch)
    reason = None if cls is None else _unbuildable_reason(cls, training)
    if reason is not None:  # a registered name: said why it is not allowed
        raise ValueError(f"Invalid {prefix}.model_arch={arch!r} ({reason}); allowed values: "
                         f"{', '.join(map(repr, allowed))}.")
    check_choice(f"{prefix}.model_arch", arch, allowed)
    problem = _section_problem(model, cls, prefix)
    if problem is None:
        return
    # a section class whose own fields build this architecture, where the config's category has one
    section, base = type(model), category(type(model))
    fits = [name for name in subclass_choices(base) if name not in (base.__name__, section.__name__)
            and str(config_fields(select_subclass(base, name)).get("model_arch", (None, None))[1]).lower() == arch
            and _section_problem(select_subclass(base, name), cls, prefix) is None]
    hint = f" Select its section with --{prefix} {fits[0]}." if fits else ""
    raise ValueError(f"Invalid {prefix}.model_arch={arch!r} with the section {section.__name__}: {problem}{hint}")


def _section_problem(section, cls, prefix="model"):
    """What keeps the model section ``section`` (class or instance) from building ``cls``, or None:
    keys its constructor does not take (the rule of :func:`~neuralop_mp.get_model`), or a required
    argument the section lacks."""
    from neuralop_mp.configs.zencfg_compat import config_fields
    from neuralop_mp.models.constructor_args import constructor_params
    from neuralop_mp.models.registry import CONFIG_ONLY_KEYS, unaccepted_keys_error

    keys = [name for name in config_fields(section) if name not in CONFIG_ONLY_KEYS] + ["in_channels"]
    error = unaccepted_keys_error(cls, keys)
    if error is not None:
        return str(error)
    params, _ = constructor_params(cls)
    missing = [name for name, p in params.items() if p.default is p.empty and name not in keys]
    return f"config.{prefix} lacks {', '.join(missing)}, which {cls.__name__} needs." if missing else None


def _owned_choices():
    """Allowed values defined by the modules that consume them, so the lists never drift."""
    from neuralop_mp.optim.factory import list_optimizers
    from neuralop_mp.training.trainer import LOSS_SCALING

    return {
        "optimizer": tuple(list_optimizers()),
        "loss_scaling": tuple(LOSS_SCALING),
    }


def validate_opt(opt):
    """Check optimizer, scheduler, loss, schedule and loss-scaling settings."""
    for name, allowed in _owned_choices().items():
        check_choice(f"opt.{name}", getattr(opt, name), allowed)
    check_choice("opt.training_loss", opt.training_loss, TRAINING_LOSSES)
    scheduler = none_if_null(opt.scheduler)
    check_choice("opt.scheduler", "none" if scheduler is None else scheduler, SCHEDULERS)
    _check_positive("opt.n_epochs", opt.n_epochs)
    _check_positive("opt.learning_rate", opt.learning_rate)
    _check_positive("opt.weight_decay", opt.weight_decay, allow_zero=True)
    _check_positive("opt.eval_interval", opt.eval_interval)
    from neuralop_mp.optim.settings import check_config_fields

    check_config_fields(opt)  # the optimizer's own checks of every opt.tensorgrad_* field
    _check_settings_read(opt)
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        raise ValueError(f"Invalid opt.betas={list(opt.betas)!r}; expected two values in [0, 1).")
    validate_precision_schedule(opt.precision_schedule)
    validate_update_in_backward(opt)


def _check_settings_read(opt):
    """A TensorGRaD setting changed from its default that ``opt.optimizer`` does not read (AdamW
    reads none; galore and sparse drop one part) would be recorded in the run and ignored:
    refused, as ``neuralop-mp run`` refuses its ``--mp.tensorgrad_*`` flags. A config carries
    every field: only the values other than the default were set."""
    from neuralop_mp.optim.factory import unread_settings_error
    from neuralop_mp.optim.settings import CONFIG_OPTIONS

    changed = {option.config_field: getattr(opt, option.config_field) for option in CONFIG_OPTIONS
               if hasattr(opt, option.config_field) and getattr(opt, option.config_field) != option.default}
    error = unread_settings_error(opt.optimizer, changed, "opt.optimizer", "opt.")
    if error is not None:
        raise error


def validate_update_in_backward(opt):
    """``opt.update_in_backward`` as a bool; ValueError up front for the opt settings it
    cannot be combined with (explicit loss scaling, TensorGRaD's skip of non-finite
    gradients). "auto" loss scaling is checked by the trainer, once it knows whether
    float16 is used."""
    update_in_backward = normalize_flag(getattr(opt, "update_in_backward", False), "opt.update_in_backward")
    if update_in_backward:
        from neuralop_mp.optim.update_in_backward import check_update_in_backward_settings

        check_update_in_backward_settings(loss_scaling=opt.loss_scaling, optimizer_kind=opt.optimizer,
                                          nonfinite_grad=getattr(opt, "tensorgrad_nonfinite_grad", None),
                                          prefix="opt.")
    return update_in_backward


def validate_precision_schedule(value):
    """Parse ``opt.precision_schedule``; return the schedule or None."""
    from neuralop_mp.build_steps import parse_precision_schedule

    return parse_precision_schedule(value)


def validate_data(data):
    """The loader must exist, sizes must be positive and the per-test-set lists must line up."""
    _check_loader(data)
    for key in ("n_train", "batch_size", "train_resolution"):
        _check_positive(f"data.{key}", getattr(data, key))
    lengths = {k: len(getattr(data, k)) for k in ("test_resolutions", "n_tests", "test_batch_sizes")}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            "data.test_resolutions, data.n_tests and data.test_batch_sizes need one entry per "
            f"test set; got lengths {lengths}."
        )
    for key in ("test_resolutions", "n_tests", "test_batch_sizes"):
        for value in getattr(data, key):
            _check_positive(f"data.{key}", value)
    # the test loaders are keyed by resolution: a second set would replace the first
    check_each_once(f"data.test_resolutions={list(data.test_resolutions)!r}", data.test_resolutions)
    seed = _field(data, "seed")
    if seed is not _MISSING:
        # numpy's SeedSequence (the generators' per-sample seeds) takes any integer >= 0
        _check_positive("data.seed", seed, allow_zero=True)


def _check_loader(data):
    """``data.loader_name()`` must name one of the built-in loaders of ``neuralop_mp.data`` (a data
    section of one's own, for another dataset, raised AttributeError in build_data after the run
    folder was made; another function of the module, e.g. ``generate_darcy``, failed later)."""
    loader_name = getattr(data, "loader_name", None)
    if not callable(loader_name):
        return
    from neuralop_mp.data.loaders import LOADER_FILES

    name = loader_name()
    if not isinstance(name, str) or name not in LOADER_FILES:  # the loaders whose files eval and the records know
        raise ValueError(
            f"Invalid data section {type(data).__name__}: its loader_name() is {name!r}, which names no loader of "
            f"neuralop_mp.data; allowed values: {', '.join(sorted(LOADER_FILES))}. The CLI trains these datasets "
            "(your own files in their layout: docs/data.md); for other data, train from Python with "
            "MixedPrecisionTrainer (docs/training.md).")


def validate_device(device):
    # the run's own parse (run_setup.parse_device), in the config's error format
    try:
        parse_device(device)
    except ValueError:
        check_choice("device", device, DEVICES)


def validate_config(config, *, training=True):
    """Raise ValueError naming the key, value and allowed values of the first bad field.

    Parameters
    ----------
    config : TrainConfig
        A loaded config (see :func:`neuralop_mp.configs.load_config`).
    training : bool
        Also refuse a ``model.model_arch`` that the package's training loop cannot run (a
        forward that needs inputs other than a sample's ``x`` and ``y``). False for a config
        whose model :func:`~neuralop_mp.get_model` builds for a training loop of the caller's own.

    Returns
    -------
    config
        The same object, for chaining.
    """
    validated_precision_policy(config, training=training)
    return config


def validated_precision_policy(config, *, training=True):
    """Validate ``config`` as :func:`validate_config` does; return its precision policy.

    For a caller that goes on to build from the config: the precision keys of
    ``config.model`` are parsed once, here.

    Returns
    -------
    PrecisionPolicy
    """
    from .unknown_fields import refuse_unknown_fields

    refuse_unknown_fields(config)  # a config made in Python too: a key no field has would be ignored
    validate_device(config.device)
    policy = validate_model(config.model, training=training)
    validate_opt(config.opt)
    validate_data(config.data)
    _check_positive("patching.levels", config.patching.levels, allow_zero=True)
    validate_value_ranges(config)
    check_grid_settings(config)
    check_update_in_backward_scaling(config, policy)  # what needs no device
    return policy


def check_update_in_backward_scaling(config, policy, device=None):
    """``opt.update_in_backward`` beside ``opt.loss_scaling`` "auto" where the trainer will scale the
    loss: it refuses it then, after the data are loaded; refused here, by the rule ``run`` applies
    (:func:`~neuralop_mp.optim.update_in_backward.auto_scaling_refusal`). Complex32 spectral weights
    scale on any device (the config's validation: ``device`` None); a float16 half type in a run that
    computes in one only on the ``device`` the run trains on (``neuralop-mp train`` passes it: a
    config trained on a CPU with half type "auto" evaluates on a CUDA machine). "auto" precision is
    decided from data: left to the trainer."""
    opt = config.opt
    if opt.loss_scaling != "auto" or not normalize_flag(getattr(opt, "update_in_backward", False),
                                                         "opt.update_in_backward"):
        return
    from neuralop_mp.build_steps import parse_precision_schedule
    from neuralop_mp.optim.update_in_backward import auto_scaling_refusal

    schedule = parse_precision_schedule(opt.precision_schedule)
    mode = policy.fno_block_precision
    asked = (f"opt.precision_schedule={opt.precision_schedule!r}" if schedule is not None
             else f"model.fno_block_precision={mode!r}")
    refusal = auto_scaling_refusal(
        runs_half=schedule.uses_half if schedule is not None else mode in ("mixed", "half"),
        half_is_float16=device is not None and policy.half_torch_dtype(device) == torch.float16, asked=asked,
        complex32_weights=policy.weight_torch_dtype == torch.complex32,
        names={"half_dtype": "model.half_dtype", "spectral_weight_dtype": "model.spectral_weight_dtype",
               "loss_scaling": "opt.loss_scaling", "update_in_backward": "opt.update_in_backward"})
    if refusal is not None:
        raise ValueError(refusal)


# ---------------------------------------------------------------- value ranges
# Values of the right type that build a model or a schedule that silently does
# something else than asked: a (4, 4, 0, 3) spectral weight, no spectral layer at
# all, an ignored negative padding, a learning rate that alternates sign.

def _int_at_least(key, value, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"Invalid {key}={value!r}; allowed values: integers >= {minimum}.")


def validate_value_ranges(config):
    """Check the numeric ranges of model and optimizer fields that types cannot catch.

    ``opt.precision_schedule`` must reach its last phase within ``opt.n_epochs``;
    ``model.n_modes`` entries (and each ``uno_n_modes`` entry) >= 1, ``model.n_layers``
    >= 1, ``model.hidden_channels`` >= 1, ``model.data_channels`` and ``model.out_channels``
    >= 1, ``model.domain_padding`` >= 0 (scalar or per dimension), ``model.rank`` > 0
    (with a factorization, one the spectral layer accepts on every weight:
    :func:`_check_factorized_rank`), the widths the model derives from ``hidden_channels``
    (:func:`_check_model_widths`), UNO's per-layer lists (``n_layers`` entries;
    ``uno_out_channels`` >= 1, ``uno_scalings`` > 0; with ``separable``, every layer as wide
    out as in), ``model.channel_mlp_dropout`` in [0, 1),
    ``opt.gamma`` in (0, 1] and ``opt.step_size`` >= 1 when ``opt.scheduler`` is StepLR,
    ``opt.scheduler_T_max`` >= 1 when it is CosineAnnealingLR, ``opt.gamma`` in (0, 1)
    and ``opt.scheduler_patience`` >= 0 when it is ReduceLROnPlateau,
    ``opt.max_consecutive_skips`` >= 1 and ``patching.padding`` >= 0. Every float among
    them must be finite.

    Raises
    ------
    ValueError
        Naming the key, the bad value and the allowed ones.
    """
    model, opt = config.model, config.opt
    modes = _field(model, "n_modes")
    if modes is not _MISSING and modes is not None:
        modes = list(modes) if isinstance(modes, (list, tuple)) else [modes]
        if not modes or any(isinstance(m, bool) or int(m) != m or m < 1 for m in modes):
            raise ValueError(f"Invalid model.n_modes={modes!r}; allowed values: one integer >= 1 per dimension.")
    uno_modes = _field(model, "uno_n_modes")
    if uno_modes is not _MISSING and uno_modes is not None:
        for layer in uno_modes:
            if any(isinstance(m, bool) or int(m) != m or m < 1 for m in layer):
                raise ValueError(f"Invalid model.uno_n_modes entry {list(layer)!r}; allowed values: integers >= 1.")
    for key in ("n_layers", "hidden_channels", "data_channels", "out_channels", "lifting_channels",
                "projection_channels"):
        value = _field(model, key)
        if value is not _MISSING and value is not None:
            _int_at_least(f"model.{key}", value, 1)
    padding = none_if_null(_field(model, "domain_padding"))
    if padding is not _MISSING and padding is not None:
        values = list(padding) if isinstance(padding, (list, tuple)) else [padding]
        if not all(_is_finite(v) and v >= 0 for v in values):
            raise ValueError(f"Invalid model.domain_padding={padding!r}; allowed values: None or finite "
                             "fractions >= 0.")
    rank = _field(model, "rank")
    if rank is not _MISSING and rank is not None and not (_is_finite(rank) and rank > 0):
        raise ValueError(f"Invalid model.rank={rank!r}; allowed values: a finite fraction > 0 or an integer >= 1.")
    _check_uno_layers(model)
    _check_model_widths(model)
    _check_factorized_rank(model, rank)
    schedule = validate_precision_schedule(opt.precision_schedule)
    if schedule is not None and isinstance(opt.n_epochs, int) and opt.n_epochs >= 1:
        try:
            # a last phase that never runs: refused before any data is read; the trainer warns of skipped ones
            schedule.check_fits(opt.n_epochs, warn=False)
        except ValueError as error:
            raise ValueError(f"Invalid opt.precision_schedule={str(schedule)!r} with opt.n_epochs={opt.n_epochs}: "
                             f"{error}") from None
    scheduler = none_if_null(opt.scheduler)
    if scheduler == "StepLR":
        gamma, step_size = _field(opt, "gamma"), _field(opt, "step_size")
        if gamma is not _MISSING and not 0 < gamma <= 1:
            raise ValueError(f"Invalid opt.gamma={gamma!r} with StepLR; allowed values: 0 < gamma <= 1 "
                             "(the learning rate is multiplied by gamma every step_size epochs).")
        if step_size is not _MISSING:
            _int_at_least("opt.step_size", step_size, 1)
    elif scheduler == "CosineAnnealingLR":
        t_max = _field(opt, "scheduler_T_max")
        if t_max is not _MISSING:  # 0 divides by zero at the first scheduler step
            _int_at_least("opt.scheduler_T_max", t_max, 1)
    elif scheduler == "ReduceLROnPlateau":
        gamma, patience = _field(opt, "gamma"), _field(opt, "scheduler_patience")
        if gamma is not _MISSING and not 0 < gamma < 1:  # torch refuses a factor >= 1
            raise ValueError(f"Invalid opt.gamma={gamma!r} with ReduceLROnPlateau; allowed values: 0 < gamma < 1 "
                             "(the learning rate is multiplied by gamma when the loss stops improving).")
        if patience is not _MISSING:
            _int_at_least("opt.scheduler_patience", patience, 0)
    skips = _field(opt, "max_consecutive_skips")
    if skips is not _MISSING:  # the trainer's own bound (MixedPrecisionTrainer)
        _int_at_least("opt.max_consecutive_skips", skips, 1)
    dropout = _field(model, "channel_mlp_dropout")
    if dropout is not _MISSING and dropout is not None and not 0 <= dropout < 1:
        raise ValueError(f"Invalid model.channel_mlp_dropout={dropout!r}; allowed values: 0 <= p < 1 "
                         "(the probability of zeroing a channel-MLP activation).")
    padding = _field(config.patching, "padding")
    if padding is not _MISSING and not (_is_finite(padding) and padding >= 0):
        raise ValueError(f"Invalid patching.padding={padding!r}; allowed values: finite fractions >= 0 "
                         "(the padding of each patch, as a fraction of its size).")


def _spectral_layer_shapes(model):
    """``[(in_channels, out_channels, n_modes), ...]`` of the model section's spectral layers, or
    None for a section of the user's without the fields that give them (the layer checks then)."""
    hidden = _field(model, "hidden_channels")
    widths, uno_modes = _field(model, "uno_out_channels"), _field(model, "uno_n_modes")
    if widths not in (_MISSING, None) and uno_modes not in (_MISSING, None):
        layers = _uno_layer_shapes(hidden, widths, uno_modes)
    else:  # FNO/TFNO: every spectral weight has one shape
        layers = [(hidden, hidden, _field(model, "n_modes"))]
    if not layers or _MISSING in (hidden, layers[0][2]):
        return None
    return layers


def _check_factorized_rank(model, rank):
    """With a factorization, ``model.rank`` must be one the spectral layer accepts on every
    spectral weight's shape (UNO's differ from layer to layer): checked here, in every
    precision and before the data load, by the layer's own check
    (:func:`~neuralop_mp.layers.input_checks.check_layer_arguments`). The plugin's layer runs it
    when the model is built, after the data, in mixed and half precision only; upstream's
    full-precision layer checks nothing, and built a fraction above 1, or an integer rank far
    above any the weight can use (Tucker rank 100 on an (8, 8, 4, 3) weight: 100 million
    parameters), silently, in as much memory as it took."""
    factorization = none_if_null(_field(model, "factorization"))
    if factorization in (_MISSING, None) or rank in (_MISSING, None):
        return
    from neuralop_mp.layers.input_checks import check_layer_arguments

    layers = _spectral_layer_shapes(model)
    if layers is None:
        return
    separable = _field(model, "separable")
    separable = separable is not _MISSING and normalize_flag(separable, "model.separable")
    fixed = _field(model, "fixed_rank_modes")
    for in_channels, out_channels, modes in layers:
        try:
            check_layer_arguments(in_channels, out_channels, modes, rank, factorization, separable,
                                  fixed_rank_modes=False if fixed is _MISSING else fixed)
        except ValueError as error:  # the layer names its own arguments: say which keys set them
            raise ValueError(f"model.rank: {error}") from None


def _uno_layer_shapes(hidden, widths, modes):
    """``[(in_channels, out_channels, n_modes), ...]`` of UNO's spectral layers: as upstream's
    UNO builds them with its default horizontal skips (layer ``n - 1 - i`` also takes layer
    ``i``'s output, for ``i < n // 2``; the config has no field for another map)."""
    skips = {len(widths) - i - 1: i for i in range(len(widths) // 2)}
    shapes, previous = [], hidden
    for i, (out_channels, layer_modes) in enumerate(zip(widths, modes)):
        in_channels = previous + (widths[skips[i]] if i in skips else 0)
        shapes.append((in_channels, out_channels, layer_modes))
        previous = out_channels
    return shapes


def _check_uno_layers(model):
    """UNO's per-layer lists: one entry per layer (upstream asserts it), widths >= 1,
    finite scalings > 0 (a scaling <= 0 asks for an empty or negative grid) and, with
    ``separable``, every spectral layer as wide out as in (a separable weight has one
    channel axis: upstream refuses another layer when the model is built, after the data)."""
    n_layers = _field(model, "n_layers")
    for key in ("uno_out_channels", "uno_n_modes", "uno_scalings"):
        value = _field(model, key)
        if value is not _MISSING and value is not None and isinstance(n_layers, int) and len(value) != n_layers:
            raise ValueError(f"Invalid model.{key}={list(value)!r}; allowed values: one entry per layer "
                             f"(model.n_layers={n_layers}), got {len(value)}.")
    widths = _field(model, "uno_out_channels")
    if widths is not _MISSING and widths is not None:
        for width in widths:
            if isinstance(width, bool) or int(width) != width or width < 1:
                raise ValueError(f"Invalid model.uno_out_channels={list(widths)!r}; allowed values: "
                                 "integers >= 1, one per layer.")
    scalings = _field(model, "uno_scalings")
    if scalings is not _MISSING and scalings is not None:
        for layer in scalings:
            factors = list(layer) if isinstance(layer, (list, tuple)) else [layer]
            if not all(_is_finite(f) and f > 0 for f in factors):
                raise ValueError(f"Invalid model.uno_scalings entry {factors!r}; allowed values: finite "
                                 "numbers > 0 (the resolution scaling of a layer, per dimension).")
    separable = _field(model, "separable")
    if widths in (_MISSING, None) or separable is _MISSING or not normalize_flag(separable, "model.separable"):
        return
    for index, (in_channels, out_channels, _) in enumerate(_spectral_layer_shapes(model) or ()):
        if in_channels != out_channels:
            raise ValueError(
                f"Invalid model.separable=True with model.uno_out_channels={list(widths)!r} (model.hidden_channels="
                f"{_field(model, 'hidden_channels')}): UNO layer {index} takes {in_channels} channels (the previous "
                f"layer's, plus a horizontal skip's where it has one) and gives {out_channels}; a separable spectral "
                "weight needs the two equal in every layer. Allowed: model.separable false, or widths that keep them "
                "equal.")


def _check_model_widths(model):
    """The widths a model derives from a ratio: upstream sizes layers from them and fails
    with a "negative dimension" traceback, or an empty layer at the first forward.

    ``lifting_channel_ratio`` >= 0 (``int(ratio * hidden_channels)`` of 0: no lifting MLP,
    as upstream allows), ``projection_channel_ratio`` with ``int(ratio * hidden_channels)``
    >= 1 (the projection MLP always has a hidden layer) and, with the channel MLP on,
    ``channel_mlp_expansion`` with ``round(expansion * width)`` >= 1 for the width of every
    block (``hidden_channels``, or each of UNO's ``uno_out_channels``); every ratio finite.
    """
    hidden = _field(model, "hidden_channels")
    hidden = hidden if isinstance(hidden, int) and hidden >= 1 else None
    lifting = _field(model, "lifting_channel_ratio")
    if lifting is not _MISSING:
        if not (_is_finite(lifting) and lifting >= 0):
            raise ValueError(f"Invalid model.lifting_channel_ratio={lifting!r}; allowed values: finite numbers "
                             ">= 0 (the lifting width / hidden_channels; 0: no lifting MLP).")
    projection = _field(model, "projection_channel_ratio")
    if projection is not _MISSING:
        if not (_is_finite(projection) and projection > 0) or (hidden and int(projection * hidden) < 1):
            raise ValueError(f"Invalid model.projection_channel_ratio={projection!r} with model.hidden_channels="
                             f"{hidden}; allowed values: finite numbers > 0 with int(ratio * hidden_channels) >= 1 "
                             "(the width of the projection MLP's hidden layer).")
    expansion = _field(model, "channel_mlp_expansion")
    if expansion is _MISSING:
        return
    if not (_is_finite(expansion) and expansion >= 0):
        raise ValueError(f"Invalid model.channel_mlp_expansion={expansion!r}; allowed values: finite numbers >= 0 "
                         "(the channel MLP's hidden width / the block's width; > 0 with the channel MLP on).")
    use_channel_mlp = _field(model, "use_channel_mlp")  # UNO has none: its blocks always have one
    if use_channel_mlp is not _MISSING and not normalize_flag(use_channel_mlp, "model.use_channel_mlp"):
        return
    widths = _field(model, "uno_out_channels")
    widths = list(widths) if widths is not _MISSING and widths is not None else [hidden]
    narrow = [w for w in widths if isinstance(w, int) and w >= 1 and round(w * expansion) < 1]
    if narrow:
        raise ValueError(f"Invalid model.channel_mlp_expansion={expansion!r} for a block of width {narrow[0]}; "
                         "allowed values: finite numbers > 0 with round(expansion * width) >= 1 "
                         "(the channel MLP's hidden width), or model.use_channel_mlp false.")
