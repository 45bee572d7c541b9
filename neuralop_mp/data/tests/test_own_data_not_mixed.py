"""A load holding the user's own data files (no generation record) never gets generated files
beside them: generating the missing test resolution wrote synthetic Darcy labels next to the
user's own PDE data, and the summary reported test errors of 1e4 between two equations."""
import json

import pytest
import torch

from neuralop_mp.configs import load_config
from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.loaders import load_test_sets
from neuralop_mp.run_folder import run_data_records

pytestmark = pytest.mark.reliability

KW = dict(n_train=4, batch_size=2, progress=False, train_resolution=8)


def _own(root, split, res, n):
    generator = torch.Generator().manual_seed(res * 10 + len(split))
    torch.save({"x": torch.rand(n, res, res, generator=generator),
                "y": 100 + torch.rand(n, res, res, generator=generator)}, root / f"darcy_{split}_{res}.pt")


def test_generating_beside_the_users_own_files_is_refused(tmp_path):
    _own(tmp_path, "train", 8, 4)
    _own(tmp_path, "test", 8, 2)
    before = sorted(p.name for p in tmp_path.iterdir())
    kw = dict(KW, n_tests=[2, 2], test_batch_sizes=[2, 2], test_resolutions=[8, 16])
    with pytest.raises(ValueError, match=r"darcy_train_8.pt, .*darcy_test_8.pt hold your own data .*"
                                         r"darcy_test_16.pt is not there, and generating it would put synthetic"):
        load_darcy(tmp_path, **kw, generate=True)
    with pytest.raises(FileNotFoundError, match=r"Missing data files: .*darcy_test_16.pt\. .*put your own file") as info:
        load_darcy(tmp_path, **kw, generate=False)
    assert "neuralop-mp data darcy" not in str(info.value)  # that command writes the generator's data, not theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # the user's files alone still load
    train, tests, _ = load_darcy(tmp_path, **dict(KW, n_tests=[2], test_batch_sizes=[2], test_resolutions=[8]))
    assert float(train.dataset[0]["y"].min()) >= 100


def test_a_load_of_own_and_generated_files_is_refused(tmp_path):
    generate_darcy(tmp_path, resolutions=(16,), n_train=1, n_test=2, progress=False)
    (tmp_path / "darcy_train_16.pt").unlink()
    _own(tmp_path, "train", 8, 4)
    _own(tmp_path, "test", 8, 2)
    with pytest.raises(ValueError, match=r"mixes files of your own with files neuralop-mp generated: .*"
                                         r"darcy_test_16.pt was generated"):
        load_darcy(tmp_path, **dict(KW, n_tests=[2, 2], test_batch_sizes=[2, 2], test_resolutions=[8, 16]))


def test_eval_of_a_run_trained_on_own_data_does_not_generate_its_test_sets(tmp_path):
    """eval --res N of such a run loads the test files alone: the run's record says its training
    file was the user's own, and the test set is not generated at another resolution either."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    _own(data_root, "train", 8, 4)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"data_files": [
        {"file": str(data_root / "darcy_train_8.pt"), "samples_in_file": 4, "record": None}]}))
    config = load_config("darcy", ["--data.data_root", str(data_root), "--data.train_resolution", "8"])
    reference = run_data_records(run, config.data)
    assert list(reference.values()) == [None]
    with pytest.raises(ValueError, match=r"hold[s]? your own data .*darcy_test_16.pt is not there"):
        load_test_sets("load_darcy", data_root, n_tests=[2], test_batch_sizes=[2], test_resolutions=[16],
                       progress=False, reference=reference)
    assert not (data_root / "darcy_test_16.pt").exists()
    # without results.json: the training file found at the data root without a record says the same
    (run / "results.json").unlink()
    assert list(run_data_records(run, config.data).values()) == [None]


def test_diagnose_on_own_data_says_which_files_it_needs(tmp_path):
    """diagnose reads test inputs at twice the working resolution: with own files at 8 alone, the
    load's advice ('leave its resolution out of the load') is none a diagnose user can follow."""
    from neuralop_mp.diagnose.cli import fine_inputs

    _own(tmp_path, "train", 8, 8)
    _own(tmp_path, "test", 8, 2)
    with pytest.raises(ValueError) as info:
        fine_inputs("load_darcy", {"data_root": tmp_path}, 8, 4)
    assert str(info.value) == (
        f"{tmp_path / 'darcy_train_8.pt'} holds your own data, and diagnose measures "
        "the model on test inputs at twice the working resolution (16 for --resolution 8) with 8 training samples at "
        f"8 for the normalizer: {tmp_path / 'darcy_test_16.pt'} is not your own. Put your own files there, or give "
        "--resolution N where your data holds N and 2N.")  # the load's own advice is none diagnose can follow
    assert not (tmp_path / "darcy_test_16.pt").exists()
    _own(tmp_path, "test", 16, 4)  # the user's own file at 2N: diagnosed on it
    assert fine_inputs("load_darcy", {"data_root": tmp_path}, 8, 4).shape[-1] == 16


