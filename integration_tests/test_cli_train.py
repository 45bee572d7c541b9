"""``neuralop-mp train darcy`` end to end on generated data: summary, results.json, loss curve.

A short version of the quickstart (few samples, 3 epochs, a narrow FNO) in mixed
precision; the full-size run and its accuracy are recorded in docs/configs.md.
"""
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

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
    # the CPU default keeps every layer but the spectral product in float32 under autocast
    assert results["precision"]["autocast_scope"] == "auto (spectral)" and "autocast scope" in printed
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
    # `train` keeps freed CPU memory in the process by default, and says so (glibc is faked
    # in-process by the repository conftest; tests/test_cpu_allocator.py checks the real one)
    assert results["cpu_allocator"].startswith("freed memory kept in the process")
    assert "CPU memory: freed memory kept" in printed and "--cpu-allocator to change" in printed

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


@pytest.mark.parametrize("recompute, precision", [("fourier", "full"), ("block", "mixed")])
def test_update_in_backward_and_recompute_train_exactly_like_the_ordinary_run(darcy_root, tmp_path, capsys,
                                                                              monkeypatch, recompute, precision):
    """Same math: the final metrics and losses of the two runs are equal, not just close. With
    the mixed-precision layer's product, the spectral weights are stepped in backward from
    their lazily computed gradients."""
    from neuralop_mp.optim.tensorgrad import TensorGRaD

    lazy_steps = []
    step_parameter = TensorGRaD.step_parameter
    monkeypatch.setattr(TensorGRaD, "step_parameter",
                        lambda self, p, grad: (lazy_steps.append(type(grad).__name__), step_parameter(self, p, grad)))
    results = {}
    for name, extra in (("ordinary", []), ("in_backward", ["--opt.update_in_backward", "true",
                                                           "--model.recompute", recompute])):
        out = tmp_path / name
        # one thread for both runs: "auto" follows the load, and two thread counts round differently
        args = ["train", "darcy", "--data.data_root", str(darcy_root), "--output_dir", str(out), "--threads", "1",
                "--opt.optimizer", "tensorgrad", "--opt.tensorgrad_min_params", "100",
                "--opt.tensorgrad_update_proj_gap", "2", *SHORT_RUN, "--opt.n_epochs", "2",
                "--model.fno_block_precision", precision, *extra]
        assert main(args) == 0
        results[name] = json.loads((out / "results.json").read_text())
        printed = capsys.readouterr().out
        peak = results[name]["memory"]["step_peak_bytes"]
        # the measured peak of a real step holds at least the weights and is in the summary table
        assert peak > results[name]["memory"]["params_bytes"]
        assert "peak tensor memory / step" in printed
    assert results["in_backward"]["config"]["opt"]["update_in_backward"] is True
    assert results["in_backward"]["config"]["model"]["recompute"] == recompute
    if precision == "mixed":
        assert lazy_steps and set(lazy_steps) == {"LazyWeightGradient"}
    else:  # "full" without a schedule builds upstream's own layer: every gradient is an ordinary one
        assert lazy_steps == []
    assert results["in_backward"]["metrics"] == results["ordinary"]["metrics"]
    assert ([h["train_loss"] for h in results["in_backward"]["history"]]
            == [h["train_loss"] for h in results["ordinary"]["history"]])


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


# ---------------------------------------------------------------- run folder, eval, resume
TINY_RUN = [
    "--data.n_train", "64", "--data.batch_size", "16", "--data.n_tests", "[32,32]",
    "--data.test_batch_sizes", "[16,16]", "--model.hidden_channels", "8", "--model.n_layers", "2",
    "--model.n_modes", "[6,6]", "--opt.step_size", "2", "--verbose", "false",
]


