"""``darcy``: FNO on 2D Darcy flow, 16x16 training grid, tested at 16x16 and 32x32.

Sized for the quickstart: about 1000 generated samples, a 4-layer FNO of width
32, trained in well under five minutes on two CPU cores to a test relative L2
error below 0.15 (measured numbers: docs/configs.md).
"""
from .base import TrainConfig
from .datasets import DarcyDatasetConfig, DataConfig
from .models import FNOConfig, ModelConfig
from .opt import OptimizationConfig


class DarcyConfig(TrainConfig):
    """The quickstart experiment (``neuralop-mp train darcy``)."""

    name: str = "darcy"
    model: ModelConfig = FNOConfig(
        data_channels=1,
        out_channels=1,
        n_modes=[12, 12],
        hidden_channels=32,
        n_layers=4,
        projection_channel_ratio=2,
    )
    opt: OptimizationConfig = OptimizationConfig(
        n_epochs=12,
        training_loss="h1",
        learning_rate=5e-3,
        weight_decay=1e-4,
        scheduler="StepLR",
        step_size=4,
        gamma=0.5,
    )
    data: DataConfig = DarcyDatasetConfig(
        n_train=1000,
        batch_size=32,
        train_resolution=16,
        n_tests=[100, 100],
        test_resolutions=[16, 32],
        test_batch_sizes=[50, 50],
    )


# upstream's config files name their top-level class ``Default``
Default = DarcyConfig
