"""Checks made when a group joins or a state dict loads: sparse counts, zero-size weights,
settings that do not fit a weight's shape, dtypes of a resumed state, group keys,
malformed state."""
import copy
import inspect
import uuid
import warnings

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.sparse_projector import SparseProjector
from neuralop_mp.optim.tests.helpers import random_tensor


def test_sparse_count_is_free_of_float_error():
    assert SparseProjector(0.07).n_selected((10, 10)) == 7  # 0.07 * 100 = 7.000000000000001
    assert SparseProjector(0.05).n_selected((6, 10)) == 3
    assert SparseProjector(0.07).n_selected((3, 3)) == 1  # at least one
    assert SparseProjector(0.07, "structured").n_selected((100, 3)) == 7


@pytest.mark.parametrize("sparse_type", ["randk", "structured"])
def test_checkpoint_with_the_earlier_ceiling_count_loads_and_steps(sparse_type):
    # earlier versions kept ceil(0.07 * 300) = 22 entries (ceil(0.07 * 100) = 8 slices): one more
    shape, settings = (100, 3), dict(rank=None, sparse_ratio=0.07, sparse_type=sparse_type, min_params=10,
                                     update_proj_gap=2)
    p = torch.nn.Parameter(random_tensor(shape, False, 0, torch.float32))
    opt = TensorGRaD([p], **settings)
    p.grad = random_tensor(shape, False, 1, torch.float32)
    opt.step()
    saved = opt.state_dict()
    state = saved["state"][0]
    count = state["sparse_basis_indices"].numel()
    assert count == (21 if sparse_type == "randk" else 7)
    total = 300 if sparse_type == "randk" else 100
    spare = [i for i in range(total) if i not in set(state["sparse_basis_indices"].tolist())][0]
    state["sparse_basis_indices"] = torch.cat([state["sparse_basis_indices"],
                                               torch.tensor([spare], dtype=torch.int32)]).sort().values
    for key in ("sparse_exp_avg", "sparse_exp_avg_sq"):
        moment = state[key]
        state[key] = torch.cat([moment, torch.full_like(moment[:1], 1e-3)])
    resumed = TensorGRaD([p], **settings)
    resumed.load_state_dict(saved)
    assert resumed.state[p]["sparse_basis_indices"].numel() == count + 1
    for seed in (2, 3):  # the second step refreshes
        p.grad = random_tensor(shape, False, seed, torch.float32)
        resumed.step()
        expected = count + 1 if seed == 2 else count
        assert resumed.state[p]["sparse_basis_indices"].numel() == expected
        assert resumed.state[p]["sparse_exp_avg"].shape[0] == expected
    assert torch.isfinite(p).all()


def test_sparse_count_of_another_model_size_fails_to_load():
    p = torch.nn.Parameter(random_tensor((100, 3), False, 0, torch.float32))
    opt = TensorGRaD([p], rank=None, min_params=10)
    p.grad = torch.ones_like(p)
    opt.step()
    saved = opt.state_dict()
    other = torch.nn.Parameter(random_tensor((100, 4), False, 0, torch.float32))
    with pytest.raises(ValueError, match=r"shape \(100, 4\)\): state 'sparse_basis_indices' has shape \(15,\), "
                                         r"expected \(20,\)"):
        TensorGRaD([other], rank=None, min_params=10).load_state_dict(saved)


@pytest.mark.parametrize("shape", [(0, 5, 5), (5, 5, 0)])
def test_zero_size_weight_takes_the_plain_path_and_round_trips(shape):
    def make(param):
        return TensorGRaD([{"params": [param], "tensorgrad": True, "sparse_ratio": 0.1}])

    p = torch.nn.Parameter(torch.zeros(shape, dtype=torch.complex64))
    opt = make(p)
    assert not opt.routes_to_compression(p, opt.param_groups[0])
    p.grad = torch.zeros_like(p)
    opt.step()
    assert not bool(opt.state[p]["compressed"])
    resumed = make(p)
    resumed.load_state_dict(opt.state_dict())
    p.grad = torch.zeros_like(p)
    resumed.step()
    assert int(resumed.state[p]["step"]) == 2


