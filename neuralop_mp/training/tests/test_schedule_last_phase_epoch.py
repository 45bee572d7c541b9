"""A share schedule's last phase always gets an epoch: shares that reach 1 before it (its own
share a rounding remainder) still leave it the run's last epoch, taken from the phase before."""
import pytest

from neuralop_mp.training.schedule import PrecisionSchedule


@pytest.mark.parametrize("spec, n_epochs, boundaries, phases", [
    ("half:0.5,mixed:0.5,full:1e-9", 4, [(0, 2), (2, 3), (3, 4)], [0, 0, 1, 2]),
    ("half:0.5,mixed:0.5,full:1e-9", 2, [(0, 1), (1, 1), (1, 2)], [0, 2]),  # mixed skipped, full kept
    ("half:0.99,full:0.01", 5, [(0, 4), (4, 5)], [0, 0, 0, 0, 1]),
])
def test_the_last_phase_gets_the_last_epoch(spec, n_epochs, boundaries, phases):
    schedule = PrecisionSchedule(spec)
    assert schedule.boundaries(n_epochs) == boundaries
    assert [schedule.index_for_epoch(epoch, n_epochs) for epoch in range(n_epochs)] == phases
    assert len(schedule.phases) - 1 not in schedule.phases_without_epochs(n_epochs)
