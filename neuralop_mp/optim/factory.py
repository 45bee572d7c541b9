"""Build an optimizer from a config's ``opt`` section: ``create_optimizer(model, opt_config)``.

A small registry (name -> builder) behind one function, so configs, the CLI and
tests share the same list of names, and an unknown name is reported together with
the known ones.
"""
from dataclasses import dataclass
from typing import Callable

import torch

from ..vocabulary import check_choice
from .adam_math import compute_dtype
from .param_groups import spectral_parameters
from .settings import DEFAULTS, TENSORGRAD_OPTIONS

# opt.tensorgrad_<key> fields: every TensorGRaD setting; the ones in configs (and on
# the command line) are CONFIG_OPTIONS, absent fields keep TensorGRaD's defaults
TENSORGRAD_FIELDS = tuple(option.name for option in TENSORGRAD_OPTIONS
                          if option.name not in ("lr", "betas", "weight_decay", "compress"))


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: its name, a one-line description and its builder."""

    name: str
    description: str
    build: Callable


_REGISTRY = {}


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
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _field_names(cfg):
    if isinstance(cfg, dict):
        return list(cfg)
    if hasattr(cfg, "to_dict"):
        return list(cfg.to_dict())
    return [k for k in vars(cfg) if not k.startswith("_")] if hasattr(cfg, "__dict__") else []


def _tensorgrad_settings(opt_config):
    unknown = [
        name for name in _field_names(opt_config)
        if name.startswith("tensorgrad_") and name[len("tensorgrad_"):] not in TENSORGRAD_FIELDS
    ]
    if unknown:
        known = ", ".join(f"tensorgrad_{k}" for k in TENSORGRAD_FIELDS)
        raise ValueError(f"Unknown opt field(s) {unknown}; known TensorGRaD fields: {known}.")
    present = set(_field_names(opt_config))
    # an explicit None (e.g. no sparse part) is kept; absent fields keep TensorGRaD's defaults
    settings = {key: _get(opt_config, f"tensorgrad_{key}") for key in TENSORGRAD_FIELDS
                if f"tensorgrad_{key}" in present}
    if isinstance(settings.get("rank"), list):
        settings["rank"] = tuple(settings["rank"])
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


@register_optimizer("adamw", "torch.optim.AdamW on every parameter")
def _build_adamw(model, common, settings):
    if any(compute_dtype(p) != p.dtype for p in model.parameters()):
        # torch's AdamW keeps moments in the parameter's dtype: for complex32 weights the
        # squared gradients underflow in fp16 and updates below the fp16 spacing are lost.
        # TensorGRaD without compression is the same AdamW update with fp32 moments and
        # stochastically rounded weight writes; eps is torch's default.
        from .tensorgrad import TensorGRaD

        return TensorGRaD([p for p in model.parameters() if p.requires_grad], compress=False,
                          **{"eps": 1e-8, **common})
    return torch.optim.AdamW(model.parameters(), **common)


@register_optimizer("tensorgrad", "TensorGRaD: sparse + low-rank compressed moments for spectral weights")
def _build_tensorgrad(model, common, settings):
    from .tensorgrad import TensorGRaD

    return TensorGRaD(_tensorgrad_groups(model, settings), **common)


@register_optimizer("galore", "TensorGRaD with the low-rank (Tucker) part only (Tensor-GaLore)")
def _build_galore(model, common, settings):
    from .tensorgrad import TensorGRaD

    return TensorGRaD(_tensorgrad_groups(model, dict(settings, sparse_ratio=None)), **common)


@register_optimizer("sparse", "TensorGRaD with the sparse part only")
def _build_sparse(model, common, settings):
    from .tensorgrad import TensorGRaD

    return TensorGRaD(_tensorgrad_groups(model, dict(settings, rank=None)), **common)


def create_optimizer(model, opt_config):
    """Build the optimizer ``opt_config.optimizer`` names for ``model``.

    Parameters
    ----------
    model : nn.Module
    opt_config : dict, Bunch or zencfg config
        The ``opt`` section (a whole config with an ``opt`` attribute is accepted
        too). Fields: ``optimizer`` ("adamw" | "tensorgrad" | "galore" | "sparse",
        default "adamw"), ``learning_rate`` (1e-3), ``weight_decay`` (0.0),
        ``betas`` (optional), and ``tensorgrad_<key>`` for any TensorGRaD
        setting ``<key>`` (:data:`~neuralop_mp.optim.settings.TENSORGRAD_OPTIONS`;
        defaults are TensorGRaD's).

    Returns
    -------
    torch.optim.Optimizer
    """
    if _get(opt_config, "optimizer") is None and _get(opt_config, "opt") is not None:
        opt_config = _get(opt_config, "opt")
    name = str(_get(opt_config, "optimizer", "adamw") or "adamw").lower()
    check_choice("opt.optimizer", name, list_optimizers())
    common = {
        "lr": float(_get(opt_config, "learning_rate", 1e-3)),
        "weight_decay": float(_get(opt_config, "weight_decay", 0.0) or 0.0),
    }
    betas = _get(opt_config, "betas")
    if betas is not None:
        common["betas"] = tuple(float(b) for b in betas)
    settings = _tensorgrad_settings(opt_config) if name != "adamw" else {}
    return _REGISTRY[name].build(model, common, settings)
