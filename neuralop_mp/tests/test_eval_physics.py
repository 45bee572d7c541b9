"""``neuralop-mp eval RUN --res N`` tests the model on the equation it was trained on: a test file
it generates records the run's physics (not the generator's defaults), an existing one of other
physics is refused naming both, and the command it suggests under ``--data.generate false``
carries the physics flags. A real run on Navier-Stokes data of non-default physics (16x16, a
few seconds), and one on Darcy data of the non-default face average."""
import json
import shlex
import shutil

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.data import generate_navier_stokes
from neuralop_mp.data.darcy import generate_darcy_split

VISCOSITY, T_FINAL = 2e-3, 0.5  # the run's physics; the generator's defaults are 1e-3 and 10
TINY = ["--opt.n_epochs", "1", "--threads", "1", "--data.n_train", "4", "--data.batch_size", "2",
        "--data.train_resolution", "16", "--data.test_resolutions", "[16]", "--data.n_tests", "[2]",
        "--data.test_batch_sizes", "[2]", "--model.hidden_channels", "4", "--model.n_modes", "[4,4]",
        "--model.n_layers", "1", "--verbose", "false"]


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


def _eval(capsys, *args):
    code = cli.main(["eval", *map(str, args), "--threads", "1"])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(run folder, data root)`` of a finished one-epoch run on Navier-Stokes data of viscosity
    2e-3 and final time 0.5, generated first with `neuralop-mp data`."""
    base = tmp_path_factory.mktemp("eval_physics")
    out, root = base / "run", base / "data"
    assert cli.main(["data", "navier_stokes", "--root", str(root), "--res", "16", "--n-train", "4", "--n-test", "2",
                     "--viscosity", str(VISCOSITY), "--t-final", str(T_FINAL), "--quiet"]) == 0
    assert cli.main(["train", "navier_stokes", "--output_dir", str(out), "--data.data_root", str(root), *TINY]) == 0
    return out, root


@pytest.fixture
def run(trained, tmp_path, capsys):
    """A copy of the run and of its data root (given to eval as --data.data_root): ``(run, root)``."""
    out, root = trained
    capsys.readouterr()
    shutil.copytree(out, tmp_path / "run")
    shutil.copytree(root, tmp_path / "data")
    return tmp_path / "run", tmp_path / "data"


@pytest.mark.parametrize("results", ["results.json", "no results.json"])
def test_a_test_file_eval_generates_records_the_runs_physics(run, capsys, results):
    """Without the training file in the load, the 32x32 test file was generated with viscosity 1e-3
    and final time 10 (rel. L2 ~1 on another equation). A run without results.json (stopped before
    its final save) takes the physics of its training file."""
    out, root = run
    if results != "results.json":
        (out / "results.json").unlink()
    code, err = _eval(capsys, out, "--res", "32", "--data.data_root", root)
    assert code == 0, err
    meta = _meta(root / "nsforcing_test_32.pt")
    assert (meta["viscosity"], meta["t_final"]) == (VISCOSITY, T_FINAL)
    assert meta["solver_resolution"] == _meta(root / "nsforcing_train_16.pt")["solver_resolution"]


def test_an_existing_test_file_of_other_physics_is_refused_naming_both(run, capsys):
    out, root = run
    generate_navier_stokes(root, resolutions=(32,), n_train=1, n_test=2, progress=False, t_final=T_FINAL)
    code, err = _eval(capsys, out, "--res", "32", "--data.data_root", root)
    assert code == 2
    assert err.startswith("neuralop-mp eval: error: The data files of this load record different physics (")
    assert "nsforcing_train_16.pt (as " in err and f"viscosity={VISCOSITY!r}" in err  # the run's
    assert f"{root / 'nsforcing_test_32.pt'}: viscosity=0.001)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_command_suggested_without_generation_carries_the_physics_and_works(run, capsys):
    """With --data.generate false the suggested command lacked --viscosity/--t-final: run as given, it
    wrote a default-physics test file (and a training file eval never reads: now --n-train 0)."""
    out, root = run
    code, err = _eval(capsys, out, "--res", "32", "--data.data_root", root, "--data.generate", "false")
    assert code == 2
    command = next(line.strip() for line in err.splitlines() if line.strip().startswith("neuralop-mp data "))
    assert f"--viscosity {VISCOSITY}" in command and f"--t-final {T_FINAL}" in command
    assert "--n-train 0 " in command and "also writes" not in err
    assert cli.main(shlex.split(command)[1:] + ["--quiet"]) == 0
    assert not (root / "nsforcing_train_32.pt").exists()
    code, err = _eval(capsys, out, "--res", "32", "--data.data_root", root, "--data.generate", "false")
    assert code == 0, err
    assert (_meta(root / "nsforcing_test_32.pt")["viscosity"], _meta(root / "nsforcing_test_32.pt")["t_final"]) \
        == (VISCOSITY, T_FINAL)


def test_the_test_file_eval_generates_is_the_one_a_full_load_generates(run, capsys, tmp_path):
    """--res 32 alone gives the errors of --res 16 32 at 32 (whose load has the run's own 16x16 test file)."""
    out, root = run
    code, err = _eval(capsys, out, "--res", "32", "--data.data_root", root, "--json", tmp_path / "alone.json")
    assert code == 0, err
    (root / "nsforcing_test_32.pt").unlink()
    code, err = _eval(capsys, out, "--res", "16", "32", "--data.data_root", root, "--json", tmp_path / "both.json")
    assert code == 0, err
    alone = json.loads((tmp_path / "alone.json").read_text())["metrics"]
    both = json.loads((tmp_path / "both.json").read_text())["metrics"]
    assert alone == {key: value for key, value in both.items() if key.startswith("32_")}


def test_darcy_a_test_file_eval_generates_keeps_the_runs_face_average(tmp_path, capsys):
    """Darcy has no physics flag, but its face average is physics: a run on arithmetic-average data
    gets an arithmetic-average test file (it got the default harmonic one)."""
    out, root = tmp_path / "run", tmp_path / "data"
    for split, n in (("train", 4), ("test", 2)):
        generate_darcy_split(root, 16, split, n, progress=False, face_average="arithmetic")
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--data.data_root", str(root), *TINY]) == 0
    capsys.readouterr()
    code, err = _eval(capsys, out, "--res", "32")
    assert code == 0, err
    assert _meta(root / "darcy_test_32.pt")["face_average"] == "arithmetic"
