"""``neuralop-mp diagnose RUN --resolution N`` measures on the equation the run was trained on: the
files it generates at N and 2N (none of the run's) record the run's physics, not the generator's
defaults. Real tiny runs (16x16 Navier-Stokes of viscosity 2e-3 and final time 0.5; Burgers of 9
stored times), a few seconds each."""
import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.diagnose import cli as diagnose_cli

VISCOSITY, T_FINAL = 2e-3, 0.5  # the run's physics; the generator's defaults are 1e-3 and 10
N_TIME = 9  # Burgers' stored times of the run; the generator's default is 17
TINY = ["--opt.n_epochs", "1", "--threads", "1", "--data.n_train", "4", "--data.batch_size", "2",
        "--data.train_resolution", "16", "--data.test_resolutions", "[16]", "--data.n_tests", "[2]",
        "--data.test_batch_sizes", "[2]", "--model.hidden_channels", "4", "--model.n_modes", "[4,4]",
        "--model.n_layers", "1", "--verbose", "false"]
DIAGNOSE = ["--resolution", "32", "--n-samples", "2", "--n-bands", "2"]


def _meta(path):
    return torch.load(path, weights_only=True)["meta"]


def _train(base, dataset, *physics):
    """``(run folder, data root)`` of a one-epoch run on 16x16 data of ``physics`` (data flags)."""
    out, root = base / "run", base / "data"
    assert cli.main(["data", dataset, "--root", str(root), "--res", "16", "--n-train", "4", "--n-test", "2",
                     *physics, "--quiet"]) == 0
    assert cli.main(["train", dataset, "--output_dir", str(out), "--data.data_root", str(root), *TINY]) == 0
    return out, root


@pytest.fixture(scope="module")
def ns_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("diagnose_physics"), "navier_stokes",
                  "--viscosity", str(VISCOSITY), "--t-final", str(T_FINAL))


def test_files_diagnose_generates_for_a_run_record_its_physics(ns_run, tmp_path, capsys):
    """They took viscosity 1e-3 and final time 10 (no file of the run in the load at 32 and 64),
    after which `eval --res 64` on the run's root was refused: other physics."""
    out, root = ns_run
    capsys.readouterr()
    code = cli.main(["diagnose", str(out), *DIAGNOSE, "--out", str(tmp_path / "diag")])
    assert code == 0, capsys.readouterr().err
    for name in ("nsforcing_train_32.pt", "nsforcing_test_64.pt"):
        meta = _meta(root / name)
        assert (meta["viscosity"], meta["t_final"]) == (VISCOSITY, T_FINAL), name
    code = cli.main(["eval", str(out), "--res", "64", "--data.data_root", str(root), "--threads", "1"])
    assert code == 0, capsys.readouterr().err


def test_only_a_diagnosis_on_the_runs_dataset_takes_its_records(ns_run, tmp_path, capsys, monkeypatch):
    """The run's records go with the run's dataset; another dataset (--data) or a config has none."""
    out, _ = ns_run
    given = []

    def record(loader, kwargs, resolution, n_samples):
        given.append((loader, kwargs.get("reference")))
        raise ValueError("stop before any data is read")

    monkeypatch.setattr(diagnose_cli, "fine_inputs", record)
    for target, extra in ((out, []), (out, ["--data", "darcy"]), ("navier_stokes", [])):
        assert cli.main(["diagnose", str(target), *extra, "--out", str(tmp_path / "diag")]) == 2
    (run_loader, reference), (other_loader, other), (config_loader, config) = given
    assert run_loader == "load_navier_stokes" and reference
    [record_of_run] = reference.values()
    assert (record_of_run["viscosity"], record_of_run["t_final"]) == (VISCOSITY, T_FINAL)
    assert "nsforcing_train_16.pt" in next(iter(reference))
    assert (other_loader, other) == ("load_darcy", None)
    assert (config_loader, config) == ("load_navier_stokes", None)


def test_burgers_a_run_is_measured_on_its_own_time_levels(tmp_path, capsys, monkeypatch):
    """Burgers' inputs are repeated along the stored times: a run on 9 of them was measured on the
    default 17 (another grid than the model's) at any resolution but its own."""
    out, root = _train(tmp_path, "burgers", "--n-time", str(N_TIME))
    shapes = []
    original = diagnose_cli.fine_inputs

    def fine_inputs(*args, **kwargs):
        x = original(*args, **kwargs)
        shapes.append(tuple(x.shape))
        return x

    monkeypatch.setattr(diagnose_cli, "fine_inputs", fine_inputs)
    capsys.readouterr()
    code = cli.main(["diagnose", str(out), *DIAGNOSE, "--out", str(tmp_path / "diag")])
    assert code == 0, capsys.readouterr().err
    assert shapes == [(2, 1, N_TIME, 64)]
    for name in ("burgers_train_32.pt", "burgers_test_64.pt"):
        assert _meta(root / name)["n_time"] == N_TIME, name
