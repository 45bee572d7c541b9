"""Darcy's solver grid (``solver_resolution``): labels closer to the PDE's solution, the stored
permeability unchanged, recorded in the file, part of the cache key, the loaders' and the CLI's."""
import os

import numpy as np
import pytest
import torch

from neuralop_mp.data import darcy as darcy_module
from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.cli import main as data_main
from neuralop_mp.data.darcy import permeability, solve_darcy
from neuralop_mp.data.grf import sample_seed


def _load(path):
    return torch.load(path, weights_only=False)


def _relative(u, v):
    return float(np.linalg.norm(u - v) / np.linalg.norm(v))


def test_solver_grid_is_the_smallest_nested_grid_at_least_the_one_asked():
    assert darcy_module.solver_grid(8, None) == (8, 1)
    # up to res: the stored grid
    assert darcy_module.solver_grid(8, 8) == (8, 1) and darcy_module.solver_grid(8, 5) == (8, 1)
    assert darcy_module.solver_grid(8, 45) == (50, 7)  # (8 - 1) * 7 + 1 = 50 >= 45, 43 < 45
    assert darcy_module.solver_grid(16, 121) == (121, 8) and darcy_module.solver_grid(32, 121) == (125, 4)


def test_labels_on_a_solver_grid_are_closer_to_a_fine_reference_and_x_is_unchanged(tmp_path):
    n = 3
    default = _load(generate_darcy(tmp_path / "a", resolutions=(8,), n_train=n, n_test=0, progress=False)[8][0])
    refined = _load(generate_darcy(tmp_path / "b", resolutions=(8,), n_train=n, n_test=0, progress=False,
                                   solver_resolution=57)[8][0])
    assert torch.equal(refined["x"], default["x"])  # the stored permeability is the default's, bitwise
    assert refined["meta"]["solver_resolution"] == 57 and "solver_resolution" not in default["meta"]
    assert refined["y"].shape == (n, 8, 8) and refined["y"][:, 0].abs().max() == 0
    for i in range(n):
        # float64 reference: the same solver on the nested 225-point grid (stride 32), every 32nd vertex
        fine = permeability([sample_seed(0, "train", i)], 7 * 32 + 1)[0].numpy()
        assert np.array_equal(fine[::32, ::32], default["x"][i].double().numpy())
        reference = solve_darcy(fine)[::32, ::32]
        error_default = _relative(default["y"][i].double().numpy(), reference)
        error_refined = _relative(refined["y"][i].double().numpy(), reference)
        # measured: default 0.05-0.07, on 57 points 0.003-0.0075 (10-16x closer)
        assert error_default > 0.03 and error_refined < error_default / 5, (i, error_default, error_refined)


def test_the_solver_grid_is_part_of_the_cache_key(tmp_path, monkeypatch):
    path = tmp_path / "darcy_train_8.pt"
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False)
    default_y = _load(path)["y"]
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=45)
    assert _load(path)["meta"]["solver_resolution"] == 50  # regenerated, the grid really solved on recorded
    assert not torch.equal(_load(path)["y"], default_y)
    stamp = os.stat(path).st_mtime_ns

    def no_solve(*args, **kwargs):
        raise AssertionError("cache hit must not solve")

    monkeypatch.setattr(darcy_module, "solve_darcy", no_solve)
    # 50 asks for the same grid as 45: a hit
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=50)
    assert os.stat(path).st_mtime_ns == stamp
    monkeypatch.undo()
    # a grid up to the stored one is the default: the file is today's default file again
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=8)
    assert "solver_resolution" not in _load(path)["meta"] and torch.equal(_load(path)["y"], default_y)


@pytest.mark.parametrize("value", [3, 0, 2.5, True, "64"])
def test_a_bad_solver_resolution_is_refused_naming_it(tmp_path, value):
    with pytest.raises(ValueError, match=rf"Invalid solver_resolution={value!r}; allowed values: None \(the stored "
                                         r"grid\) or integers >= 4\.$"):
        generate_darcy(tmp_path, resolutions=(8,), n_train=1, n_test=1, progress=False, solver_resolution=value)
    assert not list(tmp_path.iterdir())


def test_the_cli_takes_it_for_darcy_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    assert data_main(["darcy", "--root", str(tmp_path), "--res", "8", "--n-train", "1", "--n-test", "0",
                      "--solver-resolution", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("neuralop-mp data: error: Invalid solver_resolution=3; allowed values: None (the stored "
                           "grid) or integers >= 4.")
    assert data_main(["darcy", "--root", str(tmp_path), "--res", "8", "--n-train", "1", "--n-test", "0",
                      "--solver-resolution", "29", "--quiet"]) == 0
    assert _load(tmp_path / "darcy_train_8.pt")["meta"]["solver_resolution"] == 29


def test_a_load_keeps_the_solver_grid_of_its_files(tmp_path):
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=29)
    # the missing test file at 16 is solved on the finest grid the load's files record (29 -> 31 at 16)
    load_darcy(tmp_path, n_train=2, n_tests=(1,), batch_size=2, test_batch_sizes=(1,), train_resolution=8,
               test_resolutions=(16,), progress=False)
    assert _load(tmp_path / "darcy_test_16.pt")["meta"]["solver_resolution"] == 31
    # and the command a missing file's error suggests carries the flag
    with pytest.raises(FileNotFoundError, match=r"--res 32 .*--face-average harmonic --solver-resolution 29"):
        load_darcy(tmp_path, n_train=2, n_tests=(1,), batch_size=2, test_batch_sizes=(1,), train_resolution=8,
                   test_resolutions=(32,), generate=False)
