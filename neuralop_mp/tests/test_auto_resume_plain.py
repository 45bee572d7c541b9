"""A plain ``fno_block_precision="auto"`` run (no precision schedule) resumed: with the conditions its
epochs ran under it keeps its decision and trains bitwise as an uninterrupted run; with another half
type it measures the weights it resumes (not the untrained model), warns, and results.json says why."""
import pytest
import torch

from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.diagnose import auto as auto_module
from neuralop_mp.training.checkpointing import load_weights_only

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

AUTO = {**TINY_RUN, "model.fno_block_precision": "auto", "model.half_dtype": "bfloat16"}


def _train(out, n_epochs, resume=False, log=None, **overrides):
    config = load_config("darcy", {**AUTO, "opt.n_epochs": str(n_epochs), **overrides})
    return pipeline.run_training(config, progress=False, output_dir=out, log=log or (lambda *a, **k: None),
                                 resume=resume)


def _spy_calibrations(monkeypatch):
    """Each calibration's model weights, as measured."""
    seen, calibrate = [], auto_module._calibrate

    def spy(model, batches, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)})
        return calibrate(model, batches, **kwargs)

    monkeypatch.setattr(auto_module, "_calibrate", spy)
    return seen


def _same_weights(a, b):
    b = {k: v for k, v in b.items() if torch.is_tensor(v)}
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unchanged_resume_keeps_the_decision_and_trains_as_an_uninterrupted_run(monkeypatch, tmp_path):
    _four_random_samples_as_data(monkeypatch)
    straight = _train(tmp_path / "straight", 2)
    _train(tmp_path / "run", 1)
    lines = []
    resumed = _train(tmp_path / "run", 2, resume=True, log=lines.append)
    assert not any("re-checked" in line for line in lines)
    decision = resumed["precision"]["auto_decision"]
    assert "recheck_reason" not in decision
    assert decision["fno_block_precision"] == straight["precision"]["auto_decision"]["fno_block_precision"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"]


@pytest.mark.filterwarnings("ignore:The checkpoint was saved with loss scaling off")
@pytest.mark.filterwarnings("ignore:half_dtype='float16' on a CPU")
def test_a_resume_in_another_half_type_measures_the_resumed_weights_and_says_so(monkeypatch, tmp_path):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    _train(out, 1)
    saved = load_weights_only(out / "checkpoint" / "model_state_dict.pt")
    seen = _spy_calibrations(monkeypatch)
    lines = []
    result = _train(out, 2, resume=True, log=lines.append, **{"model.half_dtype": "float16"})
    # the last calibration measured the weights the run resumed, not the model as built (seeded, untrained)
    assert seen and _same_weights(seen[-1], saved)
    warned = [line for line in lines if "re-checked" in line]
    assert len(warned) == 1 and "half type changed from bfloat16 to float16" in warned[0], lines
    decision = result["precision"]["auto_decision"]
    assert decision["half_dtype"] == "float16"
    assert "half type changed from bfloat16 to float16" in decision["recheck_reason"]
    assert decision["resumed_from"]["half_dtype"] == "bfloat16" and decision["resumed_from"]["epoch"] == 0
    assert "epoch 0" in decision["measured_on"]
    # the epoch trained after the resume ran in the decided mode
    assert result["history"][-1]["precision"] == decision["fno_block_precision"]
    assert result["history"][-1]["half_dtype"] == "float16"
