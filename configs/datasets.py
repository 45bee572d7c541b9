"""Data sections (``config.data``): which built-in dataset, its sizes and loaders.

Each section's fields are keyword arguments of the loader named by its
``loader_name()`` method (``neuralop_mp.data.load_darcy``, ...), so every field
reaches the loader and a field the loader does not take is an error, not a
silently ignored key. ``data_root=None`` means :func:`neuralop_mp.data.default_data_root`
(``$NEURALOP_MP_DATA``, else ``~/.cache/neuralop_mp/data``); missing files are
generated there when ``generate`` is true.
"""
from typing import List, Optional

from zencfg import ConfigBase


class DataConfig(ConfigBase):
    """Fields every built-in dataset loader takes."""

    # A method, not a class attribute: zencfg 0.7 makes every public non-callable
    # class attribute a field, and fails on a ClassVar annotation.
    def loader_name(self):
        """Name of the ``neuralop_mp.data`` function that takes this section's fields."""
        return "load_darcy"

    data_root: Optional[str] = None
    n_train: int = 1000
    batch_size: int = 32
    train_resolution: int = 16
    n_tests: List[int] = [200, 200]
    test_resolutions: List[int] = [16, 32]
    test_batch_sizes: List[int] = [32, 32]
    generate: bool = True
    seed: int = 0


class DarcyDatasetConfig(DataConfig):
    """2D Darcy flow (piecewise-constant permeability -> pressure), generated offline."""

    def loader_name(self):
        return "load_darcy"

    encode_input: bool = False
    encode_output: bool = True


class NavierStokesDatasetConfig(DarcyDatasetConfig):
    """2D Navier-Stokes vorticity on the torus (initial -> later vorticity), generated offline."""

    def loader_name(self):
        return "load_navier_stokes"

    n_train: int = 200
    batch_size: int = 16
    train_resolution: int = 32
    n_tests: List[int] = [50, 50]
    test_resolutions: List[int] = [32, 64]
    test_batch_sizes: List[int] = [16, 16]


class BurgersDatasetConfig(DataConfig):
    """1D viscous Burgers on the circle (initial velocity -> space-time trajectory), generated offline.

    Inputs and outputs are always normalized, as in upstream's Burgers dataset, so
    this section has no ``encode_*`` fields.
    """

    def loader_name(self):
        return "load_burgers"

    n_train: int = 500
    batch_size: int = 32
    train_resolution: int = 32
    n_tests: List[int] = [100, 100]
    test_resolutions: List[int] = [32, 64]
    test_batch_sizes: List[int] = [50, 50]
