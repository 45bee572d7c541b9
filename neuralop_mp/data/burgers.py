"""1-D viscous Burgers' equation on the unit circle, and its time-series dataset.

Problem::

    u_t + (u^2 / 2)_x = nu u_xx   on [0, 1) with periodic boundaries,

initial condition a Gaussian random field with covariance ``625 (-Laplacian + 25)^(-2)``
(``alpha = 2``, ``tau = 5``, ``sigma = 25``, the FNO Burgers benchmark [1]_).

Solver: Fourier pseudo-spectral in space with the 2/3 rule on the nonlinear term,
the integrating factor ``exp(-nu k^2 t)`` for the (stiff) viscous term and classical
RK4 for the rest (Lawson's IF-RK4 [2]_), batched in torch. The step is set by the
advective CFL condition from ``max |u0|`` (the maximum principle: ``max |u|`` of the
equation's solution never grows; the discrete solution obeys it only while the grid
resolves the steepening fronts, which the generator checks) and shrunk to land on every
output time. Grid: ``x_j = j / n``.

Dataset: ``burgers_{split}_{res}.pt`` in the layout of neuraloperator's mini
Burgers files read by ``Burgers1dTimeDataset``: ``"x"`` = ``u(x, 0)`` of shape
``(N, res)``, ``"y"`` = the trajectory ``u(x, t_m)`` of shape ``(N, n_time, res)`` at
``t_m = m T / (n_time - 1)`` (``y[:, 0] == x``), and ``"visc"``, a 0-d tensor.

References
----------
.. [1] Z. Li et al., "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021, arXiv:2010.08895, Section 5.1.
.. [2] L. N. Trefethen, "Spectral Methods in MATLAB", SIAM 2000, Chapter 10
   (integrating factors, RK4 for the nonlinear term).
.. [3] E. Hopf, "The partial differential equation u_t + u u_x = mu u_xx",
   Comm. Pure Appl. Math. 3 (1950); J. D. Cole, Quart. Appl. Math. 9 (1951):
   the transformation ``u = -2 nu (log phi)_x`` used to validate the solver.
"""
import math
import warnings

import numpy as np
import torch

from ..progress_bars import progress_bar
from ..vocabulary import check_int_at_least, check_real
from .compute import cpu_threads, default_device, solver_threads
from .cache import GENERATOR_VERSION, data_file, generate_cached, generate_train_test, resolve_root
from .grf import sample_grf, sample_seed

BURGERS_GRF = dict(alpha=2.0, tau=5.0, sigma=25.0, n_modes=32, period=1.0)
DEFAULT_VISCOSITY = 0.01
DEFAULT_T_FINAL = 1.0
DEFAULT_N_TIME = 17
# 128 points: 1.8e-5 relative L2 from a 1024-point run at nu = 0.01 (docs/data.md).
DEFAULT_SOLVER_RESOLUTION = 128
MIN_RESOLUTION = 8
# Courant number on the dealiased band; RK4 is stable up to ~2.8, 1.0 keeps it accurate.
COURANT = 1.0
# max|u(t)| / max|u0| above this: the grid does not resolve the fronts (resolved runs
# measured <= 1 + 1e-15 at nu = 0.01; nu = 1e-3 on 128 points reached 1.25 over the 800 default
# training samples of seed 0, less over fewer: docs/data.md names the command).
MAX_GROWTH = 1.01


def periodic_grid(n):
    """The ``n`` points ``j / n`` of the unit circle."""
    return np.arange(n) / n


def solve_burgers(u0, times, viscosity=DEFAULT_VISCOSITY, dt=None, progress=None):
    """Solve the viscous Burgers equation for a batch of periodic initial conditions.

    Parameters
    ----------
    u0 : torch.Tensor
        Initial condition, shape ``(batch, n)`` or ``(n,)``, real; dtype and device are used.
    times : sequence of float
        Increasing output times, the first >= 0.
    viscosity : float
        ``nu`` > 0.
    dt : float, optional
        Largest step; default from the CFL condition on each sample's own ``max |u0|``,
        so that a sample's trajectory does not depend on the others in the batch.
    progress : tqdm, optional
        A bar advanced by one per output interval.

    Returns
    -------
    torch.Tensor
        ``u(x, t)`` at the requested times, shape ``(batch, len(times), n)``
        (``(len(times), n)`` for an unbatched ``u0``).
    """
    if not torch.is_tensor(u0) or u0.ndim not in (1, 2):
        shape = tuple(u0.shape) if torch.is_tensor(u0) else type(u0).__name__
        raise ValueError(f"Invalid u0 of shape {shape}; allowed: a tensor of shape (batch, n) or (n,).")
    with solver_threads(u0):
        if u0.ndim == 1:  # unbatched, as solve_vorticity accepts
            return _solve_burgers(u0[None], times, viscosity, dt, progress)[0]
        return _solve_burgers(u0, times, viscosity, dt, progress)


