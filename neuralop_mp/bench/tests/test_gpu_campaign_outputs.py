"""What the GPU campaign leaves behind for diagnosis: the CUDA tests' failures in full, every
measured row on disk as soon as it exists, and a time budget that ``--profile`` keeps."""
import json
import subprocess
import time

import pytest

from neuralop_mp.bench import gpu

FAILING_TEST = '''
def test_cuda_something_breaks():
    peak = 3
    assert peak < 2, "peak memory above the bound: 3 GiB"
'''
PYTEST_OUTPUT = """.F.
=================================== FAILURES ===================================
E   AssertionError: complex32 weights drifted: max error 0.2
=========================== short test summary info ============================
FAILED neuralop_mp/tests/test_x.py::test_cuda_weights - AssertionError: complex32 weights drifted: max error 0.2
ERROR neuralop_mp/tests/test_y.py::test_cuda_setup - RuntimeError: CUDA error: out of memory
1 failed, 2 passed, 1 error in 3.2s
"""


def test_a_failing_cuda_tests_name_and_reason_reach_the_output_file(tmp_path, monkeypatch):
    """The campaign's own pytest command, pointed (PYTEST_ADDOPTS) at a failing fake CUDA test."""
    fake = tmp_path / "test_fake_cuda.py"
    fake.write_text(FAILING_TEST)
    monkeypatch.setenv("PYTEST_ADDOPTS", str(fake))
    output = tmp_path / "gpu_cuda_tests.txt"
    result, failures = gpu.run_cuda_tests(dry_run=False, output=output)
    assert result.startswith("exit code 1:") and "1 failed" in result
    text = output.read_text()
    assert "assert 3 < 2" in text  # the whole output: the traceback, not only the count
    [line] = gpu.failed_tests(text)
    assert failures == [line]  # returned as well as written
    assert line.startswith("FAILED ") and "test_cuda_something_breaks" in line
    assert "AssertionError: peak memory above the bound: 3 GiB" in line


def test_a_timeouts_partial_output_is_kept(tmp_path, monkeypatch):
    def times_out(command, **kwargs):
        # what subprocess.run raises: the partial output as bytes, even in text mode
        raise subprocess.TimeoutExpired(command, kwargs["timeout"], output=b"..F\nFAILED t.py::test_cuda_a - boom\n",
                                        stderr=b"")

    monkeypatch.setattr(gpu.subprocess, "run", times_out)
    output = tmp_path / "gpu_cuda_tests.txt"
    assert gpu.run_cuda_tests(dry_run=False, timeout_s=7, output=output) == \
        ("timed out after 7 s", ["FAILED t.py::test_cuda_a - boom"])
    text = output.read_text()
    assert "timed out after 7 s" in text
    assert gpu.failed_tests(text) == ["FAILED t.py::test_cuda_a - boom"]
    # without an output file: the same failures, from the partial output in hand
    assert gpu.run_cuda_tests(dry_run=False, timeout_s=7) == ("timed out after 7 s", ["FAILED t.py::test_cuda_a - boom"])


def test_failing_cuda_tests_are_listed_in_gpu_json_and_gpu_md(tmp_path, monkeypatch, capsys):
    """The dry run's campaign with its CUDA test run made real and pytest's output faked."""
    real = gpu.run_cuda_tests
    monkeypatch.setattr(gpu, "run_cuda_tests", lambda dry_run, **kwargs: real(False, **kwargs))
    monkeypatch.setattr(gpu.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, PYTEST_OUTPUT, ""))
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--budget-s", "0", "--out", str(tmp_path)]) == 1
    expected = ["FAILED neuralop_mp/tests/test_x.py::test_cuda_weights - AssertionError: complex32 weights "
                "drifted: max error 0.2",
                "ERROR neuralop_mp/tests/test_y.py::test_cuda_setup - RuntimeError: CUDA error: out of memory"]
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["cuda_tests"] == "exit code 1: 1 failed, 2 passed, 1 error in 3.2s"
    assert data["cuda_test_failures"] == expected
    table = (tmp_path / "gpu.md").read_text()
    assert all(f"- `{line}`" in table for line in expected)
    assert (tmp_path / "gpu_cuda_tests.txt").read_text().startswith(PYTEST_OUTPUT.rstrip())
    assert "CUDA tests: exit code 1" in capsys.readouterr().err


