"""A load's ``reference`` (the records of the data a run trained on) naming another dataset's
generator is refused naming both, before any file is read or generated; a data root given as a
path object of blanks is refused as the string is."""
import re
from pathlib import Path

import pytest
import torch

from neuralop_mp.data import load_darcy
from neuralop_mp.data.loaders import load_test_sets
from neuralop_mp.data.cache import resolve_root
from neuralop_mp.data.navier_stokes import generate_navier_stokes_split
from neuralop_mp.run_setup import RunSetupError

SMALL = dict(n_train=2, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=8, test_resolutions=[8],
             progress=False)
RUN = "run/darcy_train_8.pt (as run/results.json records it)"


@pytest.fixture(scope="module")
def ns_record(tmp_path_factory):
    """The generation record of a Navier-Stokes training file (viscosity 1e-4): another dataset's."""
    path = generate_navier_stokes_split(tmp_path_factory.mktemp("ns"), 32, "train", 1, progress=False,
                                        viscosity=1e-4, t_final=0.5)
    return torch.load(path, weights_only=True)["meta"]


def _refusal_names_both(message):
    assert message.startswith(f"{RUN} records navier_stokes data"), message
    assert "the generator 'navier_stokes'" in message and "the generator 'darcy'" in message, message


@pytest.mark.parametrize("generate", [True, False])
def test_a_full_load_refuses_a_reference_of_another_dataset(ns_record, tmp_path, generate):
    """It was ignored: the load generated (or asked for) Darcy files with the defaults, and a
    resume trained on them as if they were the data the run recorded."""
    with pytest.raises(ValueError) as refused:
        load_darcy(tmp_path, reference={RUN: ns_record}, generate=generate, **SMALL)
    _refusal_names_both(str(refused.value))
    assert list(tmp_path.iterdir()) == []  # refused before anything is generated


def test_test_sets_alone_refuse_a_reference_of_another_dataset(ns_record, tmp_path):
    with pytest.raises(ValueError) as refused:
        load_test_sets("load_darcy", tmp_path, n_tests=[2], test_batch_sizes=[2], test_resolutions=[8],
                       reference={RUN: ns_record}, progress=False)
    _refusal_names_both(str(refused.value))
    assert list(tmp_path.iterdir()) == []


def test_a_reference_of_this_dataset_is_still_taken(tmp_path):
    """The refusal is of another generator alone: a Darcy record's face average is the load's physics."""
    from neuralop_mp.data.darcy import generate_darcy_split

    run = generate_darcy_split(tmp_path / "run", 8, "train", 1, progress=False, face_average="arithmetic")
    record = torch.load(run, weights_only=True)["meta"]
    root = tmp_path / "data"
    load_darcy(root, reference={RUN: record}, **SMALL)
    assert torch.load(root / "darcy_test_8.pt", weights_only=True)["meta"]["face_average"] == "arithmetic"


@pytest.mark.parametrize("root", [" ", "  \t"])
def test_a_path_object_of_blanks_is_refused_as_the_string_is(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for given in (root, Path(root)):
        with pytest.raises(RunSetupError, match="^" + re.escape(f"--data.data_root is {root!r} (blank): allowed is a folder")):
            resolve_root(given)
    with pytest.raises(RunSetupError, match=r"\(blank\)"):
        load_darcy(Path(root), **SMALL)
    assert list(tmp_path.iterdir()) == []  # no folder of blanks made
    assert resolve_root(tmp_path / "d") == tmp_path / "d"  # a path object of a folder is taken
