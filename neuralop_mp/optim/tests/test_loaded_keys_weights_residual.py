"""Three TensorGRaD rules: a loaded param group's unknown keys are named (as a joining
group's are), a non-finite compressed update names the settings that weighed it, and the
second part's refresh waits for a nonzero residual (as a refresh waits for a nonzero gradient)."""
import copy
import warnings

import pytest
import torch

from neuralop_mp.optim import TensorGRaD, nonfinite
from neuralop_mp.optim.nonfinite import NonFiniteError
from neuralop_mp.optim.settings import BOOKKEEPING_KEYS, DEFAULTS
from neuralop_mp.optim.state_checks import is_counter
from neuralop_mp.optim.tests.helpers import random_tensor

SHAPE = (8, 8, 6, 4)
#: state key of a second part whose refresh waits for a nonzero residual (state_checks)
RESIDUAL_REFRESH_PENDING = "residual_refresh_pending"


def _stepped(groups=None, **settings):
    torch.manual_seed(0)
    weight, bias = torch.nn.Parameter(torch.randn(SHAPE)), torch.nn.Parameter(torch.randn(7))
    opt = TensorGRaD(groups([bias, weight]) if groups else [bias, weight], min_params=10, **settings)
    weight.grad, bias.grad = torch.randn_like(weight), torch.randn_like(bias)
    opt.step()
    return opt


def _load_quietly(opt, state_dict):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.load_state_dict(state_dict)


# ------------------------------------------------------------ loaded group keys
def test_a_loaded_group_names_its_unknown_keys_in_one_warning_and_loads():
    """A misspelt setting and SGD's key in a saved group were loaded without a word and then
    ignored. Named as a joining group's are (a warning: see the next test), with the group."""
    opt = _stepped()
    state_dict = copy.deepcopy(opt.state_dict())
    state_dict["param_groups"][0].update(lamda_sparse=0.1, momentum=0.9)
    fresh = _stepped()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.load_state_dict(state_dict)
    named = [w for w in caught if "unknown param-group" in str(w.message)]
    assert len(named) == 1, [str(w.message) for w in caught]
    message = str(named[0].message)
    assert "keys 'lamda_sparse', 'momentum' of param group 0 of the loaded state dict" in message
    assert "lambda_sparse" in message.split("its settings are")[1]  # the keys TensorGRaD reads
    assert named[0].filename == __file__  # the user's load line
    assert fresh.param_groups[0]["lambda_sparse"] == 1.0  # ignored, as the warning says


def test_a_state_dict_carrying_a_key_the_constructor_took_with_a_warning_still_loads():
    """The constructor warns of an unknown key and keeps it in the group, so the state dict
    carries it: refusing it at load would make the optimizer's own checkpoint unloadable."""
    with pytest.warns(UserWarning, match="unknown param-group key 'layer_label'"):
        opt = _stepped(lambda params: [{"params": params, "layer_label": "spectral"}])
    with pytest.warns(UserWarning, match="'layer_label' of param group 0 of the loaded state dict"):
        opt.load_state_dict(opt.state_dict())
    assert opt.param_groups[0]["layer_label"] == "spectral"


def _first_version_group(group):
    """``group`` with only the keys groups had in the first TensorGRaD (no adam_convention,
    no nonfinite_grad): what a checkpoint of that version holds."""
    return {key: value for key, value in group.items() if key not in ("adam_convention", "nonfinite_grad")}


