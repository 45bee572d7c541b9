"""neuraloperator 2.0.0's real training scripts, unmodified, under ``neuralop-mp run``.

Each test copies upstream's ``scripts/`` and ``config/`` (fixture
``upstream_scripts``), runs one script from inside the copied ``scripts/`` as a
user would (``cd scripts && neuralop-mp run train_darcy.py ...``), in process,
with the network blocked, on data our generators wrote in upstream's file
layouts. The script's own flags (``--distributed``, ``--wandb``) stay at
upstream's defaults; only sizes are made tiny through the script's own zencfg
command line. Under zencfg 0.7 upstream's model configs accept ``--model.*``
overrides only together with ``--model.arch`` (their ``arch`` field has no
default), hence ``--model.arch fno`` in ``TINY_MODEL``.

Each test asserts from the activation report that the plugin really was active
(the model has the mixed-precision layer, the trainer went through the requested
phases, data came from our folder) and that the epochs ran with finite metrics.
"""
import json
import math
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from neuralop_mp.runner import activation
from neuralop_mp.runner.cli import main, run_script
from neuralop_mp.runner.offline import OfflineDataError
from neuralop_mp.training.loss_scaling import ComplexGradScaler

TINY_MODEL = ["--model.arch", "fno", "--model.n_modes", "[8,8]", "--model.hidden_channels", "8",
              "--model.n_layers", "2"]
TINY = ["--verbose", "false", "--data.n_train", "32", "--data.batch_size", "16", *TINY_MODEL]
TINY_DARCY = TINY + ["--data.n_tests", "[16,16]"]
TINY_NAVIER_STOKES = TINY + ["--data.train_resolution", "16", "--data.test_resolutions", "[16]",
                             "--data.n_tests", "[16]", "--data.test_batch_sizes", "[16]"]
TINY_BURGERS = TINY + ["--data.n_tests", "[16]"]


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


@pytest.fixture
def in_scripts(upstream_scripts, monkeypatch):
    """Work from inside the copied ``scripts/`` folder (upstream finds ``../config`` from there)."""
    monkeypatch.chdir(upstream_scripts)
    return upstream_scripts


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


def _assert_ran_with_plugin(report, *, epochs, phases, dataset, root, optimizer_class=None,
                            layer="MixedPrecisionSpectralConv"):
    """The plugin's layer, trainer, optimizer (``optimizer_class``; None: upstream's AdamW kept, as
    without --mp.optimizer) and offline data were used; every epoch ran, metrics finite."""
    assert not activation.is_enabled()
    report = report if isinstance(report, dict) else report.to_dict()
    (model,) = report["models"]
    assert model["layer_types"] == [layer]
    if optimizer_class is None:
        assert report["optimizers"] == []
    else:
        (optimizer,) = report["optimizers"]
        assert optimizer["replaced"] == "neuralop.training.adamw.AdamW"
        assert optimizer["class"] == optimizer_class and optimizer["model_matched"]
    (trainer,) = report["trainers"]
    assert trainer["bases"][0] == "MixedPrecisionTrainer"
    history = trainer["history"]
    assert [h["epoch"] for h in history] == list(range(epochs))
    assert report["phases_seen"] == phases
    # No step skipped, except while float16 loss scaling (CUDA) finds its scale: it starts at
    # 2^16 and halves at each overflowing step, so there each skip is one halving (no growth
    # in a few steps) and the lowest scale seen is 2^16 / 2^skips. Without scaling (bfloat16,
    # the CPU) no step may be skipped at all.
    skips = sum(h["skipped_steps"] for h in history)
    scales = [h["loss_scale"] for h in history if h.get("loss_scale") not in (None, 1.0)]
    assert skips == 0 or (scales and min(scales) * 2**skips == ComplexGradScaler().init_scale), (skips, scales)
    metrics = {k: v for k, v in history[-1].items() if k.endswith(("_l2", "_h1"))}
    assert metrics, f"no evaluation metric in the last epoch: {sorted(history[-1])}"
    for name, value in {**metrics, "train_loss": history[-1]["train_loss"]}.items():
        assert math.isfinite(value), f"{name} = {value}"
    (data,) = report["datasets"]
    assert data["dataset"] == dataset and data["root"] == str(root)
    # upstream's config package (imported from the copy) does not outlive the run
    assert "config" not in sys.modules


