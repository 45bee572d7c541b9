"""Burgers solver (Cole-Hopf exact solution, conservation, dissipation) and upstream's reader."""
import math

import numpy as np
import pytest
import torch
from neuralop.data.datasets.burgers import Burgers1dTimeDataset

from neuralop_mp.data import generate_burgers, load_burgers
from neuralop_mp.data.burgers import initial_condition, solve_burgers


def cole_hopf(x, t, nu, a, b):
    """Exact solution from phi = a + b exp(-4 pi^2 nu t) cos(2 pi x), u = -2 nu phi_x / phi."""
    decay = b * math.exp(-4 * math.pi**2 * nu * t)
    return 4 * math.pi * nu * decay * torch.sin(2 * math.pi * x) / (a + decay * torch.cos(2 * math.pi * x))


def test_matches_the_cole_hopf_exact_solution():
    x = torch.arange(64, dtype=torch.float64) / 64
    nu, a = 0.05, 1.0
    b = 0.4 + 0.2 * torch.rand(()).item()
    times = [0.0, 0.2, 0.5]
    u = solve_burgers(cole_hopf(x, 0.0, nu, a, b)[None], times, nu)
    for i, t in enumerate(times):
        exact = cole_hopf(x, t, nu, a, b)
        assert (u[0, i] - exact).abs().max() < 1e-6 * exact.abs().max()


def test_mean_is_conserved_and_energy_decays():
    u0 = initial_condition([1, 2, 3], 128) + 0.3  # a nonzero mean must be kept too
    u = solve_burgers(u0, np.linspace(0, 1, 11), 0.01)
    mean = u.mean(-1)
    assert (mean - mean[:, :1]).abs().max() < 1e-12
    energy = (u - mean[..., None]).pow(2).mean(-1)
    assert (energy[:, 1:] < energy[:, :-1]).all()


def test_a_samples_trajectory_does_not_depend_on_the_samples_solved_beside_it(tmp_path):
    """Each sample takes the time step of its own CFL condition: alone or next to a sample
    of 3x its amplitude (a smaller step for a batch-wide CFL), the same numbers, bit for bit,
    so a larger generated file starts with a smaller one's rows."""
    u0 = initial_condition([7, 8], 128)
    u0[1] *= 3 * u0[0].abs().max() / u0[1].abs().max()
    times = np.linspace(0, 1, 5)
    alone = solve_burgers(u0[:1], times, 0.01)
    together = solve_burgers(u0, times, 0.01)
    assert torch.equal(together[:1], alone)
    small = torch.load(generate_burgers(tmp_path / "a", resolutions=(16,), n_train=2, n_test=1,
                                        progress=False)[16][0])
    large = torch.load(generate_burgers(tmp_path / "b", resolutions=(16,), n_train=6, n_test=1,
                                        progress=False)[16][0])
    assert torch.equal(large["y"][:2], small["y"])


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("inf"), float("nan"), "0.001", True])
def test_a_step_that_is_not_a_finite_positive_number_is_refused(dt):
    with pytest.raises(ValueError, match=rf"Invalid dt={dt!r}; allowed values: None .* or a finite number > 0"):
        solve_burgers(initial_condition([1], 128), [0.0, 0.5], 0.01, dt=dt)


def test_a_step_given_as_a_numpy_or_tensor_number_is_taken():
    u0 = initial_condition([1], 128)
    expected = solve_burgers(u0, [0.0, 0.05], 0.01, dt=1e-3)
    for dt in (np.float32(1e-3), np.float64(1e-3), torch.tensor(1e-3, dtype=torch.float64)):
        torch.testing.assert_close(solve_burgers(u0, [0.0, 0.05], 0.01, dt=dt), expected, rtol=1e-6, atol=1e-9)



@pytest.mark.parametrize("dt", [np.bool_(True), torch.tensor(True), torch.tensor([1e-3]), np.float64("inf"),
                                torch.tensor(-1e-3), 1e-3 + 0j])
def test_a_step_that_is_a_bool_an_array_or_a_bad_numpy_or_tensor_number_is_refused(dt):
    # float() takes all of them but a complex one: a bool tensor would have been a step of 1.0
    with pytest.raises(ValueError, match=r"Invalid dt=.*; allowed values: None .* or a finite number > 0"):
        solve_burgers(initial_condition([1], 128), [0.0, 0.5], 0.01, dt=dt)


