"""Darcy flow on the unit square: a finite-difference solver and the dataset generator.

Problem (the FNO benchmark [1]_)::

    -div(a(x) grad u(x)) = f(x)   in (0, 1)^2,     u = 0 on the boundary,

with ``f = 1`` and a piecewise-constant permeability ``a`` = 12 where a Gaussian
random field is >= 0 and 3 elsewhere.

Grid convention: a *vertex* grid of ``res`` points per axis including both
boundaries, ``x_i = i / (res - 1)``, as in the benchmark's 421 = 420 + 1 grid.
Arrays are indexed ``u[i, j] = u(x_i, y_j)``; boundary rows/columns of ``y`` hold
the boundary value 0. The operator is discretized with the 5-point stencil and
face coefficients averaged from the two neighbouring vertices (harmonic mean by
default, the flux-continuous choice for jumps in ``a`` [2]_; arithmetic on request),
which is second-order accurate for smooth ``a`` and ``u``.

Solver grid: by default the equation is solved on the stored grid itself. Because
``a`` jumps across a curve the grid does not follow, the discrete solution then
converges only at order ~1.3, and a 16-point label is a few percent from the PDE's
solution (docs/data.md, Validation evidence). ``solver_resolution=N`` solves on the
nested vertex grid of ``(res - 1) k + 1 >= N`` points (the smallest such ``k``) and
stores every ``k``-th vertex, so the stored points are solver points and the stored
``x`` is the permeability solved with at those points.

References
----------
.. [1] Z. Li et al., "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021, arXiv:2010.08895, Section 5.2.
.. [2] R. J. LeVeque, "Finite Difference Methods for Ordinary and Partial
   Differential Equations", SIAM 2007, Sections 2.15 and 3.2 (variable
   coefficients, 5-point Laplacian, second-order truncation error).
"""
from functools import lru_cache

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from ..progress_bars import progress_bar
from ..vocabulary import check_choice, check_int_at_least, is_integer
from .compute import cpu_threads
from .cache import GENERATOR_VERSION, data_file, generate_cached, generate_train_test, resolve_root
from .grf import sample_grf, sample_seed

FACE_AVERAGES = ("harmonic", "arithmetic")

# Permeability field: GRF of the benchmark (alpha=2, tau=3), thresholded at 0.
DARCY_GRF = dict(alpha=2.0, tau=3.0, sigma=1.0, n_modes=32, period=2.0)
HIGH_PERMEABILITY = 12.0
LOW_PERMEABILITY = 3.0
MIN_RESOLUTION = 4


def vertex_grid(resolution):
    """The ``resolution`` vertex coordinates ``i / (resolution - 1)`` of [0, 1]."""
    return np.linspace(0.0, 1.0, resolution)


def _face_coefficients(a, face_average):
    """Coefficients on the faces between neighbouring vertices along axis 0 and axis 1."""
    if face_average == "harmonic":
        mean = lambda p, q: 2.0 * p * q / (p + q)  # noqa: E731
    else:
        mean = lambda p, q: 0.5 * (p + q)  # noqa: E731
    return mean(a[:-1, :], a[1:, :]), mean(a[:, :-1], a[:, 1:])


@lru_cache(maxsize=8)
def _stencil_pattern(resolution):
    """Row/column indices of the interior 5-point matrix, and which faces feed each entry."""
    m = resolution - 2
    idx = np.arange(m * m).reshape(m, m)
    ii, jj = np.meshgrid(np.arange(1, m + 1), np.arange(1, m + 1), indexing="ij")
    rows, cols, kinds = [idx.ravel()], [idx.ravel()], [np.full(m * m, -1)]
    # Off-diagonal neighbours: (di, dj, kind); kind 0..3 = east, west, north, south face.
    for kind, (di, dj) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        inside = (ii + di >= 1) & (ii + di <= m) & (jj + dj >= 1) & (jj + dj <= m)
        rows.append(idx[inside])
        cols.append(idx[(ii + di - 1)[inside], (jj + dj - 1)[inside]])
        kinds.append(np.full(int(inside.sum()), kind))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(kinds)


