"""A spectral layer whose output is exactly zero (weights and bias zero) has no rounding error to
bound: its errors are 0 (not 0/0 = NaN), it does not force the model to "full", and the output says
why; a zero reference against a non-zero result is an infinite error, said as such."""
import math

import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.diagnose.auto import calibrate_precision
from neuralop_mp.diagnose.bands import band_edges, band_errors, relative_error
from neuralop_mp.diagnose.measure import measure
from neuralop_mp.diagnose.recommend import choose_layer, recommend
from neuralop_mp.diagnose.report import format_table


def _model_with_dead_layer(dead=1):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              half_dtype="bfloat16")
    conv = model.fno_blocks.convs[dead]
    with torch.no_grad():
        weight = conv.weight.to_tensor() if hasattr(conv.weight, "to_tensor") else conv.weight
        weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
    return model


def _inputs(seed=1, batch=2, n=16):
    return torch.randn(batch, 1, n, n, generator=torch.Generator().manual_seed(seed))


def test_errors_against_an_exactly_zero_reference_are_zero_or_infinite_never_nan():
    zero = torch.zeros(2, 3, 8, 8)
    other = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    edges = band_edges([8, 8], 3)
    assert relative_error(zero, zero) == 0.0
    assert relative_error(other, zero) == math.inf
    assert band_errors(zero - zero, zero, edges) == [0.0, 0.0, 0.0]
    assert all(v == math.inf for v in band_errors(other, zero, edges))  # every band holds energy of `other`
    # a non-zero reference: the float64 ratio, as before
    ref = other.double()
    expected = float((2 * ref - ref).norm() / ref.norm())
    assert math.isclose(relative_error(2 * other, other), expected, rel_tol=1e-12)


def test_a_dead_layer_is_exact_in_every_precision_and_does_not_force_full():
    diagnosis = measure(_model_with_dead_layer(), _inputs())
    dead, alive = diagnosis["layers"][1], diagnosis["layers"][0]
    assert dead["zero_output"] is True and alive["zero_output"] is False
    assert dead["discretization_error"] == 0.0
    assert all(v == 0.0 for v in dead["discretization_bands"])
    for variant, measured in dead["precision"].items():
        assert measured["error"] == 0.0, variant
        assert all(v == 0.0 for v in measured["bands"]), variant
    notes = [n for n in diagnosis["notes"] if "fno_blocks.convs.1" in n]
    assert len(notes) == 1 and "exactly zero" in notes[0]
    rec = recommend(diagnosis)
    choice = rec["layers"][1]
    assert (choice["mode"], choice["half_dtype"], choice["reason"]) == ("mixed", "bfloat16", None)
    # the model follows the live layer only (which accepts a 16-bit mode on these inputs)
    assert rec["model"]["fno_block_precision"] == rec["layers"][0]["mode"] == "mixed"
    table = format_table(diagnosis, rec)
    assert "nan" not in table and "exactly zero" in table


def test_auto_calibration_with_a_dead_layer_decides_as_without_it():
    model = _model_with_dead_layer()
    decision = calibrate_precision(model, _inputs(seed=2, batch=4))
    dead = decision["per_layer"][1]
    assert dead["mode"] == "mixed" and dead["precision_error"] == 0.0 and dead["reason"] is None
    assert decision["fno_block_precision"] == "mixed"


def test_a_zero_reference_with_a_non_zero_result_is_refused_as_infinite_in_words():
    entry = {"name": "conv", "zero_output": True, "discretization_error": 0.1,
             "overflow": {"float16_margin": 1e5},
             "precision": {"mixed-bfloat16": {"error": math.inf, "bands": []}}}
    choice = choose_layer(entry, tanh=False, device_type="cpu", half_dtypes=("bfloat16",))
    assert choice["mode"] == "full"
    assert "inf" in choice["reason"] and "exactly zero" in choice["reason"]
