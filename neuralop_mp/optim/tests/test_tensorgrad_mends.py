"""Review mends of TensorGRaD: the count of dense updates waiting for their finite check,
the shape check of parameters without state on load, and the bias correction of sparse
entries whose moments are kept across a refresh (``reset_sparse_moments=False``)."""
import io

import pytest
import torch

from neuralop_mp.optim import TensorGRaD, gradient_chunks, nonfinite
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps


# ------------------------------------------------- dense updates waiting for one check
def _layout():
    """Dense float32 parameters of 40 bytes (10 entries) around a compressed weight."""
    torch.manual_seed(0)
    dense = {name: torch.nn.Parameter(torch.randn(10)) for name in "xdefg"}
    weight = torch.nn.Parameter(torch.randn(6, 5, 4))
    order = [dense["x"], weight, dense["d"], dense["e"], dense["f"], dense["g"]]
    names = {id(p): name for name, p in dense.items()}
    return order, names


def _set_grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


@pytest.fixture
def batches(monkeypatch):
    """The dense parameters of each non-empty batch of pending updates, as applied, with a
    chunk budget of 100 bytes (two 40-byte updates wait, a third makes 120 and is applied)."""
    monkeypatch.setattr(gradient_chunks, "chunk_bytes", lambda device=None: 100)
    seen = []
    apply = nonfinite.apply_finite_updates

    def spy(pending, apply_one):
        if pending:
            seen.append([entry[4] for entry in pending])
        return apply(pending, apply_one)

    monkeypatch.setattr(nonfinite, "apply_finite_updates", spy)
    return seen


def test_waiting_bytes_restart_at_every_flush(batches):
    params, names = _layout()
    opt = TensorGRaD(params, min_params=10)
    _set_grads(params, 0)
    opt.step()
    assert bool(opt.state[params[1]]["compressed"])
    # x is applied before the compressed weight steps; the count restarts there, so d, e and f
    # (120 bytes) wait together; g, left over, at the end of the step
    assert [[names[id(p)] for p in batch] for batch in batches] == [["x"], ["d", "e", "f"], ["g"]]


def test_a_step_that_raises_while_applying_leaves_no_count_for_the_next(batches):
    params, names = _layout()
    fresh = TensorGRaD([torch.nn.Parameter(p.detach().clone()) for p in params], min_params=10)
    fresh_params = [p for group in fresh.param_groups for p in group["params"]]
    fresh_names = {id(q): names[id(p)] for p, q in zip(params, fresh_params) if id(p) in names}
    _set_grads(fresh_params, 1)
    fresh.step()
    expected = [[fresh_names[id(p)] for p in batch] for batch in batches]

    opt = TensorGRaD(params, min_params=10)
    apply = opt._apply

    def failing(p, update, group, state):
        if names.get(id(p)) == "e":
            raise RuntimeError("apply failed")
        apply(p, update, group, state)

    opt._apply = failing  # raises partway through the batch (d, e, f)
    _set_grads(params, 1)
    with pytest.raises(RuntimeError, match="apply failed"):
        opt.step()
    del opt._apply
    batches.clear()
    _set_grads(params, 1)
    opt.step()
    assert [[names[id(p)] for p in batch] for batch in batches] == expected == [["x"], ["d", "e", "f"], ["g"]]


# --------------------------------------------- shapes of parameters without state on load
def _trained_with_a_stateless_parameter(frozen_shape=(3, 4)):
    """A compressed weight that steps and a parameter without gradient (so without state)."""
    weight = torch.nn.Parameter(random_tensor((6, 5, 4), False, 0, torch.float32))
    frozen = torch.nn.Parameter(torch.zeros(frozen_shape))
    opt = TensorGRaD([weight, frozen], min_params=10)
    weight.grad = random_tensor((6, 5, 4), False, 1, torch.float32)
    opt.step()
    assert frozen not in opt.state
    return opt.state_dict()


def test_a_parameter_without_state_of_another_shape_fails_to_load():
    saved = _trained_with_a_stateless_parameter((3, 4))
    weight = torch.nn.Parameter(random_tensor((6, 5, 4), False, 0, torch.float32))
    opt = TensorGRaD([weight, torch.nn.Parameter(torch.zeros(4, 3))], min_params=10)
    with pytest.raises(ValueError, match=r"Parameter 1 of param group 0 \(shape \(4, 3\)\): the state dict was saved "
                                         r"for a parameter of shape \(3, 4\)"):
        opt.load_state_dict(saved)
    assert not opt.state  # nothing was loaded


def test_a_group_without_state_of_other_shapes_fails_to_load():
    weight = torch.nn.Parameter(random_tensor((6, 5, 4), False, 0, torch.float32))
    opt = TensorGRaD([{"params": [weight]}, {"params": [torch.nn.Parameter(torch.zeros(7))], "lr": 0.1}],
                     min_params=10)
    weight.grad = torch.ones_like(weight)
    opt.step()  # the second group never steps
    saved = opt.state_dict()
    assert saved["param_shapes"][1] == [(7,)]
    other = TensorGRaD([{"params": [torch.nn.Parameter(weight.detach().clone())]},
                        {"params": [torch.nn.Parameter(torch.zeros(8))], "lr": 0.1}], min_params=10)
    with pytest.raises(ValueError, match=r"Parameter 0 of param group 1 \(shape \(8,\)\): the state dict was saved "
                                         r"for a parameter of shape \(7,\)"):
        other.load_state_dict(saved)


