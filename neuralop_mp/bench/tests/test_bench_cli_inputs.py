"""Benchmark options: bad values fail when parsed, in one line naming the option; options given
beside ``--quick`` win over its settings (schedule, spectral, scope, optimizer, auto);
``bench optimizer --threads``; the "why full" column of ``bench auto``. The benchmarks' work is
replaced by stubs: only what they are handed is checked."""
import pytest
import torch

from neuralop_mp import cli


class WorkStarted(AssertionError):
    """A stub was reached where the options should have been refused first."""


def _refuse(*args, **kwargs):
    raise WorkStarted("the benchmark started its work")


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if "error:" in line]
    return line


def _assert_refused_when_parsed(command, args, option, value, allowed, capsys, monkeypatch, tmp_path):
    """``neuralop-mp bench COMMAND ARGS`` exits 2 with argparse's one line for ``option``, before
    any data is loaded."""
    import neuralop_mp.data

    for loader in ("load_darcy", "load_navier_stokes"):
        monkeypatch.setattr(neuralop_mp.data, loader, _refuse)
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", command, *args, "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    assert _error_line(capsys) == (f"neuralop-mp bench {command}: error: argument {option}: invalid value "
                                   f"{value!r}; allowed values: {allowed}")


# ---- bench schedule ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, allowed", [
    ("--epochs", "0", "positive integers"), ("--epochs", "-2", "positive integers"),
    ("--n-train", "0", "positive integers"), ("--lr", "-1", "positive numbers"), ("--lr", "0", "positive numbers"),
])
@pytest.mark.parametrize("quick", [[], ["--quick"]])
def test_schedule_refuses_bad_counts_and_rates_when_parsed(option, value, allowed, quick, capsys, monkeypatch,
                                                           tmp_path):
    _assert_refused_when_parsed("schedule", [*quick, option, value], option, value, allowed, capsys, monkeypatch,
                                tmp_path)


@pytest.fixture
def schedule_calls(monkeypatch):
    """``bench schedule`` with its data and training stubbed: what each was handed."""
    import neuralop_mp.data
    from neuralop_mp.bench import schedule

    calls = {"load": [], "train": []}

    def load_darcy(**kwargs):
        calls["load"].append(kwargs)
        return None, None, None

    def train_once(loaders, run_schedule, seed, n_epochs, lr):
        calls["train"].append((run_schedule, seed, n_epochs, lr))
        history = [{"epoch_time": 1.0, "skipped_steps": 0, "saved_bytes": 0, "precision": "full"}] * n_epochs
        return {k: 0.1 for k in schedule.METRICS}, 1.0, history

    monkeypatch.setattr(neuralop_mp.data, "load_darcy", load_darcy)
    monkeypatch.setattr(schedule, "train_once", train_once)
    return calls


