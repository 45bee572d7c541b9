"""The variant syntax of ``python -m neuralop_mp.optim.measure_defaults``."""
import pytest
from neuralop.models import FNO

from neuralop_mp.optim import create_optimizer
from neuralop_mp.optim.measure_defaults import parse_variant


def test_variants_become_factory_fields():
    assert parse_variant("adamw") == {"optimizer": "adamw"}
    assert parse_variant("") == {"optimizer": "tensorgrad"}
    assert parse_variant("scale=2,adam_convention=neuralop,sparse_ratio=null") == {
        "optimizer": "tensorgrad", "tensorgrad_scale": 2, "tensorgrad_adam_convention": "neuralop",
        "tensorgrad_sparse_ratio": None}


def test_a_misspelled_variant_fails_before_training():
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    with pytest.raises(ValueError, match=r"Unknown opt field\(s\) \['tensorgrad_scal'\]"):
        create_optimizer(model, parse_variant("scal=2"))
    with pytest.raises(ValueError, match=r"Invalid opt\.tensorgrad_scale=-1"):
        create_optimizer(model, parse_variant("scale=-1"))
    groups = create_optimizer(model, parse_variant("scale=2")).param_groups
    assert [g["scale"] for g in groups if g["compress"]] == [2]
