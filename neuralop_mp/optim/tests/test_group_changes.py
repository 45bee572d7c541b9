"""Settings changed in ``param_groups`` after parameters have stepped: those that lay out a
parameter's state (``LAYOUT_KEYS``) are refused at the next step, naming the group, the key
and both values; the others keep working and round-trip through ``state_dict``."""
import copy
import pickle
import re

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.settings import DEFAULTS, LAYOUT_KEYS, TENSORGRAD_OPTIONS
from neuralop_mp.optim.tests.helpers import random_tensor

SHAPE = (8, 8, 6, 4)
SETTINGS = dict(update_proj_gap=3)  # refreshes at steps 0, 3, 6: the steps below cross one

# a value of each layout setting other than the one the state is built with; each would
# fail a later step or load (or silently keep the old layout)
NEW_LAYOUT = {
    "adam_convention": "neuralop", "compress": False, "min_params": 10**6, "rank": 0.5,
    "rank_convention": "params", "sparse_ratio": None, "sparse_type": "structured", "sparse_mode": 2,
    "state_dtype": "bfloat16",
}
NEW_FREE = {
    "lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.1, "correct_bias": False, "order": "lowrank_first",
    "update_proj_gap": 2, "scale": 1.0, "sparse_scale": 2.0, "lambda_sparse": 0.5, "scale_by_mask_ratio": True,
    "warm_restart": False, "tucker_n_iter_max": 3, "reset_sparse_moments": False, "reset_lowrank_moments": True,
    "nonfinite_grad": "skip", "seed": 5, "activation_checkpoint": True,
}


def test_every_setting_is_layout_or_free():
    assert set(NEW_LAYOUT) == set(LAYOUT_KEYS)
    assert set(NEW_LAYOUT) | set(NEW_FREE) == {o.name for o in TENSORGRAD_OPTIONS}
    assert all(NEW_LAYOUT[k] != DEFAULTS[k] for k in LAYOUT_KEYS)
    assert all(NEW_FREE[k] != DEFAULTS[k] for k in NEW_FREE)


def _optimizer(**settings):
    """Group 0: a small dense weight; group 1: a compressed complex weight."""
    bias = torch.nn.Parameter(random_tensor((5,), False, 0, torch.float32))
    weight = torch.nn.Parameter(random_tensor(SHAPE, True, 1, torch.float32).to(torch.cfloat))
    return TensorGRaD([{"params": [bias]}, {"params": [weight], **SETTINGS, **settings}]), [bias, weight]


def _step(opt, params, seed):
    for i, p in enumerate(params):
        p.grad = random_tensor(p.shape, p.is_complex(), 100 * seed + i, torch.float32).to(p.dtype)
    opt.step()


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], [{k: v.clone() for k, v in opt.state[p].items()} for p in params]


def _assert_same(a, b):
    (weights_a, states_a), (weights_b, states_b) = a, b
    for x, y in zip(weights_a, weights_b):
        assert torch.equal(x, y)
    for x, y in zip(states_a, states_b):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key


def _refused(opt, params, key, old, new, group=1, seed=9):
    before = _snapshot(opt, params)
    message = (rf"param group {group} .*{re.escape(f'{key}={new!r}')} \(the state was built with "
               rf"{re.escape(f'{key}={old!r}')}\).* fixed once a parameter of the group has stepped")
    with pytest.raises(ValueError, match=message):
        _step(opt, params, seed)
    _assert_same(before, _snapshot(opt, params))  # refused before anything moved


