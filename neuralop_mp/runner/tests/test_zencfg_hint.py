"""The summary's line naming zencfg >= 1.0 as the cause of a script's failure (``zencfg_cause``).

Only the error upstream's configs meet under zencfg 1.0 (a required field missing, raised
through zencfg's own code), and only with zencfg >= 1.0 installed, gets the line. The real
script under the real zencfg 1.0: integration_tests/test_zencfg_1_run_hint.py.
"""
import re
from pathlib import Path

import pytest
import zencfg

from neuralop_mp.runner import summary
from neuralop_mp.runner.cli import run_script

REPO_ROOT = Path(__file__).resolve().parents[3]
MESSAGE = ("1 validation error for FNO_Small2d\narch\n  Field required [type=missing, input_value={}, "
           "input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/missing")


def _raised_in(filename, message=MESSAGE):
    """The ValueError ``message`` raised by code whose frame is in ``filename``."""
    namespace = {}
    exec(compile(f"def fail():\n    raise ValueError({message!r})\n", str(filename), "exec"), namespace)
    try:
        namespace["fail"]()
    except ValueError as error:
        return error


ZENCFG_FILE = Path(zencfg.__file__).resolve().parent / "config.py"


@pytest.fixture
def zencfg_1(monkeypatch):
    """What the summary sees of zencfg 1.0: pydantic configs and its version."""
    monkeypatch.setattr(summary, "PYDANTIC_CONFIGS", True, raising=False)
    monkeypatch.setattr(zencfg, "__version__", "1.0.0")


def test_a_missing_field_raised_by_zencfg_1_names_the_cause_and_the_fix(zencfg_1):
    assert summary.zencfg_cause(_raised_in(ZENCFG_FILE)) == (
        "neuraloperator 2.0.0's configs need zencfg<1.0 (installed: 1.0.0, which requires their field "
        "FNO_Small2d.arch: it has no default): pip install 'zencfg>=0.7,<1.0'")


def test_other_errors_get_no_line(zencfg_1, tmp_path):
    assert summary.zencfg_cause(None) is None
    # the same text raised by the script's own code, not through zencfg
    assert summary.zencfg_cause(_raised_in(tmp_path / "train.py")) is None
    # another validation error through zencfg (a value of the wrong type): no missing field
    wrong_type = MESSAGE.replace("Field required [type=missing", "Input should be a valid integer [type=int_parsing")
    assert summary.zencfg_cause(_raised_in(ZENCFG_FILE, wrong_type)) is None


def test_under_zencfg_0_7_the_same_error_gets_no_line(monkeypatch):
    monkeypatch.setattr(summary, "PYDANTIC_CONFIGS", False, raising=False)
    assert summary.zencfg_cause(_raised_in(ZENCFG_FILE)) is None


def test_the_fix_installs_what_pyproject_requires():
    (requirement,) = re.findall(r'^\s*"(zencfg[^"]*)"', (REPO_ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert summary.ZENCFG_REQUIREMENT == requirement


def _script(tmp_path, body):
    path = tmp_path / "train.py"
    path.write_text(f"from pathlib import Path\nimport zencfg\n"
                    f"error_at = Path(zencfg.__file__).resolve().parent / 'config.py'\n{body}")
    return path


# the script's error raised by code whose frame is in zencfg's package, as its config's would be
RAISE_THROUGH_ZENCFG = f"exec(compile({f'raise ValueError({MESSAGE!r})'!r}, str(error_at), 'exec'))\n"


def test_the_run_ends_with_the_line_only_when_the_script_failed_before_it_built_a_model(
        zencfg_1, fake_parts, tiny_config, tmp_path, capsys):
    result = run_script(_script(tmp_path, RAISE_THROUGH_ZENCFG))
    assert result.exit_status == 1
    captured = capsys.readouterr()
    assert "1 validation error for FNO_Small2d" in captured.err  # the script's traceback, kept
    warnings = [line for line in captured.out.splitlines() if line.startswith("WARNING: ")]
    assert warnings[0].startswith("WARNING: the script ended with exit status 1 before it built a model")
    assert warnings[-1].startswith("WARNING: neuraloperator 2.0.0's configs need zencfg<1.0 (installed: 1.0.0")
    assert result.report.notes[-1] == warnings[-1][len("WARNING: "):]
    # the same error after the script built a model: its config loaded, zencfg is not the cause
    body = f"import neuralop\nmodel = neuralop.get_model({tiny_config!r})\n" + RAISE_THROUGH_ZENCFG
    result = run_script(_script(tmp_path, body))
    assert result.exit_status == 1 and result.report.models
    assert "zencfg<1.0" not in capsys.readouterr().out and not result.report.notes
