"""Every ``opt`` section of neuraloperator 2.0.0's real configs (``config/*.py``, copied from
shared/upstream) holds only fields ``create_optimizer`` reads or leaves to the training loop,
and builds as a plain dict: the factory refuses unknown keys of a dict, and its list of
upstream's fields (``UPSTREAM_OPT_FIELDS``) was written by hand. In process (upstream's configs
need zencfg 0.7, the installed one)."""
import torch

from neuralop_mp.optim import create_optimizer

from .conftest import upstream_config_classes


def test_every_flat_opt_section_of_upstreams_configs_builds_as_a_plain_dict(upstream_config):
    sections = {}
    for module, name, cls in upstream_config_classes(upstream_config):
        if "Opt" not in name:
            continue
        try:
            section = cls().to_dict()
        except Exception:  # the base class: n_epochs has no default
            continue
        if any(isinstance(v, dict) for v in section.values()):  # UQNO's container of opt sections
            continue
        create_optimizer(torch.nn.Linear(2, 2), dict(section))  # raises on a key it does not know
        sections[f"{module}.{name}"] = sorted(section)
    # the scripts' own: darcy, navier-stokes, burgers, the car CFD and Poisson ones, UQNO's two models
    assert {"darcy_config.DarcyOptConfig", "navier_stokes_config.NavierStokesOptConfig",
            "uqno_config.SolutionModelOptConfig"} <= set(sections), sorted(sections)
    assert len(sections) >= 9