def test_groups_saved_by_earlier_versions_schedulers_and_upstream_load_without_a_warning():
    """Every key an earlier saved group can hold is read or known: the settings (none was
    ever renamed; the first version lacked two), torch's scheduler and naming bookkeeping,
    upstream's layout. A key dropped from the settings table would warn here."""
    opt = _stepped(lambda params: [{"params": params[:1], "compress": False}, {"params": params[1:]}])
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10).step()  # initial_lr, max_lr, ...
    state_dict = copy.deepcopy(opt.state_dict())
    assert {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum"} <= set(state_dict["param_groups"][1])
    assert set(DEFAULTS) <= set(state_dict["param_groups"][1])
    _load_quietly(_stepped(lambda params: [{"params": params[:1], "compress": False}, {"params": params[1:]}]),
                  state_dict)
    first = copy.deepcopy(state_dict)
    first["param_groups"] = [_first_version_group(group) for group in first["param_groups"]]
    for value in first["state"].values():
        value.pop("refresh_pending", None)
    _load_quietly(_stepped(lambda params: [{"params": params[:1], "compress": False}, {"params": params[1:]}]),
                  first)
    assert {"param_names", "name", "swa_lr"} <= BOOKKEEPING_KEYS
    # upstream's layout: groups with tensorgrad and correct_bias, no compress
    common = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True)
    upstream = {"state": {}, "param_groups": [
        dict(common, params=[0]), dict(common, params=[1], tensorgrad=True, rank=0.5, sparse_ratio=0.1,
                                       update_proj_gap=50, scale=1.0, sparse_scale=1.0, lambda_sparse=1.0,
                                       sparse_type="randk", warm_restart=True)]}
    bias, weight = torch.nn.Parameter(torch.randn(7)), torch.nn.Parameter(torch.randn(SHAPE))
    _load_quietly(TensorGRaD([{"params": [bias]}, {"params": [weight], "tensorgrad": True}]), upstream)


# ------------------------------------------------------ non-finite weighted update
@pytest.mark.parametrize("setting, words", [
    ({"scale": 1e300}, "its low-rank part (weighted by scale=1e+300)"),
    ({"lambda_sparse": 1e300}, "its sparse part (weighted by sparse_scale=1.0, lambda_sparse=1e+300)"),
    ({"sparse_scale": 1e20, "lambda_sparse": 1e20, "scale_by_mask_ratio": True},
     "its sparse part (weighted by sparse_scale=1e+20, lambda_sparse=1e+20, scale_by_mask_ratio=True)"),
])
def test_a_non_finite_weighted_update_names_the_weights_of_its_part(setting, words):
    """The message named lr and eps only, not the scale / lambda_sparse that overflowed the
    finite Adam direction."""
    with pytest.raises(NonFiniteError) as raised:
        _stepped(**setting)
    assert words in str(raised.value)
    with pytest.warns(RuntimeWarning, match="skipped") as warned:
        _stepped(nonfinite_grad="skip", **setting)
    assert any(words in str(w.message) for w in warned)


# ------------------------------------------------- the second part's zero residual
def _rank_one(seed):
    """A float64 gradient of Tucker rank 1 plus a little noise (a low-rank basis captures it)."""
    vectors = [random_tensor((d,), False, seed + k) for k, d in enumerate(SHAPE)]
    return torch.einsum("a,b,c,d->abcd", *vectors) + 0.1 * random_tensor(SHAPE, False, seed + 9)


def _supported_on(grad, count, seed):
    """``grad`` kept on ``count`` random entries only."""
    keep = torch.zeros(grad.numel(), dtype=torch.bool)
    keep[torch.randperm(grad.numel(), generator=torch.Generator().manual_seed(seed))[:count]] = True
    return grad * keep.view(grad.shape)


def _top_k(gap=3):
    weight = torch.nn.Parameter(random_tensor(SHAPE, False, 0))
    opt = TensorGRaD([weight], lr=1e-2, min_params=10, sparse_type="topk", sparse_ratio=0.05, rank=0.25,
                     update_proj_gap=gap)
    return opt, weight


def _captured(state, residual):
    """The fraction of ``residual``'s norm the low-rank basis of ``state`` keeps."""
    core = residual
    for mode in range(residual.dim()):
        factor = state[f"low_rank_basis_factor_{mode}"]
        core = torch.tensordot(core, factor, dims=([0], [0]))  # modes cycle: each contracted in turn
    return float(core.norm() / residual.norm())


def test_a_zero_residual_leaves_the_second_part_waiting_for_the_first_nonzero_one():
    """Top-k takes every nonzero entry of the refresh step's gradient: the Tucker part's
    residual is zero. Its basis was built from it (coordinate axes, 67% of the next residual
    kept); now the part waits and refreshes from the next residual (99.9%), the sparse part's
    refresh not delayed nor repeated."""
    opt, weight = _top_k()
    weight.grad = _supported_on(_rank_one(1), 5, 0)
    opt.step()
    state = opt.state[weight]
    indices = state["sparse_basis_indices"].clone()
    assert bool(state.get(RESIDUAL_REFRESH_PENDING, False)) and "low_rank_basis_factor_0" not in state
    assert "low_rank_exp_avg" not in state and int(state["sparse_step"]) == 1
    weight.grad = grad = _rank_one(20)
    opt.step()
    assert RESIDUAL_REFRESH_PENDING not in state and "refresh_pending" not in state
    assert torch.equal(state["sparse_basis_indices"], indices)  # refreshed at step 0 only
    residual = grad.clone().view(-1)
    residual[indices.long()] = 0
    assert _captured(state, residual.view(SHAPE)) > 0.9
    assert int(state["low_rank_step"]) == 1


