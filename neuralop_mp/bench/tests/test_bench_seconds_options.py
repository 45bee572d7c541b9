"""``bench spectral --slow-step-s`` and ``bench gpu --budget-s`` refuse a value that skips or
runs every row silently (NaN, a negative number; for the budget also 0 and inf), in argparse's one
line, before any work: they ran with every row skipped and exited 0."""
import pytest

from neuralop_mp import cli
from neuralop_mp.bench import gpu, spectral


class WorkStarted(AssertionError):
    """The benchmark's work was reached where the option should have been refused first."""


def _refuse(*args, **kwargs):
    raise WorkStarted("the benchmark started its work")


def _refused(capsys, args, command):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", command, *args])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if "error:" in line]
    return line


@pytest.mark.parametrize("value", ["nan", "-1", "-inf"])
def test_spectral_refuses_a_slow_step_that_is_nan_or_negative(capsys, monkeypatch, tmp_path, value):
    monkeypatch.setattr(spectral, "run", _refuse)
    assert _refused(capsys, [f"--slow-step-s={value}", "--out", str(tmp_path)], "spectral") == (
        f"neuralop-mp bench spectral: error: argument --slow-step-s: invalid value {value!r}; allowed values: "
        "seconds >= 0, or inf (never)")


@pytest.mark.parametrize("value, expected", [("0", 0.0), ("2.5", 2.5), ("inf", float("inf"))])
def test_spectral_takes_seconds_and_its_default_never(monkeypatch, tmp_path, value, expected):
    handed = {}
    monkeypatch.setattr(spectral, "run", lambda **kwargs: handed.update(kwargs) or _refuse())
    with pytest.raises(WorkStarted):
        cli.main(["bench", "spectral", "--slow-step-s", value, "--out", str(tmp_path)])
    assert handed["slow_step_s"] == expected


@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_gpu_refuses_a_budget_that_is_not_finite_and_non_negative(capsys, monkeypatch, tmp_path, value):
    monkeypatch.setattr(gpu, "run", _refuse)
    assert _refused(capsys, ["--dry-run", "--budget-s", value, "--out", str(tmp_path)], "gpu") == (
        f"neuralop-mp bench gpu: error: argument --budget-s: invalid value {value!r}; allowed values: a finite "
        "number of seconds >= 0")


def test_gpu_takes_a_positive_budget(monkeypatch, tmp_path):
    handed = {}
    monkeypatch.setattr(gpu, "run", lambda **kwargs: handed.update(kwargs) or _refuse())
    with pytest.raises(WorkStarted):
        cli.main(["bench", "gpu", "--dry-run", "--budget-s", "30", "--out", str(tmp_path)])
    assert handed["budget_s"] == 30.0
