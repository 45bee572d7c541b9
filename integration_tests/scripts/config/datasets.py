"""Data sections: sizes are tiny so the stand-ins train on a CPU in seconds."""
from typing import List

from zencfg import ConfigBase


class DarcyDatasetConfig(ConfigBase):
    folder: str = "~/data/darcy/"
    batch_size: int = 16
    n_train: int = 96
    train_resolution: int = 16
    n_tests: List[int] = [32, 32]
    test_resolutions: List[int] = [16, 32]
    test_batch_sizes: List[int] = [16, 16]
    encode_input: bool = False
    encode_output: bool = True


class NavierStokesDatasetConfig(ConfigBase):
    folder: str = "~/data/navier_stokes/"
    batch_size: int = 16
    n_train: int = 64
    train_resolution: int = 16
    n_tests: List[int] = [16]
    test_resolutions: List[int] = [16]
    test_batch_sizes: List[int] = [16]
    encode_input: bool = True
    encode_output: bool = True


class BurgersDatasetConfig(ConfigBase):
    folder: str = "~/data/burgers/"
    batch_size: int = 16
    n_train: int = 64
    n_tests: List[int] = [16]
    test_batch_sizes: List[int] = [16]
    temporal_subsample: int = 1
    spatial_subsample: int = 1
