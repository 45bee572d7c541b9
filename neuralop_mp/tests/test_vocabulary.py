"""The shared value checks of :mod:`neuralop_mp.vocabulary`."""
import numpy as np
import pytest
import torch

from neuralop_mp.vocabulary import NotARealNumberError, check_int_at_least, check_real


def test_integers_at_least_the_minimum_pass_as_python_ints():
    assert check_int_at_least("n", 3) == 3
    value = check_int_at_least("n", np.int64(2), minimum=2)
    assert value == 2 and type(value) is int


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-4, ValueError), (2.0, TypeError), ("3", TypeError), (True, TypeError), (None, TypeError),
])
def test_anything_else_names_the_key_the_value_and_the_allowed_values(value, error):
    with pytest.raises(error) as info:
        check_int_at_least("opt.n_steps", value, unit="steps per epoch")
    assert str(info.value) == f"Invalid opt.n_steps={value!r}; allowed values: integers >= 1 (steps per epoch)."


@pytest.mark.parametrize("value", [0.25, 1, np.float32(0.25), np.float64(0.25), np.int64(1), np.array(0.25),
                                   torch.tensor(0.25), torch.tensor(0.25, dtype=torch.bfloat16), torch.tensor(1)])
def test_real_numbers_of_python_numpy_and_0d_tensors_pass_as_python_floats(value):
    number = check_real("x", value, 0, 1, low_open=True)
    assert type(number) is float and number == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), torch.tensor(True), "0.5", None, 0.5j,
                                   torch.tensor(0.5 + 0j), torch.tensor([0.5]), np.array([0.5])])
def test_anything_but_a_real_number_is_refused_as_a_type_and_a_value_error(value):
    with pytest.raises(NotARealNumberError) as info:
        check_real("opt.lr", value, low=0, low_open=True)
    # the checks check_real replaced raised TypeError (optimizer settings) or ValueError (the others)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert str(info.value) == f"Invalid opt.lr={value!r}; allowed values: finite numbers > 0."


@pytest.mark.parametrize("value, bounds, allowed", [
    (float("nan"), {}, "finite numbers"),
    (float("inf"), {"low": 0}, "finite numbers >= 0"),
    (-float("inf"), {"high": 0}, "finite numbers <= 0"),
    (10**400, {}, "finite numbers"),  # beyond float's range: not a finite float
    (torch.tensor(float("nan")), {}, "finite numbers"),
    (0, {"low": 0, "low_open": True}, "finite numbers > 0"),
    (-1e-300, {"low": 0}, "finite numbers >= 0"),
    (1.0, {"high": 1, "high_open": True}, "finite numbers < 1"),
    (1.5, {"low": 0.5, "high": 1.25}, "finite numbers in [0.5, 1.25]"),
    (1, {"low": 0, "high": 1, "low_open": True, "high_open": True}, "finite numbers in (0, 1)"),
    (np.float32(2), {"high": 1}, "finite numbers <= 1"),
])
def test_nonfinite_and_out_of_range_numbers_are_value_errors_naming_the_range(value, bounds, allowed):
    with pytest.raises(ValueError) as info:
        check_real("x", value, **bounds)
    assert not isinstance(info.value, TypeError)
    assert str(info.value) == f"Invalid x={value!r}; allowed values: {allowed}."


def test_closed_bounds_are_allowed_and_the_allowed_text_can_be_named():
    assert check_real("x", 0, 0, 1) == 0.0 and check_real("x", 1, 0, 1) == 1.0
    with pytest.raises(ValueError) as info:
        check_real("dt", -1.0, low=0, low_open=True, allowed="None or a finite number > 0")
    assert str(info.value) == "Invalid dt=-1.0; allowed values: None or a finite number > 0."


@pytest.mark.parametrize("value", [torch.tensor(True), torch.tensor([4]), torch.tensor(4.0), np.True_, 4.0, "4"])
def test_check_int_at_least_refuses_what_only_looks_like_an_integer(value):
    # operator.index takes a bool tensor (as 1) and a one-element tensor of any shape
    with pytest.raises(TypeError, match=r"Invalid chunk=.*allowed values: integers >= 1"):
        check_int_at_least("chunk", value)


@pytest.mark.parametrize("value", [4, np.int64(4), np.array(4), torch.tensor(4)])
def test_check_int_at_least_takes_integers_of_every_kind_as_int(value):
    assert type(check_int_at_least("chunk", value)) is int and check_int_at_least("chunk", value) == 4