def _solve_burgers(u0, times, viscosity, dt, progress):
    viscosity = check_real("viscosity", viscosity, low=0, low_open=True)
    if dt is not None:
        dt = check_real("dt", dt, low=0, low_open=True, allowed="None (from the CFL condition) or a finite number > 0")
    times = _checked_times(times)
    n = u0.shape[-1]
    k = torch.fft.rfftfreq(n, d=1.0 / n, dtype=u0.dtype, device=u0.device)
    derivative = torch.where(k == n / 2, 0.0, 2 * math.pi * k)  # no odd derivative of the Nyquist mode
    dealias = (k < n / 3).to(u0.dtype)
    decay_rate = viscosity * (2 * math.pi * k) ** 2
    # each sample's own step (CFL on its own max |u0|): a sample's trajectory must not
    # depend on the samples solved beside it (a larger file starts with a smaller one's rows)
    if dt is None:
        u_max = u0.abs().amax(dim=-1).double().cpu()
        dt = COURANT / (2 * math.pi * (n / 3) * torch.where(u_max > 0, u_max, torch.ones_like(u_max)))
    else:
        dt = torch.full((u0.shape[0],), dt, dtype=torch.float64)

    def nonlinear(u_hat):
        u = torch.fft.irfft(u_hat, n=n)
        return -0.5j * derivative * torch.fft.rfft(u * u) * dealias

    u_hat = torch.fft.rfft(u0)
    out, t_now = [], 0.0
    for t_target in times:
        interval = t_target - t_now
        if interval > 0:
            steps = torch.ceil(interval / dt - 1e-9).to(torch.int64)  # per sample
            h = (interval / steps.double()).to(device=u0.device, dtype=u0.dtype)[:, None]
            half = torch.exp(-0.5 * h * decay_rate)
            full = half * half
            steps = steps.to(u0.device)[:, None]
            for step in range(int(steps.max())):
                a = nonlinear(u_hat)
                b = nonlinear(half * (u_hat + 0.5 * h * a))
                c = nonlinear(half * u_hat + 0.5 * h * b)
                d = nonlinear(full * u_hat + h * half * c)
                # a sample that has taken its steps keeps its state (the same numbers as alone)
                u_hat = torch.where(step < steps, full * u_hat + h / 6 * (full * a + 2 * half * (b + c) + d), u_hat)
        t_now = t_target
        out.append(torch.fft.irfft(u_hat, n=n))
        if progress is not None:
            progress.update(1)
    return torch.stack(out, dim=1)


def _checked_times(times):
    """``times`` as floats: finite, the first >= 0, each later one larger (a NaN, negative or
    repeated time used to be skipped silently, returning the previous state for it)."""
    checked = []
    for i, t in enumerate(times):
        low = checked[-1] if checked else 0.0
        checked.append(check_real(f"times[{i}]", t, low=low, low_open=bool(checked),
                                  allowed=f"finite numbers > times[{i - 1}]={low!r}" if checked else None))
    if not checked:
        raise ValueError(f"Invalid times={times!r}; allowed values: at least one output time.")
    return checked


def initial_condition(seeds, n, dtype=torch.float64):
    """Benchmark GRF initial conditions, one per seed, on the ``n``-point periodic grid."""
    if n < 2 * BURGERS_GRF["n_modes"] + 1:
        raise ValueError(f"solver resolution {n} is too coarse for the {BURGERS_GRF['n_modes']}-mode initial field; use >= 65")
    return sample_grf(seeds, periodic_grid(n), dim=1, **BURGERS_GRF).to(dtype)


def burgers_settings(resolution, seed, viscosity, t_final, n_time, solver_resolution):
    """Every setting that changes the data, as recorded in the file metadata; each value checked.

    The recorded ``solver_resolution`` is the grid really solved on: ``solver_resolution``
    rounded up to a multiple of ``resolution``."""
    resolution = check_int_at_least("Burgers resolution", resolution, MIN_RESOLUTION)
    # solved on a multiple of the stored grid so that the stored points are solver points
    n_solve = resolution * math.ceil(check_int_at_least("solver_resolution", solver_resolution, 65) / resolution)
    return dict(
        generator="burgers", version=GENERATOR_VERSION, time_step="per-sample CFL", resolution=resolution,
        seed=int(seed),
        # checked here, before the cache lookup: a bad viscosity must not find a cached file
        viscosity=check_real("viscosity", viscosity, low=0, low_open=True),
        # t_final=0 would repeat the initial time n_time times
        t_final=check_real("t_final", t_final, low=0, low_open=True), n_time=check_int_at_least("n_time", n_time, 2),
        solver_resolution=n_solve, grf=dict(BURGERS_GRF), grid="periodic",
    )


