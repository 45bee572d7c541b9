"""``auto_precision=True``: "auto" re-decided at every phase start of a precision schedule."""
import pytest
import torch

import neuralop_mp.diagnose.auto as auto
from neuralop_mp.training.tests.tiny import DictDataset, loss, optimizer_and_scheduler, snapshot, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer


# what a 16-bit phase with the default settings is measured under on a CPU (tiny_fno: upstream's FNO, whose
# autocast scope is "model"): a decision recorded with these is reused by a resume with the same settings
CPU_CONDITIONS = {"half_dtype": "bfloat16", "stabilizer": None, "autocast": True, "autocast_scope": "model",
                  "spectral_weight_dtype": "complex64", "device_type": "cpu"}


def _spy_rechecks(monkeypatch):
    calls = []
    real = auto.recheck_phase

    def spy(model, xs, phase_mode, **kwargs):
        calls.append((phase_mode, [tuple(x.shape) for x in xs]))
        return real(model, xs, phase_mode, **kwargs)

    monkeypatch.setattr(auto, "recheck_phase", spy)
    return calls


def _train(schedule, n_epochs, data, auto_precision, half_dtype="bfloat16", **kwargs):
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, precision_schedule=schedule,
                                    half_dtype=half_dtype, auto_precision=auto_precision, **kwargs)
    train, test = data
    torch.manual_seed(1)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    return trainer, model, optimizer


def test_each_16bit_phase_is_rechecked_once_at_its_start_without_changing_the_run(monkeypatch):
    calls = _spy_rechecks(monkeypatch)
    data = tiny_data(n=16, batch_size=4)
    trainer, model, optimizer = _train("paper", 4, data, auto_precision=True, auto_precision_batches=3)
    rng_after = torch.get_rng_state()
    assert calls == [("half", [(4, 1, 8, 8)] * 3), ("mixed", [(4, 1, 8, 8)] * 3)]  # epochs 0 and 1; full: none
    records = [h["auto_precision"] for h in trainer.history]
    # smooth tiny data, bfloat16: the measurement accepts the 16-bit modes, so every phase runs as scheduled
    assert [(r["phase_mode"], r["mode"], r["checked_at_epoch"]) for r in records] == \
        [("half", "half", 0), ("mixed", "mixed", 1), ("mixed", "mixed", 1), ("full", "full", None)]
    assert [h["epoch"] for h in trainer.history if "auto_check" in h] == [0, 1]
    for check in trainer.auto_decisions:
        assert check["cheapest_accepted"] == "mixed"  # CPU: "half" runs as "mixed", which was measured
        assert all(layer["precision_error"] <= layer["bound"] for layer in check["per_layer"])
    # autocast over the whole model (upstream's FNO: scope "model") is checked too: refused on the untrained
    # model of epoch 0 (its discretization error is small), accepted at epoch 1
    assert [h["autocast"] for h in trainer.history] == [False, True, True, False]
    assert trainer.auto_decisions[0]["autocast_note"].startswith("autocast off: mixed-bfloat16+autocast")
    # the batches were drawn with the RNG forked and the model left as it was: the very same run as the
    # schedule that was run
    plain, plain_model, plain_optimizer = _train("half:0.25/noautocast,mixed:0.5,full:0.25", 4, data,
                                                 auto_precision=False)
    assert torch.equal(rng_after, torch.get_rng_state())
    weights, _ = snapshot(model, optimizer)
    plain_weights, _ = snapshot(plain_model, plain_optimizer)
    assert weights.keys() == plain_weights.keys()
    assert all(torch.equal(weights[k], plain_weights[k]) for k in weights)
    assert [h["precision"] for h in trainer.history] == [h["precision"] for h in plain.history]


