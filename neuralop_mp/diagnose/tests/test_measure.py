"""The measurement against independent float64 computations on small layers and models."""
import math
import warnings

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO, MixedPrecisionSpectralConv, get_precision
from neuralop_mp.diagnose import measure
from neuralop_mp.diagnose.bands import band_edges, band_errors
from neuralop_mp.diagnose.measure import FLOAT16_MAX


def _dense_layer(seed=0):
    torch.manual_seed(seed)
    return MixedPrecisionSpectralConv(4, 4, (6, 6))


def _reference(layer, x, half=None):
    """The layer's output computed independently in float64 from its weight and bias.

    With ``half``, the Fourier-domain operands and the product are rounded to that type
    (real and imaginary parts), as the "mixed" layer does; the rest stays exact.
    """
    x = x.double()
    weight = layer.weight.to_tensor().detach().to(torch.complex128)
    n = x.shape[-2]
    kx, ky = weight.shape[-2:]
    start = n // 2 - kx // 2

    def rnd(z):
        return z if half is None else torch.complex(z.real.to(half).double(), z.imag.to(half).double())

    spectrum = torch.fft.fftshift(torch.fft.rfft2(x, norm="forward"), dim=-2)
    kept = rnd(spectrum[..., start:start + kx, :ky])
    product = rnd(torch.einsum("bixy,ioxy->boxy", kept, rnd(weight)))
    out = torch.zeros(x.shape[0], weight.shape[1], n, n // 2 + 1, dtype=torch.complex128)
    out[..., start:start + kx, :ky] = product
    y = torch.fft.irfft2(torch.fft.ifftshift(out, dim=-2), s=x.shape[-2:], norm="forward")
    return y + layer.bias.detach().double()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_precision_error_equals_float64_emulation(half):
    layer = _dense_layer()
    torch.manual_seed(1)
    x_fine = torch.randn(3, 4, 16, 16)
    result = measure(layer, x_fine, n_bands=3, modes=("mixed",))
    x = x_fine[..., ::2, ::2]
    exact = _reference(layer, x)
    # the layer in full precision is the float64 reference up to float32 rounding
    with torch.no_grad():
        assert _rel(layer(x).double(), exact) < 1e-6
    expected = _rel(_reference(layer, x, getattr(torch, half)), exact)
    measured = result["layers"][0]["precision"][f"mixed-{half}"]
    # rounding the same operands the same way: agreement to float32 accuracy of the sums
    assert measured["error"] == pytest.approx(expected, rel=1e-3)
    # the band errors split the total error (Parseval)
    assert math.sqrt(sum(b * b for b in measured["bands"])) == pytest.approx(measured["error"], rel=1e-4)
    with_tanh = _rel(_reference(layer, torch.tanh(x), getattr(torch, half)), _reference(layer, torch.tanh(x)))
    assert result["layers"][0]["precision"][f"mixed-{half}+tanh"]["error"] == pytest.approx(with_tanh, rel=1e-3)


def test_discretization_error_equals_float64_reference():
    layer = _dense_layer(2)
    torch.manual_seed(3)
    x_fine = torch.randn(2, 4, 16, 16)
    result = measure(layer, x_fine, n_bands=2, half_dtypes=("bfloat16",), modes=("mixed",))
    coarse = _reference(layer, x_fine[..., ::2, ::2])
    fine = _reference(layer, x_fine)[..., ::2, ::2]
    expected = _rel(coarse, fine)
    assert expected > 1e-3  # a real difference, not rounding
    assert result["layers"][0]["discretization_error"] == pytest.approx(expected, rel=1e-4)
    assert result["model"]["discretization_error"] == pytest.approx(expected, rel=1e-4)


def test_overflow_margin_is_float16_max_over_largest_pre_fft_magnitude():
    layer = _dense_layer()
    torch.manual_seed(4)
    x_fine = torch.randn(2, 4, 8, 8) * 3e4
    result = measure(layer, x_fine, n_bands=1, half_dtypes=("bfloat16",), modes=("mixed",))
    x = x_fine[..., ::2, ::2].double()
    largest = max(float(x.abs().max()), float(torch.fft.rfft2(x, norm="forward").abs().max()))
    assert result["layers"][0]["overflow"]["float16_margin"] == pytest.approx(FLOAT16_MAX / largest, rel=1e-6)
    assert result["layers"][0]["overflow"]["float16_margin"] < 1


def test_band_errors_put_a_single_frequency_in_its_band():
    n = 16
    grid = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    reference = torch.ones(1, 1, n, n, dtype=torch.float64)
    edges = band_edges((n, n), 3)  # |k| in [0,3), [3,6), [6,9)
    for k, band in ((1, 0), (4, 1), (7, 2)):
        difference = 1e-3 * torch.cos(k * grid).view(1, 1, n, 1).expand(1, 1, n, n)
        errors = band_errors(difference, reference, edges)
        expected = float(difference.norm() / reference.norm())
        assert errors[band] == pytest.approx(expected, rel=1e-9)
        assert sum(errors) == pytest.approx(expected, rel=1e-9)


def test_model_measurement_restores_settings_and_covers_every_layer():
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              fno_block_precision="mixed", half_dtype="bfloat16")
    result = measure(model, torch.randn(2, 1, 16, 16), n_bands=2)
    assert [layer["name"] for layer in result["layers"]] == ["fno_blocks.convs.0", "fno_blocks.convs.1"]
    assert get_precision(model) == ("mixed", "bfloat16", None)
    assert len(result["model"]["precision"]) == 16  # 2 modes x 2 types x tanh x autocast
    assert any("half" in note for note in result["notes"])
    for entry in result["layers"]:
        # bfloat16 keeps 8 significant bits, float16 11: its error is several times smaller
        assert entry["precision"]["mixed-float16"]["error"] < entry["precision"]["mixed-bfloat16"]["error"] / 2


