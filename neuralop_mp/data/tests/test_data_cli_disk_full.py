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
                   "2.9 KiB free on its file system ([Errno 28] No space left on device); the files finished "
                   "before it are kept, the one being written was not saved; free some space and run the same "
                   "command again (finished files are reused)\n")
