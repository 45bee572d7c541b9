"""A model checkpoint keeps the Fourier modes set on the built model (incremental training grows
a layer's ``n_modes``): the plugin's classes record them as ``layer_n_modes`` where they moved,
and ``load_model`` / ``from_checkpoint`` set them back, into upstream's classes too. No state
dict entry is added: upstream's strict ``load_state_dict`` still takes the weights."""
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionTFNO

ARGS = dict(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)


def _n_modes(model):
    """Every module's n_modes by name."""
    return {name: list(module.n_modes) for name, module in model.named_modules() if hasattr(module, "n_modes")}


def _grown(cls=MixedPrecisionFNO, folder=None):
    torch.manual_seed(0)
    model = cls(**ARGS, fno_block_precision="mixed")
    if folder is not None:  # modes that never moved add nothing to the record
        model.save_checkpoint(folder, "unmoved")
        assert "layer_n_modes" not in torch.load(folder / "unmoved_metadata.pkl", weights_only=False)
    model.fno_blocks.convs[0].n_modes = (7, 7)  # as upstream's IncrementalFNOTrainer grows its first layer
    return model


@pytest.mark.parametrize("cls", [MixedPrecisionFNO, MixedPrecisionTFNO])
def test_load_model_and_from_checkpoint_set_back_the_grown_modes(tmp_path, cls):
    model = _grown(cls, folder=tmp_path)
    model.save_checkpoint(tmp_path, "m")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(x)
        for loaded in (neuralop_mp.load_model(tmp_path, "m"), cls.from_checkpoint(tmp_path, "m")):
            assert loaded.fno_blocks.convs[0].n_modes == [7, 4] and loaded.fno_blocks.convs[1].n_modes == [2, 2]
            assert _n_modes(loaded) == _n_modes(model)
            assert torch.equal(loaded(x), expected)


def test_an_upstream_class_loading_the_checkpoint_gets_the_modes_and_the_same_state_dict_keys(tmp_path):
    model = _grown()
    model.save_checkpoint(tmp_path, "m")
    with pytest.warns(UserWarning, match="full precision"):
        plain = neuralop_mp.load_model(tmp_path, "m", model_class=FNO)  # upstream's strict load_state_dict
    assert type(plain) is FNO and plain.fno_blocks.convs[0].n_modes == [7, 4]
    assert set(model.state_dict()) == set(plain.state_dict())  # no state dict entry added for the modes


@pytest.mark.parametrize("given, stored", [((7, 7), [7, 4]), ((6, 6), [6, 4]), ((5, 1), [5, 1]), ((3, 2), [3, 2])])
def test_a_spectral_layer_is_set_back_to_the_modes_it_stored(given, stored):
    from neuralop_mp.models.mixed_precision_models import current_n_modes, set_n_modes

    layer = SpectralConv(2, 2, n_modes=(8, 8))
    layer.n_modes = given
    assert layer.n_modes == stored
    fresh = SpectralConv(2, 2, n_modes=(8, 8))
    set_n_modes(fresh, current_n_modes(layer))
    assert fresh.n_modes == stored


def test_a_record_naming_no_module_of_the_model_is_refused():
    with pytest.raises(ValueError, match=r"MixedPrecisionFNO.layer_n_modes: 'fno_blocks.convs.9' is no module"):
        MixedPrecisionFNO(**ARGS, layer_n_modes={"fno_blocks.convs.9": [3, 2]})
    with pytest.raises(ValueError, match=r"Invalid MixedPrecisionFNO.layer_n_modes=\[3, 2\]; allowed values: a dict"):
        MixedPrecisionFNO(**ARGS, layer_n_modes=[3, 2])
