"""`neuralop-mp data ...`: argument handling, output, cache reporting and errors."""
import pytest
import torch

from neuralop_mp.data.cli import main


def test_generates_files_and_reports_cache_hits(tmp_path, capsys):
    argv = ["darcy", "--root", str(tmp_path), "--res", "8", "10", "--n-train", "3", "--n-test", "2", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("darcy_train_8.pt", "darcy_test_8.pt", "darcy_train_10.pt", "darcy_test_10.pt"):
        assert name in out
    assert "(cached)" not in out
    assert torch.load(tmp_path / "darcy_train_10.pt")["x"].shape == (3, 10, 10)
    assert main(argv) == 0
    assert capsys.readouterr().out.count("(cached)") == 4


def test_physics_flags_reach_the_generator(tmp_path):
    argv = ["burgers", "--root", str(tmp_path), "--res", "16", "--n-train", "2", "--n-test", "1", "--quiet",
            "--viscosity", "0.02", "--t-final", "0.5", "--n-time", "5", "--seed", "3"]
    assert main(argv) == 0
    data = torch.load(tmp_path / "burgers_train_16.pt")
    assert data["y"].shape == (2, 5, 16)
    assert data["meta"]["viscosity"] == 0.02 and data["meta"]["t_final"] == 0.5 and data["meta"]["seed"] == 3


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["darcy", "--res", "0"], ["'0'", "positive integers"]),
        (["darcy", "--n-train", "many"], ["'many'", "integers >= 0"]),
        (["darcy", "--n-train", "0", "--n-test", "0"], ["n_train=0 and n_test=0", "nothing to generate"]),
        (["darcy", "--face-average", "geometric"], ["'geometric'", "harmonic", "arithmetic"]),
        (["navier_stokes", "--viscosity", "-1"], ["'-1'", "positive numbers"]),
        (["heat"], ["'heat'", "darcy", "navier_stokes", "burgers"]),
        (["navier_stokes", "--res", "24"], ["resolution=24", "powers of 2"]),
        (["darcy", "--n-time", "5"], ["--n-time", "'darcy'"]),
        (["darcy", "--seed", "-1"], ["--seed", "'-1'", "integers >= 0"]),
    ],
)
def test_bad_values_exit_2_with_a_message_naming_them(tmp_path, capsys, argv, expected):
    assert main(argv + ["--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    for fragment in expected:
        assert fragment in err
    assert not list(tmp_path.glob("*.pt"))


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "navier_stokes" in capsys.readouterr().out


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_root_blocked_by_a_file_fails_before_generating_naming_it(tmp_path, capsys, monkeypatch, below):
    """--root FILE (or FILE/sub): one line naming the folder and why, before any sample is computed."""
    from neuralop_mp.data import darcy

    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(darcy, "permeability", lambda *a: pytest.fail("generated before the root was checked"))
    root = blocker / below if below else blocker
    assert main(["darcy", "--root", str(root), "--res", "8", "--n-train", "2", "--n-test", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Data folder '{root}' " in err and "--root" in err
    assert f"'{blocker}' is a file, not a folder" in err  # was "is not writable (Not a directory)"
