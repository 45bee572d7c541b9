"""2-D incompressible Navier-Stokes in vorticity form on the unit torus, and its dataset.

Problem (the FNO benchmark [1]_)::

    w_t + u . grad w = nu Laplacian(w) + f,     u = (psi_y, -psi_x),  -Laplacian(psi) = w,
    f(x, y) = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y))),

on ``[0, 1)^2`` with periodic boundaries, initial vorticity ``w0`` a Gaussian
random field (``alpha = 2.5``, ``tau = 7``, ``sigma = 7^1.5``, as in [1]_).

Solver: pseudo-spectral in space (derivatives by FFT, products on the grid, the
2/3 rule to remove aliasing from the advection term [2]_), Crank-Nicolson on the
viscous term and second-order Adams-Bashforth on advection and forcing (CNAB2,
started with one forward-Euler step), batched over samples in torch (on CUDA when
available). The grid is ``x_j = j / n``, ``j = 0..n-1``.

Dataset: ``nsforcing_{split}_{res}.pt`` with ``"x"`` = ``w(0)`` and ``"y"`` = ``w(T)``,
float32 ``(N, res, res)``, the layout upstream's ``NavierStokesDataset`` reads.
The solve runs on ``max(res, solver_resolution)`` points per axis and is stored
at ``res`` by taking every ``stride``-th point (the grids nest).

References
----------
.. [1] Z. Li et al., "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021, arXiv:2010.08895, Section 5.3.
.. [2] C. Canuto, M. Y. Hussaini, A. Quarteroni, T. A. Zang, "Spectral Methods:
   Fundamentals in Single Domains", Springer 2006, Sections 3.4 (dealiasing)
   and D.2 (implicit-explicit time stepping).
"""
import math

import numpy as np
import torch

from ..progress_bars import progress_bar
from ..vocabulary import check_real, is_integer
from .compute import cpu_threads, default_device, solver_threads
from .cache import GENERATOR_VERSION, data_file, generate_cached, generate_train_test, resolve_root
from .grf import sample_grf, sample_seed

# the smallest stored grid (a power of 2, as every stored grid)
MIN_RESOLUTION = 8

# n_modes=10: the spectrum decays as |k|^-5, so mode 10 carries < 1% of mode 1's amplitude.
NS_GRF = dict(alpha=2.5, tau=7.0, sigma=7.0**1.5, n_modes=10, period=1.0)
DEFAULT_VISCOSITY = 1e-3
DEFAULT_T_FINAL = 10.0
DEFAULT_SOLVER_RESOLUTION = 32
# Time step at 32 points, scaled with the grid spacing. At nu = 1e-3 and T = 10 it is
# half the largest stable step we measured and matches a 128-point, dt/4 reference
# to ~2e-5 relative L2 (docs/data.md). Longer times or smaller nu need a smaller step (dt=).
DT_AT_32 = 0.05


def periodic_grid(n):
    """The ``n`` points ``j / n`` of the unit circle."""
    return np.arange(n) / n


def benchmark_forcing(n, dtype=torch.float64, device="cpu"):
    """``0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` on the ``n x n`` periodic grid."""
    x = torch.as_tensor(periodic_grid(n), dtype=dtype, device=device)
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return 0.1 * (torch.sin(s) + torch.cos(s))


class SpectralOperators:
    """Wavenumbers, inverse Laplacian and 2/3-rule mask for ``rfft2`` arrays on an ``n x n`` grid."""

    def __init__(self, n, dtype, device):
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
        k_half = torch.fft.rfftfreq(n, d=1.0 / n, dtype=dtype, device=device)
        kx, ky = torch.meshgrid(k, k_half, indexing="ij")
        # Odd derivatives of the Nyquist mode are not real-representable: drop them.
        nyquist = n / 2
        self.dx = torch.where(kx.abs() == nyquist, 0.0, 2 * math.pi * kx)
        self.dy = torch.where(ky.abs() == nyquist, 0.0, 2 * math.pi * ky)
        self.k_squared = (2 * math.pi) ** 2 * (kx**2 + ky**2)
        self.inverse_laplacian = torch.where(self.k_squared == 0, 0.0, 1.0 / self.k_squared.clamp_min(1e-30))
        self.dealias = ((kx.abs() < n / 3) & (ky.abs() < n / 3)).to(dtype)


