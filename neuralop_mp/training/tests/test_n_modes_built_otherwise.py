"""A resume sets the saved Fourier modes over the model's: silent where the run grew them (incremental
training), a warning where the model was built with other modes than the saved run started with (the
code that builds it changed). The training state records ``n_modes_at_start`` beside ``n_modes`` to
tell the two apart; a record without it (saved before it was) resumes as before, without a word."""
import warnings

import pytest
import torch

from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE, CheckpointError, load_training_files
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data

BUILT_OTHERWISE = "built with other Fourier modes"


class GrowAtEpochOne(MixedPrecisionTrainer):
    """Grows the first layer's modes once, as upstream's IncrementalFNOTrainer does."""

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        if epoch == 1:
            self.model.fno_blocks.convs[0].n_modes = (4, 4)  # stored as [4, 3]


class SavesNoStart(GrowAtEpochOne):
    """Writes the training state as the trainer did before it recorded ``n_modes_at_start``."""

    def precision_state_dict(self, *args, **kwargs):
        state = super().precision_state_dict(*args, **kwargs)
        del state["n_modes_at_start"]
        return state


def _run(tmp_path, n_modes, n_epochs, resume=False, trainer=GrowAtEpochOne):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=n_modes, max_n_modes=(8, 8), in_channels=1, out_channels=1,
                              hidden_channels=6, n_layers=2)
    train, _ = tiny_data(n=8)
    optimizer, scheduler = optimizer_and_scheduler(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(model=model, n_epochs=n_epochs, verbose=False).train(
            train, {}, optimizer, scheduler, training_loss=loss(), eval_losses={}, save_every=1,
            save_dir=tmp_path, resume_from_dir=tmp_path if resume else None)
    return model, [str(w.message) for w in caught if BUILT_OTHERWISE in str(w.message)]


def test_a_model_built_with_other_modes_is_warned_naming_each_module_built_started_and_restored(tmp_path):
    _run(tmp_path, (2, 2), 2)  # saved after epoch 1, which grew the first layer to [4, 3]
    model, messages = _run(tmp_path, (8, 8), 3, resume=True)
    assert len(messages) == 1  # one warning for every module
    assert "fno_blocks.convs.0 built [8, 5], the run started at [2, 2], restored [4, 3]" in messages[0]
    assert "fno_blocks.convs.1 built [8, 5], the run started at [2, 2], restored [2, 2]" in messages[0]
    assert "the model built [8, 8], the run started at [2, 2]" in messages[0]
    assert model.fno_blocks.convs[0].n_modes == [4, 3]  # the saved modes are still set back


def test_modes_the_run_grew_are_set_back_without_a_word(tmp_path):
    _run(tmp_path, (2, 2), 2)
    model, messages = _run(tmp_path, (2, 2), 3, resume=True)
    assert messages == []
    assert model.fno_blocks.convs[0].n_modes == [4, 3]


def test_the_run_start_survives_a_resume_into_the_next_checkpoint(tmp_path):
    _run(tmp_path, (2, 2), 2)
    _run(tmp_path, (2, 2), 3, resume=True)  # saves epoch 2 with the grown modes
    state = torch.load(tmp_path / PRECISION_STATE_FILE, weights_only=True)
    assert state["n_modes"]["fno_blocks.convs.0"] == [4, 3]
    assert state["n_modes_at_start"]["fno_blocks.convs.0"] == [2, 2]  # the run's start, not the resume's
    _, messages = _run(tmp_path, (2, 2), 4, resume=True)
    assert messages == []


def test_a_record_without_the_run_start_resumes_as_before_without_a_word(tmp_path):
    _run(tmp_path, (2, 2), 2, trainer=SavesNoStart)
    assert "n_modes_at_start" not in torch.load(tmp_path / PRECISION_STATE_FILE, weights_only=True)
    model, messages = _run(tmp_path, (8, 8), 3, resume=True)
    assert messages == []
    assert model.fno_blocks.convs[0].n_modes == [4, 3]


class SavesForeignStart(GrowAtEpochOne):
    """Records a run start naming a module the model lacks (a checkpoint of another model)."""

    def precision_state_dict(self, *args, **kwargs):
        state = super().precision_state_dict(*args, **kwargs)
        state["n_modes_at_start"] = {**state["n_modes_at_start"], "fno_blocks.convs.7": [2, 2]}
        return state


def test_a_run_start_naming_no_module_of_the_model_is_refused_before_anything_is_loaded(tmp_path):
    _run(tmp_path, (2, 2), 2, trainer=SavesForeignStart)
    torch.manual_seed(1)
    model = MixedPrecisionFNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1,
                              hidden_channels=6, n_layers=2)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match=r"n_modes_at_start of .*'fno_blocks.convs.7' is no module"):
        load_training_files(tmp_path, model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _resumed_on_the_same_object(model, folder):
    """Resume the run in ``folder`` on ``model`` itself (as a notebook would); the warnings of a model
    built otherwise that it gave."""
    train, _ = tiny_data(n=8)
    optimizer, scheduler = optimizer_and_scheduler(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GrowAtEpochOne(model=model, n_epochs=3, verbose=False).train(
            train, {}, optimizer, scheduler, training_loss=loss(), eval_losses={}, save_every=1,
            save_dir=folder, resume_from_dir=folder)
    return [str(w.message) for w in caught if BUILT_OTHERWISE in str(w.message)]


def test_the_same_model_resumed_in_the_same_process_is_not_warned(tmp_path):
    """A notebook: train() stopped, then train(..., resume_from_dir=...) on the same model object.
    Its grown modules already have the modes restored: nothing is overwritten, nothing to say."""
    model, _ = _run(tmp_path, (2, 2), 2)  # grew the first layer to [4, 3], saved after epoch 1
    assert model.fno_blocks.convs[0].n_modes == [4, 3]
    assert _resumed_on_the_same_object(model, tmp_path) == []
    assert model.fno_blocks.convs[0].n_modes == [4, 3]


def test_a_module_that_differs_from_both_the_start_and_the_restored_modes_is_still_warned(tmp_path):
    model, _ = _run(tmp_path, (2, 2), 2)
    model.fno_blocks.convs[1].n_modes = (6, 6)  # moved after the save: the resume sets [2, 2] over it
    messages = _resumed_on_the_same_object(model, tmp_path)
    assert len(messages) == 1
    assert "fno_blocks.convs.1 built [6, 4], the run started at [2, 2], restored [2, 2]" in messages[0]
    assert "fno_blocks.convs.0" not in messages[0]  # it has the restored modes
    assert model.fno_blocks.convs[1].n_modes == [2, 2]