def darcy_matrix(a, face_average="harmonic"):
    """Sparse matrix ``h^2 * A`` of ``-div(a grad .)`` on the interior vertices (zero Dirichlet).

    Parameters
    ----------
    a : numpy.ndarray
        Coefficient at the vertices, shape ``(res, res)``, positive.
    face_average : {"harmonic", "arithmetic"}

    Returns
    -------
    scipy.sparse.csc_matrix
        Shape ``((res-2)^2, (res-2)^2)``, unknowns ordered ``u[1:-1, 1:-1].ravel()``.
    """
    check_choice("face_average", face_average, FACE_AVERAGES)
    a = np.asarray(a, dtype=np.float64)
    res = a.shape[0]
    ax, ay = _face_coefficients(a, face_average)
    east, west = ax[1:, 1:-1], ax[:-1, 1:-1]  # faces (i, i+1) and (i-1, i) of interior vertex i
    north, south = ay[1:-1, 1:], ay[1:-1, :-1]
    faces = [east.ravel(), west.ravel(), north.ravel(), south.ravel()]
    rows, cols, kinds = _stencil_pattern(res)
    m2 = (res - 2) ** 2
    values = np.empty(rows.shape[0])
    values[:m2] = sum(faces)
    offset = m2
    for kind in range(4):
        sel = kinds == kind
        count = int(sel.sum())
        # Coefficient of neighbour in direction `kind`: the face between the vertex and it.
        values[offset:offset + count] = -faces[kind][rows[offset:offset + count]]
        offset += count
    return scipy.sparse.csc_matrix((values, (rows, cols)), shape=(m2, m2))


