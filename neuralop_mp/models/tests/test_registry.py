"""Registry glue: UNO by name, upstream names intact, our layer injected, "full" == upstream."""
import neuralop
import neuralop.models as upstream_models
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import BaseModel
from zencfg.bunch import Bunch

import neuralop_mp
from neuralop_mp.models.registry import PLUGIN_MODEL_KEYS
from neuralop_mp.models.registry import UNO as RegisteredUNO

SMALL = {
    "fno": dict(model_arch="fno", data_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=8, n_layers=2),
    "tfno": dict(model_arch="tfno", data_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=8,
                 n_layers=2, rank=0.5),
    "uno": dict(model_arch="uno", data_channels=1, out_channels=1, hidden_channels=8, lifting_channels=8,
                projection_channels=8, n_layers=2, uno_out_channels=[8, 8], uno_n_modes=[[4, 4], [4, 4]],
                uno_scalings=[[1.0, 1.0], [1.0, 1.0]], channel_mlp_skip="linear"),
}
UPSTREAM_CLASS = {"fno": upstream_models.FNO, "tfno": upstream_models.TFNO, "uno": upstream_models.UNO}


def config_for(arch, **model_overrides):
    return Bunch({"model": {**SMALL[arch], **model_overrides}})


def spectral_layers(model):
    return [m for m in model.modules() if isinstance(m, SpectralConv)]


def test_uno_buildable_by_upstream_and_plugin_get_model():
    for build in (neuralop.get_model, neuralop_mp.get_model):
        model = build(config_for("uno"))
        assert isinstance(model, upstream_models.UNO)
        assert isinstance(model, BaseModel)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    assert "uno" in neuralop_mp.available_models()


@pytest.mark.parametrize("name", ["fno", "tfno", "uqno", "fnogno", "gino"])
def test_upstream_names_still_map_to_upstream_classes(name):
    upstream = {cls.__name__.lower(): cls for cls in vars(upstream_models).values()
                if isinstance(cls, type) and issubclass(cls, BaseModel)}
    assert BaseModel._models[name] is upstream[name]
    assert BaseModel._models[name].__module__.startswith("neuralop.")


def test_uno_registration_keeps_upstream_state_dict_keys():
    torch.manual_seed(0)
    ours = neuralop_mp.get_model(config_for("uno"))
    torch.manual_seed(0)
    kwargs = {k: v for k, v in SMALL["uno"].items() if k not in ("model_arch", "data_channels")}
    theirs = upstream_models.UNO(in_channels=1, **kwargs)
    ours_keys = {k for k in ours.state_dict() if k != "_metadata"}
    assert ours_keys == set(theirs.state_dict())
    assert type(ours) is RegisteredUNO


@pytest.mark.parametrize("arch", ["fno", "tfno", "uno"])
def test_full_precision_equals_upstream_with_same_weights(arch):
    model = neuralop_mp.get_model(config_for(arch, fno_block_precision="full"))
    assert all(type(layer) is SpectralConv for layer in spectral_layers(model))
    kwargs = {k: v for k, v in SMALL[arch].items() if k not in ("model_arch", "data_channels")}
    upstream = UPSTREAM_CLASS[arch](in_channels=1, **kwargs)
    state = {k: v for k, v in upstream.state_dict().items() if k != "_metadata"}
    model.load_state_dict(state)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), upstream(x))


@pytest.mark.parametrize("arch", ["fno", "tfno", "uno"])
def test_mixed_precision_injects_our_layer(arch):
    from neuralop_mp import MixedPrecisionSpectralConv, get_precision

    model = neuralop_mp.get_model(config_for(arch, fno_block_precision="mixed", half_dtype="bfloat16"))
    layers = spectral_layers(model)
    assert layers and all(isinstance(layer, MixedPrecisionSpectralConv) for layer in layers)
    assert get_precision(model)[:2] == ("mixed", "bfloat16")


@pytest.mark.parametrize("arch", ["fno", "tfno", "uno"])
def test_our_layer_in_full_precision_matches_upstream_weights(arch):
    torch.manual_seed(0)
    # a schedule forces our layer even in "full"; with upstream's weights the outputs agree
    config = config_for(arch, fno_block_precision="full")
    config["opt"] = {"precision_schedule": "mixed:0.5,full:0.5"}
    model = neuralop_mp.get_model(config)
    from neuralop_mp import MixedPrecisionSpectralConv

    assert all(isinstance(layer, MixedPrecisionSpectralConv) for layer in spectral_layers(model))
    kwargs = {k: v for k, v in SMALL[arch].items() if k not in ("model_arch", "data_channels")}
    upstream = UPSTREAM_CLASS[arch](in_channels=1, **kwargs)
    model.load_state_dict({k: v for k, v in upstream.state_dict().items() if k != "_metadata"})
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), upstream(x), rtol=1e-5, atol=1e-6)


