"""The recommendation rule on measurements with known numbers, and on a real measurement."""
import numpy as np
import pytest
import torch

from neuralop_mp import MixedPrecisionSpectralConv
from neuralop_mp.diagnose import measure, recommend
from neuralop_mp.diagnose.recommend import choose_layer


def _entry(errors, disc=1e-2, margin=1e4):
    return {"name": "conv", "discretization_error": disc, "overflow": {"float16_margin": margin},
            "precision": {k: {"error": v, "bands": []} for k, v in errors.items()}}


ERRORS = {"half-float16": 1e-4, "half-bfloat16": 1e-3, "mixed-float16": 1e-4, "mixed-bfloat16": 1e-3,
          "half-float16+tanh": 1e-4, "mixed-float16+tanh": 1e-4}


def test_cheapest_precision_below_the_fraction_of_discretization_error():
    assert choose_layer(_entry(ERRORS), tanh=False, device_type="cuda")["mode"] == "half"
    assert choose_layer(_entry(ERRORS), tanh=False, device_type="cuda")["half_dtype"] == "float16"
    # on CPU "half" is "mixed"; bfloat16 first
    cpu = choose_layer(_entry(ERRORS), tanh=False, device_type="cpu")
    assert (cpu["mode"], cpu["half_dtype"]) == ("mixed", "bfloat16")
    # bfloat16 above 0.5 x 1e-3: float16 is the cheapest acceptable one
    cpu = choose_layer(_entry(ERRORS, disc=1e-3), tanh=False, device_type="cpu")
    assert (cpu["mode"], cpu["half_dtype"]) == ("mixed", "float16")
    # nothing below 0.5 x 1e-4: full
    assert choose_layer(_entry(ERRORS, disc=1e-4), tanh=False, device_type="cpu")["mode"] == "full"
    # the fraction is the knob
    assert choose_layer(_entry(ERRORS, disc=1e-4), tanh=False, device_type="cpu", fraction=2)["mode"] == "mixed"


def test_float16_without_tanh_needs_an_overflow_margin():
    entry = _entry({"half-float16": 1e-5, "mixed-float16": 1e-5, "half-float16+tanh": 1e-5}, margin=3.0)
    assert choose_layer(entry, tanh=False, device_type="cuda")["mode"] == "full"
    assert choose_layer(entry, tanh=True, device_type="cuda")["mode"] == "half"
    assert choose_layer(entry, tanh=False, device_type="cuda", overflow_margin=2.0)["mode"] == "half"


def test_a_layer_that_stays_full_records_why_and_no_error():
    accepted = choose_layer(_entry(ERRORS), tanh=False, device_type="cpu")
    assert accepted["reason"] is None and accepted["precision_error"] == 1e-3
    # one candidate (CPU, float16 only): its reason as it is
    overflow = choose_layer(_entry(ERRORS, margin=3.2), tanh=False, device_type="cpu", half_dtypes=("float16",))
    assert overflow == {"mode": "full", "half_dtype": None, "precision_error": None, "bound": 5e-3,
                        "reason": "float16 overflow margin 3.2 < 16"}
    too_large = choose_layer(_entry({"mixed-bfloat16": 4e-2}, disc=2e-2), tanh=False, device_type="cpu",
                             half_dtypes=("bfloat16",))
    assert (too_large["precision_error"], too_large["reason"]) == (None, "precision error 4.0e-02 > bound 1.0e-02")
    not_finite = choose_layer(_entry({"mixed-bfloat16": float("inf")}), tanh=False, device_type="cpu",
                              half_dtypes=("bfloat16",))
    assert not_finite["reason"] == "precision error inf is not finite"
    # several candidates refused for different reasons: each named
    both = choose_layer(_entry(ERRORS, disc=1e-4, margin=3.2), tanh=False, device_type="cpu")
    assert both["reason"] == ("mixed-bfloat16: precision error 1.0e-03 > bound 5.0e-05; "
                              "mixed-float16: float16 overflow margin 3.2 < 16")
    # refused for one reason: said once
    same = choose_layer(_entry(ERRORS, margin=3.2), tanh=False, device_type="cuda", half_dtypes=("float16",))
    assert same["reason"] == "float16 overflow margin 3.2 < 16"
    unbounded = choose_layer(_entry(ERRORS, disc=None), tanh=False, device_type="cpu")
    assert unbounded["reason"] == "no bound: no discretization error was measured"


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "0.5", True])
def test_bad_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="fraction"):
        choose_layer(_entry(ERRORS), tanh=False, device_type="cpu", fraction=bad)



@pytest.mark.parametrize("bad", [np.bool_(True), torch.tensor(True), float("inf"), np.float32(-1), torch.tensor([0.5])])
def test_bad_numpy_or_tensor_settings_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="Invalid overflow_margin="):
        choose_layer(_entry(ERRORS), tanh=False, device_type="cpu", overflow_margin=bad)


def test_numpy_and_0d_tensor_settings_are_taken_as_floats():
    entry = _entry(ERRORS, disc=1e-4)
    for fraction in (np.float32(2), torch.tensor(2.0)):
        choice = choose_layer(entry, tanh=False, device_type="cpu", fraction=fraction)
        # the bound is a plain number (results.json holds it), not a numpy or tensor number
        assert choice["mode"] == "mixed" and type(choice["bound"]) is float and choice["bound"] == 2e-4


def test_real_measurement_overflowing_float16_forces_a_safe_choice():
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(4, 4, (4, 4))
    x = torch.randn(2, 4, 16, 16)
    safe = recommend(measure(layer, x, n_bands=2), device_type="cuda", fraction=100)
    assert safe["model"]["fno_block_precision"] == "half" and safe["model"]["half_dtype"] == "float16"
    scaled = recommend(measure(layer, x * 1e5, n_bands=2), device_type="cuda", fraction=100)
    # float16 would overflow (inf in the output): bfloat16 instead
    assert scaled["model"]["half_dtype"] == "bfloat16"
    assert scaled["layers"][0]["half_dtype"] == "bfloat16"
