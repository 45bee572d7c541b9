"""Checkpoint folders that lost files, and checkpoints that cannot be written: what the trainer's
resume says about a folder that records no epoch or lost its manifest, and what a failed write
(a full disk) raises and leaves on disk."""
import errno
import shutil
import warnings

import pytest
import torch

from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import MANIFEST_FILE, PRECISION_STATE_FILE

from .test_checkpoint_faults import fresh_resumer, train_and_save

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A complete checkpoint of epoch 1 (two epochs trained)."""
    root = tmp_path_factory.mktemp("damage")
    train_and_save(root / "run", n_epochs=2)
    return root / "run"


@pytest.fixture
def ckpt(saved, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    return folder


def test_a_folder_that_records_no_epoch_warns_that_every_epoch_runs_again(ckpt):
    """No precision_state.pt and no manifest: it silently trained every epoch again from epoch 0."""
    for name in (PRECISION_STATE_FILE, MANIFEST_FILE):
        (ckpt / name).unlink()
    _, trainer = fresh_resumer(n_epochs=4)
    with pytest.warns(RuntimeWarning, match=rf"{ckpt} records no epoch .*starts again at epoch 0 of 4"):
        trainer.resume_state_from_dir(ckpt)
    assert trainer.start_epoch == 0


def test_a_folder_whose_manifest_records_the_epoch_resumes_after_it_without_that_warning(ckpt):
    """Upstream's Trainer writes no precision_state.pt but records the epoch in its manifest."""
    (ckpt / PRECISION_STATE_FILE).unlink()
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    torch.save({key: manifest[key] for key in ("model", "optimizer", "scheduler", "epoch")}, ckpt / MANIFEST_FILE)
    _, trainer = fresh_resumer(n_epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.resume_state_from_dir(ckpt)
    assert trainer.start_epoch == 2


def test_a_format_2_folder_without_its_manifest_names_it_missing_and_resumes_after_the_saved_epoch(ckpt):
    (ckpt / MANIFEST_FILE).unlink()
    _, trainer = fresh_resumer(n_epochs=4)
    with pytest.warns(RuntimeWarning) as warned:
        trainer.resume_state_from_dir(ckpt)
    (message,) = [str(w.message) for w in warned]
    assert message.startswith(f"{ckpt / MANIFEST_FILE} is missing, though {ckpt / PRECISION_STATE_FILE} records "
                              "format_version 2"), message
    assert trainer.start_epoch == 2


def test_a_manifest_of_a_future_format_is_named_by_the_file_that_records_it(ckpt):
    """Without a manifest the version is precision_state.pt's: a newer one is refused naming that file."""
    (ckpt / MANIFEST_FILE).unlink()
    state = torch.load(ckpt / PRECISION_STATE_FILE, weights_only=True)
    torch.save({**state, "format_version": 99}, ckpt / PRECISION_STATE_FILE)
    _, trainer = fresh_resumer(n_epochs=4)
    with pytest.raises(checkpointing.CheckpointError, match=rf"{ckpt / PRECISION_STATE_FILE} has format_version=99"):
        trainer.resume_state_from_dir(ckpt)


@pytest.mark.parametrize("failure", ["ENOSPC", "torch's writer"])
def test_a_write_that_fails_keeps_the_previous_checkpoint_and_removes_the_partial_one(ckpt, monkeypatch, failure):
    """torch.save reports a full disk as a RuntimeError of its writer (as writing to /dev/full
    shows), the files around it as OSError: both are one CheckpointWriteError naming the file."""
    _, trainer = fresh_resumer()
    trainer.epoch, trainer.save_best = 7, None
    real_save, before = torch.save, {p.name: p.read_bytes() for p in ckpt.iterdir()}

    def full_disk(obj, path, *args, **kwargs):
        if path.name != "optimizer.pt":
            return real_save(obj, path, *args, **kwargs)
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, "/dev/full")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    with pytest.raises(checkpointing.CheckpointWriteError) as raised:
        trainer.checkpoint(ckpt)
    error = raised.value
    tmp = ckpt.with_name("ckpt.tmp")
    assert isinstance(error, OSError) and error.filename == str(tmp / "optimizer.pt")
    # ENOSPC is a full disk, said so; torch's writer error, the test's disk having room, is not (test_checkpoint_disk_full)
    said = ": the disk is full, " if failure == "ENOSPC" else " ("
    assert str(error).startswith(f"could not write the checkpoint file {tmp / 'optimizer.pt'}{said}")
    assert error.errno == (errno.ENOSPC if failure == "ENOSPC" else None)
    assert not tmp.exists() and not ckpt.with_name("ckpt.old").exists()
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    monkeypatch.undo()
    _, resumed = fresh_resumer()
    resumed.resume_state_from_dir(ckpt)
    assert resumed.start_epoch == 2
