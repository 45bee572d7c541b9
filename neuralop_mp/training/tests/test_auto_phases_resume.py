"""``auto_precision=True`` across a resume, and its autocast check.

A phase's decision is reused by a resumed run only where it was measured under the
conditions the run has now (half type, stabilizer, autocast, scope, weight storage,
device); a phase that autocasts keeps autocast only where the measurement accepts it.
"""
import json
import math
import warnings

import pytest
import torch

import neuralop_mp.diagnose.auto as auto
from neuralop_mp.cli import main
from neuralop_mp.layers.autocast_scope import set_autocast_scope
from neuralop_mp.training.tests.tiny import DictDataset, loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

# what a 16-bit phase with the default settings is measured under on a CPU (tiny_fno: upstream's FNO, whose
# autocast scope is "model")
CPU_CONDITIONS = {"half_dtype": "bfloat16", "stabilizer": None, "autocast": True, "autocast_scope": "model",
                  "spectral_weight_dtype": "complex64", "device_type": "cpu"}


def _large_data(scale=1e7):
    """16x16 inputs of order ``scale``: beyond float16's range (65504), harmless to bfloat16."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 16, 16, generator=gen) * scale
    y = torch.randn(8, 1, 16, 16, generator=gen)
    train = torch.utils.data.DataLoader(DictDataset(x, y), batch_size=4)
    return train, {"16": torch.utils.data.DataLoader(DictDataset(x[:4], y[:4]), batch_size=4)}


def _run(data, half_dtype, n_epochs, save_dir, resume=False, schedule="mixed"):
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model, lr=1e-3)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, precision_schedule=schedule,
                                    half_dtype=half_dtype, auto_precision=True)
    train, test = data
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=save_dir,
                  resume_from_dir=save_dir if resume else None)
    return trainer


def test_a_resume_in_another_half_type_measures_the_phase_again(tmp_path):
    """bfloat16 decides "mixed" on inputs of order 1e7; resumed in float16, which would overflow on them,
    the phase is measured again (float16 overflow: "full") instead of running the bfloat16 decision."""
    data = _large_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first run's own warnings (upstream's FNO checkpoint)
        first = _run(data, "bfloat16", 1, tmp_path)
    assert first.history[0]["auto_precision"]["mode"] == "mixed"
    with pytest.warns(UserWarning, match=r"phase 1 'mixed' re-checked at epoch 1: half type changed from "
                                         r"bfloat16 to float16\."):
        resumed = _run(data, "float16", 2, tmp_path, resume=True)
    (check,) = resumed.auto_decisions
    assert (check["epoch"], check["recheck_reason"]) == (1, "half type changed from bfloat16 to float16")
    assert check["fno_block_precision"] == "full"
    assert all(layer["reason"].startswith("float16 overflow margin") for layer in check["per_layer"])
    last = resumed.history[-1]
    assert (last["precision"], last["autocast"]) == ("full", False)
    assert last["auto_precision"]["checked_at_epoch"] == 1 and last["auto_check"] is check
    assert math.isfinite(last["train_loss"]) and last["skipped_steps"] == 0
    assert [h["auto_precision"]["conditions"]["half_dtype"] for h in resumed.history] == ["bfloat16", "float16"]


def test_a_resume_under_the_same_conditions_reuses_the_decision(tmp_path, monkeypatch):
    data = tiny_data(n=8, size=16, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _run(data, "bfloat16", 1, tmp_path)

        def refuse(*args, **kwargs):
            raise AssertionError("measured again")

        monkeypatch.setattr(auto, "recheck_phase", refuse)
        resumed = _run(data, "bfloat16", 2, tmp_path, resume=True)
    assert resumed.auto_decisions == []
    assert [h["auto_precision"]["checked_at_epoch"] for h in resumed.history] == [0, 0]
    assert resumed.history[1]["autocast"] == resumed.history[0]["autocast"]  # the decision's, not the phase's


def _resumed_trainer(record_conditions):
    """A trainer as after resuming from epoch 0 of "mixed", whose history holds a decision ("full")
    recorded with ``record_conditions`` (missing: an older checkpoint's record)."""
    record = {"phase": 0, "phase_mode": "mixed", "mode": "full", "checked_at_epoch": 0, "schedule": "mixed"}
    if record_conditions is not None:
        record["conditions"] = record_conditions
    trainer = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=2, precision_schedule="mixed", half_dtype="bfloat16",
                                    auto_precision=True)
    trainer.history = [{"epoch": 0, "phase": 0, "auto_precision": record}]
    trainer._epoch_loader = tiny_data(n=8, size=16, batch_size=4)[0]  # as inside train_one_epoch
    return trainer


@pytest.mark.parametrize("changes, reason", [
    (None, "the recorded decision does not say what it was measured with (an older checkpoint)"),
    ({"autocast_scope": "spectral"}, "autocast scope changed from spectral to model"),
    ({"spectral_weight_dtype": "complex32", "stabilizer": "tanh"},
     "stabilizer changed from tanh to None; spectral weight storage changed from complex32 to complex64"),
    ({"device_type": "cuda", "half_dtype": "float16"},
     "half type changed from float16 to bfloat16; device changed from cuda to cpu"),
])
def test_a_decision_measured_under_other_conditions_is_measured_again(changes, reason):
    trainer = _resumed_trainer(None if changes is None else {**CPU_CONDITIONS, **changes})
    with pytest.warns(UserWarning, match="re-checked at epoch 1: " + reason.replace("(", r"\(").replace(")", r"\)")):
        trainer.on_epoch_start(1)
    assert trainer._auto_check["recheck_reason"] == reason
    assert trainer._auto["checked_at_epoch"] == 1 and trainer._auto["conditions"] == CPU_CONDITIONS
    assert trainer._auto["mode"] == "mixed"  # the new measurement's: smooth data in bfloat16


