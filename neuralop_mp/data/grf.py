"""Gaussian random fields as finite Fourier series, drawn per sample from a seed.

Every generator in this package starts from a Gaussian random field (GRF) with
the Matérn-like covariance operator ``sigma^2 (-Laplacian + tau^2 I)^(-alpha)`` of
the FNO benchmarks [1]_. We draw the field as a *continuous* function: a finite
Fourier series on a periodic box of side ``period`` whose coefficients depend only
on the sample's seed, never on the grid. Evaluating the same coefficients on a
16-point and a 32-point grid therefore gives the same physical field at two
resolutions, which is what makes files at different resolutions comparable (the
benchmark data are subsampled from one fine grid for the same reason).

The coefficient of wavevector ``k`` (each component in ``-n_modes..n_modes``,
``k = 0`` excluded so that fields have zero mean) is
``sqrt(lambda_k) (a_k + i b_k)`` with ``a_k, b_k`` standard normal and
``lambda_k = sigma^2 ((2 pi |k| / period)^2 + tau^2)^(-alpha)``; the field is the
real part of the series. Its covariance is ``sum_k lambda_k cos(2 pi k.(x-y)/period)``
over every ``k`` of the box (``k`` and ``-k`` are separate, independent terms), so the
pointwise variance is ``sum_k lambda_k``: a stationary field with the operator's spectrum.

References
----------
.. [1] Z. Li, N. Kovachki, K. Azizzadenesheli, B. Liu, K. Bhattacharya, A. Stuart,
   A. Anandkumar, "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021, arXiv:2010.08895 (Sections 5.1-5.3, data generation).
.. [2] G. J. Lord, C. E. Powell, T. Shardlow, "An Introduction to Computational
   Stochastic PDEs", Cambridge University Press 2014, Chapter 6 (spectral
   sampling of stationary Gaussian fields).
"""
import math

import numpy as np
import torch

SPLIT_IDS = {"train": 0, "test": 1}


def sample_seed(seed, split, index):
    """A 63-bit seed for one sample, derived from ``(seed, split, index)``.

    Deriving each sample's seed (rather than drawing all samples from one stream)
    makes sample ``i`` of a file independent of how many samples the file holds
    and of its resolution, and keeps train and test samples disjoint.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"Invalid split={split!r}; allowed values: {', '.join(map(repr, SPLIT_IDS))}.")
    state = np.random.SeedSequence([int(seed), SPLIT_IDS[split], int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def wavenumbers(n_modes):
    """Integer wavenumbers ``-n_modes..n_modes`` as a float64 tensor."""
    return torch.arange(-n_modes, n_modes + 1, dtype=torch.float64)


def grf_spectrum(n_modes, dim, alpha, tau, sigma, period=1.0):
    """Standard deviations ``sqrt(lambda_k)`` on the box of wavevectors, zero at ``k = 0``.

    Returns a float64 tensor of shape ``(2 n_modes + 1,) * dim``.
    """
    k = wavenumbers(n_modes)
    grids = torch.meshgrid(*([k] * dim), indexing="ij")
    k_squared = sum(g**2 for g in grids)
    eigenvalues = sigma**2 * ((2 * math.pi / period) ** 2 * k_squared + tau**2) ** (-alpha)
    std = eigenvalues.sqrt()
    std[(n_modes,) * dim] = 0.0  # zero-mean fields
    return std


def grf_coefficients(seeds, n_modes, dim, alpha, tau, sigma, period=1.0):
    """Complex Fourier coefficients of one GRF per seed.

    Parameters
    ----------
    seeds : sequence of int
        One seed per sample (see :func:`sample_seed`).
    n_modes : int
        Largest wavenumber per dimension; the box holds ``(2 n_modes + 1)^dim`` modes.
    dim : int
        Spatial dimension (1 or 2).
    alpha, tau, sigma : float
        Covariance ``sigma^2 (-Laplacian + tau^2)^(-alpha)``.
    period : float
        Side of the periodic box the series lives on.

    Returns
    -------
    torch.Tensor
        complex128, shape ``(len(seeds),) + (2 n_modes + 1,) * dim``.
    """
    std = grf_spectrum(n_modes, dim, alpha, tau, sigma, period)
    shape = (2,) + tuple(std.shape)
    noise = np.stack([np.random.default_rng(s).standard_normal(shape) for s in seeds])
    noise = torch.from_numpy(noise)
    return torch.complex(noise[:, 0], noise[:, 1]) * std


def fourier_matrix(points, n_modes, period=1.0):
    """``exp(2 pi i k x / period)`` for every point ``x`` (rows) and wavenumber ``k`` (columns)."""
    points = torch.as_tensor(points, dtype=torch.float64)
    phase = 2 * math.pi / period * points[:, None] * wavenumbers(n_modes)[None, :]
    return torch.polar(torch.ones_like(phase), phase)


def evaluate_series(coefficients, points, period=1.0):
    """Real part of the Fourier series at the tensor-product grid ``points`` (same points per axis).

    Parameters
    ----------
    coefficients : torch.Tensor
        complex, shape ``(batch,) + (2 n_modes + 1,) * dim`` with ``dim`` in (1, 2).
    points : array-like
        1-D coordinates used along every axis.

    Returns
    -------
    torch.Tensor
        float64, shape ``(batch,) + (len(points),) * dim``.
    """
    dim = coefficients.ndim - 1
    n_modes = (coefficients.shape[-1] - 1) // 2
    basis = fourier_matrix(points, n_modes, period)
    if dim == 1:
        values = coefficients @ basis.T
    elif dim == 2:
        values = basis @ coefficients @ basis.T
    else:
        raise ValueError(f"Invalid dim={dim}; allowed values: 1, 2.")
    return values.real


def sample_grf(seeds, points, *, n_modes, dim, alpha, tau, sigma, period=1.0):
    """Draw one field per seed and evaluate it on the grid ``points`` (float64)."""
    coefficients = grf_coefficients(seeds, n_modes, dim, alpha, tau, sigma, period)
    return evaluate_series(coefficients, points, period)