@pytest.mark.filterwarnings("error:.*received unexpected keyword arguments")
def test_train_then_eval_reproduces_the_final_metrics_exactly(darcy_root, tmp_path, capsys):
    """half on CPU: reported as running as mixed; the run folder holds upstream-format models
    (final and best) that `eval` reads back to the same errors, bit for bit."""
    from neuralop.models import FNO

    import neuralop_mp
    from neuralop_mp.evaluate import run_evaluation

    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(darcy_root), "--output_dir", str(out),
                 "--model.fno_block_precision", "half", "--opt.n_epochs", "4", "--save_best", *TINY_RUN]) == 0
    printed = capsys.readouterr().out
    assert "| precision as run " in printed and "half: runs as mixed on CPU, fp32 FFT" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["precision"]["phases"][0]["ran_as"].startswith("half: runs as mixed on CPU, fp32 FFT")
    # the spectral kernel chosen on this device is reported, not silent
    assert results["precision"]["product_paths"] and results["precision"]["product_paths"][0].startswith("half: ")
    assert "| spectral product path " in printed
    # so is the tiling of the pointwise work (the plugin's model tiles by default)
    assert results["pointwise_work"].startswith("tiles of at most 16384 grid points on CPU")
    assert "| pointwise work " in printed

    # the final model, in upstream's save_checkpoint format, with its precision
    saved = neuralop_mp.load_model(out, "model")
    assert isinstance(saved, FNO)
    assert isinstance(saved.fno_blocks.convs[0], neuralop_mp.MixedPrecisionSpectralConv)
    policy = neuralop_mp.get_precision_policy(saved)
    assert policy.fno_block_precision == "half" and policy.half_dtype == "auto"
    # the best model is the epoch with the lowest test L2 at the training resolution
    l2 = [h["16_l2"] for h in results["history"]]
    assert results["best"] == {"metric": "16_l2", "value": min(l2), "epoch": l2.index(min(l2))}
    assert (out / "best_model_state_dict.pt").is_file() and (out / "best_model_metadata.pkl").is_file()

    assert main(["eval", str(out)]) == 0
    table = capsys.readouterr().out
    for key, value in results["metrics"].items():
        res, loss = key.split("_")
        label = f"test {'rel. L2' if loss == 'l2' else 'H1'} @ {res}"
        assert re.search(rf"\| {re.escape(label)} .*\| {value:.4g} ", table), (label, table)
    evaluated = run_evaluation(out, progress=False, log=lambda *a: None)
    assert evaluated["metrics"] == results["metrics"]  # exactly: same weights, data, precision, batches
    assert evaluated["precision"]["mode"] == "half" and evaluated["precision"]["autocast"]

    best = run_evaluation(out / "best_model_state_dict.pt", progress=False, log=lambda *a: None)
    assert best["metrics"]["16_l2"] == results["best"]["value"]


def test_eval_reads_a_checkpoint_of_upstreams_plain_fno(darcy_root, tmp_path, capsys):
    from neuralop.losses import LpLoss
    from neuralop.models import FNO

    from neuralop_mp.data import load_darcy

    torch.manual_seed(1)
    model = FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    model.save_checkpoint(tmp_path / "ckpt", "fno")
    data = ["--data.data_root", str(darcy_root), "--data.n_train", "64", "--data.n_tests", "[32]",
            "--data.test_batch_sizes", "[16]"]
    json_path = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "ckpt" / "fno_state_dict.pt"), "--res", "16", "--json", str(json_path),
                 *data]) == 0
    evaluated = json.loads(json_path.read_text())
    assert evaluated["precision"]["mode"] == "full" and evaluated["test_resolutions"] == [16]

    # the same error computed by hand, with the loader's normalizer
    _, loaders, processor = load_darcy(data_root=darcy_root, n_train=64, n_tests=[32], test_resolutions=[16],
                                       test_batch_sizes=[16], progress=False)
    model.eval()
    processor.eval()
    total = 0.0
    with torch.no_grad():
        for batch in loaders[16]:
            sample = processor.preprocess(batch)
            out, sample = processor.postprocess(model(sample["x"]), sample)
            total += float(LpLoss(d=2)(out, sample["y"]))
    assert evaluated["metrics"]["16_l2"] == pytest.approx(total / 32, rel=1e-6)

    # in mixed precision the upstream model is rebuilt with the mixed-precision layer
    assert main(["eval", str(tmp_path / "ckpt"), "--res", "16", "--precision", "mixed", "--json", str(json_path),
                 *data]) == 0
    mixed = json.loads(json_path.read_text())
    assert mixed["precision"]["ran_as"].startswith("mixed: fp32 FFT, bfloat16 contraction")
    # bfloat16 keeps ~3 digits: the error moves, but far less than the error itself
    assert mixed["metrics"]["16_l2"] != evaluated["metrics"]["16_l2"]
    assert mixed["metrics"]["16_l2"] == pytest.approx(evaluated["metrics"]["16_l2"], rel=0.05)


