"""How an "auto" decision is reported: the summary rows name the layer with the least
headroom and its own bound, or the reason a layer stays full; older records still read."""
import re

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO, set_precision
from neuralop_mp.train_report import summary_rows


def _layer(index, mode, error, bound, reason=None):
    return {**_old_layer(index, mode, error, bound), "reason": reason}


def _old_layer(index, mode, error, bound):
    """A layer of a record written before layers carried a ``reason``."""
    return {"name": f"fno_blocks.convs.{index}", "mode": mode, "half_dtype": None if mode == "full" else "bfloat16",
            "precision_error": error, "bound": bound}


def _result(auto_decision=None, auto_rechecks=None):
    """The least of a run's result that :func:`summary_rows` reads."""
    phase = {"mode": "mixed", "autocast": False, "stabilizer": None, "start_epoch": 0, "end_epoch": 2}
    return {"metrics": {}, "train_resolution": 16, "test_resolutions": [], "seconds_per_epoch": 0.1,
            "skipped_steps": 0, "wall_time_s": 1.0,
            "memory": {"n_params": 1, "params_bytes": 4, "optimizer_state_bytes": 8},
            "precision": {"final_mode": "mixed", "half_dtype": "bfloat16", "phases": [phase], "schedule": None,
                          "auto_decision": auto_decision, "auto_rechecks": auto_rechecks}}


def _rows(result):
    return dict(summary_rows(result))


# layer 0 has the larger error, layer 1 the smaller bound: neither is the least headroom
# alone; layer 2 is (bound / error = 12.5, against 56 and 46)
HEADROOM = [_layer(0, "mixed", 2.5e-3, 1.39e-1), _layer(1, "mixed", 1.0e-3, 4.6e-2),
            _layer(2, "mixed", 2.0e-3, 2.5e-2)]


def test_the_auto_decision_row_names_the_least_headroom_layer_with_its_own_bound():
    decision = {"fno_block_precision": "mixed", "per_layer": HEADROOM, "discretization_error": 4.8e-3}
    assert _rows(_result(decision))["precision (auto decision)"] == \
        "mixed (layer 2: precision error 2.0e-03 <= bound 2.5e-02)"


def test_a_layer_whose_choice_is_not_the_models_mode_is_named_with_its_choice():
    """On CUDA a layer may accept "half" while another holds the model at "mixed": its recorded error
    is its half error, which the row says, rather than passing it for the mixed one."""
    layers = [_layer(0, "half", 4.9e-3, 5.0e-3), _layer(1, "mixed", 1.0e-4, 5.0e-3)]
    decision = {"fno_block_precision": "mixed", "per_layer": layers, "discretization_error": 1.0e-2}
    assert _rows(_result(decision))["precision (auto decision)"] == \
        "mixed (layer 0 (half): precision error 4.9e-03 <= bound 5.0e-03)"


def test_each_recheck_row_names_its_own_least_headroom_layer():
    checks = [{"epoch": 0, "phase_mode": "half", "fno_block_precision": "half", "per_layer": HEADROOM},
              {"epoch": 1, "phase_mode": "mixed", "fno_block_precision": "mixed",
               "per_layer": [_layer(0, "mixed", 1.0e-3, 1.0e-1), _layer(1, "mixed", 4.0e-4, 1.0e-2)]}]
    rows = _rows(_result(auto_rechecks=checks))
    # the half phase runs half, the layers chose mixed (on this CPU, the same numbers): their choice is named
    assert rows["precision (auto, epoch 0)"] == \
        "phase half runs half (layer 2 (mixed): precision error 2.0e-03 <= bound 2.5e-02)"
    assert rows["precision (auto, epoch 1)"] == "phase mixed runs mixed (layer 1: precision error 4.0e-04 <= bound 1.0e-02)"


def test_a_full_decision_records_and_reports_why_each_layer_stays_full():
    # the example of docs/diagnose.md: float16 without tanh would overflow
    model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              half_dtype="float16")
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    set_precision(model, "auto", calibration=x * 1e6)
    decision = model.precision_decision
    assert decision["fno_block_precision"] == "full"
    margins = []
    for layer in decision["per_layer"]:
        # no 16-bit error was accepted: none is recorded (it used to read 0.0)
        assert layer["mode"] == "full" and layer["precision_error"] is None
        match = re.fullmatch(r"float16 overflow margin (\S+) < 16", layer["reason"])
        assert match, layer["reason"]
        margins.append(float(match.group(1)))
    assert all(0 < m < 16 for m in margins)
    first = decision["per_layer"][0]["reason"]
    assert _rows(_result(decision))["precision (auto decision)"] == f"full (layer 0: {first}; layer 1 also full)"


def test_a_full_layer_of_a_recheck_is_named_with_its_reason():
    check = {"epoch": 0, "phase_mode": "half", "fno_block_precision": "full",
             "per_layer": [_layer(0, "mixed", 1e-3, 1e-1),
                           _layer(1, "full", None, 1e-2, reason="precision error 4.0e-02 > bound 1.0e-02")]}
    assert _rows(_result(auto_rechecks=[check]))["precision (auto, epoch 0)"] == \
        "phase half runs full (layer 1: precision error 4.0e-02 > bound 1.0e-02)"


def test_a_full_decision_without_a_full_layer_says_why():
    layers = [_layer(0, "half", 1e-3, 1e-1), _layer(1, "mixed", 1e-3, 1e-1)]
    decision = {"fno_block_precision": "full", "per_layer": layers}
    assert _rows(_result(decision))["precision (auto decision)"] == "full (no 16-bit mode that every layer accepts)"
    ranks = {"fno_block_precision": "full", "per_layer": layers, "per_rank": ["mixed", "full"]}
    assert _rows(_result(ranks))["precision (auto decision)"] == "full (the most precise of the ranks' mixed, full)"


@pytest.mark.parametrize("decision, text", [
    # before layers carried a reason, a "full" layer recorded a precision error of 0.0
    ({"fno_block_precision": "full", "discretization_error": 1e-2,
      "per_layer": [_old_layer(0, "full", 0.0, 5e-3), _old_layer(1, "full", 0.0, 5e-3)]},
     "full (no 16-bit mode that every layer accepts)"),
    ({"fno_block_precision": "mixed", "discretization_error": 1e-2,
      "per_layer": [_old_layer(0, "mixed", 1e-3, 5e-3), _old_layer(1, "mixed", 2e-3, 5e-3)]},
     "mixed (layer 1: precision error 2.0e-03 <= bound 5.0e-03)"),
])
def test_records_of_older_runs_still_read(decision, text):
    assert _rows(_result(decision))["precision (auto decision)"] == text