def test_earlier_compressed_state_of_a_zero_size_weight_loads():
    p = torch.nn.Parameter(torch.zeros((0, 5, 5), dtype=torch.complex64))
    opt = TensorGRaD([{"params": [p], "tensorgrad": True}])
    saved = opt.state_dict()
    saved["state"] = {0: {"step": torch.tensor(2.0), "compressed": torch.tensor(True), "seed": torch.tensor(1),
                          "low_rank_basis_factor_1": torch.zeros(5, 1, 2), "low_rank_exp_avg": torch.zeros(0, 1, 1, 2),
                          "low_rank_exp_avg_sq": torch.zeros(0, 1, 1), "low_rank_step": torch.tensor(2.0)}}
    opt.load_state_dict(saved)
    assert not bool(opt.state[p]["compressed"]) and sorted(opt.state[p]) == ["compressed", "seed", "step"]
    p.grad = torch.zeros_like(p)
    opt.step()
    assert int(opt.state[p]["step"]) == 3


def test_settings_that_do_not_fit_a_shape_fail_when_the_group_joins():
    p, q = torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(10, 10, 10))
    with pytest.raises(ValueError, match=r"parameter 0 of param group 1 \(shape \(10, 10, 10\)\).*"
                                         r"Invalid rank=\(5, 5\)"):
        TensorGRaD([{"params": [p]}, {"params": [q], "rank": [5, 5]}], lr=0.1)
    opt = TensorGRaD([p], lr=0.1)
    with pytest.raises(ValueError, match=r"parameter 'w' of param group 1 \(shape \(30, 40\)\).*"
                                         r"Invalid sparse_mode=2"):
        opt.add_param_group({"params": [("w", torch.nn.Parameter(torch.zeros(30, 40)))],
                             "sparse_type": "structured", "sparse_mode": 2})
    assert len(opt.param_groups) == 1  # unchanged
    # not compressed: the settings do not apply to it
    TensorGRaD([{"params": [q], "rank": [5, 5], "compress": False}])
    TensorGRaD([{"params": [q], "rank": [5, 5], "min_params": 2000}])


@pytest.mark.parametrize("shape, dtype", [((7,), torch.float32), ((30, 40), torch.float32),
                                          ((8, 6, 5, 4), torch.complex64)])
def test_fp32_checkpoint_resumes_a_float64_model(shape, dtype):
    wide = torch.float64 if dtype == torch.float32 else torch.complex128
    settings = dict(min_params=10, update_proj_gap=3, weight_decay=0.01)
    p = torch.nn.Parameter(random_tensor(shape, dtype.is_complex, 0, torch.float32).to(dtype))
    opt = TensorGRaD([p], **settings)
    for seed in (1, 2):
        p.grad = random_tensor(shape, dtype.is_complex, seed, torch.float32).to(dtype)
        opt.step()
    saved = opt.state_dict()
    # the reference: the same state cast by hand to the wide dtypes
    cast = {key: (value.to(torch.promote_types(value.dtype, torch.float64)) if value.dim() and
                  (value.is_floating_point() or value.is_complex()) else value)
            for key, value in saved["state"][0].items()}
    runs = []
    for state in (saved["state"][0], cast):
        q = torch.nn.Parameter(p.detach().to(wide))
        resumed = TensorGRaD([q], **settings)
        resumed.load_state_dict({"state": {0: state}, "param_groups": saved["param_groups"]})
        for seed in (3, 4, 5):  # across the refresh at step 3
            q.grad = random_tensor(shape, dtype.is_complex, seed).to(wide)
            resumed.step()
        floats = {k: v.dtype for k, v in resumed.state[q].items() if v.dim() and v.is_floating_point()}
        assert set(floats.values()) == {torch.float64}, floats
        runs.append(q.detach())
    assert torch.isfinite(runs[0]).all()
    assert torch.equal(runs[0], runs[1])


def test_16_bit_moment_in_a_checkpoint_is_cast_to_the_optimizers_dtype():
    p = torch.nn.Parameter(torch.randn(5))
    p.grad = torch.randn(5)
    opt = TensorGRaD([p])
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"] = saved["state"][0]["exp_avg"].to(torch.float16)
    resumed = TensorGRaD([p])
    resumed.load_state_dict(saved)
    assert resumed.state[p]["exp_avg"].dtype == torch.float32
    resumed.step()


