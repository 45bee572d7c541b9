"""Validate every enumerated field of a training config before anything is built.

zencfg checks types (an int field gets an int); this module checks values: each
enumerated flag against its allowed values, with the plugin's one error format
(:func:`neuralop_mp.precision.check_choice`: key, bad value, allowed values), the
precision schedule through :meth:`PrecisionSchedule.from_config`, and the few
numeric ranges and list lengths that would otherwise fail deep inside training.
"""
import torch

from neuralop_mp.layers.weight_storage import normalize_spectral_weight_dtype
from neuralop_mp.precision import (
    PRECISION_MODES,
    check_choice,
    normalize_half_dtype,
    normalize_stabilizer,
)

TRAINING_LOSSES = ("h1", "l2")
SCHEDULERS = ("StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "none")
NORMS = (None, "group_norm", "instance_norm", "ada_in")
SKIPS = ("linear", "identity", "soft-gating", None)
POSITIONAL_EMBEDDINGS = ("grid", None)
FACTORIZATIONS = (None, "dense", "tucker", "cp", "tt")
IMPLEMENTATIONS = ("factorized", "reconstructed")
DEVICES = ("cpu", "cuda", "cuda:<index>", "auto")

_MISSING = object()


def _none_if_null(value):
    """Configs spell "no value" as None, "None", "none", "null" or ""."""
    if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        return None
    return value


def _check_optional_choice(key, value, allowed, *, ignore_case=False):
    value = _none_if_null(value)
    probe = value.lower() if ignore_case and isinstance(value, str) else value
    if probe not in allowed:
        check_choice(key, value, allowed)  # raises with the standard message
    return value


def _check_positive(key, value, *, allow_zero=False):
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid {key}={value!r}; it must be {bound}.")


def _field(section, name):
    return getattr(section, name, _MISSING)


def validate_model(model, prefix="model"):
    """Check the enumerated fields of a model section (those it has)."""
    from neuralop.models.base_model import BaseModel

    import neuralop_mp  # noqa: F401  (registers "uno")

    check_choice(f"{prefix}.model_arch", str(model.model_arch).lower(), tuple(sorted(BaseModel._models)))
    check_choice(f"{prefix}.fno_block_precision", model.fno_block_precision, PRECISION_MODES)
    normalize_half_dtype(model.half_dtype, key=f"{prefix}.half_dtype")
    normalize_stabilizer(model.stabilizer, key=f"{prefix}.stabilizer")
    normalize_spectral_weight_dtype(model.spectral_weight_dtype, key=f"{prefix}.spectral_weight_dtype")
    enumerated = {
        "norm": (NORMS, False),
        "fno_skip": (SKIPS, False),
        "channel_mlp_skip": (SKIPS, False),
        "horizontal_skip": (SKIPS, False),
        "positional_embedding": (POSITIONAL_EMBEDDINGS, False),
        "factorization": (FACTORIZATIONS, True),
        "implementation": (IMPLEMENTATIONS, False),
    }
    for name, (allowed, ignore_case) in enumerated.items():
        value = _field(model, name)
        if value is not _MISSING:
            _check_optional_choice(f"{prefix}.{name}", value, allowed, ignore_case=ignore_case)


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
    scheduler = _none_if_null(opt.scheduler)
    check_choice("opt.scheduler", "none" if scheduler is None else scheduler, SCHEDULERS)
    _check_positive("opt.n_epochs", opt.n_epochs)
    _check_positive("opt.learning_rate", opt.learning_rate)
    _check_positive("opt.weight_decay", opt.weight_decay, allow_zero=True)
    _check_positive("opt.eval_interval", opt.eval_interval)
    from neuralop_mp.optim.settings import check_config_fields

    check_config_fields(opt)  # the optimizer's own checks of every opt.tensorgrad_* field
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        raise ValueError(f"Invalid opt.betas={list(opt.betas)!r}; expected two values in [0, 1).")
    validate_precision_schedule(opt.precision_schedule)


def validate_precision_schedule(value):
    """Parse ``opt.precision_schedule``; return the schedule or None."""
    value = _none_if_null(value)
    if value is None:
        return None
    from neuralop_mp.training.schedule import PrecisionSchedule

    try:
        return PrecisionSchedule.from_config(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Invalid opt.precision_schedule={value!r}: {error}") from None


def validate_data(data):
    """Sizes must be positive and the per-test-set lists must line up."""
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


def validate_device(device):
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        check_choice("device", device, DEVICES)


def validate_config(config):
    """Raise ValueError naming the key, value and allowed values of the first bad field.

    Parameters
    ----------
    config : TrainConfig
        A loaded config (see :func:`neuralop_mp.configs.load_config`).

    Returns
    -------
    config
        The same object, for chaining.
    """
    validate_device(config.device)
    validate_model(config.model)
    validate_opt(config.opt)
    validate_data(config.data)
    _check_positive("patching.levels", config.patching.levels, allow_zero=True)
    return config
