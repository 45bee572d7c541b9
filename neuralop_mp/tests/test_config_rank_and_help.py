"""``model.rank`` keeps an int an int (a rank) and a float a float (a fraction), from the
config classes and the command line into the built weight; ``train --help`` lists the fields
of the section classes the command line selects; settings the trainer or the layers would
refuse after the data load are refused first, in one line. No training here."""
import pytest
import torch

from neuralop_mp import cli, get_model
from neuralop_mp.configs import load_config
from neuralop_mp.configs.models import FNOConfig, TFNOConfig, UNOConfig

TINY_TFNO = ["--model", "TFNOConfig", "--model.factorization", "cp", "--model.hidden_channels", "8",
             "--model.n_layers", "1", "--model.n_modes", "[6,6]"]


@pytest.fixture
def no_training(monkeypatch):
    """``run_training`` replaced: the configs it is given, and no data load nor model."""
    import neuralop_mp.train_pipeline as pipeline

    seen = []

    def fake_run(config, **kwargs):
        seen.append(config)
        raise KeyboardInterrupt  # stops train_command right after the call, with exit status 130

    monkeypatch.setattr(pipeline, "run_training", fake_run)
    return seen


@pytest.mark.parametrize("config_cls", [FNOConfig, TFNOConfig, UNOConfig])
def test_a_rank_keeps_its_type_in_every_model_section(config_cls):
    assert type(config_cls(rank=8).rank) is int and config_cls(rank=8).rank == 8
    assert type(config_cls(rank=0.5).rank) is float
    assert type(config_cls().rank) is float  # the defaults are fractions (1.0; TFNOConfig 0.1)


@pytest.mark.parametrize("value, rank", [("8", 8), ("1", 1), ("0.5", 0.5), ("1.0", 1.0)])
def test_the_command_line_rank_is_an_int_rank_or_a_float_fraction(no_training, value, rank):
    assert cli.main(["train", "darcy", *TINY_TFNO, "--model.rank", value]) == 130
    (config,) = no_training
    assert config.model.rank == rank and type(config.model.rank) is type(rank)


@pytest.mark.parametrize("value, rank", [("8", 8), ("0.5", 0.5)])
def test_the_command_line_tensorgrad_rank_reaches_the_optimizer_as_an_int_rank_or_a_float_fraction(
        no_training, value, rank):
    from neuralop_mp.optim import create_optimizer

    # a float field made 8 the fraction 8.0, refused ("expected a float in (0, 1], a positive int, ...")
    assert cli.main(["train", "darcy", *TINY_TFNO, "--opt.optimizer", "tensorgrad",
                     "--opt.tensorgrad_rank", value]) == 130
    (config,) = no_training
    assert config.opt.tensorgrad_rank == rank and type(config.opt.tensorgrad_rank) is type(rank)
    optimizer = create_optimizer(get_model(config), config.opt)
    assert {group["rank"] for group in optimizer.param_groups if group["compress"]} == {rank}


@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_an_integer_rank_is_the_built_weights_rank(no_training, precision):
    # a float field made 8 the fraction 8.0: a CP rank of 473 (8x the dense weight's parameters)
    assert cli.main(["train", "darcy", *TINY_TFNO, "--model.rank", "8",
                     "--model.fno_block_precision", precision]) == 130
    weight = get_model(no_training[0]).fno_blocks.convs[0].weight
    assert weight.rank == 8 and tuple(weight.shape) == (8, 8, 6, 4)


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp train: error: ") and err.count("\n") == 1, err
    return err


def test_a_float_rank_above_one_is_refused_before_the_data_load_as_the_layer_refuses_it(no_training, capsys):
    from neuralop_mp.layers.input_checks import check_layer_arguments

    assert cli.main(["train", "darcy", *TINY_TFNO, "--model.rank", "8.0"]) == 2
    err = _one_line_error(capsys)
    assert not no_training
    # the layer's own message, for the model's (8, 8, 6, 4) weight
    with pytest.raises(ValueError) as layer_error:
        check_layer_arguments(8, 8, [6, 6], 8.0, "cp", False)
    assert err.strip().endswith(str(layer_error.value)), err
    assert "Allowed values: (0, 1], or an integer rank." in err and "1536 parameters" in err


def test_a_float_rank_above_one_in_a_config_file_is_refused(no_training, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wide.py").write_text(
        "from neuralop_mp.configs import TrainConfig\n"
        "from neuralop_mp.configs.models import ModelConfig, UNOConfig\n"
        "class Wide(TrainConfig):\n"
        "    model: ModelConfig = UNOConfig(factorization='tucker', rank=2.0)\n")
    assert cli.main(["train", "wide.py:Wide"]) == 2
    err = _one_line_error(capsys)
    # UNO's first spectral weight: 32 -> 32 channels, modes (8, 8) -> (8, 5)
    assert "Invalid rank=2.0 with factorization='tucker'" in err and f"{32 * 32 * 8 * 5} parameters" in err, err
    assert not no_training


