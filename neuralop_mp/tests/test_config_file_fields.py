"""A key of a config file that no field has is refused, as an unknown ``--key`` is, not ignored.

zencfg 0.7 kept ``OptimizationConfig(n_epoch=1)``'s keyword as a stray attribute (the run trained
the default 30 epochs), and a TrainConfig subclass's own ``n_epoch: int = 1`` was a field nothing
read; zencfg 1.0 refused the keyword in a multi-line pydantic report. Each is now one line naming the
class, the key, its close match and the file, before anything is written. These tests run under
zencfg 1.0 too (integration_tests/test_zencfg_versions.py), so they assert what both versions say.
"""
import re

import pytest

from neuralop_mp import cli
from neuralop_mp.configs import (CONFIGS, DataConfig, ModelConfig, OptimizationConfig, TrainConfig, config_keys,
                                 load_config)
from neuralop_mp.configs.zencfg_compat import PYDANTIC_CONFIGS, category

HEAD = ("from typing import Optional\n"
        "from zencfg import ConfigBase\n"
        "from neuralop_mp.configs import (DarcyConfig, DarcyDatasetConfig, DataConfig, FNOConfig, ModelConfig,\n"
        "                                 OptimizationConfig)\n")

# (class body of Mine(DarcyConfig), the unknown key, the close match the line must give)
TYPOS = {
    "opt-keyword": ("    opt: OptimizationConfig = OptimizationConfig(n_epoch=1, learning_rate=1e-3)\n",
                    "n_epoch", "n_epochs"),
    "top-level-field": ("    n_epoch: int = 1\n", "n_epoch", "opt.n_epochs"),
    "model-keyword": ("    model: ModelConfig = FNOConfig(n_modes=[8, 8], hidden_channels=8, n_layer=2)\n",
                      "n_layer", "n_layers"),
    "opt-subclass-field": ("    opt: OptimizationConfig = MyOpt()\n", "n_epoch", "opt.n_epochs"),
    "data-subclass-field": ("    data: DataConfig = MyData()\n", "n_trian", "data.n_train"),
    "section-at-a-misspelt-key": ("    optt: OptimizationConfig = OptimizationConfig(n_epochs=1)\n", "optt", "opt"),
}
OWN_CLASSES = ("class MyOpt(OptimizationConfig):\n    n_epoch: int = 1\n"
               "class MyData(DarcyDatasetConfig):\n    n_trian: int = 8\n")


@pytest.fixture
def restore_registries():
    """A config file's classes register into zencfg's category registries: removed afterwards."""
    registries = [category(c)._registry for c in (ModelConfig, OptimizationConfig, TrainConfig, DataConfig)]
    saved = [dict(r) for r in registries]
    yield
    for registry, before in zip(registries, saved):
        registry.clear()
        registry.update(before)


@pytest.fixture
def no_data(monkeypatch):
    """A run that gets past the config fails at once, with what it left in its folder to see."""
    import neuralop_mp.train_pipeline as pipeline

    def refuse(*args, **kwargs):
        raise ValueError("the data load was reached: the config file's key was not refused")

    monkeypatch.setattr(pipeline, "build_data", refuse)


