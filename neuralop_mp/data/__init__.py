"""Offline datasets in neuraloperator's file layouts: generators, loaders and the ``data`` CLI.

Nothing here touches the network. Each generator solves its PDE locally, caches
the result under a data root (``$NEURALOP_MP_DATA``, else ``~/.cache/neuralop_mp/data``)
and writes the files upstream's dataset classes read with ``download=False``:

- :func:`generate_darcy` -> ``darcy_{train,test}_{res}.pt`` (``DarcyDataset``)
- :func:`generate_navier_stokes` -> ``nsforcing_{train,test}_{res}.pt`` (``NavierStokesDataset``)
- :func:`generate_burgers` -> ``burgers_{train,test}_{res}.pt`` (``Burgers1dTimeDataset``)

The ``load_*`` functions return ``(train_loader, test_loaders, data_processor)``,
generating missing files first. See docs/data.md.
"""
from .burgers import generate_burgers
from .cache import default_data_root
from .darcy import generate_darcy
from .loaders import load_burgers, load_darcy, load_navier_stokes
from .navier_stokes import generate_navier_stokes

__all__ = [
    "default_data_root",
    "generate_burgers",
    "generate_darcy",
    "generate_navier_stokes",
    "load_burgers",
    "load_darcy",
    "load_navier_stokes",
]
