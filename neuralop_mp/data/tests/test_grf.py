"""Gaussian random fields: per-sample seeds, grid independence, zero mean."""
import numpy as np
import pytest
import torch

from neuralop_mp.data.grf import grf_coefficients, evaluate_series, sample_grf, sample_seed

GRF = dict(n_modes=8, dim=2, alpha=2.0, tau=3.0, sigma=1.0)


def test_sample_seed_depends_on_every_part_and_nothing_else():
    base = sample_seed(0, "train", 5)
    assert base == sample_seed(0, "train", 5)
    assert len({base, sample_seed(1, "train", 5), sample_seed(0, "test", 5), sample_seed(0, "train", 6)}) == 4


def test_sample_seed_rejects_unknown_split():
    with pytest.raises(ValueError, match=r"split='valid'.*'train', 'test'"):
        sample_seed(0, "valid", 0)


def test_same_seed_gives_the_same_field_on_any_grid():
    # Vertex grids of 16 and 31 points share every point of the coarse grid (j/15 = 2j/30).
    fine = sample_grf([3, 4], np.linspace(0, 1, 31), period=2.0, **GRF)
    coarse = sample_grf([3, 4], np.linspace(0, 1, 16), period=2.0, **GRF)
    torch.testing.assert_close(coarse, fine[:, ::2, ::2], rtol=0, atol=1e-12)
    assert not torch.allclose(fine[0], fine[1])


def test_periodic_field_has_zero_mean_and_matches_a_direct_sum():
    coefficients = grf_coefficients([11], **GRF)
    n = 20  # >= 2 n_modes + 1: the grid mean of every non-constant mode vanishes
    points = np.arange(n) / n
    field = evaluate_series(coefficients, points)
    assert abs(field.mean().item()) < 1e-12 * field.abs().max().item()
    # Reference: the series summed mode by mode at one point, in float64.
    k = np.arange(-8, 9)
    x, y = points[3], points[7]
    direct = sum(coefficients[0, i, j].item() * np.exp(2j * np.pi * (k[i] * x + k[j] * y))
                 for i in range(17) for j in range(17)).real
    assert field[0, 3, 7].item() == pytest.approx(direct, rel=1e-10, abs=1e-14)
