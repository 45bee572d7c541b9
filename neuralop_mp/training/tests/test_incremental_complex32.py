"""Incremental training with complex32 spectral weights grows the modes as with complex64.

Upstream's algorithms read the first layer's weight (summed over epochs, ``torch.norm`` per mode) and
the epoch loss, both of which work on complex32. What stopped the growth was the optimizer: torch's
AdamW keeps complex32 moments in complex32, its first step turns the weights into NaN, and every loss
after is NaN (upstream's own trainer goes on with them, its loss gap never small enough; the plugin's
stops naming the cause). With the factory's "adamw" (float32 moments) both algorithms grow as they do
for complex64 weights, under the plugin's trainer and under upstream's own."""
import warnings

import pytest
import torch
from neuralop.training import IncrementalFNOTrainer

import neuralop_mp
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO
from neuralop_mp.training.guarded_step import TrainingStopped
from neuralop_mp.training.incremental import IncrementalMixedPrecisionTrainer

from .tiny import loss, tiny_data

LOSS_GAP = dict(incremental_loss_gap=True, incremental_loss_eps=1e9)  # grows after every epoch but the first
GRAD = dict(incremental_grad=True, incremental_grad_eps=0.9999, incremental_grad_max_iter=2, incremental_buffer=1)


def _train(dtype, algorithm, trainer_class=IncrementalMixedPrecisionTrainer, optimizer="adamw", n_epochs=5):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6,
                              n_layers=2, spectral_weight_dtype=dtype)
    assert model.fno_blocks.convs[0].weight.tensor.dtype == getattr(torch, dtype)
    train, _ = tiny_data(n=8)
    opt = (neuralop_mp.create_optimizer(model, {"optimizer": "adamw", "learning_rate": 1e-2}) if optimizer == "adamw"
           else torch.optim.AdamW(model.parameters(), lr=1e-2))
    trainer = trainer_class(model=model, n_epochs=n_epochs, verbose=False, **algorithm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, {}, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2), training_loss=loss(),
                      eval_losses={})
    return model, trainer


@pytest.mark.parametrize("trainer_class", [IncrementalMixedPrecisionTrainer, IncrementalFNOTrainer],
                         ids=["plugin", "upstream"])
@pytest.mark.parametrize("algorithm", [LOSS_GAP, GRAD], ids=["loss_gap", "grad"])
def test_complex32_weights_grow_as_complex64_weights_do(trainer_class, algorithm):
    grown = {dtype: _train(dtype, algorithm, trainer_class)[0].fno_blocks.convs[0].n_modes
             for dtype in ("complex64", "complex32")}
    assert grown["complex32"] == grown["complex64"]
    assert grown["complex32"][0] > 2


def test_complex32_moments_stop_the_plugin_trainer_naming_the_optimizer():
    with pytest.raises(TrainingStopped, match=r"AdamW keeps the moments of complex32 weights in their own dtype"):
        _train("complex32", LOSS_GAP, optimizer="torch")


def _real(tensor):
    """A view torch.equal compares (it has no complex32 kernel)."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


class StopsAtTwo(IncrementalMixedPrecisionTrainer):
    def on_epoch_start(self, epoch):
        if epoch == 2 and not getattr(self, "resumed", False):
            raise KeyboardInterrupt  # the last checkpoint is epoch 1's, mid-accumulation
        super().on_epoch_start(epoch)


def test_a_stopped_and_resumed_complex32_run_ends_as_the_uninterrupted_one(tmp_path):
    def run(save=False, resume=False):
        torch.manual_seed(0)
        model = MixedPrecisionFNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1,
                                  hidden_channels=6, n_layers=2, spectral_weight_dtype="complex32")
        opt = neuralop_mp.create_optimizer(model, {"optimizer": "adamw", "learning_rate": 1e-2})
        trainer = StopsAtTwo(model=model, n_epochs=5, verbose=False, **GRAD)
        trainer.resumed = resume or not save
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.train(tiny_data(n=8)[0], {}, opt, None, training_loss=loss(), eval_losses={},
                              save_every=1 if save or resume else None, save_dir=tmp_path,
                              resume_from_dir=tmp_path if resume else None)
        except KeyboardInterrupt:
            pass
        return model

    whole = run()
    run(save=True)
    state = torch.load(tmp_path / "precision_state.pt", weights_only=True)
    assert state["incremental"]["accumulated_grad"].dtype == torch.complex32  # saved weights-only
    resumed = run(resume=True)
    assert whole.fno_blocks.convs[0].n_modes == resumed.fno_blocks.convs[0].n_modes
    assert whole.fno_blocks.convs[0].n_modes[0] > 2
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(_real(a), _real(b)), name