@pytest.mark.slow  # a training process of its own: the end-to-end tier
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="'keep' needs glibc")
def test_a_real_train_process_keeps_freed_memory_by_default(darcy_root, tmp_path):
    """The in-process tests fake glibc (conftest); here `neuralop-mp train` sets the real malloc."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "neuralop_mp.cli", "train", "darcy", "--data.data_root",
                           str(darcy_root), "--opt.n_epochs", "1", *TINY_RUN, "--output_dir", str(out),
                           "--threads", "1"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((out / "results.json").read_text())["cpu_allocator"]
    assert recorded.startswith("freed memory kept in the process")
    assert f"CPU memory: {recorded} (--cpu-allocator to change)" in done.stdout


def test_resume_reuses_the_runs_threads_and_cpu_allocator_unless_given_again(darcy_root, tmp_path):
    out = tmp_path / "run"
    # 3 threads: more than this 2-core machine's default, so only the recorded flag gives it
    args = ["train", "darcy", "--data.data_root", str(darcy_root), "--output_dir", str(out), "--opt.n_epochs", "1",
            *TINY_RUN, "--threads", "3", "--cpu-allocator", "system"]
    assert main(args) == 0
    recorded = json.loads((out / "command.json").read_text())["flags"]
    assert recorded["threads"] == "3" and recorded["cpu_allocator"] == "system"
    # one more epoch, no --threads / --cpu-allocator given: the run's own are used again
    torch.set_num_threads(1)
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert resumed["threads"] == 3 and resumed["cpu_allocator"] == "malloc as the system configures it"
    # given again, a flag wins over the recorded one
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "3", "--threads", "1"]) == 0
    assert json.loads((out / "results.json").read_text())["threads"] == 1


@pytest.mark.slow  # three training processes, one killed: the end-to-end tier
def test_sigkill_mid_run_then_resume_is_bitwise_identical(darcy_root, tmp_path):
    """A real `neuralop-mp train` process killed with SIGKILL after its first checkpoint,
    resumed with --resume, ends with exactly the weights of an uninterrupted run."""
    args = ["--data.data_root", str(darcy_root), "--model.fno_block_precision", "mixed",
            "--opt.n_epochs", "5", "--data.n_train", "160", *TINY_RUN[2:]]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", "darcy", *args, "--output_dir", str(straight), "--threads", "1"]) == 0

    env = dict(os.environ, PYTHONWARNINGS="ignore")
    process = subprocess.Popen([sys.executable, "-m", "neuralop_mp.cli", "train", "darcy", *args,
                                "--output_dir", str(killed), "--threads", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    manifest = killed / "checkpoint" / "manifest.pt"
    deadline = time.monotonic() + 120
    while not manifest.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    # the manifest is the last file of a checkpoint: the process is now training epoch 1
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "results.json").exists() and not (killed / "model_state_dict.pt").exists()
    saved_epoch = torch.load(manifest, weights_only=True)["epoch"]
    assert 0 <= saved_epoch < 4

    assert main(["train", "--resume", str(killed), "--threads", "1"]) == 0
    resumed = json.loads((killed / "results.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == list(range(5))
    expected = torch.load(straight / "model_state_dict.pt", weights_only=False)
    got = torch.load(killed / "model_state_dict.pt", weights_only=False)
    expected.pop("_metadata"), got.pop("_metadata")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed["metrics"] == json.loads((straight / "results.json").read_text())["metrics"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_fails_before_any_work(tmp_path, capsys):
    data_root = tmp_path / "never"
    assert main(["train", "darcy", "--device", "cuda", "--data.data_root", str(data_root),
                 "--output_dir", str(tmp_path / "out")]) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err
    assert not data_root.exists() and not (tmp_path / "out").exists()


def test_unwritable_output_dir_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    data_root = tmp_path / "never"
    assert main(["train", "darcy", "--output_dir", str(tmp_path / "a_file" / "run"),
                 "--data.data_root", str(data_root)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not data_root.exists()


def test_missing_data_folder_names_the_command_that_generates_it(tmp_path, capsys):
    missing = tmp_path / "no_data"
    assert main(["train", "darcy", "--data.data_root", str(missing), "--data.generate", "false",
                 "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp train: error: data: Missing data files:")
    assert f"neuralop-mp data darcy --root {missing} --res 16 32" in err


# ---------------------------------------------------------------- command.json after a resume, from another folder
NANO_RUN = [
    "--data.n_train", "8", "--data.batch_size", "4", "--data.n_tests", "[4]", "--data.test_resolutions", "[16]",
    "--data.test_batch_sizes", "[4]", "--data.generate", "false", "--model.hidden_channels", "4",
    "--model.n_layers", "1", "--model.n_modes", "[4,4]", "--verbose", "false", "--threads", "1",
]


@pytest.fixture(scope="module")
def nano_root(tmp_path_factory):
    """darcy_{train,test}_16.pt with 8 and 4 samples: a training epoch takes a fraction of a second."""
    from neuralop_mp.data.darcy import generate_darcy

    root = tmp_path_factory.mktemp("nano_darcy")
    generate_darcy(root, resolutions=(16,), n_train=8, n_test=4, seed=0, progress=False)
    return root


def test_overrides_given_with_resume_are_recorded_for_eval_and_a_later_resume(nano_root, tmp_path, capsys):
    """`train --resume DIR --opt.n_epochs 2 --opt.precision_schedule ...` trains with the new settings, and
    command.json says so: `eval` rebuilds the run's final precision and a later `--resume` its n_epochs."""
    from neuralop_mp.evaluate import run_evaluation

    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--opt.precision_schedule", "full@1,mixed"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [h["precision"] for h in results["history"]] == ["full", "mixed"]
    overrides = json.loads((out / "command.json").read_text())["overrides"]
    recorded = dict(zip(overrides[::2], overrides[1::2]))
    assert recorded["--opt.n_epochs"] == "2" and recorded["--opt.precision_schedule"] == "full@1,mixed"
    assert overrides.count("--opt.n_epochs") == 1  # one value per key: the later one

    evaluated = run_evaluation(out, progress=False, log=lambda *a: None)
    assert evaluated["precision"]["mode"] == "mixed"
    assert evaluated["metrics"] == results["metrics"]

    # a plain --resume (as after a kill) continues the run as it now is: 2 epochs, finished
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["config"]["opt"]["n_epochs"] == 2 and len(again["history"]) == 2
    assert again["metrics"] == results["metrics"]


