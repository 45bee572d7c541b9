"""Optimization (``config.opt``) and multi-grid patching (``config.patching``) sections.

``opt`` mirrors upstream's ``OptimizationConfig`` (epochs, loss, learning rate,
scheduler) and adds the plugin's optimizer choice with its TensorGRaD settings,
the precision schedule and the loss-scaling settings of
:class:`~neuralop_mp.MixedPrecisionTrainer`.
"""
from typing import List, Optional, Union

from zencfg import ConfigBase


class OptimizationConfig(ConfigBase):
    """Training loop, optimizer, learning-rate scheduler and precision schedule."""

    n_epochs: int = 30
    training_loss: str = "h1"  # "h1" | "l2"
    eval_interval: int = 1
    # optimizer (see neuralop_mp.optim.factory.create_optimizer)
    optimizer: str = "adamw"  # "adamw" | "tensorgrad" | "galore" | "sparse"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    betas: List[float] = [0.9, 0.999]
    # TensorGRaD settings: names, defaults and allowed values are those of
    # neuralop_mp.optim.settings.CONFIG_OPTIONS (a test keeps the two equal)
    tensorgrad_adam_convention: str = "torch"  # "torch" | "neuralop"
    tensorgrad_min_params: int = 1000
    # an int is a rank per mode (8), a float the fraction of entries kept (0.25): read as model.rank
    tensorgrad_rank: Union[int, float] = 0.25
    tensorgrad_sparse_ratio: float = 0.05
    tensorgrad_sparse_type: str = "randk"
    tensorgrad_update_proj_gap: int = 100
    tensorgrad_scale: float = 4.0
    tensorgrad_state_dtype: str = "float32"  # "float32" | "bfloat16"
    tensorgrad_nonfinite_grad: str = "raise"  # "raise" | "skip"
    # learning-rate scheduler
    scheduler: str = "StepLR"  # "StepLR" | "CosineAnnealingLR" | "ReduceLROnPlateau" | "none"
    step_size: int = 10
    gamma: float = 0.5
    scheduler_T_max: int = 30
    scheduler_patience: int = 5
    # precision schedule: None (constant model.fno_block_precision), a preset name
    # ("paper") or phases "half:0.25,mixed:0.5,full:0.25" (fractions of n_epochs)
    precision_schedule: Optional[str] = None
    # loss scaling of half-precision gradients ("auto": on for float16 only)
    loss_scaling: str = "auto"
    max_consecutive_skips: int = 20
    # step each parameter during backward and free its gradient (neuralop_mp.optim.update_in_backward)
    update_in_backward: bool = False


class PatchingConfig(ConfigBase):
    """Multi-grid patching (upstream's ``MGPatchingDataProcessor``); off when levels=0."""

    levels: int = 0
    padding: float = 0.0
    stitching: bool = False
