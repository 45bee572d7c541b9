"""Values of ``model.model_arch`` and ``model.norm`` that no config can train are refused when the
config is checked, with the reason, before any data loads (each failed when the model was built,
after the data): ``norm ada_in`` (FNO takes no ``ada_in_features``), ``uqno`` (needs a model),
``gino`` and ``fnogno`` (point-cloud inputs), and an architecture given a section of another's keys.
The architectures of the built-in sections train as before."""
import inspect

import pytest
from neuralop.models import FNO

from neuralop_mp import cli
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.configs import validation

from .test_configs import restore_registries  # noqa: F401 (a fixture: the test's config classes are removed after it)
from .test_eval_and_best import TINY_ARGS

# the tiny run's data and sizes, less its model keys: the sections differ in theirs
DATA_ARGS = [token for key, value in zip(TINY_ARGS[::2], TINY_ARGS[1::2]) if not key.startswith("--model.")
             for token in (key, value)]
# the registry's trainable names of a plain install; other tests register FNO subclasses of their own
# into upstream's (global) registry, which the allowed values then list too
BUILT_IN = ("fno", "mixedprecisionfno", "mixedprecisiontfno", "mixedprecisionuno", "tfno", "uno")


def _allowed():
    return ", ".join(map(repr, validation.trainable_architectures()))


def test_the_trainable_architectures_are_the_built_in_ones_without_uqno_gino_fnogno():
    trainable = set(validation.trainable_architectures())
    assert set(BUILT_IN) <= trainable and not trainable & {"uqno", "gino", "fnogno"}


class WorkStarted(AssertionError):
    """The data were asked for where the config should have been refused first."""


