"""The generators refuse or flag solves that went wrong, the public solvers refuse bad
input by name, and the benchmark's refinement figures are relative to the right norm."""
import math
import warnings

import numpy as np
import pytest
import torch

from neuralop_mp.data import benchmark
from neuralop_mp.data.burgers import generate_burgers_split, solve_burgers
from neuralop_mp.data.cli import main as data_main
from neuralop_mp.data.darcy import permeability, solve_darcy
from neuralop_mp.data.navier_stokes import (
    benchmark_forcing, generate_navier_stokes_split, initial_vorticity, ns_settings, solve_vorticity,
)


# -- Navier-Stokes: a blown-up solve is never saved; dt is the way out ------------------------


def test_navier_stokes_blow_up_is_refused_and_nothing_saved(tmp_path):
    # the default step at 64 points blows up for train sample 4 before T = 50 (it was saved, NaN)
    with pytest.raises(ValueError) as err:
        generate_navier_stokes_split(tmp_path, 64, "train", 5, t_final=50.0, progress=False)
    message = str(err.value)
    for part in ("samples [4]", "viscosity=0.001", "t_final=50.0", "solver_resolution=64", "dt=0.025", "--dt"):
        assert part in message
    assert not list(tmp_path.glob("*.pt"))


def test_navier_stokes_smaller_dt_is_finite_and_recorded(tmp_path):
    path = generate_navier_stokes_split(tmp_path, 64, "train", 5, t_final=50.0, progress=False, dt=0.0125)
    data = torch.load(path, weights_only=True)
    assert data["meta"]["dt"] == 0.0125
    assert torch.isfinite(data["y"]).all()


def test_navier_stokes_default_record_has_no_dt():
    # the default files keep their record (and bytes): the cache finds them as before
    assert "dt" not in ns_settings(32, 0, 1e-3, 10.0, 32)
    assert ns_settings(32, 0, 1e-3, 10.0, 32, dt=0.01)["dt"] == 0.01
    with pytest.raises(ValueError, match="dt"):
        ns_settings(32, 0, 1e-3, 10.0, 32, dt=0.0)


def test_cli_dt_flag(tmp_path, capsys):
    args = ["--res", "8", "--n-train", "1", "--n-test", "1", "--t-final", "0.1", "--root", str(tmp_path), "--quiet"]
    assert data_main(["navier_stokes", *args, "--dt", "0.02"]) == 0
    assert torch.load(tmp_path / "nsforcing_train_8.pt", weights_only=True)["meta"]["dt"] == 0.02
    assert data_main(["burgers", *args, "--dt", "0.02"]) == 2
    assert "--dt does not apply to dataset 'burgers'" in capsys.readouterr().err


# -- Burgers: an under-resolved solve is flagged ------------------------------------------------


def test_burgers_under_resolved_warns_once(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"viscosity=0\.001 on solver_resolution=80") as record:
        generate_burgers_split(tmp_path, 16, "train", 4, viscosity=1e-3, solver_resolution=80, progress=False)
    assert len([w for w in record if "max|u(t)|" in str(w.message)]) == 1


def test_burgers_resolved_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate_burgers_split(tmp_path, 16, "train", 4, progress=False)


def test_solve_burgers_unbatched():
    x = torch.arange(64, dtype=torch.float64) / 64
    u0 = torch.stack([torch.sin(2 * math.pi * x), 0.5 * torch.cos(2 * math.pi * x)])
    times = [0.0, 0.1]
    batched = solve_burgers(u0, times)
    single = solve_burgers(u0[1], times)
    assert single.shape == (2, 64)
    torch.testing.assert_close(single, batched[1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"u0 of shape \(1, 2, 64\)"):
        solve_burgers(u0[None], times)


# -- the public solvers refuse bad input by name -----------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_solve_darcy_refuses_a_not_positive(bad):
    a = np.ones((8, 8))
    a[3, 5] = bad
    with pytest.raises(ValueError, match=r"a\[3, 5\]=.*finite numbers > 0"):
        solve_darcy(a)


def test_solve_darcy_refuses_f_of_another_shape():
    with pytest.raises(ValueError, match=r"f of shape \(7, 7\).*\(8, 8\)"):
        solve_darcy(np.ones((8, 8)), np.ones((7, 7)))
    # a number and a field on the grid still work
    np.testing.assert_allclose(solve_darcy(np.ones((8, 8)), np.full((8, 8), 2.0)), 2 * solve_darcy(np.ones((8, 8))))


def test_permeability_is_float64():
    a = permeability([1], 12)
    assert a.dtype == torch.float64
    assert set(a.unique().tolist()) <= {3.0, 12.0}


def test_solve_vorticity_refuses_bad_shapes():
    w0 = initial_vorticity([1], 32)
    with pytest.raises(ValueError, match=r"w0 of shape \(1, 32, 16\)"):
        solve_vorticity(w0[..., :16], 0.1)
    with pytest.raises(ValueError, match=r"forcing of shape \(16, 16\).*\(32, 32\)"):
        solve_vorticity(w0, 0.1, forcing=benchmark_forcing(16))


# -- benchmark: refinement relative to the reference on the compared grid ----------------------


def test_refinement_is_relative_to_the_restricted_reference(monkeypatch):
    # a fine reference of ones and a coarse result of 1.1: the relative L2 difference is 0.1
    def fake_vorticity(w0, *args, **kwargs):
        return torch.ones_like(w0) * (1.0 if w0.shape[-1] == 128 else 1.1)

    def fake_burgers(u0, times, *args, **kwargs):
        return torch.ones(u0.shape[0], len(times), u0.shape[-1], dtype=u0.dtype) * (1.0 if u0.shape[-1] == 1024 else 1.1)

    monkeypatch.setattr(benchmark, "solve_vorticity", fake_vorticity)
    monkeypatch.setattr(benchmark, "initial_vorticity", lambda seeds, n: torch.zeros(len(seeds), n, n, dtype=torch.float64))
    monkeypatch.setattr(benchmark, "solve_burgers", fake_burgers)
    monkeypatch.setattr(benchmark, "initial_condition", lambda seeds, n: torch.zeros(len(seeds), n, dtype=torch.float64))
    assert benchmark.ns_checks()[1]["value"] == pytest.approx(0.1)
    assert benchmark.burgers_checks()[0]["value"] == pytest.approx(0.1)
