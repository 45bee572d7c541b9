"""Upstream-style training scripts run end to end under ``neuralop-mp run`` on generated data.

The stand-in scripts in ``integration_tests/scripts/`` follow neuraloperator's
script structure and know nothing about the plugin. Each test runs one through
the runner in-process, with the network blocked, and asserts from the activation
report that the plugin really was active: the model got the mixed-precision
layer, the optimizer is the requested kind, the trainer went through the
requested precision phases, and the data was read offline from our folder.
"""
import json
import socket
import sys
from pathlib import Path

import pytest
import torch

from neuralop_mp.runner import activation
from neuralop_mp.runner.cli import main, run_script
from neuralop_mp.runner.offline import OfflineDataError

SCRIPTS = Path(__file__).parent / "scripts"
# small enough for a few seconds per script on two CPU cores
TINY = ["--verbose", "false", "--data.n_train", "32", "--data.batch_size", "16"]




@pytest.fixture
def no_network(monkeypatch):
    """Refuse (and record) name resolution and internet connections; local sockets still work."""
    attempts = []
    connect = socket.socket.connect

    def refused_connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):  # DataLoader workers
            return connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in this test: {address!r}")

    def refused(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refused_connect)
    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(socket, "getaddrinfo", refused)
    return attempts


@pytest.fixture(scope="module")
def ns_root(tmp_path_factory):
    from neuralop_mp.data.navier_stokes import generate_navier_stokes

    root = tmp_path_factory.mktemp("navier_stokes")
    generate_navier_stokes(root, resolutions=(16,), n_train=32, n_test=16, seed=0, progress=False, t_final=0.5)
    return root


@pytest.fixture(scope="module")
def burgers_root(tmp_path_factory):
    from neuralop_mp.data.burgers import generate_burgers

    root = tmp_path_factory.mktemp("burgers")
    generate_burgers(root, n_train=32, n_test=16, seed=0, progress=False, solver_resolution=128, n_time=9,
                     t_final=0.5)
    return root


def _assert_active(report, *, layer="MixedPrecisionSpectralConv", optimizer_class, phases, dataset, root):
    assert not activation.is_enabled()
    (model,) = report.models
    assert model["layer_types"] == [layer]
    (opt,) = report.optimizers
    assert opt["replaced"] == "neuralop.training.adamw.AdamW"
    assert opt["class"] == optimizer_class and opt["model_matched"]
    (trainer,) = report.trainers
    assert trainer["bases"][0] == "MixedPrecisionTrainer"
    assert report.phases_seen() == phases
    assert [h["skipped_steps"] for h in trainer["history"]] == [0] * len(trainer["history"])
    (data,) = report.datasets
    assert data["dataset"] == dataset and Path(data["root"]) == Path(root)


def test_darcy_script_with_schedule_and_tensorgrad(darcy_root, no_network, capsys):
    result = run_script(
        SCRIPTS / "train_darcy.py",
        TINY + ["--opt.n_epochs", "3", "--data.n_tests", "[16, 16]", "--verbose", "true"],
        schedule="half@1,mixed@2,full", optimizer="tensorgrad", data_root=darcy_root,
        tensorgrad_rank=0.5, tensorgrad_min_params=100,
    )
    assert result.exit_status == 0, result.error
    _assert_active(result.report, optimizer_class="TensorGRaD", phases=["half", "mixed", "full"],
                   dataset="darcy", root=darcy_root)
    history = result.report.trainers[0]["history"]
    assert [h["autocast"] for h in history] == [True, True, False]
    assert no_network == []
    out = capsys.readouterr().out
    # the script's own output is still there, between our header and our summary
    assert out.index("intercepting get_model; Trainer; AdamW") < out.index("### Beginning Training") < out.index(
        "neuralop-mp summary")
    assert "precision phases: half (epoch 0), mixed (epoch 1), full (epoch 2)" in out


def test_navier_stokes_script_in_mixed_bfloat16(ns_root, no_network, tmp_path, capsys):
    report_file = tmp_path / "report.json"
    status = main([
        str(SCRIPTS / "train_navier_stokes.py"), "--mp.precision", "mixed", "--mp.half_dtype", "bfloat16",
        "--mp.data-root", str(ns_root), "--mp.report", str(report_file),
        "--", *TINY, "--opt.n_epochs", "2",
    ])
    assert status == 0
    report = json.loads(report_file.read_text())
    assert report["models"][0]["layer_types"] == ["MixedPrecisionSpectralConv"]
    assert report["models"][0]["precision"] == {"mode": "mixed", "half_dtype": "bfloat16", "stabilizer": None}
    assert report["models"][0]["spectral_weight_dtype"] == "complex64"
    assert report["optimizers"][0]["class"] == "AdamW" and report["optimizers"][0]["kind"] == "adamw"
    assert report["phases_seen"] == ["mixed"]
    assert [h["half_dtype"] for h in report["trainers"][0]["history"]] == ["bfloat16", "bfloat16"]
    assert report["datasets"][0]["dataset"] == "navier_stokes"
    assert no_network == []
    assert "config.navier_stokes_config" not in sys.modules and "config" not in sys.modules


def test_burgers_script_in_half_with_galore_and_complex32_weights(burgers_root, no_network):
    result = run_script(
        SCRIPTS / "train_burgers.py", TINY + ["--opt.n_epochs", "2"],
        precision="half", optimizer="galore", data_root=burgers_root, tensorgrad_min_params=100,
        spectral_weight_dtype="complex32",
    )
    assert result.exit_status == 0, result.error
    _assert_active(result.report, optimizer_class="TensorGRaD", phases=["half"], dataset="burgers",
                   root=burgers_root)
    # "auto" half type on a CPU is bfloat16 (on CUDA: float16)
    expected = "float16" if torch.cuda.is_available() else "bfloat16"
    assert [h["half_dtype"] for h in result.report.trainers[0]["history"]] == [expected, expected]
    assert result.report.models[0]["spectral_weight_dtype"] == "complex32"
    assert no_network == []


def test_missing_data_names_the_files_and_the_command(no_network, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script(SCRIPTS / "train_navier_stokes.py", TINY, precision="mixed", data_root=empty)
    assert result.exit_status == 1 and isinstance(result.error, OfflineDataError)
    message = str(result.error)
    assert "nsforcing_train_16.pt, nsforcing_test_16.pt not found" in message
    assert f"neuralop-mp data navier_stokes --res 16 --root {empty}" in message
    assert no_network == []
    assert "WARNING: no model was built through neuralop.get_model" in capsys.readouterr().out