def test_upstream_train_darcy_in_mixed_precision(in_scripts, darcy_root, no_network, capsys):
    result = run_script("train_darcy.py", TINY_DARCY + ["--opt.n_epochs", "2"], precision="mixed",
                        data_root=darcy_root)
    assert result.exit_status == 0, result.error
    _assert_ran_with_plugin(result.report, epochs=2, phases=["mixed"], dataset="darcy", root=darcy_root)
    assert result.report.models[0]["precision"]["mode"] == "mixed"
    assert no_network == []
    out = capsys.readouterr().out
    assert out.index("intercepting get_model; Trainer; AdamW kept as upstream's; load_darcy_flow_small") < out.index(
        "neuralop-mp summary")
    summary = out.split("neuralop-mp summary")[1]
    half = "float16" if torch.cuda.is_available() else "bfloat16"  # upstream's script trains on the GPU if any
    assert f"precision phases: mixed+autocast in {half} (epochs 0-1)" in summary, summary
    assert f"precision as run: mixed: fp32 FFT, {half} contraction" in summary, summary
    assert "optimizer: the script's own (upstream neuralop.training.AdamW is kept" in summary, summary


def test_upstream_train_darcy_runs_the_pointwise_work_in_tiles_where_they_engage(in_scripts, darcy_root, no_network,
                                                                                capsys):
    # 32 samples of 32^2 per batch: 32768 grid points, two tiles of the default 16384 on CPU, in
    # training (with backward) and in the last evaluation (the 32^2 test set, batches of 32)
    args = [*TINY, "--data.train_resolution", "32", "--data.batch_size", "32", "--data.n_tests", "[16,32]",
            "--data.test_batch_sizes", "[16,32]", "--opt.n_epochs", "2"]
    result = run_script("train_darcy.py", args, precision="mixed", data_root=darcy_root)
    assert result.exit_status == 0, result.error
    _assert_ran_with_plugin(result.report, epochs=2, phases=["mixed"], dataset="darcy", root=darcy_root)
    work = result.report.models[0]["pointwise_work"]
    if torch.cuda.is_available():  # upstream's script trains on the GPU: whole grid, lifting/projection recompute
        assert work == ("tiles of at most 16384 grid points on CPU; lifting and projection recompute their hidden "
                        "activation in backward (not on CPU); last forward: whole grid at once (it fit in one "
                        "tile, or it ran off the CPU, where tiles do not apply)"), work
    else:
        # the default autocast scope keeps the pointwise layers in float32 on a CPU
        assert work == ("tiles of at most 16384 grid points on CPU; 1x1 convolutions as float32 matrix products; "
                        "last forward: up to 2 tiles per layer"), work
    assert f"pointwise work: {work}" in capsys.readouterr().out


def test_upstream_train_navier_stokes_in_mixed_bfloat16_through_the_cli(in_scripts, ns_root, no_network, tmp_path):
    report_file = tmp_path / "report.json"
    status = main([
        "train_navier_stokes.py", "--mp.precision", "mixed", "--mp.half_dtype", "bfloat16",
        "--mp.data-root", str(ns_root), "--mp.report", str(report_file),
        "--", *TINY_NAVIER_STOKES, "--opt.n_epochs", "2",
    ])
    assert status == 0
    report = json.loads(report_file.read_text())
    _assert_ran_with_plugin(report, epochs=2, phases=["mixed"], dataset="navier_stokes", root=ns_root)
    assert report["models"][0]["precision"] == {"mode": "mixed", "half_dtype": "bfloat16", "stabilizer": None}
    assert [h["half_dtype"] for h in report["trainers"][0]["history"]] == ["bfloat16", "bfloat16"]
    assert no_network == []


def test_upstream_train_burgers_in_mixed_precision(in_scripts, burgers_root, no_network):
    result = run_script("train_burgers.py", TINY_BURGERS + ["--opt.n_epochs", "2"], precision="mixed",
                        data_root=burgers_root)
    assert result.exit_status == 0, result.error
    _assert_ran_with_plugin(result.report, epochs=2, phases=["mixed"], dataset="burgers", root=burgers_root)
    assert no_network == []


def test_upstream_train_darcy_with_tensorgrad_and_a_precision_schedule(in_scripts, darcy_root, no_network, capsys):
    result = run_script(
        "train_darcy.py", TINY_DARCY + ["--opt.n_epochs", "3"],
        schedule="half@1,mixed@2,full", optimizer="tensorgrad", data_root=darcy_root,
        tensorgrad_rank=0.5, tensorgrad_min_params=100,
    )
    assert result.exit_status == 0, result.error
    _assert_ran_with_plugin(result.report, epochs=3, phases=["half", "mixed", "full"], dataset="darcy",
                            root=darcy_root, optimizer_class="TensorGRaD")
    history = result.report.trainers[0]["history"]
    assert [h["autocast"] for h in history] == [True, True, False]
    assert no_network == []
    half = "float16" if torch.cuda.is_available() else "bfloat16"  # upstream's script trains on the GPU if any
    out = capsys.readouterr().out
    assert (f"precision phases: half+autocast in {half} (epoch 0), mixed+autocast in {half} (epoch 1), "
            "full (epoch 2)") in out, out
    assert ("optimizer: upstream neuralop.training.AdamW replaced by TensorGRaD (tensorgrad) because "
            "--mp.optimizer=tensorgrad") in out, out


