"""Config of train_burgers.py: initial condition u(0, x) -> space-time solution u(t, x)."""
from typing import Any, Optional

from zencfg import ConfigBase

from .datasets import BurgersDatasetConfig
from .distributed import DistributedConfig
from .models import ModelConfig, SmallFNO2d
from .opt import OptimizationConfig, PatchingConfig
from .wandb import WandbConfig


class Default(ConfigBase):
    n_params_baseline: Optional[Any] = None
    verbose: bool = True
    distributed: DistributedConfig = DistributedConfig()
    model: ModelConfig = SmallFNO2d()
    opt: OptimizationConfig = OptimizationConfig(training_loss="l2")
    data: BurgersDatasetConfig = BurgersDatasetConfig()
    patching: PatchingConfig = PatchingConfig()
    wandb: WandbConfig = WandbConfig()
