"""``neuralop-mp data`` on a full disk: one line naming the file and the free space, exit status 1,
no temporary left (it was three chained tracebacks). The disk is simulated: torch.save fails with
ENOSPC after writing part of the file."""
import errno
import os

import pytest
import torch

from neuralop_mp.data import cli
from neuralop_mp.training import checkpointing

pytestmark = pytest.mark.reliability

ARGS = ["darcy", "--res", "8", "--n-train", "2", "--n-test", "1", "--quiet"]


def test_a_full_disk_while_generating_is_one_line_naming_the_file_and_the_free_space(tmp_path, monkeypatch, capsys):
    real_save, saved = torch.save, []

    def save(obj, f, *args, **kwargs):
        if saved:  # the first file is written; the second meets the full disk
            f.write(b"\0" * 64)
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(f.name)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 3000, raising=False)
    assert cli.main([*ARGS, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    written = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert len(written) == 1  # the first file, complete; no temporary of the second
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    (failed,) = {"darcy_train_8.pt", "darcy_test_8.pt"} - set(written)
    assert err == (f"neuralop-mp data: error: could not write the data file {tmp_path / failed}: the disk is full, "
                   "2.93 KiB free on its file system ([Errno 28] No space left on device); the files finished "
                   "before it are kept, the one being written was not saved; free some space and run the same "
                   "command again (finished files are reused)\n")


def test_generate_from_python_on_a_full_disk_names_the_file_and_the_full_disk(tmp_path, monkeypatch):
    """The Python API got a bare OSError naming no file; the CLI found the file by walking the traceback."""
    from neuralop_mp.data import generate_darcy

    def save(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 3000, raising=False)
    with pytest.raises(checkpointing.CheckpointWriteError, match=r"could not write the data file .*darcy_t\w+_8\.pt: "
                                                                 r"the disk is full") as info:
        generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False)
    assert info.value.errno == errno.ENOSPC


def test_a_folder_in_a_data_files_place_is_refused_as_unreadable_not_as_a_failed_write(tmp_path, capsys):
    (tmp_path / "darcy_train_8.pt").mkdir()
    assert cli.main([*ARGS, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not write" not in err and "darcy_train_8.pt cannot be read (IsADirectoryError" in err, err
    assert (tmp_path / "darcy_train_8.pt").is_dir()


def test_a_full_disk_at_the_lock_file_is_one_line_naming_the_data_folder(tmp_path, monkeypatch, capsys):
    """A write before the data file's own (its lock file, its folder) printed a traceback. It is a setup
    error: exit status 2, as `neuralop-mp train`'s for the same lock file (it was 1, a data file's)."""
    from contextlib import contextmanager

    from neuralop_mp.data import cache

    @contextmanager
    def full_disk_lock(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
        yield

    monkeypatch.setattr(cache, "file_lock", full_disk_lock)
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 3000, raising=False)
    assert cli.main([*ARGS, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp data: error: could not write a data file in {tmp_path}: the disk is full")
    assert len(err.strip().splitlines()) == 1, err


def test_diagnose_and_eval_generating_on_a_full_disk_say_it_in_one_line(tmp_path, monkeypatch, capsys):
    """Train and data said a full disk in one line; diagnose (its test inputs) and eval (a test set at
    another resolution) generating data printed a traceback. Both through their real generation."""
    from neuralop_mp import cli as main_cli

    data_root, run = tmp_path / "data", tmp_path / "run"
    tiny = ["--data.data_root", str(data_root), "--data.train_resolution", "8", "--data.test_resolutions", "[8]",
            "--data.n_train", "4", "--data.n_tests", "[2]", "--data.batch_size", "2", "--data.test_batch_sizes",
            "[2]", "--model.hidden_channels", "4", "--model.n_modes", "[2,2]", "--threads", "1"]
    assert main_cli.main(["train", "darcy", "--opt.n_epochs", "1", "--output_dir", str(run), *tiny]) == 0

    def save(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)  # from here on, the disk is full
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 3000, raising=False)
    capsys.readouterr()
    code = main_cli.main(["diagnose", "darcy", "--resolution", "8", "--n-samples", "2", "--data.data_root",
                          str(data_root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("neuralop-mp diagnose: error: could not write the data file ") and "the disk is full" in err
    code = main_cli.main(["eval", str(run), "--res", "32"])  # the run's test set at 32 is generated
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"neuralop-mp eval: error: could not write the data file "
                                        f"{data_root / 'darcy_test_32.pt'}: the disk is full"), err


def test_a_data_file_that_may_not_replace_another_users_is_told_to_fix_permissions(tmp_path, monkeypatch, capsys):
    """In a shared (sticky) folder the rename over another user's file is refused (EPERM) after the
    samples were computed; "run the same command again" would fail the same way: the line says to
    fix the permissions or give another --root."""
    from neuralop_mp.data import cache

    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("darcy_test_8.pt"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", replace)
    assert cli.main([*ARGS, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(tmp_path / "darcy_test_8.pt") in err, err
    assert err.rstrip().endswith("fix the folder's permissions (or its files': another user's cannot be replaced in a "
                                 "shared folder), or give another --root, and run the same command again (finished "
                                 "files are reused)")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
