"""A state dict in the layout of upstream neuraloperator's TensorGRaD (main branch)
loads into ours and steps as upstream's update defines it.

Upstream's layout, per parameter: ``step`` (int); ``exp_avg`` / ``exp_avg_sq`` for
plain groups; ``low_rank_projector`` (an object whose ``proj_tensor`` lists one
factor per mode), ``low_rank_exp_avg`` / ``low_rank_exp_avg_sq``, and with a sparse
part ``sparse_projector`` (``indices`` into the flattened tensor, int64, sorted),
``sparse_exp_avg`` / ``sparse_exp_avg_sq``; moments of complex tensors are complex
and the second moment holds ``|g|^2``. Groups carry ``tensorgrad`` and the keys
``rank``, ``sparse_ratio``, ``update_proj_gap``, ``scale``, ``sparse_scale``,
``lambda_sparse``. The state below is built by hand in that layout.
"""
import math
from types import SimpleNamespace

import torch
from tensorly.tucker_tensor import validate_tucker_rank

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import random_tensor

SHAPE = (6, 5, 4, 3)
RANK, RATIO, STEP = 0.5, 0.1, 3
LR, BETAS, EPS, WD, SCALE, LAMBDA = 1e-2, (0.9, 0.999), 1e-6, 0.05, 2.0, 0.5


def _orthonormal(d, r, seed):
    q, _ = torch.linalg.qr(random_tensor((d, r), True, seed))
    return q


def _upstream_state(ratio=RATIO):
    """Parameters and an upstream-layout state dict (float64 / complex128), with a sparse
    part of upstream's ``int(ratio * numel)`` entries."""
    regular = torch.nn.Parameter(random_tensor((7,), False, 1))
    spectral = torch.nn.Parameter(random_tensor(SHAPE, True, 2))
    ranks = validate_tucker_rank(SHAPE, rank=RANK)  # upstream's reading of a float rank
    factors = [_orthonormal(d, r, 10 + k) for k, (d, r) in enumerate(zip(SHAPE, ranks))]
    k = max(1, int(ratio * spectral.numel()))
    indices = torch.randperm(spectral.numel(), generator=torch.Generator().manual_seed(3))[:k].sort().values
    core_m = 0.1 * random_tensor(tuple(ranks), True, 4)
    core_v = 0.01 * random_tensor(tuple(ranks), False, 5).abs() + 1e-4
    sparse_m, sparse_v = 0.1 * random_tensor((k,), True, 6), 0.01 * random_tensor((k,), False, 7).abs() + 1e-4
    state = {
        0: {"step": STEP, "exp_avg": 0.1 * random_tensor((7,), False, 8),
            "exp_avg_sq": 0.01 * random_tensor((7,), False, 9).abs() + 1e-4},
        1: {"step": STEP,
            "low_rank_projector": SimpleNamespace(proj_tensor=factors, rank=ranks, update_proj_gap=50),
            "low_rank_exp_avg": core_m, "low_rank_exp_avg_sq": core_v.to(torch.complex128),
            "sparse_projector": SimpleNamespace(indices=indices, orig_shape=SHAPE, sparse_ratio=ratio),
            "sparse_exp_avg": sparse_m, "sparse_exp_avg_sq": sparse_v.to(torch.complex128)},
    }
    common = dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, correct_bias=True)
    groups = [dict(common, params=[0]),
              dict(common, params=[1], tensorgrad=True, rank=RANK, sparse_ratio=ratio, update_proj_gap=50,
                   scale=SCALE, sparse_scale=1.0, lambda_sparse=LAMBDA, sparse_type="randk", warm_restart=True)]
    return (regular, spectral), {"state": state, "param_groups": groups}


def _mode_dot(x, u, mode, adjoint):
    u = u.conj().T if adjoint else u
    return torch.tensordot(x, u, dims=([mode], [1])).movedim(-1, mode)


def _expected_step(param, grad, saved):
    """Upstream's update written out in float64: low-rank first, sparse on the residual,
    |g|^2 moments, eps before bias correction, weight decay after the update."""
    step = saved["step"] + 1
    step_size = LR * math.sqrt(1 - BETAS[1] ** step) / (1 - BETAS[0] ** step)

    def adam(g, m, v):
        m = BETAS[0] * m + (1 - BETAS[0]) * g
        v = BETAS[1] * v.real + (1 - BETAS[1]) * g.abs() ** 2
        return m / (v.sqrt() + EPS)

    if "low_rank_projector" not in saved:
        update = adam(grad, saved["exp_avg"], saved["exp_avg_sq"])
    else:
        factors = saved["low_rank_projector"].proj_tensor
        core = grad
        for k, u in enumerate(factors):
            core = _mode_dot(core, u, k, adjoint=True)
        low = adam(core, saved["low_rank_exp_avg"], saved["low_rank_exp_avg_sq"])
        recon, back = core, low
        for k, u in enumerate(factors):
            recon, back = _mode_dot(recon, u, k, adjoint=False), _mode_dot(back, u, k, adjoint=False)
        indices = saved["sparse_projector"].indices
        sparse = adam((grad - recon).reshape(-1)[indices], saved["sparse_exp_avg"], saved["sparse_exp_avg_sq"])
        scattered = torch.zeros(grad.numel(), dtype=grad.dtype)
        scattered[indices] = sparse
        update = SCALE * back + LAMBDA * scattered.reshape(grad.shape)
    return (param - step_size * update) * (1 - LR * WD)


