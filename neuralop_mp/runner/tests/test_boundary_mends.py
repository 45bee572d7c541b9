"""Where ``neuralop_mp.enabled()`` / ``neuralop-mp run`` met upstream's own code: upstream's AdamW
kept unless an option needs ours, the summary's precision as run, upstream's model metadata
beside the trainer's checkpoints, zencfg 1.0's "None" strings, and every ``train()`` call in
the report.

These run the real plugin parts on tiny models (an 8x8 grid, a few samples, 1-2 epochs).
"""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import neuralop
import neuralop.training
import neuralop.training.adamw
import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.runner.activation import NEURALOP_ADAMW_SITES
from neuralop_mp.runner.summary import format_summary
from neuralop_mp.training.checkpointing import CheckpointError, check_optimizer_state, check_state_class
from neuralop_mp.training.tests.tiny import loss, tiny_data

UPSTREAM_ADAMW = neuralop.training.adamw.AdamW
REPO_ROOT = Path(__file__).resolve().parents[3]
ZENCFG_1_DIR = Path(sys.prefix) / "zencfg-1.0.0"
TINY_CONFIG = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                         "hidden_channels": 4, "n_layers": 1}}


@pytest.fixture(autouse=True)
def _left_disabled():
    yield
    neuralop_mp.disable()  # a failing test must not leave the plugin on for the next one
    assert neuralop.training.AdamW is UPSTREAM_ADAMW


def _fno(seed=0):
    torch.manual_seed(seed)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)


def _train_by_hand(model, optimizer, steps=3):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(2, 1, 8, 8, generator=gen)).square().mean().backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def _train(model, optimizer, n_epochs=1, **train_kwargs):
    """Upstream's Trainer as a script calls it (the plugin's while enabled), on the tiny data."""
    train, test = tiny_data(n=8)
    trainer = neuralop.Trainer(model=model, n_epochs=n_epochs, device="cpu", verbose=False)
    trainer.train(train, test, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2), training_loss=loss(),
                  **train_kwargs)
    return trainer


# ------------------------------------------------------------ 1. upstream's AdamW kept
def test_without_an_optimizer_option_upstreams_adamw_is_kept_and_trains_bitwise_alike(tmp_path):
    model = _fno()
    expected = _train_by_hand(model, UPSTREAM_ADAMW(model.parameters(), lr=1e-2))
    with neuralop_mp.enabled() as report:
        assert all(getattr(__import__(module, fromlist=[name]), name) is UPSTREAM_ADAMW
                   for module, name in NEURALOP_ADAMW_SITES)
        model = _fno()
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-2)  # the script's own line
        got = _train_by_hand(model, optimizer)
    assert type(optimizer) is UPSTREAM_ADAMW
    assert optimizer.defaults["eps"] == 1e-6 and optimizer.defaults["correct_bias"] is True
    assert got.keys() == expected.keys() and all(torch.equal(got[k], v) for k, v in expected.items())
    assert report.optimizers == []
    # its state goes on in upstream's AdamW without the plugin (torch's AdamW's: KeyError 'correct_bias')
    resumed = UPSTREAM_ADAMW(model.parameters(), lr=1e-2)
    resumed.load_state_dict(optimizer.state_dict())
    _train_by_hand(model, resumed, steps=1)
    # trained by hand, with no Trainer: the report cannot tell which optimizer ran, and claims none kept
    assert "upstream neuralop.training.AdamW is kept" not in format_summary(report)


def test_update_in_backward_trains_with_upstreams_adamw_as_the_ordinary_step(monkeypatch):
    from neuralop_mp.optim import update_in_backward as module

    enabled, enable = [], module.enable_update_in_backward  # the hooks really stepped in backward
    monkeypatch.setattr(module, "enable_update_in_backward",
                        lambda optimizer, **kwargs: enabled.append(optimizer) or enable(optimizer, **kwargs))
    runs = {}
    for update_in_backward in (False, True):
        with neuralop_mp.enabled(update_in_backward=update_in_backward):
            model = _fno()
            optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-2)
            torch.manual_seed(0)
            _train(model, optimizer)
        assert type(optimizer) is UPSTREAM_ADAMW
        assert enabled == ([optimizer] if update_in_backward else [])
        runs[update_in_backward] = model.state_dict()
    assert all(torch.equal(v, runs[True][k]) for k, v in runs[False].items() if torch.is_tensor(v))