@pytest.mark.parametrize("overrides", [
    ["--model.rank", "1.0"],  # the fraction 1: the dense weight's parameters
    ["--model.rank", "8"],
    ["--model.factorization", "dense", "--model.rank", "8.0"],  # no factorization reads the rank
    ["--model.factorization", "None", "--model.rank", "8.0"],
])
def test_ranks_the_layer_accepts_are_accepted(overrides):
    assert load_config("darcy", [*TINY_TFNO, *overrides]).model.rank == float(overrides[-1])


@pytest.mark.parametrize("args", [["--model", "UNOConfig", "--help"], ["-h", "--model=UNOConfig"]])
def test_train_help_lists_the_fields_of_the_selected_section_class(capsys, args):
    assert cli.main(["train", "darcy", *args]) == 0
    out = capsys.readouterr().out
    assert "--model {FNOConfig, TFNOConfig, UNOConfig}  (current: UNOConfig)" in out
    assert "  --model.uno_out_channels [32, 64, 64, 32]\n" in out and "  --model.horizontal_skip 'linear'\n" in out
    assert "--model.n_modes " not in out and "--model.lifting_channel_ratio" not in out  # FNOConfig's


def test_train_help_of_an_unknown_section_class_names_the_allowed_ones(capsys):
    assert cli.main(["train", "darcy", "--model", "UNO", "--help"]) == 2
    err = _one_line_error(capsys)
    assert "'UNO'" in err and "FNOConfig, TFNOConfig, UNOConfig" in err


def test_update_in_backward_with_complex32_weights_is_refused_before_the_data_load(no_training, capsys):
    args = ["--opt.update_in_backward", "true", "--model.spectral_weight_dtype", "complex32"]
    assert cli.main(["train", "darcy", *args]) == 2
    err = _one_line_error(capsys)
    assert not no_training
    # the rule `run` applies to its flags (optim.update_in_backward.auto_scaling_refusal), naming the config keys
    assert err.rstrip().endswith("opt.update_in_backward=True cannot be combined with loss scaling: "
                        "model.spectral_weight_dtype='complex32' stores the spectral weights in float16's range, so "
                        "the trainer's loss scaling 'auto' (its default) scales the loss, and an overflow found in a "
                        "late layer cannot undo the updates already made to earlier ones. Add opt.loss_scaling='none', "
                        "or leave opt.update_in_backward out."), err
    # a float16 half type is refused on the device a run trains on (train_pipeline: test_run_folder_reuse.py),
    # not by the config alone, which may be evaluated on another device than it trained on
    half = ["--model.fno_block_precision", "half", "--model.half_dtype", "float16", "--opt.update_in_backward", "true"]
    assert load_config("darcy", half).opt.update_in_backward is True
    # without loss scaling, or with complex64 weights, "auto" leaves update in backward alone
    assert load_config("darcy", [*args, "--opt.loss_scaling", "none"]).opt.update_in_backward is True
    assert load_config("darcy", args[:2]).opt.update_in_backward is True


def test_the_trainer_refuses_what_the_config_check_refuses():
    """The config check above is the trainer's rule: complex32 parameters turn "auto" loss scaling on."""
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    config = load_config("darcy", ["--model.spectral_weight_dtype", "complex32", "--model.hidden_channels", "4",
                                   "--model.n_layers", "1", "--model.n_modes", "[2,2]"])
    model = get_model(config)
    assert any(p.dtype == torch.complex32 for p in model.parameters())
    with pytest.raises(ValueError, match="update_in_backward=True cannot be combined with loss_scaling='auto'"):
        MixedPrecisionTrainer(model=model, n_epochs=1, device="cpu", verbose=False, update_in_backward=True)


def test_a_cp_fraction_too_small_for_a_later_uno_layer_is_refused_before_the_data_load():
    # the first layer (64 -> 64, 16x16 modes) takes rank 0.01; the second, with the first's output
    # beside its input (128 -> 4, 2x2 modes), would get CP rank 0 when the model is built
    overrides = {"model": "UNOConfig", "model.hidden_channels": "64", "model.n_layers": "2",
                 "model.uno_out_channels": "[64,4]", "model.uno_n_modes": "[[16,16],[2,2]]",
                 "model.uno_scalings": "[[1,1],[1,1]]", "model.factorization": "cp", "model.rank": "0.01"}
    with pytest.raises(ValueError, match=r"rank=0\.01 .* shape \(128, 4, 2, 2\).*CP rank 0"):
        load_config("darcy", overrides)


def test_the_uno_layer_shapes_checked_are_the_ones_upstreams_uno_builds():
    from neuralop_mp.configs.validation import _uno_layer_shapes
    from neuralop_mp.models.mixed_precision_models import MixedPrecisionUNO

    widths, modes = [8, 6, 8, 6, 8], [[4, 4]] * 5
    model = MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=5, uno_out_channels=widths,
                              uno_n_modes=modes, uno_scalings=[[1, 1]] * 5, channel_mlp_skip="linear")
    assert [shape[:2] for shape in _uno_layer_shapes(8, widths, modes)] == [
        (block.convs[0].in_channels, block.convs[0].out_channels) for block in model.fno_blocks]
