"""Training configs of neuralop-mp (zencfg classes), shipped as ``neuralop_mp.configs``.

The structure mirrors upstream neuraloperator's ``config/`` folder (a top-level
config with ``model``, ``opt``, ``data`` and ``patching`` sections) and adds the
plugin's flags. Every field has a default; the configs, and every reader of them in
the plugin, work under zencfg 0.7 (what neuraloperator 2.0.0's own configs need) and
1.0 (:mod:`.zencfg_compat`).
Field reference and examples: docs/configs.md.
"""
from .base import TrainConfig
from .burgers import BurgersConfig
from .darcy import DarcyConfig
from .datasets import BurgersDatasetConfig, DarcyDatasetConfig, DataConfig, NavierStokesDatasetConfig
from .loading import (
    CONFIGS,
    available_configs,
    config_keys,
    config_to_dict,
    load_config,
    parse_overrides,
    resolve_config,
)
from .models import FNOConfig, ModelConfig, TFNOConfig, UNOConfig
from .navier_stokes import NavierStokesConfig
from .opt import OptimizationConfig, PatchingConfig
from .validation import validate_config
from .zencfg_compat import config_fields, field_names, read_key, section_dict

__all__ = [
    "CONFIGS", "TrainConfig", "DarcyConfig", "NavierStokesConfig", "BurgersConfig",
    "ModelConfig", "FNOConfig", "TFNOConfig", "UNOConfig",
    "OptimizationConfig", "PatchingConfig",
    "DataConfig", "DarcyDatasetConfig", "NavierStokesDatasetConfig", "BurgersDatasetConfig",
    "available_configs", "config_keys", "config_to_dict", "load_config", "parse_overrides",
    "resolve_config", "validate_config", "config_fields", "field_names", "read_key", "section_dict",
]
