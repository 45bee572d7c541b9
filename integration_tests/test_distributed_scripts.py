"""Upstream's real ``train_darcy.py`` under ``torchrun --nproc_per_node 2`` through
``neuralop-mp run``, with its own ``--distributed.use_distributed True``: two CPU
ranks (gloo), the plugin's layer in "mixed" precision, DDP, DistributedSamplers."""
import json
import os
import subprocess
import sys

from .test_run_scripts import TINY_DARCY


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
    assert "data parallel: rank 0 of 2 (backend gloo, device cpu)" in report["notes"]
    (model,) = report["models"]
    assert model["layer_types"] == ["MixedPrecisionSpectralConv"] and model["precision"]["mode"] == "mixed"
    (trainer,) = report["trainers"]
    history = trainer["history"]
    assert [h["epoch"] for h in history] == [0, 1] and [h["skipped_steps"] for h in history] == [0, 0]
    # both ranks ran the script to the end: each printed the run's summary
    assert done.stdout.count("neuralop-mp summary") == 2, done.stdout[-3000:]
