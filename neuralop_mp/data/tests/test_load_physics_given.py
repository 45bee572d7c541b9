"""``load_test_sets(reference=...)``: a load of test files alone takes the physics of the records
it is given (the training file of a run, which it does not read): a missing file is generated
with it, a file of other physics is refused naming it and the reference, and the command the
FileNotFoundError suggests carries the physics flags and names the training file it also writes.
Burgers, whose physics has the most settings (viscosity, final time, number of times)."""
import re

import pytest
import torch

from neuralop_mp.data.burgers import generate_burgers_split
from neuralop_mp.data.loaders import load_test_sets

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


def test_the_suggested_command_carries_the_flags_and_names_the_training_file_it_writes(trained_on):
    root, reference = trained_on
    with pytest.raises(FileNotFoundError) as error:
        _load(root, reference, generate=False)
    message = str(error.value)
    assert (f"neuralop-mp data burgers --root {root} --res 32 --n-train 1 --n-test 2 --viscosity 0.02 "
            "--t-final 0.5 --solver-resolution 128 --n-time 9\n") in message
    assert f"It also writes {root / 'burgers_train_32.pt'} (1 sample), which this load does not read.\n" in message
    assert not (root / "burgers_test_32.pt").exists()
    # a training file there already: the command replaces it if it records other settings, and says so
    generate_burgers_split(root, 32, "train", 2, progress=False)
    replaced = f"; {root / 'burgers_train_32.pt'} exists: it is replaced if it records other settings."
    with pytest.raises(FileNotFoundError, match=re.escape(replaced)):
        _load(root, reference, generate=False)
