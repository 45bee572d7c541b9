import math

import pytest
import torch

from neuralop_mp.optim import TuckerProjector
from neuralop_mp.optim.tests.helpers import low_rank_tensor, random_tensor

# FNO spectral weight shapes: (in, out, modes...) for 1D, 2D and 3D problems
FNO_SHAPES = [(8, 6, 10), (8, 6, 6, 4), (6, 5, 4, 4, 3)]


def _relative_error(approx, exact):
    return ((approx - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize(
    "rank, convention, expected",
    [
        (0.25, "mode", (8, 8, 4, 2)),  # ceil(0.25 * d)
        (1.0, "mode", (32, 32, 16, 5)),
        (0.25, "core", (23, 23, 11, 4)),  # round(0.25 ** (1/4) * d): core ~25% of the entries
        (3, "mode", (3, 3, 3, 3)),
        ((4, 5, 6, 7), "mode", (4, 5, 6, 5)),  # clipped to the mode size
    ],
)
def test_mode_ranks_conventions(rank, convention, expected):
    assert TuckerProjector(rank, rank_convention=convention).mode_ranks((32, 32, 16, 5)) == expected


def test_params_convention_is_tensorlys():
    from tensorly.tucker_tensor import validate_tucker_rank

    shape = (32, 32, 8, 5)
    ranks = TuckerProjector(0.25, rank_convention="params").mode_ranks(shape)
    assert ranks == tuple(validate_tucker_rank(shape, rank=0.25))
    core_and_factors = math.prod(ranks) + sum(r * d for r, d in zip(ranks, shape))
    assert core_and_factors <= 0.3 * math.prod(shape)


@pytest.mark.parametrize("bad", [0.0, 1.5, -2, 0, (3, 0), "half", True])
def test_bad_rank_is_named(bad):
    with pytest.raises((ValueError, TypeError), match="rank"):
        TuckerProjector(bad)


@pytest.mark.parametrize("shape", [
    (128, 128, 64, 33),  # an FNO_Large2d-like spectral weight
    (128, 96, 12, 7),
    (6, 5, 4, 4, 3),
])
def test_default_convention_core_keeps_about_the_fraction_of_entries(shape):
    ranks = TuckerProjector(0.25).mode_ranks(shape)
    assert ranks == TuckerProjector(0.25).unclipped_ranks(shape)  # no mode is clipped
    assert abs(math.prod(ranks) / math.prod(shape) - 0.25) < 0.03, ranks


@pytest.mark.parametrize("rank, shape, unclipped, expected", [
    # a matrix: (32, 16) would give the core 16 rows that are always zero
    (0.25, (64, 32), (32, 16), (16, 16)),
    (0.25, (128, 256, 1), (64, 128, 1), (64, 64, 1)),  # a channel MLP's Conv1d kernel
    (0.25, (1, 64, 1, 48), (1, 32, 1, 24), (1, 24, 1, 24)),
    (0.25, (64, 629), (32, 314), (32, 32)),  # a CP factor
    (0.25, (64, 2, 2), (40, 1, 1), (40, 1, 1)),  # three long modes: not clipped (test below)
    ((40, 16), (64, 32), (40, 16), (16, 16)),
    ((64, 16), (64, 32), (64, 16), (64, 16)),  # a full mode stays full: no factor
    (1.0, (64, 2, 2), (64, 2, 2), (64, 2, 2)),  # rank 1.0 stays AdamW
    (0.25, (32, 32, 16, 5), (23, 23, 11, 4), (23, 23, 11, 4)),  # spectral weights: unchanged
])
def test_compressed_mode_ranks_are_clipped_to_the_product_of_the_others(rank, shape, unclipped, expected):
    projector = TuckerProjector(rank)
    assert projector.unclipped_ranks(shape) == unclipped
    assert projector.mode_ranks(shape) == expected
    assert TuckerProjector(rank, clip_ranks=False).mode_ranks(shape) == unclipped


@pytest.mark.parametrize("n_iter", [0, 1])
def test_a_matrix_core_has_no_always_zero_rows(n_iter):
    grad = random_tensor((64, 32), False, 7)
    projector = TuckerProjector(0.25, n_iter=n_iter)
    basis = projector.compute_basis(grad)
    assert [tuple(basis[f"factor_{k}"].shape) for k in (0, 1)] == [(64, 16), (32, 16)]
    core = projector.project(grad, basis)
    assert core.shape == (16, 16) and core.norm(dim=1).min() > 1e-3 * core.norm()
    # the same capture as the wider factor of the old ranks: its extra columns held nothing
    wide = TuckerProjector(0.25, n_iter=n_iter, clip_ranks=False)
    old = wide.compute_basis(grad)
    assert torch.allclose(projector.project_back(core, basis), wide.project_back(wide.project(grad, old), old),
                          atol=1e-10)


@pytest.mark.parametrize("shape", [(64, 2, 2), (48, 6, 3)])
def test_a_tensor_of_three_long_modes_keeps_its_ranks_and_what_they_capture(shape):
    """Clipped as a matrix is, (64, 2, 2) at rank 0.25 got (1, 1, 1): with the higher-order SVD
    (n_iter=0) its projection kept less of the gradient than with (40, 1, 1) (0.41 against 0.54
    of this one's norm)."""
    grad = random_tensor(shape, False, 11).double()
    projector = TuckerProjector(0.25, n_iter=0)
    assert projector.mode_ranks(shape) == projector.unclipped_ranks(shape)
    basis = projector.compute_basis(grad)
    kept = projector.project_back(projector.project(grad, basis), basis).norm() / grad.norm()
    wide = TuckerProjector(0.25, n_iter=0, clip_ranks=False)
    old = wide.compute_basis(grad)
    assert torch.isclose(kept, wide.project_back(wide.project(grad, old), old).norm() / grad.norm())
    if shape == (64, 2, 2):  # clipped to the other modes' ranks, as a matrix is: (1, 1, 1) keeps less
        narrow = TuckerProjector((1, 1, 1), n_iter=0)
        fit = narrow.compute_basis(grad)
        assert narrow.project_back(narrow.project(grad, fit), fit).norm() / grad.norm() < 0.9 * kept


def test_bad_convention_lists_allowed():
    with pytest.raises(ValueError, match=r"rank_convention='tensorly'.*'core', 'mode', 'params'"):
        TuckerProjector(0.5, rank_convention="tensorly")


def test_per_mode_ranks_need_one_per_mode():
    with pytest.raises(ValueError, match="one rank per mode"):
        TuckerProjector((2, 2)).mode_ranks((4, 4, 4))


@pytest.mark.parametrize("complex_", [True, False])
def test_reconstruction_error_falls_as_rank_grows(complex_):
    # a tensor with a decaying multilinear spectrum, not exactly low-rank
    grad = sum(
        (0.5**r) * low_rank_tensor((12, 10, 8), (r + 1, r + 1, r + 1), complex_, seed=r)[0] for r in range(8)
    ).to(torch.complex64 if complex_ else torch.float32)
    errors = []
    for rank in (0.1, 0.25, 0.5, 0.75, 1.0):
        proj = TuckerProjector(rank, rank_convention="mode", n_iter=0)
        basis = proj.compute_basis(grad)
        errors.append(_relative_error(proj.project_back(proj.project(grad, basis), basis), grad))
    assert all(a >= b - 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 0.05 and errors[-1] < 1e-6, errors


@pytest.mark.parametrize("shape", FNO_SHAPES)
def test_complex_projection_matches_float64_reference(shape):
    proj = TuckerProjector(0.5, rank_convention="mode")
    ranks = proj.mode_ranks(shape)
    exact, _ = low_rank_tensor(shape, ranks, complex_=True, seed=3)
    grad = exact.to(torch.complex64)
    basis = proj.compute_basis(grad)
    core = proj.project(grad, basis)
    # an exactly rank-(d/2) tensor is recovered by its projection (needs conjugate transposes)
    assert _relative_error(proj.project_back(core, basis).to(torch.complex128), exact) < 1e-5
    # the core equals G x_k U_k^H computed in float64
    ref = exact
    for k in range(len(shape)):
        u = basis[f"factor_{k}"].to(torch.complex128)
        ref = torch.tensordot(ref, u.conj(), dims=([k], [0])).movedim(-1, k)
    assert core.shape == ranks
    assert _relative_error(core.to(torch.complex128), ref) < 1e-5
    # factors are orthonormal in the complex sense
    for u in basis.values():
        eye = torch.eye(u.shape[1], dtype=u.dtype)
        torch.testing.assert_close(u.conj().T @ u, eye, atol=1e-5, rtol=0)


def test_projection_is_orthogonal_for_generic_complex_gradient():
    grad = random_tensor((9, 7, 6), seed=4).to(torch.complex64)
    proj = TuckerProjector(0.5, rank_convention="mode")
    basis = proj.compute_basis(grad)
    approx = proj.project_back(proj.project(grad, basis), basis)
    residual = grad - approx
    # <G - PG, PG> = 0 and projecting twice changes nothing
    assert abs(torch.vdot(residual.flatten(), approx.flatten())) < 1e-4 * grad.norm() ** 2
    again = proj.project_back(proj.project(approx, basis), basis)
    assert _relative_error(again, approx) < 1e-5


def test_full_rank_modes_are_not_rotated():
    proj = TuckerProjector((4, 3, 2))
    grad = random_tensor((4, 6, 5), seed=5).to(torch.complex64)
    basis = proj.compute_basis(grad)
    assert sorted(basis) == ["factor_1", "factor_2"]
    assert proj.project(grad, basis).shape == (4, 3, 2)


def test_warm_start_recovers_subspace_and_aligns_to_previous():
    exact, factors = low_rank_tensor((10, 8, 6), (3, 3, 2), complex_=True, seed=6)
    grad = exact.to(torch.complex64)
    proj = TuckerProjector((3, 3, 2), n_iter=1, warm_start=True)
    first = proj.compute_basis(grad)
    # a perturbed gradient: the warm-started refresh stays aligned with the old basis
    noisy = grad + 1e-3 * random_tensor(grad.shape, seed=7).to(torch.complex64)
    second = proj.compute_basis(noisy, previous=first)
    for key in first:
        overlap = second[key].conj().T @ first[key]
        torch.testing.assert_close(overlap, torch.eye(overlap.shape[0], dtype=overlap.dtype), atol=1e-2, rtol=0)
    # and it spans the true subspace
    for k, u_true in enumerate(factors):
        u = second[f"factor_{k}"].to(torch.complex128)
        assert torch.linalg.matrix_norm(u_true - u @ (u.conj().T @ u_true)) < 1e-2


def _graded_gradient(seed=0):
    """A complex64 gradient whose mode-0 singular values fall as 0.4^k (k < 16): its trailing
    directions are below sqrt(complex64's epsilon) of the largest."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(16, 16, dtype=torch.complex128, generator=gen))[0]
    mixing = torch.linalg.qr(torch.randn(16, 16 * 12, dtype=torch.complex128, generator=gen).T)[0].T
    unfolding = (q * 0.4 ** torch.arange(16.0)) @ mixing
    return unfolding.reshape(16, 16, 12).to(torch.complex64)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "whole"])
def test_mode_basis_is_that_of_the_float64_svd_of_the_same_numbers(chunked):
    """The Gram matrix is formed in double precision, not only summed there: formed in complex64 it
    squares the condition number and the directions below ~3e-4 of the largest singular value came
    out up to 20-40 degrees off. Reference: float64 SVD of the same complex64 numbers; tolerance 0.5
    degrees on the largest principal angle (a complex64 SVD itself is ~0.04 degrees off)."""
    from neuralop_mp.optim.gradient_chunks import GradientChunks

    grad = _graded_gradient()
    projector = TuckerProjector((12, 16, 12), n_iter=0)
    if chunked:
        basis = projector.compute_basis_chunks(GradientChunks(grad, torch.complex64))
    else:
        basis = projector.compute_basis(grad)
    u = basis["factor_0"].to(torch.complex128)
    reference = torch.linalg.svd(grad.to(torch.complex128).reshape(16, -1), full_matrices=False)[0][:, :12]
    cosines = torch.linalg.svdvals(u.conj().T @ reference)
    assert math.degrees(math.acos(min(1.0, cosines.min().item()))) < 0.5


def test_cold_start_basis_does_not_depend_on_the_phases_eigh_returns(monkeypatch):
    """An eigenvector's phase is arbitrary and eigh's choice may differ between devices: the
    basis fixes it (largest-magnitude entry real and positive), so eigh returning the same
    vectors times random phases gives the same basis."""
    from neuralop_mp.optim import tucker_chunks

    grad = random_tensor((8, 6, 5), True, seed=3).to(torch.complex64)
    projector = TuckerProjector((3, 3, 5))
    expected = projector.compute_basis(grad)
    eigh = torch.linalg.eigh
    gen = torch.Generator().manual_seed(0)

    def eigh_with_other_phases(matrix):
        values, vectors = eigh(matrix)
        phases = torch.exp(1j * 2 * math.pi * torch.rand(vectors.shape[1], generator=gen, dtype=torch.float64))
        return values, vectors * phases.to(vectors.dtype)

    monkeypatch.setattr(tucker_chunks.torch.linalg, "eigh", eigh_with_other_phases)
    got = projector.compute_basis(grad)
    for name, factor in expected.items():
        assert torch.allclose(got[name], factor, atol=1e-6), name