def test_a_resume_whose_overrides_do_not_fit_the_checkpoint_keeps_the_previous_command(nano_root, tmp_path, capsys):
    """The checkpoint's refusal is reported as a CLI error (exit 2, no traceback)."""
    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    before = (out / "command.json").read_text()
    capsys.readouterr()
    # another optimizer class: the checkpoint's optimizer state is refused by name
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--opt.optimizer", "tensorgrad"]) == 2
    err = capsys.readouterr().err
    assert "optimizer" in err and "Traceback" not in err
    assert (out / "command.json").read_text() == before  # nothing trained with them


def test_a_relative_config_file_and_data_root_work_from_another_folder(nano_root, tmp_path, monkeypatch, capsys):
    """command.json holds absolute paths: `eval` and `--resume` run from anywhere."""
    import shutil

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    shutil.copytree(nano_root, here / "data")
    elsewhere.mkdir()
    (here / "my_config.py").write_text(
        "from neuralop_mp.configs import DarcyConfig\n\nclass Tiny(DarcyConfig):\n    name: str = 'tiny'\n")
    monkeypatch.chdir(here)
    assert main(["train", "my_config.py:Tiny", "--data.data_root", "data", "--output_dir", "run",
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    trained = json.loads((here / "run" / "results.json").read_text())["metrics"]
    monkeypatch.chdir(elsewhere)
    json_path = elsewhere / "eval.json"
    assert main(["eval", str(here / "run"), "--json", str(json_path)]) == 0, capsys.readouterr().err
    assert json.loads(json_path.read_text())["metrics"] == trained
    assert main(["train", "--resume", str(here / "run"), "--opt.n_epochs", "2"]) == 0, capsys.readouterr().err
    assert len(json.loads((here / "run" / "results.json").read_text())["history"]) == 2
    assert not (elsewhere / "data").exists() and not (elsewhere / "run").exists()


def test_a_resume_with_other_optimizer_or_scheduler_settings_is_refused_and_keeps_the_command(
        nano_root, tmp_path, capsys):
    """The checkpoint's optimizer and scheduler states carry the saved settings: an override of one
    given with --resume would be ignored while recorded as applied, so it is refused, naming it."""
    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    before = (out / "command.json").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--opt.learning_rate", "0.05",
                 "--opt.step_size", "7"]) == 2
    err = capsys.readouterr().err
    assert "opt.learning_rate=0.05 given, 0.005 saved" in err and "opt.step_size=7 given, 4 saved" in err
    assert (out / "command.json").read_text() == before
    assert len(json.loads((out / "results.json").read_text())["history"]) == 1  # nothing trained
    # the saved values (or none) resume as before
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--opt.learning_rate", "0.005"]) == 0
    assert len(json.loads((out / "results.json").read_text())["history"]) == 2