def test_a_decision_measured_under_the_same_conditions_is_reused():
    trainer = _resumed_trainer(dict(CPU_CONDITIONS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.on_epoch_start(1)
    assert not [w for w in caught if "re-checked" in str(w.message)]
    assert trainer._auto_check is None and trainer._auto["checked_at_epoch"] == 0
    assert trainer._current_precision()[0] == "full"


def test_a_phase_keeps_autocast_only_where_the_measurement_accepts_it(tmp_path):
    """tiny_fno's scope is "model" (autocast over the whole model): bfloat16 autocast on the untrained
    model is above the rule's bound, so the "mixed" phase runs without it. With scope "spectral",
    autocast rounds nothing outside the spectral layers: kept, nothing more to check."""
    data = tiny_data(n=8, size=16, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _run(data, "bfloat16", 1, tmp_path / "model")
    (check,) = trainer.auto_decisions
    autocast_check = check["autocast_check"]
    assert autocast_check["variant"] == "mixed-bfloat16+autocast" and not autocast_check["accepted"]
    assert autocast_check["error"] > autocast_check["bound"]
    assert check["autocast"] is False
    assert check["autocast_note"] == (f"autocast off: mixed-bfloat16+autocast precision error "
                                      f"{autocast_check['error']:.1e} > bound {autocast_check['bound']:.1e}")
    record = trainer.history[0]
    assert (record["precision"], record["autocast"], record["auto_precision"]["autocast"]) == ("mixed", False, False)
    assert record["auto_precision"]["conditions"]["autocast"] is True  # what the phase asked for

    model = tiny_fno()
    set_autocast_scope(model, "spectral")
    spectral = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="bfloat16",
                                     auto_precision=True)
    optimizer, scheduler = optimizer_and_scheduler(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spectral.train(*data, optimizer, scheduler, training_loss=loss())
    (check,) = spectral.auto_decisions
    assert (check["autocast"], check["autocast_note"], spectral.history[0]["autocast"]) == (True, None, True)


def test_a_phase_decided_full_runs_without_autocast(tmp_path):
    """float16 without tanh on inputs beyond its range: the "mixed" phase goes "full", and its autocast,
    which would round the same values to float16 (scope "model"), goes with it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _run(_large_data(1e6), "float16", 1, tmp_path)
    (check,) = trainer.auto_decisions
    assert check["fno_block_precision"] == "full" and check["autocast_check"] is None
    assert (check["autocast"], check["autocast_note"]) == (False, "autocast off: the layers run full")
    record = trainer.history[0]
    assert (record["precision"], record["autocast"], record["skipped_steps"]) == ("full", False, 0)


def test_the_cli_reports_every_check_of_a_resumed_run_and_why_it_measured_again(tmp_path, capsys):
    """`train --resume`: precision.auto_rechecks and the summary hold the checks made before the resume
    (the history's), and one made after it where the half type changed, with the reason."""
    args = ["train", "darcy", "--model.fno_block_precision", "auto", "--opt.precision_schedule", "mixed",
            "--model.hidden_channels", "8", "--model.n_layers", "2", "--opt.n_epochs", "1", "--data.n_train", "16",
            "--data.batch_size", "8", "--data.n_tests", "[8, 8]", "--data.test_batch_sizes", "[8, 8]",
            "--threads", "1", "--output_dir", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()

    def resume(*extra):
        assert main(["train", "--resume", str(tmp_path), *extra]) == 0
        return capsys.readouterr().out, json.loads((tmp_path / "results.json").read_text())

    printed, result = resume("--opt.n_epochs", "2")  # same settings: the epoch-0 decision is reused
    (check,) = result["precision"]["auto_rechecks"]
    assert (check["epoch"], check["phase_mode"], check.get("recheck_reason")) == (0, "mixed", None)
    assert [h["auto_precision"]["checked_at_epoch"] for h in result["history"]] == [0, 0]
    assert "precision (auto, epoch 0)" in printed

    with pytest.warns(UserWarning, match="half type changed from bfloat16 to float16"):
        printed, result = resume("--opt.n_epochs", "3", "--model.half_dtype", "float16")
    checks = result["precision"]["auto_rechecks"]
    assert [(c["epoch"], c.get("recheck_reason")) for c in checks] == \
        [(0, None), (2, "half type changed from bfloat16 to float16")]
    assert [(h["half_dtype"], h["auto_precision"]["checked_at_epoch"]) for h in result["history"]] == \
        [("bfloat16", 0), ("bfloat16", 0), ("float16", 2)]
    assert "precision (auto, epoch 0)" in printed and "precision (auto, epoch 2)" in printed
    flat = " ".join(line.strip("| ") for line in printed.splitlines())
    assert "(re-checked: half type changed from bfloat16 to float16)" in " ".join(flat.split())
