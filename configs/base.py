"""The top-level training config: the sections upstream's scripts read, plus run settings.

A config is a tree of zencfg classes: ``model`` (:mod:`.models`), ``opt`` and
``patching`` (:mod:`.opt`), ``data`` (:mod:`.datasets`) and a few run-level fields.
Concrete experiments (:mod:`.darcy`, :mod:`.navier_stokes`, :mod:`.burgers`)
subclass :class:`TrainConfig` and only change defaults.
"""
from typing import Optional

from zencfg import ConfigBase

from .datasets import DarcyDatasetConfig, DataConfig
from .models import FNOConfig, ModelConfig
from .opt import OptimizationConfig, PatchingConfig


class TrainConfig(ConfigBase):
    """Everything ``neuralop-mp train`` needs, each field with a default.

    Attributes
    ----------
    name : str
        Experiment name; the default output folder is ``runs/<name>-<timestamp>``.
    output_dir : str or None
        Where ``results.json`` and ``loss_curve.png`` go (None: the default above).
    device : str
        "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
    seed : int
        Seed of torch's generator before the model is built (weights, shuffling).
    verbose : bool
        Print the model size, data sizes and the trainer's messages.
    """

    name: str = "train"
    output_dir: Optional[str] = None
    device: str = "cpu"
    seed: int = 0
    verbose: bool = True
    model: ModelConfig = FNOConfig()
    opt: OptimizationConfig = OptimizationConfig()
    data: DataConfig = DarcyDatasetConfig()
    patching: PatchingConfig = PatchingConfig()
