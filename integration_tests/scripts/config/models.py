"""Model sections: ``config.model`` is passed to ``get_model`` as keyword arguments."""
from typing import List, Optional

from zencfg import ConfigBase


class ModelConfig(ConfigBase):
    model_arch: str
    data_channels: int
    out_channels: int


class FNOConfig(ModelConfig):
    model_arch: str = "fno"
    data_channels: int = 1
    out_channels: int = 1
    n_modes: List[int] = [8, 8]
    hidden_channels: int = 16
    n_layers: int = 2
    lifting_channel_ratio: int = 2
    projection_channel_ratio: int = 2
    # upstream's own precision flags; `neuralop-mp run --mp.precision ...` overrides them
    fno_block_precision: str = "full"
    stabilizer: Optional[str] = None


class SmallFNO2d(FNOConfig):
    n_modes: List[int] = [8, 8]
    hidden_channels: int = 16
