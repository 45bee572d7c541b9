"""``navier_stokes``: FNO on 2D Navier-Stokes vorticity, 32x32 training grid, tested at 32 and 64.

Upstream's benchmark trains at 128x128 on 10000 samples for hundreds of epochs on
a GPU; this default is small enough to generate its data and train on a CPU in a
few minutes. Scale it up from the command line (``--data.train_resolution 64
--data.test_resolutions "[64,128]" --data.n_train 1000 --model.n_modes "[32,32]"``).
"""
from .base import TrainConfig
from .datasets import DataConfig, NavierStokesDatasetConfig
from .models import FNOConfig, ModelConfig
from .opt import OptimizationConfig


class NavierStokesConfig(TrainConfig):
    """``neuralop-mp train navier_stokes``."""

    name: str = "navier_stokes"
    model: ModelConfig = FNOConfig(
        data_channels=1,
        out_channels=1,
        n_modes=[16, 16],
        hidden_channels=32,
        n_layers=4,
        projection_channel_ratio=2,
    )
    opt: OptimizationConfig = OptimizationConfig(
        n_epochs=20,
        training_loss="h1",
        learning_rate=3e-3,
        weight_decay=1e-4,
        scheduler="StepLR",
        step_size=8,
        gamma=0.5,
    )
    data: DataConfig = NavierStokesDatasetConfig()


Default = NavierStokesConfig
