"""TensorGRaD against torch.optim's contract: zero gradients on refresh steps, torch AdamW keys
and settings changed in ``param_groups`` or brought by ``load_state_dict``.

A refresh that finds an all-zero gradient (torch.distributed.checkpoint's state
initialisation steps once with zero gradients and lr 0; ``zero_grad(set_to_none=False)``
leaves an unused parameter a zero gradient) keeps the basis and waits for a nonzero
gradient: from zeros the Tucker factors would be coordinate axes and top-k arbitrary
entries, kept for ``update_proj_gap`` steps. Settings edited in ``param_groups`` are checked
again at the next step, as the constructor checks them."""
import math

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.nonfinite import NonFiniteError
from neuralop_mp.optim.tests.helpers import low_rank_tensor, random_tensor

SHAPE = (12, 10, 6, 4)
FACTOR = "low_rank_basis_factor_0"


def _weight(dtype=torch.float64, seed=0):
    return torch.nn.Parameter(random_tensor(SHAPE, False, seed, dtype))


def _grads(count, seed=10):
    return [random_tensor(SHAPE, False, seed + i) for i in range(count)]


class _Holder(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight


def _step(opt, p, grad):
    p.grad = grad.to(p.dtype).clone()
    opt.step()


# ----------------------------------------------------------------- zero gradients
def test_a_dcp_state_initialisation_changes_nothing_in_float64():
    """get_optimizer_state_dict on a fresh optimizer steps once with zero gradients and lr 0:
    the run afterwards ends with the basis and, bitwise, the weights of a run without it
    (one compressed float64 weight, Tucker part only: no random draw depends on the step)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    settings = dict(lr=1e-2, weight_decay=0.1, sparse_ratio=None, min_params=10, update_proj_gap=100)
    runs = []
    for initialise in (False, True):
        p = _weight()
        opt = TensorGRaD([p], **settings)
        if initialise:
            get_optimizer_state_dict(_Holder(p), opt)
            assert int(opt.state[p]["step"]) == 1
            assert not any(key.startswith("low_rank_") for key in opt.state[p])  # no basis from zeros
        for grad in _grads(5):
            _step(opt, p, grad)
        assert "refresh_pending" not in opt.state[p]
        runs.append((p.detach().clone(), opt.state[p][FACTOR].clone(), opt.state[p]["low_rank_step"].clone()))
    (plain_w, plain_f, plain_s), (init_w, init_f, init_s) = runs
    assert torch.equal(init_f, plain_f)
    assert torch.equal(init_s, plain_s)  # the part's Adam starts with the first nonzero gradient
    assert torch.equal(init_w, plain_w)


def test_a_first_zero_gradient_only_decays_and_the_next_gradient_sets_the_basis():
    """p24's scenario shrunk: complex weight, first gradient zero (an unused parameter after
    zero_grad(set_to_none=False)); the step decays the weight as torch AdamW's does, and the
    next gradient's basis is the one a fresh optimizer takes from it."""
    weight = random_tensor(SHAPE, True, 0, torch.float32).to(torch.complex64)
    p, q, r = (torch.nn.Parameter(weight.clone()) for _ in range(3))
    # low rank first: its basis comes from the whole gradient, whatever the sparse draw
    settings = dict(lr=1e-2, weight_decay=0.1, min_params=10, order="lowrank_first")
    opt = TensorGRaD([p], **settings)
    adamw = torch.optim.AdamW([q], lr=1e-2, weight_decay=0.1)
    for param, optimizer in ((p, opt), (q, adamw)):
        param.grad = torch.zeros_like(param)
        optimizer.step()
    assert torch.equal(p, q)
    assert not any("basis" in key for key in opt.state[p])
    grad = low_rank_tensor(SHAPE, (3, 3, 2, 2), True, 5)[0].to(torch.complex64)
    _step(opt, p, grad)
    fresh = TensorGRaD([r], **settings)
    _step(fresh, r, grad)
    assert torch.equal(opt.state[p][FACTOR], fresh.state[r][FACTOR])
    factor = torch.view_as_complex(opt.state[p][FACTOR].contiguous())
    core = torch.einsum("abcd,ai->ibcd", grad, factor.conj())
    assert float(core.abs().square().sum() / grad.abs().square().sum()) > 0.999  # the gradient's range


