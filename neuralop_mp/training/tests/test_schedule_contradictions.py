"""A phase naming two options that set the same field otherwise (``half/tanh/notanh``) is refused,
naming both: it silently kept the last. The same option twice, or options of different fields,
stay as they were."""
import pytest

from neuralop_mp.build_steps import parse_precision_schedule
from neuralop_mp.training.schedule import PrecisionSchedule


@pytest.mark.parametrize("text, first, second, field", [
    ("half/tanh/notanh", "tanh", "notanh", "stabilizer"),
    ("half/notanh/TANH", "notanh", "tanh", "stabilizer"),
    ("mixed/tanh/autotanh", "tanh", "autotanh", "stabilizer"),
    ("mixed:0.5/autocast/noautocast,full:0.5", "autocast", "noautocast", "autocast"),
])
def test_contradictory_options_in_one_phase_are_refused_naming_both(text, first, second, field):
    phase = text.split(",")[0]
    with pytest.raises(ValueError) as raised:
        PrecisionSchedule.parse(text)
    assert str(raised.value) == (f"Invalid precision phase 1 ({phase!r}): the options {first!r} and {second!r} "
                                 f"contradict each other (both set its {field}); give one of them.")


def test_the_config_key_names_them_too():
    with pytest.raises(ValueError, match=r"^Invalid opt\.precision_schedule='half/tanh/notanh': Invalid precision "
                                         r"phase 1 \('half/tanh/notanh'\): the options 'tanh' and 'notanh'"):
        parse_precision_schedule("half/tanh/notanh")


def test_one_option_twice_and_options_of_different_fields_are_kept():
    [repeated] = PrecisionSchedule.parse("half/tanh/tanh")
    assert repeated.stabilizer == "tanh"
    [both] = PrecisionSchedule.parse("half/tanh/noautocast")
    assert (both.stabilizer, both.autocast) == ("tanh", False)


@pytest.mark.parametrize("text", ["paper", "half:0.25,mixed:0.5,full:0.25", "mixed/notanh"])
def test_the_constructor_reads_a_string_as_parse_does(text):
    """A string given to the constructor was read letter by letter ("paper": phase 1 mode='p')."""
    assert PrecisionSchedule(text) == PrecisionSchedule.parse(text)


def test_the_constructor_refuses_contradicting_options_of_a_string():
    with pytest.raises(ValueError, match="contradict"):
        PrecisionSchedule("half/tanh/notanh")
