"""Which keys ``create_optimizer`` takes, and its messages for bad values: each names the
``opt.<field>``, the value and the allowed values, in one line."""
from types import SimpleNamespace

import pydantic
import pytest
import torch
from neuralop.models import FNO
from zencfg import ConfigBase

from neuralop_mp.configs import load_config
from neuralop_mp.optim import TensorGRaD, create_optimizer
from neuralop_mp.optim.settings import DEFAULTS


@pytest.fixture(scope="module")
def fno():
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)


def _message(error):
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("key, meant", [("lr", "learning_rate"), ("wd", "weight_decay"),
                                        ("learnig_rate", "learning_rate"), ("rank", "tensorgrad_rank"),
                                        ("eps", "tensorgrad_eps"), ("tensorgrad_lr", "learning_rate")])
def test_a_misspelt_dict_key_is_refused_with_the_field_it_meant(fno, key, meant):
    with pytest.raises(ValueError) as error:
        create_optimizer(fno, {"optimizer": "adamw", key: 0.5})
    text = _message(error)
    assert text.startswith(f"Unknown opt field(s) [{key!r}] (did you mean {meant!r}?); create_optimizer reads ")
    assert "learning_rate, weight_decay, betas and tensorgrad_{" in text and "n_epochs" in text


def test_a_dict_may_hold_the_opt_fields_left_to_the_training_loop(fno):
    # what config_to_dict writes for the darcy config's opt section, and upstream's own fields
    section = load_config("darcy").opt.to_dict()
    plain = dict(section, learning_rate=2e-3, testing_loss="l2", mixed_precision=False, pino_method="fdm")
    opt = create_optimizer(fno, plain)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["lr"] == 2e-3


@pytest.mark.parametrize("kind", ["adamw", "tensorgrad"])
def test_the_darcy_config_opt_section_builds(fno, kind):
    config = load_config("darcy", {"opt.optimizer": kind, "opt.learning_rate": "2e-3"})
    opt = create_optimizer(fno, config.opt)
    assert opt.param_groups[0]["lr"] == 2e-3 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(opt, TensorGRaD) == (kind == "tensorgrad")
    assert isinstance(create_optimizer(fno, config), type(opt))  # the whole config


def test_config_objects_may_carry_fields_of_their_own(fno):
    class ZenOpt(ConfigBase):
        optimizer: str = "galore"
        learning_rate: float = 2e-3
        n_epochs: int = 3
        my_script_field: int = 1

    class PydanticOpt(pydantic.BaseModel):
        optimizer: str = "adamw"
        weight_decay: float = 0.01
        my_script_field: int = 1

    assert create_optimizer(fno, ZenOpt()).param_groups[0]["lr"] == 2e-3
    assert create_optimizer(fno, ZenOpt().to_dict()).param_groups[0]["lr"] == 2e-3  # zencfg's Bunch
    assert create_optimizer(fno, PydanticOpt()).param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("config, kind, text", [
    ({"learning_rate": "1e-3x"}, ValueError, "Invalid opt.learning_rate='1e-3x'; expected a finite number >= 0"),
    ({"learning_rate": float("nan")}, ValueError, "Invalid opt.learning_rate=nan; expected a finite number >= 0"),
    ({"learning_rate": -1}, ValueError, "Invalid opt.learning_rate=-1; expected a finite number >= 0"),
    ({"learning_rate": True}, TypeError, "Invalid opt.learning_rate=True (bool); expected a finite number >= 0"),
    ({"weight_decay": "x"}, ValueError, "Invalid opt.weight_decay='x'; expected a finite number >= 0"),
    ({"betas": 0.9}, TypeError, "Invalid opt.betas=0.9 (float); expected two finite numbers in [0, 1)"),
    ({"betas": [0.9]}, ValueError, "Invalid opt.betas=[0.9]; expected two finite numbers in [0, 1)"),
    ({"betas": [0.9, 1.5]}, ValueError, "Invalid opt.betas[1]=1.5 in opt.betas=(0.9, 1.5); expected two finite"),
    ({"betas": [0.9, "x"]}, TypeError, "Invalid opt.betas[1]='x' in opt.betas=(0.9, 'x'); expected two finite"),
    ({"optimizer": 3}, ValueError, "Invalid opt.optimizer=3; allowed values: 'adamw', 'tensorgrad', 'galore'"),
    ({"optimizer": "tensorgrad", "tensorgrad_eps": "a"}, TypeError,
     "Invalid opt.tensorgrad_eps='a' (str); expected a finite number >= 0"),
    ({"optimizer": "galore", "tensorgrad_rank": -2}, ValueError, "Invalid opt.tensorgrad_rank=-2; expected a float"),
    ({"optimizer": "sparse", "tensorgrad_sparse_ratio": 2.0}, ValueError,
     "Invalid opt.tensorgrad_sparse_ratio=2.0; expected a float in (0, 1]"),
    ({"optimizer": "tensorgrad", "tensorgrad_update_proj_gap": 0}, ValueError,
     "Invalid opt.tensorgrad_update_proj_gap=0; expected an int >= 1"),
    ({"optimizer": "tensorgrad", "tensorgrad_rank": None, "tensorgrad_sparse_ratio": None}, ValueError,
     "Invalid opt.tensorgrad_rank=None with opt.tensorgrad_sparse_ratio=None: "),
    ({"optimizer": "galore", "tensorgrad_rank": None}, ValueError,
     "Invalid opt.tensorgrad_rank=None (opt.optimizer='galore' has no sparse part): "),
])
def test_a_bad_value_names_the_field_the_value_and_the_allowed_ones(fno, config, kind, text):
    with pytest.raises(kind) as error:
        create_optimizer(fno, config)
    assert _message(error).startswith(text)