@pytest.mark.parametrize("options, kind, reason", [
    ({"optimizer": "tensorgrad"}, "tensorgrad", "optimizer=tensorgrad"),
    ({"spectral_weight_dtype": "complex32"}, "adamw", "spectral_weight_dtype=complex32 (upstream's AdamW would "
                                                      "keep complex32 moments, and cannot step them on CPU)"),
])
def test_an_option_that_needs_the_plugins_optimizer_replaces_upstreams_and_says_why(options, kind, reason):
    with neuralop_mp.enabled(**options) as report:
        assert neuralop.training.AdamW is not UPSTREAM_ADAMW
        model = neuralop.get_model(TINY_CONFIG)
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-3)
    # TensorGRaD, also for "adamw" on complex32 weights (fp32 moments)
    assert type(optimizer).__name__ == "TensorGRaD" and not isinstance(optimizer, UPSTREAM_ADAMW)
    (entry,) = report.optimizers
    assert (entry["kind"], entry["reason"]) == (kind, reason)
    assert (f"optimizer: upstream neuralop.training.AdamW replaced by TensorGRaD ({kind}) because {reason}"
            in format_summary(report))


def test_complex32_weights_of_the_scripts_own_config_with_upstreams_adamw_kept_are_noted():
    config = {"model": dict(TINY_CONFIG["model"], fno_block_precision="mixed", spectral_weight_dtype="complex32")}
    with neuralop_mp.enabled() as report:
        neuralop.get_model(config)
    assert neuralop.training.AdamW is UPSTREAM_ADAMW
    assert any(n.startswith("the model has complex32 spectral weights (the script's model.spectral_weight_dtype)")
               for n in report.notes), report.notes


def test_a_checkpoint_of_upstreams_adamw_resumed_by_torchs_names_both_classes(tmp_path):
    with neuralop_mp.enabled():
        model = _fno()
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-2), save_every=1, save_dir=tmp_path)
    with neuralop_mp.enabled(optimizer="adamw"), pytest.raises(CheckpointError) as refused:
        model = _fno()
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-2), n_epochs=2, resume_from_dir=tmp_path)
    assert str(refused.value).endswith(
        " It was written by upstream neuralop.training.AdamW; this run's optimizer is torch.optim.AdamW.")


def test_checkpoint_checks_name_upstreams_adamw_and_the_plugins_optimizers_exactly(tmp_path):
    from neuralop_mp.optim.tensorgrad import TensorGRaD

    path = tmp_path / "optimizer.pt"
    params = list(_fno().parameters())
    upstream, ours = UPSTREAM_ADAMW(params), TensorGRaD(params)
    # TensorGRaD's state, class recorded, resumed by upstream's AdamW
    with pytest.raises(CheckpointError, match=r"It was written by neuralop_mp\.optim\.TensorGRaD; "
                                              r"this run's optimizer is upstream neuralop\.training\.AdamW\.$"):
        check_state_class("optimizer", upstream, "TensorGRaD", path, state=ours.state_dict())
    # upstream's AdamW state without a recorded class (a converted upstream checkpoint): its settings are a
    # subset of TensorGRaD's, which loaded it and ran without compression; refused now, naming both
    with pytest.raises(CheckpointError, match=r"It was written by upstream neuralop\.training\.AdamW; this run's "
                                              r"optimizer is neuralop_mp\.optim\.TensorGRaD\.$"):
        check_optimizer_state(ours, upstream.state_dict(), path)
    check_optimizer_state(UPSTREAM_ADAMW(params), upstream.state_dict(), path)  # its own class: accepted