@pytest.mark.parametrize("sparse_type", ["randk", "structured"])
@pytest.mark.parametrize("key", sorted(NEW_LAYOUT))
def test_layout_change_after_a_step_is_refused_naming_group_key_and_both_values(key, sparse_type):
    opt, params = _optimizer(sparse_type=sparse_type)
    for seed in range(2):
        _step(opt, params, seed)
    old = opt.param_groups[1][key]
    new = NEW_LAYOUT[key] if NEW_LAYOUT[key] != old else "randk"  # sparse_type when built structured
    opt.param_groups[1][key] = new
    _refused(opt, params, key, old, new)
    with pytest.raises(ValueError, match=re.escape(f"{key}={new!r}")):  # still, not taken by the refusal
        opt.step()
    # set back, training goes on, across a refresh, and round-trips
    opt.param_groups[1][key] = old
    for seed in range(2, 6):
        _step(opt, params, seed)
    fresh, fresh_params = _optimizer(sparse_type=sparse_type)
    fresh.load_state_dict(opt.state_dict())
    for p, q in zip(params, fresh_params):
        q.data.copy_(p.detach())
    _assert_same(_snapshot(opt, params), _snapshot(fresh, fresh_params))


def test_a_rank_set_back_as_a_list_is_the_same_rank():
    opt, params = _optimizer(rank=(4, 4, 3, 2))
    _step(opt, params, 0)
    opt.param_groups[1]["rank"] = [4, 4, 3, 2]
    _step(opt, params, 1)


def test_a_layout_change_in_the_dense_group_is_refused_too():
    opt, params = _optimizer()
    _step(opt, params, 0)
    opt.param_groups[0]["adam_convention"] = "neuralop"
    _refused(opt, params, "adam_convention", "torch", "neuralop", group=0)


@pytest.mark.parametrize("key", sorted(set(NEW_LAYOUT) - {"adam_convention"}))
def test_plain_moments_are_laid_out_by_adam_convention_only(key):
    """A group whose parameters keep plain AdamW moments before and after the change (here a
    bias, which no setting compresses) is laid out by ``adam_convention`` alone: its
    compression settings change freely, step on and round-trip."""
    opt, params = _optimizer()
    _step(opt, params, 0)
    opt.param_groups[0][key] = NEW_LAYOUT[key]
    for seed in range(1, 4):  # across a refresh
        _step(opt, params, seed)
    fresh, fresh_params = _optimizer()
    fresh.param_groups[0][key] = NEW_LAYOUT[key]
    fresh.load_state_dict(opt.state_dict())
    for p, q in zip(params, fresh_params):
        q.data.copy_(p.detach())
    _step(opt, params, 4)
    _step(fresh, fresh_params, 4)
    _assert_same(_snapshot(opt, params), _snapshot(fresh, fresh_params))


def test_a_change_that_would_compress_a_parameter_with_plain_moments_is_refused():
    """A 4x4 weight under ``min_params`` keeps plain moments; a lower ``min_params`` would route
    it into compression, where its plain moments no longer fit."""
    small = torch.nn.Parameter(random_tensor((4, 4), False, 3, torch.float32))
    opt = TensorGRaD([{"params": [small], "min_params": 10**6}])
    _step(opt, [small], 0)
    opt.param_groups[0]["min_params"] = 1
    _refused(opt, [small], "min_params", 10**6, 1, group=0)


@pytest.mark.parametrize("key", sorted(NEW_FREE))
def test_free_setting_changes_after_a_step_keep_working_and_round_trip(key):
    opt, params = _optimizer()
    for seed in range(2):
        _step(opt, params, seed)
    for group in opt.param_groups:
        group[key] = NEW_FREE[key]
    for seed in range(2, 6):  # across a refresh
        _step(opt, params, seed)
    saved = opt.state_dict()
    fresh, fresh_params = _optimizer()
    fresh.load_state_dict(saved)
    for p, q in zip(params, fresh_params):
        q.data.copy_(p.detach())
    assert [g[key] for g in fresh.param_groups] == [NEW_FREE[key]] * 2
    _assert_same(_snapshot(opt, params), _snapshot(fresh, fresh_params))
    assert fresh.state_dict()["param_groups"] == saved["param_groups"]
    # both go on in lockstep
    for seed in range(6, 8):
        _step(opt, params, seed)
        _step(fresh, fresh_params, seed)
    _assert_same(_snapshot(opt, params), _snapshot(fresh, fresh_params))


