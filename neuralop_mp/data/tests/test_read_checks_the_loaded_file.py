"""A data file's checksums are read from the file its tensors were mapped from, not from whatever
its path names afterwards; a read that fails (an I/O error) is said as a read of that file, by
``read_data_file`` and by ``neuralop-mp train`` (not as a data file that could not be written)."""
import errno
import os
import shutil
import zipfile

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.data.file_checks import DataFileChecksumError, DataFileReadError, read_data_file
from neuralop_mp.data.tests.test_data_faults import darcy8  # noqa: F401 (a fixture: 4 train, 2 test samples at 8)


def _damaged_copy(source, target):
    """``source``'s bytes with 60 bytes of 'y' overwritten in place (same size, finite values): only
    its checksum tells."""
    raw = bytearray(source.read_bytes())
    start = bytes(raw).index(torch.load(source, weights_only=True)["y"][1].numpy().tobytes())
    raw[start:start + 60] = bytes(range(7, 67))
    target.write_bytes(bytes(raw))


def _replaced_after_the_load(monkeypatch, path, replacement):
    """``torch.load`` renames ``replacement`` over ``path`` once it has mapped the file (another
    run's ``--overwrite``, a user's copy): what the path names is no longer what was loaded."""
    real_load = torch.load

    def load_then_replace(*args, **kwargs):
        data = real_load(*args, **kwargs)
        if replacement.exists():
            os.replace(replacement, path)
        return data

    monkeypatch.setattr(torch, "load", load_then_replace)


def test_a_damaged_file_replaced_by_a_sound_one_after_its_load_is_caught(darcy8, tmp_path, monkeypatch):
    """The old read checked the sound file now at the path and trained on the damaged bytes it had mapped."""
    path, sound = tmp_path / "darcy_train_8.pt", tmp_path / "sound"
    _damaged_copy(darcy8 / "darcy_train_8.pt", path)
    shutil.copy(darcy8 / "darcy_train_8.pt", sound)
    _replaced_after_the_load(monkeypatch, path, sound)
    with pytest.raises(DataFileChecksumError, match=r"darcy_train_8.pt is corrupted: its record .* does not match"):
        read_data_file(path)
    assert not sound.exists()  # the replacement did happen between the load and the checksums


def test_a_sound_file_replaced_by_a_damaged_one_after_its_load_is_used(darcy8, tmp_path, monkeypatch):
    """The old read refused the sound file it had mapped for the damaged bytes now at its path."""
    path, damaged = tmp_path / "darcy_train_8.pt", tmp_path / "damaged"
    shutil.copy(darcy8 / "darcy_train_8.pt", path)
    _damaged_copy(darcy8 / "darcy_train_8.pt", damaged)
    original = torch.load(darcy8 / "darcy_train_8.pt", weights_only=True)
    _replaced_after_the_load(monkeypatch, path, damaged)
    data = read_data_file(path)
    assert not damaged.exists()
    assert torch.equal(data["x"], original["x"]) and torch.equal(data["y"], original["y"])


def test_where_no_descriptor_has_a_name_a_file_replaced_during_the_read_is_a_read_error(darcy8, tmp_path,
                                                                                       monkeypatch):
    """Without /proc/self/fd torch maps the path: a path that names another file once the load is
    done is said, not checked in the mapped file's place; an unchanged file reads as it is."""
    from neuralop_mp.data import file_checks

    monkeypatch.setattr(file_checks, "_DESCRIPTOR_FOLDER", str(tmp_path / "no-such-folder"))
    path, other = tmp_path / "darcy_train_8.pt", tmp_path / "other"
    shutil.copy(darcy8 / "darcy_train_8.pt", path)
    original = torch.load(path, weights_only=True)
    assert torch.equal(read_data_file(path)["y"], original["y"])
    shutil.copy(darcy8 / "darcy_train_8.pt", other)
    _replaced_after_the_load(monkeypatch, path, other)
    with pytest.raises(DataFileReadError, match=rf"^could not read the data file {path} \(it was replaced while "):
        read_data_file(path)


def _failing_reads(monkeypatch):
    """Every read of a record's bytes by the checksum pass fails with EIO (a disk's I/O error)."""
    def failing_read(self, *args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(zipfile.ZipExtFile, "read", failing_read)


def test_a_read_that_fails_is_a_read_error_naming_the_file(darcy8, tmp_path, monkeypatch):
    path = tmp_path / "darcy_train_8.pt"
    shutil.copy(darcy8 / "darcy_train_8.pt", path)
    _failing_reads(monkeypatch)
    with pytest.raises(DataFileReadError) as failed:
        read_data_file(path)
    assert failed.value.errno == errno.EIO and failed.value.filename == str(path)
    assert str(failed.value).startswith(f"could not read the data file {path} (OSError: [Errno {errno.EIO}]")


TRAIN_FLAGS = ["--model.n_modes", "[4,4]", "--model.hidden_channels", "4", "--model.n_layers", "1",
               "--data.test_resolutions", "[8]", "--data.n_tests", "[2]", "--data.test_batch_sizes", "[2]",
               "--data.train_resolution", "8", "--data.batch_size", "4", "--data.n_train", "4",
               "--opt.n_epochs", "1", "--verbose", "false"]


def test_train_says_a_data_file_it_could_not_read_in_one_line(darcy8, tmp_path, monkeypatch, capsys):
    """It said "could not write a data file in ROOT" for a file it was reading."""
    root = tmp_path / "data"
    shutil.copytree(darcy8, root)
    _failing_reads(monkeypatch)
    status = cli.main(["train", "darcy", "--data.data_root", str(root), "--output_dir", str(tmp_path / "run"),
                       *TRAIN_FLAGS])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"neuralop-mp train: error: data: could not read the data file {root}"), lines
    assert "could not write" not in lines[0]
