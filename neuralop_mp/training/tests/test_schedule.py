"""PrecisionSchedule: parsing, validation, and which phase each epoch runs in."""
import pytest
import torch

from neuralop_mp.build_steps import parse_precision_schedule
from neuralop_mp.training.schedule import PrecisionPhase, PrecisionSchedule

PAPER = "half:0.25,mixed:0.5,full:0.25"


def modes(schedule, n_epochs):
    return [schedule.phase_for_epoch(e, n_epochs).mode for e in range(n_epochs)]


def test_paper_preset_is_the_papers_three_phases():
    schedule = PrecisionSchedule.parse("paper")
    assert schedule == PrecisionSchedule.parse(PAPER) == PrecisionSchedule.paper()
    half, mixed, full = schedule
    assert (half.mode, half.share, half.autocast, half.stabilizer) == ("half", 0.25, True, "auto")
    assert (mixed.mode, mixed.share, mixed.autocast, mixed.stabilizer) == ("mixed", 0.5, True, None)
    assert (full.mode, full.share, full.autocast, full.stabilizer) == ("full", 0.25, False, None)
    # tanh where the paper needed it (fp16 overflows in FFTs); bf16 has float32's range
    assert half.stabilizer_for(torch.float16) == "tanh" and half.stabilizer_for(torch.bfloat16) is None
    assert mixed.stabilizer_for(torch.float16) is None


def test_explicit_stabilizer_options_override_auto():
    forced, off = PrecisionSchedule.parse("half:0.5/tanh,half:0.5/notanh")
    assert forced.stabilizer_for(torch.bfloat16) == "tanh" and off.stabilizer_for(torch.float16) is None
    assert PrecisionSchedule.parse("mixed/autotanh")[0].stabilizer_for(torch.float16) == "tanh"


def test_paper_boundaries_at_500_epochs_match_the_paper():
    # the authors switched at epochs 125 and 375 of 500
    assert PrecisionSchedule.paper().boundaries(500) == [(0, 125), (125, 375), (375, 500)]


@pytest.mark.parametrize("n_epochs, expected", [
    (1, ["full"]),
    (2, ["mixed", "full"]),
    (3, ["mixed", "mixed", "full"]),
    (4, ["half", "mixed", "mixed", "full"]),
    (5, ["half", "mixed", "mixed", "full", "full"]),
    (10, ["half"] * 2 + ["mixed"] * 5 + ["full"] * 3),
])
def test_share_boundaries_round_down_for_several_epoch_counts(n_epochs, expected):
    """Phase k ends at floor(cumulative share * n_epochs); the last phase always runs."""
    assert modes(PrecisionSchedule.paper(), n_epochs) == expected


@pytest.mark.parametrize("n_epochs", range(1, 40))
def test_every_epoch_has_exactly_one_phase_and_phases_never_go_back(n_epochs):
    schedule = PrecisionSchedule.parse("half:0.1,mixed:0.3,half:0.2,full:0.4")
    bounds = schedule.boundaries(n_epochs)
    assert bounds[0][0] == 0 and bounds[-1][1] == n_epochs
    assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(bounds, bounds[1:]))
    indices = [schedule.index_for_epoch(e, n_epochs) for e in range(n_epochs)]
    assert indices == sorted(indices) and indices[-1] == len(schedule) - 1
    # each phase's length is within one epoch of its exact share
    for phase, (start, end) in zip(schedule, bounds):
        assert abs((end - start) - phase.share * n_epochs) < 1 + 1e-9


def test_shares_that_are_inexact_in_binary_still_split_exactly():
    # 0.1 + 0.2 != 0.3 in floating point; 0.3 * 10 = 2.9999999999999996
    schedule = PrecisionSchedule.parse("half:0.1,mixed:0.2,full:0.7")
    assert schedule.boundaries(10) == [(0, 1), (1, 3), (3, 10)]


def test_end_epoch_schedule_and_open_last_phase():
    schedule = PrecisionSchedule.parse("half@3/notanh,mixed@5,full")
    assert modes(schedule, 7) == ["half"] * 3 + ["mixed"] * 2 + ["full"] * 2
    assert schedule[0].stabilizer is None
    # a shorter run never reaches the later phases
    assert modes(schedule, 2) == ["half", "half"]


def test_last_share_may_be_omitted_and_takes_the_rest():
    schedule = PrecisionSchedule.parse("half:0.3,full")
    assert schedule[1].share == pytest.approx(0.7)


def test_per_phase_options_override_defaults_and_round_trip_through_str():
    schedule = PrecisionSchedule.parse("half:0.5/notanh/noautocast,full:0.5/tanh/autocast")
    half, full = schedule
    assert (half.stabilizer, half.autocast) == (None, False)
    assert (full.stabilizer, full.autocast) == ("tanh", True)
    assert PrecisionSchedule.parse(str(schedule)) == schedule
    assert PrecisionSchedule.parse(str(PrecisionSchedule.paper())) == PrecisionSchedule.paper()