def test_layout_change_before_the_first_step_is_taken():
    opt, params = _optimizer()
    opt.param_groups[1]["rank"] = 0.5
    opt.param_groups[1]["sparse_ratio"] = None
    _step(opt, params, 0)
    state = opt.state[params[1]]
    assert not any(k.startswith("sparse") for k in state)
    built = opt.projector_for(opt.param_groups[1])["low_rank"].compressed_shape(SHAPE)
    default = opt.projector_for({**DEFAULTS, **SETTINGS})["low_rank"].compressed_shape(SHAPE)
    assert tuple(state["low_rank_exp_avg"].shape[:-1]) == tuple(built) != tuple(default)
    _step(opt, params, 1)
    opt.param_groups[1]["rank"] = 0.25
    _refused(opt, params, "rank", 0.5, 0.25)


def test_a_group_without_state_may_change_while_another_has_stepped():
    opt, params = _optimizer()
    params[1].requires_grad_(False)
    _step(opt, params[:1], 0)  # only the dense group steps
    assert not opt.state.get(params[1])
    opt.param_groups[1]["rank"] = 0.5
    params[1].requires_grad_(True)
    _step(opt, params, 1)
    opt.param_groups[1]["rank"] = 0.25
    _refused(opt, params, "rank", 0.5, 0.25)


def test_a_group_added_later_may_change_until_it_steps():
    opt, params = _optimizer()
    _step(opt, params, 0)
    extra = torch.nn.Parameter(random_tensor(SHAPE, True, 7, torch.float32).to(torch.cfloat))
    opt.add_param_group({"params": [extra]})
    opt.param_groups[2]["sparse_type"] = "topk"
    _step(opt, params + [extra], 1)
    opt.param_groups[2]["sparse_type"] = "randk"
    _refused(opt, params + [extra], "sparse_type", "topk", "randk", group=2)


def test_after_load_state_dict_a_change_is_still_refused():
    opt, params = _optimizer(rank=0.5)
    for seed in range(2):
        _step(opt, params, seed)
    fresh, fresh_params = _optimizer()  # built with rank 0.25: the load brings the saved 0.5
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[1]["rank"] == 0.5
    fresh.param_groups[1]["rank"] = 0.25
    _refused(fresh, fresh_params, "rank", 0.5, 0.25)
    fresh.param_groups[1]["rank"] = 0.5
    _step(fresh, fresh_params, 3)


def test_a_change_before_load_state_dict_is_replaced_by_the_loaded_settings():
    opt, params = _optimizer()
    _step(opt, params, 0)
    saved = opt.state_dict()
    opt.param_groups[1]["compress"] = False
    opt.load_state_dict(saved)  # the saved groups, which built the saved state
    assert opt.param_groups[1]["compress"] is True
    _step(opt, params, 1)


def test_step_parameter_refuses_a_layout_change():
    opt, params = _optimizer()
    _step(opt, params, 0)
    opt.param_groups[1]["sparse_ratio"] = 0.1
    with pytest.raises(ValueError, match=r"param group 1 .*sparse_ratio=0\.1 \(the state was built with "
                                         r"sparse_ratio=0\.05\)"):
        opt.step_parameter(params[1], random_tensor(SHAPE, True, 5, torch.float32).to(torch.cfloat))


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))])
def test_copies_keep_the_built_layout(copier):
    opt, params = _optimizer()
    _step(opt, params, 0)
    opt.param_groups[1]["rank"] = 0.5  # pending: refused by the copy too
    copied = copier(opt)
    copied_params = [p for g in copied.param_groups for p in g["params"]]
    _refused(copied, copied_params, "rank", 0.25, 0.5)
    copied.param_groups[1]["rank"] = 0.25
    _step(copied, copied_params, 1)
    # a pickle of a version that kept no layouts: rebuilt from its groups
    state = opt.__getstate__()
    del state["_layouts"]
    older = TensorGRaD.__new__(TensorGRaD)
    older.__setstate__(copy.deepcopy(state))
    assert older._layouts[1]["rank"] == 0.5


