"""One rule for the model inside a data-parallel wrapper, for the checkpoints and the models' check."""
import torch

from neuralop_mp import wrapped_module
from neuralop_mp.models import mixed_precision_models
from neuralop_mp.training import checkpointing


def test_checkpointing_and_the_models_use_the_one_unwrap():
    assert checkpointing.unwrap is wrapped_module.unwrap is mixed_precision_models.unwrap


def test_unwrap_returns_the_module_inside_every_wrapper_and_a_bare_model_itself():
    model = torch.nn.Linear(2, 2)
    assert checkpointing.unwrap(model) is model
    assert checkpointing.unwrap(torch.nn.DataParallel(model)) is model
    assert checkpointing.unwrap(torch.nn.DataParallel(torch.nn.DataParallel(model))) is model
    container = torch.nn.Sequential(model)  # not a wrapper: what it holds is more than the model
    assert checkpointing.unwrap(container) is container
    assert list(checkpointing.plain_state_dict(torch.nn.DataParallel(torch.nn.DataParallel(model)))) == [
        "weight", "bias"]