def test_config_object_values_are_checked_under_their_field_names(fno):
    class Opt(ConfigBase):
        optimizer: str = "tensorgrad"
        tensorgrad_scale: float = -1.0

    with pytest.raises(ValueError, match=r"^Invalid opt\.tensorgrad_scale=-1\.0; expected a finite number >= 0"):
        create_optimizer(fno, Opt())


def test_numbers_written_as_text_still_read(fno):
    # YAML reads 1e-3 (no dot) as text; the factory always read such text as a number
    opt = create_optimizer(fno, {"learning_rate": "1e-3", "weight_decay": "0.01", "betas": ["0.8", 0.9]})
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (1e-3, 0.01, (0.8, 0.9))


@pytest.mark.parametrize("field, value", [("tensorgrad_rank", 5.0), ("tensorgrad_sparse_type", "bogus"),
                                          ("tensorgrad_scale", -1.0)])
def test_adamw_checks_the_tensorgrad_fields_as_load_config_does(fno, field, value):
    """AdamW reads none of them, but a bad one is refused as ``load_config --opt.<field>`` refuses it
    (it used to build AdamW from a plain dict or a config object alike)."""
    with pytest.raises(ValueError) as from_config:
        load_config("darcy", {f"opt.{field}": str(value)})
    with pytest.raises(ValueError) as from_dict:
        create_optimizer(fno, {"optimizer": "adamw", field: value})
    assert _message(from_dict) == _message(from_config)
    with pytest.raises(ValueError) as from_object:  # an attribute-style section, as a Bunch
        create_optimizer(fno, SimpleNamespace(optimizer="adamw", **{field: value}))
    assert _message(from_object) == _message(from_config)
    # a good one at its default (what a dict copied from a config section carries) is accepted, and AdamW is
    # torch's; another value is refused, as configs and neuralop-mp run refuse it: AdamW would ignore it
    assert type(create_optimizer(fno, {"optimizer": "adamw", "tensorgrad_rank": 0.25})) is torch.optim.AdamW
    with pytest.raises(ValueError, match=r"^Invalid opt\.tensorgrad_rank=0\.5 with opt\.optimizer='adamw': AdamW "
                                         r"reads no TensorGRaD setting"):
        create_optimizer(fno, {"optimizer": "adamw", "tensorgrad_rank": 0.5})


@pytest.mark.parametrize("kind, field, value, part", [("galore", "tensorgrad_sparse_ratio", 0.1, "sparse"),
                                                      ("sparse", "tensorgrad_rank", 0.5, "low-rank")])
def test_a_dict_may_not_set_the_part_its_kind_drops(fno, kind, field, value, part):
    with pytest.raises(ValueError) as error:
        create_optimizer(fno, {"optimizer": kind, field: value})
    # the message of configs and of neuralop-mp run (optim.factory.unread_settings_error)
    assert _message(error) == (f"Invalid opt.{field}={value!r} with opt.optimizer={kind!r}: that kind does not "
                               "read it; leave it out, or use opt.optimizer tensorgrad for both parts.")
    # None is what the kind uses, and the default what a dict copied from a config section carries: accepted,
    # and so is a config (whose every field is present)
    create_optimizer(fno, {"optimizer": kind, field: DEFAULTS[field.removeprefix("tensorgrad_")]})
    group = create_optimizer(fno, {"optimizer": kind, field: None}).param_groups[-1]
    assert group[field.removeprefix("tensorgrad_")] is None
    config = load_config("darcy", {"opt.optimizer": kind})
    assert create_optimizer(fno, config.opt).param_groups[-1][field.removeprefix("tensorgrad_")] is None


@pytest.mark.parametrize("kind", ["tensorgrad", "adamw"])
def test_tensorgrad_numbers_written_as_text_read_as_learning_rate_does(fno, kind):
    # YAML reads 1e-8 (no dot) as text
    config = {"optimizer": kind, "learning_rate": "1e-3", "tensorgrad_eps": "1e-8", "tensorgrad_scale": "2e0",
              "tensorgrad_rank": "5e-1", "tensorgrad_sparse_ratio": "1e-1"}
    if kind == "adamw":  # it reads none: its defaults (as a dict copied from a config carries them), as text
        config = {"optimizer": kind, "learning_rate": "1e-3", "tensorgrad_eps": "1e-6", "tensorgrad_scale": "4e0"}
    opt = create_optimizer(fno, config)
    if kind == "tensorgrad":
        group = opt.param_groups[-1]
        assert (group["eps"], group["scale"], group["rank"], group["sparse_ratio"]) == (1e-8, 2.0, 0.5, 0.1)
    else:
        assert type(opt) is torch.optim.AdamW
    # text that is no number is still refused, naming the field
    with pytest.raises(TypeError, match=r"^Invalid opt\.tensorgrad_scale='2x' \(str\); expected a finite number"):
        create_optimizer(fno, {"optimizer": kind, "tensorgrad_scale": "2x"})
