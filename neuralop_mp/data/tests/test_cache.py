"""The cache of generated files: whose files are replaced, with which physics, byte-identical
runs, settings checked before any work, and two runs generating the same file at once."""
import hashlib
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

from neuralop_mp.data import darcy as darcy_module
from neuralop_mp.data import generate_burgers, generate_darcy, generate_navier_stokes, load_burgers, load_darcy
from neuralop_mp.data import load_navier_stokes
from neuralop_mp.data.cli import main

NS_SMALL = dict(n_train=4, n_tests=(2,), batch_size=2, test_batch_sizes=(2,), train_resolution=8,
                test_resolutions=(8,), progress=False)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("meta", [{"source": "my FEM solver"}, "my FEM solver",
                                  {"generator": "my FEM solver", "seed": 3, "n_samples": 4}])
def test_a_users_file_with_a_meta_of_its_own_is_used_as_it_is_and_never_replaced(tmp_path, capsys, meta):
    """A ``meta`` key alone does not make a file ours: load_* reads it as it is (no seed
    warning, no regeneration) and `neuralop-mp data` refuses to replace it (exit 2, not a
    traceback, not a silent replacement)."""
    for split, n in (("train", 4), ("test", 2)):
        torch.save({"x": torch.rand(n, 16, 16), "y": torch.rand(n, 16, 16), "meta": meta},
                   tmp_path / f"darcy_{split}_16.pt")
    before = {p.name: sha256(p) for p in tmp_path.glob("*.pt")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "generated with seed=None ... regenerated" was the old answer
        train, _, _ = load_darcy(tmp_path, n_train=4, n_tests=(2,), batch_size=2, test_batch_sizes=(2,),
                                 test_resolutions=(16,), progress=False)
    assert len(train.dataset) == 4
    assert {p.name: sha256(p) for p in tmp_path.glob("*.pt")} == before
    argv = ["darcy", "--root", str(tmp_path), "--res", "16", "--n-train", "4", "--n-test", "2", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "darcy_train_16.pt exists but was not written by neuralop_mp" in err and "--overwrite" in err
    assert {p.name: sha256(p) for p in tmp_path.glob("*.pt")} == before
    assert main(argv + ["--overwrite"]) == 0  # the way out the message names
    assert torch.load(tmp_path / "darcy_train_16.pt", weights_only=True)["meta"]["generator"] == "darcy"


@pytest.mark.parametrize("generate, load, physics, kept", [
    (generate_navier_stokes, load_navier_stokes, dict(viscosity=1e-2, t_final=0.5),
     "viscosity=0.01, t_final=0.5, solver_resolution=32"),
    (generate_burgers, load_burgers, dict(viscosity=0.02, t_final=0.1, n_time=5),
     "viscosity=0.02, t_final=0.1, n_time=5, solver_resolution=128"),
])
def test_a_file_regenerated_for_another_seed_keeps_the_physics_it_records(tmp_path, generate, load, physics, kept):
    res = 8 if generate is generate_navier_stokes else 16
    small = dict(NS_SMALL, train_resolution=res, test_resolutions=(res,))
    paths = generate(tmp_path / "data", resolutions=(res,), n_train=4, n_test=2, seed=1, progress=False, **physics)
    with pytest.warns(RuntimeWarning, match=rf"was generated with seed=1, not the requested seed=0: it is regenerated "
                                            rf"with seed=0 and [42] samples, keeping its {kept} \(") as caught:
        load(tmp_path / "data", seed=0, **small)
    assert caught[0].filename == __file__
    expected = generate(tmp_path / "expected", resolutions=(res,), n_train=4, n_test=2, seed=0, progress=False,
                        **physics)
    for path, wanted in zip(paths[res], expected[res]):
        data, reference = torch.load(path, weights_only=True), torch.load(wanted, weights_only=True)
        assert data["meta"] == reference["meta"] and data["meta"]["seed"] == 0
        assert torch.equal(data["y"], reference["y"])


def test_a_missing_file_of_a_load_takes_the_physics_of_its_other_files(tmp_path):
    """A new test resolution next to files of nu = 2e-3 is not made with the default 1e-3:
    the model would be tested on another equation than it was trained on."""
    physics = dict(viscosity=2e-3, t_final=0.5)
    generate_navier_stokes(tmp_path, resolutions=(8,), n_train=4, n_test=2, progress=False, **physics)
    wider = dict(NS_SMALL, test_resolutions=(8, 16), n_tests=(2, 2), test_batch_sizes=(2, 2))
    with pytest.raises(FileNotFoundError, match=r"(?s)nsforcing_test_16.pt.*--res 16 --n-train 0 --n-test 2 "
                                                r"--viscosity 0.002 --t-final 0.5 --solver-resolution 32"):
        load_navier_stokes(tmp_path, generate=False, **wider)
    _, tests, _ = load_navier_stokes(tmp_path, **wider)
    assert sorted(tests) == [8, 16]
    meta = torch.load(tmp_path / "nsforcing_test_16.pt", weights_only=True)["meta"]
    assert (meta["viscosity"], meta["t_final"], meta["solver_resolution"]) == (2e-3, 0.5, 32)


def test_files_of_one_load_recording_different_physics_are_refused_naming_them(tmp_path):
    generate_navier_stokes(tmp_path, resolutions=(8,), n_train=4, n_test=2, viscosity=2e-3, t_final=0.5,
                           progress=False)
    generate_navier_stokes(tmp_path, resolutions=(16,), n_train=4, n_test=2, viscosity=1e-3, t_final=0.5,
                           progress=False)
    before = {p.name: sha256(p) for p in tmp_path.glob("*.pt")}
    for generate in (True, False):
        with pytest.raises(ValueError, match=r"record different physics") as info:
            load_navier_stokes(tmp_path, **dict(NS_SMALL, test_resolutions=(16,)), generate=generate)
        message = str(info.value)
        assert "nsforcing_train_8.pt: viscosity=0.002" in message and "nsforcing_test_16.pt: viscosity=0.001" in message
        assert "t_final" not in message  # only the settings that differ
    assert {p.name: sha256(p) for p in tmp_path.glob("*.pt")} == before


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_the_same_seed_gives_byte_identical_files_in_another_process(tmp_path):
    """torch named the archive's records after the temporary file, whose name holds the pid."""
    generate_darcy(tmp_path / "a", resolutions=(8,), n_train=2, n_test=1, progress=False)
    code = ("import sys; from neuralop_mp.data import generate_darcy; "
            "generate_darcy(sys.argv[1], resolutions=(8,), n_train=2, n_test=1, progress=False)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], check=True, timeout=120)
    for name in ("darcy_train_8.pt", "darcy_test_8.pt"):
        assert sha256(tmp_path / "a" / name) == sha256(tmp_path / "b" / name)


@pytest.mark.parametrize("argv, bad", [
    (["darcy", "--res", "8", "3"], "Darcy resolution=3"),
    (["navier_stokes", "--res", "8", "24", "--t-final", "0.1"], "Navier-Stokes resolution=24"),
    (["burgers", "--res", "16", "4", "--t-final", "0.1"], "Burgers resolution=4"),
])
def test_a_bad_resolution_late_in_the_list_is_refused_before_any_file_is_written(tmp_path, capsys, argv, bad):
    assert main(argv + ["--root", str(tmp_path), "--n-train", "2", "--n-test", "1", "--quiet"]) == 2
    assert bad in capsys.readouterr().err
    assert not list(tmp_path.glob("*.pt"))


def _race(monkeypatch, root, seeds):
    """Generate Darcy files into ``root`` from one thread per seed at once, each
    generation held in its solver long enough for the others to reach the same file."""
    real = darcy_module.permeability
    calls = []

    def slow_permeability(sample_seeds, resolution):
        calls.append(resolution)
        time.sleep(0.5)
        return real(sample_seeds, resolution)

    monkeypatch.setattr(darcy_module, "permeability", slow_permeability)
    threads_before = torch.get_num_threads()
    start = threading.Barrier(len(seeds))
    errors = {}

    def run(seed):
        start.wait()
        try:
            generate_darcy(root, resolutions=(8,), n_train=2, n_test=1, seed=seed, progress=False)
        except Exception as err:  # noqa: BLE001 - reported to the test
            errors[seed] = err

    threads = [threading.Thread(target=run, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    torch.set_num_threads(threads_before)
    return calls, errors


def test_a_second_identical_run_at_the_same_time_finds_the_file_made_by_the_first(tmp_path, monkeypatch):
    calls, errors = _race(monkeypatch, tmp_path, seeds=(0, 0))
    assert errors == {}
    assert len(calls) == 2  # train and test, once each: the waiting run used what the other wrote
    reference = generate_darcy(tmp_path / "alone", resolutions=(8,), n_train=2, n_test=1, progress=False)
    for name in ("darcy_train_8.pt", "darcy_test_8.pt"):
        assert sha256(tmp_path / name) == sha256(reference[8][0].parent / name)


def test_a_run_with_other_settings_at_the_same_time_does_not_take_the_file_of_the_first(tmp_path, monkeypatch):
    """Both runs used to report the file as theirs while it held the data of the last to save."""
    _, errors = _race(monkeypatch, tmp_path, seeds=(0, 1))
    assert len(errors) == 1, errors
    (loser, err), = errors.items()
    winner = 1 - loser
    assert isinstance(err, FileExistsError)
    assert "was written by another run" in str(err) and f"seed={winner}" in str(err) and f"seed={loser}" in str(err)
    for name in ("darcy_train_8.pt", "darcy_test_8.pt"):
        assert torch.load(tmp_path / name, weights_only=True)["meta"]["seed"] == winner


@pytest.mark.parametrize("value", ["48", "16"])
def test_a_bad_navier_stokes_solver_resolution_is_named_with_its_real_bound(tmp_path, capsys, value):
    argv = ["navier_stokes", "--root", str(tmp_path), "--res", "8", "--solver-resolution", value,
            "--n-train", "1", "--n-test", "1", "--t-final", "0.1", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"Invalid solver_resolution={value}; allowed values: powers of 2 >= 32." in err
    assert not list(tmp_path.glob("*.pt"))


def test_a_power_of_two_setting_takes_the_integers_every_other_setting_takes():
    """numpy and 0-d tensor integers, as check_int_at_least takes them (a 0-d tensor was refused); bool and
    floats are no integers."""
    import numpy as np

    from neuralop_mp.data.navier_stokes import _check_power_of_two

    assert _check_power_of_two("solver_resolution", torch.tensor(64), 32) == 64
    assert _check_power_of_two("solver_resolution", np.int64(32), 32) == 32
    for bad in (True, 32.0, 48, 16):
        with pytest.raises(ValueError, match=r"allowed values: powers of 2 >= 32\."):
            _check_power_of_two("solver_resolution", bad, 32)