def test_run_without_an_output_folder_reports_the_failing_cuda_tests(monkeypatch, capsys):
    """A Python caller of run() without ``out``: no gpu_cuda_tests.txt to read back, and the
    failures were reported as none."""
    real = gpu.run_cuda_tests
    monkeypatch.setattr(gpu, "run_cuda_tests", lambda dry_run, **kwargs: real(False, **kwargs))
    monkeypatch.setattr(gpu.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, PYTEST_OUTPUT, ""))
    body, data, _ = gpu.run(dry_run=True, archs=["TFNO"], budget_s=0)
    expected = ["FAILED neuralop_mp/tests/test_x.py::test_cuda_weights - AssertionError: complex32 weights "
                "drifted: max error 0.2",
                "ERROR neuralop_mp/tests/test_y.py::test_cuda_setup - RuntimeError: CUDA error: out of memory"]
    assert data["cuda_tests"] == "exit code 1: 1 failed, 2 passed, 1 error in 3.2s"
    assert data["cuda_test_failures"] == expected
    assert all(f"- `{line}`" in body for line in expected)
    printed = capsys.readouterr()
    assert all(line in printed.out for line in expected), printed


def test_every_row_is_on_disk_as_soon_as_it_is_measured(gpu_dry_run):
    out = gpu_dry_run("--arch", "TFNO")  # exit code 0 (conftest.py: one run for the session)
    rows = gpu.read_rows(out / "gpu_rows.jsonl")
    measured = json.loads((out / "gpu.json").read_text())["rows"]
    assert len(rows) == len(measured) == len(gpu.VARIANTS)
    assert [(r["variant"], r["res"], r.get("step ms")) for r in rows] == \
        [(r["variant"], r["res"], r.get("step ms")) for r in measured]


def test_a_campaign_killed_after_k_rows_leaves_k_rows(tmp_path, monkeypatch, capsys):
    k = 3
    calls = []

    def measure(arch, hidden, res, variant, *args):
        if len(calls) == k:
            raise KeyboardInterrupt  # what an outer timeout's signal does to the process
        calls.append(variant.name)
        return dict(model=arch, hidden=hidden, res=res, variant=variant.name, **{"step ms": 1.0})

    monkeypatch.setattr(gpu, "measure", measure)
    with pytest.raises(KeyboardInterrupt):
        gpu.main(["--dry-run", "--out", str(tmp_path)])
    assert [r["variant"] for r in gpu.read_rows(tmp_path / "gpu_rows.jsonl")] == calls
    assert not (tmp_path / "gpu.md").exists()
    # --apply has no table to apply, and says where the rows are
    assert gpu.main(["--apply", str(tmp_path)]) == 2
    assert "gpu_rows.jsonl" in capsys.readouterr().err


def test_profile_skips_the_cases_the_time_budget_has_no_room_for(tmp_path, capsys):
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--profile", "--budget-s", "0", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "gpu_profile.txt").read_text()
    parts = text.split("== ")[1:]
    assert parts and all("skipped: time budget of 0.0 s spent" in part for part in parts)
    assert "aten calls" not in text  # nothing was built or profiled
    assert "profile skipped" in capsys.readouterr().out
    # with time left it profiles, as before
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    profiled = gpu.profile_table(rows, dry_run=True, start=time.perf_counter(), budget_s=600)
    assert "aten calls" in profiled and "skipped" not in profiled


