"""The summary of a script stopped after it built its model, without a Trainer: it says how the script
ended and that it had created none, neither that the script never creates a Trainer (a warning for a
script that finished) nor that it stopped "before it created" one (which says it would have)."""
import textwrap

import pytest

from neuralop_mp.runner.cli import main
from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.summary import end_warnings

# builds its model through neuralop.get_model, then stops as argv[1] says, before any Trainer
SCRIPT = textwrap.dedent(
    """
    import sys
    import neuralop
    config = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 4, "n_layers": 1}, "patching": {"levels": 0}}
    model = neuralop.get_model(config)
    print("model built")
    if sys.argv[1] == "interrupt":  # what Ctrl-C raises in the script
        raise KeyboardInterrupt
    sys.exit(int(sys.argv[1]))
    """
)
FINISHED = "WARNING: the script never created neuralop.Trainer: no schedule or loss scaling was applied."


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "model_then_stop.py"
    path.write_text(SCRIPT)
    return path


def _summary(script, end, capsys):
    status = main([str(script), "--mp.precision", "mixed", "--", end])
    out = capsys.readouterr().out
    assert "model built" in out
    return status, out[out.index("neuralop-mp summary"):]


def test_ctrl_c_after_the_model_is_said_with_no_trainer_created(script, fake_parts, capsys):
    status, summary = _summary(script, "interrupt", capsys)
    assert status == 130
    assert "script interrupted (Ctrl-C), exit status 130" in summary
    assert ("WARNING: the script was interrupted, and had not created neuralop.Trainer: no schedule or loss "
            "scaling was applied.") in summary, summary
    assert "never created" not in summary and "before it created" not in summary


def test_a_failure_after_the_model_is_said_with_no_trainer_created(script, fake_parts, capsys):
    status, summary = _summary(script, "3", capsys)
    assert status == 3
    assert ("WARNING: the script ended with exit status 3, and had not created neuralop.Trainer: no schedule or "
            "loss scaling was applied.") in summary, summary
    assert "never created" not in summary and "before it created" not in summary


def test_a_script_that_finished_without_a_trainer_is_still_told_it_never_created_one(script, fake_parts, capsys):
    status, summary = _summary(script, "0", capsys)
    assert status == 0 and FINISHED in summary, summary


@pytest.mark.parametrize("status, expected", [
    (143, "the script was interrupted, and had not created neuralop.Trainer"),  # SIGTERM: the runner's interrupt
    (None, "the script never created neuralop.Trainer"),  # an activation without a script: no end recorded
])
def test_end_warnings_name_how_the_script_ended(status, expected):
    report = ActivationReport({"precision": "mixed"})
    report.models.append({"model_class": "FNO", "layer_types": ["MixedPrecisionSpectralConv"]})
    if status is not None:
        report.record_end(status, interrupted=True)
    [warning] = end_warnings(report)
    assert warning == f"{expected}: no schedule or loss scaling was applied."
