"""``run_setup.file_lock`` refuses a symbolic link in the lock file's place instead of following it:
in a shared data root or run folder anyone may plant one, and opening it with O_CREAT created (and
locked) a file wherever it pointed — now also on the data cache's sweeps of an up-to-date folder."""
import errno
import os

import pytest

from neuralop_mp.run_setup import file_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this system")


def test_a_link_in_the_locks_place_is_refused_and_nothing_is_created_where_it_points(tmp_path):
    target = tmp_path / "elsewhere" / "planted"
    target.parent.mkdir()
    lock = tmp_path / "darcy_train_16.pt.lock"
    lock.symlink_to(target)
    with pytest.raises(OSError) as refused:
        with file_lock(lock):
            pass
    assert refused.value.errno == errno.ELOOP
    assert not target.exists()


def test_a_lock_file_of_its_own_is_taken_and_held(tmp_path):
    lock = tmp_path / ".lock"
    with file_lock(lock) as held:
        assert held is not None and held[1] is True
        with pytest.raises(BlockingIOError):  # a second open file description conflicts while it is held
            with file_lock(lock, wait=False):
                pass
    assert lock.is_file() and not lock.is_symlink()
