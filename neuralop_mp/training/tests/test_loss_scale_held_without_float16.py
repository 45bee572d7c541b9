"""The loss scale does not grow in a phase where nothing is computed or stored in float16.

Such a phase ("full" without autocast, float32 weights) cannot overflow, so the scale would
double every ``growth_interval`` steps without limit, and the next float16 phase would skip one
step per doubling to come back down (20 in a row stop the run). A small ``growth_interval``
stands in for the many batches of a real run.
"""
import warnings

import pytest
import torch

from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.tests.tiny import (CrashingTrainer, Interrupted, loss, optimizer_and_scheduler, snapshot,
                                             assert_same, tiny_data, tiny_fno)
from neuralop_mp.training.trainer import MixedPrecisionTrainer

INIT_SCALE = 2.0**16


def _float16_run(trainer_class=MixedPrecisionTrainer, schedule="full:0.5,mixed", n_epochs=4, crash_at=None,
                 seed=0):
    model = tiny_fno(seed=seed)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = trainer_class(model=model, n_epochs=n_epochs, precision_schedule=schedule, half_dtype="float16")
    trainer.crash_at = crash_at
    trainer.scaler.growth_interval = 1  # every finite step would double it
    return model, optimizer, scheduler, trainer


def _train(trainer, optimizer, scheduler, **kwargs):
    train, test = tiny_data()  # 4 steps per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped-step notes of the float16 phase
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), **kwargs)


def test_scale_is_held_in_a_full_phase_before_a_float16_phase():
    model, optimizer, scheduler, trainer = _float16_run()
    assert trainer.scaler.enabled
    _train(trainer, optimizer, scheduler)
    full = [h for h in trainer.history if h["precision"] == "full"]
    assert len(full) == 2
    # not 2**20 and 2**24: eight finite steps at growth_interval 1
    assert [h["loss_scale"] for h in full] == [INIT_SCALE, INIT_SCALE]
    assert all(h["skipped_steps"] == 0 for h in full)
    # the float16 phase starts from the scale the full phase held, and grows from there
    mixed = [h for h in trainer.history if h["precision"] == "mixed"]
    assert len(mixed) == 2 and mixed[0]["skipped_steps"] < 4


def test_scale_still_grows_in_a_float16_phase():
    _, optimizer, scheduler, trainer = _float16_run(schedule="mixed", n_epochs=1)
    trainer.scaler = ComplexGradScaler(init_scale=2.0, growth_interval=1)  # far below any overflow
    _train(trainer, optimizer, scheduler)
    assert trainer.history[0]["loss_scale"] == 2.0 * 2**4


def test_a_run_resumed_across_the_held_phase_is_bit_identical(tmp_path):
    torch.manual_seed(5)
    model, optimizer, scheduler, straight = _float16_run(CrashingTrainer)
    _train(straight, optimizer, scheduler)

    for crash_at, folder in ((1, tmp_path / "in_full"), (2, tmp_path / "at_mixed")):
        torch.manual_seed(5)
        _, optimizer, scheduler, first = _float16_run(CrashingTrainer, crash_at=crash_at)
        with pytest.raises(Interrupted):
            _train(first, optimizer, scheduler, save_every=1, save_dir=folder)
        torch.manual_seed(77)  # everything must come from the checkpoint
        resumed_model, optimizer2, scheduler2, resumed = _float16_run(CrashingTrainer, seed=1)
        _train(resumed, optimizer2, scheduler2, resume_from_dir=folder)
        assert resumed.scaler.state_dict() == straight.scaler.state_dict()
        assert [h["loss_scale"] for h in resumed.history] == [h["loss_scale"] for h in straight.history]
        assert_same(snapshot(resumed_model, optimizer2)[0], snapshot(model, optimizer)[0])


def test_update_without_growth_keeps_scale_and_count_but_still_backs_off():
    weight = torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    scaler = ComplexGradScaler(init_scale=8.0, growth_interval=2)

    def one_step(grad, grow):
        weight.grad = torch.full_like(weight, grad)
        scaler.step(optimizer)
        scaler.update(grow=grow)

    one_step(1.0, True)
    assert (scaler.get_scale(), scaler.growth_tracker) == (8.0, 1)
    for _ in range(3):
        one_step(1.0, False)
    assert (scaler.get_scale(), scaler.growth_tracker) == (8.0, 1)
    one_step(1.0, True)  # the count goes on from where growing stopped
    assert (scaler.get_scale(), scaler.growth_tracker) == (16.0, 0)
    one_step(complex(0.0, float("inf")), False)
    assert (scaler.get_scale(), scaler.skipped_steps) == (8.0, 1)