def test_listed_shapes_round_trip_and_stay_out_of_the_param_groups():
    saved = _trained_with_a_stateless_parameter()
    assert saved["param_shapes"] == [[(6, 5, 4), (3, 4)]]
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    weight = torch.nn.Parameter(random_tensor((6, 5, 4), False, 0, torch.float32))
    opt = TensorGRaD([weight, torch.nn.Parameter(torch.zeros(3, 4))], min_params=10)
    opt.load_state_dict(loaded)
    assert "param_shapes" not in opt.param_groups[0]  # a description of the checkpoint, not a setting
    assert opt.state_dict()["param_shapes"] == [[(6, 5, 4), (3, 4)]]
    loaded["param_shapes"] = [[(6, 5, 4)]]
    with pytest.raises(ValueError, match=r"Invalid 'param_shapes' in param group 0 .* each of its 2 parameters"):
        opt.load_state_dict(loaded)


def test_a_state_dict_without_listed_shapes_leaves_stateless_parameters_unchecked():
    # saved before shapes were listed (or by upstream's class): a parameter without state has
    # nothing to compare, and it loads as before; its state is made at its first step
    saved = _trained_with_a_stateless_parameter((3, 4))
    del saved["param_shapes"]
    weight = torch.nn.Parameter(random_tensor((6, 5, 4), False, 0, torch.float32))
    other = torch.nn.Parameter(torch.zeros(4, 3))
    opt = TensorGRaD([weight, other], min_params=10)
    opt.load_state_dict(saved)
    assert other not in opt.state and weight in opt.state


# ------------------------------------------- kept sparse moments: each entry its own age
BETAS = (0.9, 0.999)


def _sparse_optimizer(p, **settings):
    return TensorGRaD([p], lr=1e-2, betas=BETAS, eps=1e-12, min_params=10, rank=None, sparse_ratio=0.25,
                      reset_sparse_moments=False, **settings)


@pytest.mark.parametrize("sparse_type", ["randk", "structured_randk"])
def test_first_update_of_a_newly_selected_entry_is_a_fresh_adam_step(sparse_type):
    """At a refresh 1500 steps in, the entries the new set adds start from zero moments. With
    the branch's count for their bias correction their first update was 2.8x a fresh Adam's
    ``(1 - beta1) / sqrt((1 - beta2) / (1 - beta2**1501))``; by their own age it is ``lr``."""
    shape, gap = (20, 3, 2), 1500  # structured: 5 of 20 slices along mode 0
    p = torch.nn.Parameter(random_tensor(shape, False, 0))
    opt = _sparse_optimizer(p, sparse_type=sparse_type, update_proj_gap=gap)
    generator = torch.Generator().manual_seed(1)
    for _ in range(gap):
        p.grad = torch.randn(shape, generator=generator, dtype=torch.float64)
        opt.step()
    old = opt.state[p]["sparse_basis_indices"].clone()
    before = p.detach().clone()
    p.grad = torch.randn(shape, generator=generator, dtype=torch.float64)
    opt.step()
    new = opt.state[p]["sparse_basis_indices"]
    added = new[~torch.isin(new, old)].long()
    kept = new[torch.isin(new, old)].long()
    assert added.numel() and kept.numel()
    change = (p.detach() - before).abs()
    change = change[added] if sparse_type == "structured_randk" else change.reshape(-1)[added]
    torch.testing.assert_close(change, torch.full_like(change, 1e-2), rtol=1e-9, atol=0)
    births = opt.state[p]["sparse_birth"]
    assert births.dtype == torch.int32
    births = births.reshape(births.shape[0], -1)[:, 0]  # structured: one birth per kept slice's entries
    assert set(births[torch.isin(new, old)].tolist()) == {0} and set(births[~torch.isin(new, old)].tolist()) == {gap}


