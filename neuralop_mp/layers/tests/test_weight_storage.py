"""complex32 storage of spectral weights: same numbers as complex64 weights holding the
rounded values, half the bytes, gradients in complex32, checkpoints across dtypes."""
import io

import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.tests.reference import reference_forward, rel_err
from neuralop_mp.layers.weight_contractions import dense_weight
from neuralop_mp.layers.weight_storage import spectral_weight_parameters
from neuralop_mp.tests.exact import equal_exactly
from neuralop_mp.training.checkpointing import plain_state_dict

FACTORIZATIONS = [None, "cp", "tucker", "tt"]


def _pair(factorization, implementation="factorized", mode="full", separable=False):
    """A complex32-stored layer and a complex64 layer holding exactly its (rounded) values."""
    kwargs = dict(factorization=factorization, rank=0.5, implementation=implementation, separable=separable,
                  fno_block_precision=mode, half_dtype="bfloat16")
    half = MixedPrecisionSpectralConv(6, 6, (6, 5), spectral_weight_dtype="complex32", **kwargs)
    wide = MixedPrecisionSpectralConv(6, 6, (6, 5), **kwargs)
    with torch.no_grad():
        for p, q in zip(wide.parameters(), half.parameters()):
            p.copy_(q)  # widening complex32 -> complex64 is exact
    return half, wide


def _reference_weight(layer):
    """The layer's full weight reconstructed in complex128 from its stored values."""
    weight = layer.weight
    if isinstance(weight, torch.nn.Module) and not hasattr(weight, "tensor"):
        for p in weight.parameters():
            p.data = p.data.to(torch.complex128)
        full = weight.to_tensor().detach()
        for p in weight.parameters():
            p.data = p.data.to(torch.complex32)
        return full
    return weight.to_tensor().detach().to(torch.complex128)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_every_weight_factor_is_stored_in_complex32_and_bias_stays_fp32(factorization):
    layer = MixedPrecisionSpectralConv(6, 6, (6, 5), factorization=factorization, rank=0.5)
    before = {id(p) for p in layer.parameters()}
    bytes_before = sum(p.numel() * p.element_size() for p in spectral_weight_parameters(layer))
    assert layer.spectral_weight_dtype == "complex64"
    neuralop_mp.set_spectral_weight_dtype(layer, "complex32")
    assert layer.spectral_weight_dtype == "complex32"
    assert {id(p) for p in layer.parameters()} == before  # same Parameter objects
    params = spectral_weight_parameters(layer)
    assert params and all(p.dtype == torch.complex32 for p in params)
    assert sum(p.numel() * p.element_size() for p in params) * 2 == bytes_before
    assert layer.bias.dtype == torch.float32
    assert "spectral_weight_dtype='complex32'" in repr(layer)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("implementation", ["factorized", "reconstructed"])
def test_full_mode_widens_complex32_weights_to_float64_accuracy(factorization, implementation):
    """Against a float64 reference built from the stored (rounded) values: fp32-level error."""
    torch.manual_seed(0)
    layer, _ = _pair(factorization, implementation, mode="full")
    x = torch.randn(3, 6, 12, 10)
    ref, *_ = reference_forward(x, _reference_weight(layer), bias=layer.bias.detach())
    assert rel_err(layer(x), ref) <= 1e-5


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("implementation", ["factorized", "reconstructed"])
@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
@pytest.mark.parametrize("separable", [False, True])
def test_storage_changes_nothing_but_the_rounding_of_the_weights(factorization, implementation, mode, separable):
    """Outputs and gradients of a complex32-stored layer equal those of a complex64 layer
    holding the same values: outputs to fp32 rounding (1e-5; the reconstructed path contracts
    the factors in another order than tltorch), gradients to one fp16 rounding (2^-11).
    Seeded: on about one draw in twenty of unseeded weights and inputs, cancellation in
    the output lifted the fp32 difference of the two contraction orders to ~5e-5."""
    torch.manual_seed(0)
    half, wide = _pair(factorization, implementation, mode, separable)
    x = torch.randn(2, 6, 12, 10)
    y_half, y_wide = half(x), wide(x)
    assert y_half.dtype == y_wide.dtype == torch.float32
    assert rel_err(y_half, y_wide.detach()) <= 1e-5
    seed = torch.randn_like(y_wide)
    (y_half * seed).sum().backward()
    (y_wide * seed).sum().backward()
    for p, q in zip(spectral_weight_parameters(half), spectral_weight_parameters(wide)):
        assert p.grad.dtype == torch.complex32
        assert rel_err(p.grad.to(torch.complex64), q.grad) <= 2.0**-11 + 1e-5
    assert rel_err(half.bias.grad, wide.bias.grad) <= 1e-5


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_dense_weight_of_complex32_factors_matches_tltorch_reconstruction(factorization):
    layer = MixedPrecisionSpectralConv(5, 4, (6, 5), factorization=factorization, rank=0.5,
                                       spectral_weight_dtype="complex32")
    ours = dense_weight(layer.weight)
    assert ours.dtype == torch.complex64
    assert rel_err(ours, _reference_weight(layer)) <= 1e-6


