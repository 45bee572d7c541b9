"""ComplexGradScaler in hand-written loops, used as torch.amp.GradScaler is: several
optimizers, the misuse torch refuses, checked loaded states, lists of outputs; and the
precision schedule's integer arguments."""
import numpy as np
import pytest
import torch

from neuralop_mp import ComplexGradScaler, PrecisionSchedule


def two_optimizers():
    a = torch.nn.Parameter(torch.ones(3, dtype=torch.cfloat))
    b = torch.nn.Parameter(torch.ones(3))
    return a, b, torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)


def backward(scaler, a, b):
    scaler.scale((a.abs() ** 2).sum() + (b ** 2).sum()).backward()


def test_each_optimizer_is_unscaled_and_stepped():
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(init_scale=1024.0)
    backward(scaler, a, b)
    assert scaler.step(o1) is True and scaler.step(o2) is True
    scaler.update()
    # gradient 2, lr 0.1: both 1 -> 0.8 (the second optimizer's gradient was stepped still scaled before)
    assert torch.allclose(a.detach(), torch.full((3,), 0.8 + 0j))
    assert torch.allclose(b.detach(), torch.full((3,), 0.8))
    assert (scaler.total_steps, scaler.skipped_steps, scaler.get_scale()) == (1, 0, 1024.0)


def test_unscale_is_once_per_optimizer_and_before_its_step():
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(init_scale=4.0)
    backward(scaler, a, b)
    assert scaler.unscale_(o1) is False and scaler.unscale_(o2) is False  # torch allows one per optimizer
    assert torch.allclose(b.grad, torch.full((3,), 2.0))
    with pytest.raises(RuntimeError, match="unscale_\\(\\) was already called on this optimizer"):
        scaler.unscale_(o1)
    scaler.step(o1)
    scaler.step(o2)
    assert torch.allclose(b.detach(), torch.full((3,), 0.8))  # not divided a second time
    with pytest.raises(RuntimeError, match="unscale_\\(\\) is being called after step\\(\\)"):
        scaler.unscale_(o1)
    scaler.update()


@pytest.mark.parametrize("bad", [0, 1])
def test_a_non_finite_gradient_of_either_optimizer_skips_that_one_and_backs_off_once(bad):
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(init_scale=1024.0)
    backward(scaler, a, b)
    (a, b)[bad].grad[0] = float("nan")
    assert [scaler.step(o1), scaler.step(o2)] == [bad != 0, bad != 1]
    scaler.update()
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    stepped, skipped = ((a, b)[1 - bad], (a, b)[bad])
    assert torch.allclose(skipped.detach().real, torch.ones(3))
    assert torch.allclose(stepped.detach().real, torch.full((3,), 0.8))
    assert scaler.get_scale() == 512.0  # backed off once for the iteration
    assert (scaler.total_steps, scaler.skipped_steps, scaler.consecutive_skips, scaler.last_step_skipped) == (
        1, 1, 1, True)
    # a finite iteration after it resets the run of skips
    o1.zero_grad(), o2.zero_grad()
    backward(scaler, a, b)
    assert scaler.step(o1) and scaler.step(o2)
    scaler.update()
    assert (scaler.total_steps, scaler.skipped_steps, scaler.consecutive_skips, scaler.last_step_skipped) == (
        2, 1, 0, False)


def test_a_second_step_before_update_is_refused():
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(init_scale=4.0)
    backward(scaler, a, b)
    scaler.step(o1)
    after_first = a.detach().clone()
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called .* since the last update\\(\\)"):
        scaler.step(o1)
    assert torch.equal(a.detach(), after_first) and scaler.total_steps == 1
    scaler.update()
    o1.zero_grad()
    backward(scaler, a, b)
    assert scaler.step(o1) is True  # allowed again after update()


def test_step_without_backward_and_update_without_step_are_refused_when_scaling():
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(init_scale=4.0, growth_interval=1)
    with pytest.raises(RuntimeError, match="call scaler.scale\\(loss\\).backward\\(\\) first"):
        scaler.step(o1)
    assert torch.equal(a.detach(), torch.ones(3, dtype=torch.cfloat)) and scaler.total_steps == 0
    with pytest.raises(RuntimeError, match="update\\(\\) found no step\\(\\) since the last update\\(\\)"):
        scaler.update()
    assert scaler.get_scale() == 4.0  # did not grow
    # a non-finite loss: skip_step, no backward, then step and update as the trainer does
    scaler.skip_step()
    assert scaler.step(o1) is False and scaler.step(o2) is False
    scaler.update()
    assert (scaler.get_scale(), scaler.skipped_steps, scaler.total_steps) == (4.0, 1, 1)


