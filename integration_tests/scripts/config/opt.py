"""Optimisation and multi-grid patching sections."""
from zencfg import ConfigBase


class OptimizationConfig(ConfigBase):
    n_epochs: int = 4
    training_loss: str = "h1"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    mixed_precision: bool = False
    eval_interval: int = 1
    scheduler: str = "StepLR"
    step_size: int = 100
    gamma: float = 0.5
    scheduler_T_max: int = 500
    scheduler_patience: int = 50


class PatchingConfig(ConfigBase):
    levels: int = 0
    padding: int = 0
    stitching: bool = False
