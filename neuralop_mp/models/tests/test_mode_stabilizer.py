"""A config's unset stabilizer is its mode's default in ``get_model``, as ``neuralop-mp train`` runs it.

``train`` runs ``model.fno_block_precision="half"`` as a constant schedule whose phase applies
tanh with float16 and none with bfloat16 (``training/schedule.py``); ``neuralop_mp.get_model``
of the same config used to build the model without tanh, so a user's own loop (or
``MixedPrecisionTrainer`` without a schedule) trained float16 FFTs unguarded.
"""
import warnings

import pytest
import torch

import neuralop_mp
from neuralop_mp import PrecisionPolicy, get_precision
from neuralop_mp.configs import load_config
from neuralop_mp.training.schedule import PrecisionPhase

ARCHS = {
    "fno": dict(model_arch="fno", data_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=8, n_layers=2),
    "tfno": dict(model_arch="tfno", data_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=8,
                 n_layers=2),
    "uno": dict(model_arch="uno", data_channels=1, out_channels=1, hidden_channels=8, lifting_channels=8,
                projection_channels=8, n_layers=2, uno_out_channels=[8, 8], uno_n_modes=[[4, 4], [4, 4]],
                uno_scalings=[[1.0, 1.0], [1.0, 1.0]], channel_mlp_skip="linear"),
}


def build(config, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's notes on UNO's skips
        return neuralop_mp.get_model(config, **kwargs)


def half(arch, half_dtype, **keys):
    return {"model": dict(ARCHS[arch], fno_block_precision="half", half_dtype=half_dtype, **keys)}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_an_unset_stabilizer_is_the_one_the_train_schedule_runs(arch):
    for half_dtype, expected in (("float16", "tanh"), ("bfloat16", None)):
        model = build(half(arch, half_dtype))
        # train's constant schedule of this config (build_steps.precision_schedule): its one phase
        assert PrecisionPhase("half").stabilizer_for(getattr(torch, half_dtype)) == expected
        assert get_precision(model) == ("half", half_dtype, expected)
        # an explicit None is unset (zencfg's default), "tanh" is kept with bfloat16 too
        assert get_precision(build(half(arch, half_dtype, stabilizer=None)))[2] == expected
        assert get_precision(build(half(arch, half_dtype, stabilizer="tanh")))[2] == "tanh"
        # "mixed" has no stabilizer by default: train's phase has none either
        mixed = {"model": dict(ARCHS[arch], fno_block_precision="mixed", half_dtype=half_dtype)}
        assert get_precision(build(mixed)) == ("mixed", half_dtype, None)


def test_the_policy_and_the_schedule_share_one_rule():
    from neuralop_mp.precision_policy import auto_stabilizer

    for dtype in (torch.float16, torch.bfloat16):
        policy = PrecisionPolicy("half", half_dtype=dtype).with_mode_stabilizer("cpu")
        assert policy.stabilizer == PrecisionPhase("half").stabilizer_for(dtype) == auto_stabilizer(dtype)
    for mode in ("full", "mixed"):
        assert PrecisionPolicy(mode, half_dtype="float16").with_mode_stabilizer("cpu").stabilizer is None
    named = PrecisionPolicy("half", half_dtype="bfloat16", stabilizer="tanh")
    assert named.with_mode_stabilizer("cpu") is named


def test_half_dtype_auto_follows_the_configs_device(monkeypatch):
    """"auto" is float16 on CUDA: the config's device decides, as it decides train's device; a
    config without one (upstream's) is taken to run where device "auto" would."""
    cases = [("cuda", False, "tanh"), ("cuda:1", False, "tanh"), ("auto", True, "tanh"), (None, True, "tanh"),
             ("cpu", True, None), ("auto", False, None), (None, False, None)]
    for device, cuda, expected in cases:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        config = half("fno", "auto")
        if device is not None:
            config["device"] = device
        assert get_precision(build(config)) == ("half", "auto", expected), (device, cuda)


def test_a_bad_device_is_named_when_it_decides_the_stabilizer():
    with pytest.raises(ValueError, match=r"^Invalid device 'gpu'; allowed: auto, cpu, cuda, cuda:N\.$"):
        build({**half("fno", "auto"), "device": "gpu"})
    # the run's parse (run_setup.parse_device): a device type train refuses is refused here too
    with pytest.raises(ValueError, match=r"^Unsupported device 'mps'; allowed: auto, cpu, cuda, cuda:N\.$"):
        build({**half("fno", "auto"), "device": "mps"})
    # where the device decides nothing (a named stabilizer, another mode, a concrete half type) it is
    # not read: get_model read no device before the default was built
    for config in (half("fno", "auto", stabilizer="tanh"), half("fno", "bfloat16"),
                   {"model": dict(half("fno", "auto")["model"], fno_block_precision="mixed")}):
        build({**config, "device": "mps"})


def test_the_plugin_class_by_name_and_a_passed_policy_get_it_too():
    # model_arch of the plugin's own class, and no stabilizer key at all
    by_name = dict(ARCHS["fno"], model_arch="mixedprecisionfno", fno_block_precision="half", half_dtype="float16")
    assert get_precision(build({"model": by_name}))[2] == "tanh"
    # the train pipeline passes the parsed policy (build_steps.build_model)
    policy = PrecisionPolicy("half", half_dtype="float16")
    assert get_precision(build({"model": ARCHS["fno"]}, precision_policy=policy))[2] == "tanh"
    # upstream's own half mode (mixed_precision_layer=False) keeps the config's stabilizer as given
    upstream = build({"model": dict(ARCHS["fno"], fno_block_precision="half")}, mixed_precision_layer=False)
    assert type(upstream).__name__ == "FNO" and upstream.fno_blocks.stabilizer is None


def test_a_saved_model_records_and_restores_the_stabilizer_it_was_built_with(tmp_path):
    model = build(half("tfno", "float16"))
    model.save_checkpoint(tmp_path, "model")
    loaded = neuralop_mp.load_model(tmp_path, "model")
    assert get_precision(loaded) == get_precision(model) == ("half", "float16", "tanh")


def test_get_model_and_train_of_the_same_config_build_the_same_stabilizer(monkeypatch, tmp_path):
    """One epoch of ``train`` (what its saved model records) against ``get_model`` of its config."""
    from torch.utils.data import DataLoader

    from neuralop_mp import train_pipeline as pipeline

    generator = torch.Generator().manual_seed(0)
    samples = [{"x": torch.randn(1, 8, 8, generator=generator), "y": torch.randn(1, 8, 8, generator=generator)}
               for _ in range(4)]
    loaders = (DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None)
    monkeypatch.setattr(pipeline, "build_data", lambda config, progress=True: loaders)
    config = load_config("darcy", {
        "model.n_modes": "[4,4]", "model.hidden_channels": "4", "model.n_layers": "1",
        "model.fno_block_precision": "half", "model.half_dtype": "float16", "opt.n_epochs": "1",
        "data.test_resolutions": "[8]", "data.n_tests": "[4]", "data.test_batch_sizes": "[4]",
        "data.train_resolution": "8", "data.batch_size": "4", "data.n_train": "4", "verbose": "false"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 on CPU: slow-path notes
        pipeline.run_training(config, progress=False, output_dir=tmp_path / "run", log=lambda *a, **k: None)
    trained = neuralop_mp.load_model(tmp_path / "run", "model")
    assert get_precision(trained) == get_precision(build(config)) == ("half", "float16", "tanh")
