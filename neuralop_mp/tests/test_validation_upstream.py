"""Config validation takes upstream's allowed values from the installed upstream, at run time."""
import typing

import pytest
from neuralop.models import FNO
from tltorch import FactorizedTensor

from neuralop_mp.configs import load_config
from neuralop_mp.configs.validation import _unbuildable_norms, upstream_choices, validate_model


def test_choices_are_upstreams_own():
    choices = upstream_choices()
    literal = typing.get_args(FNO.__init__.__annotations__["norm"])
    # less what FNO lists but cannot build (ada_in without ada_in_features: test_model_arch_choices.py)
    assert set(choices["norm"]) == (set(literal) | {None}) - set(_unbuildable_norms())
    assert set(choices["fno_skip"]) == set(typing.get_args(FNO.__init__.__annotations__["fno_skip"]))
    assert {"tucker", "cp", "tt", "dense", None} <= set(choices["factorization"])


def test_a_value_upstream_adds_is_accepted_without_a_change_here(monkeypatch):
    model = load_config("darcy").model  # load_config validates: set the new value afterwards
    model.factorization = "blocktt"
    with pytest.raises(ValueError, match=r"Invalid model\.factorization='blocktt'; allowed values: None, 'cp'"):
        validate_model(model)
    # as if the installed tltorch registered a new factorized tensor type
    monkeypatch.setitem(FactorizedTensor._factorizations, "blocktt", object)
    validate_model(model)


def test_a_value_upstream_drops_is_refused_without_a_change_here(monkeypatch):
    model = load_config("darcy", {"model.norm": "group_norm"}).model
    validate_model(model)
    annotations = dict(FNO.__init__.__annotations__)
    annotations["norm"] = typing.Literal["instance_norm"]
    monkeypatch.setattr(FNO.__init__, "__annotations__", annotations)
    with pytest.raises(ValueError, match=r"Invalid model\.norm='group_norm'; allowed values: 'instance_norm', None"):
        validate_model(model)