def test_save_best_without_a_test_at_the_training_resolution_is_refused_before_loading_data(tmp_path, capsys):
    data_root = tmp_path / "never"
    assert main(["train", "darcy", "--data.data_root", str(data_root), "--output_dir", str(tmp_path / "out"),
                 "--data.test_resolutions", "[32]", "--data.n_tests", "[4]", "--data.test_batch_sizes", "[4]",
                 "--save_best"]) == 2
    err = capsys.readouterr().err
    assert "data.train_resolution=16" in err and "data.test_resolutions=[32]" in err
    assert not data_root.exists()


def _worse_from_epoch(monkeypatch, first_bad_epoch):
    """Epochs from ``first_bad_epoch`` on train with a learning rate that makes the model worse."""
    from neuralop_mp.run_trainer import RunFolderTrainer

    on_epoch_start = RunFolderTrainer.on_epoch_start

    def worse(self, epoch):
        on_epoch_start(self, epoch)
        if epoch >= first_bad_epoch:
            for group in self.optimizer.param_groups:
                group["lr"] = 50.0

    monkeypatch.setattr(RunFolderTrainer, "on_epoch_start", worse)


def test_eval_of_the_best_model_runs_in_the_precision_of_the_best_epoch(nano_root, tmp_path, monkeypatch):
    """A best epoch in a "half" phase of a half-then-full run: eval reports "half" (not the run's last
    phase) and the training-time evaluation of that epoch, bit for bit; also from a killed run's
    checkpoint history when results.json is missing."""
    from neuralop_mp.evaluate import run_evaluation

    out = tmp_path / "run"
    _worse_from_epoch(monkeypatch, 2)
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "4", "--opt.precision_schedule", "half@2,full", "--save_best", *NANO_RUN]) == 0
    results = json.loads((out / "results.json").read_text())
    best = results["best"]
    assert best["epoch"] < 2 and results["history"][-1]["precision"] == "full"
    for killed in (False, True):
        if killed:  # a run killed before writing results.json: the best epoch from its checkpoint's history
            (out / "results.json").unlink()
        evaluated = run_evaluation(out / "best_model_state_dict.pt", progress=False, log=lambda *a: None)
        assert evaluated["precision"]["mode"] == "half"
        assert evaluated["metrics"]["16_l2"] == best["value"]