def test_a_run_recorded_on_own_training_data_beside_a_generated_test_file_is_own(tmp_path):
    """A run of the previous version trained on own files while it generated a test file beside them:
    its results.json records the generated file's physics, which was taken for the run's, and every
    eval of it was refused as a mix, even of the user's own test file alone."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"data_files": [
        {"file": str(data_root / "darcy_test_32.pt"), "samples_in_file": 2, "record": {"generator": "darcy",
                                                                                       "seed": 0, "n_samples": 2}},
        {"file": str(data_root / "darcy_train_8.pt"), "samples_in_file": 4, "record": None}]}))
    config = load_config("darcy", ["--data.data_root", str(data_root), "--data.train_resolution", "8"])
    assert list(run_data_records(run, config.data).values()) == [None]
    _own(data_root, "test", 8, 2)
    tests = load_test_sets("load_darcy", data_root, n_tests=[2], test_batch_sizes=[2], test_resolutions=[8],
                           progress=False, reference=run_data_records(run, config.data))
    assert list(tests) == [8]


def test_a_resume_refuses_training_data_that_is_not_the_runs(tmp_path, monkeypatch, capsys):
    """train --resume read whatever the data root held: a run trained on generated data went on with the
    user's own files put there since (normalizers and the run's data record rewritten, without a word)."""
    from neuralop_mp.cli import main

    data_root = tmp_path / "data"
    run = tmp_path / "run"
    tiny = ["--data.data_root", str(data_root), "--data.train_resolution", "8", "--data.test_resolutions", "[8]",
            "--data.n_train", "4", "--data.n_tests", "[2]", "--data.batch_size", "2", "--data.test_batch_sizes",
            "[2]", "--model.hidden_channels", "4", "--model.n_modes", "[2,2]", "--threads", "1"]
    assert main(["train", "darcy", "--opt.n_epochs", "1", "--output_dir", str(run), *tiny]) == 0
    _own(data_root, "train", 8, 4)  # the user's own data where the run's generated file was
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--opt.n_epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert (f"The data changed since the run: {data_root / 'darcy_train_8.pt'} (as {run / 'results.json'} records "
            f"it) was generated, and {data_root / 'darcy_train_8.pt'} is now your own data. Put the run's files back "
            "in the data root, or start a new run on this data.") in err, err
    assert json.loads((run / "results.json").read_text())["data_files"][0]["record"] is not None  # not rewritten
    # the reverse: a run on the user's own files, the data root regenerated since
    own_root, own_run = tmp_path / "own", tmp_path / "own_run"
    own_root.mkdir()
    _own(own_root, "train", 8, 4)
    _own(own_root, "test", 8, 2)
    mine = [own_root if value == str(data_root) else value for value in tiny]
    assert main(["train", "darcy", "--opt.n_epochs", "1", "--output_dir", str(own_run), *map(str, mine)]) == 0
    generate_darcy(own_root, resolutions=(8,), n_train=4, n_test=2, progress=False, overwrite=True)
    capsys.readouterr()
    assert main(["train", "--resume", str(own_run), "--opt.n_epochs", "2"]) == 2
    assert (f"{own_root / 'darcy_train_8.pt'} (as {own_run / 'results.json'} records it) was your own data, and "
            f"{own_root / 'darcy_train_8.pt'}, {own_root / 'darcy_test_8.pt'} are now generated.") in capsys.readouterr().err