# settings that fit no (8, 200) weight: a rank per mode of three modes, a structured mode beyond two
MISFITS = [({"rank": (3, 3, 3)}, r"Invalid rank=\(3, 3, 3\) for a tensor of shape \(8, 200\)"),
           ({"sparse_type": "structured", "sparse_mode": 7}, r"Invalid sparse_mode=7 for a tensor of shape \(8, 200\)")]


@pytest.mark.parametrize("stepped", [True, False], ids=["stepped", "not_stepped"])
@pytest.mark.parametrize("misfit, cause", MISFITS, ids=["rank", "sparse_mode"])
def test_settings_changed_to_misfit_a_plain_weight_are_refused_naming_it(misfit, cause, stepped):
    """An (8, 200) weight at rank 1.0 keeps plain moments (compressing it costs more); changed settings
    that no longer fit its shape are named with the group, the parameter and its shape,
    before anything moves, not raised bare by the routing's estimate."""
    other = torch.nn.Parameter(random_tensor((5,), False, 0, torch.float32))
    weight = torch.nn.Parameter(random_tensor((8, 200), False, 1, torch.float32))
    opt = TensorGRaD([{"params": [("bias", other)]}, {"params": [("head.weight", weight)], "min_params": 10,
                                                            "rank": 1.0}])
    params = [other, weight]
    if stepped:
        _step(opt, params, 0)
        assert not bool(opt.state[weight]["compressed"])
    group = opt.param_groups[1]
    kept = {key: group[key] for key in misfit}
    group.update(misfit)
    before = _snapshot(opt, params) if stepped else [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match=r"TensorGRaD: parameter 'head\.weight' of param group 1 \(shape "
                                         rf"\(8, 200\)\) is compressed, but its group's settings do not fit it: "
                                         rf"{cause}.* Fix the setting"):
        _step(opt, params, 1)
    if stepped:
        _assert_same(before, _snapshot(opt, params))
    else:
        assert all(torch.equal(p, q) for p, q in zip(params, before)) and not opt.state
    group.update(kept)  # set back, training goes on
    _step(opt, params, 2)


def test_a_misfit_change_to_a_compressed_weight_is_refused_as_a_layout_change():
    """Compressed moments are laid out by the rank: any other rank, fitting or not, is the
    layout change that is refused."""
    opt, params = _optimizer()
    _step(opt, params, 0)
    opt.param_groups[1]["rank"] = (3, 3, 3)
    _refused(opt, params, "rank", 0.25, (3, 3, 3))


def test_the_layout_rule_is_one_for_the_step_and_the_resume():
    """``TensorGRaD.laid_out_keys``, which the step's check and the resume's note both ask:
    nothing before a step, plain moments by ``adam_convention`` alone unless the change
    would compress them, compressed moments by every layout setting."""
    opt, params = _optimizer()
    _step(opt, params, 0)
    changed = ["adam_convention", "rank", "min_params", "lr"]  # lr lays out nothing
    plain, compressed = [(p, opt.state[p]) for p in params]
    dense, sparse = opt.param_groups
    assert TensorGRaD.laid_out_keys(0, dense, [], changed) == set()
    assert TensorGRaD.laid_out_keys(0, dense, [plain], changed) == {"adam_convention"}
    assert TensorGRaD.laid_out_keys(0, dense, [plain], ["rank"]) == set()
    assert TensorGRaD.laid_out_keys(1, sparse, [compressed], changed) == {"adam_convention", "rank", "min_params"}
    # a weight kept plain under min_params, which a lower one would compress
    small = torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 3, torch.float32).to(torch.cfloat))
    opt = TensorGRaD([{"params": [small], "min_params": 10**6}])
    _step(opt, [small], 0)
    group, stepped = opt.param_groups[0], [(small, opt.state[small])]
    assert TensorGRaD.laid_out_keys(0, group, stepped, ["rank"]) == set()
    group["min_params"] = 1
    assert TensorGRaD.laid_out_keys(0, group, stepped, ["rank", "min_params"]) == {"rank", "min_params"}
