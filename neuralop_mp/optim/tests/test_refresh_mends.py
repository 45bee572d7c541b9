"""Mends of a compressed weight's refresh: structured sparse moments kept on a mode other
than 0 (stored contiguous, also when loaded), a full-rank Tucker part (no factor) on a zero
gradient or residual, and a sparse part whose refresh selects the same index set (no reset:
a sparse part covering every entry is AdamW). References are float64: torch's AdamW where
the compressed step is lossless, an independent per-part Adam otherwise."""
import io
import math

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import force_compression, random_tensor

SHAPE = (8, 6, 5, 4)


def _gradients(n, seed, shape=SHAPE):
    return [random_tensor(shape, True, seed + 101 * s) for s in range(n)]


# ---------------------------------------------- structured sparse moments on mode > 0
def _factors(state):
    prefix = "low_rank_basis_factor_"
    return {int(k[len(prefix):]): torch.view_as_complex(v.contiguous()) for k, v in state.items()
            if k.startswith(prefix)}


def _mode_product(x, matrix, k, adjoint):
    m = matrix.conj().T if adjoint else matrix
    return torch.tensordot(x, m, dims=([k], [1])).movedim(-1, k)


def _core(x, factors):
    for k in sorted(factors):
        x = _mode_product(x, factors[k], k, True)
    return x


def _expand(core, factors):
    for k in sorted(factors):
        core = _mode_product(core, factors[k], k, False)
    return core


class _Adam:
    """Per-real-number Adam ("torch" convention) of one part, each entry bias-corrected by
    its age (steps since its moments started); ``move`` re-indexes kept structured moments."""

    def __init__(self, beta1, beta2, eps):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = None

    def __call__(self, x):
        xr = torch.view_as_real(x)
        if self.m is None:
            self.m, self.v, self.t = torch.zeros_like(xr), torch.zeros_like(xr), 0
            self.birth = torch.zeros(x.shape, dtype=torch.float64)
        self.t += 1
        age = (self.t - self.birth).unsqueeze(-1)
        self.m = self.beta1 * self.m + (1 - self.beta1) * xr
        self.v = self.beta2 * self.v + (1 - self.beta2) * xr * xr
        d = (self.m / (1 - self.beta1 ** age)) / ((self.v / (1 - self.beta2 ** age)).sqrt() + self.eps)
        return torch.view_as_complex(d.contiguous())

    def move(self, old, new, axis):
        """Slices ``old`` -> ``new`` along ``axis``: kept slices keep moments and births,
        new ones start at zero, born now."""
        if self.m is None:
            return
        where = {int(i): j for j, i in enumerate(old.tolist())}

        def moved(t, fill):
            t = t.movedim(axis, 0)
            out = torch.full((len(new),) + tuple(t.shape[1:]), fill, dtype=t.dtype)
            for j, i in enumerate(new.tolist()):
                if i in where:
                    out[j] = t[where[i]]
            return out.movedim(0, axis)

        self.m, self.v, self.birth = moved(self.m, 0.0), moved(self.v, 0.0), moved(self.birth, float(self.t))


def _structured(sparse_type, mode, order, seed=0):
    """A compressed complex128 weight with kept structured sparse moments along ``mode``."""
    p = torch.nn.Parameter(random_tensor(SHAPE, True, 7 + seed))
    ratio = 0.5 if SHAPE[mode] <= 5 else 0.4  # several slices: a size-1 slice axis hid the fault
    opt = TensorGRaD([p], lr=1e-2, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1, min_params=10,
                     update_proj_gap=3, sparse_type=sparse_type, sparse_mode=mode, sparse_ratio=ratio,
                     order=order, reset_sparse_moments=False, seed=seed)
    return p, opt


