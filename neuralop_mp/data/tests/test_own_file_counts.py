"""A file of the user's own (no generation record) with fewer samples than requested: the message
names the count option to lower, never ``--overwrite``, which would replace the user's data with
synthetic samples; a file of ours keeps the advice to regenerate it."""
import shlex

import pytest
import torch

from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.cli import main as data_main

SMALL = dict(batch_size=2, test_batch_sizes=[2], train_resolution=8, test_resolutions=[8], progress=False)


def _own_files(root, n_train, n_test):
    for split, n in (("train", n_train), ("test", n_test)):
        torch.save({"x": torch.rand(n, 8, 8), "y": torch.rand(n, 8, 8)}, root / f"darcy_{split}_8.pt")


@pytest.mark.parametrize("generate", [True, False])
@pytest.mark.parametrize("split, counts, option", [("train", dict(n_train=4, n_tests=[2]), "--data.n_train"),
                                                   ("test", dict(n_train=2, n_tests=[4]), "--data.n_tests")])
def test_too_few_samples_in_a_users_own_file_names_the_count_not_overwrite(tmp_path, generate, split, counts,
                                                                           option):
    _own_files(tmp_path, 2, 2)
    before = (tmp_path / f"darcy_{split}_8.pt").read_bytes()
    with pytest.raises(ValueError) as info:
        load_darcy(tmp_path, **counts, **SMALL, generate=generate)
    message = str(info.value)
    assert f"darcy_{split}_8.pt holds 2 samples but 4 were requested" in message
    assert option in message and "at most 2" in message
    assert ("n_train=" if split == "train" else "n_tests=") in message
    assert "--overwrite" not in message and "neuralop-mp data darcy" not in message
    assert (tmp_path / f"darcy_{split}_8.pt").read_bytes() == before  # the user's data is left as it is


def test_too_few_samples_in_a_file_of_ours_still_says_how_to_regenerate_it(tmp_path):
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=2, progress=False)
    with pytest.raises(ValueError, match=r"darcy_train_8.pt holds 2 samples but 4 were requested; lower the count "
                                         r"or regenerate it \(`neuralop-mp data darcy .*`\)") as error:
        load_darcy(tmp_path, n_train=4, n_tests=[2], **SMALL, generate=False)
    # the command, run as given, makes that file alone big enough (the test file is left as it was)
    command = str(error.value).split("`")[1]
    assert command.endswith("--res 8 --n-train 4 --n-test 0 --face-average harmonic")
    test_file = (tmp_path / "darcy_test_8.pt").read_bytes()
    assert data_main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert (tmp_path / "darcy_test_8.pt").read_bytes() == test_file
    load_darcy(tmp_path, n_train=4, n_tests=[2], **SMALL, generate=False)


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_advice_for_a_file_of_another_seed_rewrites_that_file_alone(tmp_path, split):
    """It gave --n-{split} only, with --overwrite: run as given, it rewrote the other split's file of the
    requested seed at the generator's default count (a 2-sample training file became 1000 samples)."""
    other = "test" if split == "train" else "train"
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=2, seed=1, progress=False)
    generate_darcy(tmp_path, resolutions=(8,), **{f"n_{split}": 3, f"n_{other}": 0}, seed=0, overwrite=True,
                   progress=False)
    with pytest.raises(ValueError, match=f"darcy_{split}_8.pt was generated with seed=0") as error:
        load_darcy(tmp_path, n_train=2, n_tests=[2], **SMALL, seed=1, generate=False)
    command = str(error.value).split("`")[1]
    kept = (tmp_path / f"darcy_{other}_8.pt").read_bytes()
    assert data_main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert (tmp_path / f"darcy_{other}_8.pt").read_bytes() == kept
    meta = torch.load(tmp_path / f"darcy_{split}_8.pt", weights_only=True)["meta"]
    assert (meta["seed"], meta["n_samples"]) == (1, 3)  # as many samples as the file held
    load_darcy(tmp_path, n_train=2, n_tests=[2], **SMALL, seed=1, generate=False)


def test_the_missing_files_command_carries_the_requested_seed(tmp_path):
    """Without --seed the command wrote seed-0 files, which the same load then refused."""
    with pytest.raises(FileNotFoundError) as error:
        load_darcy(tmp_path, n_train=2, n_tests=[2], **SMALL, seed=3, generate=False)
    command = next(line.strip() for line in str(error.value).splitlines() if line.strip().startswith("neuralop-mp"))
    assert "--seed 3" in command
    assert data_main(shlex.split(command)[2:] + ["--quiet"]) == 0
    load_darcy(tmp_path, n_train=2, n_tests=[2], **SMALL, seed=3, generate=False)
