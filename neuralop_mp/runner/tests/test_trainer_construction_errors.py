"""How ``neuralop-mp run`` tells a ``Trainer(...)`` that raised: a refusal of the plugin's own checks
"refused to be created" (one error line), an error raised inside upstream's constructor "raised TYPE
while being created" (its traceback kept, and pointed at where the script ended with it); and the
report's ``trainer_refusals`` say which it was, and whether the script caught it."""
import json
import textwrap

from neuralop_mp.runner.cli import run_script
from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.summary import end_warnings, trainer_failure

# a model through get_model, then upstream's Trainer given device=None, which its constructor fails on
# (`"cuda" in device`), not one of our checks; CATCH=1 in argv: the script catches it and goes on
UPSTREAM_ERROR_SCRIPT = textwrap.dedent(
    """
    import sys
    import neuralop
    from neuralop.training import Trainer
    config = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 8, "n_layers": 1}, "patching": {"levels": 0}, "opt": {}}
    model = neuralop.get_model(config)
    n_epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    try:
        Trainer(model=model, n_epochs=n_epochs, device=None)
    except TypeError:
        if sys.argv[1] != "catch":
            raise
    print("script done")
    """
)
UPSTREAM_MESSAGE = "argument of type 'NoneType' is not iterable"


def _script(tmp_path):
    path = tmp_path / "upstream_error.py"
    path.write_text(UPSTREAM_ERROR_SCRIPT)
    return path


def _summary(out):
    return out[out.index("neuralop-mp summary"):]


def test_an_error_inside_upstreams_constructor_is_said_as_raised_and_points_at_its_traceback(
        tmp_path, fake_parts, capsys):
    report_file = tmp_path / "report.json"
    result = run_script(_script(tmp_path), ["raise"], report_path=report_file, precision="mixed")
    captured = capsys.readouterr()
    assert result.exit_status == 1 and isinstance(result.error, TypeError)
    assert "Traceback (most recent call last)" in captured.err and "refused to be created" not in captured.err
    summary = _summary(captured.out)
    assert (f"WARNING: the script ended with exit status 1 after its neuralop.Trainer (Trainer) raised TypeError "
            f"while being created ({UPSTREAM_MESSAGE}; its traceback above shows where): no schedule or loss "
            "scaling was applied.") in summary, summary
    assert "refused" not in summary
    assert json.loads(report_file.read_text())["trainer_refusals"] == [
        {"class": "Trainer", "error": f"TypeError: {UPSTREAM_MESSAGE}", "refused_by_plugin": False,
         "ended_script": True}]


def test_an_upstream_error_the_script_caught_is_said_as_raised_without_a_traceback_to_point_at(
        tmp_path, fake_parts, capsys):
    result = run_script(_script(tmp_path), ["catch"], precision="mixed")
    captured = capsys.readouterr()
    assert result.exit_status == 0, result.error
    assert "script done" in captured.out and "Traceback" not in captured.err
    summary = _summary(captured.out)
    assert (f"WARNING: the script's neuralop.Trainer (Trainer) raised TypeError while being created "
            f"({UPSTREAM_MESSAGE}), and it created no other: no schedule or loss scaling was applied.") in summary
    assert "refused" not in summary and "traceback" not in summary
    assert result.report.trainer_refusals[0]["ended_script"] is False


def test_the_plugins_own_refusal_is_still_refused_to_be_created_and_recorded_as_ours(
        tmp_path, fake_parts, capsys):
    # the schedule never reaches its last phase in the script's 2 epochs: our check, one error line
    result = run_script(_script(tmp_path), ["raise", "2"], schedule="half@5,full")
    captured = capsys.readouterr()
    assert result.exit_status == 1 and isinstance(result.error, ValueError)
    assert "Traceback" not in captured.err
    assert captured.err.startswith("neuralop-mp run: error: upstream_error.py, line 10: neuralop.Trainer (Trainer) "
                                   "refused to be created: --mp.schedule 'half@5,full' does not fit")
    assert ("WARNING: the script ended with exit status 1 after its neuralop.Trainer (Trainer) refused to be created "
            "(ValueError: --mp.schedule 'half@5,full' does not fit") in _summary(captured.out)
    [entry] = result.report.trainer_refusals
    assert entry["refused_by_plugin"] is True and entry["ended_script"] is True


def _report(refusal):
    """The report of a script that ended with exit status 1 before its model, its trainer having raised."""
    report = ActivationReport({})
    report.trainer_refusals.append(refusal)
    report.record_end(1)
    return report


def test_each_kind_of_entry_is_worded_by_what_it_is():
    ours = {"class": "Trainer", "error": "ValueError: bad n_epochs", "refused_by_plugin": True,
            "ended_script": True}
    upstream = {"class": "IncrementalFNOTrainer", "error": "RuntimeError: CUDA out of memory",
                "refused_by_plugin": False, "ended_script": True}
    bare = {"class": "Trainer", "error": "KeyError", "refused_by_plugin": False, "ended_script": False}
    older = {"class": "Trainer", "error": "ValueError: bad"}  # a report's entry without the keys: as before
    assert trainer_failure(ours) == ("neuralop.Trainer (Trainer) refused to be created", "ValueError: bad n_epochs")
    assert trainer_failure(upstream) == ("neuralop.Trainer (IncrementalFNOTrainer) raised RuntimeError while being "
                                         "created", "CUDA out of memory; its traceback above shows where")
    assert trainer_failure(bare) == ("neuralop.Trainer (Trainer) raised KeyError while being created", "KeyError")
    assert trainer_failure(older) == ("neuralop.Trainer (Trainer) refused to be created", "ValueError: bad")
    assert end_warnings(_report(upstream)) == [
        "the script ended with exit status 1 before it built a model through neuralop.get_model (its "
        "neuralop.Trainer (IncrementalFNOTrainer) raised RuntimeError while being created: CUDA out of memory; its "
        "traceback above shows where): nothing ran with the plugin."]
