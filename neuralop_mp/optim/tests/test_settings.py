"""One table of TensorGRaD settings: the constructor, the factory, the config fields
and both command lines are checked against it, so a default or a name cannot drift."""
import inspect

import numpy as np
import pytest
import torch
from neuralop.models import FNO

from configs.opt import OptimizationConfig
from configs.zencfg_compat import config_fields
from neuralop_mp.configs import load_config
from neuralop_mp.optim import TensorGRaD, create_optimizer
from neuralop_mp.optim.factory import TENSORGRAD_FIELDS
from neuralop_mp.optim.settings import CONFIG_OPTIONS, OPTIONS_BY_NAME, TENSORGRAD_OPTIONS, TORCH_ADAMW_KEYS

# a non-default value of every setting configs expose
NON_DEFAULT = {"adam_convention": "neuralop", "min_params": 10, "rank": 0.5, "sparse_ratio": 0.1,
               "sparse_type": "topk", "update_proj_gap": 7, "scale": 3.0, "state_dtype": "bfloat16",
               "nonfinite_grad": "skip"}


def test_constructor_keywords_and_defaults_are_the_table():
    signature = inspect.signature(TensorGRaD.__init__).parameters
    keywords = {name: p.default for name, p in signature.items() if name not in ("self", "params")}
    # torch AdamW's keywords, accepted for drop-in use, are no settings (test_state_and_group_checks.py)
    settings = {name: default for name, default in keywords.items() if name not in TORCH_ADAMW_KEYS}
    assert settings == {o.name: o.default for o in TENSORGRAD_OPTIONS}
    assert keywords.keys() - settings.keys() == TORCH_ADAMW_KEYS.keys()
    assert TensorGRaD([torch.nn.Parameter(torch.zeros(3))]).defaults == settings



def test_real_settings_are_python_floats_or_the_given_tensor_and_refuse_bools_and_nonfinite_ones():
    lr = torch.tensor(1e-3)
    optimizer = TensorGRaD([torch.nn.Parameter(torch.zeros(3))], lr=lr, eps=np.float32(1e-6),
                           betas=(np.float64(0.9), 0.99))
    group = optimizer.param_groups[0]
    assert group["lr"] is lr  # a 0-d tensor learning rate stays a tensor
    # numpy scalars become Python floats: torch.load(weights_only=True) refuses numpy scalars
    assert type(group["eps"]) is float and group["eps"] == float(np.float32(1e-6))
    assert type(group["betas"]) is tuple and [type(b) for b in group["betas"]] == [float, float]
    assert group["betas"] == (0.9, 0.99)
    check = OPTIONS_BY_NAME["lr"].check
    for bad, shown in ((torch.tensor(True), r"tensor\(True\) \(Tensor\)"), (np.True_, r"np.True_ \(bool\)")):
        with pytest.raises(TypeError, match=rf"^Invalid lr={shown}; expected a finite number >= 0\.0\.$"):
            check("lr", bad)
    for bad in (torch.tensor(float("nan")), np.float32(-1e-3), 10**400):  # 10**400: no float, not an OverflowError
        with pytest.raises(ValueError, match=r"^Invalid lr=.*; expected a finite number >= 0\.0\.$") as info:
            check("lr", bad)
        assert not isinstance(info.value, TypeError)


