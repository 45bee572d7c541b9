"""What a load checks is what it trains on: files of ours that are not this load's generator's
(another dataset's file under its name, an older generator version), damaged archive headers,
and the errors of a shared data root under ``train`` (findings of a data-cache stress audit)."""
import contextlib
import re
import shutil

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.data import cache, generate_darcy, generate_navier_stokes, load_darcy
from neuralop_mp.data.cache import GENERATOR_VERSION, save_data_file
from neuralop_mp.data.file_checks import DataFileError, read_data_file

SMALL = dict(n_tests=(4,), test_batch_sizes=(4,), test_resolutions=(16,), progress=False)


def _darcy_and_ns(root):
    """Darcy and Navier-Stokes files at 16 (4 training, 4 test samples) in ``root``."""
    generate_darcy(root, resolutions=16, n_train=4, n_test=4, progress=False)
    generate_navier_stokes(root, resolutions=16, n_train=4, n_test=4, progress=False)


def _train_tensors(loader):
    """The training set's inputs and targets, in sample order (the loader shuffles)."""
    dataset = loader.dataset
    return (torch.stack([dataset[i]["x"] for i in range(len(dataset))]),
            torch.stack([dataset[i]["y"] for i in range(len(dataset))]))


def test_another_datasets_file_under_this_name_is_refused_naming_both_generators(tmp_path):
    _darcy_and_ns(tmp_path)
    shutil.copy(tmp_path / "nsforcing_train_16.pt", tmp_path / "darcy_train_16.pt")
    with pytest.raises(ValueError) as info:
        load_darcy(tmp_path, n_train=4, generate=False, **SMALL)
    message = str(info.value)
    assert str(tmp_path / "darcy_train_16.pt") in message
    assert "'navier_stokes'" in message and "'darcy'" in message
    # the physics of the Navier-Stokes record is not compared with the Darcy test file's
    assert "different physics" not in message and "face_average=None" not in message
    assert "neuralop-mp data darcy" in message


def test_another_datasets_file_is_regenerated_as_this_dataset_with_a_warning(tmp_path):
    reference = tmp_path / "reference"
    generate_darcy(reference, resolutions=16, n_train=4, n_test=4, progress=False)
    root = tmp_path / "root"
    _darcy_and_ns(root)
    shutil.copy(root / "nsforcing_train_16.pt", root / "darcy_train_16.pt")
    with pytest.warns(RuntimeWarning, match=r"darcy_train_16.pt holds navier_stokes data .* regenerated"):
        train, _, _ = load_darcy(root, n_train=4, **SMALL)
    records = {entry["file"]: entry["record"] for entry in train.data_files}
    assert records[str(root / "darcy_train_16.pt")]["generator"] == "darcy"
    # trained on the Darcy samples (those of a fresh root), not the Navier-Stokes ones
    expected, _, _ = load_darcy(reference, n_train=4, **SMALL)
    for got, want in zip(_train_tensors(train), _train_tensors(expected)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_file_of_an_older_generator_version_is_refused_or_regenerated(tmp_path):
    generate_darcy(tmp_path, resolutions=16, n_train=6, n_test=4, progress=False)
    path = tmp_path / "darcy_train_16.pt"
    data = torch.load(path, weights_only=True)
    meta = dict(data["meta"], version=GENERATOR_VERSION - 1)
    n_samples = meta.pop("n_samples")
    save_data_file(path, {"x": data["x"], "y": data["y"] + 1.0}, meta, n_samples)  # other numerics
    with pytest.raises(ValueError, match=re.escape(f"version {GENERATOR_VERSION - 1!r} of the darcy generator")):
        load_darcy(tmp_path, n_train=4, generate=False, **SMALL)
    with pytest.warns(RuntimeWarning, match=r"darcy_train_16.pt was written by version .* regenerated with 6 samples"):
        train, _, _ = load_darcy(tmp_path, n_train=4, **SMALL)
    regenerated = torch.load(path, weights_only=True)
    assert regenerated["meta"]["version"] == GENERATOR_VERSION and regenerated["meta"]["n_samples"] == 6
    torch.testing.assert_close(regenerated["y"], data["y"], rtol=0, atol=0)  # the current generator's samples


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _zip_header_offsets(raw):
    """Offsets of one byte of each kind the audit found escaping: the first central-directory
    entry's "version needed" field (NotImplementedError), the zip64 locator's disk count
    (BadZipFile "multiple disks", in the check of a partial file), the first local record's name
    (UnicodeDecodeError)."""
    return {"version needed": raw.index(b"PK\x01\x02") + 6, "disk count": raw.index(b"PK\x06\x07") + 16,
            "record name": 30}


@pytest.mark.parametrize("damage", ["version needed", "disk count", "record name"])
def test_damaged_archive_headers_are_a_data_file_error_and_regenerated(tmp_path, damage):
    generate_darcy(tmp_path, resolutions=16, n_train=4, n_test=10, progress=False)
    path = tmp_path / "darcy_test_16.pt"
    original = path.read_bytes()
    _flip(path, _zip_header_offsets(original)[damage])
    with pytest.raises(DataFileError, match=re.escape(str(path))) as info:
        read_data_file(path)
    assert info.value.replaceable  # ours (or cut short): regenerated as a truncated file is
    with pytest.warns(RuntimeWarning, match="regenerated"):
        load_darcy(tmp_path, n_train=4, n_tests=(10,), test_batch_sizes=(10,), test_resolutions=(16,),
                   progress=False)
    assert path.read_bytes() == original


TRAIN_FLAGS = ["--model.n_modes", "[4,4]", "--model.hidden_channels", "4", "--model.n_layers", "1",
               "--data.test_resolutions", "[8]", "--data.n_tests", "[4]", "--data.test_batch_sizes", "[4]",
               "--data.train_resolution", "8", "--data.batch_size", "4", "--data.n_train", "4",
               "--opt.n_epochs", "1", "--verbose", "false"]


def _train(tmp_path):
    return cli.main(["train", "darcy", "--data.data_root", str(tmp_path / "data"),
                     "--output_dir", str(tmp_path / "run"), *TRAIN_FLAGS])


def test_train_says_a_file_another_run_wrote_meanwhile_in_one_line(monkeypatch, tmp_path, capsys):
    other = tmp_path / "other"
    generate_darcy(other, resolutions=8, n_train=4, n_test=0, seed=7, progress=False)
    real_lock = cache._generation_lock

    @contextlib.contextmanager
    def another_run_writes_first(path):
        with real_lock(path) as held:
            if path.name == "darcy_train_8.pt":  # another run (seed 7) wrote it while this one waited
                shutil.copy(other / path.name, path)
            yield held

    monkeypatch.setattr(cache, "_generation_lock", another_run_writes_first)
    assert _train(tmp_path) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "written by another run (seed=7)" in lines[0]
    assert lines[0].startswith("neuralop-mp train: error: data:")


def test_train_says_a_lock_file_it_cannot_open_in_one_line(tmp_path, capsys):
    """A real lock file that cannot be opened (a folder in its place: os.open fails, as for root too;
    a permission the test's root user would pass)."""
    (tmp_path / "data" / "darcy_train_8.pt.lock").mkdir(parents=True)
    assert _train(tmp_path) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "darcy_train_8.pt.lock" in lines[0] and "Is a directory" in lines[0], lines
    assert f"could not write a data file in {tmp_path / 'data'}" in lines[0]
