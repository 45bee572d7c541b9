"""A config that names no architecture says what is missing, not ``model_arch=''``."""
import re

import pytest

import neuralop_mp
from neuralop_mp.models.registry import available_models


def allowed():
    """The registered names, now: other tests register classes of their own."""
    return ", ".join(sorted(available_models()))


@pytest.mark.parametrize("config", [{"opt": {}}, {}, {"model": None}])
def test_a_config_without_a_model_section_is_named_so(config):
    with pytest.raises(ValueError) as raised:
        neuralop_mp.get_model(config)
    assert str(raised.value) == (f"config has no 'model' section; get_model builds config.model, whose model_arch "
                                 f"is one of: {allowed()}.")


def test_upstreams_older_layout_is_named():
    """upstream's config/default_config.py: a top-level ``arch`` and the model in a section of that name."""
    with pytest.raises(ValueError, match=re.escape(
            "config has no 'model' section (it has the older layout of upstream's config/default_config.py, "
            "arch='fno' with the model's arguments in a 'fno' section: move them into 'model' with "
            f"model_arch='fno'); get_model builds config.model, whose model_arch is one of: {allowed()}.")):
        neuralop_mp.get_model({"arch": "fno", "fno": {"n_modes": [4, 4], "hidden_channels": 8}})


@pytest.mark.parametrize("model", [{"data_channels": 1}, {"model_arch": None, "data_channels": 1},
                                   {"model_arch": "None", "data_channels": 1}])
def test_a_model_section_without_model_arch_is_named_so(model):
    with pytest.raises(ValueError) as raised:
        neuralop_mp.get_model({"model": model})
    assert str(raised.value) == ("config.model has no model_arch (the architecture to build); "
                                 f"allowed values: {allowed()}.")
    # a name given but unknown is still named, with the allowed ones
    with pytest.raises(ValueError, match=re.escape(f"Invalid model.model_arch='foo'; allowed values: {allowed()}.")):
        neuralop_mp.get_model({"model": {"model_arch": "foo", "data_channels": 1}})