@pytest.mark.parametrize("order", ["sparse_first", "lowrank_first"])
@pytest.mark.parametrize("sparse_type", ["structured", "structured_randk"])
@pytest.mark.parametrize("mode", [1, 2, 3])
def test_kept_structured_moments_on_a_later_mode_follow_a_float64_reference(mode, sparse_type, order, monkeypatch):
    force_compression(monkeypatch)
    p, opt = _structured(sparse_type, mode, order)
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    sparse, low_rank = _Adam(beta1, beta2, group["eps"]), _Adam(beta1, beta2, group["eps"])
    lr, wd, scale = group["lr"], group["weight_decay"], group["scale"]
    old, moved = None, 0
    for t, g in enumerate(_gradients(10, 500)):
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        state = opt.state[p]
        factors, indices = _factors(state), state["sparse_basis_indices"].long()
        if t % 3 == 0 and old is not None:
            moved += not torch.equal(old, indices)
            sparse.move(old, indices, mode)
        old = indices

        def take(x):
            return x.movedim(mode, 0)[indices].movedim(0, mode)

        def put(values):
            out = torch.zeros(SHAPE, dtype=values.dtype)
            out.movedim(mode, 0)[indices] = values.movedim(mode, 0)
            return out

        if order == "sparse_first":
            values = take(g)
            core = _core(g - put(values), factors)
        else:
            core = _core(g, factors)
            values = take(g - _expand(core, factors))
        update = scale * _expand(low_rank(core), factors) + put(sparse(values))
        expected = before * (1 - lr * wd) - lr * update
        error = (p.detach() - expected).abs().max() / (expected - before).abs().max()
        assert error < 1e-10, (t, float(error))
        # stored as the optimizer steps them: flat views of contiguous tensors
        assert all(state[k].is_contiguous() for k in ("sparse_exp_avg", "sparse_exp_avg_sq"))
        assert "sparse_birth" not in state or state["sparse_birth"].is_contiguous()
    assert moved >= 1  # a refresh moved moments between different slice sets


@pytest.mark.parametrize("sparse_type", ["structured", "structured_randk"])
def test_a_state_saved_after_such_a_refresh_resumes_as_the_uninterrupted_run(sparse_type, monkeypatch):
    force_compression(monkeypatch)
    grads = _gradients(9, 900)
    straight, opt = _structured(sparse_type, 2, "sparse_first", seed=3)
    for g in grads:
        straight.grad = g.clone()
        opt.step()
    first, opt = _structured(sparse_type, 2, "sparse_first", seed=3)
    for g in grads[:5]:  # refreshes at steps 0 and 3: the second one carries moments over
        first.grad = g.clone()
        opt.step()
    assert "sparse_birth" in opt.state[first]
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed, again = _structured(sparse_type, 2, "sparse_first", seed=3)
    with torch.no_grad():
        resumed.copy_(first)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    for g in grads[5:]:  # a refresh at step 6 moves the loaded moments
        resumed.grad = g.clone()
        again.step()
    torch.testing.assert_close(resumed, straight, rtol=0, atol=0)


def test_a_loaded_strided_compressed_state_is_stored_contiguous_and_steps(monkeypatch):
    """A state dict whose compressed moments are strided (a permuted layout, as torch.save
    keeps it) loads as the optimizer makes them: contiguous, stepping as the contiguous one."""
    force_compression(monkeypatch)
    p, opt = _structured("structured", 1, "sparse_first", seed=5)
    grads = _gradients(3, 1300)
    p.grad = grads[0].clone()
    opt.step()
    saved = opt.state_dict()
    strided = {**saved, "state": {0: dict(saved["state"][0])}}
    for key in ("sparse_exp_avg", "sparse_exp_avg_sq", "low_rank_exp_avg", "low_rank_exp_avg_sq"):
        value = saved["state"][0][key]
        strided["state"][0][key] = value.transpose(0, 1).contiguous().transpose(0, 1)
        assert not strided["state"][0][key].is_contiguous()
    runs = []
    for state_dict in (saved, strided):
        q, loaded = _structured("structured", 1, "sparse_first", seed=5)
        with torch.no_grad():
            q.copy_(p)
        loaded.load_state_dict(state_dict)
        assert all(v.is_contiguous() for k, v in loaded.state[q].items() if k.endswith(("exp_avg", "exp_avg_sq")))
        for g in grads[1:]:
            q.grad = g.clone()
            loaded.step()
        runs.append(q.detach())
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=0)


# ------------------------------------------- a full-rank Tucker part: the empty basis
def _adamw_twin(p, **hyper):
    q = torch.nn.Parameter(p.detach().clone())
    return q, torch.optim.AdamW([q], **hyper)