def test_schedule_options_given_beside_quick_win_over_its_settings(schedule_calls, tmp_path, capsys):
    from neuralop_mp.bench.schedule import RUNS

    assert cli.main(["bench", "schedule", "--quick", "--epochs", "3", "--seeds", "5", "6", "--n-train", "40",
                     "--runs", "paper", "--lr", "0.01", "--out", str(tmp_path)]) == 0
    assert [call["n_train"] for call in schedule_calls["load"]] == [40]
    assert schedule_calls["train"] == [(RUNS["paper"], 5, 3, 0.01), (RUNS["paper"], 6, 3, 0.01)]
    # what is not given keeps --quick's setting: 1 epoch, seed 0, 64 samples, runs full and mixed
    schedule_calls["load"].clear(), schedule_calls["train"].clear()
    assert cli.main(["bench", "schedule", "--quick", "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert [call["n_train"] for call in schedule_calls["load"]] == [64]
    assert schedule_calls["train"] == [(None, 0, 2, 5e-3), ("mixed", 0, 2, 5e-3)]
    # and without --quick, the full run's
    schedule_calls["load"].clear(), schedule_calls["train"].clear()
    assert cli.main(["bench", "schedule", "--runs", "full", "--out", str(tmp_path)]) == 0
    assert [call["n_train"] for call in schedule_calls["load"]] == [500]
    assert schedule_calls["train"] == [(None, 0, 10, 5e-3), (None, 1, 10, 5e-3)]


# ---- bench allocator --------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--steps", "--res", "--batch"])
@pytest.mark.parametrize("value", ["-1", "0"])
def test_allocator_refuses_counts_below_one_when_parsed(option, value, capsys, monkeypatch, tmp_path):
    # --res 0 ran at 256^2 and --steps 0 took 3 (read as "not given"); --steps -1 crashed in statistics.median
    from neuralop_mp.bench import cpu_allocator

    monkeypatch.setattr(cpu_allocator, "run", _refuse)
    _assert_refused_when_parsed("allocator", ["--quick", option, value], option, value, "positive integers",
                                capsys, monkeypatch, tmp_path)


# ---- bench spectral ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_spectral_refuses_rounds_below_one_when_parsed(value, capsys, monkeypatch, tmp_path):
    from neuralop_mp.bench import spectral

    monkeypatch.setattr(spectral, "measure_size", _refuse)
    _assert_refused_when_parsed("spectral", ["--quick", "--rounds", value], "--rounds", value, "positive integers",
                                capsys, monkeypatch, tmp_path)


def test_spectral_run_refuses_zero_rounds_and_quick_keeps_given_rounds(monkeypatch):
    from neuralop_mp.bench import spectral

    monkeypatch.setattr(spectral, "measure_size", _refuse)
    with pytest.raises(ValueError, match="Invalid rounds=0; allowed values: integers >= 1"):
        spectral.run(quick=True, rounds=0)  # it used to run the default rounds
    handed = []
    monkeypatch.setattr(spectral, "measure_size", lambda arch, res, batch, variants, rounds, *a, **k: handed.append(
        (arch, res, batch, rounds)) or [])
    monkeypatch.setattr(spectral, "render", lambda data: "")
    spectral.run(quick=True, rounds=2, sizes=[(16, 1)], models=("FNO",))
    assert handed == [("FNO", 16, 1, 2)]


@pytest.mark.parametrize("value", ["64x0", "0x2", "16x-2", "64x2x1", "64", "x"])
def test_spectral_refuses_sizes_with_a_part_below_one_when_parsed(value, capsys, monkeypatch, tmp_path):
    from neuralop_mp.bench import spectral

    monkeypatch.setattr(spectral, "measure_size", _refuse)
    _assert_refused_when_parsed("spectral", ["--sizes", "32x2", value], "--sizes", value,
                                "RESxBATCH, two positive integers such as 64x2", capsys, monkeypatch, tmp_path)


def test_spectral_sizes_reach_the_run_as_pairs(monkeypatch, tmp_path):
    from neuralop_mp.bench import spectral

    handed = []
    monkeypatch.setattr(spectral, "run", lambda **kwargs: handed.append(kwargs["sizes"]) or ("", {}))
    assert cli.main(["bench", "spectral", "--quick", "--sizes", "16X1", "32x2", "--out", str(tmp_path)]) == 0
    assert handed == [[(16, 1), (32, 2)]]


# ---- bench scope ------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, allowed", [
    ("--epochs", "0", "positive integers"), ("--epochs", "-1", "positive integers"),
    ("--n-train", "0", "positive integers"), ("--n-test", "-3", "positive integers"),
    ("--resolution", "0", "positive integers"), ("--lr", "0", "positive numbers"), ("--lr", "-0.5", "positive numbers"),
])
@pytest.mark.parametrize("quick", [[], ["--quick"]])
def test_scope_refuses_bad_counts_and_rates_when_parsed(option, value, allowed, quick, capsys, monkeypatch, tmp_path,
                                                        threads_restored):
    _assert_refused_when_parsed("scope", [*quick, option, value], option, value, allowed, capsys, monkeypatch,
                                tmp_path)


