"""diagnose's refusals name the option as typed and offer only what works, before any work:
``--archs`` empty or unknown, ``--fraction`` out of range, a config file's name that is no config
(train says it alike: one loader), and ``folder/NAME`` for a checkpoint the folder does not hold."""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main

TINY = ["--n-samples", "2", "--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes", "[4, 4]"]


def _error_line(err):
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if "error:" in line]
    return line


@pytest.mark.parametrize("archs, named", [("", "an empty name"), ("FNOConfig,", "an empty name"),
                                          ("Unknown", "'Unknown'"), ("ModelConfig", "'ModelConfig'")])
def test_archs_empty_or_unknown_is_refused_naming_archs_and_the_classes_that_work(tmp_path, capsys, no_work,
                                                                                  archs, named):
    # "" ran the default archs; "Unknown" was "Invalid ModelConfig class ...", offering ModelConfig, which fails
    with pytest.raises(SystemExit) as exit_status:
        main(["diagnose", "darcy", "--recipe-table", "--archs", archs, "--resolutions", "8", "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("neuralop-mp diagnose: error: argument --archs: invalid value ")
    assert named in line
    allowed = line.partition("allowed values:")[2]
    assert "FNOConfig, TFNOConfig, UNOConfig" in allowed and "ModelConfig" not in allowed


def test_archs_are_read_case_ignored_as_their_classes(monkeypatch, tmp_path, capsys):
    from neuralop_mp.diagnose import recipes

    seen = []
    monkeypatch.setattr(recipes, "recipe_rows", lambda target, overrides, archs, *a, **k: seen.append(archs) or [])
    assert main(["diagnose", "darcy", "--recipe-table", "--archs", "fnoconfig, TFNOConfig", "--resolutions", "8",
                 "--out", str(tmp_path)]) == 0
    assert seen == [["FNOConfig", "TFNOConfig"]]


@pytest.mark.parametrize("typed", ["0", "-1", "nan", "inf", "abc"])
def test_fraction_is_refused_as_typed(tmp_path, capsys, no_work, typed):
    assert main(["diagnose", "darcy", *TINY, "--fraction", typed, "--out", str(tmp_path)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"Invalid --fraction={typed}; allowed values: finite numbers > 0." in line, line


@pytest.mark.parametrize("command", ["diagnose", "train"])
def test_a_config_files_name_that_is_no_config_names_the_file_and_what_is_expected(tmp_path, capsys, no_work,
                                                                                     command):
    source = tmp_path / "noclass.py"
    source.write_text("class Foo:\n    pass\n")
    with pytest.raises(SystemExit) as exit_status:
        code = main([command, f"{source}:Foo", "--out" if command == "diagnose" else "--output_dir",
                     str(tmp_path / "out")])
        raise SystemExit(code)
    assert exit_status.value.code == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{source}:Foo: Foo is not a config" in line, line
    assert f"expected in {source} a subclass of neuralop_mp.configs.TrainConfig" in line
    assert "got type" not in line


def test_a_checkpoint_name_the_folder_does_not_hold_lists_the_ones_it_does(tmp_path, capsys, no_work):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    model.save_checkpoint(tmp_path / "ck", "mymodel")
    model.save_checkpoint(tmp_path / "ck", "other")
    assert main(["diagnose", str(tmp_path / "ck" / "nothere"), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "Unknown config" not in line  # was: an unknown config, the folder's checkpoints unsaid
    assert f"{tmp_path / 'ck'} holds no checkpoint nothere (no nothere_metadata.pkl)" in line, line
    assert "checkpoints there: mymodel, other" in line and "folder/NAME" in line
