"""Navier-Stokes solver (Taylor-Green decay, zero mean) and the files upstream reads."""
import math

import numpy as np
import pytest
import torch
from neuralop.data.datasets.navier_stokes import NavierStokesDataset

from neuralop_mp.data import generate_navier_stokes, load_navier_stokes
from neuralop_mp.data.navier_stokes import benchmark_forcing, initial_vorticity, solve_vorticity


def grid(n):
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")


@pytest.mark.parametrize("k0", [1, 2])
def test_unforced_taylor_green_vortex_decays_at_the_viscous_rate(k0):
    # w = A sin(2 pi k0 x) sin(2 pi k0 y) is a steady Euler flow (u . grad w = 0); with
    # viscosity its amplitude decays exactly as exp(-nu |k|^2 t), |k|^2 = 2 (2 pi k0)^2.
    X, Y = grid(32)
    amplitude = 0.5 + torch.rand(()).item()
    w0 = (amplitude * torch.sin(2 * math.pi * k0 * X) * torch.sin(2 * math.pi * k0 * Y))[None]
    nu, t = 1e-2, 1.0
    w = solve_vorticity(w0, t, nu, forcing=None, dt=1e-2)
    ratio = ((w * w0).sum() / (w0 * w0).sum()).item()
    expected = math.exp(-2 * nu * (2 * math.pi * k0) ** 2 * t)
    # Crank-Nicolson's amplification error after 100 steps is < 1e-3 relative here.
    assert ratio == pytest.approx(expected, rel=1e-3)
    assert (w - ratio * w0).abs().max() < 1e-10  # shape unchanged: advection is exactly zero


def test_forced_random_flow_keeps_zero_mean_vorticity():
    w0 = initial_vorticity([5, 6, 7], 32)
    assert w0.mean(dim=(1, 2)).abs().max() < 1e-12
    w = solve_vorticity(w0, 2.0, 1e-3, benchmark_forcing(32))
    assert w.mean(dim=(1, 2)).abs().max() < 1e-10 * w.abs().max()
    assert not torch.allclose(w, w0)  # the flow really evolved


def test_time_step_refinement_changes_little():
    w0 = initial_vorticity([1, 2], 32)
    coarse = solve_vorticity(w0, 2.0, 1e-3, benchmark_forcing(32))
    fine = solve_vorticity(w0, 2.0, 1e-3, benchmark_forcing(32), dt=0.0125)
    assert ((coarse - fine).norm() / fine.norm()) < 1e-4


@pytest.mark.parametrize("viscosity", [0.0, -1e-3, float("nan"), float("inf"), True, np.bool_(True),
                                       torch.tensor(float("nan")), "0.001"])
def test_a_viscosity_that_is_not_a_finite_positive_number_is_refused(viscosity, tmp_path):
    # True was a viscosity of 1.0 and NaN a NaN field; both are refused before any file is written
    pattern = r"^Invalid viscosity=.*; allowed values: finite numbers > 0\.$"
    with pytest.raises(ValueError, match=pattern):
        solve_vorticity(initial_vorticity([1], 32), 0.1, viscosity)
    with pytest.raises(ValueError, match=pattern):
        generate_navier_stokes(tmp_path, resolutions=(8,), n_train=1, n_test=1, progress=False,
                               viscosity=viscosity, t_final=0.1, solver_resolution=32)
    assert not list(tmp_path.rglob("*.pt"))


def test_a_viscosity_given_as_a_numpy_or_tensor_number_is_taken():
    w0 = initial_vorticity([1], 32)
    expected = solve_vorticity(w0, 0.1, 1e-3)
    for viscosity in (np.float64(1e-3), torch.tensor(1e-3, dtype=torch.float64)):
        assert torch.equal(solve_vorticity(w0, 0.1, viscosity), expected)


def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match=r"resolution=24; allowed values: powers of 2"):
        generate_navier_stokes(None, resolutions=(24,), n_train=1, n_test=1, progress=False)


def test_upstream_navier_stokes_dataset_reads_generated_files(tmp_path):
    # Upstream's class accepts only 128 and 1024: a short run keeps this cheap.
    paths = generate_navier_stokes(tmp_path, resolutions=(128,), n_train=3, n_test=2, t_final=0.05, progress=False)
    data = torch.load(paths[128][0])
    assert data["x"].shape == data["y"].shape == (3, 128, 128) and data["x"].dtype == torch.float32
    dataset = NavierStokesDataset(root_dir=tmp_path, n_train=3, n_tests=[2], batch_size=1, test_batch_sizes=[1],
                                  train_resolution=128, test_resolutions=[128], download=False)
    assert dataset.train_db[0]["x"].shape == (1, 128, 128)
    assert dataset.data_processor.out_normalizer is not None


def test_load_navier_stokes_small_default_resolution(tmp_path):
    train, tests, _ = load_navier_stokes(tmp_path, n_train=8, n_tests=(4,), batch_size=4, test_batch_sizes=(4,),
                                         progress=False)
    batch = next(iter(train))
    assert batch["x"].shape == batch["y"].shape == (4, 1, 32, 32)
    stored = torch.load(tmp_path / "nsforcing_train_32.pt")
    assert stored["meta"]["t_final"] == 10.0 and stored["meta"]["viscosity"] == 1e-3
    # The forcing drives the flow: output vorticity is larger than the initial one.
    assert stored["y"].std() > 2 * stored["x"].std()


@pytest.mark.parametrize("dt", [0, -0.01, float("nan"), float("inf"), True])
def test_a_time_step_that_cannot_advance_is_refused_not_replaced_by_the_default(dt):
    # dt=0 used to mean "the default step", a negative one a single step of t_final
    with pytest.raises(ValueError, match=r"Invalid dt=.*allowed values: None"):
        solve_vorticity(initial_vorticity([1], 32), 0.1, 1e-3, dt=dt)


@pytest.mark.parametrize("t_final", [-0.1, float("nan"), float("inf"), "1"])
def test_a_final_time_that_is_not_a_finite_number_at_least_zero_is_refused(t_final, tmp_path):
    with pytest.raises(ValueError, match=r"Invalid t_final="):
        solve_vorticity(initial_vorticity([1], 32), t_final, 1e-3)
    with pytest.raises(ValueError, match=r"Invalid t_final="):
        generate_navier_stokes(tmp_path, resolutions=(32,), n_train=2, n_test=1, t_final=t_final, progress=False)
    assert not list(tmp_path.glob("*.pt"))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_sample_is_the_same_numbers_solved_alone_or_in_a_larger_chunk(tmp_path, batch_size):
    """Sample ``i`` depends only on ``(seed, split, i)`` (docs/data.md): a file of 1 sample, or a last
    chunk of 1 (3 samples in chunks of 2), holds the same bits as the first rows of a file of 3 solved
    together (torch's CPU rfft2 rounds a batch of one otherwise)."""
    from neuralop_mp.data.navier_stokes import generate_navier_stokes_split

    common = dict(resolution=8, split="train", t_final=0.5, progress=False)
    alone = torch.load(generate_navier_stokes_split(tmp_path / "alone", n_samples=1, **common),
                       weights_only=True)
    chunked = torch.load(generate_navier_stokes_split(tmp_path / "chunked", n_samples=3, batch_size=batch_size,
                                                      **common), weights_only=True)
    together = torch.load(generate_navier_stokes_split(tmp_path / "together", n_samples=3, **common),
                          weights_only=True)
    assert torch.equal(alone["y"][0], together["y"][0])
    assert torch.equal(chunked["y"], together["y"]) and torch.equal(chunked["x"], together["x"])
