"""The ``Train with:`` line trains on the data diagnose measured: a ``--resolution`` N other than the
config's ``data.train_resolution`` and a ``--data`` other than the config's dataset are carried into it
(``--data.train_resolution N``, ``--data CLASS``), each key once; a config diagnosed on its own data
gets neither."""
import json
import shlex

import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main

from .test_printed_train_command import DIAGNOSE_TINY, _printed_lines, _printed_tokens, _train_as_printed

TINY_MODEL = ["--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes", "[4, 4]"]


def _diagnosed(tmp_path, capsys, *argv):
    out = tmp_path / "out"
    assert main(["diagnose", *argv, *DIAGNOSE_TINY, "--out", str(out)]) == 0
    diagnosis = json.loads((out / "results.json").read_text())["diagnosis"]
    return capsys.readouterr().out, diagnosis


def test_the_measured_resolution_is_the_one_the_printed_command_trains_at(tmp_path, capsys, monkeypatch):
    # the config says 16 (darcy's default), then 32 (an override): diagnose measured at --resolution 8
    printed, diagnosis = _diagnosed(tmp_path, capsys, "darcy", *TINY_MODEL, "--data.train_resolution", "32",
                                    "--resolution", "8")
    assert diagnosis["resolution"] == [8, 8]
    tokens = _printed_tokens(printed)
    assert tokens.count("--data.train_resolution") == 1, tokens
    assert "--data" not in tokens  # the config's own dataset: no class named
    monkeypatch.chdir(tmp_path)
    config, _ = _train_as_printed(tokens, monkeypatch)
    assert config.data.train_resolution == 8
    assert type(config.data).__name__ == "DarcyDatasetConfig"


def test_the_measured_dataset_is_the_one_the_printed_command_trains_on(tmp_path, capsys, monkeypatch):
    printed, _ = _diagnosed(tmp_path, capsys, "darcy", *TINY_MODEL, "--data", "burgers", "--resolution", "8")
    tokens = _printed_tokens(printed)
    assert tokens[:2] == ["darcy", "--data"], tokens
    monkeypatch.chdir(tmp_path)
    config, _ = _train_as_printed(tokens, monkeypatch)
    assert type(config.data).__name__ == "BurgersDatasetConfig"
    assert config.data.train_resolution == 8  # Burgers' own default is 32


def test_a_config_diagnosed_on_its_own_data_gets_no_data_tokens(tmp_path, capsys):
    printed, _ = _diagnosed(tmp_path, capsys, "darcy", *TINY_MODEL, "--data.train_resolution", "8")
    tokens = _printed_tokens(printed)
    assert tokens.count("--data.train_resolution") == 1 and "--data" not in tokens, tokens


def test_a_checkpoint_without_a_config_gets_the_data_options_given(tmp_path, capsys):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    model.save_checkpoint(tmp_path / "ckpt", "model")
    printed, _ = _diagnosed(tmp_path, capsys, str(tmp_path / "ckpt" / "model"), "--data", "darcy",
                            "--resolution", "8")
    [line] = _printed_lines(printed)
    flags = shlex.split(line.partition(": ")[2])
    assert flags[:4] == ["--data", "DarcyDatasetConfig", "--data.train_resolution", "8"], flags