def test_the_budget_is_what_is_left_of_8_minutes_since_gpu_sh_started(monkeypatch, tmp_path, capsys):
    """gpu.sh's start (NEURALOP_MP_GPU_START) counts its venv, installs and imports against the
    8 minutes; without it the same budget counts from the campaign's start (test_gpu_budget.py)."""
    assert (gpu.LIMIT_S, gpu.END_MARGIN_S, gpu.BUDGET_S) == (480, 45, 435)
    assert gpu.start_budget_s({}, now=5000.0) == gpu.BUDGET_S
    assert gpu.start_budget_s({gpu.START_ENV: ""}, now=5000.0) == gpu.BUDGET_S
    assert gpu.start_budget_s({gpu.START_ENV: "1000"}, now=1100.4) == 480 - 45 - 100  # 100 s of installs
    assert gpu.start_budget_s({gpu.START_ENV: "1000"}, now=1000.0) == 435
    assert gpu.start_budget_s({gpu.START_ENV: "1000"}, now=1435.0) == 0
    assert gpu.start_budget_s({gpu.START_ENV: "1000"}, now=1600.0) == 0  # never negative
    with pytest.raises(ValueError, match=r"NEURALOP_MP_GPU_START='soon' is not a time in epoch seconds"):
        gpu.start_budget_s({gpu.START_ENV: "soon"})
    # through main: a start 10 minutes ago leaves no budget, every row says so; --budget-s still wins
    monkeypatch.setenv(gpu.START_ENV, str(int(time.time()) - 600))
    assert gpu.main(["--dry-run", "--arch", "TFNO", "--out", str(tmp_path / "late")]) == 0
    rows = json.loads((tmp_path / "late" / "gpu.json").read_text())["rows"]
    assert rows and all(r["note"] == "skipped: time budget of 0 s spent" for r in rows)
    monkeypatch.setenv(gpu.START_ENV, "soon")
    assert gpu.main(["--dry-run", "--out", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.strip().endswith("NEURALOP_MP_GPU_START='soon' is not a time in epoch seconds "
                                                    "(gpu.sh sets it to date +%s)")
    monkeypatch.setattr(gpu, "run", lambda **kwargs: (_ for _ in ()).throw(SystemExit(kwargs["budget_s"])))
    with pytest.raises(SystemExit) as given:
        gpu.main(["--dry-run", "--budget-s", "7", "--out", str(tmp_path / "given")])
    assert given.value.code == 7.0


def test_the_cufft_float16_stand_in_refuses_what_cufft_refuses_and_is_undone_on_exit():
    import torch

    from neuralop_mp.bench.cufft_float16_standin import emulate_float16_cufft
    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    originals = [getattr(torch.fft, n) for n in ("rfftn", "irfftn", "fftn", "ifftn")]
    rule = MixedPrecisionSpectralConv._fft_in_half
    x = torch.randn(1, 2, 16, 8)
    with pytest.raises(ZeroDivisionError), emulate_float16_cufft():
        half = torch.fft.rfftn(x.half(), dim=(-2, -1))
        assert half.dtype == torch.complex32
        assert torch.allclose(torch.view_as_real(half.to(torch.complex64)),
                              torch.view_as_real(torch.fft.rfftn(x, dim=(-2, -1))), atol=0.05)
        assert torch.fft.rfftn(x, dim=(-2, -1)).dtype == torch.complex64  # float32: the real transform
        with pytest.raises(RuntimeError, match=r"power-of-2 sizes only, got \[12, 8\]"):
            torch.fft.rfftn(torch.randn(1, 12, 8).half(), dim=(-2, -1))
        # the layer asks its float16-FFT rule as for an input on a GPU
        assert MixedPrecisionSpectralConv._fft_in_half(None, "half", torch.float16, x, (16, 8), (16, 8))
        assert not MixedPrecisionSpectralConv._fft_in_half(None, "half", torch.float16, x, (12, 8), (12, 8))
        1 / 0
    assert [getattr(torch.fft, n) for n in ("rfftn", "irfftn", "fftn", "ifftn")] == originals
    assert MixedPrecisionSpectralConv._fft_in_half is rule
    assert not rule(None, "half", torch.float16, x, (16, 8), (16, 8))  # on a CPU tensor: no cuFFT
