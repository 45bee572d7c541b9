"""Three data-cache leftovers of a stress audit:

* an empty or blank data root given explicitly (``--root ""``, ``NEURALOP_MP_DATA=" "``) is
  refused naming what gave it (it wrote into the current folder, or a folder named " "; an
  empty variable fell back to the default), while an unset one keeps the default;
* a file of ours copied under another resolution's name is regenerated with a warning where
  generation is on, else refused naming the full command (it was refused with the advice
  ``neuralop-mp data ... --overwrite``);
* ``neuralop-mp data`` exits 2 for a lock file it cannot open, as ``neuralop-mp train`` does
  (it exited 1, as for a data file that could not be written).
"""
import contextlib
import errno
import shlex
import warnings
from pathlib import Path

import pytest
import torch

from neuralop_mp.data import cache, cli, generate_darcy, load_darcy
from neuralop_mp.data.cache import default_data_root, resolve_root
from neuralop_mp.data.file_checks import DataFileError
from neuralop_mp.run_setup import RunSetupError

pytestmark = pytest.mark.reliability

ARGS = ["darcy", "--res", "6", "--n-train", "2", "--n-test", "1", "--quiet"]
SMALL = dict(n_train=4, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=6, test_resolutions=[6],
             progress=False)


@pytest.fixture(scope="module")
def darcy8(tmp_path_factory):
    """Darcy files of ours at resolution 8 (4 train, 2 test samples, seed 0), generated once."""
    root = tmp_path_factory.mktemp("darcy8")
    generate_darcy(root, resolutions=(8,), n_train=4, n_test=2, progress=False)
    return root


# --- F10: an empty or blank data root given explicitly -------------------------------------------------------------

