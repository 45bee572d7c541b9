"""What the reports say about small and non-finite numbers: test errors with 4 significant digits
(4.2e-05, not 0.0000), a NaN error as nan (n/a is an error not evaluated), one label for the skipped
steps in ``train``'s table and ``run``'s summary (the count holds inf/NaN losses too: not "non-finite
gradients")."""
import pytest

from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.summary import format_summary as run_summary
from neuralop_mp.tests.test_cli import fake_result
from neuralop_mp.train_report import SKIPPED_STEPS, format_eval_summary, format_summary, metric_rows, summary_rows

from .test_report_table import cells, fits


def _result(metrics, resolutions=(16, 32)):
    return {**fake_result(), "metrics": metrics, "test_resolutions": list(resolutions)}


def test_errors_below_1e_4_keep_four_significant_digits_and_differ():
    rows = dict(metric_rows(_result({"16_l2": 4.2e-05, "16_h1": 9.1e-05, "32_l2": 1e-4, "32_h1": 0.026141})))
    assert rows["test rel. L2 @ 16 (train)"] == "4.2e-05"
    assert rows["test H1 @ 16 (train)"] == "9.1e-05"  # .4f printed 0.0001, as for 1e-4
    assert rows["test rel. L2 @ 32 (2x)"] == "0.0001"
    assert rows["test H1 @ 32 (2x)"] == "0.02614"


def test_a_nan_error_prints_nan_and_an_error_not_evaluated_n_a():
    rows = dict(metric_rows(_result({"16_l2": float("inf"), "16_h1": float("nan"), "32_l2": 0.5})))
    assert rows["test rel. L2 @ 16 (train)"] == "inf"
    assert rows["test H1 @ 16 (train)"] == "nan"
    assert rows["test H1 @ 32 (2x)"] == "n/a"  # no 32_h1: not evaluated


@pytest.mark.parametrize("summary", [format_summary, format_eval_summary])
def test_tables_of_errors_of_every_size_stay_aligned(summary):
    result = _result({"16_l2": 4.2e-05, "16_h1": float("nan"), "32_l2": 123.456789, "32_h1": 0.1234567})
    result["n_test_samples"] = {16: 4, 32: 4}
    result["precision"].update(mode="mixed", autocast=False, stabilizer=None, ran_as="mixed")
    table = summary({**result, "checkpoint": "run/model_state_dict.pt"})
    assert fits(table)
    values = dict(cells(table))
    assert [values[f"test {q} @ {r}"] for r in ("16 (train)", "32 (2x)") for q in ("rel. L2", "H1")] == \
        ["4.2e-05", "nan", "123.5", "0.1235"]


def test_the_best_model_row_keeps_a_small_error_readable():
    result = {**fake_result(), "best": {"metric": "16_l2", "value": 4.2e-05, "epoch": 2},
              "files": {"best_model": "runs/x/best_model_state_dict.pt"}}
    assert dict(summary_rows(result))["best model"] == "epoch 2, 16_l2 4.2e-05"


def test_run_and_train_label_the_skipped_steps_alike_not_as_gradients_only():
    assert SKIPPED_STEPS == "skipped steps (inf/nan)"
    assert dict(summary_rows(fake_result()))[SKIPPED_STEPS] == "0"
    report = ActivationReport({})
    report.trainers.append({"class": "Trainer", "bases": ["MixedPrecisionTrainer"], "schedule": "mixed",
                            "history": [{"epoch": 0, "skipped_steps": 2}, {"epoch": 1, "skipped_steps": 1}]})
    lines = run_summary(report).splitlines()
    assert f"{SKIPPED_STEPS}: 3" in lines, lines
    assert not [line for line in lines if "non-finite gradients" in line]
