"""Fourier mode bands: split the error of a field into bands of frequencies.

A band is a range of the largest absolute integer frequency over the spatial axes
(``|k|_inf``), so band 0 holds the lowest modes. The error of a band is the norm of
the difference restricted to that band divided by the norm of the *whole*
reference, so the band errors of one comparison add up in squares to its total
relative error, and a band without energy in the reference (beyond the kept modes
of a spectral layer) is simply small instead of undefined.

A reference that is exactly zero (a spectral layer whose weights and bias are zero) has
no scale: an error of it is 0 where the other field is exactly zero too (nothing was
rounded) and infinite where it is not (:func:`norm_ratio`), never 0/0.
"""
import math

import torch

from ..vocabulary import check_int_at_least


# bands of a diagnosis unless asked for another number; fewer on a grid that holds fewer
DEFAULT_N_BANDS = 4


def band_count(spatial, n_bands=None, key="n_bands"):
    """The number of bands to split a grid of size ``spatial`` into: ``n_bands``, checked, or for
    None :data:`DEFAULT_N_BANDS` capped at what the grid holds (small grids keep working with the
    default). A band holds one frequency at least, so a grid has ``max(spatial) // 2 + 1``: a
    larger ``n_bands`` is a ValueError naming ``key``, the cap and the grid (it was capped
    without a word, and the bands reported were fewer than asked for)."""
    cap = max(int(s) // 2 for s in spatial) + 1
    if n_bands is None:
        return min(DEFAULT_N_BANDS, cap)
    n_bands = check_int_at_least(key, n_bands)
    if n_bands > cap:
        raise ValueError(f"Invalid {key}={n_bands}; allowed values: integers in [1, {cap}] (the "
                         f"{'x'.join(str(int(s)) for s in spatial)} grid has frequencies |k| 0 to {cap - 1}, "
                         "one band each at most).")
    return n_bands


def band_edges(spatial, n_bands):
    """``n_bands`` contiguous ``[low, high)`` ranges of ``|k|_inf`` covering every mode of a
    grid of size ``spatial`` (frequencies ``0`` to ``max(spatial) // 2``); ``n_bands`` as
    :func:`band_count` reads it (None: the default; more than the grid holds: a ValueError)."""
    n_bands = band_count(spatial, n_bands)
    k_max = max(int(s) // 2 for s in spatial) + 1
    cuts = [round(i * k_max / n_bands) for i in range(n_bands + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(n_bands)]


def _max_frequency(spatial):
    """``|k|_inf`` of every entry of the real FFT (``rfftn``) of a grid of size ``spatial``."""
    axes = []
    for i, n in enumerate(spatial):
        freq = torch.fft.rfftfreq(n, d=1.0 / n) if i == len(spatial) - 1 else torch.fft.fftfreq(n, d=1.0 / n)
        axes.append(freq.abs().round().long())
    grids = torch.meshgrid(*axes, indexing="ij")
    k = grids[0]
    for g in grids[1:]:
        k = torch.maximum(k, g)
    return k


def _spectral_energy(field, spatial):
    """Energy of each real-FFT entry summed over batch and channels, counting the
    conjugate half of the spectrum twice (Parseval for ``rfftn``)."""
    dims = tuple(range(-len(spatial), 0))
    spectrum = torch.fft.rfftn(field.to(torch.float64), dim=dims, norm="forward")
    energy = spectrum.abs().square().sum(dim=tuple(range(spectrum.ndim - len(spatial))))
    weight = torch.full((spatial[-1] // 2 + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if spatial[-1] % 2 == 0:
        weight[-1] = 1.0
    return energy * weight


def band_errors(difference, reference, edges):
    """Per band: ``||difference restricted to the band|| / ||reference||``.

    Parameters
    ----------
    difference, reference : torch.Tensor
        Real fields of the same shape ``(..., *spatial)``; the last ``len(spatial)``
        axes are spatial, where ``spatial`` is inferred from ``edges``' grid.
    edges : list of (int, int)
        From :func:`band_edges`.

    Returns
    -------
    list of float
    """
    spatial = list(difference.shape[2:])
    k = _max_frequency(spatial)
    diff_energy = _spectral_energy(difference, spatial)
    scale = math.sqrt(float(reference.to(torch.float64).square().sum()))
    out = []
    for low, high in edges:
        mask = (k >= low) & (k < high)
        # rfftn with norm="forward" is the mean: Parseval gives sum |x|^2 = N * sum |X|^2
        energy = float(diff_energy[mask].sum()) * math.prod(spatial)
        out.append(norm_ratio(math.sqrt(max(energy, 0.0)), scale))
    return out


def norm_ratio(difference_norm, reference_norm):
    """``difference_norm / reference_norm``, defined where the reference is exactly zero too: 0.0
    where the difference is exactly zero as well (two zero fields agree exactly: no rounding error
    to bound), ``inf`` where it is not (any error is infinitely many times a zero reference); NaN
    stays NaN (a non-finite field)."""
    if reference_norm > 0 or reference_norm != reference_norm:  # a NaN reference: NaN, as divided
        return difference_norm / reference_norm
    if difference_norm == 0:
        return 0.0
    return math.inf if difference_norm > 0 else difference_norm


def relative_error(value, reference):
    """``||value - reference|| / ||reference||`` computed in float64 (:func:`norm_ratio`: 0 where
    both are exactly zero, ``inf`` where only the reference is)."""
    value, reference = value.to(torch.float64), reference.to(torch.float64)
    return norm_ratio(float((value - reference).norm()), float(reference.norm()))