def solve_vorticity(w0, t_final, viscosity=DEFAULT_VISCOSITY, forcing=None, dt=None, progress=None):
    """Advance a batch of vorticity fields from ``t = 0`` to ``t_final``.

    Parameters
    ----------
    w0 : torch.Tensor
        Initial vorticity, shape ``(batch, n, n)`` or ``(n, n)``, real; its dtype and
        device are used.
    t_final : float
        Final time, >= 0.
    viscosity : float
        Kinematic viscosity ``nu`` > 0.
    forcing : torch.Tensor, optional
        Time-independent forcing on the grid, shape ``(n, n)``; None for unforced flow.
    dt : float, optional
        Largest time step, > 0; default ``0.05 * 32 / n``. It is shrunk so that an
        integer number of steps reaches ``t_final``.
    progress : tqdm, optional
        A bar advanced by one per time step.

    Returns
    -------
    torch.Tensor
        ``w(t_final)``, same shape, dtype and device as ``w0``.
    """
    with solver_threads(w0):
        return _solve_vorticity(w0, t_final, viscosity, forcing, dt, progress)


def _solve_vorticity(w0, t_final, viscosity, forcing, dt, progress):
    viscosity = check_real("viscosity", viscosity, low=0, low_open=True)
    t_final = check_real("t_final", t_final, low=0)
    if not torch.is_tensor(w0) or w0.ndim < 2 or w0.shape[-1] != w0.shape[-2]:
        shape = tuple(w0.shape) if torch.is_tensor(w0) else type(w0).__name__
        raise ValueError(f"Invalid w0 of shape {shape}; allowed: a tensor of shape (batch, n, n) or (n, n).")
    n = w0.shape[-1]
    if forcing is not None and tuple(forcing.shape) != (n, n):
        raise ValueError(f"Invalid forcing of shape {tuple(forcing.shape)}; allowed: None or shape ({n}, {n}), "
                         "the grid of w0.")
    # dt=0 must not mean "the default": it is refused like any other step that cannot advance
    dt = DT_AT_32 * 32 / n if dt is None else check_real(
        "dt", dt, low=0, low_open=True, allowed="None (0.05 * 32 / n) or a finite number > 0")
    ops = SpectralOperators(n, w0.dtype, w0.device)
    n_steps = max(1, math.ceil(t_final / dt - 1e-9))
    dt = t_final / n_steps
    w_hat = torch.fft.rfft2(w0)
    f_hat = torch.zeros_like(w_hat) if forcing is None else torch.fft.rfft2(forcing.to(w0))
    half_viscous = 0.5 * dt * viscosity * ops.k_squared
    explicit_factor, implicit_factor = 1 - half_viscous, 1 / (1 + half_viscous)
    previous = None
    for _ in range(n_steps):
        current = _advection_hat(w_hat, ops, n) - f_hat  # the explicit right-hand side, negated
        extrapolated = current if previous is None else 1.5 * current - 0.5 * previous
        w_hat = (explicit_factor * w_hat - dt * extrapolated) * implicit_factor
        previous = current
        if progress is not None:
            progress.update(1)
    return torch.fft.irfft2(w_hat, s=(n, n))


def _advection_hat(w_hat, ops, n):
    """Dealiased Fourier transform of ``u . grad w``."""
    psi_hat = w_hat * ops.inverse_laplacian
    to_grid = lambda z: torch.fft.irfft2(z, s=(n, n))  # noqa: E731
    u = to_grid(1j * ops.dy * psi_hat)
    v = to_grid(-1j * ops.dx * psi_hat)
    w_x = to_grid(1j * ops.dx * w_hat)
    w_y = to_grid(1j * ops.dy * w_hat)
    return torch.fft.rfft2(u * w_x + v * w_y) * ops.dealias


