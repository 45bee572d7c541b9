"""The ``Train with:`` line of ``neuralop-mp diagnose`` trains the autocast it measured: the "+autocast"
errors are measured with autocast over the whole model (scope "model"), so where autocast is
recommended the line sets ``--model.autocast_scope model``, unless the model's own scope is that
already; before, the run took its own ("auto": "spectral" on CPU), which was not measured."""
import importlib
import json
import shlex

import pytest

from neuralop_mp.cli import main

TINY = ["--n-samples", "2", "--n-bands", "2", "--model.hidden_channels", "4", "--model.n_layers", "1",
        "--model.n_modes", "[4, 4]", "--data.train_resolution", "8"]
# the tiny run of the printed command: one epoch on the diagnosed grid
TRAIN_TINY = ["--opt.n_epochs", "1", "--data.n_train", "8", "--data.batch_size", "8", "--data.test_resolutions",
              "[8]", "--data.n_tests", "[4]", "--data.test_batch_sizes", "[4]", "--threads", "1"]
# the module, not the function neuralop_mp.diagnose exports under its name
recommend = importlib.import_module("neuralop_mp.diagnose.recommend")
MIXED_AUTOCAST = {"fno_block_precision": "mixed", "half_dtype": "bfloat16", "stabilizer": None, "autocast": True}


def _train_with(printed):
    [line] = [line for line in printed.splitlines() if line.startswith("Train with: ")]
    return shlex.split(line.removeprefix("Train with: neuralop-mp train "))


def _diagnose(tmp_path, capsys, *extra, fraction="100"):
    """The printed train tokens and the recommendation of a tiny diagnosis (``fraction`` 100: every
    16-bit recipe is accepted, autocast included)."""
    out = tmp_path / "diagnosis"
    capsys.readouterr()
    assert main(["diagnose", "darcy", *TINY, *extra, "--fraction", fraction, "--out", str(out)]) == 0
    tokens = _train_with(capsys.readouterr().out)
    return tokens, json.loads((out / "results.json").read_text())


def test_the_printed_command_trains_with_the_scope_autocast_was_measured_with(tmp_path, capsys):
    tokens, results = _diagnose(tmp_path, capsys)
    recommendation = results["recommendation"]
    assert recommendation["model"]["autocast"] is True
    flags = recommendation["train_flags"]
    assert tokens[-len(flags):] == flags
    assert flags[-1] == "mixed/notanh/autocast"
    run = tmp_path / "run"
    assert main(["train", *tokens, *TRAIN_TINY, "--output_dir", str(run)]) == 0
    precision = json.loads((run / "results.json").read_text())["precision"]
    assert precision["autocast_scope"] == "model (model)"  # was "auto (spectral)"
    assert [phase["autocast"] for phase in precision["phases"]] == [True]
    assert flags[flags.index("--model.autocast_scope") + 1] == "model"
    assert results["diagnosis"]["model"]["autocast_scope"] == "model"  # what "+autocast" measured
    assert results["diagnosis"]["autocast_scope"] == "auto"  # the model's own: "spectral" on this CPU


def test_a_model_whose_own_scope_is_the_measured_one_gets_no_scope_flag(tmp_path, capsys):
    tokens, results = _diagnose(tmp_path, capsys, "--model.autocast_scope", "model")
    assert results["recommendation"]["model"]["autocast"] is True
    assert "--model.autocast_scope" not in results["recommendation"]["train_flags"]
    assert tokens.count("--model.autocast_scope") == 1  # the config's own override, passed on as given
    assert tokens[tokens.index("--model.autocast_scope") + 1] == "model"


def test_another_scope_of_the_config_is_replaced_not_given_twice(tmp_path, capsys):
    tokens, _ = _diagnose(tmp_path, capsys, "--model.autocast_scope", "fno_blocks")
    assert tokens.count("--model.autocast_scope") == 1
    assert tokens[tokens.index("--model.autocast_scope") + 1] == "model"


def test_a_line_without_autocast_sets_no_scope(tmp_path, capsys):
    tokens, results = _diagnose(tmp_path, capsys, fraction="1e-12")  # nothing 16-bit accepted: full
    assert results["recommendation"]["model"]["autocast"] is False
    assert "--model.autocast_scope" not in tokens


@pytest.mark.parametrize("own, device_type, expected", [
    ("auto", "cpu", "model"),  # "auto" is "spectral" off CUDA: not what was measured
    ("spectral", "cpu", "model"),
    ("fno_blocks", "cuda", "model"),
    ("auto", "cuda", None),  # "auto" is "model" on CUDA
    ("model", "cpu", None),
    (None, "cuda", "model"),  # models of different scopes: named
])
def test_scope_to_train_with(own, device_type, expected):
    diagnosis = {"autocast_scope": own, "model": {"autocast_scope": "model"}}
    assert recommend.scope_to_train_with(diagnosis, device_type) == expected


def test_a_diagnosis_recording_no_scope_gets_the_measured_one_named():
    """A results.json written before the model's own scope was recorded: named, to be safe."""
    assert recommend.scope_to_train_with({"model": {}}, "cuda") == "model"


def test_train_flags_set_a_scope_only_with_autocast():
    assert recommend.train_flags(MIXED_AUTOCAST, autocast_scope="model") == [
        "--model.fno_block_precision", "mixed", "--model.half_dtype", "bfloat16", "--model.stabilizer", "none",
        "--model.autocast_scope", "model", "--opt.precision_schedule", "mixed/notanh/autocast"]
    without = {**MIXED_AUTOCAST, "autocast": False}
    assert recommend.train_flags(without, autocast_scope="model") == recommend.train_flags(without)
    assert "--model.autocast_scope" not in recommend.train_flags(without)
