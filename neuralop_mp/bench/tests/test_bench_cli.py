"""``neuralop-mp bench NAME --quick --out DIR``: result files written, docs/ left alone."""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.bench import gpu
from neuralop_mp.bench.report import DEFAULT_DOC

FILES = {"spectral": ["spectral.md", "spectral.json"], "optimizer": ["optimizer.md", "optimizer.json"],
         "schedule": ["schedule.md", "schedule.json"], "scope": ["scope.md", "scope.json"],
         "allocator": ["allocator.md", "allocator.json"],
         # gpu_rows.jsonl: each row written as it is measured (kept when a campaign is killed)
         "gpu": ["gpu.md", "gpu.json", "gpu_memory.png", "gpu_rows.jsonl"]}


@pytest.mark.filterwarnings("ignore::UserWarning")
# the allocator benchmark measures each setting in Python interpreters of its own, and the GPU campaign's
# dry run takes seconds: the end-to-end tier
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in ("allocator", "gpu") else name
                                  for name in FILES])
def test_quick_run_writes_its_files_and_leaves_docs_untouched(name, tmp_path):
    docs_before = DEFAULT_DOC.read_bytes()
    out = tmp_path / "results"
    assert cli.main(["bench", name, "--quick", "--out", str(out)]) == 0
    assert DEFAULT_DOC.read_bytes() == docs_before
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES[name])
    data = json.loads((out / f"{name}.json").read_text())
    assert data["benchmark"] == name and data["device"]
    text = (out / f"{name}.md").read_text()
    assert text.startswith("## ") and "| " in text  # a titled section with a table
    if name == "spectral":
        rows = {r["variant"]: r for r in data["rows"] if r["model"] == "FNO"}
        assert rows["upstream full"]["time / up. full"] == 1.0 and rows["upstream full"]["cpu / up. full"] == 1.0
        assert all(r["cpu s"] > 0 for r in rows.values() if "step s" in r)  # process CPU time on CPU
        assert rows["ours mixed bfloat16"]["saved MiB"] < rows["upstream full"]["saved MiB"]
        assert rows["ours mixed bfloat16"]["product path"].startswith("mixed: mode-batched matmul")
        # on a CPU the default autocast scope keeps the pointwise layers in float32 (same saved
        # bytes as without autocast); scope "model" autocasts them and saves half as much
        auto, whole = rows["ours mixed bfloat16 + autocast"], rows["ours mixed bfloat16 + autocast, scope model"]
        assert auto["saved MiB"] == rows["ours mixed bfloat16"]["saved MiB"] > whole["saved MiB"]
        # recomputing whole blocks keeps only each block's input: less than the ordinary forward
        assert rows["ours mixed bfloat16 + recompute block"]["saved MiB"] < rows["ours mixed bfloat16"]["saved MiB"]
        # the floor row times the model without its spectral layers, which save nothing for backward
        floor = rows["upstream, spectral layers as x * 0 (floor)"]
        assert "note" not in floor and floor["step s"] > 0
        assert floor["saved MiB"] < min(rows["upstream full"]["saved MiB"], rows["ours full"]["saved MiB"])
        # the run keeps freed memory by default (glibc faked in-process by the repository conftest)
        assert data["cpu_allocator"].startswith("freed memory kept") and "CPU memory: freed memory kept" in text
    if name == "optimizer":
        assert {r["size"] for r in data["optimizer_state"]} == {"quick"}
    if name == "allocator":
        import platform

        glibc = platform.libc_ver()[0] == "glibc"  # the rows come from fresh processes: the real malloc
        rows = data["rows"]
        # every (model, variant) once per malloc mode, each in its own process
        assert sorted((r["model"], r["variant"], r["asked"], r["malloc"]) for r in rows) == sorted(
            (m, v, mode, mode if glibc else "system")
            for m in ("FNO", "TFNO") for v in ("upstream full", "ours mixed bfloat16 + autocast")
            for mode in ("system", "keep"))
        assert all(r["step s"] > 0 and r["peak RSS MiB"] > 0 and r["faults / step"] >= 0 for r in rows)
        kept = [r for r in rows if "time keep / system" in r]
        assert len(kept) == (4 if glibc else 0) and all(r["RSS keep / system"] > 0 for r in kept)
    if name == "scope":
        rows = {r["run"]: r for r in data["rows"]}
        # scope "spectral" under autocast computes exactly what "mixed" without autocast does
        assert rows["mixed+autocast spectral"]["L2 @ N"] == rows["mixed"]["L2 @ N"]
        assert float(rows["mixed+autocast"]["saved MiB"]) < float(rows["mixed+autocast fno_blocks"]["saved MiB"]) \
            < float(rows["full"]["saved MiB"])


