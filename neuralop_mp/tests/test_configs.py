"""Configs: load under zencfg 1.0.0, override, round trip, reject every bad value."""
import json
import re
import typing

import pytest
from zencfg import make_config_from_nested_dict

from neuralop_mp.configs import (
    CONFIGS,
    BurgersConfig,
    DarcyConfig,
    DataConfig,
    ModelConfig,
    NavierStokesConfig,
    OptimizationConfig,
    PatchingConfig,
    TFNOConfig,
    TrainConfig,
    UNOConfig,
    config_fields,
    config_keys,
    config_to_dict,
    load_config,
    parse_overrides,
)
from neuralop_mp.configs import burgers, darcy, navier_stokes


@pytest.mark.parametrize("name, cls, module", [
    ("darcy", DarcyConfig, darcy), ("navier_stokes", NavierStokesConfig, navier_stokes),
    ("burgers", BurgersConfig, burgers),
])
def test_builtin_configs_load_without_arguments(name, cls, module):
    config = cls()  # zencfg 1.0.0: no required field may lack a default
    assert CONFIGS[name] is cls and module.Default is cls
    assert config_to_dict(load_config(name)) == config_to_dict(config)
    assert config.name == name
    assert isinstance(config.model, ModelConfig) and isinstance(config.data, DataConfig)


def test_every_section_class_instantiates_without_arguments():
    for section in (ModelConfig, OptimizationConfig, PatchingConfig, DataConfig, TrainConfig,
                    TFNOConfig, UNOConfig):
        section()


def test_darcy_defaults_are_the_quickstart_sizes():
    config = DarcyConfig()
    assert config.data.train_resolution == 16
    assert 2 * config.data.train_resolution in config.data.test_resolutions
    assert config.model.fno_block_precision == "full"
    assert config.opt.precision_schedule is None


def test_dotted_overrides_from_the_command_line_form():
    config = load_config("darcy", [
        "--model.fno_block_precision", "mixed", "--opt.n_epochs", "5",
        "--data.test_resolutions", "[16,32]", "--data.n_tests", "[10,10]",
        "--data.test_batch_sizes=[5,5]", "--opt.precision_schedule", "half:0.25,mixed:0.5,full:0.25",
        "--model.stabilizer", "tanh", "--opt.betas", "[0.8, 0.99]",
    ])
    assert config.model.fno_block_precision == "mixed"
    assert config.opt.n_epochs == 5 and isinstance(config.opt.n_epochs, int)
    assert config.data.test_resolutions == [16, 32] and config.data.test_batch_sizes == [5, 5]
    assert config.opt.precision_schedule == "half:0.25,mixed:0.5,full:0.25"
    assert config.opt.betas == [0.8, 0.99]
    # untouched fields keep the darcy defaults
    assert config.model.n_modes == DarcyConfig().model.n_modes


def test_section_selection_then_field_override():
    config = load_config("darcy", {"model": "TFNOConfig", "model.rank": "0.3"})
    assert type(config.model) is TFNOConfig
    assert config.model.model_arch == "tfno" and config.model.rank == pytest.approx(0.3)
    config = load_config("darcy", ["--model", "UNOConfig", "--model.uno_out_channels", "[8,8,8,8]"])
    assert type(config.model) is UNOConfig and config.model.uno_out_channels == [8, 8, 8, 8]


def test_round_trip_through_json_and_flat_overrides():
    config = load_config("darcy", {"model.fno_block_precision": "mixed", "opt.optimizer": "tensorgrad",
                                   "data.n_train": "100"})
    text = json.dumps(config_to_dict(config))
    rebuilt = make_config_from_nested_dict(DarcyConfig, json.loads(text), strict=True)
    assert type(rebuilt.model) is type(config.model)
    assert config_to_dict(rebuilt) == config_to_dict(config)
    flat = {k: v for k, v in config.to_dict(flatten=True).items() if not k.endswith("_config_name")}
    assert config_to_dict(load_config("darcy", flat)) == config_to_dict(config)