REFUSED_TORCH_VALUES = [("maximize", True), ("amsgrad", True), ("fused", True), ("capturable", True),
                        ("differentiable", True), ("decoupled_weight_decay", False)]


@pytest.mark.parametrize("key, value", REFUSED_TORCH_VALUES)
def test_torch_adamw_values_tensorgrad_does_not_match_are_refused(key, value):
    p = torch.nn.Parameter(torch.zeros(5))
    if key == "decoupled_weight_decay":  # Adam's L2 penalty: refused only where there is a decay
        decay, allowed = " with weight_decay=0.1", "True or leaving it out, or any with weight_decay=0"
    else:
        decay, allowed = "", "False, None or leaving it out"
    message = rf"Invalid {key}={value}{decay}: TensorGRaD does not support {key}={value}, .*\(allowed: {allowed}\)"
    with pytest.raises(ValueError, match=message):
        TensorGRaD([{"params": [p], key: value}], weight_decay=0.1)
    with pytest.raises(ValueError, match=message):
        TensorGRaD([p], weight_decay=0.1, **{key: value})
    with pytest.raises(ValueError, match=message):
        TensorGRaD([{"params": [p], key: value, "weight_decay": 0.1}])
    opt = TensorGRaD([p], weight_decay=0.1)
    with pytest.raises(ValueError, match=key):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], key: value})
    assert len(opt.param_groups) == 1
    TensorGRaD([{"params": [p], key: not value}], weight_decay=0.1)  # asking for nothing is fine
    TensorGRaD([p], weight_decay=0.1, **{key: not value})
    if key == "decoupled_weight_decay":  # no decay: L2 and decoupled are the same
        TensorGRaD([{"params": [p], key: value}])
        opt = TensorGRaD([p], **{key: value})
        # the constructor's keyword against a group's own decay, in the constructor and added later
        q = torch.nn.Parameter(torch.zeros(3))
        with pytest.raises(ValueError, match=message):
            TensorGRaD([{"params": [p]}, {"params": [q], "weight_decay": 0.1}], **{key: value})
        with pytest.raises(ValueError, match=message):
            opt.add_param_group({"params": [q], "weight_decay": 0.1})
        opt.add_param_group({"params": [q], "weight_decay": 0.1, key: True})  # the group's own keyword wins
        assert copy.deepcopy(opt)._decoupled_weight_decay is value
    else:
        with pytest.raises(ValueError, match=message):
            TensorGRaD([p], **{key: value})


def test_torch_adamw_keywords_are_accepted_with_torchs_defaults():
    torch_keywords = inspect.signature(torch.optim.AdamW.__init__).parameters
    ours = inspect.signature(TensorGRaD.__init__).parameters
    for key in ("maximize", "foreach", "capturable", "differentiable", "fused", "amsgrad"):
        assert ours[key].kind is inspect.Parameter.KEYWORD_ONLY
        assert ours[key].default == torch_keywords[key].default, key
    assert ours["decoupled_weight_decay"].default is True  # what torch's AdamW groups hold
    p = torch.nn.Parameter(torch.zeros(5))
    for foreach in (None, False, True):
        opt = TensorGRaD([p], maximize=False, foreach=foreach, capturable=False, differentiable=False, fused=None,
                         amsgrad=False, decoupled_weight_decay=True)
        assert opt.defaults == TensorGRaD([p]).defaults  # no settings: groups do not get them
        TensorGRaD([{"params": [p], "foreach": foreach, "fused": False}])
    # beside upstream-style groups (the constructor's explicit keywords are settings only)
    TensorGRaD([{"params": [torch.nn.Parameter(torch.zeros(4, 4, 4))], "tensorgrad": True}], foreach=None)