def test_stabilizer_reaches_tfno_blocks_in_full_precision():
    # TFNO's constructor is (*args, **kwargs): the flag must still be forwarded
    model = neuralop_mp.get_model(config_for("tfno", stabilizer="tanh"))
    assert model.fno_blocks.stabilizer == "tanh"
    assert all(type(layer) is SpectralConv for layer in spectral_layers(model))


def test_stabilizer_on_uno_uses_our_layer_instead_of_being_dropped():
    model = neuralop_mp.get_model(config_for("uno", stabilizer="tanh"))
    blocks = [m for m in model.modules() if type(m).__name__ == "FNOBlocks"]
    assert blocks and all(b.stabilizer == "tanh" for b in blocks)


def test_bad_arch_names_value_and_allowed():
    with pytest.raises(ValueError, match=r"model_arch='fnoo'.*fno.*tfno.*uno"):
        neuralop_mp.get_model(config_for("fno", model_arch="fnoo"))


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_a_model_section_without_data_channels_names_the_key(arch):
    """It was a bare KeyError: 'data_channels'."""
    model = {k: v for k, v in SMALL[arch].items() if k != "data_channels"}
    with pytest.raises(ValueError, match=r"config.model needs data_channels: the input's channel count"):
        neuralop_mp.get_model(Bunch({"model": model}))


def test_unknown_model_key_is_an_error_not_ignored():
    with pytest.raises(ValueError, match=r"n_mode.*FNO does not accept"):
        neuralop_mp.get_model(config_for("fno", n_mode=[4, 4]))


@pytest.mark.parametrize("key, value, allowed", [
    ("fno_block_precision", "hlaf", "'full', 'mixed', 'half'"),
    ("half_dtype", "fp16", "'auto', 'float16', 'bfloat16'"),
    ("stabilizer", "relu", "None (unset: the mode's default; typed on a command line, none is 'off'), 'off', 'tanh'"),
    ("spectral_weight_dtype", "complex16", "'complex64', 'complex32'"),
])
def test_bad_precision_flags_rejected(key, value, allowed):
    with pytest.raises(ValueError) as info:
        neuralop_mp.get_model(config_for("fno", **{key: value}))
    assert f"model.{key}={value!r}" in str(info.value) and allowed in str(info.value)


def test_patching_levels_multiply_input_channels():
    config = config_for("fno")
    config["patching"] = {"levels": 2}
    model = neuralop_mp.get_model(config)
    assert model._init_kwargs["in_channels"] == 3


def test_zencfg_config_builds_with_every_model_field_recorded():
    from neuralop_mp.configs import field_names, load_config

    config = load_config("darcy", {"model.hidden_channels": "8", "model.n_layers": "2"})
    model = neuralop_mp.get_model(config)
    recorded = model._init_kwargs
    for name in field_names(config.model):
        if name in ("model_arch", "data_channels") or name in PLUGIN_MODEL_KEYS:
            continue
        if name == "recompute":  # how backward runs, not a constructor argument: set on the built model
            from neuralop_mp.models.recompute import recompute_mode

            assert recompute_mode(model) == (getattr(config.model, name) or "none")
            continue
        if name == "recompute_chunk_points":  # "block" only; None by default
            assert getattr(config.model, name) is None
            continue
        assert recorded[name] == getattr(config.model, name), name
    assert recorded["in_channels"] == config.model.data_channels


@pytest.mark.parametrize("as_dict", [False, True], ids=["config", "to_dict"])
def test_upstreams_none_strings_build_the_same_model_under_every_zencfg(as_dict):
    """Upstream's configs write ``factorization: str = "None"``: zencfg 0.7 reads it as None, 1.0
    keeps the string, which tltorch and the positional embedding refused (run under both versions by
    integration_tests/test_zencfg_versions.py)."""
    from neuralop_mp.configs import DarcyConfig, FNOConfig

    config = DarcyConfig(model=FNOConfig(n_modes=[8, 8], hidden_channels=8, factorization="None",
                                         positional_embedding="None"))
    model = neuralop_mp.get_model(config.to_dict() if as_dict else config)
    assert model.positional_embedding is None and model._init_kwargs["factorization"] is None
    assert type(model.fno_blocks.convs[0].weight).__name__ == "DenseTensor"


def _slice_sizes(model):
    """``chunk_points`` of every pointwise module that ``recompute="block"`` slices."""
    return [m.__dict__["forward"].chunk_points for m in model.modules()
            if hasattr(m.__dict__.get("forward"), "chunk_points")]


