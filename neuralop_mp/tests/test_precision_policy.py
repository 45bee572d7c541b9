"""PrecisionPolicy and the vocabulary: parsed once, immutable, clear errors, one list of plugin keys."""
import dataclasses
import inspect

import pytest
import torch
from zencfg.bunch import Bunch

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO, PrecisionPolicy
from neuralop_mp.configs import ModelConfig, load_config
from neuralop_mp.models.registry import PLUGIN_MODEL_KEYS
from neuralop_mp.configs.zencfg_compat import section_dict
from neuralop_mp.vocabulary import none_if_null, read_key


def test_values_are_normalized_once():
    policy = PrecisionPolicy("mixed", half_dtype=torch.bfloat16, stabilizer="null",
                             spectral_weight_dtype=torch.complex32)
    assert policy.as_dict() == {"fno_block_precision": "mixed", "half_dtype": "bfloat16", "stabilizer": None,
                                "spectral_weight_dtype": "complex32", "autocast_scope": "auto"}
    assert PrecisionPolicy(stabilizer="None", spectral_weight_dtype="chalf", half_dtype=None) == \
        PrecisionPolicy(spectral_weight_dtype="complex32")
    assert policy.half_torch_dtype("cpu") is torch.bfloat16
    assert PrecisionPolicy().half_torch_dtype("cuda") is torch.float16  # "auto"
    assert policy.weight_torch_dtype is torch.complex32


def test_policy_is_immutable_and_replace_revalidates():
    policy = PrecisionPolicy("half")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.fno_block_precision = "full"
    assert policy.replace(stabilizer="tanh").stabilizer == "tanh" and policy.stabilizer is None
    with pytest.raises(ValueError, match=r"Invalid stabilizer='clip'; allowed values: None \(unset: the mode's default; typed on a "
                                         r"command line, none is 'off'\), 'off', 'tanh'\."):
        policy.replace(stabilizer="clip")


@pytest.mark.parametrize("key, value, allowed", [
    ("fno_block_precision", "hlaf", "'full', 'mixed', 'half', 'auto'"),
    ("half_dtype", torch.float32, "'auto', 'float16', 'bfloat16'"),
    ("stabilizer", "Tanh", r"None \(unset: the mode's default; typed on a command line, none is 'off'\), 'off', 'tanh'"),
    ("spectral_weight_dtype", "complex128", "'complex64', 'complex32'"),
    ("autocast_scope", "blocks", "'auto', 'model', 'fno_blocks', 'spectral'"),
])
def test_bad_value_in_a_config_names_the_key_the_value_and_the_allowed_values(key, value, allowed):
    shown = "float32" if value is torch.float32 else value
    with pytest.raises(ValueError, match=rf"Invalid model\.{key}='{shown}'; allowed values: {allowed}\."):
        PrecisionPolicy.from_config({key: value})


def test_coerce_and_pop_from():
    assert PrecisionPolicy.coerce("mixed") == PrecisionPolicy("mixed")
    assert PrecisionPolicy.coerce(None) == PrecisionPolicy()
    with pytest.raises(TypeError, match=r"Unknown precision policy keys \['precision'\]"):
        PrecisionPolicy.coerce({"precision": "mixed"})
    policy, rest = PrecisionPolicy.pop_from({"half_dtype": "float16", "n_layers": 2})
    assert policy == PrecisionPolicy(half_dtype="float16") and rest == {"n_layers": 2}


class Zencfg07Bunch(dict):
    """zencfg 0.7's Bunch as it behaves: attribute access to a missing key raises KeyError,
    so ``hasattr(bunch, "to_dict")`` raises instead of returning False."""

    def __getattr__(self, key):
        return self[key]


def test_readers_work_on_dicts_bunches_and_zencfg_configs():
    old = Zencfg07Bunch(model=Zencfg07Bunch(fno_block_precision="mixed", _config_name="FNOConfig"))
    with pytest.raises(KeyError):
        hasattr(old, "to_dict")  # the trap the readers avoid
    config = load_config("darcy", {"model.fno_block_precision": "half"})  # zencfg 1.0 objects
    for section, precision in ((old.model, "mixed"), (Bunch({"fno_block_precision": "mixed"}), "mixed"),
                               ({"fno_block_precision": "mixed"}, "mixed"), (config.model, "half")):
        assert read_key(section, "fno_block_precision") == precision
        assert read_key(section, "not_a_key", 7) == 7
        assert section_dict(section)["fno_block_precision"] == precision
        assert "_config_name" not in section_dict(section)
        assert PrecisionPolicy.from_config(section).fno_block_precision == precision
    assert read_key(None, "x", 3) == 3
    assert [none_if_null(v) for v in ("None", "null", " none ", "", "tanh", None)] == [None] * 4 + ["tanh", None]


