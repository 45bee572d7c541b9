"""The shared build steps: the precision policy is parsed once per run, and a bad value is named."""
import pytest
import torch
from torch.utils.data import DataLoader

from neuralop_mp import build_steps, train_pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.configs.validation import validated_precision_policy
from neuralop_mp.precision_policy import PrecisionPolicy

TINY = {"model.n_modes": "[4,4]", "model.hidden_channels": "4", "model.n_layers": "1",
        "opt.n_epochs": "1", "data.test_resolutions": "[8]", "data.n_tests": "[4]",
        "data.test_batch_sizes": "[4]", "data.train_resolution": "8", "data.batch_size": "4",
        "data.n_train": "4"}


def test_validated_precision_policy_returns_the_configs_policy_and_names_a_bad_value():
    config = load_config("darcy", {**TINY, "model.fno_block_precision": "mixed", "model.half_dtype": "float16"})
    assert validated_precision_policy(config) == PrecisionPolicy("mixed", half_dtype="float16")
    assert build_steps.precision_policy(config) == PrecisionPolicy("mixed", half_dtype="float16")
    config.model.fno_block_precision = "quarter"
    with pytest.raises(ValueError, match="model.fno_block_precision.*quarter.*full"):
        validated_precision_policy(config)


def test_run_training_parses_the_precision_policy_once(monkeypatch):
    """Model, schedule and trainer get the policy that validation returned; config.model is not re-read."""
    config = load_config("darcy", {**TINY, "model.fno_block_precision": "mixed"})
    generator = torch.Generator().manual_seed(0)
    samples = [{"x": torch.randn(1, 8, 8, generator=generator), "y": torch.randn(1, 8, 8, generator=generator)}
               for _ in range(4)]
    loaders = (DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None)
    monkeypatch.setattr(train_pipeline, "build_data", lambda config, progress=True: loaders)
    calls = []
    original = PrecisionPolicy.from_config.__func__

    def counting_from_config(cls, section, prefix="model"):
        calls.append(prefix)
        return original(cls, section, prefix)

    monkeypatch.setattr(PrecisionPolicy, "from_config", classmethod(counting_from_config))
    result = train_pipeline.run_training(config, progress=False, write=False, log=lambda *a: None)
    # config.model's keys are read once; the plugin's model class checks its own constructor
    # arguments too (prefix: the class name), as it does when built without a config
    assert calls.count("model") == 1, calls
    assert set(calls) <= {"model", "MixedPrecisionFNO"}, calls
    assert result["precision"]["final_mode"] == "mixed"


def _fake_loaders():
    generator = torch.Generator().manual_seed(0)
    samples = [{"x": torch.randn(1, 8, 8, generator=generator), "y": torch.randn(1, 8, 8, generator=generator)}
               for _ in range(4)]
    return DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None


def test_train_warns_that_model_stabilizer_is_not_applied_under_a_precision_schedule(monkeypatch):
    config = load_config("darcy", {**TINY, "opt.n_epochs": "2", "model.stabilizer": "tanh",
                                   "opt.precision_schedule": "half:0.5,mixed", "model.half_dtype": "bfloat16"})
    monkeypatch.setattr(train_pipeline, "build_data", lambda config, progress=True: _fake_loaders())
    messages = []
    result = train_pipeline.run_training(config, progress=False, write=False, log=messages.append)
    warnings = [m for m in messages if "WARNING" in m]
    assert warnings == [
        "[neuralop-mp] WARNING: model.stabilizer='tanh' is not applied: with opt.precision_schedule='half:0.5,mixed:0.5' "
        "each phase runs with its own stabilizer ('half:0.5': none; 'mixed:0.5': none). To run a phase with tanh, "
        "write '/tanh' after it in opt.precision_schedule, e.g. 'mixed/tanh'; to use model.stabilizer for the whole "
        "run, leave opt.precision_schedule unset."], messages
    # what the warning says is what ran
    assert [h["stabilizer"] for h in result["history"]] == [None, None]


def test_no_stabilizer_warning_without_a_schedule_or_a_stabilizer():
    assert build_steps.stabilizer_schedule_warning("tanh", None) is None
    assert build_steps.stabilizer_schedule_warning(None, "paper") is None
    assert build_steps.stabilizer_schedule_warning("none", "paper") is None
    text = build_steps.stabilizer_schedule_warning("tanh", "half@1,full", "float16")
    assert "('half@1': tanh; 'full': none)" in text
    assert "('half@1': tanh with float16, none with bfloat16;" in build_steps.stabilizer_schedule_warning(
        "tanh", "half@1,full", "auto")
