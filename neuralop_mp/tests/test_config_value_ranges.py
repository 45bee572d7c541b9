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
    (["--model.domain_padding", "-0.5"], r"Invalid model.domain_padding=-0.5; allowed values: None or finite fractions >= 0"),
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


@pytest.mark.parametrize("overrides, message", [
    (["--opt.max_consecutive_skips", "0"], r"Invalid opt.max_consecutive_skips=0; allowed values: integers >= 1"),
    (["--opt.scheduler", "CosineAnnealingLR", "--opt.scheduler_T_max", "0"],
     r"Invalid opt.scheduler_T_max=0; allowed values: integers >= 1"),
    (["--opt.scheduler", "ReduceLROnPlateau", "--opt.gamma", "2"],
     r"Invalid opt.gamma=2.0 with ReduceLROnPlateau; allowed values: 0 < gamma < 1"),
    (["--opt.scheduler", "ReduceLROnPlateau", "--opt.gamma", "1"], r"Invalid opt.gamma=1.0 with ReduceLROnPlateau"),
    (["--opt.scheduler", "ReduceLROnPlateau", "--opt.scheduler_patience", "-1"],
     r"Invalid opt.scheduler_patience=-1; allowed values: integers >= 0"),
    (["--model.channel_mlp_dropout", "1.5"], r"Invalid model.channel_mlp_dropout=1.5; allowed values: 0 <= p < 1"),
    (["--model", "UNOConfig", "--model.channel_mlp_dropout", "-0.1"], r"Invalid model.channel_mlp_dropout=-0.1"),
    (["--patching.levels", "1", "--patching.padding", "-1"], r"Invalid patching.padding=-1.0; allowed values: finite fractions >= 0"),
    # zencfg reads true/false into a number field as 1/0
    (["--opt.n_epochs", "true"], r"Invalid opt.n_epochs='true'; allowed values: integers"),
    (["--seed", "False"], r"Invalid seed='False'; allowed values: integers"),
    (["--opt.learning_rate=true"], r"Invalid opt.learning_rate='true'; allowed values: numbers"),
    (["--model.domain_padding", "true"], r"Invalid model.domain_padding='true'; allowed values: numbers"),
    # every TensorGRaD kind reads tensorgrad_nonfinite_grad, which update in backward cannot honour
    (["--opt.optimizer", "galore", "--opt.tensorgrad_nonfinite_grad", "skip", "--opt.update_in_backward", "true"],
     r"opt.update_in_backward=True cannot be combined with opt.tensorgrad_nonfinite_grad='skip'"),
    (["--opt.optimizer", "sparse", "--opt.tensorgrad_nonfinite_grad", "skip", "--opt.update_in_backward", "true"],
     r"opt.update_in_backward=True cannot be combined with opt.tensorgrad_nonfinite_grad='skip'"),
])
def test_values_that_failed_only_after_the_data_was_loaded_are_refused_up_front(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("darcy", overrides)


def test_a_bool_for_a_number_field_is_refused_also_from_a_dict():
    with pytest.raises(ValueError, match=r"Invalid opt.n_epochs=True; allowed values: integers"):
        load_config("darcy", {"opt.n_epochs": True})


def test_edge_values_of_the_new_ranges_are_accepted():
    config = load_config("darcy", ["--opt.max_consecutive_skips", "1", "--opt.scheduler", "ReduceLROnPlateau",
                                   "--opt.gamma", "0.5", "--opt.scheduler_patience", "0",
                                   "--model.channel_mlp_dropout", "0.0", "--patching.padding", "0",
                                   "--opt.n_epochs", "3", "--verbose", "true"])
    assert config.opt.scheduler_patience == 0 and config.verbose is True
    config = load_config("darcy", ["--opt.scheduler", "CosineAnnealingLR", "--opt.scheduler_T_max", "1"])
    assert config.opt.scheduler_T_max == 1


def test_the_cli_refuses_them_with_exit_2_before_any_data_is_read(tmp_path, capsys):
    from neuralop_mp.cli import main

    root = tmp_path / "never"
    assert main(["train", "darcy", "--data.data_root", str(root), "--opt.scheduler", "CosineAnnealingLR",
                 "--opt.scheduler_T_max", "0"]) == 2
    assert "Invalid opt.scheduler_T_max=0" in capsys.readouterr().err
    assert not root.exists()


def test_a_data_section_naming_no_loader_is_refused_before_the_run_folder(tmp_path, capsys):
    """A config's own data section for another dataset (loader_name() naming no loader of
    neuralop_mp.data) ended in build_data's AttributeError traceback, a command.json left behind."""
    from neuralop_mp.cli import main

    path = tmp_path / "mine.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig\n"
                    "from neuralop_mp.configs.datasets import DataConfig\n"
                    "class MineData(DataConfig):\n"
                    "    def loader_name(self):\n"
                    "        return 'load_mine'\n"
                    "class Mine(DarcyConfig):\n"
                    "    data: DataConfig = MineData()\n")
    out = tmp_path / "run"
    assert main(["train", f"{path}:Mine", "--opt.n_epochs", "1", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("neuralop-mp train: error: Invalid data section MineData: its loader_name() is 'load_mine', "
                       "which names no loader of neuralop_mp.data; allowed values: load_burgers, load_darcy, "
                       "load_navier_stokes. The CLI trains these datasets (your own files in their layout: "
                       "docs/data.md); for other data, train from Python with MixedPrecisionTrainer "
                       "(docs/training.md).")
    assert not out.exists()


def test_a_data_section_naming_another_function_of_the_data_module_is_refused():
    """Only the built-in loaders: generate_darcy (a function of neuralop_mp.data, not a loader) passed
    the check and failed later in build_data."""
    from neuralop_mp.configs.datasets import DarcyDatasetConfig
    from neuralop_mp.configs.validation import validate_data

    class Generating(DarcyDatasetConfig):
        def loader_name(self):
            return "generate_darcy"

    class Listed(DarcyDatasetConfig):
        def loader_name(self):
            return ["load_darcy"]

    with pytest.raises(ValueError, match=r"loader_name\(\) is 'generate_darcy', which names no loader"):
        validate_data(Generating())
    with pytest.raises(ValueError, match=r"loader_name\(\) is \['load_darcy'\], which names no loader"):
        validate_data(Listed())  # not a TypeError of an unhashable name
    validate_data(DarcyDatasetConfig())