def test_save_best_given_first_at_a_resume_lists_no_best_model_that_was_never_written(
        nano_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    _worse_from_epoch(monkeypatch, 1)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "3", "--save_best"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["best"]["epoch"] == 0
    assert not (out / "best_model_state_dict.pt").exists()
    assert "best_model" not in results["files"]
    assert "the best epoch (0" in printed and "came before --save_best" in printed


def test_eval_of_a_standalone_checkpoint_keeps_its_saved_stabilizer_and_half_dtype(nano_root, tmp_path):
    """No command.json: the model runs as its file records it (tanh, float16), as the trainer
    evaluates the loaded model without a schedule."""
    from neuralop.losses import LpLoss

    import neuralop_mp
    from neuralop_mp.configs import load_config
    from neuralop_mp.evaluate import run_evaluation
    from neuralop_mp.run_folder import load_model_and_precision, save_model
    from neuralop_mp.train_pipeline import build_data, build_trainer

    out = tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN]) == 0
    model, _ = load_model_and_precision(out / "model_state_dict.pt", mixed_precision_layer=True)
    neuralop_mp.set_precision(model, "half", half_dtype="float16", stabilizer="tanh")
    save_model(model, tmp_path / "solo", "mine")
    overrides = ["--data.data_root", str(nano_root), *NANO_RUN[:-2]]  # all but --threads
    evaluated = run_evaluation(tmp_path / "solo" / "mine_state_dict.pt", overrides=overrides, progress=False,
                               log=lambda *a: None)
    assert {k: evaluated["precision"][k] for k in ("mode", "stabilizer", "half_dtype", "autocast")} == \
        {"mode": "half", "stabilizer": "tanh", "half_dtype": "float16", "autocast": False}

    loaded, _ = load_model_and_precision(tmp_path / "solo" / "mine_state_dict.pt")
    config = load_config("darcy", overrides)
    _, test_loaders, data_processor = build_data(config, progress=False)
    trainer = build_trainer(config, loaded, data_processor, None, progress=False)
    trainer.on_epoch_start(0)
    expected = trainer.evaluate({"l2": LpLoss(d=2)}, test_loaders[16], log_prefix="16")["16_l2"]
    assert evaluated["metrics"]["16_l2"] == float(expected)


def _nano_run(nano_root, out, *extra):
    assert main(["train", "darcy", "--data.data_root", str(nano_root), "--output_dir", str(out),
                 "--opt.n_epochs", "1", *NANO_RUN, *extra]) == 0


