"""The loaders keep a Navier-Stokes file's time step (``dt``) like the rest of its record, and
name it in their advice; the test sets alone (``load_test_sets``) are checked like the training
loaders' and read once, copying only the samples asked for."""
import os
from collections import Counter

import pytest
import torch

from neuralop_mp.data import generate_darcy, generate_navier_stokes, load_darcy, load_navier_stokes
from neuralop_mp.data.cli import build_parser
from neuralop_mp.data.loaders import CLI_FLAGS, load_test_sets
from neuralop_mp.data.navier_stokes import generate_navier_stokes_split

NS = dict(batch_size=2, train_resolution=8, progress=False)
T_FINAL = 1.0  # few steps: quick


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


@pytest.fixture
def ns_dt(tmp_path):
    """Navier-Stokes files at 8 points made with dt=0.02, 2 samples each."""
    generate_navier_stokes(tmp_path, resolutions=(8,), n_train=2, n_test=2, t_final=T_FINAL, dt=0.02, progress=False)
    return tmp_path


def test_a_file_regenerated_for_more_samples_keeps_its_dt(ns_dt):
    load_navier_stokes(ns_dt, n_train=3, n_tests=(2,), test_batch_sizes=(2,), test_resolutions=(8,), **NS)
    meta = _meta(ns_dt / "nsforcing_train_8.pt")
    assert meta["dt"] == 0.02 and meta["t_final"] == T_FINAL
    assert len(torch.load(ns_dt / "nsforcing_train_8.pt", weights_only=True)["x"]) == 3


def test_a_missing_file_takes_the_smallest_dt_of_the_load_and_files_of_other_steps_load(ns_dt):
    # a step is the discretization, as the solver grid: files of one load may differ in it
    generate_navier_stokes_split(ns_dt, 8, "train", 2, t_final=T_FINAL, dt=0.01, progress=False, overwrite=True)
    load_navier_stokes(ns_dt, n_train=2, n_tests=(2, 2), test_batch_sizes=(2, 2), test_resolutions=(8, 16), **NS)
    assert _meta(ns_dt / "nsforcing_test_16.pt")["dt"] == 0.01
    assert _meta(ns_dt / "nsforcing_train_8.pt")["dt"] == 0.01 and _meta(ns_dt / "nsforcing_test_8.pt")["dt"] == 0.02


def test_the_advice_to_regenerate_names_dt(ns_dt):
    with pytest.raises(ValueError, match=r"holds 2 samples but 3 were requested.*--t-final 1.0 --solver-resolution "
                                         r"32 --dt 0.02`"):
        load_navier_stokes(ns_dt, n_train=3, n_tests=(2,), test_batch_sizes=(2,), test_resolutions=(8,),
                           generate=False, **NS)
    with pytest.raises(FileNotFoundError, match=r"--res 16 .*--t-final 1.0 --solver-resolution 32 --dt 0.02\n"):
        load_navier_stokes(ns_dt, n_train=2, n_tests=(2, 2), test_batch_sizes=(2, 2), test_resolutions=(8, 16),
                           generate=False, **NS)


def test_the_cli_has_a_flag_for_each_setting_the_loaders_name():
    """The loaders' advice is a command line: its flags are the parser's physics flags."""
    groups = [g for g in build_parser()._action_groups if g.title in ("darcy", "darcy, navier_stokes and burgers", "navier_stokes and burgers")]
    assert {action.dest for group in groups for action in group._group_actions} == set(CLI_FLAGS)


# -- load_test_sets ---------------------------------------------------------------------------

@pytest.mark.parametrize("load", [
    lambda root: load_test_sets("load_darcy", root, n_tests=(2, 2), test_batch_sizes=(2,), test_resolutions=(8, 16),
                                progress=False),
    lambda root: load_darcy(root, n_train=2, n_tests=(2, 2), batch_size=2, test_batch_sizes=(2,), train_resolution=8,
                            test_resolutions=(8, 16), progress=False),
], ids=["load_test_sets", "load_darcy"])
def test_a_short_test_batch_sizes_is_refused_before_any_file_is_generated(tmp_path, load):
    with pytest.raises(ValueError, match=r"test_batch_sizes=\[2\] needs one entry per test resolution \[8, 16\]"):
        load(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_test_sets_reads_each_file_once_and_copies_only_the_samples_asked_for(tmp_path, monkeypatch):
    generate_darcy(tmp_path, resolutions=(8, 16), n_train=1, n_test=6, progress=False)
    loads = Counter()
    real_load = torch.load

    def counting_load(f, *args, **kwargs):  # counted by the file: a descriptor's name is one of it
        loads[os.path.realpath(f)] += 1
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    loaders = load_test_sets("load_darcy", tmp_path, n_tests=(2, 3), test_batch_sizes=(2, 2),
                             test_resolutions=(8, 16), progress=False)
    assert loads == {os.path.realpath(tmp_path / f"darcy_test_{res}.pt"): 1 for res in (8, 16)}
    for res, n in ((8, 2), (16, 3)):
        x, y = loaders[res].dataset.x, loaders[res].dataset.y
        stored = real_load(tmp_path / f"darcy_test_{res}.pt", weights_only=True)
        assert torch.equal(x, stored["x"][:n].float().unsqueeze(1)) and torch.equal(y, stored["y"][:n].unsqueeze(1))
        # n samples held in memory, not the file's 6
        assert x.untyped_storage().nbytes() == n * res * res * 4
        assert y.untyped_storage().nbytes() == n * res * res * y.element_size()
