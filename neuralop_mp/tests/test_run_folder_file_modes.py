"""Files written atomically into a run folder (results.json, command.json, data_processor.pt) get
the mode the umask gives a new file, as the model files do: a shared folder's group reads them all."""
import os
import stat

import pytest
import torch

from neuralop_mp.run_folder import write_atomic


@pytest.fixture
def umask():
    def set_umask(value):
        previous.append(os.umask(value))

    previous = []
    yield set_umask
    if previous:
        os.umask(previous[0])


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_a_file_written_atomically_has_the_mode_of_a_new_file(tmp_path, umask, mask, expected):
    umask(mask)
    torch.save({}, tmp_path / "model_state_dict.pt")  # what a model file gets
    (tmp_path / "results.json").write_text("old")
    written = write_atomic(tmp_path / "results.json", lambda f: f.write(b"{}"))
    assert mode(written) == mode(tmp_path / "model_state_dict.pt") == expected
    assert written.read_text() == "{}"

    def failing(f):
        f.write(b"{partial")
        raise OSError("disk full")

    # a write that fails leaves the previous file as it was, and no temporary
    with pytest.raises(OSError, match="disk full"):
        write_atomic(written, failing)
    assert sorted(os.listdir(tmp_path)) == ["model_state_dict.pt", "results.json"]
    assert written.read_text() == "{}" and mode(written) == expected