def test_upstream_layout_state_loads_and_steps_as_upstream():
    (regular, spectral), state_dict = _upstream_state()
    opt = TensorGRaD([{"params": [regular]}, {"params": [spectral], "tensorgrad": True, "rank": RANK,
                                              "sparse_ratio": RATIO, "scale": SCALE, "lambda_sparse": LAMBDA}])
    opt.load_state_dict(state_dict)
    loaded = opt.state[spectral]
    assert int(loaded["step"]) == STEP and bool(loaded["compressed"])
    assert loaded["sparse_basis_indices"].dtype == torch.int32
    assert [g["adam_convention"] for g in opt.param_groups] == ["neuralop", "neuralop"]
    grads = [random_tensor((7,), False, 20), random_tensor(SHAPE, True, 21)]
    expected = [_expected_step(p.detach(), g, state_dict["state"][i])
                for i, (p, g) in enumerate(zip((regular, spectral), grads))]
    for p, g in zip((regular, spectral), grads):
        p.grad = g.clone()
    opt.step()
    for p, e in zip((regular, spectral), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-12)
    assert int(opt.state[spectral]["step"]) == STEP + 1


def test_upstream_layout_state_keeps_training_across_a_refresh():
    (regular, spectral), state_dict = _upstream_state()
    for group in state_dict["param_groups"]:
        group["update_proj_gap"] = 5  # the next refresh at step 5
    opt = TensorGRaD([{"params": [regular]}, {"params": [spectral], "tensorgrad": True}])
    opt.load_state_dict(state_dict)
    target = random_tensor(SHAPE, True, 30)
    start = (spectral.detach() - target).norm()
    for _ in range(6):
        opt.zero_grad()
        (spectral - target).abs().square().sum().backward()
        regular.grad = torch.zeros_like(regular)
        opt.step()
    assert torch.isfinite(spectral).all() and (spectral.detach() - target).norm() < start
    assert int(opt.state[spectral]["step"]) == STEP + 6


def test_upstream_sparse_count_loads_and_becomes_ours_at_the_refresh():
    # upstream keeps int(0.07 * 360) = 25 entries; this class ceil(25.2) = 26
    (regular, spectral), state_dict = _upstream_state(ratio=0.07)
    for group in state_dict["param_groups"]:
        group["update_proj_gap"] = 5  # the next refresh at step 5
    opt = TensorGRaD([{"params": [regular]}, {"params": [spectral], "tensorgrad": True, "sparse_ratio": 0.07}])
    opt.load_state_dict(state_dict)
    state = opt.state[spectral]
    assert state["sparse_basis_indices"].shape == (25,) and state["sparse_exp_avg"].shape == (25, 2)
    for step in range(STEP, 6):
        regular.grad, spectral.grad = random_tensor((7,), False, step), random_tensor(SHAPE, True, 40 + step)
        opt.step()
        count = 25 if step < 5 else 26  # the refresh at step 5 draws a set of this class's count
        assert state["sparse_basis_indices"].shape == (count,) and state["sparse_exp_avg"].shape == (count, 2)
    assert torch.isfinite(spectral).all() and int(state["step"]) == 6


def test_converted_full_rank_mode_factor_resets_the_low_rank_moments_at_the_refresh():
    # upstream keeps a square factor for a mode at full rank; this class leaves such a mode
    # unrotated, so after the refresh the carried moments would be read in another basis
    shape = (20, 20, 8, 2)  # ranks (16, 16, 6, 2)
    ranks = validate_tucker_rank(shape, rank=RANK)
    assert ranks[3] == shape[3]
    factors = [_orthonormal(d, r, 10 + k) for k, (d, r) in enumerate(zip(shape, ranks))]
    factors[3] = torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128)  # a permutation
    spectral = torch.nn.Parameter(random_tensor(shape, True, 2))
    state_dict = {
        "state": {0: {"step": 4, "low_rank_projector": SimpleNamespace(proj_tensor=factors),
                      "low_rank_exp_avg": 0.1 * random_tensor(tuple(ranks), True, 4),
                      "low_rank_exp_avg_sq": (0.01 * random_tensor(tuple(ranks), False, 5).abs()).to(torch.complex128)}},
        "param_groups": [dict(params=[0], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, correct_bias=True,
                              tensorgrad=True, rank=RANK, update_proj_gap=5)]}
    opt = TensorGRaD([{"params": [spectral], "tensorgrad": True, "rank": RANK}])
    opt.load_state_dict(state_dict)
    state = opt.state[spectral]
    assert "low_rank_basis_factor_3" in state
    for step in (4, 5):  # the second step refreshes
        spectral.grad = random_tensor(shape, True, 50 + step)
        opt.step()
    assert "low_rank_basis_factor_3" not in state
    assert int(state["low_rank_step"]) == 1  # the moments started again at the refresh
    assert torch.isfinite(spectral).all()
