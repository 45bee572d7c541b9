"""What a run killed (SIGKILL) while writing its run folder leaves there: the temporary of the file
or model it was writing, under a random name no later write finds. The next run that takes the
folder's lock (a ``--resume``, or a new run in the folder) removes every temporary of the run's
naming, and says so in one line; a user's files of similar names, links, and a live writer's
temporaries are left. Real killed writers: forked children that SIGKILL themselves mid-write."""
import os
import signal
import warnings

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.run_folder import (BEST_MODEL, COMMAND_FILE, DATA_PROCESSOR_FILE, FINAL_MODEL, LOSS_CURVE_FILE,
                                    RESULTS_FILE, _new_temporary, remove_killed_temporaries, run_folder_lock,
                                    save_model, write_atomic)
from neuralop_mp.run_setup import RunSetupError

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = [pytest.mark.reliability, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")]

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
# names a user may give their own files: near the run's temporaries, none of them one
USERS_FILES = [".results.json.backup.tmp", "results.json.0123456789ab.tmp", ".notes.0123456789ab.tmp",
               ".results.json.0123456789AB.tmp", ".model.0123456789ab.tmp.keep"]


def train(*args):
    return cli.main(["train", "darcy", "--opt.n_epochs", "1", "--threads", "1", *TINY_ARGS, *args])


def _killed_while_writing(write):
    """Run ``write()`` in a forked child that is SIGKILLed inside it, as a run killed mid-write."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            write()
        finally:
            os._exit(3)  # reached only when write() was not killed: the status below fails the test
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _cut_write(f):
    f.write(b'{"cut sho')
    f.flush()
    _kill()


def _tiny_model():
    from neuralop.models import FNO

    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), hidden_channels=4, in_channels=1, out_channels=1, n_layers=1)


def _killed_model_save(folder, name):
    """A save_model of ``name`` killed once upstream's save_checkpoint wrote its files (a whole copy
    of the weights in the temporary folder), before they were renamed into place."""
    model = _tiny_model()
    save = model.save_checkpoint

    def save_then_die(tmp, save_name):
        save(tmp, save_name)
        _kill()

    model.save_checkpoint = save_then_die
    _killed_while_writing(lambda: save_model(model, folder, name))


def _leave_killed_temporaries(folder):
    """One killed write of each kind a run makes in its folder; the temporaries they left."""
    for name in (COMMAND_FILE, DATA_PROCESSOR_FILE, LOSS_CURVE_FILE, RESULTS_FILE):
        _killed_while_writing(lambda: write_atomic(folder / name, _cut_write))
    for name in (FINAL_MODEL, BEST_MODEL):
        _killed_model_save(folder, name)
    left = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
    # the case under test: each killed write left its temporary (a folder, holding the weights, for a model)
    assert len(left) == 6, left
    assert all(len(name.split(".")[-2]) == 12 for name in left), left
    assert {p.name for p in (folder / next(n for n in left if n.startswith(f".{BEST_MODEL}."))).iterdir()} == \
        {f"{BEST_MODEL}_state_dict.pt", f"{BEST_MODEL}_metadata.pkl"}
    return left


def _leave_users_files(folder):
    for name in USERS_FILES:
        (folder / name).write_text("the user's")
    # a link under a temporary's name, and a folder under an earlier version's model temporary's name
    # (tempfile.mkdtemp's 8 characters) holding a file of the user's: neither is the run's
    (folder / ".results.json.aaaaaaaaaaaa.tmp").symlink_to(folder / USERS_FILES[0])
    (folder / ".model.backup12.tmp").mkdir()
    (folder / ".model.backup12.tmp" / "notes.txt").write_text("the user's")
    return [*USERS_FILES, ".results.json.aaaaaaaaaaaa.tmp", ".model.backup12.tmp"]


def _assert_only_the_users_left(folder, left, users):
    names = set(os.listdir(folder))
    assert names.isdisjoint(left), sorted(names & set(left))  # every temporary of the killed writes gone
    assert names.issuperset(users), sorted(set(users) - names)  # every file of the user's left
    assert (folder / ".model.backup12.tmp" / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("how", ["resume", "new run"])
def test_the_next_run_removes_what_killed_writes_left_and_says_so(monkeypatch, tmp_path, capsys, how):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    if how == "resume":  # a finished run, killed at later writes (a resume's rewrite of its files)
        assert train("--output_dir", str(out), "--save_best") == 0
    else:  # a run killed before its first epoch, its folder given to a new run
        out.mkdir()
    left = _leave_killed_temporaries(out)
    users = _leave_users_files(out)
    capsys.readouterr()
    with pytest.warns(RuntimeWarning, match=r"removed 6 temporary files that a killed run left: ") as caught:
        code = cli.main(["train", "--resume", str(out)]) if how == "resume" else train("--output_dir", str(out))
    assert code == 0
    _assert_only_the_users_left(out, left, users)
    line = next(str(w.message) for w in caught if "killed run left" in str(w.message))
    for name in left:  # each named, a model's folder with a trailing separator
        folder = name.startswith((f".{FINAL_MODEL}.", f".{BEST_MODEL}."))
        assert f"{out / name}{os.sep if folder else ''}" in line.split(": ", 1)[1].split(", ")
    assert (out / "model_state_dict.pt").is_file() and (out / RESULTS_FILE).is_file()


def test_the_lock_gives_the_removed_paths_to_a_caller_that_asks_and_finds_an_earlier_versions_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    left = _leave_killed_temporaries(folder)
    users = _leave_users_files(folder)
    # an earlier version's model temporary (tempfile.mkdtemp's name) holding upstream's files alone: the run's
    older = folder / ".best_model.mu9k46id.tmp"
    older.mkdir()
    for suffix in ("_state_dict.pt", "_metadata.pkl"):
        (older / f"{BEST_MODEL}{suffix}").write_bytes(b"weights")
    removed = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a caller given the paths: no warning
        with run_folder_lock(folder, removed=removed):
            pass
    assert sorted(p.name for p in removed) == sorted([*left, older.name])
    assert all(p.parent == folder for p in removed)
    _assert_only_the_users_left(folder, [*left, older.name], users)
    assert remove_killed_temporaries(folder) == []  # nothing of a run's left


def test_a_run_refused_by_the_lock_leaves_the_temporaries_of_the_run_writing(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with run_folder_lock(folder):  # the run writing the folder, mid-write
        handle, tmp = _new_temporary(folder / RESULTS_FILE)
        os.close(handle)
        with pytest.raises(RunSetupError, match="is in use by another neuralop-mp train"):
            with run_folder_lock(folder):
                pass
        assert tmp.is_file()
