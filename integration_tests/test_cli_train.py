"""``neuralop-mp train darcy`` end to end on generated data: summary, results.json, loss curve.

A short version of the quickstart (few samples, 3 epochs, a narrow FNO) in mixed
precision; the full-size run and its accuracy are recorded in docs/configs.md.
"""
import json
import math
from pathlib import Path

import pytest

from neuralop_mp.cli import main

SHORT_RUN = [
    "--data.n_train", "120", "--data.batch_size", "20", "--data.n_tests", "[40,40]",
    "--data.test_batch_sizes", "[40,40]", "--opt.n_epochs", "3", "--opt.step_size", "100",
    "--model.hidden_channels", "16", "--model.n_modes", "[8,8]", "--verbose", "false",
]


def test_train_darcy_mixed_writes_summary_results_and_curve(darcy_root, tmp_path, capsys):
    out = tmp_path / "mixed"
    args = ["train", "darcy", "--data.data_root", str(darcy_root), "--output_dir", str(out),
            "--model.fno_block_precision", "mixed", *SHORT_RUN]
    assert main(args) == 0
    printed = capsys.readouterr().out

    for fragment in ("test rel. L2 @ 16 (train)", "test H1 @ 32 (2x)", "seconds / epoch (training)",
                     "mixed+autocast [epochs 0-2]", "optimizer state", "saved activations / step",
                     str(out)):
        assert fragment in printed, fragment

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"]["fno_block_precision"] == "mixed"
    assert results["config"]["data"]["data_root"] == str(darcy_root)
    assert [h["epoch"] for h in results["history"]] == [0, 1, 2]
    assert {h["precision"] for h in results["history"]} == {"mixed"}
    assert all(h["autocast"] for h in results["history"])
    metrics = results["metrics"]
    assert set(metrics) == {"16_l2", "16_h1", "32_l2", "32_h1"}
    # sane: finite, and better than predicting zero (relative error 1)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["16_l2"] < 0.9 and metrics["32_l2"] < 0.9
    losses = [h["train_loss"] for h in results["history"]]
    assert losses[-1] < losses[0]
    memory = results["memory"]
    assert memory["params_bytes"] > 0 and memory["optimizer_state_bytes"] >= 2 * memory["params_bytes"]
    assert memory["saved_bytes"] > 0
    assert results["skipped_steps"] == 0

    png = Path(results["files"]["loss_curve"])
    assert png == out / "loss_curve.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_train_darcy_half_recipe_complex32_weights_and_tensorgrad(darcy_root, tmp_path, capsys):
    out = tmp_path / "half_recipe"
    args = ["train", "darcy", "--data.data_root", str(darcy_root), "--output_dir", str(out),
            "--model.fno_block_precision", "mixed", "--model.spectral_weight_dtype", "complex32",
            "--opt.optimizer", "tensorgrad", "--opt.tensorgrad_min_params", "100", *SHORT_RUN]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "spectral weights stored in" in printed and "complex32" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["precision"]["spectral_weight_dtype"] == "complex32"
    assert all(math.isfinite(v) and v < 0.9 for v in results["metrics"].values())
    losses = [h["train_loss"] for h in results["history"]]
    assert losses[-1] < losses[0]
    # AdamW keeps at least 2x the parameter bytes (4x for complex32 weights, with fp32 moments);
    # compressed moments of the spectral weights keep the total below 2x
    assert 0 < results["memory"]["optimizer_state_bytes"] < 2 * results["memory"]["params_bytes"]


def test_train_reports_bad_flags_before_touching_data(tmp_path, capsys):
    args = ["train", "darcy", "--data.data_root", str(tmp_path / "never"), "--model.half_dtype", "half"]
    assert main(args) == 2
    assert "model.half_dtype='half'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("config_name, resolutions", [("navier_stokes", (32, 64)), ("burgers", (32, 64))])
def test_navier_stokes_and_burgers_configs_train_on_generated_data(config_name, resolutions, tmp_path, capsys):
    out = tmp_path / config_name
    args = ["train", config_name, "--data.data_root", str(tmp_path / "data"), "--output_dir", str(out),
            "--data.n_train", "16", "--data.batch_size", "8", "--data.n_tests", "[8,8]",
            "--data.test_batch_sizes", "[8,8]", "--opt.n_epochs", "2", "--model.hidden_channels", "8",
            "--model.n_layers", "2", "--verbose", "false"]
    assert main(args) == 0
    assert f"test rel. L2 @ {resolutions[1]} (2x)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {f"{r}_{m}" for r in resolutions for m in ("l2", "h1")}
    assert all(math.isfinite(v) for v in results["metrics"].values())
    assert len(results["history"]) == 2 and (out / "loss_curve.png").exists()
