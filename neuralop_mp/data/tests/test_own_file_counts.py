"""A file of the user's own (no generation record) with fewer samples than requested: the message
names the count option to lower, never ``--overwrite``, which would replace the user's data with
synthetic samples; a file of ours keeps the advice to regenerate it."""
import pytest
import torch

from neuralop_mp.data import generate_darcy, load_darcy

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
                                         r"or regenerate it \(`neuralop-mp data darcy .*--overwrite`\)"):
        load_darcy(tmp_path, n_train=4, n_tests=[2], **SMALL, generate=False)
