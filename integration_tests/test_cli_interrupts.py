"""SIGTERM ends `neuralop-mp train` and `neuralop-mp run` as Ctrl-C does; one run at a time writes a run folder."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

NANO_RUN = [
    "--data.n_train", "8", "--data.batch_size", "4", "--data.n_tests", "[4]", "--data.test_resolutions", "[16]",
    "--data.test_batch_sizes", "[4]", "--data.generate", "false", "--model.hidden_channels", "4",
    "--model.n_layers", "1", "--model.n_modes", "[4,4]", "--verbose", "false", "--threads", "1",
]
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def nano_root(tmp_path_factory):
    from neuralop_mp.data.darcy import generate_darcy

    root = tmp_path_factory.mktemp("nano_darcy")
    generate_darcy(root, resolutions=(16,), n_train=8, n_test=4, seed=0, progress=False)
    return root


def _train(nano_root, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "neuralop_mp.cli", "train", "darcy", "--data.data_root",
                             str(nano_root), "--output_dir", str(out), *NANO_RUN, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def _saved_epoch(out):
    try:  # the checkpoint folder is swapped in as a whole: read between swaps
        return torch.load(out / "checkpoint" / "manifest.pt", weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError):
        return None


def _wait_for_epoch(process, out, epoch=1):
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and not (_saved_epoch(out) or 0) >= epoch:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]  # still training


def test_sigterm_ends_train_like_ctrl_c_with_exit_143(nano_root, tmp_path):
    out = tmp_path / "run"
    process = _train(nano_root, out, "--opt.n_epochs", "400")
    _wait_for_epoch(process, out)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    saved = _saved_epoch(out)
    assert err.strip().splitlines()[-1] == (
        f"neuralop-mp train: terminated (SIGTERM); {out / 'checkpoint'} holds epoch {saved}, the last saved. "
        f"Continue with: neuralop-mp train --resume {out}")
    assert not (out / "checkpoint.tmp").exists()


def test_a_second_run_of_a_folder_in_use_is_refused_until_its_process_ends(nano_root, tmp_path):
    out = tmp_path / "run"
    first = _train(nano_root, out, "--opt.n_epochs", "400")
    try:
        _wait_for_epoch(first, out)
        base = [sys.executable, "-m", "neuralop_mp.cli", "train"]
        for args in (["--resume", str(out), "--opt.n_epochs", "3"],
                     ["darcy", "--data.data_root", str(nano_root), "--output_dir", str(out), *NANO_RUN,
                      "--opt.n_epochs", "1"]):
            second = subprocess.run(base + args, capture_output=True, text=True, env=ENV, timeout=120)
            assert second.returncode == 2, second.stderr
            assert second.stderr.strip() == (
                f"neuralop-mp train: error: {out} is in use by another neuralop-mp train (pid {first.pid}): a second "
                "run would overwrite its checkpoint. Wait for it to end (or stop it), then resume; or give a new "
                "run another --output_dir.")
        assert first.poll() is None  # not disturbed
    finally:
        first.kill()  # SIGKILL: no cleanup, the lock file stays; flock released with the process
        first.communicate()
    assert (out / ".lock").exists()
    saved = _saved_epoch(out)
    resumed = subprocess.run(base + ["--resume", str(out), "--opt.n_epochs", str(saved + 2)], capture_output=True,
                             text=True, env=ENV, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    history = json.loads((out / "results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(saved + 2))


def test_sigterm_ends_a_run_script_with_its_summary_and_report(tmp_path):
    started = tmp_path / "started"
    script = tmp_path / "slow.py"
    script.write_text(f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(120)\n")
    report = tmp_path / "report.json"
    process = subprocess.Popen([sys.executable, "-m", "neuralop_mp.cli", "run", str(script), "--mp.report",
                                str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and not started.exists():
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert "script terminated (SIGTERM), exit status 143" in out
    written = json.loads(report.read_text())
    assert written["interrupted"] is True and written["exit_status"] == 143
