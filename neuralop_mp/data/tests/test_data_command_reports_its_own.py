"""``neuralop-mp data`` lists as its own only the files it generated itself (two runs on one root:
each file is one run's, ``(cached)`` in the other's list), and removes the temporaries that killed
generations left beside the data files, under their locks, saying so in one line."""
import io
import os
import re
import subprocess
import sys
import threading

import pytest

from neuralop_mp.data import cache, cli, generate_darcy, load_darcy
from neuralop_mp.data.darcy import generate_darcy_split
from neuralop_mp.run_setup import file_lock

ARGV = ["darcy", "--res", "8", "--n-train", "2", "--n-test", "1", "--quiet"]
FILES = ("darcy_train_8.pt", "darcy_test_8.pt")


class ThreadStdout(io.TextIOBase):
    """``sys.stdout`` that keeps what each thread prints apart."""

    def __init__(self):
        self.by_thread = {}

    def write(self, text):
        self.by_thread.setdefault(threading.get_ident(), []).append(text)
        return len(text)

    def text(self, ident):
        return "".join(self.by_thread.get(ident, []))


def test_two_concurrent_runs_each_list_only_the_files_they_generated(tmp_path, monkeypatch):
    """Both runs start on an empty root and meet (a barrier) before either generates: the old
    command compared modification times with those at its start, so each listed every file as its own."""
    root = tmp_path / "data"
    meet = threading.Barrier(2, timeout=60)
    real_generate = cli._generate

    def generate_together(args):
        meet.wait()
        return real_generate(args)

    monkeypatch.setattr(cli, "_generate", generate_together)
    out = ThreadStdout()
    monkeypatch.setattr(sys, "stdout", out)
    statuses, idents = {}, {}

    def run(key):
        idents[key] = threading.get_ident()
        statuses[key] = cli.main([*ARGV, "--root", str(root)])

    threads = [threading.Thread(target=run, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    monkeypatch.undo()
    assert statuses == {"a": 0, "b": 0}
    listed = {key: out.text(idents[key]).splitlines() for key in ("a", "b")}
    for name in FILES:
        lines = {key: [line for line in listed[key] if line.startswith(str(root / name))] for key in listed}
        assert all(len(found) == 1 for found in lines.values()), listed
        own = [key for key, (line,) in lines.items() if line == str(root / name)]
        cached = [key for key, (line,) in lines.items() if line == f"{root / name}  (cached)"]
        assert len(own) == 1 and len(cached) == 1, listed  # one run generated it, the other found it


def _dead_pid():
    """The id of a process that has ended (a child reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _temporary(root, name, pid, host=cache._HOST):
    path = root / (f"{name}.{host}.{pid}.1.tmp" if host is not None else f"{name}.{pid}.1.tmp")
    path.write_bytes(b"partial")
    return path


def test_a_run_that_finds_its_files_removes_what_killed_generations_left_and_says_so(tmp_path, capsys):
    """The files are up to date, so nothing is generated: the old command never took a lock then and
    left every temporary forever, saying nothing."""
    root = tmp_path / "data"
    generate_darcy(root, resolutions=8, n_train=2, n_test=1, progress=False)
    dead = _dead_pid()
    stale = [_temporary(root, "darcy_train_8.pt", dead),
             _temporary(root, "darcy_test_16.pt", dead, host=None)]  # another file's; the unnamed host's form
    kept = [_temporary(root, "darcy_train_8.pt", os.getppid()),  # a live process's: may still be writing
            _temporary(root, "darcy_train_8.pt", dead, host="another-host"),  # its pid says nothing here
            _temporary(root, "notes.pt", dead)]  # not a data file's name: a user's file
    assert cli.main([*ARGV, "--root", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [f"{root / name}  (cached)" for name in FILES]
    assert out[2] == ("removed 2 temporary files that a killed generation left: "
                      f"{', '.join(str(path) for path in sorted(stale))}")
    assert out[3].startswith("done in") and len(out) == 4
    assert [path.exists() for path in stale] == [False, False]
    assert all(path.exists() for path in kept)


def test_a_temporary_of_a_file_being_generated_is_left_and_a_loader_warns(tmp_path):
    """Another run holds the lock of the test file (generating it): its dead writer's temporary is
    left for a later run, while the training file's is removed as it is generated; a loader (no
    command to print it) says it as a RuntimeWarning."""
    root = tmp_path / "data"
    root.mkdir()
    dead = _dead_pid()
    train_tmp = _temporary(root, "darcy_train_8.pt", dead)
    test_tmp = _temporary(root, "darcy_test_8.pt", dead)
    with file_lock(root / "darcy_test_8.pt.lock"):
        with pytest.warns(RuntimeWarning, match=f"^removed 1 temporary file that a killed generation left: "
                                                f"{re.escape(str(train_tmp))}$"):
            generate_darcy_split(root, 8, "train", 1, progress=False)
    assert not train_tmp.exists() and test_tmp.exists()
    with pytest.warns(RuntimeWarning, match=f"^removed 1 temporary file .*: {re.escape(str(test_tmp))}$"):
        load_darcy(root, n_train=1, n_tests=[1], batch_size=1, test_batch_sizes=[1], train_resolution=8,
                   test_resolutions=[8], progress=False)
    assert not test_tmp.exists()
    assert sorted(os.listdir(root)) == sorted([*FILES, *(name + ".lock" for name in FILES)])
