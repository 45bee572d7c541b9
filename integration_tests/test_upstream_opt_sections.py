"""Every ``opt`` section of neuraloperator 2.0.0's real configs (``config/*.py``, copied from
shared/upstream) holds only fields ``create_optimizer`` reads or leaves to the training loop,
and builds as a plain dict: the factory refuses unknown keys of a dict, and its list of
upstream's fields (``UPSTREAM_OPT_FIELDS``) was written by hand."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

CHECK = r'''
import importlib, json, pkgutil, sys
sys.path.insert(0, ".")
import torch
from zencfg import ConfigBase
import config
from neuralop_mp.optim import create_optimizer

sections = {}
for found in pkgutil.iter_modules(config.__path__):
    try:
        module = importlib.import_module(f"config.{found.name}")
    except ImportError:  # test_config imports a module upstream does not ship
        continue
    for name, cls in vars(module).items():
        if not (isinstance(cls, type) and issubclass(cls, ConfigBase) and "Opt" in name
                and cls.__module__ == module.__name__):
            continue
        try:
            section = cls().to_dict()
        except Exception:  # the base class: n_epochs has no default
            continue
        if any(isinstance(v, dict) for v in section.values()):  # UQNO's container of opt sections
            continue
        create_optimizer(torch.nn.Linear(2, 2), dict(section))  # raises on a key it does not know
        sections[f"{found.name}.{name}"] = sorted(section)
print(json.dumps(sections))
'''


def test_every_flat_opt_section_of_upstreams_configs_builds_as_a_plain_dict(upstream_scripts):
    root = upstream_scripts.parent  # the copy holding scripts/ and config/
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sections = json.loads(done.stdout.strip().splitlines()[-1])
    # the scripts' own: darcy, navier-stokes, burgers, the car CFD and Poisson ones, UQNO's two models
    assert {"darcy_config.DarcyOptConfig", "navier_stokes_config.NavierStokesOptConfig",
            "uqno_config.SolutionModelOptConfig"} <= set(sections), sorted(sections)
    assert len(sections) >= 9