def test_a_plugin_model_key_is_declared_once():
    """Every place that lists the plugin's model keys takes them from PrecisionPolicy: the
    config section, get_model, the model classes' signatures and their checkpoint record."""
    keys = PrecisionPolicy.keys()
    assert PLUGIN_MODEL_KEYS == keys
    section = ModelConfig()
    assert {key: getattr(section, key) for key in keys} == PrecisionPolicy.defaults()
    for cls in (MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO):
        params = inspect.signature(cls).parameters
        assert {key: params[key].default for key in keys} == PrecisionPolicy.defaults()
    model = neuralop_mp.get_model({"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1,
                                             "n_modes": [4, 4], "hidden_channels": 4, "n_layers": 1,
                                             "half_dtype": "float16"}})
    assert {key: model._init_kwargs[key] for key in keys} == PrecisionPolicy(half_dtype="float16").as_dict()


def test_a_new_policy_field_reaches_config_and_models_without_other_edits():
    """Adding a key = one field in PrecisionPolicy: the config section generated from the
    policy gains it (built here from a subclass with one more field)."""
    from neuralop_mp.configs import models as config_models

    @dataclasses.dataclass(frozen=True)
    class Extended(PrecisionPolicy):
        fft_dtype: str = dataclasses.field(default="float32", metadata={
            "normalize": lambda v, key: v, "config_type": str, "help": "example"})

    namespace = {}
    original = config_models.PrecisionPolicy
    config_models.PrecisionPolicy = Extended
    try:
        config_models._model_config_body(namespace)
    finally:
        config_models.PrecisionPolicy = original
    assert namespace["fft_dtype"] == "float32" and namespace["__annotations__"]["fft_dtype"] is str
    assert Extended.keys()[-1] == "fft_dtype" and Extended().fft_dtype == "float32"


@pytest.mark.parametrize("mode", ["mixed", "half"])
def test_config_precision_is_set_at_construction_and_not_again_before_training(mode, monkeypatch):
    from neuralop_mp import train_pipeline
    from neuralop_mp.layers import precision_switch
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data

    config = load_config("darcy", {"model.fno_block_precision": mode, "model.half_dtype": "bfloat16",
                                   "model.hidden_channels": "4", "model.n_layers": "1",
                                   "model.n_modes": "[4,4]", "opt.n_epochs": "2"})
    real, calls = precision_switch.set_precision, []
    monkeypatch.setattr(precision_switch, "set_precision",
                        lambda model, *args, **kwargs: calls.append(args) or real(model, *args, **kwargs))
    policy = PrecisionPolicy.from_config(config.model)  # parsed once, shared by model, schedule, trainer
    model = train_pipeline.build_model(config, policy=policy)
    assert model.precision_policy == policy == PrecisionPolicy(mode, "bfloat16")
    trainer = train_pipeline.build_trainer(config, model, None, train_pipeline.build_schedule(config, policy),
                                           progress=False, policy=policy)
    train, test = tiny_data(n=4, batch_size=4)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    assert calls == []  # the trainer found the model already in its phase's settings
    assert [(h["precision"], h["autocast"]) for h in trainer.history] == [(mode, True)] * 2


def test_get_model_takes_an_already_parsed_policy_over_the_configs_keys():
    config = {"model": {"model_arch": "tfno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 4, "n_layers": 1, "fno_block_precision": "hlaf"}}
    with pytest.raises(ValueError, match="Invalid model.fno_block_precision='hlaf'"):
        neuralop_mp.get_model(config)
    policy = PrecisionPolicy("mixed", "float16", "tanh")  # the config's keys are not read again
    model = neuralop_mp.get_model(config, precision_policy=policy)
    assert type(model) is MixedPrecisionTFNO and model.precision_policy == policy
