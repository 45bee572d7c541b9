"""``"auto"`` precision: full when float16 would overflow, half/mixed when the error is far below
the discretization error, and the decision survives a checkpoint."""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO, get_precision, load_model, precision, set_precision
from neuralop_mp.diagnose.auto import calibrate_precision
from neuralop_mp.layers.precision_switch import restore_precision
from neuralop_mp.training.tests.tiny import DictDataset


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


def test_set_precision_auto_without_data_says_how_to_pass_it():
    from neuralop_mp import MixedPrecisionSpectralConv, set_precision

    model = _model("bfloat16")
    with pytest.raises(ValueError, match=r"calibration= a batch of model inputs.*DataLoader"):
        set_precision(model, "auto")
    assert get_precision(model)[0] == "full"
    with pytest.raises(ValueError, match="'auto' for a single layer"):
        MixedPrecisionSpectralConv(2, 2, (4, 4), fno_block_precision="auto")


def test_set_precision_auto_calibrates_from_a_batch_as_calibrate_precision_does():
    x = _smooth(seed=4)
    reference = calibrate_precision(_model("bfloat16"), x)
    model = _model("bfloat16")
    snapshot = set_precision(model, "auto", calibration=x)
    assert get_precision(model)[0] == reference["fno_block_precision"] == "mixed"
    assert model.precision_decision["per_layer"] == reference["per_layer"]  # the same measurement, same input
    restore_precision(snapshot)
    assert get_precision(model)[0] == "full"


def test_set_precision_auto_from_a_loader_uses_its_first_batches_and_the_data_processor():
    x = torch.cat([_smooth(seed=5), _smooth(seed=6), _smooth(seed=7)])
    loader = torch.utils.data.DataLoader(DictDataset(x / 4, x), batch_size=4)  # unshuffled: batches 1-2 = x[:8]

    class TimesFour(torch.nn.Module):  # exact in floating point; stands in for a fitted input normalizer
        def preprocess(self, batch):
            return {"x": batch["x"] * 4, "y": batch["y"]}

    processor = TimesFour().train()
    model = _model("bfloat16")
    set_precision(model, "auto", calibration=loader, data_processor=processor, n_batches=2)
    reference = calibrate_precision(_model("bfloat16"), x[:8])
    assert model.precision_decision["per_layer"] == reference["per_layer"]
    assert processor.training  # left as it was


def test_set_precision_auto_keeps_full_when_float16_would_overflow():
    x = _smooth(seed=8) * 1e6
    model = _model("bfloat16")
    pairs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x), batch_size=4)
    set_precision(model, "auto", half_dtype="float16", calibration=pairs)  # half type set before measuring
    assert get_precision(model) == ("full", "float16", None)
    assert model.precision_decision["fno_block_precision"] == "full"
    with precision(model, "auto", stabilizer="tanh", calibration=x):  # tanh bounds the FFT input: no overflow
        assert get_precision(model) == ("mixed", "float16", "tanh")
    assert get_precision(model) == ("full", "float16", None)


@pytest.mark.parametrize("mode, kwargs, error, match", [
    ("auto", {"calibration": "data.pt"}, TypeError, "Invalid calibration of type str"),
    ("auto", {"calibration": _smooth(), "n_batches": 0}, ValueError, "Invalid n_batches=0"),
    ("auto", {"calibration": _smooth(), "data_processor": object()}, ValueError, "used with a DataLoader"),
    ("mixed", {"calibration": _smooth()}, ValueError, "only used with mode='auto'"),
    ("auto", {"calibration": torch.utils.data.DataLoader([], batch_size=1)}, ValueError, "gave no batch"),
])
def test_set_precision_auto_refuses_bad_calibration(mode, kwargs, error, match):
    model = _model("bfloat16")
    with pytest.raises(error, match=match):
        set_precision(model, mode, **kwargs)
    assert get_precision(model) == ("full", "bfloat16", None)


def test_auto_in_the_constructor_starts_in_full_until_calibrated():
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                              fno_block_precision="auto")
    assert get_precision(model)[0] == "full" and model.precision_decision == "pending"


def test_calibrating_from_a_shuffling_loader_leaves_the_training_data_order_alone():
    x = torch.cat([_smooth(seed=9), _smooth(seed=10)])
    loader = torch.utils.data.DataLoader(DictDataset(x, x), batch_size=2, shuffle=True)
    torch.manual_seed(3)
    expected = [batch["x"] for batch in loader]  # the order training would see
    model = _model("bfloat16")  # seeds torch itself
    torch.manual_seed(3)
    set_precision(model, "auto", calibration=loader)
    assert all(torch.equal(a, batch["x"]) for a, batch in zip(expected, loader))