@pytest.mark.filterwarnings("ignore::UserWarning")  # float16 on a CPU is emulated
def test_overflow_risk_forces_full_where_the_phase_has_no_tanh(monkeypatch):
    calls = _spy_rechecks(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8, generator=gen) * 1e6  # float16's range ends at 65504
    train = torch.utils.data.DataLoader(DictDataset(x, torch.tanh(x)), batch_size=4, shuffle=True)
    data = train, {"8": torch.utils.data.DataLoader(DictDataset(x[:4], torch.tanh(x[:4])), batch_size=4)}
    # float16 "half" phases use tanh (bounds the FFT input); "mixed" phases do not
    trainer, model, _ = _train("half@1/noautocast,mixed/noautocast", 2, data, auto_precision=True,
                               half_dtype="float16")
    assert [mode for mode, _ in calls] == ["half", "mixed"]
    assert [(h["auto_precision"]["mode"], h["stabilizer"]) for h in trainer.history] == \
        [("half", "tanh"), ("full", None)]
    assert [h["precision"] for h in trainer.history] == ["half", "full"]
    mixed_check = trainer.auto_decisions[1]
    assert {layer["mode"] for layer in mixed_check["per_layer"]} == {"full"}
    assert all(layer.fno_block_precision == "full" for layer in model.fno_blocks.convs)


def test_a_resumed_phase_takes_its_decision_from_the_history(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(auto, "recheck_phase", refuse)
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, precision_schedule="mixed@3,full", auto_precision=True)
    trainer.history = [{"epoch": 0, "phase": 0, "auto_precision": {"phase": 0, "phase_mode": "mixed", "mode": "full",
                                                                  "checked_at_epoch": 0,
                                                                  "conditions": CPU_CONDITIONS}}]
    trainer.on_epoch_start(1)  # as after resuming from the checkpoint of epoch 0
    assert {layer.fno_block_precision for layer in model.fno_blocks.convs} == {"full"}
    assert trainer._current_precision()[0] == "full"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"auto_precision": True}, ValueError, "no precision_schedule|none was given"),
    ({"auto_precision": "yes", "precision_schedule": "paper"}, TypeError, "Invalid auto_precision='yes'"),
    ({"auto_precision": True, "precision_schedule": "paper", "auto_precision_batches": 0}, ValueError,
     "Invalid auto_precision_batches=0"),
])
def test_bad_auto_precision_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        MixedPrecisionTrainer(model=tiny_fno(), n_epochs=4, **kwargs)


def test_auto_precision_needs_mixed_precision_layers():
    with pytest.raises(ValueError, match="needs MixedPrecisionSpectralConv layers"):
        MixedPrecisionTrainer(model=tiny_fno(mixed_precision_layer=False), n_epochs=2, precision_schedule="full",
                              auto_precision=True)


def test_a_resume_with_another_schedule_does_not_reuse_a_decision_made_for_another_phase():
    """Phase 0 was "half" (decided "half") when saved; resumed with "full:0.5,half", phase 0 is "full":
    it runs full, not the old phase's "half". A phase of the same mode under another schedule
    (another stabilizer) is measured again; the same phase of the same schedule is reused."""
    saved = {"epoch": 0, "phase": 0, "auto_precision": {"phase": 0, "phase_mode": "half", "mode": "half",
                                                        "checked_at_epoch": 0, "schedule": "half:0.5,full:0.5",
                                                        "conditions": CPU_CONDITIONS}}
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, precision_schedule="full:0.5,half", auto_precision=True)
    trainer.history = [dict(saved)]
    trainer.on_epoch_start(1)
    assert {layer.fno_block_precision for layer in model.fno_blocks.convs} == {"full"}
    assert trainer._auto["phase_mode"] == "full" and trainer._current_precision()[0] == "full"

    same = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=4, precision_schedule="half:0.5,full", auto_precision=True)
    same.history = [dict(saved)]
    same.on_epoch_start(1)  # the same phase of the same schedule: reused, not measured (no loader to measure)
    assert same._auto["checked_at_epoch"] == 0

    other = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=4, precision_schedule="half:0.5/tanh,full",
                                  auto_precision=True)
    other.history = [dict(saved)]
    # no reuse: it measures, which needs the epoch's loader (a measurement outside train_one_epoch fails)
    with pytest.raises(RuntimeError, match="training loader of this epoch is unknown"):
        other.on_epoch_start(1)
