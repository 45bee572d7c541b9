"""The class ``opt.optimizer`` "adamw" builds is named by one rule (``factory.adamw_class``): the build
and ``neuralop-mp train --resume``'s refusal of a spectral weight dtype that switches it both ask it."""
import torch

from neuralop_mp.optim import TensorGRaD, create_optimizer
from neuralop_mp.optim import factory


def test_adamw_class_is_tensorgrad_for_16_bit_weights_else_torchs_adamw():
    assert factory.adamw_class(True) is TensorGRaD
    assert factory.adamw_class(False) is torch.optim.AdamW


def test_create_optimizer_builds_the_class_adamw_class_names(monkeypatch):
    """The build follows the rule: with the rule turned around, a full-precision model gets TensorGRaD."""
    model = torch.nn.Linear(3, 3)
    assert type(create_optimizer(model, {"optimizer": "adamw"})) is torch.optim.AdamW
    real = factory.adamw_class
    monkeypatch.setattr(factory, "adamw_class", lambda sixteen_bit: real(not sixteen_bit))
    built = create_optimizer(model, {"optimizer": "adamw"})
    assert type(built) is TensorGRaD and not built.param_groups[0]["compress"]