def test_constant_schedule():
    schedule = PrecisionSchedule.constant("mixed")
    assert len(schedule) == 1 and modes(schedule, 3) == ["mixed"] * 3
    assert schedule == PrecisionSchedule.parse("mixed")
    assert PrecisionSchedule.constant("full").is_full
    assert not PrecisionSchedule.paper().is_full


@pytest.mark.parametrize("value", [None, "", "none", "None"])
def test_from_config_none_means_no_schedule(value):
    assert PrecisionSchedule.from_config(value) is None


def test_from_config_accepts_strings_lists_and_schedules():
    paper = PrecisionSchedule.paper()
    assert PrecisionSchedule.from_config(PAPER) == paper
    assert PrecisionSchedule.from_config(paper) is paper
    assert PrecisionSchedule.from_config(["half:0.25", "mixed:0.5", "full:0.25"]) == paper
    assert PrecisionSchedule.from_config([("half", 0.25), ("mixed", 0.5), ("full", 0.25)]) == paper
    assert PrecisionSchedule.from_config(
        [{"mode": "half", "share": 0.25}, {"mode": "mixed", "share": 0.5}, PrecisionPhase("full", 0.25)]
    ) == paper


@pytest.mark.parametrize("text, message", [
    ("hlaf:0.5,full:0.5", r"Invalid precision phase 1 mode='hlaf'; allowed values: 'full', 'mixed', 'half'"),
    ("half:0.5,full:0.4", r"sum to 0.9; they must sum to 1"),
    ("half:0.5,full:0.6", r"sum to 1.1"),
    ("half:0.5,,full:0.5", r"empty phase"),
    (",", r"empty phase"),
    ("half:abc,full", r"Invalid share 'abc' in precision phase 1"),
    ("half@x,full", r"Invalid end epoch 'x'"),
    # a digit to str.isdigit, not to int()
    ("half@²,full", r"Invalid end epoch '²' in precision phase 1 \('half@²'\); expected an integer"),
    ("half@5,mixed@3,full", r"end epochs \[5, 3\] must be strictly increasing"),
    ("half@5,mixed@5,full", r"strictly increasing"),
    ("half:0.5,full@3", r"give every phase a share"),
    ("half,full:0.5", r"give every phase a share"),
    ("half,full@3", r"only the last phase may omit"),
    ("half:0.5/tnah,full", r"Invalid precision phase 1 option='tnah'; allowed values: 'tanh', 'autotanh', 'notanh'"),
    ("half:1.0,full", r"nothing is left for the last phase 'full'"),
    ("half:0,full:1", r"a share must be in \(0, 1\]"),
    ("half:-0.5,full:1.5", r"a share must be in \(0, 1\]"),
])
def test_invalid_schedules_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        PrecisionSchedule.parse(text)


@pytest.mark.parametrize("text, hint", [("papr", " Did you mean: 'paper'?"), ("hlaf", " Did you mean: 'half'?"),
                                        ("sometimes", "")])
def test_a_single_unknown_word_offers_modes_presets_and_phases(text, hint):
    message = (f"Invalid precision schedule {text!r}; allowed: a mode ('full', 'mixed', 'half'), a preset "
               f"('paper') or phases such as 'half:0.25,mixed:0.5,full:0.25'.{hint}")
    with pytest.raises(ValueError) as error:
        PrecisionSchedule.parse(text)
    assert str(error.value) == message
    # as `neuralop-mp train --opt.precision_schedule papr` shows it
    with pytest.raises(ValueError) as error:
        parse_precision_schedule(text)
    assert str(error.value) == f"Invalid opt.precision_schedule={text!r}: {message}"


def test_shares_within_tolerance_are_accepted():
    PrecisionSchedule.parse("half:0.3333333,mixed:0.3333333,full:0.3333334")
    with pytest.raises(ValueError, match="sum to"):
        PrecisionSchedule.parse("half:0.333,mixed:0.333,full:0.333")


def test_invalid_phase_fields():
    with pytest.raises(ValueError, match="A precision schedule needs at least one phase"):
        PrecisionSchedule([])
    with pytest.raises(ValueError, match="Invalid precision phase stabilizer='clip'; allowed values: None, 'tanh', 'auto'"):
        PrecisionPhase("half", 1.0, stabilizer="clip")
    with pytest.raises(ValueError, match="either a share or an end_epoch"):
        PrecisionPhase("half", share=0.5, end_epoch=3)
    with pytest.raises(ValueError, match="end_epoch=0"):
        PrecisionPhase("half", end_epoch=0)
    with pytest.raises(TypeError, match="autocast='yes'"):
        PrecisionPhase("half", 1.0, autocast="yes")
    with pytest.raises(TypeError, match="opt.precision_schedule=3"):
        PrecisionSchedule.from_config(3)


def test_phase_for_epoch_rejects_epochs_outside_the_run():
    with pytest.raises(ValueError, match="epoch=4"):
        PrecisionSchedule.paper().phase_for_epoch(4, 4)
    with pytest.raises(ValueError, match="n_epochs=0"):
        PrecisionSchedule.paper().boundaries(0)
