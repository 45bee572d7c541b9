"""Shared fixtures of the end-to-end tests: generated datasets and upstream's real scripts."""
import os
import shutil
from pathlib import Path

import pytest
import torch

# Sizes shared by the integration tests: 16x16 training grid, 32x32 for the 2x test.
DARCY_N_TRAIN = 500
DARCY_N_TEST = 100

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_NAME = "neuraloperator-2.0.0"


def upstream_source():
    """neuraloperator 2.0.0's repository folders (``scripts/``, ``config/``), or None.

    ``$NEURALOP_UPSTREAM_SOURCE`` if set, else ``shared/upstream/neuraloperator-2.0.0``
    beside the checkout or beside one of its parent folders (CI has it at
    ``../shared`` from the repository root).
    """
    if os.environ.get("NEURALOP_UPSTREAM_SOURCE"):
        return Path(os.environ["NEURALOP_UPSTREAM_SOURCE"])
    for folder in REPO_ROOT.parents:
        candidate = folder / "shared" / "upstream" / UPSTREAM_NAME
        if (candidate / "scripts").is_dir():
            return candidate
    return None


def require_upstream_source():
    """The upstream folder; skips (fails under CI=true) when it is not there."""
    source = upstream_source()
    if source is None or not (source / "scripts").is_dir():
        message = (f"neuraloperator 2.0.0's scripts/ and config/ not found (../shared/upstream/{UPSTREAM_NAME} "
                   "or $NEURALOP_UPSTREAM_SOURCE)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must have them.")
        pytest.skip(message)
    return source


@pytest.fixture(scope="session")
def upstream_scripts(tmp_path_factory):
    """A writable copy of upstream's ``scripts/`` and ``config/`` side by side; returns ``scripts/``.

    The originals are read-only (shared/), and upstream's scripts import
    ``config`` through ``sys.path.insert(0, "../")``, so both folders are copied
    and a script runs from inside the copied ``scripts/``.
    """
    source = require_upstream_source()
    root = tmp_path_factory.mktemp("neuraloperator")
    for name in ("scripts", "config"):
        shutil.copytree(source / name, root / name)
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    return root / "scripts"


@pytest.fixture
def upstream_config(upstream_scripts, monkeypatch):
    """upstream's ``config`` package (the copied one), imported in this process and dropped from
    ``sys.modules`` afterwards (its modules' names would shadow another copy's)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(upstream_scripts.parent))
    try:
        yield importlib.import_module("config")
    finally:
        for name in [m for m in sys.modules if m == "config" or m.startswith("config.")]:
            del sys.modules[name]


def upstream_config_classes(package):
    """``(module name, class name, class)`` of every zencfg config class that upstream's ``config/``
    package (``package``) defines, module by module."""
    import importlib
    import pkgutil

    from zencfg import ConfigBase

    for found in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"config.{found.name}")
        except ImportError:  # test_config imports a module upstream does not ship
            continue
        for name, cls in vars(module).items():
            if isinstance(cls, type) and issubclass(cls, ConfigBase) and cls.__module__ == module.__name__:
                yield found.name, name, cls


@pytest.fixture(scope="session")
def darcy_root(tmp_path_factory):
    """A folder with darcy_{train,test}_{16,32}.pt generated offline (seeded)."""
    from neuralop_mp.data.darcy import generate_darcy

    root = tmp_path_factory.mktemp("darcy")
    generate_darcy(root, resolutions=(16, 32), n_train=DARCY_N_TRAIN, n_test=DARCY_N_TEST, seed=0, progress=False)
    return root


@pytest.fixture(scope="module", autouse=True)
def _one_thread_for_module_fixtures():
    """One intra-op thread for module-scoped fixtures too (the root conftest sets it per test, after
    them): the multi-seed comparisons train in such fixtures, and their seed spreads were measured
    on one thread (another thread count sums in another order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