def generate_burgers_split(root, resolution, split, n_samples, seed=0, progress=True, overwrite=False, *,
                           viscosity=DEFAULT_VISCOSITY, t_final=DEFAULT_T_FINAL, n_time=DEFAULT_N_TIME,
                           solver_resolution=DEFAULT_SOLVER_RESOLUTION, batch_size=512, device=None):
    """Write (or find in the cache) ``burgers_{split}_{resolution}.pt``; return its path."""
    settings = burgers_settings(resolution, seed, viscosity, t_final, n_time, solver_resolution)
    resolution, n_solve = settings["resolution"], settings["solver_resolution"]

    def compute():
        dev = default_device(device)
        times = np.linspace(0.0, t_final, settings["n_time"])
        stride = n_solve // resolution
        seeds = [sample_seed(seed, split, i) for i in range(n_samples)]
        chunks = [seeds[i:i + batch_size] for i in range(0, n_samples, batch_size)]
        trajectories, growth = [], 0.0
        with cpu_threads(1), progress_bar(total=len(times) * len(chunks), desc=f"burgers {split} {resolution}",
                                          enabled=progress, leave=False) as bar:
            for chunk in chunks:
                u0 = initial_condition(chunk, n_solve).to(dev)
                u = solve_burgers(u0, times, viscosity, progress=bar)
                growth = max(growth, float((u.abs().amax(dim=(1, 2)) / u0.abs().amax(dim=1)).max()))
                trajectories.append(u[..., ::stride].float().cpu())
        if growth > MAX_GROWTH:
            warnings.warn(
                f"Burgers {split} data at viscosity={viscosity!r} on solver_resolution={n_solve}: max|u(t)| grows "
                f"to {growth:.3g} x max|u0|, which the equation never does; the grid does not resolve the "
                f"fronts. Use a finer --solver-resolution (solver_resolution=).", RuntimeWarning)
        y = torch.cat(trajectories)
        return {"x": y[:, 0].clone(), "y": y, "visc": torch.tensor(float(viscosity))}

    return generate_cached(data_file(resolve_root(root), "burgers", split, resolution), settings, n_samples,
                           overwrite, compute)


def generate_burgers(root=None, resolutions=(16,), n_train=800, n_test=200, seed=0, progress=True,
                     overwrite=False, *, viscosity=DEFAULT_VISCOSITY, t_final=DEFAULT_T_FINAL,
                     n_time=DEFAULT_N_TIME, solver_resolution=DEFAULT_SOLVER_RESOLUTION, device=None):
    """Generate viscous Burgers trajectories in the layout of upstream's ``Burgers1dTimeDataset``.

    Writes ``burgers_train_{res}.pt`` and ``burgers_test_{res}.pt``: ``"x"`` float32
    ``(N, res)``, ``"y"`` float32 ``(N, n_time, res)``, ``"visc"``, plus ``"meta"``.
    The defaults (16 points, 17 times on ``[0, 1]``, ``nu = 0.01``) match the shape of
    neuraloperator's mini Burgers files. Upstream's ``Burgers1dTimeDataset`` accepts
    only resolutions 16 and 128; :func:`neuralop_mp.data.load_burgers` reads any.

    Parameters
    ----------
    root : str or Path, optional
        Output folder; default :func:`~neuralop_mp.data.cache.default_data_root`.
    resolutions : sequence of int
        Stored grid sizes (>= 8).
    n_train, n_test : int
        Samples per split; a split of 0 is not written (its path is None).
    seed : int
        Base seed; each sample's initial field comes from ``(seed, split, index)``.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Regenerate even when a matching file exists (and replace foreign files).
    viscosity, t_final, n_time : float, float, int
        ``nu``, the final time and the number of stored times (``t = 0`` included).
    solver_resolution : int
        Smallest grid solved on; rounded up to a multiple of each stored resolution.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.

    Returns
    -------
    dict
        ``{res: (train_path, test_path)}``.
    """
    return generate_train_test(
        generate_burgers_split, lambda res: burgers_settings(res, seed, viscosity, t_final, n_time, solver_resolution),
        root, resolutions, n_train, n_test, seed, progress, overwrite,
        viscosity=viscosity, t_final=t_final, n_time=n_time, solver_resolution=solver_resolution, device=device,
    )