def test_spectral_floor_replaces_every_spectral_layer_and_still_trains():
    import torch
    from neuralop.layers.spectral_convolution import SpectralConv

    from neuralop_mp.bench import spectral

    from neuralop_mp.models.pointwise_tiles import pointwise_tile_points

    floors = [v for v in spectral.VARIANTS if v.spectral_floor]
    assert [v.name for v in floors] == [spectral.FLOOR, spectral.OURS_FLOOR]
    for floor in floors:
        model = spectral.build("TFNO", floor, spectral.QUICK_MODEL, torch.device("cpu"))
        assert not any(isinstance(m, SpectralConv) for m in model.modules())
        assert sum(isinstance(m, spectral.SpectralFloor) for m in model.modules()) == spectral.QUICK_MODEL["n_layers"]
        # ours runs its pointwise work in tiles, as the plugin's models do; upstream's does not
        assert (pointwise_tile_points(model) is not None) == floor.ours
        x = torch.randn(2, 1, 16, 16)
        model(x).square().mean().backward()
        # the lifting still gets a gradient through the skips around the replaced layers
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lifting.parameters())


def test_gpu_dry_run_walks_every_variant_at_every_size(gpu_dry_run):
    """The dry run's rows take a GPU's paths on CPU (forced device choices, cuFFT's float16
    transforms stood in for), and each row records the ones it took."""
    out = gpu_dry_run()  # `--dry-run`, exit code 0 (conftest.py: one run for the session)
    rows = json.loads((out / "gpu.json").read_text())["rows"]
    assert len(rows) == len(gpu.DRY_SIZES) * len(gpu.VARIANTS)
    variants = {v.name: v for v in gpu.VARIANTS}
    power_of_two = {res: res & (res - 1) == 0 for _, _, res in gpu.DRY_SIZES}
    assert sorted(power_of_two.values()) == [False, True]  # both sides of cuFFT's half-precision rule
    for row in rows:
        variant = variants[row["variant"]]
        # as on a GPU: upstream's 16-bit FFTs (its mixed and half modes, and its fp16 autocast)
        # crash where the size is not a power of two (768^2 there), and run elsewhere
        upstream_16_bit = not variant.ours and (variant.mode != "full" or variant.autocast == torch.float16)
        crashes = upstream_16_bit and not power_of_two[row["res"]]
        assert ("note" in row) == crashes, row
        if crashes:
            assert "power-of-2 sizes only" in row["note"], row
            continue
        assert row["step ms"] > 0
        # one more step split in phases: what its forward keeps for backward, and where its peak is
        assert row["kept by forward MiB"] > 0 and row["peak in"] in ("forward", "backward", "optimizer step"), row
        if not variant.ours:
            assert "product path" not in row
            continue
        # the GPU's product: TFNO's weight rebuilt dense (the CPU's pairwise plan otherwise),
        # multiplied in the 16-bit type (float32 on CPU); cuFFT's float16 FFTs for "half" fp16
        # at powers of two (_float16_kept_spectrum)
        kernel = "mode-batched matmul" if row["model"] == "FNO" else "rebuilt dense weight + mode-batched matmul"
        fft = "float16 (cuFFT)" if (variant.mode == "half" and variant.half_dtype == "float16"
                                    and power_of_two[row["res"]]) else "float32"
        assert row["product path"] == f"{kernel} in {variant.half_dtype}, FFT in {fft}", row
        # whole-grid pointwise work with the lifting and projection recomputed, autocast on the whole model
        assert "lifting and projection recompute" in row["pointwise"], row
        assert row["autocast scope"] == "model", row
    assert (out / "gpu_memory.png").stat().st_size > 0