def _train_error(monkeypatch, capsys, tmp_path, *args):
    def refuse(*args, **kwargs):
        raise WorkStarted("the data load started")

    monkeypatch.setattr(pipeline, "build_data", refuse)
    assert cli.main(["train", *DATA_ARGS, "--threads", "1", "--output_dir", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.startswith("neuralop-mp train: error:")]
    assert not (tmp_path / "run").exists()
    return line.removeprefix("neuralop-mp train: error: ")


@pytest.mark.skipif("ada_in_features" in inspect.signature(FNO.__init__).parameters,
                    reason="this neuraloperator's FNO builds ada_in")
@pytest.mark.parametrize("section", [[], ["--model", "TFNOConfig"], ["--model", "UNOConfig"]])
def test_norm_ada_in_is_refused_with_its_reason(monkeypatch, capsys, tmp_path, section):
    assert _train_error(monkeypatch, capsys, tmp_path, *section, "--model.norm", "ada_in") == (
        "Invalid model.norm='ada_in' (FNO takes no ada_in_features, the embedding size AdaIN needs, so it cannot "
        "build it); allowed values: 'group_norm', 'instance_norm', None.")
    assert "ada_in" not in validation.upstream_choices()["norm"]


@pytest.mark.parametrize("arch, reason", [
    ("uqno", "UQNO needs base_model, a model, which no config value is"),
    ("gino", "GINO's forward needs input_geom, latent_queries, output_queries; neuralop-mp's training loop gives a "
             "sample's x and y; for a loop of your own, load_config(..., training=False) loads it with a model section "
             "whose keys are its arguments"),
    ("FNOGNO", "FNOGNO's forward needs in_p, out_p, f; neuralop-mp's training loop gives a sample's x and y; for a "
               "loop of your own, load_config(..., training=False) loads it with a model section whose keys are its "
               "arguments"),
])
def test_an_architecture_no_config_can_train_is_refused_with_its_reason(monkeypatch, capsys, tmp_path, arch, reason):
    assert _train_error(monkeypatch, capsys, tmp_path, "--model.model_arch", arch) == (
        f"Invalid model.model_arch={arch.lower()!r} ({reason}); allowed values: {_allowed()}.")


def test_an_unknown_architecture_lists_the_trainable_ones(monkeypatch, capsys, tmp_path):
    assert _train_error(monkeypatch, capsys, tmp_path, "--model.model_arch", "gin") == (
        f"Invalid model.model_arch='gin'; allowed values: {_allowed()}.")


@pytest.mark.parametrize("section, shown, arch, unknown, hint", [
    ([], "FNOConfig", "uno", "['lifting_channel_ratio', 'n_modes', 'projection_channel_ratio', 'use_channel_mlp']",
     "UNOConfig"),
    (["--model", "UNOConfig"], "UNOConfig", "tfno", "['horizontal_skip', 'lifting_channels', 'projection_channels', "
                                                    "'uno_n_modes', 'uno_out_channels', 'uno_scalings']", "TFNOConfig"),
])
def test_an_architecture_given_another_sections_keys_is_refused_naming_its_section(
        monkeypatch, capsys, tmp_path, section, shown, arch, unknown, hint):
    """`--model.model_arch uno` with FNOConfig's keys failed after the data, at the model's build."""
    line = _train_error(monkeypatch, capsys, tmp_path, *section, "--model.model_arch", arch)
    assert line.startswith(f"Invalid model.model_arch={arch!r} with the section {shown}: config.model has keys "
                           f"{unknown} that ")
    assert line.endswith(f" Select its section with --model {hint}.")


def test_a_section_lacking_an_argument_the_architecture_needs_is_refused(tmp_path, restore_registries):  # noqa: F811
    """A user's section without FNO's n_modes: named, before the data."""
    (tmp_path / "lacking.py").write_text(
        "from neuralop_mp.configs import DarcyConfig\nfrom neuralop_mp.configs.models import ModelConfig\n\n"
        "class Bare(ModelConfig):\n    hidden_channels: int = 8\n\n"
        "class Lacking(DarcyConfig):\n    model: ModelConfig = Bare()\n")
    with pytest.raises(ValueError) as raised:
        load_config(f"{tmp_path}/lacking.py:Lacking")
    assert str(raised.value) == ("Invalid model.model_arch='fno' with the section Bare: config.model lacks n_modes, "
                                 "which FNO needs. Select its section with --model FNOConfig.")


@pytest.mark.parametrize("section, arch", [("FNOConfig", "fno"), ("TFNOConfig", "tfno"), ("UNOConfig", "uno")])
def test_the_built_in_sections_still_load(section, arch):
    assert load_config("darcy", {"model": section}).model.model_arch == arch
    assert arch in validation.trainable_architectures()


@pytest.fixture
def masked_arch(monkeypatch):
    """A registered FNO whose forward takes a mask besides x (a user's model, for a loop of their own)."""
    from neuralop.models.base_model import BaseModel

    monkeypatch.setattr(BaseModel, "_models", dict(BaseModel._models))  # the registration is undone after

    class MaskedFNO(FNO, name="maskedfno"):
        def forward(self, x, mask, **kwargs):
            return super().forward(x * mask, **kwargs)

    return "maskedfno"


def test_the_training_loops_rule_has_a_way_out_for_a_loop_of_ones_own(masked_arch, monkeypatch):
    """The forward rule is the training loop's: load_config(training=False) loads the model and
    get_model builds it; the training loop still refuses it, before the data."""
    import torch

    from neuralop_mp import get_model

    overrides = {"model.model_arch": masked_arch, "model.hidden_channels": "8", "model.n_modes": "[4, 4]"}
    with pytest.raises(ValueError) as raised:
        load_config("darcy", overrides)
    assert str(raised.value) == (
        f"Invalid model.model_arch={masked_arch!r} (MaskedFNO's forward needs mask; neuralop-mp's training loop gives "
        f"a sample's x and y; for a loop of your own, load_config(..., training=False) loads it with a model section "
        f"whose keys are its arguments); allowed values: "
        f"{_allowed()}.")
    config = load_config("darcy", overrides, training=False)
    model = get_model(config)
    assert model(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)).shape == (1, 1, 8, 8)
    assert masked_arch in validation.trainable_architectures(training=False)
    assert masked_arch not in validation.trainable_architectures()

    def refuse(*args, **kwargs):
        raise WorkStarted("the data load started")

    monkeypatch.setattr(pipeline, "build_data", refuse)
    with pytest.raises(ValueError, match="MaskedFNO's forward needs mask"):
        pipeline.run_training(config, write=False, progress=False, log=lambda *a: None)


def test_a_model_no_config_can_build_is_refused_for_a_loop_of_ones_own_too():
    with pytest.raises(ValueError, match=r"\(UQNO needs base_model, a model, which no config value is\)"):
        load_config("darcy", {"model.model_arch": "uqno"}, training=False)
