"""The training-memory measurement of the optimizer benchmark, on a tiny FNO."""
import pytest
import torch

from neuralop_mp.bench import optimizer as bench


@pytest.fixture
def tiny_size(monkeypatch):
    # hidden 8, 6 modes (spectral weights of 8*8*6*6 = 2304 entries each), 2 layers, 16^2, batch 2
    monkeypatch.setitem(bench.SIZES, "tiny", (8, 6, 2, 16, 2))
    return "tiny"


def _spectral_entries(size):
    model = bench.build_fno(size)
    return sum(p.numel() for p in model.parameters() if p.is_complex())


def test_complex32_storage_halves_spectral_params_and_grads_and_nothing_else(tiny_size):
    measured = {label: bench.training_step_memory(tiny_size, *setup) for label, setup in bench.TRAINING_SETUPS.items()}
    params, grads, state, activations, _ = measured["AdamW, full precision (baseline)"]
    model = bench.build_fno(tiny_size)
    assert params == grads == sum(p.numel() * p.element_size() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    assert state == 2 * params + 4 * n_tensors  # torch AdamW: two moments and a 0-d fp32 step each

    saved_by_storage = 4 * _spectral_entries(tiny_size)  # 8 -> 4 bytes an entry
    for states in ("fp32", "bf16"):
        wide = measured[f"TensorGRaD {states} states, mixed layer"]
        half = measured[f"TensorGRaD {states} states, mixed layer, complex32 spectral weights"]
        assert half[0] == wide[0] - saved_by_storage and half[1] == wide[1] - saved_by_storage
        assert half[2] == wide[2]  # the compressed state does not depend on the weights' storage
        assert half[3] == wide[3]  # weights are never saved for backward
        assert half[3] < activations  # the mixed layer saves 16-bit tensors
    adamw_half = measured["AdamW, mixed layer, complex32 spectral weights"]
    # moments of the full fp32 / complex64 size (not the halved weights'), plus a few scalars per tensor
    assert 2 * params <= adamw_half[2] < 2 * params + 16 * n_tensors
    totals = {label: sum(parts[:4]) for label, parts in measured.items() if not label.startswith("...")}
    best = totals["TensorGRaD bf16 states, mixed layer, complex32 spectral weights"]
    assert best == min(totals.values())
    # update in backward: no gradient left after backward, same state (the peak at this tiny
    # size is dominated by TensorGRaD's temporaries: tests/test_peak_memory.py shows freed gradients)
    ordinary = measured["TensorGRaD bf16 states, mixed layer, complex32 spectral weights"]
    in_backward = measured["... + update in backward"]
    recomputed = measured["... + update in backward + recompute fourier"]
    assert in_backward[1] == 0 and in_backward[2] == ordinary[2]
    assert recomputed[3] < in_backward[3]  # fewer bytes saved for backward


def test_total_memory_rows_are_relative_to_the_baseline(tiny_size, monkeypatch):
    monkeypatch.setattr(bench, "TRAINING_SETUPS", {
        "AdamW, full precision (baseline)": bench.TRAINING_SETUPS["AdamW, full precision (baseline)"],
        "half": ("mixed", True, "complex32", "tensorgrad_bf16"),
    })
    rows = bench.total_memory_rows(tiny_size)
    assert rows[0]["vs_baseline"] == 1.0 and rows[0]["peak_vs_baseline"] == 1.0
    assert rows[1]["peak_vs_baseline"] == pytest.approx(rows[1]["peak_MiB"] / rows[0]["peak_MiB"])
    assert rows[1]["peak_MiB"] >= rows[1]["params+grads_MiB"]  # the peak holds at least the weights
    assert rows[1]["vs_baseline"] == pytest.approx(rows[1]["total_MiB"] / rows[0]["total_MiB"])
    assert 0 < rows[1]["vs_baseline"] < 1
    torch.testing.assert_close(rows[1]["params+grads_MiB"] + rows[1]["state_MiB"] + rows[1]["activations_MiB"],
                               rows[1]["total_MiB"])


def test_peak_tensors_lists_what_is_alive_at_the_peak(tiny_size, capsys):
    """``--peak-tensors N`` prints the N largest tensors alive at the peak of the step and
    the rest in one line; their bytes and the parameters' add up to the peak (MB, to the
    0.1 printed). Describing them does not change the measured peak (beyond 1 KB)."""
    setup = bench.TRAINING_SETUPS["... + update in backward"]
    plain = bench.training_step_memory(tiny_size, *setup)
    capsys.readouterr()
    described = bench.training_step_memory(tiny_size, *setup, peak_tensors=3, label="... + update in backward")
    # the same step: cached index tensors made by an earlier step in this process may
    # move the peak by a few bytes
    assert described[:4] == plain[:4] and abs(described[4] - plain[4]) <= 1024
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tiny_size} ... + update in backward: at the peak, besides the parameters")
    listed = [float(line.split()[0]) for line in lines[1:4]]
    assert listed == sorted(listed, reverse=True) and len(lines) == 5
    rest = float(lines[4].split()[0])
    params = float(lines[0].split("(")[1].split()[0])
    assert sum(listed) + rest + params == pytest.approx(plain[4] / 2**20, abs=0.3)


def test_peak_tensors_must_not_be_negative(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--memory-only", "--peak-tensors", "-1"])
    assert "--peak-tensors must be >= 0, got -1" in capsys.readouterr().err


def test_quick_leaves_the_size_table_and_the_sizes_choices_as_they_were(tmp_path, capsys):
    """--quick added its tiny model to SIZES, so a later parse in the process took ``--sizes quick``."""
    import json

    before = dict(bench.SIZES)
    assert bench.main(["--quick", "--memory-only", "--setups", "0", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "optimizer.json").read_text())["sizes"] == {"quick": list(bench.QUICK_SIZE)}
    text = (tmp_path / "optimizer.md").read_text()
    assert "quick = (8, 6, 2, 16, 2)" in text
    assert "Optimizer state after 3 steps" not in text  # --memory-only measures none: no empty table
    assert bench.SIZES == before
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "quick", "--memory-only", "--out", str(tmp_path)])
    assert "invalid choice: 'quick'" in capsys.readouterr().err


@pytest.mark.parametrize("partial", [["--memory-only"], ["--sizes", "medium"], ["--setups", "0", "7"], ["--quick"]])
def test_update_docs_takes_the_full_run_only(partial, capsys, monkeypatch):
    """docs/benchmarks.md's optimizer section is the whole benchmark: a partial run (as docs/training.md's
    commands are) with --update-docs replaced it with its few rows. Refused before anything is measured."""
    monkeypatch.setattr(bench, "total_memory_rows", lambda *a, **k: pytest.fail("measured before the refusal"))
    with pytest.raises(SystemExit) as stopped:
        bench.main([*partial, "--update-docs"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--update-docs rewrites docs/benchmarks.md's whole optimizer section" in err and partial[0] in err


def test_the_accuracy_runs_refuse_a_blank_data_root_variable(monkeypatch):
    """NEURALOP_MP_DATA=" " made the benchmark write its data into a folder named " " (it read the
    variable itself): the one rule of the data commands (cache.default_data_root) refuses it."""
    from neuralop_mp.bench import optimizer
    from neuralop_mp.run_setup import RunSetupError

    monkeypatch.setenv("NEURALOP_MP_DATA", " ")
    with pytest.raises(RunSetupError, match=r"^the NEURALOP_MP_DATA environment variable is ' ' \(blank\)"):
        optimizer.darcy_accuracy([("torch_adamw", False)], epochs=1)
