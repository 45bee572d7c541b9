"""``"auto"`` precision: full when float16 would overflow, half/mixed when the error is far below
the discretization error, and the decision survives a checkpoint."""
import torch

from neuralop_mp import MixedPrecisionFNO, get_precision, load_model
from neuralop_mp.diagnose.auto import calibrate_precision


def _model(half_dtype):
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                             half_dtype=half_dtype)


def _smooth(batch=4, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(n, 1 / n).abs().view(-1, 1) ** 2 + torch.fft.rfftfreq(n, 1 / n) ** 2
    spectrum = torch.randn(batch, 1, n, n // 2 + 1, dtype=torch.complex64, generator=g) * (1 + k) ** -1.5
    x = torch.fft.irfft2(spectrum, s=(n, n))
    return x / x.std()


def test_auto_picks_a_half_mode_when_the_error_is_far_below_discretization():
    model = _model("bfloat16")
    decision = calibrate_precision(model, [_smooth(seed=1), _smooth(seed=2)])
    assert decision["fno_block_precision"] == "mixed"  # on CPU "half" is "mixed"
    assert get_precision(model)[0] == "mixed"
    for layer in decision["per_layer"]:
        assert layer["precision_error"] < layer["bound"] / 5  # far below, not marginal
    assert model.precision_decision is decision


def test_auto_picks_full_when_inputs_overflow_float16():
    model = _model("float16")
    assert calibrate_precision(model, _smooth())["fno_block_precision"] == "mixed"
    model = _model("float16")
    decision = calibrate_precision(model, _smooth() * 1e6)
    assert decision["fno_block_precision"] == "full"
    assert get_precision(model)[0] == "full"


def test_auto_decision_round_trips_through_a_checkpoint(tmp_path):
    model = _model("bfloat16")
    decision = calibrate_precision(model, _smooth())
    model.save_checkpoint(tmp_path, "auto")
    loaded = load_model(tmp_path, "auto")
    assert get_precision(loaded) == get_precision(model) == (decision["fno_block_precision"], "bfloat16", None)
    x = _smooth(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_set_precision_auto_points_to_the_calibration():
    import pytest

    from neuralop_mp import MixedPrecisionSpectralConv, set_precision

    model = _model("bfloat16")
    with pytest.raises(ValueError, match="calibrate_precision"):
        set_precision(model, "auto")
    assert get_precision(model)[0] == "full"
    with pytest.raises(ValueError, match="'auto' for a single layer"):
        MixedPrecisionSpectralConv(2, 2, (4, 4), fno_block_precision="auto")


def test_auto_in_the_constructor_starts_in_full_until_calibrated():
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                              fno_block_precision="auto")
    assert get_precision(model)[0] == "full" and model.precision_decision == "pending"
