"""``neuralop-mp train`` and ``neuralop-mp run`` build the same thing from the same settings.

The train path reads a config (:mod:`neuralop_mp.train_pipeline`); the run path
intercepts an upstream script's ``get_model(config)``, ``neuralop.training.AdamW(...)``
and ``Trainer(...)`` calls while :func:`neuralop_mp.enable` holds the precision and
optimizer options (:mod:`neuralop_mp.runner.intercept`). Both go through
:mod:`neuralop_mp.build_steps`; these tests fail if one of them stops doing so.
"""
import pytest
import torch
from zencfg.bunch import Bunch

import neuralop_mp
from neuralop_mp import build_steps, train_pipeline
from neuralop_mp.configs import config_to_dict, load_config
from neuralop_mp.configs.validation import validated_precision_policy
from neuralop_mp.layers.precision_switch import get_precision_policy
from neuralop_mp.models.recompute import recompute_mode
from neuralop_mp.precision_policy import PrecisionPolicy

SMALL_MODEL = {"model.n_modes": "[4,4]", "model.hidden_channels": "8", "model.n_layers": "2"}

CASES = {
    "half, tanh, tensorgrad, schedule": dict(
        precision="half", half_dtype="bfloat16", stabilizer="tanh", schedule="half:0.5,full:0.5",
        optimizer="tensorgrad", loss_scaling="dynamic",
        optimizer_options={"tensorgrad_rank": 0.3, "tensorgrad_sparse_ratio": 0.1, "tensorgrad_min_params": 100},
    ),
    "mixed, tanh, adamw, constant, recompute, update in backward": dict(
        precision="mixed", half_dtype="float16", stabilizer="tanh", optimizer="adamw", loss_scaling="none",
        recompute="fourier", update_in_backward=True),
}


def _train_overrides(case):
    overrides = dict(SMALL_MODEL)
    overrides.update({
        "model.fno_block_precision": case["precision"],
        "model.half_dtype": case["half_dtype"],
        "opt.optimizer": case["optimizer"],
        "opt.learning_rate": "0.002",
        "opt.weight_decay": "0.0001",
        "opt.loss_scaling": case["loss_scaling"],
    })
    if case.get("stabilizer"):
        overrides["model.stabilizer"] = case["stabilizer"]
    if case.get("schedule"):
        overrides["opt.precision_schedule"] = case["schedule"]
    if case.get("recompute"):
        overrides["model.recompute"] = case["recompute"]
    if case.get("update_in_backward") is not None:
        overrides["opt.update_in_backward"] = str(case["update_in_backward"]).lower()
    overrides.update({f"opt.{k}": str(v) for k, v in (case.get("optimizer_options") or {}).items()})
    return overrides


def _group_settings(optimizer):
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def _build_by_train(config):
    policy = validated_precision_policy(config)
    model = train_pipeline.build_model(config, "cpu", policy)
    optimizer = train_pipeline.build_optimizer(model, config)
    schedule = train_pipeline.build_schedule(config, policy)
    trainer = train_pipeline.build_trainer(config, model, None, schedule, "cpu", progress=False, policy=policy)
    return model, optimizer, trainer


def _build_by_run(config, case):
    """What an upstream script does under ``enable``: its config has upstream's keys only."""
    import neuralop
    import neuralop.training

    plugin_keys = (*PrecisionPolicy.keys(), "recompute")
    script_model = {k: v for k, v in config_to_dict(config)["model"].items() if k not in plugin_keys}
    script_config = Bunch({"model": Bunch(script_model), "opt": Bunch({"n_epochs": config.opt.n_epochs})})
    options = {k: v for k, v in case.items() if v is not None}
    with neuralop_mp.enabled(**options):
        torch.manual_seed(config.seed)  # the seed train's build_model uses
        model = neuralop.get_model(script_config)
        optimizer = neuralop.training.AdamW(model.parameters(), lr=0.002, weight_decay=0.0001)
        trainer = neuralop.Trainer(model=model, n_epochs=config.opt.n_epochs, device="cpu",
                                   mixed_precision=False, verbose=False)
    return model, optimizer, trainer


@pytest.mark.parametrize("name", list(CASES))
def test_train_and_run_build_the_same_model_optimizer_and_trainer_settings(name):
    case = CASES[name]
    config = load_config("darcy", _train_overrides(case))
    train_model, train_opt, train_trainer = _build_by_train(config)
    run_model, run_opt, run_trainer = _build_by_run(config, case)

    assert type(run_model) is type(train_model)
    assert get_precision_policy(run_model) == get_precision_policy(train_model)
    assert get_precision_policy(train_model).fno_block_precision == case["precision"]
    train_state, run_state = train_model.state_dict(), run_model.state_dict()
    assert list(run_state) == list(train_state)
    tensors = [key for key in train_state if isinstance(train_state[key], torch.Tensor)]
    assert tensors
    for key in tensors:  # same seed, same constructor arguments: same initial weights
        assert torch.equal(run_state[key], train_state[key]), key
    others = [key for key in train_state if key not in tensors]  # e.g. upstream's metadata entry
    assert [run_state[key] for key in others] == [train_state[key] for key in others]

    assert type(run_opt) is type(train_opt)
    assert _group_settings(run_opt) == _group_settings(train_opt)

    assert str(run_trainer.precision_schedule) == str(train_trainer.precision_schedule)
    assert run_trainer.half_dtype == train_trainer.half_dtype
    assert run_trainer.loss_scaling == train_trainer.loss_scaling
    assert recompute_mode(run_model) == recompute_mode(train_model) == case.get("recompute", "none")
    assert run_trainer.update_in_backward is train_trainer.update_in_backward is case.get("update_in_backward", False)


def test_trainer_precision_kwargs_follow_the_schedule_and_leave_out_what_is_not_given():
    schedule = build_steps.precision_schedule("half:0.5,full:0.5", PrecisionPolicy())
    kwargs = build_steps.trainer_precision_kwargs(schedule, "bfloat16", "dynamic")
    # no mixed_precision: with a schedule its phases decide autocast (the flag would only be overruled)
    assert kwargs == {"precision_schedule": schedule, "half_dtype": "bfloat16", "loss_scaling": "dynamic"}
    full = build_steps.precision_schedule(None, PrecisionPolicy("full"))
    assert build_steps.trainer_precision_kwargs(full) == {"precision_schedule": full}
    assert build_steps.trainer_precision_kwargs(None) == {}
    assert build_steps.trainer_memory_kwargs("true") == {"update_in_backward": True}
    assert build_steps.trainer_memory_kwargs(None) == {}


def test_a_bad_schedule_is_refused_naming_the_value():
    with pytest.raises(ValueError, match="opt.precision_schedule='sometimes'"):
        build_steps.precision_schedule("sometimes", PrecisionPolicy())
