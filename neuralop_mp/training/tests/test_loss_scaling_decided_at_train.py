"""loss_scaling="auto" is decided again when train() starts a run, not only when the trainer is
built: a model switched to float16 after that (docs: ``set_precision`` after the trainer, complex32
weights converted later) must not train in float16 without scaling."""
import warnings

import pytest

import neuralop_mp
from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, snapshot, assert_same, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

# set_precision on upstream's FNO says its checkpoints would not record it: not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore::neuralop_mp.models.mixed_precision_models.UnrecordedPrecisionWarning")


def _train(trainer, model, **kwargs):
    train, test = tiny_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), **kwargs)


def test_float16_set_after_the_trainer_turns_auto_scaling_on():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    assert not trainer.scaler.enabled  # full precision when built
    neuralop_mp.set_precision(model, "mixed", half_dtype="float16")
    _train(trainer, model)
    assert trainer.history[0]["half_dtype"] == "float16"
    assert trainer.scaler.enabled and trainer.history[0]["loss_scale"] > 1


def test_back_to_full_after_the_trainer_turns_auto_scaling_off():
    model = tiny_fno()
    neuralop_mp.set_precision(model, "mixed", half_dtype="float16")
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    assert trainer.scaler.enabled
    neuralop_mp.set_precision(model, "full")
    _train(trainer, model)
    assert not trainer.scaler.enabled and trainer.history[0]["loss_scale"] == 1.0


@pytest.mark.parametrize("loss_scaling, enabled", [("none", False), ("dynamic", True)])
def test_an_explicit_choice_is_kept(loss_scaling, enabled):
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, loss_scaling=loss_scaling)
    neuralop_mp.set_precision(model, "mixed", half_dtype="float16")
    _train(trainer, model)
    assert trainer.scaler.enabled is enabled


def test_update_in_backward_is_refused_before_training_once_float16_is_set():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=True)  # accepted: full precision
    neuralop_mp.set_precision(model, "mixed", half_dtype="float16")
    before = snapshot(model, optimizer_and_scheduler(model)[0])[0]
    with pytest.raises(ValueError, match=r"update_in_backward=True cannot be combined with loss_scaling='auto'"):
        _train(trainer, model)
    assert trainer.history == []
    assert_same(snapshot(model, optimizer_and_scheduler(model)[0])[0], before)


def test_update_in_backward_beside_complex32_weights_is_refused_naming_the_storage():
    """complex32 spectral weights make "auto" scale the loss whatever the run computes in: the refusal
    names that storage and advises what helps (complex64 weights, or loss_scaling='none'), not a
    bfloat16 half type, which changes nothing here."""
    model = tiny_fno()
    neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    with pytest.raises(ValueError) as refused:
        MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=True)
    message = str(refused.value)
    assert "loss_scaling='auto' (parameters stored in complex32 make 'auto' scale the loss;" in message
    assert "store them in float32 / complex64" in message and "loss_scaling='none'" in message
    assert "bfloat16" not in message


def test_update_in_backward_beside_complex32_weights_and_float16_compute_names_both_causes():
    """Both causes named, and both remedies: complex64 weights alone would be refused again for
    the float16 compute."""
    model = tiny_fno()
    neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    neuralop_mp.set_precision(model, "mixed", half_dtype="float16")
    with pytest.raises(ValueError) as refused:
        MixedPrecisionTrainer(model=model, n_epochs=1, update_in_backward=True)
    message = str(refused.value)
    assert "(parameters stored in complex32 and float16 compute make 'auto' scale the loss;" in message
    assert "store them in float32 / complex64" in message and "train in bfloat16 or float32" in message
