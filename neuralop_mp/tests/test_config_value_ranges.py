"""Config values of the right type that would build something else than asked are refused
with the key, the value and the allowed values, before anything is built."""
import pytest

from neuralop_mp.configs import load_config

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("overrides, message", [
    (["--model.n_modes", "[0,4]"], r"Invalid model.n_modes=\[0, 4\]; allowed values: one integer >= 1 per dimension"),
    (["--model.n_modes", "[4,-4]"], r"Invalid model.n_modes=\[4, -4\]"),
    (["--model.n_layers", "0"], r"Invalid model.n_layers=0; allowed values: integers >= 1"),
    (["--model.hidden_channels", "0"], r"Invalid model.hidden_channels=0"),
    (["--model.domain_padding", "-0.5"], r"Invalid model.domain_padding=-0.5; allowed values: None or fractions >= 0"),
    (["--model.rank", "0"], r"Invalid model.rank=0"),
    (["--opt.gamma", "-1", "--opt.step_size", "1"], r"Invalid opt.gamma=-1.0 with StepLR; allowed values: 0 < gamma <= 1"),
    (["--opt.gamma", "0"], r"Invalid opt.gamma=0.0 with StepLR"),
    (["--opt.gamma", "1.5"], r"Invalid opt.gamma=1.5 with StepLR"),
    (["--opt.step_size", "0"], r"Invalid opt.step_size=0; allowed values: integers >= 1"),
    (["--opt.precision_schedule", "half@5,full", "--opt.n_epochs", "5"],
     r"Invalid opt.precision_schedule='half@5,full' with opt.n_epochs=5: .*never reaches its last phase 'full'"),
    (["--opt.precision_schedule", "half@5,,full"], r"Invalid opt.precision_schedule='half@5,,full'.*empty phase"),
])
def test_nonsense_values_are_refused_naming_key_value_and_allowed_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("darcy", overrides)


def test_sensible_edge_values_are_accepted():
    config = load_config("darcy", ["--model.n_modes", "[1,1]", "--model.n_layers", "1", "--model.domain_padding",
                                   "0.0", "--opt.gamma", "1.0", "--opt.step_size", "1"])
    assert config.model.n_layers == 1 and config.opt.gamma == 1.0


def test_gamma_is_only_checked_for_steplr():
    config = load_config("darcy", ["--opt.scheduler", "CosineAnnealingLR", "--opt.gamma", "-1"])
    assert config.opt.gamma == -1.0  # unused by CosineAnnealingLR