def test_recompute_chunk_points_from_a_command_line_config_reach_the_sliced_modules():
    from neuralop_mp.configs import load_config

    overrides = {"model.hidden_channels": "8", "model.n_layers": "2", "model.recompute": "block"}
    default = neuralop_mp.get_model(load_config("darcy", overrides))
    chosen = neuralop_mp.get_model(load_config("darcy", {**overrides, "model.recompute_chunk_points": "96"}))
    from neuralop_mp.models.pointwise_chunks import DEFAULT_CHUNK_POINTS

    assert _slice_sizes(default) and set(_slice_sizes(default)) == {DEFAULT_CHUNK_POINTS}
    assert set(_slice_sizes(chosen)) == {96}
    x = torch.randn(2, 1, 16, 16)  # 512 grid points: several 96-point slices
    chosen(x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in chosen.parameters() if p.requires_grad)


@pytest.mark.parametrize("recompute, chunk_points, error, message", [
    ("block", 0, ValueError, r"model.recompute_chunk_points=0; allowed values: integers >= 1"),
    ("block", 2.5, TypeError, r"model.recompute_chunk_points=2.5; allowed values: integers >= 1"),
    ("fourier", 64, ValueError, r"model.recompute_chunk_points=64 is used only with model.recompute='block', "
                                r"not with model.recompute='fourier'"),
    (None, 64, ValueError, r"used only with model.recompute='block', not with model.recompute='none'"),
])
def test_bad_recompute_chunk_points_are_named_with_the_mode(recompute, chunk_points, error, message):
    config = config_for("fno", recompute=recompute, recompute_chunk_points=chunk_points)
    with pytest.raises(error, match=message):
        neuralop_mp.get_model(config)


@pytest.fixture
def registered_subclasses():
    """Two users' subclasses of the plugin's FNO, registered by name for configs, unregistered after."""
    from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO

    class PassThrough(MixedPrecisionFNO, name="RegistryTestPassThroughFNO"):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    class Narrow(MixedPrecisionFNO, name="RegistryTestNarrowFNO"):
        def __init__(self, n_modes, in_channels, out_channels, hidden_channels, n_layers=2):
            super().__init__(n_modes=n_modes, in_channels=in_channels, out_channels=out_channels,
                             hidden_channels=hidden_channels, n_layers=n_layers)

    yield {"registrytestpassthroughfno": PassThrough, "registrytestnarrowfno": Narrow}
    for name in ("registrytestpassthroughfno", "registrytestnarrowfno"):
        BaseModel._models.pop(name, None)


@pytest.mark.parametrize("arch", ["registrytestpassthroughfno", "registrytestnarrowfno"])
def test_a_registered_subclass_of_a_plugin_class_builds_in_the_configured_precision(registered_subclasses, arch):
    """A user's subclass of MixedPrecisionFNO registered for configs is built as itself, in the precision
    the config asks for: passed to a constructor that takes it, else set on the built model (it
    was refused as having "no mixed-precision version")."""
    config = Bunch({"model": {**SMALL["fno"], "model_arch": arch, "fno_block_precision": "mixed",
                              "half_dtype": "bfloat16"}})
    model = neuralop_mp.get_model(config)
    assert type(model) is registered_subclasses[arch]
    assert model.precision_policy.fno_block_precision == "mixed"
    assert model.precision_policy.half_dtype == "bfloat16"
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)


@pytest.fixture
def self_setting_subclass():
    """A user's registered subclass whose narrow constructor picks its own precision ("half")."""
    from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO

    class HalfFNO(MixedPrecisionFNO, name="RegistryTestHalfFNO"):
        def __init__(self, n_modes, in_channels, out_channels, hidden_channels, n_layers=2):
            super().__init__(n_modes=n_modes, in_channels=in_channels, out_channels=out_channels,
                             hidden_channels=hidden_channels, n_layers=n_layers, fno_block_precision="half",
                             half_dtype="bfloat16")

    yield HalfFNO
    BaseModel._models.pop("registrytesthalffno", None)


def test_a_registered_subclass_keeps_its_own_precision_where_the_config_gives_none(self_setting_subclass):
    """No precision key in the config: the constructor's own "half" stays (it was reset to the
    defaults); "full" given explicitly is applied; "auto" is taken as the plugin's classes take it:
    full until decided from data."""
    model = neuralop_mp.get_model(Bunch({"model": {**SMALL["fno"], "model_arch": "registrytesthalffno"}}))
    assert type(model) is self_setting_subclass and model.precision_policy.fno_block_precision == "half"
    # a setting the config gives is applied even where it is the default (it was taken for none given)
    full = neuralop_mp.get_model(Bunch({"model": {**SMALL["fno"], "model_arch": "registrytesthalffno",
                                                  "fno_block_precision": "full"}}))
    assert full.precision_policy.fno_block_precision == "full"
    auto = neuralop_mp.get_model(Bunch({"model": {**SMALL["fno"], "model_arch": "registrytesthalffno",
                                                  "fno_block_precision": "auto"}}))
    assert auto.precision_policy.fno_block_precision == "full" and auto.precision_decision == "pending"