def test_the_gpu_campaign_fails_on_our_crashes_and_failed_cuda_tests_not_on_upstreams(tmp_path, monkeypatch, capsys):
    """Upstream's 16-bit modes crashing is what the table reports; one of our rows or upstream
    full crashing, or CUDA tests failing, fails the run (exit 1), its results written all the same."""
    row = dict(model="FNO", hidden=64, res=768)
    ok = [dict(row, variant="upstream full", **{"step ms": 1.0}),
          dict(row, variant="upstream mixed + tanh", note="crashes: RuntimeError: cuFFT only supports powers of two",
               failed="run")]
    assert gpu.unexpected_failures(ok, "exit code 0: 112 passed in 20s") == []
    assert gpu.unexpected_failures(ok, "skipped (dry run / quick)") == []
    ours = dict(row, variant="ours mixed bf16 + autocast", note="crashes: RuntimeError: boom", failed="run")
    split = dict(row, variant="upstream full", note="phase split failed: RuntimeError: boom", failed="phase split")
    assert len(gpu.unexpected_failures(ok + [ours, split], "exit code 1: 2 failed, 110 passed")) == 3
    # through main: our spectral layer raising in the dry run
    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(MixedPrecisionSpectralConv, "_forward", broken)
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--out", str(tmp_path)]) == 1
    assert "ours mixed bf16 + autocast: crashes: RuntimeError: boom" in capsys.readouterr().err
    assert (tmp_path / "gpu.json").exists()


def test_a_campaigns_table_from_another_machine_is_applied_to_the_docs_with_their_notes_kept(tmp_path, monkeypatch,
                                                                                              gpu_dry_run):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- BEGIN gpu -->\n<!-- NOTES -->\nhand-written\n<!-- END NOTES -->\nold table\n"
                   "<!-- END gpu -->\n")
    monkeypatch.setattr(gpu, "DEFAULT_DOC", doc)
    out = tmp_path / "from-the-gpu"
    out.mkdir()
    (out / "gpu.md").write_text("new table\n")
    assert gpu.main(["--apply", str(out)]) == 2  # no gpu.json beside it: what the table is is unknown
    (out / "gpu.json").write_text(json.dumps({"tiny": False}))
    assert gpu.main(["--apply", str(out)]) == 0
    text = doc.read_text()
    assert "new table" in text and "old table" not in text and "hand-written" in text
    assert gpu.main(["--apply", str(tmp_path / "nothing")]) == 2
    # a dry run's table is a check of the script, not a measurement: refused, as --update-docs refuses it
    # (the real dry run's files: `--dry-run --arch TFNO`'s, exit code 0, copied over the folder's)
    shutil.copytree(gpu_dry_run("--arch", "TFNO"), out, dirs_exist_ok=True)
    assert gpu.main(["--apply", str(out)]) == 2 and "dry run" not in doc.read_text()
    (out / "gpu.json").write_text(json.dumps({"tiny": False}))
    # broken markers in the docs: an error line and exit 2, nothing written
    doc.write_text("<!-- BEGIN gpu -->\nno end marker\n")
    (out / "gpu.md").write_text("new table\n")
    assert gpu.main(["--apply", str(out)]) == 2 and doc.read_text() == "<!-- BEGIN gpu -->\nno end marker\n"