BAD_VISCOSITIES = [0.0, -0.01, float("nan"), float("inf"), True, np.bool_(True), torch.tensor(float("nan")), "0.01"]


@pytest.mark.parametrize("viscosity", BAD_VISCOSITIES)
def test_a_viscosity_that_is_not_a_finite_positive_number_is_refused(viscosity, tmp_path):
    # True was a viscosity of 1.0 and NaN a NaN trajectory; both are refused before any file is written
    pattern = r"^Invalid viscosity=.*; allowed values: finite numbers > 0\.$"
    with pytest.raises(ValueError, match=pattern):
        solve_burgers(initial_condition([1], 128), [0.0, 0.01], viscosity)
    with pytest.raises(ValueError, match=pattern):
        generate_burgers(tmp_path, resolutions=(8,), n_train=1, n_test=1, progress=False, viscosity=viscosity,
                         t_final=0.01, n_time=2, solver_resolution=128)
    assert not list(tmp_path.rglob("*.pt"))


def test_a_viscosity_given_as_a_numpy_or_tensor_number_is_taken():
    u0 = initial_condition([1], 128)
    expected = solve_burgers(u0, [0.0, 0.05], 0.01)
    for viscosity in (np.float64(0.01), torch.tensor(0.01, dtype=torch.float64)):
        assert torch.equal(solve_burgers(u0, [0.0, 0.05], viscosity), expected)


def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match=r"resolution=4; allowed values: integers >= 8"):
        generate_burgers(None, resolutions=(4,), n_train=1, n_test=1, progress=False)


def test_files_match_upstreams_mini_burgers_layout(tmp_path):
    paths = generate_burgers(tmp_path, resolutions=(16,), n_train=6, n_test=4, progress=False)
    data = torch.load(paths[16][0])
    assert data["x"].shape == (6, 16) and data["y"].shape == (6, 17, 16)
    assert data["visc"].item() == pytest.approx(0.01)
    torch.testing.assert_close(data["y"][:, 0], data["x"], rtol=0, atol=0)
    dataset = Burgers1dTimeDataset(root_dir=tmp_path, n_train=6, n_tests=[4], train_resolution=16,
                                   test_resolutions=[16], batch_size=2, test_batch_sizes=[2])
    sample = dataset.train_db[0]
    assert sample["x"].shape == (1, 16) and sample["y"].shape == (1, 17, 16)
    batch = dataset.data_processor.preprocess({"x": sample["x"][None], "y": sample["y"][None]})
    assert batch["x"].shape == batch["y"].shape == (1, 1, 17, 16)


def test_load_burgers_reads_a_resolution_upstream_refuses(tmp_path):
    train, tests, processor = load_burgers(tmp_path, n_train=4, n_tests=(2,), batch_size=2, test_batch_sizes=(2,),
                                           train_resolution=32, test_resolutions=(32,), progress=False)
    batch = processor.preprocess(next(iter(train)))
    assert batch["x"].shape == batch["y"].shape == (2, 1, 17, 32)


@pytest.mark.parametrize("times, bad", [([0.0, float("nan")], r"times\[1\]=nan"), ([0.0, -1.0], r"times\[1\]=-1.0"),
                                        ([0.0, 0.5, 0.5], r"times\[2\]=0.5"), ([-0.1, 0.5], r"times\[0\]=-0.1"),
                                        ([0.0, float("inf")], r"times\[1\]=inf"), ([], "at least one output time")])
def test_output_times_that_are_not_finite_and_increasing_are_refused(times, bad):
    # such an interval used to be skipped: the "trajectory" repeated the previous state
    with pytest.raises(ValueError, match=bad):
        solve_burgers(initial_condition([1], 128), times)


@pytest.mark.parametrize("t_final", [0.0, -1.0, float("nan"), True])
def test_a_final_time_that_is_not_a_finite_number_above_zero_writes_no_file(t_final, tmp_path):
    with pytest.raises(ValueError, match=r"Invalid t_final="):
        generate_burgers(tmp_path, resolutions=(8,), n_train=1, n_test=1, t_final=t_final, progress=False)
    assert not list(tmp_path.glob("*.pt"))