def test_a_zero_gradient_on_a_refresh_step_keeps_the_basis_and_the_flag_round_trips():
    """Mid-run, a frozen parameter's zeroed gradient on a refresh step: the basis stays, the
    refresh waits (a flag in the state, which a state dict carries: the resumed run is
    bitwise the same) and happens at the next nonzero gradient, whose range it spans."""
    p = _weight()
    settings = dict(lr=1e-2, min_params=10, update_proj_gap=3, order="lowrank_first")
    opt = TensorGRaD([p], **settings)
    for grad in _grads(3):
        _step(opt, p, grad)
    before = opt.state[p][FACTOR].clone()
    _step(opt, p, torch.zeros(SHAPE, dtype=torch.float64))  # step 3: a refresh step
    assert torch.equal(opt.state[p][FACTOR], before)
    assert bool(opt.state[p]["refresh_pending"])

    q = torch.nn.Parameter(p.detach().clone())
    resumed = TensorGRaD([q], **settings)
    resumed.load_state_dict(opt.state_dict())
    assert opt.state[p]["refresh_pending"].device.type == "cpu"
    grad = low_rank_tensor(SHAPE, (3, 3, 2, 2), False, 7)[0]
    for param, optimizer in ((p, opt), (q, resumed)):
        _step(optimizer, param, grad)
        assert "refresh_pending" not in optimizer.state[param]
    assert torch.equal(p, q)
    assert all(torch.equal(opt.state[p][k], resumed.state[q][k]) for k in opt.state[p] if k != "seed")
    factor = opt.state[p][FACTOR]
    core = torch.einsum("abcd,ai->ibcd", grad, factor)
    assert float(core.square().sum() / grad.square().sum()) > 0.999


def test_top_k_indices_are_not_chosen_from_a_zero_gradient():
    p = _weight()
    opt = TensorGRaD([p], min_params=10, rank=None, sparse_type="topk", sparse_ratio=0.05)
    _step(opt, p, torch.zeros(SHAPE, dtype=torch.float64))
    grad = _grads(1)[0]
    _step(opt, p, grad)
    k = math.ceil(0.05 * grad.numel())
    expected = torch.topk(grad.abs().reshape(-1), k).indices.sort().values
    assert torch.equal(opt.state[p]["sparse_basis_indices"].long(), expected)


# ------------------------------------------------------ settings in param_groups
def _stepped(**settings):
    p = torch.nn.Parameter(random_tensor((16, 16, 8, 5), True, 0, torch.float32).to(torch.complex64))
    opt = TensorGRaD([p], **settings)
    _step(opt, p, random_tensor(p.shape, True, 1, torch.float32).to(torch.complex64))
    return opt, p


@pytest.mark.parametrize("key, value, error, message", [
    ("update_proj_gap", 0, ValueError, r"Invalid update_proj_gap=0; expected an int >= 1"),
    ("state_dtype", "float16", ValueError, r"Invalid state_dtype='float16'; allowed values: 'float32', 'bfloat16'"),
    ("lambda_sparse", float("nan"), ValueError, r"Invalid lambda_sparse=nan; expected a finite number >= 0.0"),
    ("betas", (0.9, 1.0), ValueError, r"Invalid betas\[1\]=1.0"),
    ("update_proj_gap", 2.5, TypeError, r"Invalid update_proj_gap=2.5 \(float\)"),
    ("maximize", True, ValueError, r"Invalid maximize=True: TensorGRaD does not support maximize=True"),
    ("amsgrad", True, ValueError, r"Invalid amsgrad=True"),
    ("compress", "yes", TypeError, r"Invalid compress='yes'"),
])
def test_a_setting_changed_in_param_groups_is_checked_at_the_next_step(key, value, error, message):
    opt, p = _stepped()
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    opt.param_groups[0][key] = value
    p.grad = torch.ones_like(p)
    with pytest.raises(error, match=r"^TensorGRaD: param group 0 was changed in param_groups: " + message):
        opt.step()
    assert torch.equal(p, before)
    assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())


