"""A checkpoint that cannot be written says when the disk is full, with the free space of its file
system: torch's writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc:672]
. unexpected pos 49280 vs 49172``, without an errno, which the message alone never said. One rule
(:func:`~neuralop_mp.training.checkpointing.write_error`) for every file a run writes."""
import errno

import pytest
import torch

from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import CheckpointWriteError, save_training_files

pytestmark = pytest.mark.reliability


def _save_with_torchs_full_disk_error(tmp_path, monkeypatch, free):
    """save_training_files, torch.save of optimizer.pt failing as on a full disk (written to /dev/full),
    the file system reporting ``free`` bytes."""
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        return real_save(obj, "/dev/full" if path.name == "optimizer.pt" else path, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", save)
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: free, raising=False)
    model = torch.nn.Linear(4, 4)
    with pytest.raises(CheckpointWriteError) as raised:
        save_training_files(tmp_path / "ckpt", "model", model, optimizer=torch.optim.AdamW(model.parameters()))
    assert not (tmp_path / "ckpt.tmp").exists()
    return raised.value


def test_torchs_writer_error_on_a_nearly_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    error = _save_with_torchs_full_disk_error(tmp_path, monkeypatch, free=12 * 1024)
    path = tmp_path / "ckpt.tmp" / "optimizer.pt"
    assert str(error).startswith(f"could not write the checkpoint file {path}: the disk is full, 12.00 KiB free on "
                                 "its file system ("), str(error)
    assert error.errno == errno.ENOSPC and error.filename == str(path)


def test_torchs_writer_error_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path, monkeypatch):
    error = _save_with_torchs_full_disk_error(tmp_path, monkeypatch, free=50 << 30)
    assert "full" not in str(error) and error.errno is None
    assert str(error).startswith(f"could not write the checkpoint file {tmp_path / 'ckpt.tmp' / 'optimizer.pt'} (")


@pytest.mark.parametrize("free, needed, full", [(1 << 30, 2 << 30, True), (3 << 30, 2 << 30, False),
                                                (100, None, True), (5 << 20, None, False)])
def test_a_write_without_an_errno_meets_a_full_disk_when_less_is_free_than_it_writes(tmp_path, monkeypatch, free,
                                                                                    needed, full):
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: free, raising=False)
    error = checkpointing.write_error(tmp_path / "f.pt", RuntimeError("unexpected pos 64 vs 0"), needed=needed)
    assert ("the disk is full" in str(error)) is full
    assert error.errno == (errno.ENOSPC if full else None)


def test_enospc_is_a_full_disk_and_another_errno_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 0, raising=False)
    path = tmp_path / "f.pt"
    full = checkpointing.write_error(path, OSError(errno.ENOSPC, "No space left on device"), "the model file")
    assert str(full) == (f"could not write the model file {path}: the disk is full, 0 B free on its file system "
                         "([Errno 28] No space left on device)")
    denied = checkpointing.write_error(path, PermissionError(errno.EACCES, "Permission denied"), "the model file")
    assert str(denied) == f"could not write the model file {path} ([Errno 13] Permission denied)"
    assert denied.errno == errno.EACCES


def test_free_bytes_asks_the_nearest_folder_that_exists(tmp_path):
    assert checkpointing.free_bytes(tmp_path / "not" / "yet" / "there.pt") == checkpointing.free_bytes(tmp_path) > 0