# ------------------------------------------------------------ 2. the summary's precision as run
def test_the_summary_says_autocast_the_resolved_half_type_and_what_ran_on_this_device():
    with neuralop_mp.enabled(precision="half") as report:
        model = neuralop.get_model(TINY_CONFIG)
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-3))
    summary = format_summary(report)
    assert "built in half (half dtype auto (bfloat16), stabilizer None" in summary, summary
    assert "precision phases: half+autocast in bfloat16 (epoch 0)" in summary, summary
    assert "precision as run: half: runs as mixed on CPU, fp32 FFT, bfloat16 contraction" in summary, summary


def test_the_summary_says_the_scripts_own_autocast_flag_without_plugin_flags():
    with neuralop_mp.enabled() as report:
        model = _fno()
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-3)
        train, test = tiny_data(n=8)
        trainer = neuralop.Trainer(model=model, n_epochs=1, device="cpu", verbose=False, mixed_precision=True)
        trainer.train(train, test, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2), training_loss=loss())
    summary = format_summary(report)
    assert "precision phases: full+autocast in bfloat16 (epoch 0)" in summary, summary
    assert "precision as run: full: fp32 FFT, complex64 contraction" in summary, summary


# ------------------------------------------------------------ 3. upstream's model metadata
def test_trainer_checkpoints_hold_the_model_metadata_that_upstreams_from_checkpoint_reads(tmp_path):
    with neuralop_mp.enabled():
        model = _fno()  # upstream's class, built by the script
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-2)
        _train(model, optimizer, save_every=1, save_dir=tmp_path / "upstream_model")
    loaded = FNO.from_checkpoint(tmp_path / "upstream_model", "model")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items() if torch.is_tensor(v))
    with neuralop_mp.enabled(precision="mixed"):
        model = neuralop.get_model(TINY_CONFIG)  # the plugin's class: as upstream's UQNO script reloads it
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-2)
        _train(model, optimizer, save_every=1, save_dir=tmp_path / "plugin_model")
        # a folder holding the metadata still resumes (and is replaced by the next save)
        _train(model, optimizer, n_epochs=2, save_every=1, save_dir=tmp_path / "plugin_model",
               resume_from_dir=tmp_path / "plugin_model")
    loaded = type(model).from_checkpoint(tmp_path / "plugin_model", "model")
    assert loaded.precision_policy.fno_block_precision == "mixed"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items() if torch.is_tensor(v))


# ------------------------------------------------------------ 4. zencfg 1.0's "None" strings
def _none_strings_are_read_as_none():
    """A copy of upstream's model config (``"None"`` strings, ``arch`` given a default) builds
    through the plugin's get_model from its ``to_dict()``, under the zencfg installed."""
    from typing import List

    from zencfg import ConfigBase

    from neuralop_mp.configs import section_dict

    class ModelConfig(ConfigBase):
        arch: str = "fno"
        model_arch: str = "fno"
        data_channels: int = 1
        out_channels: int = 1
        n_modes: List[int] = [4, 4]
        hidden_channels: int = 4
        n_layers: int = 1
        norm: str = "None"
        factorization: str = "None"
        stabilizer: str = "None"  # upstream's config/models.py spelling

    class OtherConfig(ConfigBase):
        names: List[str] = ["None"]  # in a list: kept, as zencfg 0.7 keeps it

    class Config(ConfigBase):
        model: ModelConfig = ModelConfig()

    config = Config()
    section = section_dict(config.to_dict()["model"])
    assert (section["norm"], section["factorization"], section["stabilizer"]) == (None, None, None), section
    assert section_dict(OtherConfig().to_dict())["names"] == ["None"]
    assert section_dict({"factorization": "None"}) == {"factorization": "None"}  # a plain dict: as given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's get_model warns of the arguments FNO does not take
        with neuralop_mp.enabled(precision="mixed") as report:
            neuralop.get_model(config.to_dict())
            neuralop.get_model(config)
    assert [m["layer_types"] for m in report.models] == [["MixedPrecisionSpectralConv"]] * 2


