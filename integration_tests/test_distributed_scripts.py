"""Upstream's real ``train_darcy.py`` under ``torchrun --nproc_per_node 2`` through
``neuralop-mp run``, with its own ``--distributed.use_distributed True``: two CPU
ranks (gloo), the plugin's layer in "mixed" precision, DDP, DistributedSamplers."""
import json
import os
import subprocess
import sys

import pytest

from .test_run_scripts import TINY_DARCY

pytestmark = pytest.mark.slow  # torchrun with two ranks: the end-to-end tier (pyproject.toml)


def test_upstream_train_darcy_under_torchrun_on_two_cpu_ranks(upstream_scripts, darcy_root, tmp_path):
    report_file = tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "neuralop_mp.cli", "run", "train_darcy.py", "--mp.precision", "mixed",
               "--mp.half_dtype", "bfloat16", "--mp.data-root", str(darcy_root), "--mp.report", str(report_file),
               "--", *TINY_DARCY, "--opt.n_epochs", "2", "--distributed.use_distributed", "True"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(command, cwd=upstream_scripts, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert "data parallel: rank 0 of 2 (backend gloo, device cpu)" in report["information"]
    (model,) = report["models"]
    assert model["layer_types"] == ["MixedPrecisionSpectralConv"] and model["precision"]["mode"] == "mixed"
    (trainer,) = report["trainers"]
    history = trainer["history"]
    assert [h["epoch"] for h in history] == [0, 1] and [h["skipped_steps"] for h in history] == [0, 0]
    # both ranks ran the script to the end; rank 0 alone printed the run's summary, where its place is
    # information, not a warning
    assert done.stdout.count("neuralop-mp summary") == 1, done.stdout[-3000:]
    assert "\ndata parallel: rank 0 of 2 (backend gloo, device cpu)\n" in done.stdout, done.stdout[-3000:]
    assert "WARNING: data parallel" not in done.stdout


def test_neuralop_mp_train_under_torchrun_on_two_cpu_ranks(darcy_root, tmp_path):
    """``neuralop-mp train`` detects torchrun: gloo on the CPU, DDP, each rank a shard of the
    training set, one results folder written by rank 0, which alone prints (verbose included)."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "neuralop_mp.cli", "train", "darcy", "--data.data_root", str(darcy_root),
               "--output_dir", str(out), "--model.fno_block_precision", "mixed", "--opt.precision_schedule",
               "mixed:0.5,full:0.5", "--data.n_train", "32", "--data.batch_size", "8", "--data.n_tests", "[16,16]",
               "--data.test_batch_sizes", "[16,16]", "--opt.n_epochs", "2", "--model.hidden_channels", "8",
               "--model.n_layers", "2", "--verbose", "true"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    # upstream's per-epoch lines (verbose) and the result table: once, from rank 0
    assert [output.count(f"[{epoch}] time=") for epoch in (0, 1)] == [1, 1], output[-3000:]
    assert output.count("test rel. L2 @ 16 (train)") == 1 and "this run wrote no output folder" not in output
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["device"] == "cpu"
    assert [h["precision"] for h in results["history"]] == ["mixed", "full"]
    assert [h["skipped_steps"] for h in results["history"]] == [0, 0]
    assert all(value == value for value in results["metrics"].values())  # no NaN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # rank 1 wrote nothing


# Imported by every rank through PYTHONPATH: on rank 1 only, the training loader's third batch
# raises (the one loader sharded by a DistributedSampler), an error only that rank sees (an
# unreadable sample, a failing disk).
_FAULT_ON_RANK_1 = '''
import os
if os.environ.get("RANK") == "1":
    import torch.utils.data

    _iter = torch.utils.data.DataLoader.__iter__

    def _failing_iter(self):
        for i, batch in enumerate(_iter(self)):
            if i == 2 and type(self.sampler).__name__ == "DistributedSampler":  # training's shard
                raise OSError("injected read error on rank 1")
            yield batch

    torch.utils.data.DataLoader.__iter__ = _failing_iter
'''


def test_a_rank_failing_alone_mid_epoch_ends_the_whole_run_promptly(darcy_root, tmp_path):
    """A rank that raises mid-epoch for a reason only it sees: its process exits with the error
    and torchrun stops the other rank, which would otherwise wait in its next gradient all-reduce
    until the process group's timeout (30 min). Nothing of ours may catch such an error on one
    rank and go on; the run must end with rank 1's error within the subprocess timeout (it takes
    a few seconds; a hang fails the test there)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_FAULT_ON_RANK_1)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "neuralop_mp.cli", "train", "darcy", "--data.data_root", str(darcy_root),
               "--output_dir", str(out), "--model.fno_block_precision", "mixed", "--data.n_train", "64",
               "--data.batch_size", "4", "--data.n_tests", "[16,16]", "--data.test_batch_sizes", "[16,16]",
               "--opt.n_epochs", "2", "--model.hidden_channels", "8", "--model.n_layers", "2", "--verbose", "false"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "injected read error on rank 1" in output, output[-3000:]
    assert not (out / "results.json").exists()
