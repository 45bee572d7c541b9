"""Config of train_darcy.py: a small FNO on 16x16 Darcy flow, tested at 16 and 32."""
from typing import Any, Optional

from zencfg import ConfigBase

from .datasets import DarcyDatasetConfig
from .distributed import DistributedConfig
from .models import ModelConfig, SmallFNO2d
from .opt import OptimizationConfig, PatchingConfig
from .wandb import WandbConfig


class Default(ConfigBase):
    n_params_baseline: Optional[Any] = None
    verbose: bool = True
    distributed: DistributedConfig = DistributedConfig()
    model: ModelConfig = SmallFNO2d()
    opt: OptimizationConfig = OptimizationConfig()
    data: DarcyDatasetConfig = DarcyDatasetConfig()
    patching: PatchingConfig = PatchingConfig()
    wandb: WandbConfig = WandbConfig()
