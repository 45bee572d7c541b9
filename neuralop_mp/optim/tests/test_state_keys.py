"""What TensorGRaD's state dict carries besides torch's layout, and what its load refuses:
the parameters' shapes are a top-level key (torch's optimizers copy every group key, and
would carry a group entry into their own state dicts), a load leaves the groups with the
keys a fresh optimizer has, and the births of kept sparse moments lie in [0, the part's
step count] (a later birth gives its entry no bias correction: an infinite update)."""
import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps

SHAPE = (6, 5, 4)


def _stepped_plain_optimizer():
    """An uncompressed TensorGRaD over a weight and a bias, stepped once: a state whose
    moments torch's AdamW can read."""
    weight = torch.nn.Parameter(random_tensor(SHAPE, False, 0, torch.float32))
    bias = torch.nn.Parameter(torch.zeros(4))
    opt = TensorGRaD([weight, bias], compress=False)
    run_steps(opt, [weight, bias], [[random_tensor(SHAPE, False, 1), random_tensor((4,), False, 2)]])
    return opt, [weight, bias]


def test_listed_shapes_are_top_level_and_do_not_travel_through_torchs_adamw():
    opt, params = _stepped_plain_optimizer()
    saved = opt.state_dict()
    assert saved["param_shapes"] == [[SHAPE, (4,)]]
    assert not any("param_shapes" in group for group in saved["param_groups"])
    adamw = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params])
    adamw.load_state_dict(saved)  # torch's loader ignores top-level keys it does not know
    assert not any("param_shapes" in group for group in adamw.param_groups)
    assert "param_shapes" not in adamw.state_dict()
    assert not any("param_shapes" in group for group in adamw.state_dict()["param_groups"])


def test_a_loaded_optimizer_has_the_group_keys_of_a_fresh_one():
    """torch's load adds "differentiable" to the defaults; it is no TensorGRaD setting and used
    to join the groups from there (and every state dict saved after a resume)."""
    opt, params = _stepped_plain_optimizer()
    fresh = TensorGRaD([torch.nn.Parameter(p.detach().clone()) for p in params], compress=False)
    keys = set(fresh.param_groups[0])
    fresh.load_state_dict(opt.state_dict())
    assert set(fresh.param_groups[0]) == keys
    assert set(fresh.state_dict()["param_groups"][0]) == keys
    assert "differentiable" not in keys


@pytest.mark.parametrize("listed, message", [
    ([[SHAPE, (4,)], [(3,)]], r"Invalid 'param_shapes' in the state dict: expected one list of shapes for each of "
                              r"its 1 param group\(s\), got \[\[\(6, 5, 4\), \(4,\)\], \[\(3,\)\]\]"),
    ([[SHAPE]], r"Invalid 'param_shapes' in param group 0 of the state dict: expected one shape \(a tuple\) for "
                r"each of its 2 parameters, got \[\(6, 5, 4\)\]"),
    ([[SHAPE, (5,)]], r"Parameter 1 of param group 0 \(shape \(4,\)\): the state dict was saved for a parameter of "
                      r"shape \(5,\)"),
], ids=["group-count", "parameter-count", "shape"])
def test_listed_shapes_that_do_not_fit_are_refused_before_anything_loads(listed, message):
    opt, params = _stepped_plain_optimizer()
    saved = {**opt.state_dict(), "param_shapes": listed}
    other = TensorGRaD([torch.nn.Parameter(p.detach().clone()) for p in params], compress=False, lr=0.5)
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(saved)
    assert not other.state and other.param_groups[0]["lr"] == 0.5


# --------------------------------------------------------------------- births
def _kept_sparse_moments(p):
    return TensorGRaD([p], lr=1e-2, eps=1e-12, min_params=10, rank=None, sparse_ratio=0.25,
                      reset_sparse_moments=False, update_proj_gap=3)


def _saved_with_births():
    """A state dict 5 steps in, with a refresh at step 3 that kept moments: births 0 and 3."""
    p = torch.nn.Parameter(random_tensor(SHAPE, False, 0))
    opt = _kept_sparse_moments(p)
    run_steps(opt, [p], [[random_tensor(SHAPE, False, 10 + s)] for s in range(5)])
    saved = opt.state_dict()
    state = saved["state"][0]
    assert int(state["sparse_step"]) == 5 and set(state["sparse_birth"].tolist()) == {0, 3}
    return p, saved


def _with_birth(saved, value):
    births = saved["state"][0]["sparse_birth"].clone()
    births[0] = value
    return {**saved, "state": {0: {**saved["state"][0], "sparse_birth": births}}}


@pytest.mark.parametrize("birth", [6, 7, 2**31 - 1, -1], ids=["step+1", "step+2", "int32-max", "negative"])
def test_births_outside_the_parts_steps_are_refused_naming_the_parameter_value_and_range(birth):
    p, saved = _saved_with_births()
    q = torch.nn.Parameter(p.detach().clone())
    opt = _kept_sparse_moments(q)
    with pytest.raises(ValueError, match=rf"Parameter 0 of param group 0 \(shape \(6, 5, 4\)\): state 'sparse_birth' "
                                         rf"holds the birth {birth}, outside \[0, 5\] \(0 to the part's step count "
                                         r"'sparse_step'\)"):
        opt.load_state_dict(_with_birth(saved, birth))
    assert not opt.state


def test_births_without_the_parts_step_count_are_refused():
    p, saved = _saved_with_births()
    state = {k: v for k, v in saved["state"][0].items() if k != "sparse_step"}
    with pytest.raises(ValueError, match=r"Parameter 0 of param group 0 \(shape \(6, 5, 4\)\): state 'sparse_step' "
                                         "is missing"):
        _kept_sparse_moments(torch.nn.Parameter(p.detach().clone())).load_state_dict({**saved, "state": {0: state}})


@pytest.mark.parametrize("birth", [0, 5], ids=["first-step", "the-step-count"])
def test_births_at_the_ends_of_the_range_load_and_step_finitely(birth):
    """A birth equal to the step count is an entry born at a step that stopped before its
    count moved: its age at the next step is 1, the first step of a fresh Adam."""
    p, saved = _saved_with_births()
    q = torch.nn.Parameter(p.detach().clone())
    opt = _kept_sparse_moments(q)
    opt.load_state_dict(_with_birth(saved, birth))
    run_steps(opt, [q], [[random_tensor(SHAPE, False, 40)]])
    assert torch.isfinite(q).all() and int(opt.state[q]["sparse_step"]) == 6

