"""One any-case choice check (vocabulary.check_choice(ignore_case=True)) for the few choices
documented as case-free: the allowed spelling is returned, and a refusal names the value as typed."""
import pytest
import torch

from neuralop_mp.vocabulary import check_choice


def test_ignore_case_returns_the_allowed_spelling():
    assert check_choice("k", "Fourier", ("none", "fourier"), ignore_case=True) == "fourier"
    assert check_choice("k", None, (None, "cp"), ignore_case=True) is None
    with pytest.raises(ValueError, match=r"^Invalid k='Fourier'; allowed values: 'none', 'fourier'\. "
                                         r"Did you mean 'fourier'\?$"):
        check_choice("k", "Fourier", ("none", "fourier"))  # without it: the one spelling rule


def test_ignore_case_refuses_naming_the_value_as_typed():
    with pytest.raises(ValueError, match=r"^Invalid k='Spectral'; allowed values: 'none', 'fourier'\.$"):
        check_choice("k", "Spectral", ("none", "fourier"), ignore_case=True)


def test_the_optimizer_factory_names_the_value_as_typed():
    from neuralop_mp.optim.factory import create_optimizer

    model = torch.nn.Linear(2, 2)
    assert type(create_optimizer(model, {"optimizer": "AdamW"})).__name__ == "AdamW"
    with pytest.raises(ValueError, match=r"^Invalid opt\.optimizer='AdamWW'; allowed values: 'adamw', "):
        create_optimizer(model, {"optimizer": "AdamWW"})
