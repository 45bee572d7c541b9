"""The stop for weights a step made inf/NaN names the first three and says how many more of how
many there are: three names alone read as all of them (24 of 24 parameters were NaN)."""
import pytest
import torch
from neuralop.losses import LpLoss

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno


def _nan_gradient_loss():
    """A finite loss whose gradient is NaN for every parameter (0 times the derivative of sqrt at 0)."""
    l2 = LpLoss(d=2)

    def nan_gradient(out, y, **kwargs):
        return l2(out, y) + 0.0 * torch.sqrt((out - out.detach()).abs()).sum()
    return nan_gradient


def _stop(model, trainer, training_loss, lr=1e-2):
    optimizer, scheduler = optimizer_and_scheduler(model, lr=lr)
    train, test = tiny_data(n=8, batch_size=4)
    with pytest.raises(RuntimeError, match="into inf/NaN") as error:
        trainer.train(train, test, optimizer, scheduler, training_loss=training_loss)
    return str(error.value)


def test_an_infinite_learning_rate_names_three_weights_and_how_many_more_of_how_many():
    model = tiny_fno()
    n = len(list(model.parameters()))
    message = _stop(model, MixedPrecisionTrainer(model=model, n_epochs=1), loss(), lr=float("inf"))
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    assert len(bad) > 3
    assert f"turned the weights {bad[:3]} and {len(bad) - 3} more (of {n}) into inf/NaN" in message, message


def test_weights_stepped_in_backward_with_nan_gradients_say_how_many_more():
    model = tiny_fno()
    n = len(list(model.parameters()))
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=True)
    message = _stop(model, trainer, _nan_gradient_loss())
    assert f"and {n - 3} more (of {n}) turned into inf/NaN at epoch 0, batch 0" in message, message

