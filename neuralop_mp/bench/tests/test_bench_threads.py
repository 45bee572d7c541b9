"""``neuralop-mp bench NAME --threads``: read as ``neuralop-mp train`` reads its own."""
import argparse
import importlib

import pytest

from neuralop_mp import cli
from neuralop_mp.bench.cli import BENCHMARKS

WITH_THREADS = ["spectral", "schedule", "scope", "auto"]


class Parsed(Exception):
    """Raised in place of the benchmark run, carrying the parsed options."""


@pytest.fixture
def parse_only(monkeypatch):
    """``main(argv)`` of a benchmark up to its parsed options, without running it."""
    parse_args = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, *args, **kwargs):
        raise Parsed(parse_args(self, *args, **kwargs))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after_parsing)

    def parse(name, argv):
        with pytest.raises(Parsed) as parsed:
            importlib.import_module(BENCHMARKS[name][0]).main(argv)
        return parsed.value.args[0]

    return parse


@pytest.mark.parametrize("name", WITH_THREADS)
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_threads_are_refused_in_one_line(name, value, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_status:  # argparse's usage error, before any work
        cli.main(["bench", name, "--quick", "--threads", value, "--out", str(tmp_path / "out")])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if "error:" in line]
    assert message == [f"neuralop-mp bench {name}: error: argument --threads: Invalid --threads {value!r}; "
                       "allowed: auto or an integer >= 1."]


@pytest.mark.parametrize("name", WITH_THREADS)
def test_threads_auto_is_trains_auto_and_a_number_is_kept(name, parse_only, monkeypatch):
    import neuralop_mp.run_setup as run_setup

    monkeypatch.setattr(run_setup, "default_threads", lambda: 3)  # the CPUs that other processes leave idle
    assert parse_only(name, ["--threads", "auto"]).threads == 3
    assert parse_only(name, ["--threads", "AUTO"]).threads == 3
    assert parse_only(name, ["--threads", "2"]).threads == 2


@pytest.mark.parametrize("name, default", [("spectral", None), ("schedule", None), ("scope", 1), ("auto", 1)])
def test_threads_defaults_are_unchanged(name, default, parse_only):
    assert parse_only(name, []).threads == default