def test_disabled_scaler_steps_an_optimizer_without_gradients():
    """update_in_backward (scaling off) leaves no gradients for the step: still a step."""
    a, b, o1, o2 = two_optimizers()
    scaler = ComplexGradScaler(enabled=False)
    assert scaler.step(o1) is True
    scaler.update()
    assert (scaler.total_steps, scaler.skipped_steps) == (1, 0)


@pytest.mark.parametrize("key, value, error, message", [
    ("enabled", "no", TypeError, "Invalid enabled='no'; allowed values: True, False"),
    ("scale", float("nan"), ValueError, "Invalid scale=nan"),
    ("scale", -3.0, ValueError, "Invalid scale=-3.0"),
    ("growth_interval", 0, ValueError, "Invalid growth_interval=0; allowed values: integers >= 1"),
    ("backoff_factor", 2.0, ValueError, "Invalid backoff_factor=2.0"),
    ("growth_factor", 0.5, ValueError, "Invalid growth_factor=0.5"),
    ("min_scale", 1e9, ValueError, "Invalid min_scale=1000000000.0"),
    ("max_floor_hits", 0, ValueError, "Invalid max_floor_hits=0"),
    ("total_steps", -1, ValueError, "Invalid total_steps=-1; allowed values: integers >= 0"),
    ("skipped_steps", 1.5, TypeError, "Invalid skipped_steps=1.5"),
])
def test_load_state_dict_checks_what_the_constructor_checks(key, value, error, message):
    state = ComplexGradScaler(init_scale=1024.0).state_dict()
    target = ComplexGradScaler(init_scale=2.0 ** 16)
    before = dict(vars(target))
    with pytest.raises(error, match=message):
        target.load_state_dict(dict(state, **{key: value}))
    assert {k: v for k, v in vars(target).items() if k != "_per_optimizer"} == {
        k: v for k, v in before.items() if k != "_per_optimizer"}  # nothing half-loaded


def test_a_state_without_the_optional_keys_still_loads():
    saved = ComplexGradScaler(init_scale=512.0).state_dict()
    for key in ("min_scale", "max_floor_hits", "floor_hits"):
        del saved[key]
    scaler = ComplexGradScaler()
    scaler.load_state_dict(saved)
    assert (scaler.get_scale(), scaler.min_scale, scaler.max_floor_hits, scaler.floor_hits) == (512.0, 1.0, 10, 0)


def test_scale_takes_lists_and_tuples_as_torch_does():
    scaler = ComplexGradScaler(init_scale=8.0)
    x, y, z = torch.tensor(1.0), torch.tensor([2.0, 3.0]), torch.tensor(0.5j)
    scaled = scaler.scale([x, (y, z)])
    assert isinstance(scaled, list) and isinstance(scaled[1], tuple)
    assert torch.equal(scaled[0], x * 8) and torch.equal(scaled[1][0], y * 8) and torch.equal(scaled[1][1], z * 8)
    reference = torch.amp.GradScaler("cpu", init_scale=8.0).scale([x, (y, z)])
    assert torch.equal(reference[1][0], scaled[1][0])
    outputs = (x, y)
    assert ComplexGradScaler(enabled=False).scale(outputs) is outputs


@pytest.mark.parametrize("bad", [2.7, True, "3", None])
def test_schedule_boundaries_take_integer_epoch_counts_only(bad):
    schedule = PrecisionSchedule.parse("half@10,mixed@30,full")
    with pytest.raises(TypeError, match=f"Invalid n_epochs={bad!r}; allowed values: integers >= 1"):
        schedule.boundaries(bad)
    with pytest.raises(TypeError, match=f"Invalid n_epochs={bad!r}"):
        schedule.check_fits(bad)
    with pytest.raises(TypeError, match=f"Invalid n_epochs={bad!r}"):
        schedule.phase_for_epoch(0, bad)


def test_schedule_epoch_must_be_an_integer():
    schedule = PrecisionSchedule.parse("half@10,mixed@30,full")
    with pytest.raises(TypeError, match=r"Invalid epoch=4\.5; allowed values: integers in \[0, n_epochs=40\)"):
        schedule.phase_for_epoch(4.5, 40)
    assert schedule.phase_for_epoch(np.int64(12), np.int64(40)).mode == "mixed"
    assert schedule.boundaries(np.int64(40)) == [(0, 10), (10, 30), (30, 40)]
