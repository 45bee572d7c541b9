"""Edges of stepping, checkpointing and resuming that a run meets after something went
wrong: an optimizer step that raised, a crash between two best checkpoints, a folder
shared with other files, a scheduler or schedule that does not fit, a finished run."""
import warnings
from pathlib import Path

import pytest
import torch

from neuralop_mp.layers.precision_switch import get_precision
from neuralop_mp.training.checkpointing import CheckpointError, check_scheduler_state
from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.tests.tiny import (CrashingTrainer, crash_then_resume, Interrupted, loss, optimizer_and_scheduler, tiny_data,
                                             tiny_fno)
from neuralop_mp.training.trainer import MixedPrecisionTrainer


class _FailsOnce(torch.optim.SGD):
    """SGD whose first step raises (an out-of-memory error, a NonFiniteError, ...)."""

    failed = False

    def step(self, closure=None):
        if not self.failed:
            self.failed = True
            raise RuntimeError("transient failure inside step()")
        return super().step(closure)


def test_a_step_that_raised_leaves_the_next_one_unscaled_and_checked():
    """An exception inside an optimizer's step: the next step is unscaled and checked as any other."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    target = torch.randn(3, dtype=torch.complex64)
    optimizer, scaler = _FailsOnce([weight], lr=1.0), ComplexGradScaler(init_scale=1024.0)
    scaler.scale((weight - target).abs().square().sum()).backward()
    with pytest.raises(RuntimeError, match="transient failure"):
        scaler.step(optimizer)
    optimizer.zero_grad()
    scaler.scale((weight - target).abs().square().sum()).backward()
    expected = weight.detach() - 2 * (weight.detach() - target)  # one SGD step on the unscaled loss
    assert scaler.step(optimizer)
    scaler.update()
    assert torch.allclose(weight.detach(), expected, rtol=0, atol=1e-6)
    # and a non-finite gradient is still caught afterwards
    optimizer.zero_grad()
    scaler.scale(weight.abs().sum() * float("inf")).backward()
    before = weight.detach().clone()
    assert not scaler.step(optimizer) and torch.equal(weight.detach(), before)


def test_after_tensorgrads_own_error_its_next_step_is_unscaled_and_checked():
    """TensorGRaD takes the scale and the scaler's finite verdict (gradients_checked=True): a
    flag left over from a step that raised would have it skip both. A real failure: eps=0 and
    a zero gradient make a 0/0 update, which TensorGRaD refuses (NonFiniteError)."""
    from neuralop_mp.optim import TensorGRaD
    from neuralop_mp.optim.nonfinite import NonFiniteError

    torch.manual_seed(0)
    start = torch.randn(5, 4)
    # the reference: the same optimizer fed the same gradients unscaled, without a scaler
    reference = torch.nn.Parameter(start.clone())
    plain = TensorGRaD([reference], eps=0.0, compress=False)
    reference.grad = torch.zeros_like(reference)
    with pytest.raises(NonFiniteError):
        plain.step()
    reference.grad = torch.ones_like(reference)
    plain.step()

    weight = torch.nn.Parameter(start.clone())
    optimizer, scaler = TensorGRaD([weight], eps=0.0, compress=False), ComplexGradScaler(init_scale=1024.0)
    scaler.scale(weight.sum() * 0).backward()
    with pytest.raises(NonFiniteError):
        scaler.step(optimizer)
    optimizer.zero_grad()
    scaler.scale(weight.sum() * float("inf")).backward()  # a non-finite gradient: skipped, nothing changed
    assert not scaler.step(optimizer) and torch.equal(weight.detach(), start)
    scaler.update()
    optimizer.zero_grad()
    scaler.scale(weight.sum()).backward()  # gradient 1 everywhere, times the scale (512 now)
    assert scaler.step(optimizer)
    torch.testing.assert_close(weight.detach(), reference.detach(), rtol=0, atol=1e-6)
    assert not torch.equal(weight.detach(), start)


def _best_run(save_dir, crash_at=None, resume=False, n_epochs=8, lr=0.2):
    train, test = tiny_data()
    torch.manual_seed(123)
    model = tiny_fno(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
    trainer = CrashingTrainer(model=model, n_epochs=n_epochs, precision_schedule="full")
    trainer.crash_at = crash_at
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_best="8_l2",
                          save_dir=save_dir, resume_from_dir=save_dir if resume else None)
        except Interrupted:
            pass
    return trainer


def _checkpoint_epoch(save_dir):
    return torch.load(Path(save_dir) / "manifest.pt", weights_only=True)["epoch"]


def test_a_resumed_run_keeps_the_best_checkpoint_of_the_epochs_before_the_crash(tmp_path):
    """Upstream's loop compares each epoch with the best of its own call: after a resume
    the first epoch would replace the best checkpoint even when worse. With lr=0.2 the
    metric goes up after a best epoch (found here, not assumed)."""
    straight = _best_run(tmp_path / "straight")
    values = [entry["8_l2"] for entry in straight.history]
    assert _checkpoint_epoch(tmp_path / "straight") == values.index(min(values))
    # a best epoch followed by a worse one, before the overall best
    k = next(e for e in range(len(values) - 1)
             if values[e] == min(values[:e + 1]) and values[e + 1] > values[e] > min(values))
    folder = tmp_path / "resumed"
    _best_run(folder, crash_at=k + 1)
    assert _checkpoint_epoch(folder) == k
    # resume at k + 1 (worse than epoch k) and crash right after it: the checkpoint stays at k
    resumed = _best_run(folder, crash_at=k + 2, resume=True)
    assert resumed.history[-1]["epoch"] == k + 1 and resumed.history[-1]["8_l2"] > values[k]
    assert _checkpoint_epoch(folder) == k
    # the whole resumed run ends on the uninterrupted run's best checkpoint
    _best_run(folder, resume=True)
    assert _checkpoint_epoch(folder) == values.index(min(values))


def test_a_save_dir_holding_another_models_files_is_refused_before_training(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    mine = {name: folder / name for name in ("pretrained_state_dict.pt", "pretrained_metadata.pkl")}
    for path in mine.values():
        path.write_bytes(b"a model of the user's")
    train, test = tiny_data()
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with pytest.raises(CheckpointError, match=r"pretrained_metadata.pkl.*not checkpoint files"):
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=folder)
    assert all(path.read_bytes() == b"a model of the user's" for path in mine.values())
    assert trainer.history == []  # refused before the first epoch


def test_a_checkpoint_of_another_scheduler_class_is_refused(tmp_path):
    train, test = tiny_data()
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)  # StepLR
    MixedPrecisionTrainer(model=model, n_epochs=1).train(train, test, optimizer, scheduler, training_loss=loss(),
                                                         save_every=1, save_dir=tmp_path)
    model = tiny_fno()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    with pytest.raises(CheckpointError, match=r"scheduler.pt was written by the learning-rate scheduler StepLR, not "
                                              r"by this run's CosineAnnealingLR"):
        MixedPrecisionTrainer(model=model, n_epochs=2).train(train, test, optimizer, cosine, training_loss=loss(),
                                                             resume_from_dir=tmp_path)


def _scheduler(cls, **kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return cls(optimizer, **kwargs)


def test_without_a_recorded_class_the_schedulers_settings_are_compared(tmp_path):
    """Older and upstream's checkpoints record no class: the settings decide, bookkeeping
    entries left out. The same class from another torch loads: other bookkeeping ('verbose',
    no '_is_initial'), or a setting only the newer torch has (ReduceLROnPlateau's
    'default_min_lr', added in 2.6), and so does a class whose settings are a subset of the
    other's (only a recorded class tells it apart); a class with settings the other lacks,
    and lacking some of the other's, does not."""
    step = _scheduler(torch.optim.lr_scheduler.StepLR, step_size=3, gamma=0.5)
    other_torch = {k: v for k, v in step.state_dict().items() if k != "_is_initial"}
    other_torch["verbose"] = False
    check_scheduler_state(step, other_torch, tmp_path / "scheduler.pt")
    plateau = _scheduler(torch.optim.lr_scheduler.ReduceLROnPlateau)
    older = {k: v for k, v in plateau.state_dict().items() if k != "default_min_lr"}
    check_scheduler_state(plateau, older, tmp_path / "scheduler.pt")
    # a class whose settings are a subset of the other's: only a recorded class tells it apart
    exponential = _scheduler(torch.optim.lr_scheduler.ExponentialLR, gamma=0.9)
    check_scheduler_state(_scheduler(torch.optim.lr_scheduler.StepLR, step_size=3), exponential.state_dict(),
                          tmp_path / "scheduler.pt")
    cosine = _scheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4)
    with pytest.raises(CheckpointError, match=r"another learning-rate scheduler than this run's CosineAnnealingLR: "
                                              r"it has the settings \['gamma', 'step_size'\], which CosineAnnealingLR "
                                              r"lacks, and lacks CosineAnnealingLR's \['T_max', 'eta_min'\]"):
        check_scheduler_state(cosine, step.state_dict(), tmp_path / "scheduler.pt")