def test_step_parameter_checks_its_groups_changed_settings():
    opt, p = _stepped()
    opt.param_groups[0]["update_proj_gap"] = 0
    with pytest.raises(ValueError, match=r"param group 0 was changed in param_groups: Invalid update_proj_gap=0"):
        opt.step_parameter(p, torch.ones_like(p))


def test_a_decay_set_beside_adams_coupled_decay_is_refused_at_the_step():
    """decoupled_weight_decay=False is taken with weight_decay=0 (then it is AdamW's decay);
    a decay set in the group afterwards would be applied decoupled, not as Adam's L2."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = TensorGRaD([p], decoupled_weight_decay=False)
    opt.param_groups[0]["weight_decay"] = 0.1
    p.grad = torch.ones(4)
    with pytest.raises(ValueError, match=r"Invalid decoupled_weight_decay=False with weight_decay=0.1"):
        opt.step()
    assert torch.equal(p, torch.ones(4))


def test_checked_values_are_written_back_and_a_valid_change_steps():
    """A list of betas set by hand becomes the tuple the constructor makes (a state dict
    holding it loads with weights_only=True either way; the groups then match a fresh one's)."""
    opt, p = _stepped()
    opt.param_groups[0]["betas"] = [0.8, 0.99]
    opt.param_groups[0]["lr"] = 5e-3
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.param_groups[0]["betas"] == (0.8, 0.99) and isinstance(opt.param_groups[0]["betas"], tuple)


def test_the_finite_check_sees_the_weighted_update():
    """scale is finite, but scale times the Adam direction overflows float32: the check that
    keeps non-finite updates from the weights must see the weighted update."""
    p = torch.nn.Parameter(random_tensor((16, 16, 8, 5), True, 0, torch.float32).to(torch.complex64))
    before = p.detach().clone()
    opt = TensorGRaD([p], scale=1e39)
    p.grad = random_tensor(p.shape, True, 2, torch.float32).to(torch.complex64)
    with pytest.raises(NonFiniteError, match=r"non-finite update \(NaN or inf\) in its low-rank part"):
        opt.step()
    assert torch.equal(p, before)


# ------------------------------------------------------------------ load_state_dict
@pytest.mark.parametrize("cls, settings, writer", [
    (torch.optim.AdamW, dict(maximize=True), "torch.optim.AdamW"),
    (torch.optim.AdamW, dict(amsgrad=True), "torch.optim.AdamW"),
    (torch.optim.Adam, dict(weight_decay=0.1), "torch.optim.Adam"),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9), "another optimizer"),
])
def test_a_fresh_state_of_another_optimizer_is_refused_naming_it(cls, settings, writer):
    p = torch.nn.Parameter(torch.ones(5))
    opt = TensorGRaD([p])
    with pytest.raises(ValueError, match=rf"^Param group 0 of the state dict was saved by {writer}, not TensorGRaD"):
        opt.load_state_dict(cls([p], **settings).state_dict())
    assert opt.param_groups[0]["lr"] == 1e-3 and "maximize" not in opt.param_groups[0]


def test_a_tensorgrad_state_dict_with_a_torch_key_it_would_ignore_is_refused():
    opt, p = _stepped()
    saved = opt.state_dict()
    saved["param_groups"][0]["amsgrad"] = True
    other = TensorGRaD([torch.nn.Parameter(p.detach().clone())])
    with pytest.raises(ValueError, match=r"^Param group 0 of the state dict: Invalid amsgrad=True: TensorGRaD "
                                         r"does not support amsgrad=True"):
        other.load_state_dict(saved)
    assert not other.state


# ------------------------------------------------- reread mends: tensor lr, decay on load
def test_a_tensor_lr_changed_in_place_is_checked_again():
    """torch's schedulers change a tensor lr in place (fill_): the same tensor object, another
    value. lr.fill_(inf) would make the weights non-finite; it is refused as the constructor does."""
    p = torch.nn.Parameter(torch.ones(4, 3))
    lr = torch.tensor(1e-2)
    opt = TensorGRaD([p], lr=lr, compress=False)
    p.grad = torch.ones_like(p)
    opt.step()
    opt.param_groups[0]["lr"].fill_(math.inf)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"param group 0 was changed in param_groups: Invalid lr=tensor\(inf\)"):
        opt.step()
    assert torch.equal(p, before)
    opt.param_groups[0]["lr"].fill_(5e-3)  # a valid in-place change steps
    opt.step()
    assert torch.isfinite(p).all() and not torch.equal(p, before)