@pytest.mark.parametrize("bad, error, match", [
    # below 4 once evened (an odd 15 is evened to 14, with a note)
    (torch.randn(1, 4, 3, 16), ValueError, "x_fine's spatial sizes"),
    # the dimensions said, not x_fine's shape: the user of `neuralop-mp diagnose` names no x_fine
    (torch.randn(1, 4, 16), ValueError, r"^MixedPrecisionSpectralConv is 2-D \(n_modes has 2 entries\) and the data "
                                        r"are 1-D \(inputs of shape \(1, 4, 16\)"),
    (torch.zeros(1, 4, 16, 16, dtype=torch.long), TypeError, "x_fine"),
])
def test_bad_inputs_are_refused(bad, error, match):
    with pytest.raises(error, match=match):
        measure(_dense_layer(), bad)


def test_bad_band_count_is_refused():
    with pytest.raises(ValueError, match="n_bands=0"):
        measure(_dense_layer(), torch.randn(1, 4, 8, 8), n_bands=0)


FLOAT16_CPU_WARNING = "half_dtype='float16' on a CPU without float16 matrix units"


@pytest.fixture
def float16_cpu_warning_due(monkeypatch):
    """The once-per-process float16-on-CPU warning not given yet in this process."""
    from neuralop_mp.layers import product_paths
    from neuralop_mp.layers.complex_half import native_half_matmul

    if native_half_matmul(torch.float16, "cpu"):
        pytest.skip("this CPU multiplies float16 natively: no float16 warning to silence")
    monkeypatch.setattr(product_paths, "_warned", set())


def test_measuring_float16_is_silent_and_a_users_float16_layer_still_warns(float16_cpu_warning_due):
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                              half_dtype="bfloat16")
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning of the measurement fails the test
        diagnosis = measure(model, x, n_bands=2)
    assert "mixed-float16" in diagnosis["layers"][0]["precision"]  # float16 was measured
    # the user's own float16 layer on this CPU: the warning was not spent by the measurement
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4), fno_block_precision="mixed", half_dtype="float16")
    with pytest.warns(UserWarning, match=FLOAT16_CPU_WARNING):
        layer(torch.randn(1, 2, 8, 8))


def test_only_the_float16_cpu_warning_is_silenced(float16_cpu_warning_due):
    from neuralop_mp.diagnose.measure import quiet_float16_cpu

    with pytest.warns(UserWarning, match="another warning"):
        with quiet_float16_cpu("float16"):
            warnings.warn("another warning", UserWarning)


def test_a_measurement_records_no_graph_and_warns_nothing_of_autograd():
    """The model-level forwards ran with autograd on: each recorded a graph, and the band errors
    warned "Converting a tensor with requires_grad=True to a scalar" at every diagnosis."""
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measure(model, x, n_bands=2)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    assert torch.is_grad_enabled()  # left as it was
