"""Mends of the session's final reread: run's report as strict JSON, the thread warning only for a
count typed now, and the patching probe run once per grid."""
import json
from types import SimpleNamespace

from neuralop_mp import cli
from neuralop_mp.configs import grid_checks
from neuralop_mp.runner.cli import _write_report


def test_runs_report_writes_inf_and_nan_as_strings(tmp_path):
    """json.dumps wrote Infinity/NaN, which a strict JSON parser refuses (eval --json was fixed alone)."""
    report = SimpleNamespace(to_dict=lambda: {"metrics": {"16_l2": float("inf"), "16_h1": float("nan"), "ok": 0.5}})
    path = tmp_path / "report.json"
    assert _write_report(report, path)
    strict = json.loads(path.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert strict["metrics"] == {"16_l2": "inf", "16_h1": "nan", "ok": 0.5}


def test_the_thread_warning_is_for_a_count_typed_now(monkeypatch, capsys):
    """'auto' (one per rank under torchrun, whatever the CPUs) and a count read back from the run
    (kept to go on bitwise) were warned about as if the user had asked for too many."""
    monkeypatch.setattr("neuralop_mp.run_setup.available_cpus", lambda: 2)
    monkeypatch.setattr("neuralop_mp.run_setup._local_ranks", lambda: 4)
    for given in (None, "auto", "AUTO"):
        cli._warn_threads(given, 1)
    assert capsys.readouterr().err == ""
    cli._warn_threads("3", 3)
    assert "--threads 3 on each of this node's 4 ranks (12 in all) is more than the 2 CPU(s)" in capsys.readouterr().err


def test_the_patching_probe_runs_once_per_grid(monkeypatch):
    grid_checks.patching_works.cache_clear()
    assert grid_checks.patching_works(32, 2, 0.0, False) is True  # 32 = 4 patches of 8 per axis
    assert grid_checks.patching_works.cache_info().misses == 1
    assert grid_checks.patching_works(32, 2, 0.0, False) is True
    info = grid_checks.patching_works.cache_info()
    assert (info.hits, info.misses) == (1, 1)  # the second call is the cache's: no second probe
