"""MixedPrecisionTrainer(update_in_backward=True): the ordinary run's weights, or a named refusal."""
import pytest
import torch

from neuralop_mp import MixedPrecisionTrainer

from .tiny import assert_same, loss, optimizer_and_scheduler, snapshot, tiny_data, tiny_fno


def _run(update_in_backward, precision_schedule=None, loss_scaling="auto"):
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=3, precision_schedule=precision_schedule,
                                    loss_scaling=loss_scaling, update_in_backward=update_in_backward)
    train, test = tiny_data()
    torch.manual_seed(5)  # the loader's shuffle
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), eval_losses={"l2": loss()})
    return model, optimizer


def test_trainer_run_is_bitwise_the_ordinary_run_with_a_schedule_and_a_scheduler():
    """A precision schedule (half -> mixed -> full) and StepLR over 3 epochs of 4 steps."""
    schedule = "half:0.34,mixed:0.33,full:0.33"
    expected = snapshot(*_run(False, schedule))
    got = snapshot(*_run(True, schedule))
    assert_same(expected[0], got[0])
    assert_same(expected[1], got[1])


def test_float16_loss_scaling_is_refused_naming_both_settings():
    with pytest.raises(ValueError, match=r"update_in_backward=True cannot be combined with loss_scaling='dynamic'"):
        _run(True, loss_scaling="dynamic")


def test_update_in_backward_must_be_a_bool():
    with pytest.raises(TypeError, match="update_in_backward='yes'"):
        MixedPrecisionTrainer(model=tiny_fno(), n_epochs=1, update_in_backward="yes")


def test_a_non_finite_gradient_stepped_in_backward_is_reported_as_such():
    """The scaler never sees these gradients: the error must not say they were finite, and
    must name update_in_backward and what to do."""
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=True)
    weight = next(p for p in model.parameters() if p.is_complex())
    calls = []
    # the second batch's gradient of one spectral weight is NaN (an overflow in backward)
    weight.register_hook(lambda g: calls.append(1) or (g * float("nan") if len(calls) == 2 else g))
    train, test = tiny_data()
    with pytest.raises(RuntimeError, match=r"turned into inf/NaN at epoch 0, batch 1\. With update_in_backward=True "
                                           r"each parameter is stepped .* before the gradients are checked") as error:
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    assert "although every gradient was finite" not in str(error.value)
