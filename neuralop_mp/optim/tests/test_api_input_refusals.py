"""Bad input to ``create_optimizer`` and to TensorGRaD's upstream-style groups is refused by name.

A non-mapping ``opt_config`` read as no field at all (``create_optimizer(model, "tensorgrad")``
built AdamW), and a group's ``tensorgrad`` was read with ``bool()`` (the string "False" compressed).
"""
from types import SimpleNamespace

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO, create_optimizer
from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import random_tensor
from neuralop_mp.optim.tests.test_upstream_state import _upstream_state


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)


@pytest.mark.parametrize("opt_config, shown", [
    ("tensorgrad", "opt_config='tensorgrad' (str)"),
    (5, "opt_config=5 (int)"),
    (True, "opt_config=True (bool)"),
    (["tensorgrad"], "opt_config=['tensorgrad'] (list)"),
    (None, "opt_config=None (NoneType)"),
    ({"opt": "tensorgrad"}, "opt_config.opt='tensorgrad' (str)"),
], ids=["str", "int", "bool", "list", "None", "opt-section-str"])
def test_an_opt_config_that_is_no_config_is_refused_naming_the_accepted_kinds(model, opt_config, shown):
    with pytest.raises(TypeError) as raised:
        create_optimizer(model, opt_config)
    message = str(raised.value)
    assert message.startswith(f"Invalid {shown}; allowed values: a dict"), message
    assert "zencfg Bunch" in message and "pydantic" in message, message


def test_dicts_and_attribute_configs_still_build_the_optimizer_they_name(model):
    tensorgrad = {"optimizer": "tensorgrad", "tensorgrad_min_params": 100}  # this small model's weights compress
    assert isinstance(create_optimizer(model, tensorgrad), TensorGRaD)
    assert isinstance(create_optimizer(model, {"opt": tensorgrad}), TensorGRaD)
    assert isinstance(create_optimizer(model, SimpleNamespace(**tensorgrad)), TensorGRaD)
    whole = SimpleNamespace(opt=SimpleNamespace(optimizer="adamw", learning_rate=0.25))
    built = create_optimizer(model, whole)
    assert isinstance(built, torch.optim.AdamW) and built.param_groups[0]["lr"] == 0.25


def _spectral_param():
    return torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 2))


@pytest.mark.parametrize("flag", ["False", "True", 0, 1, None], ids=["'False'", "'True'", "0", "1", "None"])
def test_a_groups_tensorgrad_key_that_is_no_bool_is_refused_naming_it(flag):
    with pytest.raises(TypeError, match=rf"^Invalid tensorgrad={flag!r}; expected True or False\.$"):
        TensorGRaD([{"params": [_spectral_param()], "tensorgrad": flag}])


def test_a_groups_tensorgrad_key_added_later_is_checked_the_same_way():
    opt = TensorGRaD([{"params": [torch.nn.Parameter(random_tensor((7,), False, 1))]}])
    with pytest.raises(TypeError, match=r"^Invalid tensorgrad='False'; expected True or False\.$"):
        opt.add_param_group({"params": [_spectral_param()], "tensorgrad": "False"})


@pytest.mark.parametrize("flag", [True, False])
def test_a_bool_tensorgrad_key_still_decides_compression(flag):
    spectral = _spectral_param()
    opt = TensorGRaD([{"params": [spectral], "tensorgrad": flag, "rank": 0.5}])
    assert opt.param_groups[0]["compress"] is flag
    spectral.grad = random_tensor(spectral.shape, True, 3)
    opt.step()
    assert bool(opt.state[spectral]["compressed"]) is flag


def test_an_upstream_state_dicts_tensorgrad_key_that_is_no_bool_is_refused_naming_it():
    (regular, spectral), state_dict = _upstream_state()
    state_dict["param_groups"][1]["tensorgrad"] = "False"
    opt = TensorGRaD([{"params": [regular]}, {"params": [spectral], "tensorgrad": True, "rank": 0.5}])
    with pytest.raises(TypeError, match=r"Invalid tensorgrad='False'; expected True or False\."):
        opt.load_state_dict(state_dict)