def test_upstreams_none_strings_are_none_under_the_installed_zencfg():
    _none_strings_are_read_as_none()


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_upstreams_none_strings_are_none_under_zencfg_1_0():
    if not (ZENCFG_1_DIR / "zencfg" / "__init__.py").is_file():
        pytest.skip(f"zencfg 1.0.0 not found in {ZENCFG_1_DIR}; `bash dev.sh setup` installs it there")
    code = ("import zencfg\nassert zencfg.__version__ == '1.0.0', zencfg.__file__\n"
            "from neuralop_mp.runner.tests.test_boundary_mends import _none_strings_are_read_as_none\n"
            "_none_strings_are_read_as_none()\nprint('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ZENCFG_1_DIR), str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# ------------------------------------------------------------ 5d. every train() call in the report
def test_every_train_call_is_in_the_report_and_the_summary(tmp_path):
    with neuralop_mp.enabled(precision="mixed") as report:
        model = neuralop.get_model(TINY_CONFIG)
        optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-3)
        trainer = _train(model, optimizer, n_epochs=2, save_every=1, save_dir=tmp_path)
        trainer.n_epochs = 3
        trainer.train(*tiny_data(n=8), optimizer, None, training_loss=loss(), resume_from_dir=tmp_path)
        _train(model, optimizer, n_epochs=1)  # a second trainer
    first, second = report.trainers
    assert [[h["epoch"] for h in call["history"]] for call in first["calls"]] == [[0, 1], [2]]  # resumed once
    assert [h["epoch"] for h in first["history"]] == [0, 1, 2]
    assert [h["epoch"] for h in second["history"]] == [0]
    summary = format_summary(report)
    assert "over 4 epochs in 3 train() calls" in summary, summary
    assert "precision phases (train() call 2 of 3): mixed+autocast in bfloat16 (epoch 2)" in summary, summary


def test_tensorgrad_settings_without_an_optimizer_kind_are_refused():
    """They would be read by nothing: without an optimizer kind upstream's AdamW is kept."""
    import neuralop_mp

    with pytest.raises(ValueError, match=r"tensorgrad_rank set\(s\) TensorGRaD settings, which only optimizer "
                                         r"tensorgrad\|galore\|sparse reads, and no optimizer is given"):
        with neuralop_mp.enabled(optimizer_options={"tensorgrad_rank": 0.5}):
            pass


def test_a_checkpoint_of_an_earlier_run_with_torchs_adamw_says_how_to_resume_it(tmp_path):
    """Before upstream's AdamW was kept, `neuralop-mp run` built torch's AdamW in every run: the
    refusal of such a state by the script's upstream AdamW says which option builds it again, and
    that option resumes it."""
    with neuralop_mp.enabled(optimizer="adamw"):  # what such a run built
        model = _fno()
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-2), save_every=1, save_dir=tmp_path)
    with neuralop_mp.enabled(), pytest.raises(CheckpointError) as refused:
        model = _fno()
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-2), n_epochs=2, resume_from_dir=tmp_path)
    assert "this run's optimizer is upstream neuralop.training.AdamW. Under `neuralop-mp run`" in str(refused.value)
    assert "--mp.optimizer adamw (optimizer='adamw')" in str(refused.value)
    with neuralop_mp.enabled(optimizer="adamw"):
        model = _fno()
        _train(model, neuralop.training.AdamW(model.parameters(), lr=1e-2), n_epochs=2, resume_from_dir=tmp_path)


@pytest.mark.parametrize("optimizer, option", [("galore", "tensorgrad_sparse_ratio"), ("sparse", "tensorgrad_rank")])
def test_a_setting_the_optimizer_kind_drops_is_refused_before_the_script_runs(optimizer, option):
    with pytest.raises(ValueError, match=rf"Invalid {option}=0\.5 with optimizer='{optimizer}': that kind does not "
                                         "read it"):
        with neuralop_mp.enabled(optimizer=optimizer, optimizer_options={option: 0.5}):
            pass