@pytest.fixture
def scope_calls(monkeypatch, threads_restored):
    """``bench scope`` with its data, training and step timing stubbed: what each was handed."""
    import neuralop_mp.data
    from neuralop_mp.bench import autocast_scope

    calls = {"load": [], "train": []}

    def loader(dataset):
        def load(**kwargs):
            calls["load"].append((dataset, kwargs["n_train"], kwargs["n_tests"], kwargs["train_resolution"]))
            return None, None, None
        return load

    def train_once(loaders, run, seed, n_epochs, lr, resolution):
        calls["train"].append((run, seed, n_epochs, lr))
        return 0.1, 0.2, 1.0, 0

    monkeypatch.setattr(neuralop_mp.data, "load_darcy", loader("darcy"))
    monkeypatch.setattr(neuralop_mp.data, "load_navier_stokes", loader("navier_stokes"))
    monkeypatch.setattr(autocast_scope, "train_once", train_once)
    monkeypatch.setattr(autocast_scope, "step_times", lambda loaders, runs, repeats: {run: 1e-3 for run in runs})
    return calls


def test_scope_options_given_beside_quick_win_over_its_settings(scope_calls, tmp_path):
    assert cli.main(["bench", "scope", "--quick", "--epochs", "3", "--seeds", "5", "6", "--n-train", "40",
                     "--n-test", "8", "--datasets", "navier_stokes", "--runs", "full", "--lr", "0.01",
                     "--resolution", "8", "--out", str(tmp_path)]) == 0
    assert scope_calls["load"] == [("navier_stokes", 40, (8, 8), 8)]
    assert scope_calls["train"] == [("full", 5, 3, 0.01), ("full", 6, 3, 0.01)]
    # what is not given keeps --quick's setting: 1 epoch, seed 0, 32 + 16 samples, Darcy only
    scope_calls["load"].clear(), scope_calls["train"].clear()
    assert cli.main(["bench", "scope", "--quick", "--epochs", "2", "--runs", "full", "--out", str(tmp_path)]) == 0
    assert scope_calls["load"] == [("darcy", 32, (16, 16), 16)]
    assert scope_calls["train"] == [("full", 0, 2, 5e-3)]
    # and without --quick, the full run's
    scope_calls["load"].clear(), scope_calls["train"].clear()
    assert cli.main(["bench", "scope", "--runs", "full", "--out", str(tmp_path)]) == 0
    assert scope_calls["load"] == [("darcy", 200, (100, 100), 16), ("navier_stokes", 200, (100, 100), 16)]
    assert scope_calls["train"] == [("full", seed, 4, 5e-3) for seed in (0, 1, 2)] * 2


# ---- bench optimizer --------------------------------------------------------------------------

@pytest.fixture
def optimizer_calls(monkeypatch):
    """``bench optimizer --memory-only`` with its measurement stubbed: the size and thread count of each."""
    from neuralop_mp.bench import optimizer

    calls = []

    def total_memory_rows(size, setups, peak_tensors):
        calls.append((size, torch.get_num_threads()))
        return []

    monkeypatch.setattr(optimizer, "total_memory_rows", total_memory_rows)
    monkeypatch.setattr(optimizer, "measure_optimizer", _refuse)
    return calls


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_optimizer_takes_threads_as_the_other_benchmarks_do(optimizer_calls, threads_restored, monkeypatch,
                                                            tmp_path, capsys):
    import neuralop_mp.run_setup as run_setup

    monkeypatch.setattr(run_setup, "default_threads", lambda: 3)  # the CPUs other processes leave idle
    for given, used in ([], 1), (["--threads", "2"], 2), (["--threads", "auto"], 3):
        optimizer_calls.clear()
        assert cli.main(["bench", "optimizer", "--quick", "--memory-only", *given, "--out", str(tmp_path)]) == 0
        assert optimizer_calls == [("quick", used)]  # default 1, as documented
        assert torch.get_num_threads() == threads_restored  # the caller's own again afterwards
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", "optimizer", "--quick", "--threads", "0", "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    assert _error_line(capsys) == ("neuralop-mp bench optimizer: error: argument --threads: Invalid --threads '0'; "
                                   "allowed: auto or an integer >= 1.")