@pytest.mark.parametrize("precision", ["full", "half"])
def test_upstream_train_burgers_in_full_and_half_precision(in_scripts, burgers_root, no_network, precision):
    # the config's own autocast flag on: --mp.precision's schedule decides autocast, and says so where it differs
    result = run_script("train_burgers.py", TINY_BURGERS + ["--opt.n_epochs", "1", "--opt.mixed_precision", "true"],
                        precision=precision, data_root=burgers_root)
    assert result.exit_status == 0, result.error
    # "full" without a schedule builds exactly upstream's model; the trainer is still ours
    layer = "SpectralConv" if precision == "full" else "MixedPrecisionSpectralConv"
    _assert_ran_with_plugin(result.report, epochs=1, phases=[precision], dataset="burgers", root=burgers_root,
                            layer=layer)
    autocast = [h["autocast"] for h in result.report.trainers[0]["history"]]
    assert autocast == [precision != "full"]
    overruled = [n for n in result.report.notes if "mixed_precision=True is overruled" in n]
    assert overruled == ([] if precision == "half" else [
        "mixed_precision=True is overruled by the precision schedule 'full': with a schedule its phases decide "
        "autocast, and it is off in full. To autocast there, say so in the schedule (e.g. 'full/autocast')."])


def test_missing_data_names_the_files_and_the_command(in_scripts, no_network, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("train_navier_stokes.py", TINY_NAVIER_STOKES, precision="mixed", data_root=empty)
    assert result.exit_status == 1 and isinstance(result.error, OfflineDataError)
    message = str(result.error)
    assert "nsforcing_train_16.pt, nsforcing_test_16.pt not found" in message
    # with the samples the script asks for (--data.n_train 32, --data.n_tests [16])
    assert f"neuralop-mp data navier_stokes --root {empty} --res 16 --n-train 32 --n-test 16\n" in message
    assert no_network == []


RUN = {"train_darcy.py", "train_navier_stokes.py", "train_burgers.py", "train_burgers_pino.py"}


def test_every_upstream_script_either_runs_or_is_refused_up_front(in_scripts, capsys):
    from neuralop_mp.runner.upstream_scripts import REFUSED

    scripts = {p.name for p in in_scripts.glob("*.py")}
    assert scripts == RUN | set(REFUSED), "classify new upstream scripts in neuralop_mp.runner.upstream_scripts"
    for name in sorted(REFUSED):
        assert main([name, "--mp.precision", "mixed"]) == 2, name
        captured = capsys.readouterr()
        assert f"{name} is one of neuraloperator's own scripts that neuralop-mp run does not run" in captured.err
        assert REFUSED[name].reason in captured.err
        assert "with the plugin enabled" not in captured.out  # refused before the script starts


def test_upstream_train_burgers_pino_runs_with_the_mixed_precision_layer(in_scripts, burgers_root, no_network,
                                                                        capsys):
    result = run_script("train_burgers_pino.py", TINY_BURGERS + ["--opt.n_epochs", "1"], precision="mixed",
                        data_root=burgers_root)
    assert result.exit_status == 0, result.error
    (model,) = result.report.models
    assert model["layer_types"] == ["MixedPrecisionSpectralConv"] and model["precision"]["mode"] == "mixed"
    assert result.report.trainers == []  # its own training loop: no schedule, said before it starts
    assert "never creates neuralop.Trainer" in capsys.readouterr().out
    assert no_network == []


def test_asking_for_more_samples_than_the_files_hold_is_said_with_the_command_for_more(in_scripts, no_network,
                                                                                       tmp_path, capsys):
    from neuralop_mp.data.cli import build_parser
    from neuralop_mp.data.darcy import generate_darcy

    root = tmp_path / "small_darcy"
    generate_darcy(root, resolutions=(16, 32), n_train=8, n_test=4, seed=0, progress=False)
    args = [*TINY_MODEL, "--verbose", "false", "--data.n_train", "1000", "--data.batch_size", "4",
            "--data.n_tests", "[50,4]", "--data.test_batch_sizes", "[4,4]", "--opt.n_epochs", "1"]
    result = run_script("train_darcy.py", args, precision="mixed", data_root=root)
    assert result.exit_status == 0, result.error
    # each writes that file alone, with the physics the files record
    commands = [f"neuralop-mp data darcy --root {root} --res 16 --n-train 1000 --n-test 0 --face-average harmonic",
                f"neuralop-mp data darcy --root {root} --res 16 --n-train 0 --n-test 50 --face-average harmonic"]
    assert result.report.notes == [
        f"darcy_train_16.pt in {root} holds 8 samples but the script asked for 1000 (training on 8); generate more "
        f"with `{commands[0]}`.",
        f"darcy_test_16.pt in {root} holds 4 samples but the script asked for 50 (testing on 4); generate more "
        f"with `{commands[1]}`.",
    ]
    summary = capsys.readouterr().out.split("neuralop-mp summary")[1]
    for note in result.report.notes:
        assert f"WARNING: {note}" in summary
    for command in commands:  # the commands are ones `neuralop-mp data` takes
        parsed = build_parser().parse_args(shlex.split(command)[2:])
        assert (parsed.dataset, parsed.res, parsed.root) == ("darcy", [16], str(root))


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_ctrl_c_keeps_the_summary_and_the_report_of_the_epochs_trained(in_scripts, darcy_root, tmp_path):
    # a real SIGINT to a real `neuralop-mp run` of upstream's script, once its second epoch has trained
    report_file = tmp_path / "report.json"
    command = [str(Path(sys.executable).parent / "neuralop-mp"), "run", "train_darcy.py", "--mp.precision", "mixed",
               "--mp.data-root", str(darcy_root), "--mp.report", str(report_file),
               "--", *TINY_MODEL, "--verbose", "true", "--data.n_train", "500", "--data.batch_size", "16",
               "--data.n_tests", "[16,16]", "--opt.n_epochs", "1000"]

    def as_a_terminal_would():  # a SIGINT ignored by whoever started pytest (`cmd &`) is not inherited
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, cwd=in_scripts, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                                preexec_fn=as_a_terminal_would)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        seen, sent, deadline = [], [], time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=1)
                except queue.Empty:
                    line = ""
                if line is None:  # the process closed its output
                    break
                seen.append(line)
                if "neuralop-mp summary" in line:
                    sent.append(math.inf)  # handled: never press again
                first = not sent and line.startswith("[1] time=")  # upstream's line: epoch 1 trained
                # a SIGINT that lands while the DataLoader forks its worker is lost by Python itself (an at-fork
                # callback cannot raise: "Exception ignored in ..."); a user then presses Ctrl-C again
                again = sent and time.monotonic() - sent[-1] > 8
                if first or again:
                    assert len(sent) < 5, "five SIGINTs did not stop the script"
                    proc.send_signal(signal.SIGINT)
                    sent.append(time.monotonic())
            proc.wait(timeout=30)
        finally:
            proc.kill()
    out, err = "".join(seen), (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, (out[-3000:], err[-3000:])
    # no traceback of ours; only Python's own report of a SIGINT it lost in a fork, if any
    assert err.count("Traceback (most recent call last)") == err.count("Exception ignored in"), err[-3000:]
    summary = out.split("neuralop-mp summary")[1]
    assert "script interrupted (Ctrl-C), exit status 130: what it finished before is below" in summary
    report = json.loads(report_file.read_text())
    assert (report["exit_status"], report["error"], report["interrupted"]) == (130, None, True)
    history = report["trainers"][0]["history"]
    assert len(history) >= 1 and [h["epoch"] for h in history] == list(range(len(history)))
    assert f"over {len(history)} epochs" in summary
    assert report["models"][0]["layer_types"] == ["MixedPrecisionSpectralConv"]


def test_upstream_train_darcy_in_float16_half_runs_tanh_unless_the_command_line_says_none(
        in_scripts, darcy_root, no_network, capsys, tmp_path):
    """Upstream's real config says stabilizer "None" (its default): under --mp.precision half in float16
    that is the mode's default, tanh; a typed --mp.stabilizer none is "off": no tanh, one warning
    before the script and again in the summary. On a CPU "half" runs as mixed (float16 products)."""
    half = ["--mp.precision", "half", "--mp.half_dtype", "float16", "--mp.data-root", str(darcy_root)]
    stabilizers = {}
    for name, flags in (("unset", []), ("off", ["--mp.stabilizer", "none"])):
        report = tmp_path / f"{name}.json"
        assert main(["train_darcy.py", *half, *flags, "--mp.report", str(report), "--",
                     *TINY_DARCY, "--opt.n_epochs", "1"]) == 0
        out = capsys.readouterr().out
        (trainer,) = json.loads(report.read_text())["trainers"]
        stabilizers[name] = [h["stabilizer"] for h in trainer["history"]]
        warned = "WARNING: stabilizer none, as --mp.stabilizer asks: no tanh before the FFTs of the float16 'half' run"
        assert out.count(warned) == (2 if name == "off" else 0), out  # before the script, and in the summary
        if name == "off":
            assert out.index(warned) < out.index("neuralop-mp summary")
    assert stabilizers == {"unset": ["tanh"], "off": [None]}