def initial_vorticity(seeds, n, dtype=torch.float64):
    """Benchmark GRF initial vorticity, one per seed, on the ``n x n`` periodic grid."""
    if n < 2 * NS_GRF["n_modes"] + 1:
        raise ValueError(f"solver resolution {n} is too coarse for the {NS_GRF['n_modes']}-mode initial field; use >= 32")
    return sample_grf(seeds, periodic_grid(n), dim=2, **NS_GRF).to(dtype)


def ns_settings(resolution, seed, viscosity, t_final, solver_resolution, dt=None):
    """Every setting that changes the data, as recorded in the file metadata; each value checked.

    The recorded ``solver_resolution`` is the grid really solved on,
    ``max(resolution, solver_resolution)``. ``dt`` is recorded only when given: files
    made with the default step keep the record (and bytes) they had before ``dt`` existed."""
    resolution = _check_power_of_two("Navier-Stokes resolution", resolution, MIN_RESOLUTION)
    settings = dict(
        generator="navier_stokes", version=GENERATOR_VERSION, resolution=resolution, seed=int(seed),
        # checked here, before the cache lookup: a bad viscosity must not find a cached file
        viscosity=check_real("viscosity", viscosity, low=0, low_open=True),
        t_final=check_real("t_final", t_final, low=0),
        # 32: the smallest power of 2 that holds the initial field's modes (initial_vorticity)
        solver_resolution=max(resolution, _check_power_of_two("solver_resolution", solver_resolution, 32)),
        forcing="0.1(sin(2pi(x+y))+cos(2pi(x+y)))", grf=dict(NS_GRF), grid="periodic",
    )
    if dt is not None:
        settings["dt"] = check_real("dt", dt, low=0, low_open=True,
                                    allowed="None (0.05 * 32 / solver_resolution) or a finite number > 0")
    return settings


def _check_power_of_two(name, value, low):
    # an integer as the package's other settings take one (numpy and 0-d tensor integers too, no bool)
    if not is_integer(value) or int(value) < low or int(value) & (int(value) - 1):
        raise ValueError(f"Invalid {name}={value!r}; allowed values: powers of 2 >= {low}.")
    return int(value)


def generate_navier_stokes_split(root, resolution, split, n_samples, seed=0, progress=True, overwrite=False, *,
                                 viscosity=DEFAULT_VISCOSITY, t_final=DEFAULT_T_FINAL,
                                 solver_resolution=DEFAULT_SOLVER_RESOLUTION, batch_size=256, device=None, dt=None):
    """Write (or find in the cache) ``nsforcing_{split}_{resolution}.pt``; return its path.

    Raises
    ------
    ValueError
        If the solve gives a non-finite field for any sample (the time step is too
        large for the flow); nothing is saved.
    """
    settings = ns_settings(resolution, seed, viscosity, t_final, solver_resolution, dt)
    resolution, n_solve = settings["resolution"], settings["solver_resolution"]
    step = settings.get("dt", DT_AT_32 * 32 / n_solve)

    def compute():
        dev = default_device(device)
        dtype = torch.float32  # stored as float32 anyway; float64 halves the speed for no visible gain
        stride = n_solve // resolution
        forcing = benchmark_forcing(n_solve, dtype, dev)
        seeds = [sample_seed(seed, split, i) for i in range(n_samples)]
        chunks = [seeds[i:i + batch_size] for i in range(0, n_samples, batch_size)]
        n_steps = max(1, math.ceil(t_final / step - 1e-9))
        xs, ys = [], []
        with cpu_threads(1), progress_bar(total=n_steps * len(chunks), desc=f"navier-stokes {split} {resolution}x{resolution}",
                                          enabled=progress, leave=False) as bar:
            for start, chunk in zip(range(0, n_samples, batch_size), chunks):
                w0 = initial_vorticity(chunk, n_solve, dtype).to(dev)
                # torch's CPU rfft2 rounds a batch of one otherwise than the same field in a larger batch:
                # a lone sample is solved beside a copy of itself, so that its numbers do not depend on the
                # chunk it falls in (a file's first rows are the same samples as a smaller file's)
                lone = len(chunk) == 1
                wt = solve_vorticity(w0.repeat(2, 1, 1) if lone else w0, t_final, viscosity, forcing, dt=step,
                                     progress=bar)[:len(chunk)]
                _check_finite(wt, start, split, viscosity, t_final, n_solve, t_final / n_steps)
                xs.append(w0[:, ::stride, ::stride].float().cpu())
                ys.append(wt[:, ::stride, ::stride].float().cpu())
        return {"x": torch.cat(xs), "y": torch.cat(ys)}

    return generate_cached(data_file(resolve_root(root), "nsforcing", split, resolution), settings, n_samples,
                           overwrite, compute)


