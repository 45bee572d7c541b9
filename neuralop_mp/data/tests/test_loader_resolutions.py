"""The loaders refuse a resolution their generator refuses before generating anything."""
import pytest
import torch

from neuralop_mp.data import load_burgers, load_darcy, load_navier_stokes


@pytest.mark.parametrize("loader, bad, message", [
    (load_navier_stokes, 24, "Invalid Navier-Stokes resolution=24; allowed values: powers of 2 >= 8."),
    (load_darcy, 3, "Invalid Darcy resolution=3; allowed values: integers >= 4."),
    (load_burgers, 5, "Invalid Burgers resolution=5; allowed values: integers >= 8."),
], ids=["navier_stokes", "darcy", "burgers"])
def test_a_test_resolution_the_generator_refuses_is_refused_before_any_file_is_generated(
        tmp_path, loader, bad, message):
    # the bad resolution comes last: the earlier files must not be generated first
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ValueError) as raised:
        loader(root, n_train=1, n_tests=(1, 1), test_batch_sizes=(1, 1), train_resolution=8,
               test_resolutions=(8, bad), progress=False)
    assert str(raised.value) == message
    assert list(root.iterdir()) == []


def test_a_bad_train_resolution_is_refused_too(tmp_path):
    with pytest.raises(ValueError, match=r"^Invalid Navier-Stokes resolution=12; allowed values: powers of 2 >= 8\.$"):
        load_navier_stokes(tmp_path, n_train=1, n_tests=(1,), test_batch_sizes=(1,), train_resolution=12,
                           test_resolutions=(8,), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_users_own_files_at_a_resolution_the_generator_refuses_still_load(tmp_path):
    # only files to generate are checked: a readable file is used as is, whoever wrote it
    for split in ("train", "test"):
        torch.save({"x": torch.rand(2, 24, 24), "y": torch.rand(2, 24, 24)}, tmp_path / f"nsforcing_{split}_24.pt")
    train, tests, _ = load_navier_stokes(tmp_path, n_train=2, n_tests=(2,), batch_size=2, test_batch_sizes=(2,),
                                         train_resolution=24, test_resolutions=(24,), progress=False)
    assert next(iter(train))["x"].shape == (2, 1, 24, 24) and set(tests) == {24}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nsforcing_test_24.pt", "nsforcing_train_24.pt"]
