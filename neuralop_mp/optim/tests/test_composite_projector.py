import pytest
import torch

from neuralop_mp.optim import CompositeProjector, SparseProjector, TuckerProjector
from neuralop_mp.optim.tests.helpers import low_rank_tensor


def _low_rank_plus_outliers(seed=0):
    """An exactly low-rank complex tensor plus a few large entries (float64)."""
    low, _ = low_rank_tensor((10, 8, 6, 4), (2, 2, 2, 2), complex_=True, seed=seed)
    g = torch.Generator().manual_seed(seed)
    outliers = torch.zeros(low.numel(), dtype=low.dtype)
    where = torch.randperm(low.numel(), generator=g)[:20]
    outliers[where] = (20 * low.abs().max()).to(low.dtype)
    return low + outliers.reshape(low.shape)


def _relative_error(approx, exact):
    return ((approx.to(exact.dtype) - exact).norm() / exact.norm()).item()


def test_default_is_sparse_randk_5_percent_then_tucker_quarter():
    composite = CompositeProjector()
    sparse, lowrank = composite.projectors
    assert isinstance(sparse, SparseProjector) and (sparse.sparse_ratio, sparse.sparse_type) == (0.05, "randk")
    assert isinstance(lowrank, TuckerProjector) and (lowrank.rank, lowrank.rank_convention) == (0.25, "core")
    assert composite.names == ["sparse", "low_rank"]
    # second=None is the other kind's default (the docstring said a single projector), none when told
    after_tucker = CompositeProjector(TuckerProjector(0.25))
    assert after_tucker.names == ["low_rank", "sparse"] and after_tucker.projectors[1].sparse_type == "randk"
    assert CompositeProjector(TuckerProjector(0.25), None, default_second=False).names == ["low_rank"]


def _error(composite, grad, exact):
    return _relative_error(composite.reconstruct(grad, composite.compute_bases(grad)), exact)


def test_sparse_plus_low_rank_beats_either_part_and_sparse_first_wins():
    exact = _low_rank_plus_outliers()
    grad = exact.to(torch.complex64)
    sparse = SparseProjector(20 / exact.numel(), "topk")
    lowrank = TuckerProjector((2, 2, 2, 2), n_iter=2)
    sparse_first = _error(CompositeProjector(sparse, lowrank), grad, exact)
    lowrank_first = _error(CompositeProjector(lowrank, sparse), grad, exact)
    sparse_alone = _error(CompositeProjector(sparse, None, default_second=False), grad, exact)
    lowrank_alone = _error(CompositeProjector(lowrank, None, default_second=False), grad, exact)
    # top-k takes the outliers; the residual is low-rank except at those 20 entries
    assert sparse_first < 0.02
    assert sparse_first < 0.5 * min(sparse_alone, lowrank_alone)
    assert lowrank_first < lowrank_alone
    # outliers spoil a low-rank fit taken first: the paper's reason to take the sparse part first
    assert sparse_first < lowrank_first


def test_second_part_is_fitted_to_the_residual():
    grad = _low_rank_plus_outliers(seed=1).to(torch.complex64)
    composite = CompositeProjector(SparseProjector(0.05, "topk"), TuckerProjector(0.5, rank_convention="mode", n_iter=0))
    bases = composite.compute_bases(grad)
    sparse, lowrank = composite.projectors
    residual = grad - sparse.project_back(sparse.project(grad, bases["sparse"]), bases["sparse"], grad.shape)
    direct = lowrank.compute_basis(residual)
    for key, u in bases["low_rank"].items():
        torch.testing.assert_close(u, direct[key])
    # and the gradient passed in is left untouched
    assert torch.equal(grad, _low_rank_plus_outliers(seed=1).to(torch.complex64))


def test_from_settings_builds_single_branches_and_validates():
    assert CompositeProjector.from_settings(0.25, None).names == ["low_rank"]
    assert CompositeProjector.from_settings(None, 0.1).names == ["sparse"]
    assert CompositeProjector.from_settings(0.25, 0.1, order="lowrank_first").names == ["low_rank", "sparse"]
    with pytest.raises(ValueError, match="rank=None with sparse_ratio=None"):
        CompositeProjector.from_settings(None, None)
    with pytest.raises(ValueError, match=r"order='sparse'.*'sparse_first', 'lowrank_first'"):
        CompositeProjector.from_settings(0.25, 0.1, order="sparse")