def test_a_zero_gradient_at_a_refresh_of_a_full_rank_part_steps_as_adamw(monkeypatch):
    """Every mode at full rank: no factor, an empty basis. A zero gradient at a refresh
    must decay the moments and move the weight, as AdamW's step does."""
    force_compression(monkeypatch)
    hyper = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    p = torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 41))
    opt = TensorGRaD([p], rank=1.0, sparse_ratio=None, scale=1.0, min_params=10, update_proj_gap=2, **hyper)
    q, reference = _adamw_twin(p, **hyper)
    g = _gradients(4, 4100, (6, 5, 4, 3))
    g[2] = torch.zeros_like(g[2])  # step 2: a refresh
    for x in g:
        p.grad, q.grad = x.clone(), x.clone()
        opt.step()
        reference.step()
    assert bool(opt.state[p]["compressed"]) and not any("factor" in k for k in opt.state[p])
    torch.testing.assert_close(p, q, rtol=0, atol=1e-13)


def test_a_zero_residual_at_a_refresh_of_a_full_rank_second_part_steps_it(monkeypatch):
    """A top-k part taking every nonzero entry leaves the full-rank Tucker part a zero
    residual at a refresh: that part's moments must still decay and move the weight.
    With the sparse update weighed 0 the weight follows AdamW fed the residual."""
    force_compression(monkeypatch)
    hyper = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    shape = (6, 5, 4, 3)
    p = torch.nn.Parameter(random_tensor(shape, True, 43))
    opt = TensorGRaD([p], rank=1.0, sparse_ratio=0.05, sparse_type="topk", sparse_scale=0.0, scale=1.0,
                     min_params=10, update_proj_gap=2, **hyper)
    q, reference = _adamw_twin(p, **hyper)
    k = math.ceil(0.05 * math.prod(shape))
    g = _gradients(5, 4300, shape)
    support = torch.randperm(math.prod(shape), generator=torch.Generator().manual_seed(44))[:k]
    g[2] = torch.zeros(math.prod(shape), dtype=g[2].dtype).index_copy_(0, support, g[2].reshape(-1)[:k]).view(shape)
    for t, x in enumerate(g):
        p.grad = x.clone()
        opt.step()
        residual = x.clone()
        residual.view(-1)[opt.state[p]["sparse_basis_indices"].long()] = 0
        if t == 2:
            assert not residual.any()  # the case under test
        q.grad = residual
        reference.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-13)


# ---------------------------------------------- a refresh selecting the same index set
@pytest.mark.parametrize("sparse_type", ["randk", "topk", "structured"])
def test_a_sparse_part_covering_every_entry_is_adamw_with_the_default_reset(sparse_type, monkeypatch):
    force_compression(monkeypatch)
    hyper = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    p = torch.nn.Parameter(random_tensor(SHAPE, True, 61))
    opt = TensorGRaD([p], rank=None, sparse_ratio=1.0, sparse_type=sparse_type, min_params=10,
                     update_proj_gap=7, **hyper)
    assert opt.param_groups[0]["reset_sparse_moments"]
    q, reference = _adamw_twin(p, **hyper)
    for x in _gradients(30, 6100):
        p.grad, q.grad = x.clone(), x.clone()
        opt.step()
        reference.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-13)
    assert bool(opt.state[p]["compressed"]) and int(opt.state[p]["sparse_step"]) == 30


def test_a_top_k_set_chosen_again_keeps_its_moments(monkeypatch):
    """Large entries on a fixed support: every refresh picks the same top-k set, whose moments
    are kept (the rest get only the decay): AdamW fed the gradient on that support."""
    force_compression(monkeypatch)
    hyper = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    p = torch.nn.Parameter(random_tensor(SHAPE, True, 71))
    opt = TensorGRaD([p], rank=None, sparse_ratio=0.1, sparse_type="topk", min_params=10, update_proj_gap=4,
                     **hyper)
    q, reference = _adamw_twin(p, **hyper)
    n = math.prod(SHAPE)
    support = torch.randperm(n, generator=torch.Generator().manual_seed(72))[:math.ceil(0.1 * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[support] = True
    mask = mask.view(SHAPE)
    for x in _gradients(12, 7100):
        x = torch.where(mask, x + 100, x)  # |x| > 90 on the support, < 10 off it
        p.grad = x.clone()
        opt.step()
        assert torch.equal(opt.state[p]["sparse_basis_indices"].long(), support.sort().values)
        q.grad = torch.where(mask, x, 0)
        reference.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-13)
    assert int(opt.state[p]["sparse_step"]) == 12  # not restarted at the refreshes 4 and 8
