"""The compressed (TensorGRaD) step's gradient handling: ``step(grad_scale=s)`` on gradients
scaled by ``s`` is the unscaled step, and ``scale_by_mask_ratio`` weights the sparse update by
``sqrt(numel / k)``."""
import math

import pytest
import torch

from neuralop_mp.optim import TensorGRaD, gradient_chunks
from neuralop_mp.optim.tests.helpers import random_tensor
from neuralop_mp.tests.exact import equal_exactly

SHAPE = (8, 8, 6, 6)


def _step(start, grad, steps, grad_scale=None, **hyper):
    """``steps`` steps of a fresh TensorGRaD from ``start``, each with ``grad``; the weight,
    the state and whether ``p.grad`` came back untouched."""
    weight = torch.nn.Parameter(start.clone())
    opt = TensorGRaD([weight], **hyper)
    untouched = True
    for _ in range(steps):
        weight.grad = grad.clone()
        opt.step(grad_scale=grad_scale)
        untouched &= equal_exactly(weight.grad, grad)
    assert bool(opt.state[weight]["compressed"])  # the compressed path, not plain AdamW
    return weight.detach(), opt.state[weight], untouched


@pytest.mark.parametrize("budget", [None, 4096])  # one chunk; chunks of a few rows
@pytest.mark.parametrize("hyper", [
    {},  # the default: Tucker rank 0.25 and random-k 5 %
    {"rank": None, "sparse_ratio": 0.1, "sparse_type": "topk"},
    {"order": "lowrank_first", "sparse_type": "topk", "update_proj_gap": 1},  # a refresh every step
])
def test_compressed_step_with_grad_scale_is_the_unscaled_step_bitwise(monkeypatch, budget, hyper):
    if budget is not None:
        monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    scale = 2.0**16
    start = random_tensor(SHAPE, True, 31, torch.float32).to(torch.complex64)
    # gradients of the order of eps: a step that left them scaled would move differently
    true = (1e-6 * random_tensor(SHAPE, True, 32, torch.float32)).to(torch.complex64)
    hyper = dict(lr=1e-2, compress=True, **hyper)
    reference, ref_state, _ = _step(start, true, 2, **hyper)
    scaled, state, untouched = _step(start, true * scale, 2, grad_scale=scale, **hyper)
    assert untouched  # the stored (scaled) gradient is read, never divided in place
    # complex64 divided by a power of two is exact: the same numbers reach the math
    assert equal_exactly(scaled, reference), f"max |difference| {(scaled - reference).abs().max():.3g}"
    assert state.keys() == ref_state.keys()
    for key, value in ref_state.items():
        if torch.is_tensor(value):
            assert equal_exactly(state[key], value), key
    assert not equal_exactly(reference, start)  # it moved


@pytest.mark.parametrize("sparse_ratio, seed", [(0.1, 41), (0.05, 42)])
@pytest.mark.parametrize("scale_by_mask_ratio", [False, True])
def test_sparse_update_is_weighted_by_root_of_the_mask_ratio(sparse_ratio, seed, scale_by_mask_ratio):
    """One step of a sparse-only TensorGRaD (top-k, torch convention) against a float64 hand
    computation: on the k entries of largest |g|, -lr * w * g / (|g| + eps) per real number
    (the first bias-corrected Adam step), w = sparse_scale * lambda_sparse * sqrt(numel / k)
    with scale_by_mask_ratio; elsewhere no change."""
    lr, eps, sparse_scale, lambda_sparse = 1e-2, 1e-6, 1.5, 0.5
    start = random_tensor(SHAPE, True, seed, torch.float32).to(torch.complex64)
    grad = random_tensor(SHAPE, True, seed + 100, torch.float32).to(torch.complex64)
    moved, _, _ = _step(start, grad, 1, lr=lr, eps=eps, rank=None, sparse_ratio=sparse_ratio, sparse_type="topk",
                        adam_convention="torch", sparse_scale=sparse_scale, lambda_sparse=lambda_sparse,
                        scale_by_mask_ratio=scale_by_mask_ratio)

    numel = grad.numel()
    k = math.ceil(sparse_ratio * numel)
    kept = torch.zeros(numel, dtype=torch.bool)
    kept[grad.abs().flatten().topk(k).indices] = True
    kept = kept.reshape(SHAPE)
    weight = sparse_scale * lambda_sparse * (math.sqrt(numel / k) if scale_by_mask_ratio else 1.0)
    g = torch.view_as_real(grad.to(torch.complex128))
    want = torch.view_as_complex(-lr * weight * g / (g.abs() + eps)) * kept
    got = moved.to(torch.complex128) - start.to(torch.complex128)
    # the new weights are complex64 of order 1: rounding adds up to ~1e-7 per entry
    assert (got - want).abs().max() <= 1e-6
    assert torch.equal(got != 0, kept)
