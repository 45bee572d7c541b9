"""What the benchmarks' tables say of themselves: the optimizer table's ratios are to the setup its
label calls the baseline, rows left out are said, schedule.json's ratios can be recomputed from its
own raw numbers, MiB is the one word for 2**20 bytes (in the docs' copies of the headers too), sizes
that could never fit and large data requests are said up front, and the GPU dry run's text and plot
are true of the dry run. The measurements are stubbed: only what the tables make of them is checked."""
import json
import random
import re
from pathlib import Path

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.bench.tests.test_bench_cli_inputs import _error_line, _refuse

DOCS = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"




def _headers(markdown):
    """The header line of each markdown table of ``markdown``."""
    lines = markdown.splitlines()
    return [line for line, below in zip(lines, lines[1:]) if line.startswith("| ") and below.startswith("|---")]


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---- bench optimizer: the baseline of the ratios, repeated setups, rows left out ----------------

@pytest.fixture
def stub_memory(monkeypatch, threads_restored):
    """``training_step_memory`` stubbed: fixed random byte counts per setup (seed 0); returns them."""
    from neuralop_mp.bench import optimizer

    rng = random.Random(0)
    parts = {label: tuple(rng.randrange(2**20, 2**28) for _ in range(5)) for label in optimizer.TRAINING_SETUPS}
    by_setup = {setup: parts[label] for label, setup in optimizer.TRAINING_SETUPS.items()}

    def training_step_memory(size, *setup, peak_tensors=0, label=""):
        return by_setup[setup]

    monkeypatch.setattr(optimizer, "training_step_memory", training_step_memory)
    monkeypatch.setattr(optimizer, "measure_optimizer", _refuse)
    return parts


def _state_row(size, name):
    """A stubbed row of the state table (its unit under the old name too: a key the table does
    not show, so that older code runs to its table)."""
    return dict(size=size, optimizer=name, params_MiB=1.0, state_MiB=2.0, params_MB=1.0, state_MB=2.0,
                first_step_s=0.1, step_s=0.1)


def _ratios(parts, label, base):
    total = sum(parts[label][:4])
    return total / sum(parts[base][:4]), parts[label][4] / parts[base][4]


def test_optimizer_ratios_are_to_adamw_full_precision_wherever_it_is_named(stub_memory, tmp_path):
    """``--setups 3 0``: the row labelled baseline is 1.0 and the others are relative to it (the
    first setup named was taken as the baseline: 1.838 on that row)."""
    from neuralop_mp.bench.optimizer import TRAINING_SETUPS

    labels = list(TRAINING_SETUPS)
    assert labels[0] == "AdamW, full precision (baseline)"
    assert cli.main(["bench", "optimizer", "--quick", "--memory-only", "--setups", "3", "0", "--out",
                     str(tmp_path)]) == 0
    data = json.loads((tmp_path / "optimizer.json").read_text())
    rows = data["training_memory"]
    assert [row["setup"] for row in rows] == [labels[3], labels[0]]  # the order given
    assert rows[1]["vs_baseline"] == 1.0 and rows[1]["peak_vs_baseline"] == 1.0
    expected = _ratios(stub_memory, labels[3], labels[0])
    assert (rows[0]["vs_baseline"], rows[0]["peak_vs_baseline"]) == pytest.approx(expected, rel=1e-12)
    assert rows[0]["total_MiB"] == pytest.approx(sum(stub_memory[labels[3]][:4]) / 2**20, rel=1e-12)
    assert data["baseline_setup"] == labels[0]
    assert "the first one given" not in (tmp_path / "optimizer.md").read_text()


def test_optimizer_without_the_baseline_says_which_row_the_ratios_are_to(stub_memory, tmp_path):
    from neuralop_mp.bench.optimizer import TRAINING_SETUPS

    labels = list(TRAINING_SETUPS)
    assert cli.main(["bench", "optimizer", "--quick", "--memory-only", "--setups", "5", "3", "--out",
                     str(tmp_path)]) == 0
    data = json.loads((tmp_path / "optimizer.json").read_text())
    assert data["baseline_setup"] == labels[5]
    rows = data["training_memory"]
    assert rows[0]["vs_baseline"] == 1.0
    assert (rows[1]["vs_baseline"], rows[1]["peak_vs_baseline"]) == pytest.approx(
        _ratios(stub_memory, labels[3], labels[5]), rel=1e-12)
    text = (tmp_path / "optimizer.md").read_text()
    assert f'ratios to setup 5, "{labels[5]}", the first one given: setup 0, "{labels[0]}", was not measured' in text