def _per_entry_adam(p, grads, index_sets, convention, lr, wd, eps):
    """float64 reference: each entry of the sparse set runs its own Adam from the step it
    was (last) selected at; an entry that leaves the set loses its moments."""
    p = p.detach().clone()
    flat = p.reshape(-1)
    real = torch.view_as_real(flat) if flat.is_complex() else flat
    m = torch.zeros_like(real)
    v = torch.zeros_like(real if convention == "torch" else flat.real)
    birth = torch.zeros(flat.shape, dtype=torch.float64)
    active = torch.zeros(flat.shape, dtype=torch.bool)
    beta1, beta2 = BETAS
    for count, (grad, indices) in enumerate(zip(grads, index_sets), start=1):
        selected = torch.zeros_like(active)
        selected[indices] = True
        fresh = selected & ~active
        m[fresh], v[fresh], birth[fresh] = 0, 0, count - 1
        active = selected
        g = grad.reshape(-1)[indices]
        g_real = torch.view_as_real(g) if g.is_complex() else g
        age = count - birth[indices]
        bias1, bias2 = 1 - beta1**age, 1 - beta2**age
        if g.is_complex():
            bias1, bias2 = bias1[:, None], bias2[:, None]
        m[indices] = beta1 * m[indices] + (1 - beta1) * g_real
        if convention == "torch":
            v[indices] = beta2 * v[indices] + (1 - beta2) * g_real**2
            direction = (m[indices] / bias1) / ((v[indices] / bias2).sqrt() + eps)
        else:
            v[indices] = beta2 * v[indices] + (1 - beta2) * g.abs() ** 2
            denom = v[indices].sqrt() + eps
            denom = denom[:, None] if g.is_complex() else denom
            direction = bias2.sqrt() / bias1 * m[indices] / denom
        update = torch.zeros_like(real)
        update[indices] = direction
        if convention == "torch":
            real.mul_(1 - lr * wd).sub_(lr * update)
        else:
            real.sub_(lr * update).mul_(1 - lr * wd)
    return p


@pytest.mark.parametrize("convention", ["torch", "neuralop"])
@pytest.mark.parametrize("complex_", [False, True])
def test_kept_sparse_moments_follow_per_entry_adam_in_float64(convention, complex_):
    shape, steps = (6, 5, 4), 13
    dtype = torch.complex128 if complex_ else torch.float64
    start = random_tensor(shape, complex_, 0)
    p = torch.nn.Parameter(start.clone())
    opt = _sparse_optimizer(p, update_proj_gap=3, weight_decay=0.1, adam_convention=convention)
    grads = [random_tensor(shape, complex_, 10 + s) for s in range(steps)]
    index_sets = []
    for grad in grads:
        p.grad = grad.to(dtype).clone()
        opt.step()
        index_sets.append(opt.state[p]["sparse_basis_indices"].long().clone())
    assert len({tuple(s.tolist()) for s in index_sets}) == 5  # refreshes at 0, 3, 6, 9, 12
    reference = _per_entry_adam(start, grads, index_sets, convention, lr=1e-2, wd=0.1, eps=1e-12)
    torch.testing.assert_close(p.detach(), reference, rtol=1e-12, atol=1e-14)


def test_a_state_saved_without_births_counts_its_entries_as_born_with_the_branch():
    """A state dict from before births were kept: every entry is corrected by the branch's
    count (born at 0), the correction it was stepped with, until the next refresh."""
    shape = (6, 5, 4)
    p = torch.nn.Parameter(random_tensor(shape, False, 0))
    opt = _sparse_optimizer(p, update_proj_gap=4)
    grads = [[random_tensor(shape, False, 20 + s)] for s in range(6)]
    run_steps(opt, [p], grads)  # a refresh at step 4 made births
    saved = opt.state_dict()
    assert saved["state"][0]["sparse_birth"].unique().numel() == 2
    old = {**saved, "state": {0: {k: v for k, v in saved["state"][0].items() if k != "sparse_birth"}}}
    zero = {**saved, "state": {0: {**saved["state"][0],
                                   "sparse_birth": torch.zeros_like(saved["state"][0]["sparse_birth"])}}}
    results = []
    for state_dict in (old, zero, saved):
        q = torch.nn.Parameter(p.detach().clone())
        resumed = _sparse_optimizer(q, update_proj_gap=4)
        resumed.load_state_dict(state_dict)
        run_steps(resumed, [q], [[random_tensor(shape, False, 40)]])
        results.append(q.detach())
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])  # the saved births do count


def test_births_of_another_shape_or_dtype_fail_to_load():
    shape = (6, 5, 4)
    p = torch.nn.Parameter(random_tensor(shape, False, 0))
    opt = _sparse_optimizer(p, update_proj_gap=2)
    run_steps(opt, [p], [[random_tensor(shape, False, s)] for s in range(3)])
    saved = opt.state_dict()
    births = saved["state"][0]["sparse_birth"]
    for bad, message in ((births[:-1], r"state 'sparse_birth' has shape \(29,\), expected \(30,\)"),
                         (births.double(), r"state 'sparse_birth' has dtype torch.float64, expected an integer")):
        saved["state"][0]["sparse_birth"] = bad
        with pytest.raises(ValueError, match=message):
            _sparse_optimizer(torch.nn.Parameter(p.detach().clone()), update_proj_gap=2).load_state_dict(saved)


def test_resetting_sparse_moments_keeps_no_births():
    shape = (6, 5, 4)
    p = torch.nn.Parameter(random_tensor(shape, False, 0))
    opt = TensorGRaD([p], min_params=10, rank=None, update_proj_gap=2)
    run_steps(opt, [p], [[random_tensor(shape, False, s)] for s in range(5)])
    assert "sparse_birth" not in opt.state[p]