def test_resuming_a_finished_run_returns_upstreams_metrics_in_the_last_phases_precision(tmp_path):
    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno(seed=0)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="full:0.5,mixed")
    first = trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)
    assert get_precision(model)[0] == "mixed"
    model = tiny_fno(seed=1)  # constructed in full precision
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="full:0.5,mixed")
    with pytest.warns(UserWarning, match="already finished all 2 epochs"):
        again = trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=tmp_path)
    assert sorted(again) == sorted(first)
    assert all(again[key] == first[key] for key in ("train_err", "avg_loss", "epoch_train_time", "8_l2"))
    assert get_precision(model)[0] == "mixed" and trainer.autocast_enabled == trainer.history[-1]["autocast"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"progress": "no"}, TypeError, r"Invalid progress='no'; allowed values: True, False"),
    ({"max_consecutive_skips": None}, TypeError, r"Invalid max_consecutive_skips=None; allowed values: integers >= 1"),
    ({"max_consecutive_skips": float("nan")}, TypeError, r"Invalid max_consecutive_skips=nan"),
    ({"max_consecutive_skips": 0}, ValueError, r"Invalid max_consecutive_skips=0; allowed values: integers >= 1"),
])
def test_bad_trainer_settings_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        MixedPrecisionTrainer(model=tiny_fno(), n_epochs=1, **kwargs)