@pytest.mark.parametrize("setups, repeated", [(["0", "0"], 0), (["3", "7", "3"], 3)])
def test_optimizer_refuses_a_setup_named_twice(setups, repeated, capsys, tmp_path, monkeypatch, threads_restored):
    from neuralop_mp.bench import optimizer

    monkeypatch.setattr(optimizer, "training_step_memory", _refuse)
    monkeypatch.setattr(optimizer, "measure_optimizer", _refuse)
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", "optimizer", "--quick", "--memory-only", "--setups", *setups, "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    label = list(optimizer.TRAINING_SETUPS)[repeated]
    assert _error_line(capsys) == (f"neuralop-mp bench optimizer: error: argument --setups: setup {repeated} "
                                   f"({label!r}) is given twice; name each setup once")


def test_optimizer_state_table_says_the_row_it_leaves_out_at_large2d(stub_memory, monkeypatch, tmp_path):
    from neuralop_mp.bench import optimizer

    measured = []

    def measure_optimizer(size, name):
        measured.append((size, name))
        return _state_row(size, name)

    monkeypatch.setattr(optimizer, "measure_optimizer", measure_optimizer)
    monkeypatch.setattr(optimizer, "darcy_accuracy", lambda runs: [])
    assert cli.main(["bench", "optimizer", "--sizes", "small", "large2d", "--setups", "0", "--out",
                     str(tmp_path)]) == 0
    assert ("large2d", "upstream_galore") not in measured and ("small", "upstream_galore") in measured
    text = (tmp_path / "optimizer.md").read_text()
    [note] = [line for line in text.splitlines() if "left out" in line]
    assert note.startswith("`upstream_galore` at large2d is left out: tensorly's 10-iteration Tucker")
    data = json.loads((tmp_path / "optimizer.json").read_text())
    assert len(data["skipped_state_rows"]) == 1 and data["skipped_state_rows"][0].startswith("upstream_galore at large2d")


# ---- bench schedule: raw numbers in the JSON, no "-0.0%" ---------------------------------------

@pytest.fixture
def schedule_stubbed(monkeypatch):
    """``bench schedule`` with its data and training stubbed: per (run, seed) random metrics (seed 0),
    "mixed" a hair below "full" (a change that rounds to -0.0%); what the loader was handed."""
    import neuralop_mp.data
    from neuralop_mp.bench import schedule

    rng = random.Random(0)
    handed = []
    full = {seed: {k: rng.uniform(0.05, 0.3) for k in schedule.METRICS} for seed in range(3)}

    def load_darcy(**kwargs):
        handed.append(kwargs)
        return None, None, None

    def train_once(loaders, run_schedule, seed, n_epochs, lr):
        scale = 1 - 1e-5 if run_schedule == "mixed" else 1.0 if run_schedule is None else rng.uniform(0.9, 1.1)
        seconds = rng.uniform(0.5, 2.0)
        history = [{"epoch_time": seconds, "skipped_steps": seed, "saved_bytes": 3 * 2**20 + seed,
                    "precision": "full"}] * n_epochs
        return {k: v * scale for k, v in full[seed].items()}, seconds, history

    monkeypatch.setattr(neuralop_mp.data, "load_darcy", load_darcy)
    monkeypatch.setattr(schedule, "train_once", train_once)
    return handed


