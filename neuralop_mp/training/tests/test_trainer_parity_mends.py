"""Trainer-parity mends: eval_modes checked up front, and a loss call that lost its keys said
plainly."""
import warnings

import pytest
import torch

from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer


def _train(trainer_cls=MixedPrecisionTrainer, n_epochs=1, test=None, trainer_kw=None, **train_kw):
    torch.manual_seed(0)
    train, tiny_test = tiny_data()
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = trainer_cls(model=model, n_epochs=n_epochs, **(trainer_kw or {}))
    train_kw.setdefault("training_loss", loss())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, tiny_test if test is None else test, optimizer, scheduler, **train_kw)
    return trainer


@pytest.mark.parametrize("eval_modes, test_keys, expected", [
    # upstream's train() docstring spelling: was an UnboundLocalError after a whole epoch
    ({"8": "autoregressive"}, ("8",), r"Invalid eval_modes\['8'\]='autoregressive'; allowed values: 'single_step', "
                                      r"'autoregression'\. Did you mean 'autoregression'\?"),
    ({"8": "rollout"}, ("8",), r"Invalid eval_modes\['8'\]='rollout'; allowed values"),
    # a key of another type than the loader's: was silently single-step
    ({"8": "autoregression"}, (8,), r"Invalid eval_modes key '8'; allowed values: the test_loaders keys 8\. "
                                    r"Did you mean 8 \(int, not str\)\?"),
    ({"16": "single_step"}, ("8",), r"Invalid eval_modes key '16'"),
])
def test_bad_eval_modes_are_refused_before_training(eval_modes, test_keys, expected):
    loader = tiny_data()[1]["8"]
    test = {key: loader for key in test_keys}
    torch.manual_seed(0)
    model = tiny_fno()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with pytest.raises(ValueError, match=expected):
        trainer.train(tiny_data()[0], test, optimizer, scheduler, training_loss=loss(), eval_modes=eval_modes)
    assert trainer.history == []  # nothing trained
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("mode, expected", [
    ("autoregressive", r"Invalid mode='autoregressive'; allowed values: 'single_step', 'autoregression'\. "
                       r"Did you mean 'autoregression'\?"),
    ("rollout", r"Invalid mode='rollout'; allowed values: 'single_step', 'autoregression'"),
])
def test_evaluate_called_directly_refuses_a_mode_it_does_not_run(mode, expected):
    """trainer.evaluate(..., mode=...) outside train(): upstream ended in an UnboundLocalError
    ('eval_step_losses') after moving the model, for the spelling its own docstring gives too."""
    trainer = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=1)
    with pytest.raises(ValueError, match=expected):
        trainer.evaluate({"l2": loss()}, tiny_data()[1]["8"], log_prefix="8", mode=mode)
    errors = trainer.evaluate({"l2": loss()}, tiny_data()[1]["8"], log_prefix="8", mode="single_step")
    assert set(errors) == {"8_l2"}


def test_good_eval_modes_train():
    trainer = _train(eval_modes={"8": "single_step"})
    assert "8_l2" in trainer.history[-1]


def test_a_loss_that_names_no_sample_key_is_said_plainly():
    # MSELoss.forward(input, target): neither "x" nor "y" reaches it
    with pytest.raises(TypeError) as info:
        _train(training_loss=torch.nn.MSELoss(reduction="sum"))
    text = str(info.value)
    assert "training_loss (MSELoss)" in text and "missing 1 required positional argument: 'target'" in text
    assert "passed [] and not ['x', 'y']" in text and "keyword arguments (y_pred=..., y=...)" in text
    assert "\n" not in text
    with pytest.raises(TypeError, match=r"eval_losses\['mse'\] \(MSELoss\) could not be called"):
        _train(eval_losses={"mse": torch.nn.MSELoss(reduction="sum")})


def test_a_type_error_inside_the_loss_is_left_as_raised():
    def own(y_pred, y):  # binds (x is left out): the error is the loss's own
        raise TypeError("the loss's own error")

    with pytest.raises(TypeError, match=r"^the loss's own error$"):
        _train(training_loss=own)


def test_a_schedule_for_a_model_without_plugin_layers_names_every_way_out():
    """The trainer's refusal wrote its own hint, without the way for a module that creates
    SpectralConv itself: it now gives the one hint every such refusal gives."""
    from neuralop.models import FNO

    from neuralop_mp.layers.layer_precision import NO_LAYER_HINT

    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4)
    with pytest.raises(ValueError) as info:
        MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed")
    assert str(info.value).endswith("FNO has no MixedPrecisionSpectralConv layer; " + NO_LAYER_HINT)
    assert "SpectralConv(...) itself" in NO_LAYER_HINT


def test_a_rollout_that_could_never_end_is_refused():
    """Without a data processor (whose preprocess returning None ends a rollout) and without a step limit,
    upstream's autoregressive evaluation ran the same batch forever (train() after its first epoch)."""
    trainer = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=1)
    with pytest.raises(ValueError, match=r"Invalid mode='autoregression' with max_steps=None: an autoregressive "
                                         r"rollout without a data processor never ends"):
        trainer.evaluate({"l2": loss()}, tiny_data()[1]["8"], log_prefix="8", mode="autoregression")
    errors = trainer.evaluate({"l2": loss()}, tiny_data()[1]["8"], log_prefix="8", mode="autoregression",
                              max_steps=2)
    assert set(errors) == {"8_l2"}
    torch.manual_seed(0)
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with pytest.raises(ValueError, match=r"Invalid eval_modes for 8 with max_autoregressive_steps=None"):
        trainer.train(tiny_data()[0], tiny_data()[1], optimizer, scheduler, training_loss=loss(),
                      eval_modes={"8": "autoregression"})
    assert trainer.history == []
