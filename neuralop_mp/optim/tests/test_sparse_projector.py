import math

import pytest
import torch

from neuralop_mp.optim import SparseProjector
from neuralop_mp.optim.tests.helpers import random_tensor


@pytest.mark.parametrize("complex_", [True, False])
def test_topk_picks_the_largest_entries(complex_):
    grad = random_tensor((8, 6, 5), complex_, seed=1).to(torch.complex64 if complex_ else torch.float32)
    proj = SparseProjector(0.1, "topk")
    indices = proj.compute_basis(grad)["indices"]
    k = math.ceil(0.1 * grad.numel())
    assert indices.dtype == torch.int32 and indices.numel() == k
    magnitudes = grad.abs().flatten()
    threshold = magnitudes.sort(descending=True).values[k - 1]
    assert set(indices.tolist()) == set(torch.nonzero(magnitudes >= threshold).flatten().tolist())


def test_randk_is_reproducible_from_seed():
    grad = random_tensor((10, 10, 4), seed=2).to(torch.complex64)
    proj = SparseProjector(0.05, "randk")
    a = proj.compute_basis(grad, seed=11)["indices"]
    b = proj.compute_basis(grad * 3, seed=11)["indices"]  # does not depend on the values
    c = proj.compute_basis(grad, seed=12)["indices"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.int32 and a.numel() == 20 and a.unique().numel() == 20
    assert torch.equal(a, a.sort().values)
    # the global RNG is not consumed
    state = torch.random.get_rng_state()
    proj.compute_basis(grad, seed=13)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("sparse_type", ["randk", "topk", "structured", "structured_randk"])
def test_back_projection_keeps_selected_entries_and_zeros_the_rest(sparse_type):
    grad = random_tensor((6, 5, 4), seed=3).to(torch.complex64)
    proj = SparseProjector(0.34, sparse_type, mode=1)
    basis = proj.compute_basis(grad, seed=5)
    values = proj.project(grad, basis)
    assert tuple(values.shape) == proj.compressed_shape(grad.shape)
    back = proj.project_back(values, basis, grad.shape)
    kept = back != 0
    assert torch.equal(back[kept], grad[kept])
    assert kept.sum() == values.numel()


@pytest.mark.parametrize("sparse_type", ["randk", "topk", "structured"])
def test_residual_is_bitwise_the_gradient_minus_its_back_projection(sparse_type):
    """The shortcut (zero the selected entries) against the definition, on fresh random values."""
    grad = random_tensor((6, 5, 4), seed=11).to(torch.complex64)
    proj = SparseProjector(0.34, sparse_type, mode=1)
    basis = proj.compute_basis(grad, seed=2)
    expected = grad - proj.project_back(proj.project(grad, basis), basis, grad.shape)
    copy = grad.clone()
    assert torch.equal(proj.residual(grad, basis), expected)
    assert torch.equal(grad, copy)  # not in place: the gradient is untouched
    assert proj.residual(copy, basis, in_place=True) is copy and torch.equal(copy, expected)


def test_structured_keeps_whole_slices_of_largest_norm():
    grad = random_tensor((4, 6, 3), seed=4).to(torch.complex64)
    grad[:, 2] *= 10
    grad[:, 4] *= 5
    proj = SparseProjector(2 / 6, "structured", mode=1)
    basis = proj.compute_basis(grad)
    assert basis["indices"].tolist() == [2, 4]
    back = proj.project_back(proj.project(grad, basis), basis, grad.shape)
    assert torch.equal(back[:, [2, 4]], grad[:, [2, 4]]) and not back[:, [0, 1, 3, 5]].any()


def test_ratio_one_selects_everything():
    grad = random_tensor((3, 4), False, seed=5).float()
    proj = SparseProjector(1.0, "randk")
    basis = proj.compute_basis(grad, seed=1)
    assert torch.equal(basis["indices"], torch.arange(12, dtype=torch.int32))


def test_transfer_moment_moves_kept_entries_and_zeros_new_ones():
    proj = SparseProjector(0.5)
    old = {"indices": torch.tensor([1, 4, 6, 9], dtype=torch.int32)}
    new = {"indices": torch.tensor([0, 4, 8, 9], dtype=torch.int32)}
    moment = torch.tensor([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0]])  # (k, 2): real view
    moved = proj.transfer_moment(moment, old, new)
    assert moved.tolist() == [[0.0, 0.0], [2.0, -2.0], [0.0, 0.0], [4.0, -4.0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sparse_ratio=0.0), r"sparse_ratio=0\.0"),
        (dict(sparse_ratio=1.5), r"sparse_ratio=1\.5"),
        (dict(sparse_type="random"), r"sparse_type='random'.*'randk'.*'topk'"),
        (dict(mode=-1), r"sparse_mode=-1"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseProjector(**kwargs)