def test_schedule_json_recomputes_its_own_ratios_and_a_zero_change_has_no_sign(schedule_stubbed, tmp_path):
    import statistics

    assert cli.main(["bench", "schedule", "--runs", "full", "mixed", "paper", "--seeds", "0", "1", "2", "--epochs",
                     "2", "--lr", "0.002", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "schedule.json").read_text())
    assert data["lr"] == 0.002 and data["runs"] == ["full", "mixed", "paper"] and data["seeds"] == [0, 1, 2]
    raw = data["raw"]
    assert [entry["seed"] for entry in raw["paper"]] == [0, 1, 2]

    def mean(run, key):
        return statistics.fmean(entry[key] for entry in raw[run])

    for row in data["rows"]:
        run = row["run"]
        for key in ("16_l2", "32_h1"):
            values = [entry[key] for entry in raw[run]]
            assert row[key] == f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
        assert row["time vs full"] == f"{mean(run, 'seconds') / mean('full', 'seconds'):.2f}x"
        l2, h1 = (100 * (mean(run, key) / mean("full", key) - 1) for key in ("16_l2", "16_h1"))
        shown = [float(part.rstrip("%")) for part in row["L2/H1 vs full"].split(" / ")]
        assert shown == [pytest.approx(l2, abs=0.05), pytest.approx(h1, abs=0.05)]
        assert row["saved MiB (phase 1)"] == f"{mean(run, 'saved_bytes') / 2**20:.2f}"
    rows = {row["run"]: row for row in data["rows"]}
    assert rows["full"]["L2/H1 vs full"] == "0.0% / 0.0%"
    assert rows["mixed"]["L2/H1 vs full"] == "0.0% / 0.0%"  # -0.001%: was "-0.0%"
    assert "-0.0%" not in (tmp_path / "schedule.md").read_text()


def test_schedule_says_how_much_data_it_asks_for_before_loading_it(schedule_stubbed, tmp_path, capsys):
    assert cli.main(["bench", "schedule", "--quick", "--n-train", "100000000", "--out", str(tmp_path)]) == 0
    [handed] = schedule_stubbed
    assert handed["n_train"] == 100000000 and handed["progress"] is True  # the bar: drawn in a terminal
    err = capsys.readouterr().err
    assert ("neuralop-mp bench schedule: Darcy data: 100000000 training samples at 16x16, test 200 at 16x16 and "
            "200 at 32x32; read from the data root, or generated there first") in err


def test_scope_says_how_much_data_it_asks_for_and_records_its_settings(monkeypatch, tmp_path, capsys,
                                                                       threads_restored):
    import neuralop_mp.data
    from neuralop_mp.bench import autocast_scope

    handed = []
    monkeypatch.setattr(neuralop_mp.data, "load_navier_stokes", lambda **kwargs: handed.append(kwargs) or (None,) * 3)
    monkeypatch.setattr(autocast_scope, "train_once", lambda loaders, run, seed, *a: (0.1, 0.2, 1.0, 2**20))
    monkeypatch.setattr(autocast_scope, "step_times", lambda loaders, runs, repeats: {run: 1e-3 for run in runs})
    assert cli.main(["bench", "scope", "--quick", "--datasets", "navier_stokes", "--n-train", "7000000", "--n-test",
                     "9", "--lr", "0.003", "--out", str(tmp_path)]) == 0
    assert handed[0]["progress"] is True
    assert ("neuralop-mp bench scope: navier_stokes data: 7000000 training samples at 16x16, test 9 at 16x16 and "
            "9 at 32x32") in capsys.readouterr().err
    data = json.loads((tmp_path / "scope.json").read_text())
    assert (data["lr"], data["n_test"], data["resolution"]) == (0.003, 9, 16)
    assert data["rows"][0]["saved MiB"] == "1.00"


# ---- one unit word for 2**20 bytes: MiB, in the code's tables and in the docs' copies ------------

def test_memory_columns_say_mib_and_the_docs_copies_of_the_headers_match(stub_memory, schedule_stubbed, monkeypatch,
                                                                        tmp_path):
    from neuralop_mp.bench import autocast_scope, optimizer

    monkeypatch.setattr(optimizer, "measure_optimizer", _state_row)
    monkeypatch.setattr(optimizer, "darcy_accuracy", lambda runs: [])
    monkeypatch.setattr(autocast_scope, "train_once", lambda loaders, run, seed, *a: (0.1, 0.2, 1.0, 2**20))
    monkeypatch.setattr(autocast_scope, "step_times", lambda loaders, runs, repeats: {run: 1e-3 for run in runs})
    assert cli.main(["bench", "optimizer", "--sizes", "small", "--out", str(tmp_path / "o")]) == 0
    assert cli.main(["bench", "schedule", "--quick", "--out", str(tmp_path / "s")]) == 0
    assert cli.main(["bench", "scope", "--quick", "--out", str(tmp_path / "c")]) == 0
    docs = DOCS.read_text()
    for path in (tmp_path / "o" / "optimizer.md", tmp_path / "s" / "schedule.md", tmp_path / "c" / "scope.md"):
        text = path.read_text()
        assert not re.search(r"\bMB\b|_MB\b", text), path.name
        for header in _headers(text):
            assert "MiB" in header or "MB" not in header
            if "MiB" in header:  # a memory table: docs/benchmarks.md holds the same header
                assert header in docs, (path.name, header)