def test_a_checkpoint_past_this_runs_last_epoch_resumes_as_finished(tmp_path):
    """A run of 3 epochs resumed with n_epochs=2: nothing to train, the model in the phase
    of this run's last epoch (not an epoch the schedule of 2 epochs does not have)."""
    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno(seed=0)
    optimizer, scheduler = optimizer_and_scheduler(model)
    MixedPrecisionTrainer(model=model, n_epochs=3, precision_schedule="full:0.5,mixed").train(
        train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)
    model = tiny_fno(seed=1)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="full:0.5,mixed")
    with pytest.warns(UserWarning, match="already finished all 3 epochs"):  # the checkpoint's, not this run's 2
        metrics = trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=tmp_path)
    assert metrics["train_err"] == trainer.history[-1]["train_err"] and get_precision(model)[0] == "mixed"


def test_a_finished_resume_with_auto_precision_measures_nothing(tmp_path):
    """Saved in the 'full' phase of 4 epochs, resumed with 2: this run's last epoch is in the
    'mixed' phase, which the history holds no auto-precision decision for. Nothing is trained,
    so nothing is measured (there is no loader): the phase runs its own mode."""
    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno(seed=0)
    optimizer, scheduler = optimizer_and_scheduler(model)
    first = CrashingTrainer(model=model, n_epochs=4, precision_schedule="full:0.5,mixed", auto_precision=True)
    first.crash_at = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Interrupted):
            first.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)
        model = tiny_fno(seed=1)
        optimizer, scheduler = optimizer_and_scheduler(model)
        trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="full:0.5,mixed",
                                        auto_precision=True)
        metrics = trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=tmp_path)
    assert [entry["phase"] for entry in trainer.history] == [0, 0] and trainer.auto_decisions == []
    assert metrics["train_err"] == trainer.history[-1]["train_err"] and get_precision(model)[0] == "mixed"


@pytest.mark.parametrize("saved, resumed, crash_at, warns", [
    ((None, 1), (None, 3), 1, False),                        # more epochs, no schedule
    (("mixed", 2), ("mixed", 4), 1, False),                   # more epochs, one phase
    (("half@1,full", 2), ("half@1,full", 4), 1, False),     # epochs added to the last phase only
    (("half:0.5,full", 4), ("half:0.5,full", 8), 2, True),   # epochs 2, 3 move from "full" to "half"
    (("half:0.5,full", 4), ("full:0.5,half", 4), 1, True),   # another schedule
    (("mixed", 2), (None, 4), 1, True),                      # a schedule dropped
])
def test_the_phase_boundaries_warning_fires_only_when_an_epoch_to_train_changes_phase(
        tmp_path, saved, resumed, crash_at, warns):
    caught = crash_then_resume(tmp_path, saved, resumed, crash_at)
    moved = [str(w.message) for w in caught if "phase boundaries move" in str(w.message)]
    assert bool(moved) == warns, moved
