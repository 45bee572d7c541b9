"""The ``Train with:`` line of ``neuralop-mp diagnose RUN_FOLDER`` is a command that runs as printed: the
run's config and overrides (not a ``CONFIG`` placeholder, not the run's ``--output_dir``), then the
recommended flags; a checkpoint outside a run folder, which records no config, prints no command."""
import json
import shlex

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main

DIAGNOSE_TINY = ["--n-samples", "2", "--n-bands", "2"]
RUN_OVERRIDES = ["--opt.n_epochs", "1", "--data.n_train", "8", "--data.batch_size", "8",
                 "--data.train_resolution", "8", "--data.test_resolutions", "[8, 16]", "--data.n_tests", "[4, 4]",
                 "--data.test_batch_sizes", "[4, 4]", "--model.hidden_channels", "4", "--model.n_layers", "1",
                 "--model.n_modes", "[4, 4]"]


class Captured(Exception):
    """Raised in place of the training run, carrying its config and output folder."""


def _train_as_printed(tokens, monkeypatch):
    """(config, output folder) that ``neuralop-mp train TOKENS`` would run with (its own parser)."""
    import neuralop_mp.train_pipeline as pipeline

    def capture(config, output_dir=None, **kwargs):
        raise Captured(config, output_dir)

    monkeypatch.setattr(pipeline, "run_training", capture)
    with pytest.raises(Captured) as captured:
        main(["train", *tokens])
    return captured.value.args


def _printed_lines(printed):
    return [line for line in printed.splitlines() if line.startswith("Train with")]


def test_diagnose_of_a_run_folder_prints_the_runs_own_train_command(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "darcy", *RUN_OVERRIDES, "--output_dir", str(run)]) == 0
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["diagnose", str(run), *DIAGNOSE_TINY, "--out", str(out)]) == 0
    [line] = _printed_lines(capsys.readouterr().out)
    assert line.startswith("Train with: neuralop-mp train darcy "), line  # was "... train CONFIG --model..."
    tokens = shlex.split(line.removeprefix("Train with: neuralop-mp train "))
    recommendation = json.loads((out / "results.json").read_text())["recommendation"]
    assert tokens[-len(recommendation["train_flags"]):] == recommendation["train_flags"]
    assert "--output_dir" not in tokens and str(run) not in line  # a new run, not one into the diagnosed folder
    monkeypatch.chdir(tmp_path)  # where the new run's default folder goes
    config, folder = _train_as_printed(tokens, monkeypatch)
    assert config.name == "darcy" and folder.resolve() != run.resolve()
    # the run's own settings, the recommended precision on top
    assert (config.model.hidden_channels, config.model.n_layers, config.data.train_resolution) == (4, 1, 8)
    assert config.model.fno_block_precision == recommendation["model"]["fno_block_precision"]


def test_diagnose_of_a_checkpoint_without_a_config_prints_options_not_a_placeholder_command(tmp_path, capsys):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    model.save_checkpoint(tmp_path / "ckpt", "model")
    out = tmp_path / "out"
    assert main(["diagnose", str(tmp_path / "ckpt" / "model"), *DIAGNOSE_TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "neuralop-mp train CONFIG" not in printed
    [line] = _printed_lines(printed)
    head, _, flags = line.partition(": ")
    assert head == "Train with these options after the config that built this model (the checkpoint records none)"
    recommendation = json.loads((out / "results.json").read_text())["recommendation"]
    assert shlex.split(flags) == recommendation["train_flags"]


def _printed_tokens(printed):
    [line] = _printed_lines(printed)
    return shlex.split(line.removeprefix("Train with: neuralop-mp train "))


def test_a_run_whose_config_sets_output_dir_gets_a_new_one_and_no_key_twice(tmp_path, capsys, monkeypatch):
    """Without the run's recorded --output_dir, the config class's own folder (the diagnosed run's here)
    took the new run, which train refuses there; the run's --model.fno_block_precision came before the
    recommended one, printed twice."""
    run = tmp_path / "run"
    config = tmp_path / "own_folder.py"
    config.write_text("from neuralop_mp.configs.darcy import DarcyConfig\n\n"
                      f"class OwnFolder(DarcyConfig):\n    output_dir: str = {str(run)!r}\n")
    spec = f"{config}:OwnFolder"
    assert main(["train", spec, *RUN_OVERRIDES, "--model.fno_block_precision", "full"]) == 0
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["diagnose", str(run), *DIAGNOSE_TINY, "--out", str(out)]) == 0
    tokens = _printed_tokens(capsys.readouterr().out)
    assert tokens[0] == spec
    assert tokens.count("--model.fno_block_precision") == 1, tokens
    recommendation = json.loads((out / "results.json").read_text())["recommendation"]
    assert tokens[-len(recommendation["train_flags"]):] == recommendation["train_flags"]
    assert tokens.count("--output_dir") == 1 and tokens[tokens.index("--output_dir") + 1].startswith("runs/")
    monkeypatch.chdir(tmp_path)
    trained, folder = _train_as_printed(tokens, monkeypatch)
    assert folder.resolve() != run.resolve() and folder.resolve().parent == (tmp_path / "runs").resolve()
    assert trained.model.hidden_channels == 4
    assert trained.model.fno_block_precision == recommendation["model"]["fno_block_precision"]


def test_a_configs_override_of_a_recommended_key_is_printed_once(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["diagnose", "darcy", "--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes",
                 "[4, 4]", "--data.train_resolution", "8", "--model.stabilizer", "tanh", *DIAGNOSE_TINY,
                 "--out", str(out)]) == 0
    tokens = _printed_tokens(capsys.readouterr().out)
    assert tokens.count("--model.stabilizer") == 1, tokens
    assert tokens[:3] == ["darcy", "--model.hidden_channels", "4"]
    recommendation = json.loads((out / "results.json").read_text())["recommendation"]
    assert tokens[-len(recommendation["train_flags"]):] == recommendation["train_flags"]
