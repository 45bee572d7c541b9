"""``neuralop-mp diagnose`` on built-in Darcy data at tiny sizes, from a config and a checkpoint."""
import json
import warnings

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main

TINY = ["--n-samples", "2", "--n-bands", "3", "--model.hidden_channels", "8", "--model.n_layers", "2"]


def test_diagnose_config_prints_table_and_writes_json_and_png(tmp_path, capsys, monkeypatch):
    from neuralop_mp.layers import product_paths

    monkeypatch.setattr(product_paths, "_warned", set())  # the float16-on-CPU warning is due
    with warnings.catch_warnings():
        # float16 is measured though nobody chose it: no warning that float16 on this CPU is emulated
        warnings.filterwarnings("error", message="half_dtype='float16' on a CPU without float16 matrix units")
        assert main(["diagnose", "darcy", "--out", str(tmp_path)] + TINY) == 0
    printed = capsys.readouterr().out
    assert "fno_blocks.convs.0" in printed and "fno_blocks.convs.1" in printed
    assert 'on CPU "half" runs its FFTs in float32' in printed
    result = json.loads((tmp_path / "results.json").read_text())
    diagnosis, recommendation = result["diagnosis"], result["recommendation"]
    assert diagnosis["resolution"] == [16, 16] and diagnosis["fine_resolution"] == [32, 32]
    assert len(diagnosis["layers"]) == 2 and len(diagnosis["bands"]) == 3
    for entry in diagnosis["layers"]:
        assert 0 < entry["precision"]["mixed-bfloat16"]["error"] < 0.05
        assert 0 < entry["discretization_error"] < 1
    assert recommendation["model"]["fno_block_precision"] in ("mixed", "full")
    assert recommendation["schedule"] in printed
    from neuralop_mp.training.schedule import PrecisionSchedule

    assert PrecisionSchedule.parse(recommendation["schedule"])[-1].mode == "full"  # a schedule the trainer runs
    png = (tmp_path / "error_bands.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("data, resolution", [("darcy", "16"), ("burgers", "8")])
def test_diagnose_checkpoint(tmp_path, capsys, data, resolution):
    """A model saved outside a run folder, measured on the dataset --data names: Burgers too (--data
    took darcy and navier_stokes only, though a Burgers config was diagnosed on Burgers data)."""
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                              fno_block_precision="mixed", half_dtype="bfloat16")
    model.save_checkpoint(tmp_path / "ckpt", "model")
    out = tmp_path / "out"
    assert main(["diagnose", str(tmp_path / "ckpt" / "model"), "--data", data, "--resolution", resolution,
                 "--n-samples", "2", "--out", str(out), "--data.data_root", str(tmp_path / "data")]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [e["name"] for e in result["diagnosis"]["layers"]] == ["fno_blocks.convs.0"]
    assert any(p.name.startswith(data) for p in (tmp_path / "data").iterdir())


def test_diagnose_a_train_run_folder_at_the_runs_resolution(tmp_path, capsys):
    run = tmp_path / "run"
    # a plain (full precision) run at N=8, not the default 16: upstream's layers in its checkpoint
    assert main(["train", "darcy", "--opt.n_epochs", "1", "--data.n_train", "8", "--data.batch_size", "8",
                 "--data.train_resolution", "8", "--data.test_resolutions", "[8, 16]", "--data.n_tests", "[4, 4]",
                 "--data.test_batch_sizes", "[4, 4]", "--model.hidden_channels", "4", "--model.n_layers", "1",
                 "--model.n_modes", "[4, 4]", "--output_dir", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["diagnose", str(run), "--n-samples", "2", "--n-bands", "2", "--out", str(out)]) == 0
    diagnosis = json.loads((out / "results.json").read_text())["diagnosis"]
    assert diagnosis["resolution"] == [8, 8] and diagnosis["fine_resolution"] == [16, 16]
    assert [e["name"] for e in diagnosis["layers"]] == ["fno_blocks.convs.0"]
    # --resolution still wins over the run's
    assert main(["diagnose", str(run), "--resolution", "4", "--n-samples", "2", "--n-bands", "2",
                 "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["diagnosis"]["resolution"] == [4, 4]
    # a run stopped before its end has no results.json: its command.json still gives its data and resolution
    (run / "results.json").unlink()
    assert main(["diagnose", str(run), "--n-samples", "2", "--n-bands", "2", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["diagnosis"]["resolution"] == [8, 8]


def test_diagnose_a_checkpoint_folder_that_is_no_run_folder(tmp_path):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    model.save_checkpoint(tmp_path / "ckpt", "model")
    out = tmp_path / "out"
    assert main(["diagnose", str(tmp_path / "ckpt"), "--n-samples", "2", "--n-bands", "2", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["diagnosis"]["resolution"] == [16, 16]  # the default


def test_diagnose_a_folder_without_a_checkpoint_says_what_it_takes(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"Invalid CONFIG_OR_CHECKPOINT {tmp_path}: No single model checkpoint in {tmp_path}" in err, err
    assert "diagnose takes a config (a built-in name or path.py[:ClassName]) or a checkpoint" in err, err
    assert "folder/NAME for NAME_metadata.pkl" in err and "it is a folder" not in err
    assert not (tmp_path / "out").exists()


def test_a_built_in_config_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    from neuralop_mp.diagnose.cli import _checkpoint_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "darcy").mkdir()
    assert _checkpoint_path("darcy") is None  # the config, as `train darcy` reads it


@pytest.mark.parametrize("args, message", [
    (["--n-samples", "0"], "--n-samples=0"),
    (["--model.fno_block_precision", "hlaf"], "hlaf"),
    # 0 is a value, not "not given" (it used to run with the default 0.5)
    (["--fraction", "0"], "Invalid --fraction=0; allowed values: finite numbers > 0"),  # as typed
    (["--fraction", "-1"], "Invalid --fraction=-1;"),
])
def test_diagnose_bad_arguments(tmp_path, capsys, args, message):
    assert main(["diagnose", "darcy", "--out", str(tmp_path)] + args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_recipe_table_has_every_recipe_per_arch_and_resolution(tmp_path, capsys):
    assert main(["diagnose", "darcy", "--recipe-table", "--resolutions", "8", "--n-samples", "2",
                 "--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes", "[4, 4]",
                 "--out", str(tmp_path)]) == 0
    table = (tmp_path / "recipe_table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| FNO") or line.startswith("| TFNO")]
    assert len(rows) == 2 * 12  # FNO and TFNO, 8 recipes + 4 autocast scopes each
    by_recipe = {tuple(c.strip() for c in row.strip("|").split("|")[:3]): float(row.split("|")[4])
                 for row in rows}
    for arch in ("FNO", "TFNO"):
        for dtype in ("bf16", "fp16"):
            # scope "spectral": autocast changes nothing, so it is the spectral-only recipe exactly
            assert by_recipe[(arch, "8", f"{dtype}, spectral + autocast, scope spectral")] == \
                by_recipe[(arch, "8", f"{dtype}, spectral only")]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        precision, discretization, ratio = float(cells[3]), float(cells[4]), float(cells[5])
        assert precision > 0 and discretization > 0
        assert ratio == pytest.approx(precision / discretization, rel=0.05)


@pytest.mark.parametrize("data, resolution, expected", [(None, None, ("load_darcy", 32)),
                                                         ("navier_stokes", None, ("load_navier_stokes", 32)),
                                                         ("navier_stokes", 8, ("load_navier_stokes", 8))])
def test_a_config_gives_its_training_resolution_also_when_another_dataset_is_named(data, resolution, expected):
    """As the help says: N is the config's train_resolution unless --resolution is given (a config
    measured with --data fell back to 16)."""
    import argparse

    from neuralop_mp.diagnose.cli import _load

    args = argparse.Namespace(target="darcy", data=data, resolution=resolution)
    _, loader, _, n, _ = _load(args, ["--data.train_resolution", "32", "--model.hidden_channels", "4",
                                      "--model.n_layers", "1", "--model.n_modes", "[4,4]"], None)
    assert (loader, n) == expected
