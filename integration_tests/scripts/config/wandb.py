"""Weights & Biases section (logging stays off in the stand-ins)."""
from typing import Optional

from zencfg import ConfigBase


class WandbConfig(ConfigBase):
    log: bool = False
    name: Optional[str] = None
    log_output: bool = False