def test_optimizer_sizes_given_beside_quick_win_over_its_tiny_model(optimizer_calls, threads_restored, tmp_path):
    assert cli.main(["bench", "optimizer", "--quick", "--memory-only", "--sizes", "small", "--out",
                     str(tmp_path)]) == 0
    assert [size for size, _ in optimizer_calls] == ["small"]


def test_optimizer_setups_measure_the_rows_they_name(threads_restored, tmp_path):
    """``--setups N ...`` (the memory figures' command in docs/benchmarks.md) measures those rows alone,
    for real: it used to fail with a NameError."""
    import json

    from neuralop_mp.bench.optimizer import TRAINING_SETUPS

    assert cli.main(["bench", "optimizer", "--quick", "--memory-only", "--setups", "0", "7", "--threads", "1",
                     "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "optimizer.json").read_text())["training_memory"]
    labels = list(TRAINING_SETUPS)
    assert [row["setup"] for row in rows] == [labels[0], labels[7]]
    assert all(row["total_MiB"] > 0 for row in rows)


# ---- bench auto -------------------------------------------------------------------------------

def _auto_row(dataset, recipe, seed):
    layers = [{"name": "fno_blocks.convs.0", "mode": "full", "half_dtype": None, "precision_error": None,
               "bound": 0.05, "reason": "float16 overflow margin 3.2 < 16"},
              {"name": "fno_blocks.convs.1", "mode": "mixed", "half_dtype": "bfloat16", "precision_error": 2.5e-3,
               "bound": 0.05, "reason": None}]
    return {"dataset": dataset, "recipe": recipe, "seed": seed, "train_resolution": 16, "test_resolutions": [16, 32],
            "l2": 0.1, "l2_2x": 0.2, "seconds_per_epoch": 1.0, "phases": "full x2", "skipped_steps": 0,
            "auto_decision": "full", "auto_checks": [{"when": "before training", "mode": "full", "layers": layers}]}


@pytest.fixture
def auto_calls(monkeypatch, threads_restored):
    from neuralop_mp.bench import auto_precision

    calls = []

    def train_once(dataset, recipe, seed, overrides, threads=None):
        calls.append((dataset, recipe, seed))
        return _auto_row(dataset, recipe, seed)

    monkeypatch.setattr(auto_precision, "train_once", train_once)
    return calls


def test_auto_decision_table_says_why_a_layer_stays_full(auto_calls, tmp_path, capsys):
    assert cli.main(["bench", "auto", "--quick", "--datasets", "darcy", "--recipes", "auto", "--out",
                     str(tmp_path)]) == 0
    lines = (tmp_path / "auto.md").read_text().splitlines()
    table = [line for line in lines if "fno_blocks.convs." in line]
    header = [line for line in lines if line.startswith("| dataset | recipe | seed | checked")]
    assert header and header[0].rstrip(" |").endswith("| why full")
    assert table[0].rstrip().endswith("| float16 overflow margin 3.2 < 16 |")  # the layer kept full, and why
    assert table[1].rstrip().endswith("| 5.00e-02 |  |")  # an accepted one: nothing to say
    assert "float16 overflow margin 3.2 < 16" in capsys.readouterr().out


def test_auto_seeds_given_beside_quick_win(auto_calls, tmp_path):
    assert cli.main(["bench", "auto", "--quick", "--seeds", "3", "4", "--datasets", "darcy", "--recipes", "full",
                     "--out", str(tmp_path)]) == 0
    assert auto_calls == [("darcy", "full", 3), ("darcy", "full", 4)]  # --quick used to keep the first only
    auto_calls.clear()
    assert cli.main(["bench", "auto", "--quick", "--datasets", "darcy", "--recipes", "full", "--out",
                     str(tmp_path)]) == 0
    assert auto_calls == [("darcy", "full", 0)]
