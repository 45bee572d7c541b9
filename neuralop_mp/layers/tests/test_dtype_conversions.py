"""Module conversions (``to``, ``double``, ``half``, ...) of the spectral layer and of a model
holding it: one that would turn the complex spectral weights real is refused before anything
of the layer is converted; every other conversion works as torch's."""
import copy
import warnings

import pytest
import torch

import neuralop_mp
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.weight_storage import spectral_weight_parameters

REAL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _model(**kwargs):
    torch.manual_seed(0)
    return neuralop_mp.MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4,
                                         fno_block_precision="mixed", half_dtype="bfloat16", **kwargs)


def _snapshot(module):
    """Every tensor of the state_dict, complex ones as (real, imag) pairs (torch.equal has no
    complex32 kernel), with its dtype."""
    return {k: (v.dtype, torch.view_as_real(v).clone() if v.is_complex() else v.clone())
            for k, v in module.state_dict().items() if torch.is_tensor(v)}


def _assert_unchanged(before, module):
    after = _snapshot(module)
    assert after.keys() == before.keys()
    for key, (dtype, values) in before.items():
        assert after[key][0] == dtype, key
        assert torch.equal(after[key][1], values), key


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("factorization", [None, "cp", "tucker", "tt"])
def test_a_real_dtype_is_refused_before_the_layer_is_converted(dtype, factorization):
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 3, (4, 4), factorization=factorization,
                                       implementation="factorized" if factorization else "reconstructed")
    before = _snapshot(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "discards the imaginary part" would mean a cast ran
        with pytest.raises(TypeError, match=rf"complex64 spectral weights to {dtype}.*fno_block_precision"):
            layer.to(dtype)
    _assert_unchanged(before, layer)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_complex32_weights_are_refused_too(dtype):
    layer = MixedPrecisionSpectralConv(3, 3, (4, 4), spectral_weight_dtype="complex32")
    before = _snapshot(layer)
    with pytest.raises(TypeError, match=rf"complex32 spectral weights to {dtype}"):
        layer.to(dtype)
    _assert_unchanged(before, layer)


def test_a_refused_model_conversion_leaves_the_model_as_it_was():
    # the first spectral layer is the first module with tensors that an FNO's _apply reaches:
    # the lifting and projection are not converted either
    model = _model()
    x = torch.randn(2, 1, 8, 8)
    expected = model(x)
    before = _snapshot(model)
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(TypeError, match=str(dtype)):
            model.to(dtype)
        with pytest.raises(TypeError, match=str(dtype)):
            model.to("cpu", dtype)
    _assert_unchanged(before, model)
    assert torch.equal(model(x), expected)


def test_a_refused_uno_conversion_leaves_its_lifting_as_it_was():
    # UNO's lifting is reached before its first spectral layer: the model checks every layer first
    torch.manual_seed(0)
    model = neuralop_mp.MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                                          uno_out_channels=[8, 8, 8], uno_n_modes=[[4, 4], [4, 4], [4, 4]],
                                          uno_scalings=[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
                                          channel_mlp_skip="linear", fno_block_precision="mixed")
    before = _snapshot(model)
    with pytest.raises(TypeError, match="float64"):
        model.to(torch.float64)
    _assert_unchanged(before, model)


def test_conversions_that_keep_the_weights_complex_still_work():
    model = _model()
    x = torch.randn(2, 1, 8, 8)
    expected = model(x)
    assert torch.equal(model.to("cpu")(x), expected)
    assert torch.equal(model.to(memory_format=torch.channels_last)(x), expected)
    assert torch.equal(copy.deepcopy(model)(x), expected)
    assert torch.equal(model.share_memory()(x), expected)

    double = copy.deepcopy(model).double()  # complex weights kept, bias float64
    assert {p.dtype for layer in double.fno_blocks.convs for p in spectral_weight_parameters(layer)} == {
        torch.complex64}
    torch.testing.assert_close(double(x.double()).float(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(double.float()(x), expected)

    half = copy.deepcopy(model).half()  # only floating tensors change: the weights stay complex64
    assert {p.dtype for p in half.parameters()} == {torch.complex64, torch.float16}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "complex modules are a new feature"
        wide = copy.deepcopy(model).to(torch.complex128)
    assert {p.dtype for layer in wide.fno_blocks.convs for p in spectral_weight_parameters(layer)} == {
        torch.complex128}

    empty = _model().to("meta").to_empty(device="cpu")
    assert {p.device.type for p in empty.parameters()} == {"cpu"}
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), expected)


def test_the_spectral_weight_dtype_switches_still_work():
    model = _model()
    neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    assert {layer.spectral_weight_dtype for layer in model.fno_blocks.convs} == {"complex32"}
    neuralop_mp.apply_precision_policy(model, {"fno_block_precision": "full", "spectral_weight_dtype": "complex64"})
    assert model.precision_policy.spectral_weight_dtype == "complex64"
    assert model.double()(torch.randn(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64
