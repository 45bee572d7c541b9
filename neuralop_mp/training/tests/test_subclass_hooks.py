"""Subclasses of the trainer that override upstream's hooks: a ``train_one_batch`` of their own
(or one adding terms to ours) is guarded and scaled as ours is; an epoch loop of their own
trains as under upstream's Trainer where loss scaling is off and is refused before its first
step where it is on. Also: evaluation and the layers' precision beside them."""
import math
import warnings

import pytest
import torch
from neuralop.training import Trainer

from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import DictDataset, loss, snapshot, tiny_data, tiny_fno


class OwnBatch(MixedPrecisionTrainer):
    """Upstream's documented way: a batch hook of one's own (no super()), with a penalty term.
    ``nan_at``: the batch indices whose loss it makes NaN."""

    nan_at = ()

    def train_one_batch(self, idx, sample, training_loss):
        self.optimizer.zero_grad(set_to_none=True)
        sample = {k: v.to(self.device) for k, v in sample.items()}
        self.n_samples += sample["y"].shape[0]
        out = self.model(sample["x"])
        total = training_loss(out, y=sample["y"]) + 1e-3 * out.pow(2).mean()
        return total * math.nan if idx in self.nan_at else total


@pytest.mark.parametrize("loss_scaling", ["none", "dynamic"])
def test_a_batch_hook_of_a_subclasss_own_trains_under_the_guard(loss_scaling):
    model = tiny_fno()
    train, test = tiny_data(n=16, batch_size=4)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = OwnBatch(model=model, n_epochs=1, loss_scaling=loss_scaling)
    trainer.nan_at = (1,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.AdamW(model.parameters(), lr=1e-3), None, training_loss=loss())
    (record,) = trainer.history
    assert record["skipped_steps"] == 1 and trainer.scaler.skipped_steps == 1  # its NaN batch, skipped
    assert math.isfinite(record["train_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


class PenaltyAfterSuper(MixedPrecisionTrainer):
    """Adds a term to the loss our batch hook returns: 100 x one bias."""

    def train_one_batch(self, idx, sample, training_loss):
        data_loss = super().train_one_batch(idx, sample, training_loss)
        return data_loss + 100.0 * self.model.projection.fcs[-1].bias.sum()


@pytest.mark.parametrize("loss_scaling", ["none", "dynamic"])
def test_a_term_added_after_super_gets_its_whole_gradient_with_loss_scaling(loss_scaling):
    model = tiny_fno()
    train, test = tiny_data(n=4, batch_size=4)  # one step
    bias = model.projection.fcs[-1].bias
    before = bias.detach().clone()
    trainer = PenaltyAfterSuper(model=model, n_epochs=1, loss_scaling=loss_scaling)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.SGD(model.parameters(), lr=1.0), None,
                      training_loss=lambda out, **kwargs: (out * 0).sum())  # the penalty alone moves the bias
    assert trainer.scaler.enabled == (loss_scaling == "dynamic")
    # the penalty's gradient is 100: unscaled by the step exactly as it was scaled, not divided by the scale
    torch.testing.assert_close(bias.detach() - before, torch.full_like(before, -100.0))


class OwnEpochLoop:
    """An epoch loop of a user's own, upstream's shape, that does not call super().train_one_epoch."""

    def train_one_epoch(self, epoch, train_loader, training_loss):
        self.on_epoch_start(epoch)
        self.model.train()
        self.n_samples, err = 0, 0.0
        for idx, sample in enumerate(train_loader):
            batch_loss = self.train_one_batch(idx, sample, training_loss)
            batch_loss.backward()
            self.optimizer.step()
            err += batch_loss.item()
        self.scheduler.step()
        return err / len(train_loader), err / self.n_samples, None, 1.5


class UpstreamOwnLoop(OwnEpochLoop, Trainer):
    pass


class OursOwnLoop(OwnEpochLoop, MixedPrecisionTrainer):
    pass


def _train_with_own_loop(trainer_class, scheduler=True, **kwargs):
    model = tiny_fno(mixed_precision_layer=False)
    train, test = tiny_data(n=16, batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    trainer = trainer_class(model=model, n_epochs=2, **kwargs)
    torch.manual_seed(1)  # the loader's shuffling
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = trainer.train(train, test, optimizer,
                                torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5) if scheduler else None,
                                training_loss=loss())
    return trainer, model, metrics


def test_an_epoch_loop_of_a_subclasss_own_trains_as_under_upstreams_trainer():
    upstream, upstream_model, upstream_metrics = _train_with_own_loop(UpstreamOwnLoop)
    ours, model, metrics = _train_with_own_loop(OursOwnLoop, loss_scaling="none")
    for a, b in zip(upstream_model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert metrics["avg_loss"] == upstream_metrics["avg_loss"]
    # recorded from what the loop returned, the evaluation beside it
    assert [h["epoch"] for h in ours.history] == [0, 1]
    assert ours.history[-1]["train_loss"] == metrics["avg_loss"] and ours.history[-1]["epoch_time"] == 1.5
    assert ours.history[-1]["8_l2"] == pytest.approx(float(metrics["8_l2"]))
    assert [h["lr"] for h in ours.history] == [5e-3, 2.5e-3] and ours.history[0]["skipped_steps"] == 0
    # scheduler=None works with such a loop too (its self.scheduler.step() is a no-op)
    again, _, _ = _train_with_own_loop(OursOwnLoop, scheduler=False, loss_scaling="none")
    assert len(again.history) == 2 and again.scheduler is None


def test_an_epoch_loop_of_a_subclasss_own_is_refused_before_its_first_step_with_loss_scaling():
    model = tiny_fno()
    train, test = tiny_data(n=16, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    weights, _ = snapshot(model, optimizer)
    trainer = OursOwnLoop(model=model, n_epochs=1, loss_scaling="dynamic")
    # named by the class whose train_one_epoch it is
    with pytest.raises(RuntimeError, match=r"^OwnEpochLoop\.train_one_epoch stepped the optimizer outside "
                                           r".*loss_scaling='dynamic'.*Call super\(\)\.train_one_epoch"):
        trainer.train(train, test, optimizer, None, training_loss=loss())
    after, _ = snapshot(model, optimizer)
    for key, value in weights.items():
        assert torch.equal(value, after[key]), key
    assert not optimizer.state and trainer.history == []
    assert not optimizer._optimizer_step_pre_hooks  # train() took its hook off again


class StepsInEpochStart(MixedPrecisionTrainer):
    """Calls our epoch, but steps the optimizer itself at each epoch's start (a warm-up of its own)."""

    def train_one_epoch(self, epoch, train_loader, training_loss):
        return super().train_one_epoch(epoch, train_loader, training_loss)

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        self._optimizer_in_epoch.step()


def test_a_step_outside_the_guard_inside_our_epoch_is_named_as_such_not_as_an_own_loop():
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = StepsInEpochStart(model=model, n_epochs=1, loss_scaling="dynamic")
    with pytest.raises(RuntimeError) as raised:
        trainer.train(train, test, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss())
    # its train_one_epoch calls ours: no "does not call super()" advice
    assert str(raised.value).startswith("The optimizer was stepped outside MixedPrecisionTrainer's guarded step, "
                                        "where loss scaling is on"), raised.value


def test_our_epoch_called_directly_after_train_runs_without_a_scheduler():
    """``train_one_epoch`` is a public hook of upstream's Trainer: called outside ``train`` (a loop of a
    caller's own) it still has a scheduler to step where ``train`` got None, and leaves None."""
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.AdamW(model.parameters(), lr=1e-3), None, training_loss=loss())
        train_err, avg_loss, _, _ = trainer.train_one_epoch(1, train, loss())
    assert math.isfinite(train_err) and math.isfinite(avg_loss)
    assert trainer.scheduler is None and trainer._epoch_loader is None
    assert [record["epoch"] for record in trainer.history] == [0, 1]


class StepHooklessSGD:
    """An optimizer of one's own that has no step hooks (not a torch.optim.Optimizer)."""

    def __init__(self, params, lr):
        self.param_groups, self.state = [{"params": list(params), "lr": lr}], {}

    def zero_grad(self, set_to_none=True):
        for p in self.param_groups[0]["params"]:
            p.grad = None

    def step(self):
        with torch.no_grad():
            for p in self.param_groups[0]["params"]:
                if p.grad is not None:
                    p -= self.param_groups[0]["lr"] * p.grad


def test_an_epoch_loop_of_a_subclasss_own_with_a_hookless_optimizer_stops_after_its_epoch():
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = OursOwnLoop(model=model, n_epochs=2, loss_scaling="dynamic")
    with pytest.raises(RuntimeError, match=r"^OwnEpochLoop\.train_one_epoch stepped the optimizer outside"):
        trainer.train(train, test, StepHooklessSGD(model.parameters(), 1e-3), None, training_loss=loss())
    assert trainer.history == [] and trainer.epoch == 0  # stopped after its first epoch, recorded none


def _loader_with_inf_batches(inf_batches, n_batches=4, batch_size=4):
    x = torch.randn(n_batches * batch_size, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tanh(x)
    for b in inf_batches:
        x[b * batch_size] = math.inf
    return torch.utils.data.DataLoader(DictDataset(x, y), batch_size=batch_size)


@pytest.mark.parametrize("inf_batches, warns", [((0,), False), ((0, 1, 2), True)])
def test_an_epoch_whose_steps_were_mostly_skipped_warns_with_loss_scaling_on(inf_batches, warns):
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, loss_scaling="dynamic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train(_loader_with_inf_batches(inf_batches), {}, torch.optim.AdamW(model.parameters()), None,
                      training_loss=loss())
    assert trainer.scaler.enabled and trainer.history[0]["skipped_steps"] == len(inf_batches)
    said = [str(w.message) for w in caught if "optimizer step(s)" in str(w.message)]
    if warns:
        (message,) = said
        assert message.startswith("Epoch 0: skipped 3 optimizer step(s) of 4 with non-finite loss or gradients")
        assert "most of the epoch's steps did not change the weights. Try: " in message
        assert caught[[str(w.message) for w in caught].index(message)].filename == __file__
    else:  # one early skip with scaling on: as a scale calibrating itself, quiet
        assert said == []


def _calibration_run(init_scale, n_batches=4):
    """Skipped steps and "optimizer step(s)" warnings of a one-epoch run of identical batches that
    leave the weights as they are (lr 0): a scale overflows the same gradients at every step."""
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)).expand(4 * n_batches, -1, -1, -1)
    loader = torch.utils.data.DataLoader(DictDataset(x, torch.tanh(x)), batch_size=4)
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, loss_scaling="dynamic", max_consecutive_skips=500)
    trainer.scaler = ComplexGradScaler(init_scale=init_scale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train(loader, {}, torch.optim.SGD(model.parameters(), lr=0.0), None,
                      training_loss=lambda out, y, **kwargs: 1e4 * (out - y).square().sum())
    said = [str(w.message) for w in caught if "optimizer step(s)" in str(w.message)]
    return trainer.history[0]["skipped_steps"], said


def test_skips_of_a_loss_scale_calibrating_itself_stay_quiet_unless_they_take_the_whole_epoch():
    overflows, _ = _calibration_run(2.0**127, n_batches=200)  # halved once per skip until it fits
    assert 0 < overflows < 100
    fitting = 2.0 ** (127 - overflows)
    # 3 of 4 steps skipped at the run's start: the scale calibrating itself, quiet
    assert _calibration_run(fitting * 2**3) == (3, [])
    # every step of the epoch skipped: said, as a scale still calibrating
    skipped, (message,) = _calibration_run(fitting * 2**4)
    assert skipped == 4 and message.startswith("Epoch 0: skipped 4 optimizer step(s) of 4 ")
    assert ("no step of the epoch changed the weights, the loss scale is still looking for one the gradients fit "
            f"(halved at each overflow from {fitting * 2**4:g}). If the next epochs skip as well, try: ") in message


def test_autoregressive_evaluation_runs_in_the_phases_autocast():
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    seen = []
    model.lifting.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, torch.is_autocast_enabled("cpu"))))
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = trainer.train(train, {"ar": test["8"]}, torch.optim.AdamW(model.parameters()), None,
                                training_loss=loss(), eval_modes={"ar": "autoregression"},
                                max_autoregressive_steps=2)
    evaluation = [autocast for training, autocast in seen if not training]
    assert trainer.history[0]["autocast"] is True
    assert len(evaluation) == 4 and all(evaluation)  # 2 batches x 2 steps, each in the phase's autocast
    assert metrics["ar_l2"].dtype == torch.float32 and math.isfinite(float(metrics["ar_l2"]))


def _model_with_layers_in_two_precisions():
    model = tiny_fno()
    model.fno_blocks.convs[0].fno_block_precision = "mixed"  # the other layer stays "full"
    return model


def test_layers_in_different_precisions_without_a_schedule_are_refused_saying_what_to_do():
    with pytest.raises(ValueError, match=r"^The spectral layers of FNO are in different precisions \(.*'full'.*"
                                         r"'mixed'.*\); .*neuralop_mp\.set_precision\(model, 'mixed'\).*"
                                         r"or pass a precision_schedule"):
        MixedPrecisionTrainer(model=_model_with_layers_in_two_precisions(), n_epochs=1, loss_scaling="none")


def test_a_schedule_sets_every_layer_of_a_model_built_in_different_precisions():
    model = _model_with_layers_in_two_precisions()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="half")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.AdamW(model.parameters()), None, training_loss=loss())
    assert [conv.fno_block_precision for conv in model.fno_blocks.convs] == ["half", "half"]
    assert trainer.history[0]["precision"] == "half"
