"""``python -m neuralop_mp.data.benchmark`` writes its results to ``--out`` and leaves
docs/benchmarks.md alone unless ``--update-docs`` is given (it rewrote the checkout's docs,
or a site-packages/docs of an installed package, on every run, ``--help`` included)."""
import json

import pytest

from neuralop_mp.bench import report
from neuralop_mp.data import benchmark


@pytest.fixture
def measured(monkeypatch):
    """The measurements replaced by one row each (their numbers are the solvers' tests' business);
    the docs writer recording what it was asked to write."""
    monkeypatch.setattr(benchmark, "generation_times", lambda root: [dict(dataset="darcy", seconds=1.5)])
    monkeypatch.setattr(benchmark, "darcy_orders", lambda: [dict(check="darcy", value=1e-3, order=2.0)])
    monkeypatch.setattr(benchmark, "ns_checks", lambda: [])
    monkeypatch.setattr(benchmark, "burgers_checks", lambda: [])
    monkeypatch.setattr(benchmark, "darcy_label_errors", lambda root: [])
    sections = []
    monkeypatch.setattr(report, "update_section", lambda name, body, path=None: sections.append((name, path)))
    return sections


def test_results_go_to_out_and_the_docs_are_left_alone(measured, tmp_path):
    assert benchmark.main(["--out", str(tmp_path)]) == 0
    assert measured == []
    data = json.loads((tmp_path / "data-generation.json").read_text())
    assert data["generation"] == [{"dataset": "darcy", "seconds": 1.5}]
    assert "| darcy | 1.5 |" in (tmp_path / "data-generation.md").read_text()


def test_update_docs_rewrites_the_data_generation_section(measured, tmp_path):
    assert benchmark.main(["--out", str(tmp_path), "--update-docs"]) == 0
    assert measured == [("data-generation", report.DEFAULT_DOC)]


def test_help_measures_nothing(measured, capsys):
    with pytest.raises(SystemExit) as stopped:
        benchmark.main(["--help"])
    assert stopped.value.code == 0 and "--update-docs" in capsys.readouterr().out and measured == []
