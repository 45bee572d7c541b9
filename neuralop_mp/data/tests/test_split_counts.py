"""A split of 0 samples is not written (a test set alone at a new resolution), counts are
checked before anything is generated, and Darcy's face average has a CLI flag that the
loaders' advice carries."""
import pytest
import torch

from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.cli import main
from neuralop_mp.data.darcy import generate_darcy_split


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


def test_a_split_of_zero_samples_is_not_written(tmp_path):
    paths = generate_darcy(tmp_path, resolutions=(8, 10), n_train=0, n_test=2, progress=False)
    assert [p is None for p in paths[8]] == [True, False] and [p is None for p in paths[10]] == [True, False]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["darcy_test_10.pt", "darcy_test_8.pt"]
    assert _meta(paths[8][1])["n_samples"] == 2


@pytest.mark.parametrize("counts, error, fragment", [
    (dict(n_train=-1, n_test=2), ValueError, "n_train=-1"),
    (dict(n_train=2, n_test=1.5), TypeError, "n_test=1.5"),
    (dict(n_train=0, n_test=0), ValueError, "n_train=0 and n_test=0"),
])
def test_bad_counts_are_refused_naming_them_before_any_file(tmp_path, counts, error, fragment):
    with pytest.raises(error, match=fragment):
        generate_darcy(tmp_path, resolutions=(8,), progress=False, **counts)
    assert not list(tmp_path.glob("*.pt"))


def test_a_split_generator_refuses_zero_samples_naming_the_count(tmp_path):
    # it failed in numpy's stack ("need at least one array to stack") after taking the lock
    with pytest.raises(ValueError, match=r"n_samples=0; allowed values: integers >= 1"):
        generate_darcy_split(tmp_path, 8, "test", 0, progress=False)


def test_the_cli_writes_a_test_set_alone(tmp_path, capsys):
    assert main(["darcy", "--root", str(tmp_path), "--res", "8", "--n-train", "0", "--n-test", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "darcy_test_8.pt" in out and "darcy_train_8.pt" not in out
    assert [p.name for p in tmp_path.glob("*.pt")] == ["darcy_test_8.pt"]


def test_the_face_average_flag_is_recorded_and_carried_by_the_loaders_advice(tmp_path):
    assert main(["darcy", "--root", str(tmp_path), "--res", "8", "--n-train", "2", "--n-test", "2",
                 "--face-average", "arithmetic", "--quiet"]) == 0
    train, test = _meta(tmp_path / "darcy_train_8.pt"), _meta(tmp_path / "darcy_test_8.pt")
    assert train["face_average"] == test["face_average"] == "arithmetic"
    with pytest.raises(FileNotFoundError) as error:
        load_darcy(tmp_path, n_train=2, n_tests=(2, 2), batch_size=2, test_batch_sizes=(2, 2), train_resolution=8,
                   test_resolutions=(8, 10), generate=False, progress=False)
    command = next(line.strip() for line in str(error.value).splitlines() if line.strip().startswith("neuralop-mp"))
    assert command.endswith("--res 10 --n-train 0 --n-test 2 --face-average arithmetic")
    assert main(command.split()[2:] + ["--quiet"]) == 0
    assert _meta(tmp_path / "darcy_test_10.pt")["face_average"] == "arithmetic"
    assert not (tmp_path / "darcy_train_10.pt").exists()
