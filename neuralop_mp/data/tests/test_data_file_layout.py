"""A data file's number of axes, a repeated test resolution and the warning of a damaged file of
ours: each said in one line naming what is wrong, before any training."""
import warnings

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.data import generate_darcy, load_burgers, load_darcy
from neuralop_mp.data.file_checks import DataFileError
from neuralop_mp.data.loaders import load_test_sets

SMALL = dict(n_train=4, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=8, test_resolutions=[8],
             progress=False)


def _own_files(root, prefix, res, x_shape, y_shape):
    """The user's own train (4 samples) and test (2 samples) files: no generation record."""
    for split, n in (("train", 4), ("test", 2)):
        torch.save({"x": torch.rand(n, *x_shape), "y": torch.rand(n, *y_shape)}, root / f"{prefix}_{split}_{res}.pt")


# ---------------------------------------------------------------- the number of axes

def test_a_channel_axis_stored_in_darcy_x_is_refused_naming_the_file_shape_and_layout(tmp_path):
    _own_files(tmp_path, "darcy", 8, (1, 8, 8), (8, 8))
    with pytest.raises(DataFileError) as raised:
        load_darcy(tmp_path, **SMALL, generate=False)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'darcy_train_8.pt'}: 'x' has shape (4, 1, 8, 8) (4 axes), but this load "
                              "reads 'x' as (samples, 8, 8) (3 axes"), message
    assert "x = x.squeeze(1)" in message and "\n" not in message


def test_a_burgers_y_without_its_time_axis_is_refused(tmp_path):
    _own_files(tmp_path, "burgers", 16, (16,), (16,))
    with pytest.raises(DataFileError, match=r"burgers_train_16.pt: 'y' has shape \(4, 16\) \(2 axes\), but this "
                                            r"load reads 'y' as \(samples, n_time, 16\) \(3 axes.*stack them"):
        load_burgers(tmp_path, **dict(SMALL, train_resolution=16, test_resolutions=[16]), generate=False)


def test_files_in_upstreams_layout_still_load(tmp_path):
    """neuraloperator's layouts: Darcy x, y (N, res, res); Burgers x (N, res), y (N, n_time, res)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "b").mkdir()
    _own_files(tmp_path / "d", "darcy", 8, (8, 8), (8, 8))
    _own_files(tmp_path / "b", "burgers", 16, (16,), (5, 16))
    train, _, _ = load_darcy(tmp_path / "d", **SMALL, generate=False)
    assert next(iter(train))["x"].shape == (2, 1, 8, 8)
    train, _, _ = load_burgers(tmp_path / "b", **dict(SMALL, train_resolution=16, test_resolutions=[16]),
                               generate=False)
    assert next(iter(train))["y"].shape == (2, 1, 5, 16)


def test_train_names_the_file_not_the_number_of_modes(tmp_path, capsys):
    """The audit's case: an extra axis reached the model, whose errors asked for 3 mode counts."""
    root = tmp_path / "data"
    root.mkdir()
    _own_files(root, "darcy", 16, (1, 16, 16), (1, 16, 16))
    assert cli.main(["train", "darcy", "--data.data_root", str(root), "--data.n_train", "4", "--data.n_tests", "[2]",
                     "--data.test_resolutions", "[16]", "--data.test_batch_sizes", "[2]", "--data.batch_size", "2",
                     "--opt.n_epochs", "1", "--threads", "1", "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "darcy_train_16.pt: 'x' has shape (4, 1, 16, 16)" in err and "n_modes" not in err, err


# ---------------------------------------------------------------- a repeated test resolution

@pytest.mark.parametrize("load", [
    lambda root: load_darcy(root, **dict(SMALL, test_resolutions=(8, 8), n_tests=(2, 5), test_batch_sizes=(2, 5))),
    lambda root: load_test_sets("load_darcy", root, n_tests=(2, 5), test_batch_sizes=(2, 5), test_resolutions=(8, 8),
                                progress=False),
], ids=["load_darcy", "load_test_sets"])
def test_a_test_resolution_given_twice_is_refused_before_any_file_is_written(load, tmp_path):
    # it returned {8: the 5 samples' loader}: the 2-sample test set was dropped unsaid
    with pytest.raises(ValueError, match=r"^Invalid test_resolutions=\[8, 8\]: 8 given more than once; allowed "
                                         r"values: each resolution once\.$"):
        load(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a damaged file of ours

def test_a_damaged_file_of_ours_that_is_regenerated_does_not_advise_deleting_it(tmp_path):
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False)
    path = tmp_path / "darcy_train_8.pt"
    y = torch.load(path, weights_only=True)["y"]
    raw = bytearray(path.read_bytes())
    start = bytes(raw).index(y[1].numpy().tobytes())  # stored uncompressed: overwrite sample 1 in place
    raw[start:start + 16] = bytes(range(7, 23))
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False)
    [warning] = [w for w in caught if "is corrupted" in str(w.message)]
    assert "it is regenerated" in str(warning.message) and "Delete it" not in str(warning.message), warning.message
    assert torch.equal(torch.load(path, weights_only=True)["y"], y)
