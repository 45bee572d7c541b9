"""The shared value checks of :mod:`neuralop_mp.vocabulary`."""
import numpy as np
import pytest

from neuralop_mp.vocabulary import check_int_at_least


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
