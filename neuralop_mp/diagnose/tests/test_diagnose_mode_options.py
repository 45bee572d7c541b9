"""diagnose refuses an option its mode does not read (``--archs``/``--resolutions`` without
``--recipe-table``, ``--n-bands``/``--fraction``/``--data``/``--resolution`` with it) and an
``--n-bands`` above what the grid holds (it was capped without a word): one line, exit 2."""
import pytest

from neuralop_mp.cli import main

TINY = ["--n-samples", "2", "--model.n_modes", "[4,4]", "--model.hidden_channels", "4", "--model.n_layers", "1",
        "--data.train_resolution", "8"]


def _refused(argv, capsys):
    try:
        status = main(["diagnose", "darcy", *argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("argv, line", [
    (["--archs", "FNOConfig", "--resolutions", "32"], "--archs and --resolutions are read only with --recipe-table: "
                                                      "add --recipe-table, or leave them out"),
    (["--resolutions", "32"], "--resolutions is read only with --recipe-table: add --recipe-table, or leave it out"),
    (["--recipe-table", "--n-bands", "3"], "--n-bands is read only by a layer diagnosis, not by --recipe-table: "
                                           "leave it out"),
])
def test_an_option_of_the_other_mode_is_refused(argv, line, capsys, tmp_path):
    assert _refused([*argv, "--out", str(tmp_path / "d")], capsys) == f"neuralop-mp diagnose: error: {line}"
    assert not (tmp_path / "d").exists()


def test_more_bands_than_the_grid_holds_is_refused_naming_the_cap(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALOP_MP_DATA", str(tmp_path / "data"))
    line = _refused([*TINY, "--n-bands", "6", "--out", str(tmp_path / "d")], capsys)
    assert line == ("neuralop-mp diagnose: error: Invalid --n-bands=6; allowed values: integers in [1, 5] (the 8x8 "
                    "grid has frequencies |k| 0 to 4, one band each at most).")
    assert _refused([*TINY, "--n-bands", "0"], capsys).endswith("Invalid --n-bands=0; allowed values: integers >= 1.")
