"""``CONFIG_ONLY_KEYS`` is the one list of the ``config.model`` keys that ``get_model`` reads itself:
it withholds exactly those from the constructor (the config's validation skips the same ones), so a
key added to or removed from the list changes both."""
import pytest
import torch
from neuralop.models.base_model import BaseModel
from zencfg.bunch import Bunch

from neuralop_mp.models import registry
from neuralop_mp.precision_policy import PrecisionPolicy


class Recorder(torch.nn.Module):
    """A registered model that takes any keyword and keeps what the constructor was given."""

    def __init__(self, **kwargs):
        super().__init__()
        self.given = kwargs


@pytest.fixture
def build(monkeypatch):
    """``get_model`` of a config holding every config-only key (each at a value that builds
    upstream's way) and ``width``; returns the keywords the constructor got."""
    monkeypatch.setitem(BaseModel._models, "recorder", Recorder)
    values = {"model_arch": "recorder", "arch": "recorder", "recompute": "none", "recompute_chunk_points": None,
              "data_channels": 1, **PrecisionPolicy.defaults()}

    assert set(values) == set(registry.CONFIG_ONLY_KEYS)  # a new config-only key needs a value here

    def built():
        config = Bunch({"model": {**values, "width": 3}})
        return registry.get_model(config).given

    return built


def test_the_constructor_gets_every_key_but_the_config_only_ones(build):
    assert build() == {"width": 3, "in_channels": 1}


def test_a_key_added_to_the_list_is_withheld_from_the_constructor(build, monkeypatch):
    monkeypatch.setattr(registry, "CONFIG_ONLY_KEYS", (*registry.CONFIG_ONLY_KEYS, "width"))
    assert build() == {"in_channels": 1}


def test_a_key_removed_from_the_list_reaches_the_constructor(build, monkeypatch):
    monkeypatch.setattr(registry, "CONFIG_ONLY_KEYS", tuple(k for k in registry.CONFIG_ONLY_KEYS if k != "arch"))
    assert build() == {"width": 3, "in_channels": 1, "arch": "recorder"}
