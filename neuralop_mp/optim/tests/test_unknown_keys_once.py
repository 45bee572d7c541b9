"""A param group's unknown keys are named once, where the group enters, with its index."""
import warnings

import pytest
import torch

from neuralop_mp import TensorGRaD
from neuralop_mp.optim.settings import OPTIONS_BY_NAME


def _param(n=5):
    return torch.nn.Parameter(torch.zeros(n))


def _named(caught):
    """The messages of the unknown-key warnings in ``caught``."""
    return [str(w.message) for w in caught if "unknown param-group" in str(w.message)]


def test_a_first_tensorgrad_group_joining_later_names_no_earlier_group_again():
    """It re-derives the earlier plain groups' settings (upstream's AdamW): that named their
    keys again, a warning about a group the user did not touch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = TensorGRaD([{"params": [_param()], "layer_label_typo": 1}])
        assert len(_named(caught)) == 1
        caught.clear()
        opt.add_param_group({"params": [_param()], "tensorgrad": True})
    assert _named(caught) == []
    # the earlier group was re-derived (the path that repeated the warning ran)
    assert opt.param_groups[0]["adam_convention"] == "neuralop" and opt.param_groups[0]["compress"] is False


def test_the_constructor_names_the_group_that_holds_each_unknown_key():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TensorGRaD([{"params": [_param()]}, {"params": [_param()], "lamda_sparse": 1.0},
                    {"params": [_param()], "momentum": 0.9, "nesterov": True}])
    named = _named(caught)
    assert len(named) == 2
    assert "key 'lamda_sparse' of param group 1; its settings are " in named[0]
    assert "keys 'momentum', 'nesterov' of param group 2; its settings are " in named[1]
    for message in named:  # one line, listing the settings TensorGRaD reads
        assert "\n" not in message and message.endswith(f"{', '.join(OPTIONS_BY_NAME)}.")


def test_add_param_group_names_the_joining_groups_index_and_a_refused_group_none():
    p = _param()
    opt = TensorGRaD([{"params": [p]}, {"params": [_param()]}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.add_param_group({"params": [_param()], "betas1": 0.8})
        with pytest.raises(ValueError):  # torch refuses a parameter already in a group: it never joins
            opt.add_param_group({"params": [p], "other_typo": 1})
    assert [m.split("; its settings")[0] for m in _named(caught)] == [
        "TensorGRaD ignores the unknown param-group key 'betas1' of param group 2"]


def test_a_step_after_a_change_names_only_a_key_added_in_param_groups():
    """A change of a setting re-checks the group: its keys named as it entered are not named
    again (after construction, after load_state_dict); a key added in param_groups is, once."""
    p = _param()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = TensorGRaD([{"params": [_param()]}, {"params": [p], "typo_a": 1}])
        assert len(_named(caught)) == 1
        caught.clear()
        p.grad = torch.ones_like(p)
        opt.param_groups[1]["rank"] = 0.5  # a setting whose check re-reads every key of the group
        opt.step()
        assert _named(caught) == []
        opt.param_groups[1]["typo_b"] = 2
        opt.step()
        opt.param_groups[1]["rank"] = 0.75
        opt.step()
        named = _named(caught)
        assert len(named) == 1 and "key 'typo_b' of param group 1 (added in param_groups);" in named[0]
        caught.clear()
        opt.load_state_dict(opt.state_dict())  # named once more, as the loaded groups enter
        assert len(_named(caught)) == 1 and "keys 'typo_a', 'typo_b' of param group 1 of the loaded state dict" \
            in _named(caught)[0]
        caught.clear()
        opt.param_groups[1]["rank"] = 0.5
        opt.step()
    assert _named(caught) == []
