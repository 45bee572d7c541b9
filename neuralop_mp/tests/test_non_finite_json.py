"""Every JSON file the package writes holds an inf/NaN number as results.json does: the string
"inf", "-inf" or "nan" (``train_report.to_jsonable``), in strict JSON. The benchmarks wrote null."""
import json
import math

from neuralop_mp.bench.report import write_results
from neuralop_mp.diagnose.report import write_json
from neuralop_mp.runner.cli import _write_report
from neuralop_mp.train_report import to_jsonable

NUMBERS = {"up": math.inf, "down": -math.inf, "nan": math.nan, "finite": 0.5, "nested": [math.inf, {"x": math.nan}]}
WRITTEN = {"up": "inf", "down": "-inf", "nan": "nan", "finite": 0.5, "nested": ["inf", {"x": "nan"}]}


def _strict(path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which strict JSON has not")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_the_rule():
    assert to_jsonable(NUMBERS) == WRITTEN


def test_the_benchmarks_json(tmp_path, capsys):
    write_results("t", "body", {"numbers": NUMBERS}, out=tmp_path)
    assert _strict(tmp_path / "t.json")["numbers"] == WRITTEN


def test_the_diagnosis_json(tmp_path):
    write_json({"numbers": NUMBERS}, {"numbers": NUMBERS}, tmp_path / "diagnosis.json")
    assert _strict(tmp_path / "diagnosis.json") == {"diagnosis": {"numbers": WRITTEN},
                                                    "recommendation": {"numbers": WRITTEN}}


def test_the_run_report(tmp_path):
    class Report:
        def to_dict(self):
            return {"numbers": NUMBERS}

    assert _write_report(Report(), tmp_path / "report.json")
    assert _strict(tmp_path / "report.json") == {"numbers": WRITTEN}