def test_a_zero_residual_on_a_later_refresh_keeps_the_basis_until_a_nonzero_one():
    opt, weight = _top_k(gap=2)
    weight.grad = _rank_one(1)
    opt.step()
    state = opt.state[weight]
    factors = state["low_rank_basis_factor_0"].clone()
    weight.grad = _rank_one(2)
    opt.step()
    weight.grad = _supported_on(_rank_one(3), 5, 1)  # the refresh step: the residual is zero
    opt.step()
    assert torch.equal(state["low_rank_basis_factor_0"], factors) and bool(state.get(RESIDUAL_REFRESH_PENDING, False))
    weight.grad = _rank_one(4)  # not a refresh step: the waiting part alone refreshes
    indices = state["sparse_basis_indices"].clone()
    opt.step()
    assert RESIDUAL_REFRESH_PENDING not in state and not torch.equal(state["low_rank_basis_factor_0"], factors)
    assert torch.equal(state["sparse_basis_indices"], indices)


def test_a_resume_while_the_residual_refresh_waits_is_bitwise_and_the_flag_a_cpu_counter():
    grads = [_supported_on(_rank_one(1), 5, 0)] + [_rank_one(10 + i) for i in range(4)]
    opt, weight = _top_k()
    for grad in grads:
        weight.grad = grad.clone()
        opt.step()
    resumed, other = _top_k()
    other.grad = grads[0].clone()
    resumed.step()
    assert bool(resumed.state[other].get(RESIDUAL_REFRESH_PENDING, False))
    saved = copy.deepcopy(resumed.state_dict())
    again, third = _top_k()
    with torch.no_grad():
        third.copy_(other)
    again.load_state_dict(saved)
    assert is_counter(RESIDUAL_REFRESH_PENDING, again.state[third][RESIDUAL_REFRESH_PENDING])
    for grad in grads[1:]:
        third.grad = grad.clone()
        again.step()
    assert torch.equal(third, weight)


def test_owned_gradients_take_the_same_rule():
    """Update in backward writes the sparse residual into the gradient: the residual tested
    is that one, and the weights and state are bitwise those of step()."""
    grads = [_supported_on(_rank_one(1), 5, 0), _rank_one(2), _rank_one(3)]
    runs = []
    for owns in (False, True):
        opt, weight = _top_k()
        opt.owns_gradients = owns
        for grad in grads:
            weight.grad = grad.clone()
            opt.step()
        runs.append((weight, opt.state[weight]))
    (a, state_a), (b, state_b) = runs
    assert int(state_b["low_rank_step"]) == len(grads) - 1  # the part started at the second step
    assert torch.equal(a, b) and state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)


def test_a_sparse_part_keeping_every_entry_waits_without_reading_the_residual(monkeypatch):
    """Its residual is zero at every step: known from the index count, no pass nor read."""
    reads = []
    monkeypatch.setattr(nonfinite, "chunks_all_zero", lambda source: reads.append(source) or False, raising=False)
    weight = torch.nn.Parameter(random_tensor((6, 6, 4, 3), True, 0).to(torch.complex64))
    # bf16 moments, one |g|^2 per complex entry: a sparse part of every entry still saves memory
    opt = TensorGRaD([weight], min_params=10, sparse_ratio=1.0, rank=(1, 1, 1, 1), state_dtype="bfloat16",
                     adam_convention="neuralop", update_proj_gap=2)
    assert opt.routes_to_compression(weight, opt.param_groups[0])
    for seed in range(3):
        weight.grad = random_tensor(weight.shape, True, seed).to(torch.complex64)
        opt.step()
    assert reads == [] and bool(opt.state[weight].get(RESIDUAL_REFRESH_PENDING, False))
    assert "low_rank_exp_avg" not in opt.state[weight]
