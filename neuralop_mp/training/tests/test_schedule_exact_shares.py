"""A schedule's text holds its shares exactly: checkpoints store str(schedule), and a resume reads
it back to compare phase boundaries (12 significant digits moved the end of a 1/3 share)."""
import warnings

import pytest

from neuralop_mp.training.schedule import PrecisionPhase, PrecisionSchedule
from neuralop_mp.training.tests.tiny import tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

THIRDS = PrecisionSchedule([PrecisionPhase("half", share=1 / 3), PrecisionPhase("mixed", share=1 / 3),
                            PrecisionPhase("full")])
# what versions before exact shares wrote for THIRDS
THIRDS_12_DIGITS = "half:0.333333333333,mixed:0.333333333333,full:0.333333333333"


def _trainer(schedule, n_epochs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixedPrecisionTrainer(model=tiny_fno(), n_epochs=n_epochs, precision_schedule=schedule)


def test_text_reads_back_as_the_same_schedule_and_boundaries():
    again = PrecisionSchedule.parse(str(THIRDS))
    assert again == THIRDS
    assert again.boundaries(3000) == THIRDS.boundaries(3000) == [(0, 1000), (1000, 2000), (2000, 3000)]


@pytest.mark.parametrize("text, written", [
    ("half:0.25,mixed:0.5,full", "half:0.25,mixed:0.5,full:0.25"),
    ("half:0.1,mixed:0.2,full", "half:0.1,mixed:0.2,full:0.7"),
    ("full:1", "full:1"),
    ("half@3/notanh,full", "half@3/notanh,full"),
])
def test_ordinary_shares_stay_short(text, written):
    assert str(PrecisionSchedule.parse(text)) == written


def test_resume_of_the_same_schedule_finds_no_moved_boundary():
    trainer = _trainer(THIRDS, 3000)
    assert trainer._first_moved_epoch(str(THIRDS), 3000, 1000) is None


def test_an_older_checkpoints_rounded_text_is_the_same_schedule():
    assert THIRDS.written_as(THIRDS_12_DIGITS) and THIRDS.written_as(str(THIRDS))
    assert not THIRDS.written_as("half:0.25,mixed:0.5,full:0.25")
    trainer = _trainer(THIRDS, 3000)
    assert trainer._first_moved_epoch(THIRDS_12_DIGITS, 3000, 1000) is None
    # a schedule that really differs still moves
    assert trainer._first_moved_epoch("half:0.25,mixed:0.5,full:0.25", 3000, 1000) == 2000
