"""``load_*(reference=...)``: a full load (training and test files) at resolutions none of whose
files exist takes the physics of the records it is given (a run's data at another resolution,
what `neuralop-mp diagnose RUN --resolution N` reads), and refuses a file of other physics
naming it and the reference. Darcy's face average and Burgers' settings (cheap 16/32 grids)."""
import pytest
import torch

from neuralop_mp.data import load_burgers, load_darcy
from neuralop_mp.data.burgers import generate_burgers_split
from neuralop_mp.data.darcy import generate_darcy_split

BURGERS = dict(viscosity=0.02, t_final=0.5, n_time=9)  # the defaults: 0.01, 1.0, 17
REFERENCE = "the run's training file"
SMALL = dict(n_train=2, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=16,
             test_resolutions=[32], progress=False)


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


def test_missing_files_of_a_full_load_take_the_physics_of_the_reference(tmp_path):
    """Without the reference both files took the generator's defaults (17 times, viscosity 0.01)."""
    run = generate_burgers_split(tmp_path / "run", 8, "train", 2, progress=False, **BURGERS)
    root = tmp_path / "data"
    train, tests, _ = load_burgers(root, reference={REFERENCE: _meta(run)}, **SMALL)
    for name in ("burgers_train_16.pt", "burgers_test_32.pt"):
        assert {k: _meta(root / name)[k] for k in BURGERS} == BURGERS, name
    assert next(iter(tests[32]))["y"].shape[-2] == BURGERS["n_time"]
    assert [entry["record"]["n_time"] for entry in train.data_files] == [BURGERS["n_time"]] * 2


def test_a_file_of_other_physics_than_the_reference_is_refused_naming_both(tmp_path):
    run = generate_darcy_split(tmp_path / "run", 8, "train", 2, progress=False, face_average="arithmetic")
    root = tmp_path / "data"
    generate_darcy_split(root, 32, "test", 2, progress=False)  # the default harmonic average
    with pytest.raises(ValueError, match="record different physics") as refused:
        load_darcy(root, reference={REFERENCE: _meta(run)}, **SMALL)
    assert f"{REFERENCE}: face_average='arithmetic'" in str(refused.value)
    assert f"{root / 'darcy_test_32.pt'}: face_average='harmonic'" in str(refused.value)
    assert not (root / "darcy_train_16.pt").exists()  # refused before anything is generated
