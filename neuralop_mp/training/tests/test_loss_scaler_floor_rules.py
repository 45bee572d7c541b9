"""ComplexGradScaler's floor and growth bookkeeping: backing off exactly onto ``min_scale`` is
not a floor hit, growth forgets earlier floor hits, and turning scaling back on restarts the
growth count."""
import warnings

import pytest
import torch

from neuralop_mp.training.guarded_step import TrainingStopped
from neuralop_mp.training.loss_scaling import ComplexGradScaler


def _iteration(scaler, finite):
    """One scaled optimizer step on a complex weight whose gradient is finite or not."""
    weight = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    weight.grad = torch.full((2,), 1.0 if finite else float("inf"), dtype=torch.complex64)
    scaler.step(torch.optim.SGD([weight], lr=0.1))
    scaler.update()


def test_backing_off_exactly_onto_the_floor_is_not_a_floor_hit():
    scaler = ComplexGradScaler(init_scale=2.0, backoff_factor=0.5, min_scale=1.0, max_floor_hits=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the floor warning would raise here
        _iteration(scaler, finite=False)  # 2 * 0.5 == 1.0: a back-off that lands on the floor
    assert scaler.get_scale() == 1.0 and scaler.floor_hits == 0
    # the next overflow, now at the floor, is the first floor hit (and max_floor_hits=1 stops)
    with pytest.warns(RuntimeWarning, match="reached its floor 1"), pytest.raises(TrainingStopped):
        _iteration(scaler, finite=False)
    assert scaler.floor_hits == 1


def test_growth_of_the_scale_forgets_earlier_floor_hits():
    scaler = ComplexGradScaler(init_scale=1.0, min_scale=1.0, growth_interval=1, growth_factor=2.0,
                               max_floor_hits=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _iteration(scaler, finite=False)
        assert scaler.floor_hits == 1
        _iteration(scaler, finite=True)  # the scale grows: the overflow was transient
        assert scaler.get_scale() == 2.0 and scaler.floor_hits == 0
        _iteration(scaler, finite=False)  # backs off onto the floor: not a hit
        _iteration(scaler, finite=False)  # a hit, the first since the growth: no stop at max 2
    assert scaler.get_scale() == 1.0 and scaler.floor_hits == 1


def test_turning_scaling_back_on_restarts_the_growth_count():
    scaler = ComplexGradScaler(init_scale=4.0, growth_interval=3, growth_factor=2.0)
    _iteration(scaler, finite=True)
    _iteration(scaler, finite=True)
    assert scaler.growth_tracker == 2
    scaler.set_enabled(False)
    scaler.set_enabled(True)
    assert scaler.get_scale() == 4.0 and scaler.growth_tracker == 0
    scales = []
    for _ in range(3):
        _iteration(scaler, finite=True)
        scales.append(scaler.get_scale())
    assert scales == [4.0, 4.0, 8.0]  # three finite steps after the restart, not one