def _python_only(value):
    """Whether ``value`` holds no numpy object (torch.load(weights_only=True) refuses them)."""
    if isinstance(value, dict):
        return all(_python_only(k) and _python_only(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_python_only(v) for v in value)
    return value is None or type(value) in (bool, int, float, str, torch.Tensor)


def test_numpy_settings_make_a_state_dict_that_loads_with_weights_only(tmp_path):
    """Every kind of setting (real, int, rank, ratio, choice, betas) given as a numpy scalar, to
    the constructor and in a param group: the saved state dict resumes under weights_only=True."""
    torch.manual_seed(0)

    def build():
        weight = torch.nn.Parameter(torch.randn(6, 5, 4, 3, dtype=torch.complex64))
        bias = torch.nn.Parameter(torch.randn(5))
        other = torch.nn.Parameter(torch.randn(6, 5, 4))
        groups = [{"params": [weight, bias]},
                  {"params": [other], "lr": np.float64(2e-3), "rank": (np.int64(2), np.int64(2), np.int64(2)),
                   "sparse_ratio": np.float32(0.25), "sparse_type": np.str_("topk"), "scale": np.float64(2.0),
                   "update_proj_gap": np.int32(3), "min_params": np.int64(0)}]
        optimizer = TensorGRaD(
            groups, lr=np.float32(1e-3), betas=(np.float64(0.9), np.float32(0.99)), eps=np.float32(1e-6),
            weight_decay=np.float64(0.01), adam_convention=np.str_("neuralop"), min_params=np.int64(10),
            rank=np.float64(0.5), sparse_ratio=np.float64(0.1), sparse_type=np.str_("randk"),
            sparse_mode=np.int64(0), order=np.str_("lowrank_first"), update_proj_gap=np.int64(2),
            scale=np.float32(3.0), sparse_scale=np.float64(1.0), lambda_sparse=np.float64(1.0),
            tucker_n_iter_max=np.int64(1), state_dtype=np.str_("float32"), nonfinite_grad=np.str_("skip"),
            seed=np.uint64(7), rank_convention=np.str_("core"))
        return optimizer, (weight, bias, other)

    optimizer, params = build()
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    assert any(optimizer.state[p]["compressed"] for p in params)  # the compressed path ran
    saved = optimizer.state_dict()
    assert _python_only(saved["param_groups"])
    assert saved["param_groups"][1]["rank"] == (2, 2, 2) and saved["param_groups"][1]["sparse_type"] == "topk"
    torch.save(saved, tmp_path / "optimizer.pt")
    loaded = torch.load(tmp_path / "optimizer.pt", weights_only=True)  # raised UnpicklingError before
    fresh, fresh_params = build()
    fresh.load_state_dict(loaded)
    for p in fresh_params:
        p.grad = torch.randn_like(p)
    fresh.step()  # the resumed state steps on
    names = ["params"] + [o.name for o in TENSORGRAD_OPTIONS]
    assert ([{k: g[k] for k in names} for g in fresh.state_dict()["param_groups"]]
            == [{k: g[k] for k in names} for g in saved["param_groups"]])


def test_config_fields_are_the_table_config_options():
    fields = {name: default for name, (_, default) in config_fields(OptimizationConfig).items()
              if name.startswith("tensorgrad_")}
    assert fields == {o.config_field: o.default for o in CONFIG_OPTIONS}
    assert set(NON_DEFAULT) == {o.name for o in CONFIG_OPTIONS}
    assert {o.name for o in CONFIG_OPTIONS} <= set(TENSORGRAD_FIELDS)


def test_every_config_field_reaches_the_compressed_group():
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    config = {"optimizer": "tensorgrad", **{f"tensorgrad_{k}": v for k, v in NON_DEFAULT.items()}}
    optimizer = create_optimizer(model, config)
    compressed = [g for g in optimizer.param_groups if g["compress"]][0]
    assert {k: compressed[k] for k in NON_DEFAULT} == NON_DEFAULT
    # the uncompressed group uses the same Adam arithmetic
    assert {g["adam_convention"] for g in optimizer.param_groups} == {"neuralop"}


def test_train_command_line_takes_every_setting_and_checks_it_as_the_optimizer_does():
    # with an optimizer kind that reads them (AdamW, the default, reads none: refused)
    overrides = {"opt.optimizer": "tensorgrad", **{f"opt.tensorgrad_{k}": str(v) for k, v in NON_DEFAULT.items()}}
    config = load_config("darcy", overrides)
    assert {k: getattr(config.opt, f"tensorgrad_{k}") for k in NON_DEFAULT} == NON_DEFAULT
    with pytest.raises(ValueError, match=r"Invalid opt\.tensorgrad_adam_convention='pytorch'; allowed values: "
                                         r"'torch', 'neuralop'"):
        load_config("darcy", {"opt.tensorgrad_adam_convention": "pytorch"})
    with pytest.raises(ValueError, match=r"Invalid opt\.tensorgrad_update_proj_gap=0; expected an int >= 1"):
        load_config("darcy", {"opt.tensorgrad_update_proj_gap": "0"})


def test_run_command_line_flags_are_the_table_config_options():
    from neuralop_mp.runner.activation import OPTIMIZER_OPTION_KEYS
    from neuralop_mp.runner.cli import FLAGS, UsageError, parse_args

    expected = {o.config_field for o in CONFIG_OPTIONS}
    assert {k for k in FLAGS if k.startswith("tensorgrad_")} == expected == set(OPTIMIZER_OPTION_KEYS)
    # read with an optimizer kind that reads them (refused without one: nothing would)
    argv = ["t.py", "--mp.optimizer", "tensorgrad"] + [f"--mp.tensorgrad_{k}={v}" for k, v in NON_DEFAULT.items()]
    assert parse_args(argv)[1] == {"optimizer": "tensorgrad", **{f"tensorgrad_{k}": v for k, v in NON_DEFAULT.items()}}
    with pytest.raises((UsageError, ValueError), match=r"tensorgrad_adam_convention='pytorch'"):
        parse_args(["t.py", "--mp.optimizer", "tensorgrad", "--mp.tensorgrad_adam_convention", "pytorch"])


def test_config_docs_list_every_setting_with_its_default():
    import ast
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "configs.md").read_text()
    rows = dict(re.findall(r"^\| `(tensorgrad_\w+)` \| `([^`]*)` \|", text, re.M))
    assert {name: ast.literal_eval(value) for name, value in rows.items()} == {
        o.config_field: o.default for o in CONFIG_OPTIONS}


@pytest.mark.parametrize("name, given, meant", [("sparse_type", "TopK", "topk"), ("state_dtype", "BFloat16", "bfloat16")])
def test_a_choice_setting_in_another_case_names_the_spelling_meant_everywhere(name, given, meant):
    """The settings' own copy of check_choice gave no "Did you mean": --opt.tensorgrad_sparse_type TopK
    was refused without naming 'topk'. One check for the config, the factory and the constructor."""
    with pytest.raises(ValueError) as refused:
        load_config("darcy", ["--opt.optimizer", "tensorgrad", f"--opt.tensorgrad_{name}", given])
    assert str(refused.value).startswith(f"Invalid opt.tensorgrad_{name}={given!r}; allowed values: ")
    assert str(refused.value).endswith(f". Did you mean {meant!r}?")
    with pytest.raises(ValueError, match=rf"Did you mean {meant!r}\?$"):
        TensorGRaD([torch.nn.Parameter(torch.zeros(3))], **{name: given})
    with pytest.raises(TypeError, match=rf"^Invalid {name}=3 \(int\); allowed values: "):  # a non-string: TypeError
        TensorGRaD([torch.nn.Parameter(torch.zeros(3))], **{name: 3})
