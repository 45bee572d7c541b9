"""An upstream-class model (neuralop's FNO) grown by incremental training records no Fourier modes in
its metadata (a new key would break upstream's ``from_checkpoint``). In a trainer's checkpoint folder,
the one ``neuralop-mp run`` writes metadata beside, ``precision_state.pt`` holds every module's
``n_modes`` of the same save: ``neuralop_mp.load_model`` sets them from there, and plain neuraloperator
still loads the folder (no metadata key or state dict entry added)."""
import shutil
import warnings

import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, current_n_modes
from neuralop_mp.runner.intercept import save_model_metadata_beside
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE, CheckpointError
from neuralop_mp.training.incremental import IncrementalMixedPrecisionTrainer
from neuralop_mp.training.tests.tiny import loss, tiny_data
from neuralop_mp.training.trainer import MixedPrecisionTrainer


class WritesMetadataBeside(IncrementalMixedPrecisionTrainer):
    """Checkpoints as ``neuralop-mp run``'s trainer does: the model's metadata beside its weights."""

    def checkpoint(self, save_dir):
        super().checkpoint(save_dir)
        save_model_metadata_beside(save_dir, self.model, epoch=self.epoch)


def _grown_upstream_fno(folder, model_class=FNO):
    """A ``model_class`` (upstream's FNO by default) grown from 2x2 to 4x3 modes by incremental
    training, checkpointed in ``folder`` after every epoch as ``neuralop-mp run``'s trainer does."""
    torch.manual_seed(0)
    model = model_class(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6,
                        n_layers=2)
    train, _ = tiny_data(n=8)
    trainer = WritesMetadataBeside(model=model, n_epochs=3, verbose=False, incremental_loss_gap=True,
                                   incremental_loss_eps=1e9)  # grows after every epoch but the first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, {}, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(),
                      eval_losses={}, save_every=1, save_dir=folder)
    assert model.fno_blocks.convs[0].n_modes == [4, 3]
    return model.eval()


@pytest.mark.parametrize("model_class", [None, "mixedprecisionfno"])
def test_load_model_sets_the_modes_of_the_trainer_checkpoint_it_loads(tmp_path, model_class):
    torch.manual_seed(0)
    model = _grown_upstream_fno(tmp_path)
    assert "layer_n_modes" not in torch.load(tmp_path / "model_metadata.pkl", weights_only=False)
    loaded = neuralop_mp.load_model(tmp_path, "model", model_class=model_class).eval()
    assert current_n_modes(loaded) == current_n_modes(model)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)  # the plugin's layer sums in its own order


def test_plain_neuraloperator_still_loads_the_folder_with_the_constructor_modes(tmp_path):
    model = _grown_upstream_fno(tmp_path)
    plain = FNO.from_checkpoint(tmp_path, "model")  # upstream's strict load: no key added anywhere
    assert plain.fno_blocks.convs[0].n_modes == [2, 2]
    assert set(plain.state_dict()) == set(model.state_dict())


def test_weights_of_another_name_than_the_trainer_save_get_no_modes_from_it(tmp_path):
    model = _grown_upstream_fno(tmp_path)
    model.save_checkpoint(tmp_path, "other")  # the user's own save into the folder: not the trainer's
    loaded = neuralop_mp.load_model(tmp_path, "other")
    assert loaded.fno_blocks.convs[0].n_modes == [2, 2]


def test_a_training_state_of_another_model_is_refused_naming_it(tmp_path):
    from neuralop_mp.models.checkpoints import restore_trained_n_modes

    _grown_upstream_fno(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(tmp_path, other, ignore=shutil.ignore_patterns("other"))
    state = torch.load(other / PRECISION_STATE_FILE, weights_only=True)
    state["n_modes"]["fno_blocks.convs.5"] = [2, 2]
    torch.save(state, other / PRECISION_STATE_FILE)
    model = FNO(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)
    metadata = torch.load(other / "model_metadata.pkl", weights_only=False)
    with pytest.raises(CheckpointError, match=r"precision_state.pt is the training state of another model than "
                                              r"FNO: .*'fno_blocks.convs.5' is no module"):
        restore_trained_n_modes(model, other, "model", metadata)


def test_eval_loads_the_modes_of_the_trainer_checkpoint_it_loads(tmp_path):
    """``neuralop-mp eval``'s lookup (run_folder.load_model_and_precision) gives the grown model, as load_model does."""
    torch.manual_seed(0)
    from neuralop_mp.run_folder import load_model_and_precision as load_for_eval

    model = _grown_upstream_fno(tmp_path)
    loaded, _ = load_for_eval(tmp_path)
    assert current_n_modes(loaded) == current_n_modes(model)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x), atol=1e-6)


class TrainerWritingMetadataBeside(MixedPrecisionTrainer):
    """Checkpoints as ``neuralop-mp run``'s trainer does, without growing any modes."""

    def checkpoint(self, save_dir):
        super().checkpoint(save_dir)
        save_model_metadata_beside(save_dir, self.model, epoch=self.epoch)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:64])


@pytest.mark.parametrize("loader", ["load_model", "eval"])
def test_a_plugin_model_loads_from_its_metadata_without_reading_the_training_state(tmp_path, loader):
    """The plugin's classes record moved modes in their metadata (none here: never grown), so a
    damaged precision_state.pt beside sound weights is no reason to refuse the model."""
    from neuralop_mp.run_folder import load_model_and_precision as load_for_eval

    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(2, 2), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)
    train, _ = tiny_data(n=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TrainerWritingMetadataBeside(model=model, n_epochs=1, verbose=False).train(
            train, {}, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(), eval_losses={},
            save_every=1, save_dir=tmp_path)
    _truncate(tmp_path / PRECISION_STATE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say either: the file is not read
        loaded = neuralop_mp.load_model(tmp_path, "model") if loader == "load_model" else load_for_eval(tmp_path)[0]
    weights = {key: value for key, value in model.state_dict().items() if isinstance(value, torch.Tensor)}
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in weights.items())


def test_an_unreadable_training_state_leaves_an_upstream_model_its_constructor_modes_with_a_warning(tmp_path):
    _grown_upstream_fno(tmp_path)
    _truncate(tmp_path / PRECISION_STATE_FILE)
    with pytest.warns(UserWarning, match=r"precision_state.pt cannot be read, so the Fourier modes .* the model has "
                                         r"its constructor's modes") as caught:
        loaded = neuralop_mp.load_model(tmp_path, "model")
    assert loaded.fno_blocks.convs[0].n_modes == [2, 2]
    assert any(w.filename == __file__ for w in caught)  # the caller's line
