"""``load_test_sets(reference=...)``: a load of test files alone takes the physics of the records
it is given (the training file of a run, which it does not read): a missing file is generated
with it, a file of other physics is refused naming it and the reference, and the command the
FileNotFoundError suggests carries the physics flags and writes the test file alone.
Burgers, whose physics has the most settings (viscosity, final time, number of times)."""
import shlex

import pytest
import torch

from neuralop_mp.data.burgers import generate_burgers_split
from neuralop_mp.data.cli import main
from neuralop_mp.data.loaders import load_burgers, load_test_sets

PHYSICS = dict(viscosity=0.02, t_final=0.5, n_time=9)  # the defaults: 0.01, 1.0, 17
REFERENCE = "the run's training file"


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


@pytest.fixture
def trained_on(tmp_path):
    """``(data root, {name: record})``: a Burgers 16-point training file of non-default physics."""
    root = tmp_path / "data"
    path = generate_burgers_split(root, 16, "train", 2, progress=False, **PHYSICS)
    return root, {REFERENCE: _meta(path)}


def _load(root, reference, **kwargs):
    return load_test_sets("load_burgers", root, n_tests=[2], test_batch_sizes=[2], test_resolutions=[32],
                          progress=False, reference=reference, **kwargs)


def test_a_missing_test_file_is_generated_with_the_physics_of_the_reference(trained_on):
    root, reference = trained_on
    loaders = _load(root, reference)
    meta = _meta(root / "burgers_test_32.pt")
    assert {k: meta[k] for k in PHYSICS} == PHYSICS
    assert meta["solver_resolution"] == reference[REFERENCE]["solver_resolution"]
    assert loaders[32].dataset[0]["y"].shape == (1, PHYSICS["n_time"], 32)


def test_a_test_file_of_other_physics_is_refused_naming_it_and_the_reference(trained_on):
    root, reference = trained_on
    generate_burgers_split(root, 32, "test", 2, progress=False)  # the generator's defaults
    with pytest.raises(ValueError, match="record different physics") as error:
        load_test_sets("load_burgers", root, n_tests=[2, 2], test_batch_sizes=[2, 2], test_resolutions=[32, 64],
                       progress=False, reference=reference)
    message = str(error.value)
    assert f"{REFERENCE}: n_time=9, t_final=0.5, viscosity=0.02;" in message
    assert f"{root / 'burgers_test_32.pt'}: n_time=17, t_final=1.0, viscosity=0.01)" in message
    assert not (root / "burgers_test_64.pt").exists()  # refused before anything is generated


def test_the_suggested_command_carries_the_flags_and_writes_the_test_file_alone(trained_on):
    """The command once wrote a training file at the test resolution too (1 sample, which the
    load never reads): a test set alone is written with --n-train 0."""
    root, reference = trained_on
    with pytest.raises(FileNotFoundError) as error:
        _load(root, reference, generate=False)
    message = str(error.value)
    command = (f"neuralop-mp data burgers --root {root} --res 32 --n-train 0 --n-test 2 --viscosity 0.02 "
               "--t-final 0.5 --solver-resolution 128 --n-time 9")
    assert command + "\n" in message and "also writes" not in message
    before = sorted(p.name for p in root.glob("*.pt"))
    assert main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert sorted(p.name for p in root.glob("*.pt")) == sorted(before + ["burgers_test_32.pt"])
    meta = _meta(root / "burgers_test_32.pt")
    assert {k: meta[k] for k in PHYSICS} == PHYSICS and meta["n_samples"] == 2
    assert len(_load(root, reference, generate=False)[32].dataset) == 2


def test_a_command_for_both_splits_names_the_files_the_load_does_not_read(tmp_path):
    """Missing files of both splits at different resolutions: one command writes both splits at
    each, and the ones the load does not read are named, an existing one as replaced."""
    root = tmp_path / "data"
    generate_burgers_split(root, 32, "train", 2, progress=False)
    with pytest.raises(FileNotFoundError) as error:
        load_burgers(root, n_train=3, n_tests=[2], batch_size=3, test_batch_sizes=[2], train_resolution=16,
                     test_resolutions=[32], generate=False, progress=False)
    message = str(error.value)
    assert "--res 16 32 --n-train 3 --n-test 2" in message
    assert (f"It also writes {root / 'burgers_test_16.pt'} (2 samples), {root / 'burgers_train_32.pt'} (3 samples), "
            f"which this load does not read; {root / 'burgers_train_32.pt'} exists: it is replaced if it records "
            "other settings.") in message