@pytest.mark.parametrize("root, kind", [("", "empty"), ("   ", "blank")])
def test_an_empty_or_blank_root_option_is_refused_and_writes_nothing(root, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # --root "" wrote the files here, into the current folder
    assert cli.main([*ARGS, "--root", root]) == 2
    err = capsys.readouterr().err
    assert err == (f"neuralop-mp data: error: --root is {root!r} ({kind}): allowed is a folder's path; leave it out "
                   "for the default ($NEURALOP_MP_DATA, else ~/.cache/neuralop_mp/data).\n")
    assert list(tmp_path.iterdir()) == []


def test_a_root_of_an_unknown_users_home_is_one_line_naming_the_option(tmp_path, monkeypatch, capsys):
    """"~nosuchuser/x" was a RuntimeError traceback from Path.expanduser."""
    monkeypatch.chdir(tmp_path)
    assert cli.main([*ARGS, "--root", "~neuralop_mp_no_such_user/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp data: error: --root is '~neuralop_mp_no_such_user/x': ") and \
        err.endswith("; allowed is a folder's path.\n") and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value, kind", [("", "empty"), (" ", "blank")])
def test_an_empty_or_blank_data_variable_is_refused_naming_it(value, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # NEURALOP_MP_DATA=" " wrote into a folder named " " here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # an empty one wrote into the default folder
    monkeypatch.setenv("NEURALOP_MP_DATA", value)
    assert cli.main(ARGS) == 2
    assert capsys.readouterr().err == (
        f"neuralop-mp data: error: the NEURALOP_MP_DATA environment variable is {value!r} ({kind}): allowed is a "
        "folder's path; unset it for the default (~/.cache/neuralop_mp/data).\n")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunSetupError, match="NEURALOP_MP_DATA environment variable"):
        default_data_root()


def test_an_unset_data_variable_and_none_keep_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NEURALOP_MP_DATA", raising=False)
    expected = tmp_path / ".cache" / "neuralop_mp" / "data"
    assert default_data_root() == expected and resolve_root(None) == expected
    monkeypatch.setenv("NEURALOP_MP_DATA", str(tmp_path / "d"))
    assert resolve_root(None) == tmp_path / "d"
    assert resolve_root(str(tmp_path / "e")) == tmp_path / "e"


def test_a_loader_given_an_empty_data_root_names_the_config_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunSetupError, match=r"^--data\.data_root is '' \(empty\): allowed is a folder's path"):
        load_darcy("", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_train_reads_an_empty_data_root_as_the_configs_null_the_default(tmp_path, monkeypatch):
    """A config's "" is one of its spellings of null (data_root None: the default), kept as it was."""
    from neuralop_mp.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEURALOP_MP_DATA", str(tmp_path / "data"))
    assert main(["train", "darcy", "--data.data_root", "", "--data.train_resolution", "6", "--data.test_resolutions",
                 "[6]", "--data.n_train", "4", "--data.n_tests", "[2]", "--data.batch_size", "2",
                 "--data.test_batch_sizes", "[2]", "--model.hidden_channels", "4", "--model.n_modes", "[2,2]",
                 "--threads", "1", "--opt.n_epochs", "1", "--output_dir", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in (tmp_path / "data").glob("*.pt")) == ["darcy_test_6.pt", "darcy_train_6.pt"]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == []


# --- F7: a file of ours under another resolution's name --------------------------------------------------------------

def _copy_as_resolution_6(darcy8, root, splits=("train", "test")):
    root.mkdir(exist_ok=True)
    for split in splits:
        (root / f"darcy_{split}_6.pt").write_bytes((darcy8 / f"darcy_{split}_8.pt").read_bytes())


def test_a_copy_of_another_resolutions_file_is_regenerated_with_a_warning(darcy8, tmp_path):
    root, reference = tmp_path / "copied", tmp_path / "reference"
    _copy_as_resolution_6(darcy8, root)
    generate_darcy(reference, resolutions=(6,), n_train=4, n_test=2, progress=False)
    with pytest.warns(RuntimeWarning) as caught:
        train, tests, _ = load_darcy(root, **SMALL)
    messages = [str(w.message) for w in caught if "generation record says resolution" in str(w.message)]
    assert messages == [
        f"{root / f'darcy_{split}_6.pt'}: 'x' has shape ({n}, 8, 8) and its generation record says resolution 8, "
        f"but the file name declares resolution 6 (a copy or rename of another resolution's file): it is "
        f"regenerated at resolution 6 with {n} samples, keeping its face_average='harmonic'."
        for split, n in (("train", 4), ("test", 2))]
    # regenerated as a fresh generation at 6 writes it: the same samples, bit for bit
    for split in ("train", "test"):
        new = torch.load(root / f"darcy_{split}_6.pt", weights_only=True)
        fresh = torch.load(reference / f"darcy_{split}_6.pt", weights_only=True)
        assert new["meta"]["resolution"] == 6 and new["x"].shape == (4 if split == "train" else 2, 6, 6)
        assert torch.equal(new["x"], fresh["x"]) and torch.equal(new["y"], fresh["y"])
    x = next(iter(train))["x"]
    assert tuple(x.shape[-2:]) == (6, 6)


def test_a_copy_of_another_resolutions_file_is_refused_naming_the_command_that_fixes_it(darcy8, tmp_path, capsys):
    root = tmp_path / "copied"
    generate_darcy(root, resolutions=(6,), n_train=0, n_test=2, progress=False)  # the test file is right
    _copy_as_resolution_6(darcy8, root, splits=("train",))
    copied = (root / "darcy_train_6.pt").read_bytes()
    with pytest.raises(DataFileError) as refused:
        load_darcy(root, **SMALL, generate=False)
    message = str(refused.value)
    command = (f"neuralop-mp data darcy --root {root} --res 6 --n-train 4 --n-test 0 --face-average harmonic "
               "--overwrite")
    assert message == (
        f"{root / 'darcy_train_6.pt'}: 'x' has shape (4, 8, 8) and its generation record says resolution 8, but the "
        "file name declares resolution 6 (a copy or rename of another resolution's file); regenerate it "
        f"(`{command}`, or generate=True: --data.generate true), or rename it after its real resolution.")
    assert (root / "darcy_train_6.pt").read_bytes() == copied  # refused: left as it was
    # the command it names does what it says: after it, the load reads the file at 6
    assert cli.main([*shlex.split(command)[2:], "--quiet"]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, _, _ = load_darcy(root, **SMALL, generate=False)
    assert tuple(next(iter(train))["x"].shape[-2:]) == (6, 6)


def test_a_file_of_your_own_at_another_resolution_is_told_to_be_renamed_not_regenerated(tmp_path):
    """Its advice was `neuralop-mp data ... --overwrite`: a placeholder, which would replace the user's data."""
    generator = torch.Generator().manual_seed(3)
    for split, n in (("train", 4), ("test", 2)):
        torch.save({"x": torch.rand(n, 8, 8, generator=generator), "y": torch.rand(n, 8, 8, generator=generator)},
                   tmp_path / f"darcy_{split}_6.pt")
    with pytest.raises(DataFileError) as refused:
        load_darcy(tmp_path, **SMALL)
    assert str(refused.value) == (f"{tmp_path / 'darcy_train_6.pt'}: 'x' has shape (4, 8, 8), i.e. samples of size "
                                  "(8, 8), but the file name declares resolution 6. Rename it after its real "
                                  "resolution.")


# --- the data CLI's exit status for a lock file it cannot open ---------------------------------------------------

@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_lock_file_the_data_command_cannot_open_exits_2_as_train(error, tmp_path, monkeypatch, capsys):
    @contextlib.contextmanager
    def unopenable(path):
        error.filename = str(path)
        raise error
        yield  # pragma: no cover

    monkeypatch.setattr(cache, "file_lock", unopenable)
    monkeypatch.setattr("neuralop_mp.training.checkpointing.free_bytes", lambda path: 3000, raising=False)
    assert cli.main([*ARGS, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp data: error: could not write a data file in {tmp_path}")
    assert len(err.strip().splitlines()) == 1 and "darcy_train_6.pt.lock" in err, err
    assert "the one being written was not saved" not in err  # no file was being written yet
    assert ("free some space and run" in err) == (error.errno == errno.ENOSPC)
    # a permission does not come back by itself: "run again" alone would fail the same way
    assert ("fix the folder's permissions (or its files'" in err) == (error.errno != errno.ENOSPC)
    assert not list(Path(tmp_path).glob("*.pt"))