def test_parse_overrides_forms_and_errors():
    assert parse_overrides(["--a.b", "1", "--c=x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ValueError, match="Missing value for option --a"):
        parse_overrides(["--a"])
    with pytest.raises(ValueError, match="got 'stray'"):
        parse_overrides(["stray"])


def test_parse_overrides_reads_no_option_as_a_value():
    """``--a --b 1``: --a lacks its value (it is not a="--b", which lost --b without a word);
    one dash is a value (-1), and a value with two is written --a=--b."""
    for args in (["--a", "--b", "1"], ["--a", "--b=1"], ["--a", "--"]):
        with pytest.raises(ValueError, match=r"Missing value for option --a \(it is followed by the option "
                                             + re.escape(args[1]) + "; .* written --a=VALUE"):
            parse_overrides(args)
    assert parse_overrides(["--a", "-1", "--b", "-1e-3", "--c=--d", "--e", "-"]) == \
        {"a": "-1", "b": "-1e-3", "c": "--d", "e": "-"}
    # lenient: the option without a value is left out and the option after it read as usual
    assert parse_overrides(["--a", "--model", "UNOConfig", "--b", "--c=1", "--d"], lenient=True) == \
        {"model": "UNOConfig", "c": "1"}
    with pytest.raises(ValueError, match="Missing value for option --name "):
        load_config("darcy", ["--name", "--opt.n_epochs=3"])
    assert load_config("darcy", ["--seed", "-1"]).seed == -1


def test_unknown_key_lists_close_valid_keys():
    with pytest.raises(ValueError) as info:
        load_config("darcy", {"model.fno_block_precison": "mixed"})
    assert "--model.fno_block_precison" in str(info.value)
    assert "--model.fno_block_precision" in str(info.value)
    with pytest.raises(ValueError, match=r"--opt\.n_epochs"):
        load_config("darcy", {"opt.epochs": "3"})


def test_unknown_config_name_lists_builtin_names():
    with pytest.raises(ValueError, match=r"'darcyy'.*burgers, darcy, navier_stokes.*Did you mean: darcy"):
        load_config("darcyy")


def test_a_config_file_by_path_and_class(tmp_path):
    path = tmp_path / "my_experiment.py"
    path.write_text(
        "from zencfg import ConfigBase\n"
        "from neuralop_mp.configs import DarcyConfig\n"
        "class Wide(DarcyConfig):\n"
        "    name: str = 'wide'\n"
        "class Other(ConfigBase):\n"
        "    width: int = 3\n"
    )
    config = load_config(f"{path}:Wide", {"opt.n_epochs": "2"})
    assert config.name == "wide" and config.opt.n_epochs == 2
    assert load_config(str(path)).name == "wide"  # the file's only TrainConfig
    with pytest.raises(TypeError, match="not a neuralop_mp.configs.TrainConfig"):
        load_config(f"{path}:Other")
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.py"))


BAD_VALUES = [
    ("model.fno_block_precision", "hlaf", "'full', 'mixed', 'half'"),
    ("model.half_dtype", "fp16", "'auto', 'float16', 'bfloat16'"),
    ("model.stabilizer", "relu", "None (unset: the mode's default; typed on a command line, none is 'off'), 'off', 'tanh'"),
    ("model.spectral_weight_dtype", "complex16", "'complex64', 'complex32'"),
    ("model.autocast_scope", "blocks", "'auto', 'model', 'fno_blocks', 'spectral'"),
    ("model.model_arch", "fnoo", "'fno'"),
    ("model.norm", "batch_norm", "'group_norm'"),
    ("model.fno_skip", "skip", "'soft-gating'"),
    ("model.channel_mlp_skip", "skip", "'soft-gating'"),
    ("model.factorization", "svd", "'tucker'"),
    ("model.implementation", "lazy", "'reconstructed'"),
    ("model.positional_embedding", "sinus", "'grid'"),
    ("model.recompute", "spectral", "'fourier', 'block'"),
    ("opt.optimizer", "adam", "'adamw', 'tensorgrad', 'galore', 'sparse'"),
    ("opt.training_loss", "l1", "'h1', 'l2'"),
    ("opt.scheduler", "cosine", "'StepLR', 'CosineAnnealingLR', 'ReduceLROnPlateau'"),
    ("opt.tensorgrad_sparse_type", "random", "'randk'"),
    ("opt.tensorgrad_state_dtype", "float16", "'float32', 'bfloat16'"),
    ("opt.tensorgrad_adam_convention", "pytorch", "'torch', 'neuralop'"),
    ("opt.tensorgrad_nonfinite_grad", "ignore", "'raise', 'skip'"),
    ("opt.loss_scaling", "static", "'auto', 'dynamic', 'none'"),
    ("opt.precision_schedule", "half:0.5,quarter:0.5", "'full', 'mixed', 'half'"),
    ("device", "tpu", "'cpu', 'cuda'"),
]


@pytest.mark.parametrize("key, value, allowed", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_every_bad_enumerated_value_names_key_value_and_allowed(key, value, allowed):
    with pytest.raises(ValueError) as info:
        load_config("darcy", {key: value})
    message = str(info.value)
    assert key in message and repr(value).strip("'") in message and allowed in message


def test_recompute_chunk_points_are_checked_when_the_config_loads():
    config = load_config("darcy", {"model.recompute": "block", "model.recompute_chunk_points": "4096"})
    assert config.model.recompute_chunk_points == 4096
    with pytest.raises(ValueError, match=r"model.recompute_chunk_points=-8; allowed values: integers >= 1"):
        load_config("darcy", {"model.recompute": "block", "model.recompute_chunk_points": "-8"})
    with pytest.raises(ValueError, match=r"model.recompute_chunk_points=4096 is used only with "
                                         r"model.recompute='block', not with model.recompute='none'"):
        load_config("darcy", {"model.recompute_chunk_points": "4096"})


def test_uno_specific_enumerations_are_checked_too():
    with pytest.raises(ValueError, match=r"model.horizontal_skip='gate'.*'linear'"):
        load_config("darcy", {"model": "UNOConfig", "model.horizontal_skip": "gate"})


@pytest.mark.parametrize("key, value, fragment", [
    ("opt.n_epochs", "0", "opt.n_epochs=0"),
    ("opt.learning_rate", "-1e-3", "opt.learning_rate=-0.001"),
    ("data.n_train", "0", "data.n_train=0"),
    ("data.n_tests", "[10]", "one entry per test set"),
    ("opt.betas", "[0.9]", "opt.betas"),
    ("opt.tensorgrad_sparse_ratio", "1.5", "opt.tensorgrad_sparse_ratio=1.5"),
])
def test_bad_numbers_and_lengths(key, value, fragment):
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
        load_config("darcy", {key: value})


@pytest.mark.parametrize("key, value, allowed", [
    ("opt.n_epochs", "many", "an integer"),
    ("opt.n_epochs", "1.5", "an integer"),
    ("opt.learning_rate", "fast", "a number"),
    ("data.test_resolutions", "[16,a]", "a list of integers, e.g. [16, 32]"),
    ("opt.betas", "[0.9,b]", "a list of numbers, e.g. [0.5, 1.0]"),
    ("model.n_layers", "None", "an integer"),
    ("verbose", "maybe", "true or false"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_key_value_and_type(key, value, allowed):
    """zencfg's type check (a TypeError with pydantic's multi-line report, under 0.7 and 1.0) is
    said as our other bad values are: the key, the value and what the field takes, on one line."""
    with pytest.raises(ValueError) as raised:
        load_config("darcy", {key: value})
    assert str(raised.value) == f"Invalid {key}={value!r}; allowed values: {allowed}."


@pytest.mark.parametrize("value, expected", [
    ("paper", "half:0.25,mixed:0.5,full:0.25"), ("mixed:0.5,full:0.5", "mixed:0.5,full:0.5"),
    ("None", None), ("null", None),
])
def test_valid_schedule_strings_and_no_schedule(value, expected):
    from neuralop_mp.configs.validation import validate_precision_schedule

    config = load_config("darcy", {"opt.precision_schedule": value})
    schedule = validate_precision_schedule(config.opt.precision_schedule)
    assert (None if schedule is None else str(schedule)) == expected


@pytest.mark.parametrize("overrides, message", [
    # AdamW (the default) reads no TensorGRaD setting: it was recorded in the run and ignored
    ({"opt.tensorgrad_rank": "0.5"},
     "Invalid opt.tensorgrad_rank=0.5 with opt.optimizer='adamw': AdamW reads no TensorGRaD setting; leave it "
     "out, or use opt.optimizer tensorgrad|galore|sparse."),
    ({"opt.optimizer": "sparse", "opt.tensorgrad_rank": "0.5"},
     "Invalid opt.tensorgrad_rank=0.5 with opt.optimizer='sparse': that kind does not read it"),
])
def test_a_tensorgrad_setting_the_optimizer_does_not_read_is_refused(overrides, message):
    with pytest.raises(ValueError) as raised:
        load_config("darcy", overrides)
    assert str(raised.value).startswith(message), raised.value
    # at its default, or read by the kind: accepted
    load_config("darcy", {"opt.optimizer": "galore", "opt.tensorgrad_rank": "0.5"})
    load_config("darcy", {"opt.tensorgrad_rank": "0.25"})


def test_a_schedule_phase_without_epochs_is_said_once_by_the_trainer_not_also_by_the_config_check():
    import warnings

    from neuralop_mp.training.trainer import MixedPrecisionTrainer
    from neuralop_mp.training.tests.tiny import tiny_fno

    overrides = {"opt.precision_schedule": "half:0.25,mixed:0.5,full:0.25", "opt.n_epochs": "1"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config("darcy", overrides)  # validated, as train/eval/diagnose load it
        MixedPrecisionTrainer(model=tiny_fno(seed=0), n_epochs=1,
                              precision_schedule=config.opt.precision_schedule)
    said = [str(w.message) for w in caught if "get no epoch" in str(w.message)]
    assert len(said) == 1 and "['half:0.25', 'mixed:0.5']" in said[0], said
    # the config check still refuses a last phase that never runs
    with pytest.raises(ValueError, match="never reaches its last phase"):
        load_config("darcy", {"opt.precision_schedule": "half@5,full", "opt.n_epochs": "3"})


@pytest.mark.parametrize("key, value, expected", [
    ("model.stabilizer", "None", None), ("model.stabilizer", "null", None), ("model.stabilizer", "tanh", "tanh"),
    ("model.norm", "none", None), ("model.positional_embedding", "None", None), ("output_dir", "", None),
    ("opt.precision_schedule", "None", None), ("name", "None", "None"),  # name is not Optional
    # an Optional number: zencfg read "None" as a float (a refusal); "null" alone passed
    ("model.domain_padding", "None", None), ("model.domain_padding", "none", None),
    ("model.domain_padding", "null", None), ("model.recompute_chunk_points", "None", None),
])
def test_null_spellings_become_none_where_none_is_allowed(key, value, expected):
    config = load_config("darcy", {key: value})
    section, _, name = key.rpartition(".")
    assert getattr(getattr(config, section) if section else config, name) == expected


FREE_TEXT = {"name", "output_dir", "data.data_root"}


def test_every_string_field_is_validated_or_declared_free_text():
    # a new str field must join the validation table (BAD_VALUES) or FREE_TEXT
    validated = {key for key, _, _ in BAD_VALUES} | {"model.horizontal_skip"}
    configs = [DarcyConfig(), load_config("darcy", {"model": "UNOConfig"}),
               load_config("darcy", {"model": "TFNOConfig"})]
    for config in configs:
        for key in config_keys(config):
            section, _, name = key.rpartition(".")
            owner = type(getattr(config, section)) if section else type(config)
            if name not in config_fields(owner):
                continue
            annotation = config_fields(owner)[name][0]
            if str in (annotation, *typing.get_args(annotation)):
                assert key in validated | FREE_TEXT, f"{key} is a string field without validation"


# ------------------------------------------------------------ non-finite and out-of-range numbers
TFNO_TUCKER = {"model": "TFNOConfig", "model.factorization": "tucker"}
UNO = {"model": "UNOConfig"}

# every float field of the built-in sections with a NaN or inf that validation refuses: without
# the check a NaN or inf learning rate or rank reaches torch or scipy and ends in a traceback
NON_FINITE = [
    ("opt.learning_rate", "nan", {}), ("opt.learning_rate", "inf", {}),
    ("opt.weight_decay", "nan", {}), ("opt.weight_decay", "inf", {}),
    ("opt.betas", "[NaN, 0.9]", {}), ("opt.betas", "[0.9, Infinity]", {}),
    ("opt.gamma", "nan", {}), ("opt.gamma", "inf", {"opt.scheduler": "ReduceLROnPlateau"}),
    ("opt.tensorgrad_rank", "inf", {}), ("opt.tensorgrad_sparse_ratio", "nan", {}),
    ("opt.tensorgrad_scale", "inf", {}), ("opt.tensorgrad_scale", "nan", {}),
    ("model.rank", "inf", TFNO_TUCKER), ("model.rank", "nan", TFNO_TUCKER), ("model.rank", "inf", UNO),
    ("model.domain_padding", "nan", {}), ("model.domain_padding", "inf", UNO),
    ("model.lifting_channel_ratio", "inf", {}), ("model.lifting_channel_ratio", "nan", {}),
    ("model.projection_channel_ratio", "inf", {}), ("model.projection_channel_ratio", "nan", {}),
    ("model.channel_mlp_expansion", "nan", {}), ("model.channel_mlp_expansion", "inf", UNO),
    ("model.channel_mlp_dropout", "nan", {}), ("model.channel_mlp_dropout", "nan", UNO),
    ("model.uno_scalings", "[[1, 1], [0.5, 0.5], [2, 2], [Infinity, 1]]", UNO),
    ("model.uno_scalings", "[[1, 1], [0.5, NaN], [2, 2], [1, 1]]", UNO),
    ("patching.padding", "nan", {}), ("patching.padding", "inf", {}),
]


@pytest.mark.parametrize("key, value, selection", NON_FINITE, ids=[f"{k}={v}" for k, v, _ in NON_FINITE])
def test_nan_and_inf_are_refused_naming_the_key(key, value, selection):
    with pytest.raises(ValueError, match=rf"^Invalid {re.escape(key)}[= ].*(nan|inf)") as raised:
        load_config("darcy", {**selection, key: value})
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("key, value, bound", [
    ("opt.learning_rate", "nan", "> 0"), ("opt.learning_rate", "inf", "> 0"),
    ("opt.weight_decay", "nan", ">= 0"), ("opt.weight_decay", "-inf", ">= 0"),
])
def test_a_non_finite_learning_rate_or_weight_decay_says_it_must_be_finite(key, value, bound):
    with pytest.raises(ValueError) as raised:
        load_config("darcy", {key: value})
    assert str(raised.value) == f"Invalid {key}={float(value)!r}; it must be a finite number {bound}."


def test_a_numpy_nan_from_a_config_file_is_refused_as_a_python_nan_is():
    """A value a Python config file computes with numpy: its NaN passed as finite (not a Python float)."""
    import numpy as np

    from neuralop_mp.configs.validation import validate_config

    config = load_config("darcy")
    config.opt.learning_rate = np.float32("nan")
    with pytest.raises(ValueError, match=r"^Invalid opt.learning_rate=.*nan.*; it must be a finite number > 0\.$"):
        validate_config(config)


def _float_keys(config):
    """Dotted keys of the float fields (float, Optional[float], lists of floats) of ``config``."""
    keys = set()
    for key in config_keys(config):
        section, _, name = key.rpartition(".")
        owner = getattr(config, section) if section else config
        annotation = config_fields(owner).get(name, (None, None))[0]
        while typing.get_args(annotation) and float not in typing.get_args(annotation):
            annotation = typing.get_args(annotation)[0]  # List[List[float]] -> List[float]
        if float in (annotation, *typing.get_args(annotation)):
            keys.add(key)
    return keys


def test_every_float_field_of_the_built_in_sections_is_checked_for_nan_and_inf():
    # a new float field must join NON_FINITE
    checked = {key for key, _, _ in NON_FINITE}
    found = set()
    for selection in ({}, TFNO_TUCKER, UNO):
        found |= _float_keys(load_config("darcy", selection))
    assert "model.uno_scalings" in found and "opt.betas" in found  # lists of floats count
    assert found <= checked, f"float fields without a NaN/inf test: {sorted(found - checked)}"


NEGATIVE_OR_EMPTY_SIZES = [
    ("model.channel_mlp_expansion", "-1", {}), ("model.channel_mlp_expansion", "0", {}),
    ("model.channel_mlp_expansion", "0.01", {}),  # round(0.32) = 0 channels for width 32
    ("model.projection_channel_ratio", "-1", {}), ("model.projection_channel_ratio", "0", {}),
    ("model.projection_channel_ratio", "0.03", {}),  # int(0.96) = 0 channels
    ("model.lifting_channel_ratio", "-2", {}), ("model.lifting_channel_ratio", "-0.5", {}),
    ("model.data_channels", "0", {}), ("model.out_channels", "-1", {}), ("model.out_channels", "0", UNO),
    ("model.channel_mlp_expansion", "-1", UNO), ("model.channel_mlp_expansion", "0", UNO),
    ("model.lifting_channels", "0", UNO), ("model.projection_channels", "-1", UNO),
    ("model.uno_out_channels", "[0, 64, 64, 32]", UNO), ("model.uno_out_channels", "[32, -1, 64, 32]", UNO),
    ("model.uno_scalings", "[[1, 1], [0, 0.5], [2, 2], [1, 1]]", UNO),
    ("model.uno_scalings", "[[1, 1], [-0.5, 0.5], [2, 2], [1, 1]]", UNO),
    ("model.uno_scalings", "[[1, 1], [0.5, 0.5], [2, 2]]", UNO),  # upstream asserts one per layer
    ("model.uno_n_modes", "[[8, 8], [4, 4], [4, 4]]", UNO),
    ("model.n_layers", "3", UNO),
]


@pytest.mark.parametrize("key, value, selection", NEGATIVE_OR_EMPTY_SIZES,
                         ids=[f"{k}={v}{'-uno' if s else ''}" for k, v, s in NEGATIVE_OR_EMPTY_SIZES])
def test_sizes_that_would_build_an_empty_or_negative_layer_are_refused(key, value, selection):
    """Upstream sizes layers from these and fails with a "negative dimension" traceback (or an
    empty layer at the first forward, or a bare AssertionError): refused up front instead."""
    with pytest.raises(ValueError, match=r"^Invalid model\.") as raised:
        load_config("darcy", {**selection, key: value})
    message = str(raised.value)
    assert "allowed values" in message and "\n" not in message
    if key != "model.n_layers":  # that one names the list that no longer matches
        assert key in message


@pytest.mark.parametrize("overrides", [
    {"model.lifting_channel_ratio": "0"},  # upstream: no lifting MLP
    {"model.channel_mlp_expansion": "0", "model.use_channel_mlp": "false"},
    {"model.projection_channel_ratio": "0.125"},  # int(0.125 * 8) = 1 channel
    {"model.channel_mlp_expansion": "0.07"},  # round(0.56) = 1 channel
])
def test_the_smallest_accepted_sizes_build_a_working_model(overrides):
    import torch

    import neuralop_mp

    config = load_config("darcy", {"model.hidden_channels": "8", "model.n_modes": "[4,4]", "model.n_layers": "1",
                                   **overrides})
    model = neuralop_mp.get_model(config)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)


def test_data_seed_must_be_a_non_negative_integer():
    with pytest.raises(ValueError) as raised:
        load_config("darcy", {"data.seed": "-1"})
    assert str(raised.value) == "Invalid data.seed=-1; it must be >= 0."
    # numpy's SeedSequence, which the generators seed each sample from, takes any size
    assert load_config("darcy", {"data.seed": str(2**40)}).data.seed == 2**40


# ------------------------------------------------------------------------- a user's config file
@pytest.fixture
def restore_registries():
    """Classes of a test's config file register into the categories' registries (zencfg);
    remove them afterwards, or later tests list them as choices (``--model`` in ``--help``)."""
    from neuralop_mp.configs.zencfg_compat import category

    registries = {id(r): (r, dict(r)) for r in (category(c)._registry for c in (ModelConfig, OptimizationConfig,
                                                                               TrainConfig, DataConfig))}
    yield
    for registry, saved in registries.values():
        registry.clear()
        registry.update(saved)


NARROW_CONFIG = (
    "from neuralop_mp.configs import DarcyConfig, OptimizationConfig, TFNOConfig\n"
    "class NarrowTFNO(TFNOConfig):\n"
    "    rank: float = 0.2\n"
    "class Small(DarcyConfig):\n"
    "    model: TFNOConfig = TFNOConfig(hidden_channels=8)\n"
)


@pytest.mark.parametrize("selected", ["FNOConfig", "UNOConfig", "fnoconfig"])
def test_a_section_narrowed_by_a_config_file_takes_only_subclasses_of_its_annotation(
        tmp_path, restore_registries, selected):
    from neuralop_mp.configs.zencfg_compat import section_class, subclass_choices

    path = tmp_path / "narrow.py"
    path.write_text(NARROW_CONFIG)
    with pytest.raises(ValueError) as raised:
        load_config(f"{path}:Small", {"model": selected})
    assert str(raised.value) == f"Invalid TFNOConfig class {selected!r}; allowed values: TFNOConfig, NarrowTFNO."
    assert type(load_config(f"{path}:Small", {"model": "narrowtfno"}).model).__name__ == "NarrowTFNO"
    assert type(load_config(f"{path}:Small", {"model": "TFNOConfig"}).model) is TFNOConfig
    # the choices --help lists come from the same class
    config = load_config(f"{path}:Small", validate=False)
    assert subclass_choices(section_class(config, "model")) == ["TFNOConfig", "NarrowTFNO"]
    assert section_class(DarcyConfig(), "model") is ModelConfig
    from neuralop_mp.cli import train_help

    assert "  --model {TFNOConfig, NarrowTFNO}  (current: TFNOConfig)" in train_help(f"{path}:Small").splitlines()


BAD_DEFAULTS = [
    ("class Mine(DarcyConfig):\n    name: str = 5\n", "Mine", {}, "Invalid Mine.name=5 (the class default); "
                                                                  "allowed values: a string."),
    ("class Mine(DarcyConfig):\n    seed: int = 'zero'\n", "Mine", {},
     "Invalid Mine.seed='zero' (the class default); allowed values: an integer."),
    ("class SlowOpt(OptimizationConfig):\n    n_epochs: int = 'many'\n", "DarcyConfig", {"opt": "SlowOpt"},
     "Invalid SlowOpt.n_epochs='many' (the class default); allowed values: an integer."),
]


@pytest.mark.parametrize("body, class_name, overrides, message", BAD_DEFAULTS, ids=["str", "int", "section"])
def test_a_class_default_of_the_wrong_type_is_one_line_naming_field_and_value(
        tmp_path, restore_registries, body, class_name, overrides, message):
    path = tmp_path / "mine.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig, OptimizationConfig\n" + body)
    with pytest.raises(ValueError) as raised:
        load_config(f"{path}:{class_name}", overrides)
    assert str(raised.value) == message


COUNTED_CONFIG = (
    "from pathlib import Path\n"
    "with open(Path(__file__).with_suffix('.runs'), 'a') as runs:\n"
    "    runs.write('run\\n')\n"
    "from neuralop_mp.configs import DarcyConfig\n"
)


@pytest.mark.parametrize("body, spec_suffix", [
    ("class Wide(DarcyConfig):\n    name: str = 'wide'\n", ""),  # the file's only TrainConfig
    ("class Default(DarcyConfig):\n    name: str = 'wide'\n", ""),
    ("class Wide(DarcyConfig):\n    name: str = 'wide'\n", ":Wide"),
], ids=["only-class", "default", "named"])
def test_a_config_file_runs_once_per_load(tmp_path, restore_registries, body, spec_suffix):
    # a config file may have side effects (a log line, a folder); finding its class must not repeat them
    path = tmp_path / "counted.py"
    path.write_text(COUNTED_CONFIG + body)
    config = load_config(f"{path}{spec_suffix}")
    assert config.name == "wide"
    assert path.with_suffix(".runs").read_text().splitlines() == ["run"]


@pytest.mark.parametrize("body, found", [
    ("", "none"),
    ("class Wide(DarcyConfig):\n    pass\nclass Narrow(DarcyConfig):\n    pass\n", "Narrow, Wide"),
], ids=["none", "two"])
def test_a_config_file_without_default_or_one_train_config_asks_for_the_class(
        tmp_path, restore_registries, body, found):
    path = tmp_path / "unclear.py"
    path.write_text(COUNTED_CONFIG + body)
    with pytest.raises(ValueError) as raised:
        load_config(str(path))
    assert str(raised.value) == (f"{path}: name the config class as {path}:ClassName "
                                 f"(TrainConfig classes found: {found}).")
    assert path.with_suffix(".runs").read_text().splitlines() == ["run"]


def test_a_config_file_without_default_may_import_a_module_beside_it(tmp_path, restore_registries):
    # relative imports work in the file's only run, as with a Default class
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "sizes.py").write_text("WIDTH = 12\n")
    path = tmp_path / "relative.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig, FNOConfig\nfrom .sizes import WIDTH\n"
                    "class Wide(DarcyConfig):\n    model: FNOConfig = FNOConfig(hidden_channels=WIDTH)\n")
    assert load_config(str(path)).model.hidden_channels == 12