def test_a_campaign_of_some_models_only_does_not_replace_the_docs_gpu_table(tmp_path, monkeypatch, capsys,
                                                                           gpu_dry_run):
    """The docs' GPU section is the table of every model: a campaign of one (``--arch``) replaced it
    with its rows. Refused with --update-docs before anything runs, and at --apply from its record."""
    doc = tmp_path / "benchmarks.md"
    kept = "<!-- BEGIN gpu -->\n<!-- NOTES -->\nnotes\n<!-- END NOTES -->\nFNO and TFNO rows\n<!-- END gpu -->\n"
    doc.write_text(kept)
    monkeypatch.setattr(gpu, "DEFAULT_DOC", doc)
    with pytest.raises(SystemExit) as exit_info:
        gpu.main(["--arch", "TFNO", "--update-docs", "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2 and "not --arch" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    out = tmp_path / "tfno-only"  # `--dry-run --arch TFNO`'s files (exit code 0), changed below: a copy
    shutil.copytree(gpu_dry_run("--arch", "TFNO"), out)
    record = json.loads((out / "gpu.json").read_text())
    assert record["archs"] == ["TFNO"]
    (out / "gpu.json").write_text(json.dumps({**record, "tiny": False}))  # as a real campaign's would read
    capsys.readouterr()
    assert gpu.main(["--apply", str(out)]) == 2
    assert "records a campaign of TFNO only (--arch)" in capsys.readouterr().err and doc.read_text() == kept
    # the same campaign of every model is applied (`--dry-run`'s files over the folder's)
    shutil.copytree(gpu_dry_run(), out, dirs_exist_ok=True)
    record = json.loads((out / "gpu.json").read_text())
    assert record["archs"] is None
    (out / "gpu.json").write_text(json.dumps({**record, "tiny": False}))
    assert gpu.main(["--apply", str(out)]) == 0 and "FNO and TFNO rows" not in doc.read_text()


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_the_cuda_tests_run_from_the_repository_root_wherever_the_campaign_starts(tmp_path, monkeypatch):
    """Started from another folder, ``pytest -k cuda`` found no tests (exit 5), which the
    campaign counts as a failure. bench gpu's own command, started from an empty folder and
    only collecting (pytest adds the options in PYTEST_ADDOPTS): it finds the CUDA tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTEST_ADDOPTS", "--collect-only")
    result, _ = gpu.run_cuda_tests(dry_run=False)
    collected = re.match(r"exit code 0: (\d+)(/\d+)? tests? collected", result)
    assert collected and int(collected[1]) > 0, result


def test_no_model_of_an_earlier_gpu_row_is_alive_when_a_row_starts(monkeypatch):
    """With the automatic cyclic collector off, as it may be at any moment: when a row builds its
    model (its peak counters just reset), no earlier row's model is alive, upstream's included.
    ``measure()`` runs ``gc.collect()`` itself before each row, so this checks that its own sweep
    frees the earlier rows; that a forward leaves no reference cycle at all is
    models/tests/test_bound_forward.py's test."""
    import gc
    import weakref

    earlier, alive_at_build = [], []
    real_build = gpu.build

    def build(*args):
        alive_at_build.append(sum(ref() is not None for ref in earlier))
        model, optimizer = real_build(*args)
        earlier.append(weakref.ref(model))
        return model, optimizer

    monkeypatch.setattr(gpu, "build", build)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for variant in gpu.VARIANTS[:1] + [v for v in gpu.VARIANTS if v.ours][:2]:
            row = gpu.measure("FNO", 8, 16, variant, 1, 4, torch.device("cpu"), steps=1, warmup=0)
            assert "note" not in row, row
    finally:
        if was_enabled:
            gc.enable()
    assert alive_at_build == [0, 0, 0]


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_the_forward_peak_count_with_the_gpus_choices_runs_and_orders_the_rows():
    """benchmarks/forward_peak_gpu_choices.py (the counts docs/benchmarks.md quotes), at a tiny
    size: one line per variant, ours keeping less for backward than upstream full (at this grid
    the peak itself is the spectral weights' 16-bit copies, not the activations)."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "forward_peak_gpu_choices.py"), "--res", "32",
                           "--batch", "1", "--variant", "upstream full", "--variant", "ours mixed bf16 + autocast"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    counts = [tuple(map(float, m)) for m in re.findall(r"forward peak ([\d.]+) MiB, kept at its end ([\d.]+) MiB",
                                                        done.stdout)]
    assert len(counts) == 2 and all(0 < kept <= peak for peak, kept in counts)
    assert counts[1][1] < counts[0][1]


def test_gpu_campaign_runs_only_the_models_asked_for(tmp_path, capsys, gpu_dry_run):
    out = gpu_dry_run("--arch", "TFNO")  # exit code 0 (conftest.py: one run for the session)
    rows = json.loads((out / "gpu.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"TFNO"} and len(rows) == len(gpu.VARIANTS)
    # the table's command is the one that reproduces it (the output folder left out)
    assert "Command: `neuralop-mp bench gpu --dry-run --arch TFNO`" in (out / "gpu.md").read_text()
    with pytest.raises(SystemExit):
        gpu.main(["--dry-run", "--arch", "UNO", "--out", str(tmp_path)])
    assert "invalid choice: 'UNO'" in capsys.readouterr().err


# profiles every case of the GPU campaign's dry run (seconds): the end-to-end tier
@pytest.mark.slow
def test_gpu_dry_run_profile_has_a_kernel_table_per_profiled_case(tmp_path):
    assert gpu.main(["--dry-run", "--profile", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    cases = gpu.profile_cases(rows, gpu.DRY_SIZES)
    # the largest size, the size where ours mixed bf16 compares worst, the smallest (optimizers)
    assert len(cases) == 3 and cases[0][3] == list(gpu.PROFILED) and "TensorGRaD" in cases[2][3][1]
    text = (tmp_path / "gpu_profile.txt").read_text()
    sections = text.split("== ")[1:]
    assert [s.split(":")[0] for s in sections] == [name for *_, names in cases for name in names]
    for section in sections:
        res = int(re.search(r"(\d+)\^2, batch", section.split("\n")[0]).group(1))
        # upstream's 16-bit FFTs crash where the size is not a power of two (cuFFT's stand-in), as on a GPU
        if section.startswith(("upstream mixed", "upstream half", "upstream + autocast fp16")) and res & (res - 1):
            assert "crashes:" in section
        else:  # a profiler table: one row per operator, with its time
            assert "Self CPU" in section and "aten::" in section and "aten calls: " in section, section[:300]


# profiles the GPU campaign's dry run (seconds): the end-to-end tier
@pytest.mark.slow
def test_gpu_profile_with_arch_profiles_only_that_model(tmp_path):
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--profile", "--out", str(tmp_path)]) == 0
    titles = [line for line in (tmp_path / "gpu_profile.txt").read_text().splitlines() if line.startswith("== ")]
    tfno = next(s for s in gpu.DRY_SIZES if s[0] == "TFNO")
    # every profiled case is a size the campaign measured: TFNO's, none of FNO's
    assert titles and all(f": TFNO {tfno[1]} channels, {tfno[2]}^2" in t for t in titles), titles


def test_per_round_range_pairs_each_round_with_upstreams_step_of_that_round():
    from neuralop_mp.bench.spectral import add_ratios, render

    def row(variant, rounds, res=64):
        return dict(model="FNO", res=res, batch=2, variant=variant, **{"round s": rounds, "step s": sorted(rounds)[1]})

    # the machine is twice as slow in round 2: both sides of each pair move together
    rows = add_ratios([row("upstream full", [1.0, 2.0, 1.0]), row("ours mixed", [0.7, 1.5, 0.8]),
                       row("ours short", [0.5, 0.5]), dict(model="FNO", res=64, batch=2, variant="ours one step",
                                                           **{"step s": 3.0}),
                       row("ours wide", [0.5, 2.0, 0.9]), row("ours wider", [0.2, 2.0, 1.4])])
    assert rows[1]["per-round range"] == "0.70-0.80"
    assert rows[1]["time / up. full"] == pytest.approx(0.8)  # the ratio of medians, as before
    # no range for upstream full itself, for rows timed over other rounds, or on their warm-up step only
    assert all("per-round range" not in r for r in (rows[0], rows[2], rows[3]))
    data = dict(rows=rows, model=dict(n_modes=[8, 8], hidden_channels=4, n_layers=2), rounds=3, threads=1,
                device_type="cpu", native_bf16_matmul=False, load_average_before=0.0, load_average_after=0.0)
    text = render(data)
    assert "| per-round range |" in text and "| 0.70-0.80 |" in text and "| 0.50-1.00 |" in text
    # the run's noise in one sentence: half of each range (0.05, 0.25, 0.6), their median and the widest
    assert "moved by about ±0.25 in this run" in text and "widest ±0.60: FNO 64^2 batch 2, ours wider" in text
    # a run saved before the column existed (no per-round times) renders without it
    for r in rows:
        r.pop("round s", None)
    old_run = render(data)
    assert "per-round" not in old_run and "moved by about" not in old_run
    assert all("per-round range" not in r for r in rows)  # derived values do not outlive their times


def test_update_docs_rewrites_only_its_own_section(tmp_path, monkeypatch):
    from neuralop_mp.bench import report

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- BEGIN other -->\nkept\n<!-- END other -->\n")
    monkeypatch.setattr(report, "DEFAULT_DOC", doc)
    report.write_results("spectral", "## new table", {"rows": []}, out=tmp_path / "a", update_docs=False,
                         doc_path=doc)
    assert "new table" not in doc.read_text()
    report.write_results("spectral", "## new table", {"rows": [float("nan")]}, out=tmp_path / "b",
                         update_docs=True, doc_path=doc)
    text = doc.read_text()
    assert "<!-- BEGIN other -->\nkept\n<!-- END other -->" in text and "## new table" in text
    assert json.loads((tmp_path / "b" / "spectral.json").read_text())["rows"] == ["nan"]  # as results.json writes it


def test_update_docs_keeps_the_sections_hand_written_notes(tmp_path):
    from neuralop_mp.bench import report

    doc = tmp_path / "benchmarks.md"
    notes = "<!-- NOTES -->\nWhat to read: the ratio column.\n<!-- END NOTES -->"
    doc.write_text(f"# B\n\nbefore\n<!-- BEGIN spectral -->\n## Old title\n\n{notes}\n\nold table\n"
                   "<!-- END spectral -->\nafter\n")
    report.update_section("spectral", "## New title\n\nDevice: x.\n\nnew table\n", doc)
    text = doc.read_text()
    assert "old table" not in text and "Old title" not in text
    # the notes come back under the new title, once; the text outside the section is untouched
    assert f"<!-- BEGIN spectral -->\n## New title\n\n{notes}\n\nDevice: x.\n\nnew table\n<!-- END spectral -->" in text
    assert text.startswith("# B\n\nbefore\n") and text.endswith("<!-- END spectral -->\nafter\n")
    report.update_section("spectral", "## Newer title\n\nnewer table", doc)
    assert doc.read_text().count("What to read") == 1 and "new table" not in doc.read_text()
    # markers that a rewrite could only resolve by losing or doubling text: an error, nothing written
    before = doc.read_text()
    for broken in (before.replace("<!-- END NOTES -->", ""),  # a lone NOTES marker
                   before.replace("<!-- END NOTES -->", "<!-- END NOTES -->\n<!-- NOTES -->\nx\n<!-- END NOTES -->"),
                   before.replace("<!-- BEGIN spectral -->", "<!-- END spectral -->\n<!-- BEGIN spectral -->", 1)):
        doc.write_text(broken)
        with pytest.raises(ValueError, match="marker"):
            report.update_section("spectral", "## Newest title\n\nnewest table", doc)
        assert doc.read_text() == broken
    doc.write_text(before)
    with pytest.raises(ValueError, match="notes markers of its own"):
        report.update_section("spectral", f"## Own notes\n\n{notes}\n\ntable", doc)
    # a section without notes is replaced whole
    report.update_section("other", "## Other\n\nrows", doc)
    report.update_section("other", "## Other 2\n\nrows 2", doc)
    assert "<!-- BEGIN other -->\n## Other 2\n\nrows 2\n<!-- END other -->" in doc.read_text()


def test_unknown_benchmark_names_the_choices(capsys):
    assert cli.main(["bench", "spectrl"]) == 2
    assert "'spectrl'; choose from: spectral, optimizer, schedule, scope, auto, allocator, gpu" in capsys.readouterr().err
    assert cli.main(["bench", "--help"]) == 0
    assert "spectral" in capsys.readouterr().out


def test_gpu_without_cuda_and_without_dry_run_fails_clearly(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_gpu_shell_script_requires_an_output_folder():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bash benchmarks/gpu.sh OUT_DIR" in done.stderr


def test_gpu_shell_script_refuses_a_python_without_neuraloperator_naming_wheelhouse(tmp_path):
    """Without --wheelhouse, a Python that has not neuraloperator, zencfg, tensorly (a GPU node's
    own) is refused in one line naming --wheelhouse, before the campaign's traceback."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu.sh"
    bare = tmp_path / "bare"  # a venv that does not see this one's packages
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = subprocess.run(["bash", str(script), str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(bare / "bin" / "python")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cannot import neuralop zencfg tensorly" in done.stderr
    assert "bash benchmarks/wheelhouse.sh DIR" in done.stderr and "--wheelhouse DIR" in done.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_shell_script_passes_its_start_time_to_the_campaign(tmp_path):
    """gpu.sh exports its start (epoch seconds) for the campaign's budget, keeping a caller's."""
    import subprocess
    import time

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu.sh"
    fake = tmp_path / "python"  # passes the preflight (-c), then shows what the campaign would get
    fake.write_text('#!/bin/bash\n[ "$1" = -c ] && exit 0\necho "start=$NEURALOP_MP_GPU_START args=$*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != gpu.START_ENV}
    before = int(time.time())
    done = subprocess.run(["bash", str(script), str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True,
                          env={**env, "PYTHON": str(fake)})
    assert done.returncode == 0, done.stderr
    start = int(done.stdout.split("start=")[1].split()[0])
    assert before <= start <= time.time()
    assert "args=-m neuralop_mp.cli bench gpu --out" in done.stdout
    done = subprocess.run(["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True,
                          env={**env, "PYTHON": str(fake), gpu.START_ENV: "1234"})
    assert "start=1234 " in done.stdout


def test_shown_command_drops_where_the_results_went():
    from neuralop_mp.bench.report import shown_command

    argv = ["--quick", "--out", "runs/x", "--update-docs", "--rounds", "3", "--out=runs/y"]
    assert shown_command("neuralop-mp bench spectral", argv) == "neuralop-mp bench spectral --quick --rounds 3"


def test_spectral_share_subtracts_the_floor_of_the_same_size():
    from neuralop_mp.bench.spectral import FLOOR, OURS_FLOOR, add_ratios

    def row(variant, step, res=64):
        return dict(model="TFNO", res=res, batch=2, variant=variant, **({"step s": step} if step else {}))

    rows = add_ratios([row("upstream full", 2.0), row(FLOOR, 1.2), row("ours mixed", 1.4), row("ours crashed", None),
                       row("upstream full", 1.0, res=128), row("ours mixed", 0.9, res=128)])
    ours, crashed, other_size = rows[2], rows[3], rows[5]
    # (1.4 - 1.2) / (2.0 - 1.2): our spectral layers take a quarter of upstream's time
    assert ours["spectral / up."] == pytest.approx(0.25) and ours["time / up. full"] == pytest.approx(0.7)
    assert rows[0]["spectral / up."] == pytest.approx(1.0) and rows[1]["spectral / up."] == 0.0
    assert "spectral / up." not in crashed and "time / up. full" not in crashed
    assert "spectral / up." not in other_size  # no floor row timed at that size
    assert other_size["time / up. full"] == pytest.approx(0.9)
    # autocast over the whole model changes the cost of what the floor times: no spectral share
    rows = add_ratios([row("upstream full", 2.0), row(FLOOR, 1.2), row("upstream + autocast bfloat16", 3.0),
                       row("ours mixed bfloat16 + autocast, scope model", 2.5),
                       row("ours mixed bfloat16 + autocast", 1.6)])
    assert "spectral / up." not in rows[2] and "spectral / up." not in rows[3]
    assert rows[4]["spectral / up."] == pytest.approx(0.5)  # scope auto on a CPU: float32 outside
    # our rows subtract our floor (tiled pointwise work), upstream's rows upstream's
    rows = add_ratios([row("upstream full", 2.0), row(FLOOR, 1.2), row(OURS_FLOOR, 1.0), row("ours mixed", 1.3),
                       row("upstream other", 1.6)])
    assert rows[3]["spectral / up."] == pytest.approx(0.375) and rows[2]["spectral / up."] == 0.0
    assert rows[4]["spectral / up."] == pytest.approx(0.5)


def test_an_unwritable_out_fails_before_the_benchmark_runs(tmp_path, capsys, monkeypatch):
    """--out FILE is refused while the arguments are parsed, naming it: the benchmark never runs."""
    from neuralop_mp.bench import spectral

    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(spectral, "write_results", lambda *a, **k: pytest.fail("ran before --out was checked"))
    for out in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as exit_:  # argparse's exit, as for any bad argument
            cli.main(["bench", "spectral", "--quick", "--out", str(out)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --out: Output folder '{out}' " in err and "Traceback" not in err
        assert err.count(f"'{blocker}' is a file, not a folder") == 1, err  # was "is not writable (Not a directory)"
    # parsing creates nothing: a later bad argument, or --help, leaves no folder behind
    for tail in (["--bogus-flag"], ["--help"]):
        with pytest.raises(SystemExit):
            cli.main(["bench", "spectral", "--quick", "--out", str(tmp_path / "new" / "deep"), *tail])
        assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("module, section, partial", [
    ("spectral", "spectral", ["--quick"]), ("spectral", "spectral", ["--models", "FNO"]),
    ("spectral", "spectral", ["--sizes", "64x2"]), ("schedule", "schedule", ["--quick"]),
    ("schedule", "schedule", ["--runs", "full"]), ("autocast_scope", "scope", ["--quick"]),
    ("autocast_scope", "scope", ["--datasets", "darcy"]), ("autocast_scope", "scope", ["--runs", "full"]),
    ("auto_precision", "auto", ["--quick"]), ("auto_precision", "auto", ["--datasets", "darcy"]),
    ("auto_precision", "auto", ["--recipes", "full"]), ("cpu_allocator", "allocator", ["--quick"]),
    ("cpu_allocator", "allocator", ["--res", "64"]), ("cpu_allocator", "allocator", ["--batch", "4"]),
    ("optimizer", "optimizer", ["--quick"]),
])
def test_a_partial_run_does_not_rewrite_the_docs_section(module, section, partial, capsys, monkeypatch):
    """The docs' section of a benchmark is its whole table: a tiny run (--quick) or some of its rows
    with --update-docs replaced it. Refused as the arguments are read, naming the section and the
    option; were it not, nothing is written to the real docs (write_results fails the test)."""
    import importlib

    from neuralop_mp.bench import report

    bench = importlib.import_module(f"neuralop_mp.bench.{module}")
    monkeypatch.setattr(report, "update_section", lambda *a, **k: pytest.fail("the docs would be rewritten"))
    monkeypatch.setattr(bench, "write_results", lambda *a, **k: pytest.fail("a partial run wrote its results"))
    with pytest.raises(SystemExit) as stopped:
        bench.main([*partial, "--update-docs"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"rewrites docs/benchmarks.md's whole {section} section" in err and f"not {partial[0]}" in err


def test_a_dry_gpu_campaign_says_it_did_not_update_the_docs(tmp_path, monkeypatch, capsys):
    """gpu.sh passes --update-docs to its dry run too: the tiny table is never written to the docs,
    and the campaign says so (it was silent)."""
    from neuralop_mp.bench import gpu, report

    monkeypatch.setattr(report, "update_section", lambda *a, **k: pytest.fail("the docs would be rewritten"))
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--update-docs", "--out", str(tmp_path / "out")]) == 0
    assert "docs/benchmarks.md not updated: a dry run's tiny sizes are no measurement" in capsys.readouterr().err
