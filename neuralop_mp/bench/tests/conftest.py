"""The GPU campaign's dry run, run once per test session for the tests that only read its files.

A dry run (``bench gpu --dry-run``) takes seconds; tests that check what one run of the same
options writes share it through :func:`gpu_dry_run`. Under pytest-xdist the workers share one
run as well: the first worker to ask runs it while the others wait on a file lock, then read its
folder (pytest-xdist's recipe for a session fixture run once).
"""
import contextlib
import os
import shutil

import pytest

from neuralop_mp.bench import gpu

try:
    import fcntl
except ImportError:  # no POSIX file locks (Windows): each xdist worker makes its own runs
    fcntl = None


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (a lock file, created if missing) for the block."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def gpu_dry_run(tmp_path_factory):
    """``run(*options)``: the folder of ``bench gpu --dry-run *options --out FOLDER``, run once.

    The run is made by the first test that asks for its options, inside that test (its autouse
    fixtures in force: one torch thread, torch's seed 0, the faked allocator), and asserts its exit
    code 0, so each test that asks fails when the run fails (a failed run is not kept: the next
    test runs it again). The folder is shared: a test that changes files copies it first
    (``shutil.copytree(folder, out, dirs_exist_ok=True)``: the files the run would have written
    into ``out``).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's basetemp is a folder of the session's one
    done = {}

    def run(*options):
        if options not in done:
            name = "gpu-dry-run" + "".join(f"_{option.lstrip('-')}" for option in options)
            folder = shared / name
            with _locked(shared / f"{name}.lock"):
                if not folder.is_dir():
                    partial = shared / f"{name}.partial"
                    shutil.rmtree(partial, ignore_errors=True)  # a run that failed before
                    assert gpu.main(["--dry-run", *options, "--out", str(partial)]) == 0
                    partial.rename(folder)  # only a finished run is read
            done[options] = folder
        return done[options]

    return run

