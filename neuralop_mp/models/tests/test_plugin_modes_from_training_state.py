"""A plugin-class model whose metadata records no ``layer_n_modes`` although it was grown (pickled
whole before its built modes were noted, then grown by incremental training): the grown modes are
only in the trainer's ``precision_state.pt``, which a load reads where it can (and skips silently
where it cannot: the metadata of a never-grown model is the whole record)."""
import warnings

import torch

import neuralop_mp
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, current_n_modes
from neuralop_mp.models.tests.test_trained_n_modes_load import _grown_upstream_fno, _truncate
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE

METADATA = "model_metadata.pkl"


def _grown_plugin_fno_with_an_old_record(folder):
    model = _grown_upstream_fno(folder, MixedPrecisionFNO)
    metadata = torch.load(folder / METADATA, weights_only=False)
    del metadata["layer_n_modes"]  # as a model pickled before _built_n_modes existed records it
    torch.save(metadata, folder / METADATA)
    return model


def test_a_grown_plugin_model_without_layer_n_modes_gets_its_modes_from_the_training_state(tmp_path):
    model = _grown_plugin_fno_with_an_old_record(tmp_path)
    loaded = neuralop_mp.load_model(tmp_path, "model").eval()
    assert current_n_modes(loaded) == current_n_modes(model)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_an_unreadable_training_state_of_such_a_model_is_skipped_silently(tmp_path):
    _grown_plugin_fno_with_an_old_record(tmp_path)
    _truncate(tmp_path / PRECISION_STATE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = neuralop_mp.load_model(tmp_path, "model")
    assert loaded.fno_blocks.convs[0].n_modes == [2, 2]  # the constructor's: nothing else to go by