def test_checkpoints_load_across_storage_dtypes():
    torch.manual_seed(0)
    kwargs = dict(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    upstream = FNO(**kwargs)  # upstream's own layer, complex64
    model = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs)
    neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    model.load_state_dict(upstream.state_dict())
    ours = dict(model.named_parameters())
    for name, p in upstream.named_parameters():
        if p.is_complex():
            assert ours[name].dtype == torch.complex32
            assert equal_exactly(ours[name], p.detach().to(torch.complex32))
    buffer = io.BytesIO()
    torch.save(plain_state_dict(model), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs)
    neuralop_mp.set_spectral_weight_dtype(restored, "complex32")
    restored.load_state_dict(state)
    for (name, p), q in zip(model.named_parameters(), restored.parameters()):
        assert equal_exactly(p, q), name


def test_get_model_config_key_and_switch_back():
    config = {"model": {"model_arch": "tfno", "data_channels": 1, "out_channels": 1, "n_modes": [6, 6],
                        "hidden_channels": 8, "n_layers": 2, "spectral_weight_dtype": "complex32"}}
    model = neuralop_mp.get_model(config)
    assert neuralop_mp.get_spectral_weight_dtype(model) == "complex32"
    assert neuralop_mp.get_precision(model)[0] == "full"
    assert neuralop_mp.set_spectral_weight_dtype(model, torch.complex64) == "complex32"
    assert all(p.dtype != torch.complex32 for p in model.parameters())


def test_bad_storage_dtype_and_upstream_layers_are_rejected():
    with pytest.raises(ValueError, match=r"spectral_weight_dtype='complex16'; allowed values: 'complex64', "
                                         r"'complex32'"):
        MixedPrecisionSpectralConv(4, 4, (4,), spectral_weight_dtype="complex16")
    config = {"model": {"model_arch": "fno", "data_channels": 1, "n_modes": [4, 4],
                        "spectral_weight_dtype": "complex32"}}
    with pytest.raises(ValueError, match="spectral_weight_dtype='complex32' needs the mixed-precision"):
        neuralop_mp.get_model(config, mixed_precision_layer=False)
    with pytest.raises(ValueError, match="no MixedPrecisionSpectralConv"):
        neuralop_mp.set_spectral_weight_dtype(FNO(n_modes=(4, 4), in_channels=1, out_channels=1,
                                                  hidden_channels=4), "complex32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_mode_with_complex32_weights_trains_a_step():
    """fp16 FFTs ("half", power-of-2 sizes), complex32 weights, scaled loss, TensorGRaD step."""
    from neuralop_mp.optim import TensorGRaD
    from neuralop_mp.training.loss_scaling import ComplexGradScaler

    torch.manual_seed(0)
    kwargs = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2)
    models = {}
    for dtype in ("complex64", "complex32"):
        torch.manual_seed(0)
        model = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs).cuda()
        neuralop_mp.set_precision(model, "half", half_dtype="float16", stabilizer="tanh")
        neuralop_mp.set_spectral_weight_dtype(model, dtype)
        models[dtype] = model
    with torch.no_grad():  # same (rounded) values in both
        for p, q in zip(models["complex64"].parameters(), models["complex32"].parameters()):
            p.copy_(q)
    x = torch.randn(4, 1, 32, 32, device="cuda")
    outs = {}
    for dtype, model in models.items():
        optimizer = TensorGRaD(model.parameters(), lr=1e-3, min_params=100)
        scaler = ComplexGradScaler(init_scale=2.0**10)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
        scaler.scale(out.float().square().mean()).backward()
        assert scaler.step(optimizer)
        outs[dtype] = out.float().detach()
    assert all(p.grad.dtype == torch.complex32 for p in models["complex32"].parameters() if p.is_complex())
    assert rel_err(outs["complex32"], outs["complex64"]) <= 1e-2  # two fp16 pipelines, same weights