def test_torch_adamw_groups_join_without_warnings():
    p = torch.nn.Parameter(torch.zeros(5))
    for adam_class in (torch.optim.AdamW, torch.optim.Adam):  # Adam: decoupled_weight_decay=False, no decay
        groups = adam_class([p], foreach=False).param_groups
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opt = TensorGRaD(groups)
        assert opt.param_groups[0]["foreach"] is False
        assert opt.param_groups[0]["weight_decay"] == groups[0]["weight_decay"]
    with pytest.raises(ValueError, match="decoupled_weight_decay=False with weight_decay=0.1"):
        TensorGRaD(torch.optim.Adam([p], weight_decay=0.1).param_groups)
    TensorGRaD(torch.optim.Adam([p], weight_decay=0.1, decoupled_weight_decay=True).param_groups)


def test_unknown_group_key_warns_at_each_construction_and_bookkeeping_keys_do_not():
    typo = f"weight_deacy_{uuid.uuid4().hex[:8]}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # each time, the same key included
        TensorGRaD([{"params": [torch.nn.Parameter(torch.zeros(5))], typo: 0.5}])
        TensorGRaD([{"params": [torch.nn.Parameter(torch.zeros(5))], typo: 0.5}])
        TensorGRaD([{"params": [("b", torch.nn.Parameter(torch.zeros(5)))], "initial_lr": 1e-3, "name": "bias",
                     "max_lr": 1e-2, "min_lr": 1e-5, "base_momentum": 0.85, "max_momentum": 0.95,
                     "swa_lr": 1e-3}])
        opt = TensorGRaD(torch.nn.Linear(3, 3).named_parameters())
        TensorGRaD(opt.param_groups)  # groups of another optimizer carry param_names
        TensorGRaD([{"params": [torch.nn.Parameter(torch.zeros(5))], "tensorgrad": False}])
    named = [w for w in caught if "unknown param-group key" in str(w.message)]
    assert len(named) == 2 and all(repr(typo) in str(w.message) for w in named)
    assert all(w.filename == __file__ for w in named)  # the user's line, not the optimizer's or torch's
    assert named[0].lineno != named[1].lineno


def test_unknown_group_key_warns_once_per_line_and_group_under_the_default_filter():
    typo = f"weight_deacy_{uuid.uuid4().hex[:8]}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):  # group 0 of each: named once
            TensorGRaD([{"params": [torch.nn.Parameter(torch.zeros(5))], typo: 0.5}])
        opt = TensorGRaD([torch.nn.Parameter(torch.zeros(5))])
        for _ in range(2):  # another line, and groups 1 and 2: each named
            opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(5))], typo: 0.5})
    named = [str(w.message) for w in caught if repr(typo) in str(w.message)]
    assert [text.split(f"{typo!r} ")[1].split(";")[0] for text in named] == [
        "of param group 0", "of param group 1", "of param group 2"]
    assert [w.filename for w in caught if repr(typo) in str(w.message)] == [__file__] * 3


def _dense_state():
    p = torch.nn.Parameter(torch.randn(5))
    p.grad = torch.randn(5)
    opt = TensorGRaD([p])
    opt.step()
    return p, opt.state_dict()


def test_malformed_state_names_the_key():
    p, saved = _dense_state()
    del saved["state"][0]["exp_avg_sq"]
    with pytest.raises(ValueError, match=r"state 'exp_avg_sq' is missing"):
        TensorGRaD([p]).load_state_dict(saved)
    p, saved = _dense_state()
    saved["state"][0]["exp_avg"] = [1.0] * 5
    with pytest.raises(ValueError, match=r"state 'exp_avg' is a list, expected a tensor"):
        TensorGRaD([p]).load_state_dict(saved)
    w = torch.nn.Parameter(torch.randn(30, 40))
    w.grad = torch.randn(30, 40)
    opt = TensorGRaD([w])
    opt.step()
    saved = opt.state_dict()
    del saved["state"][0]["sparse_exp_avg_sq"]
    with pytest.raises(ValueError, match=r"state 'sparse_exp_avg_sq' is missing"):
        TensorGRaD([w]).load_state_dict(saved)


def test_keeping_sparse_moments_no_longer_warns_of_its_bias_correction():
    # each kept sparse entry is now bias-corrected by its own age (test_tensorgrad_mends.py),
    # so the warning of inflated first updates is gone
    p = torch.nn.Parameter(torch.zeros(30, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TensorGRaD([p], reset_sparse_moments=False)
        TensorGRaD([p], reset_sparse_moments=False, sparse_ratio=None)  # no sparse part
