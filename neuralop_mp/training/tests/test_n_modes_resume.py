"""A resume sets back the Fourier modes the run changed (incremental training grows a layer's
``n_modes``, which no state dict entry holds): the training state records every module's
``n_modes`` by name, and the resumed run ends bitwise where the uninterrupted one ends."""
import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE, CheckpointError
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data


class GrowAtEpochOne(MixedPrecisionTrainer):
    """Grows the model's modes once, as upstream's IncrementalFNOTrainer grows its first layer's."""

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        if epoch == 1:
            self.model.fno_blocks.convs[0].n_modes = (7, 7)  # stored as [7, 4]: the last one halved, plus one
            self.model.fno_blocks.convs[1].n_modes = (6, 6)


def _n_modes(model):
    """Every module's n_modes by name (what the training state records)."""
    return {name: list(module.n_modes) for name, module in model.named_modules() if hasattr(module, "n_modes")}


def _model(kind):
    torch.manual_seed(0)
    if kind == "plugin":
        return MixedPrecisionFNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1,
                                 hidden_channels=6, n_layers=2, fno_block_precision="mixed",
                                 half_dtype="bfloat16")
    return FNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)


def _run(kind, n_epochs, save_dir=None, resume=None):
    model = _model(kind)
    train, _ = tiny_data(n=8)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = GrowAtEpochOne(model=model, n_epochs=n_epochs)
    trainer.train(train, {}, optimizer, scheduler, training_loss=loss(), eval_losses={},
                  save_every=1 if save_dir else None, save_dir=save_dir or "./ckpt", resume_from_dir=resume)
    return model


@pytest.mark.parametrize("kind", ["plugin", "upstream"])
def test_a_resume_sets_back_the_modes_the_run_grew(tmp_path, kind):
    whole = _run(kind, 4)
    _run(kind, 2, save_dir=tmp_path)  # stopped after epoch 1, which grew the modes
    resumed = _run(kind, 4, save_dir=tmp_path, resume=tmp_path)
    assert whole.fno_blocks.convs[0].n_modes == [7, 4]
    assert _n_modes(resumed) == _n_modes(whole)
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_the_training_state_holds_every_module_n_modes_by_name_weights_only(tmp_path):
    _run("plugin", 2, save_dir=tmp_path)
    state = torch.load(tmp_path / PRECISION_STATE_FILE, weights_only=True)
    assert state["n_modes"] == {"": [2, 2], "fno_blocks": [2, 2], "fno_blocks.convs.0": [7, 4],
                                "fno_blocks.convs.1": [6, 4]}


def test_a_record_that_does_not_fit_the_model_is_refused_naming_the_module(tmp_path):
    model = _model("upstream")
    with pytest.raises(CheckpointError, match=r"'fno_blocks.convs.5' is no module of FNO with n_modes"):
        checkpointing.check_n_modes_state(model, {"fno_blocks.convs.5": [2, 2]}, tmp_path / PRECISION_STATE_FILE)
    with pytest.raises(CheckpointError, match=r"fno_blocks.convs.0'\]=\[2\]; allowed values: 2 integer"):
        checkpointing.check_n_modes_state(model, {"fno_blocks.convs.0": [2]}, tmp_path / PRECISION_STATE_FILE)
