"""The warning of a resume that turns loss scaling on or off names why this run does: its 16-bit
weights, float16 compute or ``loss_scaling`` itself, not the half type alone (a bfloat16 run whose
spectral weights are resumed in complex32 scales its loss, in the same half type as before)."""
import pytest
import torch

from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer


def _saved_bfloat16_run(folder):
    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="bfloat16").train(
        train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=folder)


def _resuming(model, **kwargs):
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", **kwargs)
    trainer.optimizer, trainer.scheduler = optimizer, scheduler
    return trainer


def test_complex32_weights_are_named_as_why_a_bfloat16_run_turns_scaling_on(tmp_path):
    _saved_bfloat16_run(tmp_path)
    model = tiny_fno()
    for parameter in model.parameters():  # the spectral weights stored in complex32 (model.spectral_weight_dtype)
        if parameter.is_complex():
            parameter.data = parameter.data.to(torch.complex32)
    trainer = _resuming(model, half_dtype="bfloat16")
    with pytest.warns(RuntimeWarning) as caught:
        trainer.resume_state_from_dir(tmp_path)
    [message] = [str(w.message) for w in caught if "loss scaling" in str(w.message)]
    assert "parameters stored in complex32" in message and message.endswith("turns it on, starting from scale 65536.")
    assert message.startswith("The checkpoint was saved with loss scaling off; this run (")
    assert trainer.scaler.enabled


def test_a_changed_half_type_is_named_on_both_sides(tmp_path):
    _saved_bfloat16_run(tmp_path)
    trainer = _resuming(tiny_fno(), half_dtype="float16")
    with pytest.warns(RuntimeWarning, match=r"saved with loss scaling off \(half_dtype='bfloat16'\); this run "
                                            r"\(loss_scaling='auto', half_dtype='float16': computes in float16\) "
                                            r"turns it on, starting from scale 65536\."):
        trainer.resume_state_from_dir(tmp_path)


def test_loss_scaling_given_is_the_reason_when_it_decides(tmp_path):
    _saved_bfloat16_run(tmp_path)
    trainer = _resuming(tiny_fno(), half_dtype="bfloat16", loss_scaling="dynamic")
    with pytest.warns(RuntimeWarning, match=r"saved with loss scaling off; this run \(loss_scaling='dynamic'\) "
                                            r"turns it on"):
        trainer.resume_state_from_dir(tmp_path)


def test_resuming_in_float16_warns_with_the_scale_this_run_starts_from(tmp_path):
    _saved_bfloat16_run(tmp_path)
    trainer = _resuming(tiny_fno(), half_dtype="float16")
    trainer.scaler = ComplexGradScaler(init_scale=256.0, enabled=False)
    with pytest.warns(RuntimeWarning, match=r"turns it on, starting from scale 256\."):
        trainer.resume_state_from_dir(tmp_path)
    assert trainer.scaler.enabled and trainer.scaler.get_scale() == 256.0
