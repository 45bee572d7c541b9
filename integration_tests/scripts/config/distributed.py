"""Distributed section read by ``neuralop.training.setup``."""
from typing import Optional

from zencfg import ConfigBase


class DistributedConfig(ConfigBase):
    use_distributed: bool = False
    model_parallel_size: int = 1
    seed: Optional[int] = 0
