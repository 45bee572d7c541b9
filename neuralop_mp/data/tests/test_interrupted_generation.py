"""`neuralop-mp data` stopped while it saves a file: Ctrl-C and SIGTERM end it with one line and
no temporary left; SIGKILL's temporary is removed by the next generation of that file."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from neuralop_mp.data.darcy import generate_darcy

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

ARGV = ["darcy", "--res", "8", "--n-train", "2", "--n-test", "1", "--quiet"]

# the data command, its torch.save writing part of the file and then waiting: a signal sent once it
# says SAVING lands in the middle of the save, every time
CHILD = textwrap.dedent("""
    import signal, sys, time
    import torch

    # as from a terminal, whatever the test runner's parent ignores
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def waiting_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        f.flush()
        print("SAVING", flush=True)
        time.sleep(120)

    torch.save = waiting_save
    from neuralop_mp.data.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def start_saving(tmp_path):
    """The data command, started and now in the middle of saving the first file."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, str(script), *ARGV, "--root", str(tmp_path / "data")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = child.stdout.readline()
    if line.strip() != "SAVING":
        child.kill()
        pytest.fail(f"the child never reached the save: {line!r} {child.communicate()[1][-2000:]}")
    return child


def leftovers(root):
    return sorted(name for name in os.listdir(root) if not name.endswith(".lock"))


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_interrupt_during_the_save_leaves_no_temporary_and_says_one_line(tmp_path, signum, status, said):
    child = start_saving(tmp_path)
    child.send_signal(signum)
    _, err = child.communicate(timeout=60)
    assert child.returncode == status, err
    assert err.strip().splitlines() == [
        f"neuralop-mp data: {said}; the files finished before it are kept, the one being written was not saved; "
        "run the same command again to go on (finished files are reused)"], err
    assert leftovers(tmp_path / "data") == []


def test_the_temporary_of_a_killed_save_is_removed_by_the_next_generation(tmp_path):
    child = start_saving(tmp_path)
    child.kill()  # SIGKILL: no code of the child runs, its temporary stays
    child.wait(timeout=60)
    root = tmp_path / "data"
    (dead,) = leftovers(root)
    assert dead.startswith("darcy_train_8.pt.") and f".{child.pid}." in dead
    # a temporary of a process that is still running (a writer the lock did not stop) is not touched
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = dead.replace(f".{child.pid}.", f".{live.pid}.")
        (root / alive).write_bytes(b"partial")
        generate_darcy(root, resolutions=(8,), n_train=2, n_test=1, progress=False)
        assert leftovers(root) == ["darcy_test_8.pt", "darcy_train_8.pt", alive]
    finally:
        live.kill()
        live.wait()
