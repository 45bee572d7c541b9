"""float16 overflow handling: one stop class, the tips of both stop messages, a forward overflow
that leaves the loss scale, the evaluation warning and the phase text without loss scaling."""
import math
import warnings

import pytest
import torch

from neuralop_mp.training.guarded_step import TrainingStopped
from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

# the tips both stop messages give for a float16 phase without the stabilizer
FLOAT16_TIPS = ("--model.stabilizer tanh", "half_dtype='bfloat16'", "--model.half_dtype bfloat16",
                "--data.encode_input true", "fno_block_precision='full'", "lower the learning rate")


def nan_on(batches):
    """A training loss that is NaN on the given 1-based calls (a forward overflow), LpLoss otherwise."""
    lp, calls = loss(), {"n": 0}

    def training_loss(out, **sample):
        calls["n"] += 1
        value = lp(out, **sample)
        return value * math.nan if batches is None or calls["n"] in batches else value
    return training_loss


def train(trainer, model, training_loss, **kwargs):
    data, test = tiny_data(n=8, batch_size=4)
    kwargs.setdefault("eval_losses", {"l2": loss()})  # upstream's default evaluates with training_loss
    return trainer.train(data, test, *optimizer_and_scheduler(model), training_loss=training_loss, **kwargs)


def test_scaler_skip_for_a_non_finite_loss_keeps_the_scale_and_a_gradient_overflow_backs_off():
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = ComplexGradScaler(init_scale=8.0, growth_interval=3, min_scale=8.0, max_floor_hits=1)
    keys = set(scaler.state_dict())
    param.grad = torch.ones(2)
    assert scaler.step(optimizer) is True
    scaler.update()  # one finite step counted toward growth
    for _ in range(5):  # a non-finite loss: skipped and counted, the scale and its counters untouched
        scaler.skip_step()
        assert scaler.step(optimizer) is False
        scaler.update()
    assert (scaler.get_scale(), scaler.growth_tracker, scaler.floor_hits) == (8.0, 1, 0)
    assert (scaler.skipped_steps, scaler.consecutive_skips, scaler.total_steps) == (5, 5, 6)
    assert set(scaler.state_dict()) == keys  # the checkpointed state is the same
    param.grad = torch.full((2,), math.inf)  # a gradient overflow still backs off: here to the floor
    assert scaler.step(optimizer) is False
    with pytest.raises(TrainingStopped, match="Loss scaling gave up.*encode the inputs"):
        scaler.update()


def test_forward_overflows_leave_the_loss_scale_of_a_float16_run():
    model = tiny_fno()
    # scaled gradients do not overflow bfloat16: every skip here is a forward one
    trainer = MixedPrecisionTrainer(model=model, n_epochs=3, precision_schedule="mixed", half_dtype="bfloat16",
                                    loss_scaling="dynamic")
    assert trainer.scaler.enabled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train(trainer, model, nan_on({1, 3, 5}))  # one bad batch of two per epoch
    assert [h["skipped_steps"] for h in trainer.history] == [1, 1, 1]
    assert trainer.scaler.get_scale() == 2.0**16  # not halved three times


def test_skip_stop_names_the_setting_and_every_overflow_tip():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="mixed", half_dtype="float16",
                                    max_consecutive_skips=2)
    with pytest.raises(TrainingStopped) as info:
        train(trainer, model, nan_on(None))
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "max_consecutive_skips=2" in message and "--opt.max_consecutive_skips" in message
    assert "SHARE" not in message and "e.g. 'mixed/tanh'" in message
    for tip in FLOAT16_TIPS:
        assert tip in message, tip


def test_an_epoch_without_a_finite_loss_in_float16_blames_the_precision_before_the_data():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="float16",
                                    max_consecutive_skips=20)  # more than the epoch's 2 batches
    with pytest.raises(TrainingStopped, match="Every training loss of epoch 0") as info:
        train(trainer, model, nan_on(None))
    message = str(info.value)
    for tip in FLOAT16_TIPS:
        assert tip in message, tip
    assert message.index("half_dtype='bfloat16'") < message.index("check the training data")


def test_full_precision_stops_say_loss_scaling_off_and_give_no_precision_tips():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, max_consecutive_skips=20)
    assert not trainer.scaler.enabled
    with pytest.raises(TrainingStopped) as info:
        train(trainer, model, nan_on(None))
    message = str(info.value)
    assert "loss scaling off" in message and "loss scale 1" not in message
    assert "check the training data for inf/NaN" in message and "half_dtype=" not in message


def test_non_finite_float16_evaluation_metrics_point_at_an_overflow():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="float16")
    lp = loss()
    with pytest.warns(RuntimeWarning, match="probably overflows") as record:
        train(trainer, model, lp, eval_losses={"l2": lambda out, y: lp(out, y) * math.inf})
    message = next(str(w.message) for w in record if "evaluation metrics" in str(w.message))
    assert "neuralop-mp eval RUN_DIR --precision full" in message and "half_dtype='bfloat16'" in message