# ---- bench spectral: a size that could never fit --------------------------------------------------

def test_spectral_refuses_a_size_no_machine_memory_holds_in_one_line(monkeypatch, tmp_path, capsys):
    from neuralop_mp.bench import spectral

    monkeypatch.setattr(spectral, "measure_size", _refuse)
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", "spectral", "--sizes", "64x2", "100000x100000", "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    line = _error_line(capsys)
    assert line.startswith("neuralop-mp bench spectral: error: argument --sizes: 100000x100000 needs ")
    assert "(batch 100000 x 64 channels x 100000^2 float32), more than this machine's" in line


def test_oversized_compares_one_activation_with_the_memory_given():
    from neuralop_mp.bench.spectral import MODEL, oversized

    one = 2 * MODEL["hidden_channels"] * 64 * 64 * 4  # batch 2 at 64^2
    assert oversized([(64, 2)], MODEL, memory=one) is None
    assert oversized([(32, 1), (64, 2)], MODEL, memory=one - 1) == ((64, 2), one, one - 1)


# ---- bench gpu --dry-run: its text and plot are the dry run's ------------------------------------

def test_gpu_dry_run_text_names_its_own_odd_size_and_plots_what_it_measured(monkeypatch, tmp_path):
    from neuralop_mp.bench import gpu

    rng = random.Random(0)

    def measure(arch, hidden, res, variant, *args):  # what a dry run measures: no CUDA peak
        return {"model": arch, "hidden": hidden, "res": res, "variant": variant.name, "batch": 1,
                "step ms": rng.uniform(1, 5), "kept by forward MiB": rng.uniform(0.1, 2), "peak in": "backward"}

    monkeypatch.setattr(gpu, "measure", measure)
    assert gpu.main(["--dry-run", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "gpu.md").read_text()
    odd = [res for _, _, res in gpu.DRY_SIZES if res & (res - 1)]
    assert odd == [12]
    assert "12 is not a power of two" in text and "768" not in text
    assert "blank in this dry run: no CUDA" in text
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert all("peak MiB" not in row for row in rows)
    assert (tmp_path / "gpu_memory.png").stat().st_size > 0
    assert gpu.plot_memory(rows, tmp_path / "again.png") == "kept by forward MiB"


def test_gpu_plot_with_no_memory_figure_writes_no_file(tmp_path):
    from neuralop_mp.bench import gpu

    rows = [{"model": "FNO", "hidden": 8, "res": 16, "variant": "upstream full", "note": "crashes: ..."},
            {"model": "TFNO", "hidden": 8, "res": 16, "variant": "upstream full", "peak MiB": 3.0}]
    assert gpu.plot_memory(rows, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    rows.append({"model": "FNO", "hidden": 8, "res": 16, "variant": "ours", "peak MiB": 2.0,
                 "kept by forward MiB": 1.0})
    assert gpu.plot_memory(rows, tmp_path / "peak.png") == "peak MiB"  # a CUDA peak wins where there is one


# ---- bench allocator --quick: its help says how long ---------------------------------------------

def test_allocator_quick_help_says_about_a_minute_not_seconds(capsys):
    from neuralop_mp.bench import cpu_allocator

    with pytest.raises(SystemExit) as exit_status:
        cpu_allocator.main(["--help"])
    assert exit_status.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    options = help_text[help_text.index("options:"):]
    quick = options[options.index("--quick"):options.index("--steps")]
    assert "(seconds)" not in quick and "8: FNO and TFNO, 2 variants, 2 malloc settings" in quick
    assert "about a minute" in quick