def _check_finite(wt, start, split, viscosity, t_final, n_solve, dt):
    """Refuse a blown-up solve before anything is saved (a NaN sample used to be written, exit 0)."""
    bad = (~torch.isfinite(wt).flatten(1).all(dim=1)).nonzero().flatten().cpu() + start
    if len(bad):
        raise ValueError(
            f"The Navier-Stokes solve blew up (non-finite vorticity) for {split} samples {bad.tolist()} at "
            f"viscosity={viscosity!r}, t_final={t_final!r}, solver_resolution={n_solve}, time step dt={dt:.4g}; "
            f"nothing was saved. The step is too large for this flow: pass a smaller dt (CLI: --dt), e.g. "
            f"{dt / 4:.4g}; a smaller viscosity also needs a larger solver_resolution (--solver-resolution).")


def generate_navier_stokes(root=None, resolutions=(32,), n_train=400, n_test=100, seed=0, progress=True,
                           overwrite=False, *, viscosity=DEFAULT_VISCOSITY, t_final=DEFAULT_T_FINAL,
                           solver_resolution=DEFAULT_SOLVER_RESOLUTION, device=None, dt=None):
    """Generate forced 2-D Navier-Stokes data in the layout of upstream's ``NavierStokesDataset``.

    Writes ``nsforcing_train_{res}.pt`` and ``nsforcing_test_{res}.pt`` per resolution:
    ``"x"`` = initial vorticity ``w(0)``, ``"y"`` = ``w(t_final)``, float32
    ``(N, res, res)``, plus ``"meta"``. Upstream's ``NavierStokesDataset`` accepts
    only resolutions 128 and 1024; :func:`neuralop_mp.data.load_navier_stokes`
    reads any resolution, holding what upstream's ``PTDataset`` would read from the file.

    Parameters
    ----------
    root : str or Path, optional
        Output folder; default :func:`~neuralop_mp.data.cache.default_data_root`.
    resolutions : sequence of int
        Stored grid sizes, powers of 2 (>= 8).
    n_train, n_test : int
        Samples per split; a split of 0 is not written (its path is None).
    seed : int
        Base seed; each sample's initial field comes from ``(seed, split, index)``.
    progress : bool
        Show a tqdm progress bar (one tick per time step).
    overwrite : bool
        Regenerate even when a matching file exists (and replace foreign files).
    viscosity : float
        ``nu``; the benchmark uses 1e-3 (default) and 1e-4 (needs finer grids).
    t_final : float
        Time of the output field.
    solver_resolution : int
        Smallest grid the equation is solved on (power of 2, >= 32).
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    dt : float, optional
        Largest time step, > 0; default ``0.05 * 32 / n`` on the ``n``-point solver grid,
        which blows up at long times or small viscosity (e.g. ``t_final=50``). Recorded in
        the file's metadata when given.

    Returns
    -------
    dict
        ``{res: (train_path, test_path)}``.
    """
    return generate_train_test(
        generate_navier_stokes_split, lambda res: ns_settings(res, seed, viscosity, t_final, solver_resolution, dt),
        root, resolutions, n_train, n_test, seed, progress, overwrite,
        viscosity=viscosity, t_final=t_final, solver_resolution=solver_resolution, device=device, dt=dt,
    )
