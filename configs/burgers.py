"""``burgers``: FNO on 1D viscous Burgers as a space-time problem.

The input is the initial velocity ``u(x, 0)`` (repeated along time by upstream's
``Burgers1dTimeDataProcessor``), the target the whole trajectory ``u(x, t)`` on 17
time levels, so the FNO is 2D (time x space). Trained at 32 points in space and
tested at 32 and 64 on generated data; a few minutes on a CPU.
"""
from .base import TrainConfig
from .datasets import BurgersDatasetConfig, DataConfig
from .models import FNOConfig, ModelConfig
from .opt import OptimizationConfig


class BurgersConfig(TrainConfig):
    """``neuralop-mp train burgers``."""

    name: str = "burgers"
    model: ModelConfig = FNOConfig(
        data_channels=1,
        out_channels=1,
        n_modes=[12, 12],
        hidden_channels=32,
        n_layers=4,
        projection_channel_ratio=2,
    )
    opt: OptimizationConfig = OptimizationConfig(
        n_epochs=30,
        training_loss="h1",
        learning_rate=3e-3,
        weight_decay=1e-4,
        scheduler="StepLR",
        step_size=10,
        gamma=0.5,
    )
    data: DataConfig = BurgersDatasetConfig()


Default = BurgersConfig
