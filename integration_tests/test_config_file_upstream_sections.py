"""The refusal of a config file's keys that no field has (neuralop_mp.configs.unknown_fields) leaves
neuraloperator 2.0.0's real config classes alone: none has an attribute the rule would take for a
stray keyword (zencfg 0.7's bookkeeping, ``_config_name`` and ``_target_class``, included), and its
``WandbConfig`` and ``DistributedConfig`` load as sections of a user's own in a TrainConfig
subclass, their keys settable from the command line. In-process (upstream's configs need zencfg 0.7).
"""
from zencfg import ConfigBase

from neuralop_mp.configs import config_keys, load_config
from neuralop_mp.configs.unknown_fields import stray_attributes

from .conftest import upstream_config_classes


def _instances(package):
    """``{module.Class: instance}`` of every config class of upstream's ``config/`` that builds."""
    built = {}
    for module, name, cls in upstream_config_classes(package):
        try:
            built[f"{module}.{name}"] = cls()
        except Exception:  # a base class with a required field (ModelConfig.arch)
            continue
    return built


def _all_sections(config):
    yield config
    for value in vars(config).values():
        if isinstance(value, ConfigBase):
            yield from _all_sections(value)


def test_no_upstream_config_class_has_an_attribute_taken_for_a_stray_keyword(upstream_config):
    built = _instances(upstream_config)
    assert {"darcy_config.Default", "navier_stokes_config.Default", "wandb.WandbConfig"} <= set(built), sorted(built)
    strays = {name: stray_attributes(section) for name, config in built.items()
              for section in _all_sections(config) if stray_attributes(section)}
    assert not strays


def test_upstream_sections_load_as_sections_of_a_users_own(upstream_config, tmp_path, monkeypatch):
    from neuralop_mp.configs import TrainConfig

    monkeypatch.setattr(TrainConfig, "_registry", dict(TrainConfig._registry))  # the file's class registers
    path = tmp_path / "with_upstream.py"
    path.write_text("from config.distributed import DistributedConfig\n"
                    "from config.wandb import WandbConfig\n"
                    "from neuralop_mp.configs import DarcyConfig\n\n"
                    "class Tracked(DarcyConfig):\n"
                    "    wandb: WandbConfig = WandbConfig(project='mine')\n"
                    "    distributed: DistributedConfig = DistributedConfig()\n")
    config = load_config(f"{path}:Tracked", {"wandb.log": "true"})
    assert (config.wandb.project, config.wandb.log, config.distributed.use_distributed) == ("mine", True, False)
    assert {"wandb.entity", "distributed.model_parallel_size"} <= set(config_keys(config))