@pytest.mark.parametrize("body, unknown, close", TYPOS.values(), ids=TYPOS)
def test_a_misspelt_key_of_a_config_file_is_refused_in_one_line_before_anything_is_written(
        tmp_path, monkeypatch, capsys, restore_registries, no_data, body, unknown, close):
    path = tmp_path / "mine.py"
    path.write_text(HEAD + OWN_CLASSES + "class Mine(DarcyConfig):\n    name: str = 'mine'\n" + body)
    out = tmp_path / "run"
    assert cli.main(["train", f"{path}:Mine", "--output_dir", str(out), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuralop-mp train: error: "), err
    line = err[0]
    # zencfg 1.0 refuses a keyword while the file runs, before its section's key is known
    assert unknown in line and re.search(rf"Did you mean: (\w+\.)?{re.escape(close)}\?", line), line
    assert str(path) in line, line  # the config file, named as given (0.7) or at its line (zencfg 1.0)
    assert "Traceback" not in line and not out.exists()


def test_the_audit_config_names_both_keys_and_their_matches(tmp_path, capsys, restore_registries, no_data):
    path = tmp_path / "myconf3.py"
    path.write_text(HEAD + "class Mine(DarcyConfig):\n    name: str = 'mine'\n"
                    "    model: ModelConfig = FNOConfig(n_modes=[8, 8], hidden_channels=8)\n"
                    "    opt: OptimizationConfig = OptimizationConfig(n_epoch=1, learning_rat=1e-3)\n")
    with pytest.raises(ValueError) as raised:
        load_config(f"{path}:Mine")
    message = str(raised.value)
    prefix = "" if PYDANTIC_CONFIGS else "opt."  # 1.0 refuses the keywords before the class has a section
    assert message.startswith(f"Unknown fields {prefix}n_epoch, {prefix}learning_rat of OptimizationConfig in "
                              f"{path}"), message
    assert f"Did you mean: {prefix}n_epochs, {prefix}learning_rate?" in message and "\n" not in message


def test_python_made_config_with_a_stray_attribute_is_refused_by_validation():
    from neuralop_mp.configs import validate_config

    config = load_config("darcy")  # a copy: DarcyConfig() would share (and here edit) the class's sections
    if PYDANTIC_CONFIGS:  # zencfg 1.0 refuses the attribute itself
        with pytest.raises(ValueError, match="n_epoch"):
            config.opt.n_epoch = 1
        return
    config.opt.n_epoch = 1  # zencfg 0.7 takes any attribute
    with pytest.raises(ValueError, match=r"^Unknown field opt\.n_epoch of OptimizationConfig \(keyword it does not "
                                         r"take; it would be ignored\)\. Did you mean: opt\.n_epochs\?$"):
        validate_config(config)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_builtin_config_still_loads(name):
    config = load_config(name)
    assert type(config) is CONFIGS[name]


def test_sections_of_the_users_own_still_load_and_take_overrides(tmp_path, restore_registries):
    path = tmp_path / "own.py"
    path.write_text(HEAD + "class Tracking(ConfigBase):\n    project: str = 'p'\n    log_every: int = 10\n"
                    "class Mine(DarcyConfig):\n"
                    "    tracking: Tracking = Tracking(project='mine')\n"
                    "    extras: dict = {'note': 1}\n"
                    "    later: Optional[Tracking] = None\n")
    config = load_config(f"{path}:Mine", {"tracking.log_every": "5"})
    assert (config.tracking.project, config.tracking.log_every, config.extras, config.later) == ("mine", 5, {"note": 1},
                                                                                                None)
    assert "tracking.project" in config_keys(config)


def test_a_stray_keyword_of_a_users_own_section_is_refused_too(tmp_path, restore_registries):
    path = tmp_path / "own.py"
    path.write_text(HEAD + "class Tracking(ConfigBase):\n    project: str = 'p'\n"
                    "class Mine(DarcyConfig):\n    tracking: Tracking = Tracking(projet='mine')\n")
    with pytest.raises(ValueError, match=r"^Unknown field (tracking\.)?projet of Tracking in .*Did you mean: "
                                         r"(tracking\.)?project\?"):
        load_config(f"{path}:Mine")


def test_an_upper_case_constant_of_the_class_body_is_no_field(tmp_path):
    # a constant the fields below it use (PEP 8's UPPER_CASE): no field of the trainer, nor a misspelt one
    path = tmp_path / "constant.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig, OptimizationConfig\n\n"
                    "class Mine(DarcyConfig):\n    EPOCHS = 3\n"
                    "    opt: OptimizationConfig = OptimizationConfig(n_epochs=EPOCHS)\n")
    assert load_config(f"{path}:Mine").opt.n_epochs == 3
    # no key: the fields that used it were set when the class was defined, so an override is refused
    assert "EPOCHS" not in config_keys(load_config(f"{path}:Mine"))
    with pytest.raises(ValueError, match=r"^Invalid --EPOCHS: EPOCHS is a constant of the config class's body"):
        load_config(f"{path}:Mine", {"EPOCHS": 5})
    # lower case it is a field of the class's own: refused, and the hint says how to write a constant
    path.write_text(path.read_text().replace("EPOCHS", "epochs"))
    with pytest.raises(ValueError, match=r"Unknown field epochs of Mine .* constants of the class body are "
                                         r"written in UPPER_CASE"):
        load_config(f"{path}:Mine")
