"""Config of train_navier_stokes.py: vorticity at t=0 -> vorticity at a later time."""
from typing import Any, Optional

from zencfg import ConfigBase

from .datasets import NavierStokesDatasetConfig
from .distributed import DistributedConfig
from .models import ModelConfig, SmallFNO2d
from .opt import OptimizationConfig, PatchingConfig
from .wandb import WandbConfig


class Default(ConfigBase):
    n_params_baseline: Optional[Any] = None
    verbose: bool = True
    distributed: DistributedConfig = DistributedConfig()
    model: ModelConfig = SmallFNO2d()
    opt: OptimizationConfig = OptimizationConfig(training_loss="l2", learning_rate=3e-3)
    data: NavierStokesDatasetConfig = NavierStokesDatasetConfig()
    patching: PatchingConfig = PatchingConfig()
    wandb: WandbConfig = WandbConfig()
