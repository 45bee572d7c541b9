"""``"auto"`` refuses calibration inputs holding inf or NaN, naming how many entries and which samples.

Every precision's error was NaN on them and the rule decided "full" silently (reason "precision
error nan is not finite"), as if the 16-bit modes had been measured too inaccurate.
"""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO, get_precision, set_precision
from neuralop_mp.diagnose.auto import recheck_phase
from neuralop_mp.training.tests.tiny import DictDataset


def _model():
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                             half_dtype="bfloat16")


def _inputs(seed, batch=4, dtype=torch.float32):
    return torch.randn(batch, 1, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _with_bad_entries(x):
    x = x.clone()
    x[1, 0, 3, 4] = float("nan")
    x[3, 0, 0, 0] = float("inf")
    x[3, 0, 7, 2] = -float("inf")
    return x


EXPECTED = (r"^Invalid calibration inputs: 3 of their 256 entries are not finite \(inf or NaN in float32\), in 2 of "
            r"4 samples, at sample indices \[1, 3\]; allowed values: finite numbers\. 'auto' measures")


def test_set_precision_auto_refuses_non_finite_calibration_and_leaves_the_model_as_it_was():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=EXPECTED):
        set_precision(model, "auto", calibration=_with_bad_entries(_inputs(1)))
    assert get_precision(model)[0] == "full" and not isinstance(model.precision_decision, dict)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_a_float64_value_beyond_float32_range_counts_as_non_finite():
    x = _inputs(2, dtype=torch.float64)
    x[2, 0, 1, 1] = 1e300  # inf in float32, which the measurement computes in
    with pytest.raises(ValueError, match=r"^Invalid calibration inputs: 1 of their 256 entries .* at sample "
                                         r"indices \[2\];"):
        set_precision(_model(), "auto", calibration=x)


def test_a_loaders_non_finite_batch_is_refused_too():
    batches = torch.cat([_inputs(3), _with_bad_entries(_inputs(4))])  # the bad samples in the second batch
    loader = torch.utils.data.DataLoader(DictDataset(batches, batches), batch_size=4)
    with pytest.raises(ValueError, match=r"^Invalid calibration inputs: 3 of their 512 entries .* in 2 of 8 "
                                         r"samples, at sample indices \[5, 7\];"):
        set_precision(_model(), "auto", calibration=loader, n_batches=2)


def test_a_schedule_phases_recheck_refuses_them_too():
    with pytest.raises(ValueError, match=EXPECTED):
        recheck_phase(_model(), _with_bad_entries(_inputs(5)), "half")


def test_finite_calibration_still_decides():
    model = _model()
    set_precision(model, "auto", calibration=[_inputs(6), _inputs(7)])
    decision = model.precision_decision
    assert decision["fno_block_precision"] in ("mixed", "full")
    assert all(layer["precision_error"] == layer["precision_error"] for layer in decision["per_layer"])  # not NaN