def solve_darcy(a, f=1.0, face_average="harmonic"):
    """Solve ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary.

    Parameters
    ----------
    a : array-like
        Coefficient at the ``res x res`` vertex grid (boundary included), finite and > 0.
    f : float or array-like
        Right-hand side, a constant or values at the vertices, shape ``(res, res)``
        (boundary values unused).
    face_average : {"harmonic", "arithmetic"}
        How face coefficients are formed from the two neighbouring vertices.

    Returns
    -------
    numpy.ndarray
        float64 solution at the vertices, shape ``(res, res)``, zero on the boundary.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < MIN_RESOLUTION:
        raise ValueError(f"a must be a square grid of at least {MIN_RESOLUTION}x{MIN_RESOLUTION} points, got shape {a.shape}")
    # a <= 0 or NaN made SuperLU fail ("exactly singular") or return a meaningless field
    bad = ~(np.isfinite(a) & (a > 0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"Invalid a[{i}, {j}]={a[i, j]!r} ({int(bad.sum())} such vertices); "
                         "allowed: finite numbers > 0 at every vertex.")
    f = np.asarray(f, dtype=np.float64)
    if f.shape not in ((), a.shape):
        raise ValueError(f"Invalid f of shape {f.shape}; allowed: a number or an array of a's shape {a.shape}.")
    res = a.shape[0]
    h = 1.0 / (res - 1)
    rhs = np.broadcast_to(f, a.shape)[1:-1, 1:-1].ravel() * h * h
    u = np.zeros_like(a)
    # The matrix is symmetric: a symmetric fill-reducing ordering is ~25% faster than COLAMD.
    lu = scipy.sparse.linalg.splu(darcy_matrix(a, face_average), permc_spec="MMD_AT_PLUS_A")
    u[1:-1, 1:-1] = lu.solve(rhs).reshape(res - 2, res - 2)
    return u


def permeability(seeds, resolution):
    """Two-valued permeability fields (12 where the GRF >= 0, else 3), float64, ``(n, res, res)``."""
    field = sample_grf(seeds, vertex_grid(resolution), dim=2, **DARCY_GRF)
    # Python scalars alone would give torch's default dtype (float32), not the float64 documented
    return torch.where(field >= 0, HIGH_PERMEABILITY, LOW_PERMEABILITY).to(torch.float64)


def solver_grid(resolution, solver_resolution=None):
    """``(n_solve, stride)``: the points per axis solved on and the stride of the stored grid in it.

    ``n_solve = (resolution - 1) * stride + 1`` with the smallest ``stride >= 1`` that gives
    ``n_solve >= solver_resolution``: a vertex grid that contains the stored one (its every
    ``stride``-th vertex). None, or a value up to ``resolution``: the stored grid, stride 1.
    """
    if solver_resolution is None:
        return resolution, 1
    # an integer as the package's other settings take one (numpy and 0-d tensor integers too, no bool)
    if not is_integer(solver_resolution) or int(solver_resolution) < MIN_RESOLUTION:
        raise ValueError(f"Invalid solver_resolution={solver_resolution!r}; allowed values: None (the stored grid) "
                         f"or integers >= {MIN_RESOLUTION}.")
    stride = max(1, -(-(int(solver_resolution) - 1) // (resolution - 1)))  # ceil division
    return (resolution - 1) * stride + 1, stride


def darcy_settings(resolution, seed, face_average="harmonic", solver_resolution=None):
    """Every setting that changes the data, as recorded in the file metadata; each value checked.

    ``solver_resolution`` is recorded only when the grid solved on is finer than the stored
    one, as the number of points really solved on (:func:`solver_grid`): files solved on
    their own grid keep the record (and bytes) they had before the setting existed.
    """
    resolution = check_int_at_least("Darcy resolution", resolution, MIN_RESOLUTION)
    settings = dict(
        generator="darcy", version=GENERATOR_VERSION, resolution=resolution, seed=int(seed),
        forcing=1.0, high=HIGH_PERMEABILITY, low=LOW_PERMEABILITY,
        face_average=check_choice("face_average", face_average, FACE_AVERAGES), grf=dict(DARCY_GRF), grid="vertex",
    )
    n_solve, stride = solver_grid(resolution, solver_resolution)
    if stride > 1:
        settings["solver_resolution"] = n_solve
    return settings


def generate_darcy_split(root, resolution, split, n_samples, seed=0, progress=True, overwrite=False,
                         face_average="harmonic", solver_resolution=None):
    """Write (or find in the cache) ``darcy_{split}_{resolution}.pt``; return its path."""
    settings = darcy_settings(resolution, seed, face_average, solver_resolution)
    resolution = settings["resolution"]
    n_solve, stride = solver_grid(resolution, solver_resolution)

    def compute():
        seeds = [sample_seed(seed, split, i) for i in range(n_samples)]
        with cpu_threads(1):
            a = permeability(seeds, resolution).numpy()
        u = np.empty_like(a)
        solved_on = "" if stride == 1 else f" (solved {n_solve}x{n_solve})"
        bar = progress_bar(range(n_samples), desc=f"darcy {split} {resolution}x{resolution}{solved_on}",
                           enabled=progress, leave=False)
        for n in bar:
            if stride == 1:
                u[n] = solve_darcy(a[n], 1.0, face_average)
                continue
            with cpu_threads(1):
                fine = permeability(seeds[n:n + 1], n_solve).numpy()[0]
            # the stored x is the coefficient solved with at the stored vertices, bitwise: a GRF
            # value within round-off of 0 could otherwise threshold differently on the two grids
            fine[::stride, ::stride] = a[n]
            u[n] = solve_darcy(fine, 1.0, face_average)[::stride, ::stride]
        return {"x": torch.from_numpy(a).float(), "y": torch.from_numpy(u).float()}

    return generate_cached(data_file(resolve_root(root), "darcy", split, resolution), settings, n_samples, overwrite,
                           compute)


def generate_darcy(root=None, resolutions=(16, 32), n_train=1000, n_test=200, seed=0, progress=True,
                   overwrite=False, *, face_average="harmonic", solver_resolution=None):
    """Generate the Darcy-flow dataset in the layout of upstream's ``DarcyDataset``.

    Writes ``darcy_train_{res}.pt`` and ``darcy_test_{res}.pt`` per resolution, each
    a dict with ``"x"`` (permeability) and ``"y"`` (solution), float32 tensors of
    shape ``(N, res, res)`` (``DarcyDataset`` adds the channel axis), plus ``"meta"``.
    Sample ``i`` of a split is the same permeability field at every resolution (the
    stored vertices ``i / (res - 1)`` of two resolutions coincide only where one
    ``res - 1`` divides the other: 16 and 31, not 16 and 32).

    Parameters
    ----------
    root : str or Path, optional
        Output folder; default :func:`~neuralop_mp.data.cache.default_data_root`.
    resolutions : sequence of int
        Grid points per axis (boundary included), each >= 4. Upstream's
        ``DarcyDataset`` only accepts 16, 32, 64, 128 and 421.
    n_train, n_test : int
        Samples per split; a split of 0 is not written (its path is None).
    seed : int
        Base seed; each sample's field comes from ``(seed, split, index)``.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Regenerate even when a matching file exists (and replace foreign files).
    face_average : {"harmonic", "arithmetic"}
        How the permeability is averaged onto cell faces (harmonic: the benchmark's).
    solver_resolution : int, optional
        Smallest number of points per axis to solve on (>= 4): each file is solved on the
        nested grid of ``(res - 1) k + 1 >= solver_resolution`` points and stores every
        ``k``-th vertex (:func:`solver_grid`); its ``"meta"`` records the grid solved on.
        None (default), or a value up to ``res``: solved on the stored grid, whose labels
        are a few percent from the PDE's solution at 16 points (docs/data.md).

    Returns
    -------
    dict
        ``{res: (train_path, test_path)}``.
    """
    return generate_train_test(generate_darcy_split,
                               lambda res: darcy_settings(res, seed, face_average, solver_resolution), root,
                               resolutions, n_train, n_test, seed, progress, overwrite, face_average=face_average,
                               solver_resolution=solver_resolution)
