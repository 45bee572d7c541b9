"""A Darcy load never mixes labels solved on a finer grid with plain ones (they differ by about the
model's own error): refused naming both kinds and the command that makes them one; a plain file
whose own grid is as fine as the recorded solver grid is not plain in that sense. The benchmark's
reference grid is the generator's own nesting rule (darcy.solver_grid)."""
import re
import shlex

import pytest
import torch

from neuralop_mp.data import benchmark, generate_darcy, load_darcy
from neuralop_mp.data import darcy as darcy_module
from neuralop_mp.data.cli import main as data_main
from neuralop_mp.data.loaders import load_test_sets

TINY = dict(n_train=2, n_tests=(1,), batch_size=2, test_batch_sizes=(1,), train_resolution=8, progress=False)


def _meta(path):
    return torch.load(path, weights_only=False)["meta"]


def test_refined_and_plain_labels_are_refused_and_the_command_given_makes_them_one(tmp_path):
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=57)
    generate_darcy(tmp_path, resolutions=(16,), n_train=0, n_test=1, progress=False)  # default: plain
    train, test = tmp_path / "darcy_train_8.pt", tmp_path / "darcy_test_16.pt"
    with pytest.raises(ValueError) as err:
        load_darcy(tmp_path, test_resolutions=(16,), **TINY)
    message = str(err.value)
    assert "\n" not in message
    assert f"(solver grid recorded: {train} (57))" in message and f"(none recorded: {test})" in message
    command = re.search(r"`(neuralop-mp data [^`]*)`", message).group(1)
    assert command == (f"neuralop-mp data darcy --root {tmp_path} --res 16 --n-train 0 --n-test 1 "
                       "--face-average harmonic --solver-resolution 57 --overwrite")
    # with generate=False alike: nothing is read as it is
    with pytest.raises(ValueError, match="mix labels solved on a finer grid"):
        load_darcy(tmp_path, test_resolutions=(16,), generate=False, **TINY)
    assert data_main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert _meta(test)["solver_resolution"] == 61  # (16 - 1) * 4 + 1 >= 57
    load_darcy(tmp_path, test_resolutions=(16,), **TINY)


def test_a_plain_file_as_fine_as_the_recorded_grid_is_not_refused(tmp_path):
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=0, progress=False, solver_resolution=29)
    # the load generates test 32 on the grid 29 asks for: its own, recorded as none
    load_darcy(tmp_path, test_resolutions=(32,), **TINY)
    assert "solver_resolution" not in _meta(tmp_path / "darcy_test_32.pt")
    load_darcy(tmp_path, test_resolutions=(32,), **TINY)  # loaded again as it was written


def test_a_run_reference_of_the_other_kind_is_refused(tmp_path):
    """eval's test files against the run's training file (load_test_sets' reference)."""
    generate_darcy(tmp_path, resolutions=(16,), n_train=0, n_test=1, progress=False, solver_resolution=121)
    plain_run = {"runs/a/darcy_train_16.pt (as results.json records it)":
                 dict(darcy_module.darcy_settings(16, 0), n_samples=4)}
    with pytest.raises(ValueError) as err:
        load_test_sets("load_darcy", tmp_path, n_tests=(1,), test_batch_sizes=(1,), test_resolutions=(16,),
                       progress=False, reference=plain_run)
    message = str(err.value)
    assert "(none recorded: runs/a/darcy_train_16.pt (as results.json records it))" in message
    # the run's file is not regenerated here: this folder's refined file goes plain
    assert (f"regenerate the refined ones of this folder plainly (`neuralop-mp data darcy --root {tmp_path} --res 16 "
            "--n-train 0 --n-test 1 --face-average harmonic --overwrite`)") in message
    refined_run = {"runs/b/darcy_train_16.pt (as results.json records it)":
                   dict(darcy_module.darcy_settings(16, 0, solver_resolution=121), n_samples=4)}
    generate_darcy(tmp_path / "plain", resolutions=(16,), n_train=0, n_test=1, progress=False)
    with pytest.raises(ValueError, match=r"--solver-resolution 121 --overwrite"):
        load_test_sets("load_darcy", tmp_path / "plain", n_tests=(1,), test_batch_sizes=(1,), test_resolutions=(16,),
                       progress=False, reference=refined_run)


def test_the_benchmark_nests_its_reference_with_the_generators_rule(tmp_path, monkeypatch):
    calls = []

    def spy(resolution, solver_resolution=None):
        calls.append((resolution, solver_resolution))
        return darcy_module.solver_grid(resolution, solver_resolution)

    monkeypatch.setattr(benchmark, "solver_grid", spy)
    rows = benchmark.darcy_label_errors(tmp_path, n_samples=1, reference_points=46, solver_grids=())
    assert calls == [(16, 46), (32, 46)]
    assert "vs nested 46 pts" in rows[0]["check"] and "vs nested 63 pts" in rows[-1]["check"]