def test_a_tensor_lr_is_checked_again_by_its_version_where_its_value_is_not_read():
    """Off the CPU reading the value would wait for the device at every step: the snapshot keeps
    the tensor's version counter instead, which fill_ advances (the CPU's multi-entry tensors
    take that path too)."""
    from neuralop_mp.optim.tensorgrad import _changed_keys, _settings, _settings_snapshot

    group = {"params": [], "lr": torch.tensor(1e-2), "other": torch.ones(2)}
    checked = _settings_snapshot(group)
    assert _changed_keys(_settings(group), checked) == []
    group["other"].fill_(3.0)
    group["lr"].fill_(2e-2)
    assert _changed_keys(_settings(group), checked) == ["lr", "other"]


@pytest.mark.parametrize("settings", [dict(weight_decay=0.1), dict(weight_decay=0.1, tensorgrad=True)])
def test_a_state_dict_with_decay_is_refused_by_an_optimizer_asked_for_adams_coupled_decay(settings):
    """TensorGRaD(decoupled_weight_decay=False) takes only weight_decay=0 (its decay is always
    decoupled): a loaded group with a decay is checked as a group that joins is."""
    saved = TensorGRaD([{"params": [torch.nn.Parameter(torch.ones(4, 3))], **settings}]).state_dict()
    q = torch.nn.Parameter(torch.ones(4, 3))
    opt = TensorGRaD([q], decoupled_weight_decay=False)
    with pytest.raises(ValueError, match=r"^Param group 0 of the state dict: Invalid decoupled_weight_decay=False "
                                         r"with weight_decay=0.1"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["weight_decay"] == 0.0
    explicit = TensorGRaD([{"params": [torch.nn.Parameter(torch.ones(4, 3))], "decoupled_weight_decay": True}],
                          weight_decay=0.1).state_dict()
    opt.load_state_dict(explicit)  # the group's own key: decoupled, as it asked
    assert opt.param_groups[0]["weight_decay"] == 0.1


def _counted_reads(monkeypatch):
    """Every copy of flags to the host (``.cpu()``) and every per-parameter zero test of a refresh."""
    from neuralop_mp.optim import nonfinite

    reads = []
    real_cpu, real_all_zero = torch.Tensor.cpu, nonfinite.sliced_all_zero
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: reads.append("cpu") or real_cpu(self, *a, **k))
    monkeypatch.setattr(nonfinite, "sliced_all_zero", lambda grad: reads.append("zero") or real_all_zero(grad))
    return reads


@pytest.mark.parametrize("gradients_checked", [False, True])
def test_a_refresh_step_reads_no_more_flags_than_another_step(monkeypatch, gradients_checked):
    """Whether a refreshing weight's gradient is all zero comes back with the gradients' finite
    check (one copy per device), not one read per compressed weight; where a caller checked the
    gradients (the scaler), the refreshes' flags alone, in one copy. A weight left with a zero
    gradient (refresh pending at every step) costs no read of its own either."""
    weights = [_weight(seed=i) for i in range(3)]
    opt = TensorGRaD(weights, lr=1e-2, min_params=10, update_proj_gap=2, order="lowrank_first")
    grads = _grads(3)
    reads = _counted_reads(monkeypatch)
    counts = []
    for step in range(4):  # steps 0 and 2 refresh; weight 2's gradient is zero from step 1: pending at step 3
        for p, grad in zip(weights, grads):
            p.grad = torch.zeros_like(p) if p is weights[2] and step > 0 else grad.clone()
        reads.clear()
        opt.step(gradients_checked=gradients_checked)
        counts.append((reads.count("cpu"), reads.count("zero")))
    # each step: one copy per weight's update check (3) and one for the gradients' flags; with
    # gradients_checked that one only where a basis refreshes (not step 1; step 3: weight 2's pending)
    assert counts == ([(4, 0), (3, 0), (4, 0), (4, 0)] if gradients_checked else [(4, 0)] * 4)
    assert bool(opt.state[weights[2]]["refresh_pending"]) and "refresh_pending" not in opt.state[weights[0]]