def test_a_resume_with_another_architecture_is_refused_before_any_data_naming_the_keys(
        nano_root, tmp_path, capsys, monkeypatch):
    """--resume with --model.* (or --model CLASS) values that change the saved architecture: one line naming
    each key, given and saved, before the data loads; the precision keys may change (and train)."""
    from neuralop_mp import train_pipeline

    out = tmp_path / "run"
    _nano_run(nano_root, out)
    before = (out / "command.json").read_text()
    build_data = train_pipeline.build_data
    monkeypatch.setattr(train_pipeline, "build_data", lambda *a, **k: pytest.fail("data loaded"))
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--model.n_layers", "2", "--model.hidden_channels", "4",
                 "--model.fno_block_precision", "mixed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.n_layers=2 given, 1 saved" in err
    assert "hidden_channels" not in err and "fno_block_precision" not in err  # unchanged / allowed
    assert main(["train", "--resume", str(out), "--model", "TFNOConfig"]) == 2
    assert "model='TFNOConfig' given, 'FNOConfig' saved" in capsys.readouterr().err
    assert (out / "command.json").read_text() == before

    monkeypatch.setattr(train_pipeline, "build_data", build_data)
    # keys without weights of their own may change too: the checkpoint loads
    assert main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--model.fno_block_precision", "mixed",
                 "--model.channel_mlp_dropout", "0.1", "--model.domain_padding", "0.25"]) == 0
    assert [h["precision"] for h in json.loads((out / "results.json").read_text())["history"]] == ["full", "mixed"]


def test_a_resume_given_a_relative_folder_records_absolute_paths(nano_root, tmp_path, monkeypatch):
    _nano_run(nano_root, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "run", "--opt.n_epochs", "2"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["output_dir"] == str(tmp_path / "run")
    assert results["files"] and all(Path(f).is_absolute() for f in results["files"].values())


def test_eval_refuses_model_overrides_and_bad_paths_before_evaluating(nano_root, tmp_path, capsys, monkeypatch):
    """`eval` names --model.* / --model given to it (the model comes from the checkpoint), a --json whose folder
    is missing and a data root blocked by a file, in one line, before anything is evaluated."""
    from neuralop_mp import evaluate

    out = tmp_path / "run"
    _nano_run(nano_root, out, "--model.fno_block_precision", "mixed")  # recorded model keys still apply
    blocker = tmp_path / "afile"
    blocker.write_text("")
    capsys.readouterr()
    for args, expected in [
        (["--model.n_modes", "[2,2]", "--model.fno_block_precision", "half"],
         "--model.n_modes, --model.fno_block_precision cannot be given to eval"),
        (["--model=TFNOConfig"], "--model cannot be given to eval"),
        (["--json", str(tmp_path / "missing" / "x.json")], f"The folder of --json '{tmp_path / 'missing'}' is not writable"),
    ]:
        monkeypatch.setattr(evaluate, "evaluate_with_config", lambda *a, **k: pytest.fail("evaluated"))
        assert main(["eval", str(out), *args]) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and expected in captured.err and not captured.out
    monkeypatch.undo()
    assert main(["eval", str(out), "--data.data_root", str(blocker), "--data.generate", "true"]) == 2
    assert f"Data folder '{blocker}' is a file, not a folder" in capsys.readouterr().err
    assert main(["eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["precision"]["mode"] == "mixed"


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_ctrl_c_names_the_last_saved_epoch_and_the_resume_command(nano_root, tmp_path):
    """SIGINT to a real `neuralop-mp train`: one line with the checkpoint's last epoch and the exact
    `--resume` command, exit 130; that command then finishes the run."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    process = subprocess.Popen([sys.executable, "-m", "neuralop_mp.cli", "train", "darcy", "--data.data_root",
                                str(nano_root), "--output_dir", str(out), "--opt.n_epochs", "400", *NANO_RUN],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    manifest = out / "checkpoint" / "manifest.pt"

    def saved_epoch():  # the checkpoint folder is swapped in as a whole: read between swaps
        try:
            return torch.load(manifest, weights_only=True)["epoch"]
        except (OSError, RuntimeError, EOFError):
            return None

    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and not (saved_epoch() or 0) >= 1:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]  # still training when interrupted
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    saved = torch.load(manifest, weights_only=True)["epoch"]
    assert 1 <= saved < 399
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert line == (f"neuralop-mp train: interrupted; {out / 'checkpoint'} holds epoch {saved}, the last saved. "
                    f"Continue with: neuralop-mp train --resume {out}")
    assert main(["train", "--resume", str(out), "--opt.n_epochs", str(saved + 2)]) == 0
    history = json.loads((out / "results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(saved + 2))
