"""enable / disable / enabled: what is replaced while active, and that all of it comes back."""
import importlib

import neuralop
import neuralop.models
import neuralop.models.base_model
import neuralop.training
import neuralop.training.adamw
import neuralop.training.trainer
import warnings

import pytest
import torch

import neuralop_mp
from neuralop_mp.runner import activation
from neuralop_mp.runner.activation import (
    GET_MODEL_SITES,
    NEURALOP_ADAMW_SITES,
    TRAINER_SITES,
)
from neuralop_mp.training.schedule import PrecisionSchedule

from .conftest import FakeMixedPrecisionSpectralConv, FakeMixedPrecisionTrainer

ALL_SITES = GET_MODEL_SITES + TRAINER_SITES + NEURALOP_ADAMW_SITES
TORCH_OPTIMIZERS = {name: getattr(torch.optim, name) for name in dir(torch.optim) if isinstance(getattr(torch.optim, name), type)}


def _current():
    return {site: getattr(importlib.import_module(site[0]), site[1]) for site in ALL_SITES}


@pytest.fixture
def originals():
    before = _current()
    yield before
    assert _current() == before, "a test left a patched name behind"


def test_importing_the_runner_patches_nothing(originals):
    # the runner modules are imported by now (conftest); upstream's names are untouched
    assert neuralop.get_model.__module__ == "neuralop.models.base_model"
    assert neuralop.Trainer.__module__ == "neuralop.training.trainer"
    assert neuralop.training.AdamW.__module__ == "neuralop.training.adamw"
    assert torch.optim.AdamW.__module__ == "torch.optim.adamw"
    assert not activation.is_enabled()


def test_public_names_are_the_activation_functions():
    assert neuralop_mp.enable is activation.enable
    assert neuralop_mp.disable is activation.disable
    assert neuralop_mp.enabled is activation.enabled


def test_every_site_is_replaced_while_enabled_and_restored_after(fake_parts, originals):
    with neuralop_mp.enabled(precision="mixed", optimizer="tensorgrad") as report:
        now = _current()
        for site in ALL_SITES:
            assert now[site] is not originals[site], site
        assert neuralop.get_model is neuralop.models.get_model is neuralop.models.base_model.get_model
        assert neuralop.Trainer is neuralop.training.Trainer is neuralop.training.trainer.Trainer
        assert issubclass(neuralop.Trainer, FakeMixedPrecisionTrainer)
        assert activation.is_enabled() and report.options["precision"] == "mixed"
    assert _current() == originals
    assert not activation.is_enabled()


def test_torch_optim_is_never_replaced_and_isinstance_and_subclassing_hold(fake_parts):
    layer = torch.nn.Linear(3, 2)
    with neuralop_mp.enabled(precision="mixed", optimizer="tensorgrad") as report:
        now = {name: getattr(torch.optim, name) for name in TORCH_OPTIMIZERS}
        assert now == TORCH_OPTIMIZERS
        opt = torch.optim.AdamW(layer.parameters(), lr=1e-3)
        assert isinstance(opt, torch.optim.AdamW) and type(opt) is TORCH_OPTIMIZERS["AdamW"]

        class MyOpt(torch.optim.AdamW):
            def __init__(self, params, lr):
                super().__init__(params, lr=lr, eps=1e-3)
                self.built_by_my_init = True

        mine = MyOpt(layer.parameters(), lr=2e-3)
    assert mine.built_by_my_init and mine.param_groups[0]["eps"] == 1e-3
    assert isinstance(mine, torch.optim.AdamW) and isinstance(mine, torch.optim.Optimizer)
    assert fake_parts["create_optimizer"] == [] and report.optimizers == []


def test_a_subclass_of_the_replaced_neuralop_adamw_keeps_its_own_init(fake_parts, tiny_config, originals):
    upstream_adamw = originals[("neuralop.training", "AdamW")]
    with neuralop_mp.enabled(optimizer="tensorgrad") as report:
        model = neuralop.get_model(tiny_config)

        class MyOpt(neuralop.training.AdamW):
            def __init__(self, params, lr):
                super().__init__(params, lr=lr)
                self.built_by_my_init = True

        mine = MyOpt(model.parameters(), lr=2e-3)
        assert isinstance(mine, MyOpt) and isinstance(mine, neuralop.training.AdamW)
        assert not isinstance(torch.optim.SGD(model.parameters(), lr=0.1), MyOpt)
    assert type(mine) is MyOpt and mine.built_by_my_init and isinstance(mine, upstream_adamw)
    assert mine.param_groups[0]["lr"] == 2e-3
    assert fake_parts["create_optimizer"] == [] and report.optimizers == []


def test_isinstance_with_the_replaced_name_holds_for_what_it_built_and_for_upstreams(fake_parts, tiny_config,
                                                                                     originals):
    upstream_adamw = originals[("neuralop.training", "AdamW")]
    model_params = torch.nn.Linear(2, 2).parameters()
    before = upstream_adamw(model_params, lr=1e-3)
    with neuralop_mp.enabled(optimizer="adamw"):
        model = neuralop.get_model(tiny_config)
        built = neuralop.training.AdamW(model.parameters(), lr=1e-3)
        assert type(built) is not upstream_adamw  # the factory's optimizer, not upstream's
        assert isinstance(built, neuralop.training.AdamW) and isinstance(before, neuralop.training.AdamW)
        assert not isinstance(torch.optim.SGD(model.parameters(), lr=0.1), neuralop.training.AdamW)


def test_restored_when_the_block_raises(fake_parts, originals):
    with pytest.raises(KeyError, match="boom"):
        with neuralop_mp.enabled(precision="half", optimizer="adamw"):
            raise KeyError("boom")
    assert not activation.is_enabled()


@pytest.mark.parametrize("kwargs", [{"precison": "mixed"}, {"precision": "mixd"}, {"stabilizer": "relu"}])
def test_enabled_refuses_what_enable_refuses_with_the_same_error(fake_parts, originals, kwargs):
    with pytest.raises((TypeError, ValueError)) as direct:
        neuralop_mp.enable(**kwargs)
    with pytest.raises(type(direct.value)) as scoped:
        with neuralop_mp.enabled(**kwargs):
            pass
    assert str(scoped.value) == str(direct.value) and str(direct.value).startswith(
        "enable() got an unexpected keyword argument 'precison'" if "precison" in kwargs else "Invalid ")
    assert not activation.is_enabled()


def test_enable_does_not_nest(fake_parts, originals):
    neuralop_mp.enable(precision="mixed")
    try:
        with pytest.raises(RuntimeError, match="already enabled"):
            neuralop_mp.enable(precision="half")
    finally:
        report = neuralop_mp.disable()
    assert report is not None and report.options["precision"] == "mixed"
    assert neuralop_mp.disable() is None  # disabling twice is harmless


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "hlaf"}, "Invalid precision='hlaf'; allowed values: 'full', 'mixed', 'half'."),
        ({"optimizer": "sgd"}, "Invalid optimizer='sgd'; allowed values: 'adamw', 'tensorgrad', 'galore', 'sparse'."),
        ({"half_dtype": "fp8"}, "Invalid half_dtype='fp8'; allowed values: 'auto', 'float16', 'bfloat16'."),
        ({"spectral_weight_dtype": "complex16"},
         "Invalid spectral_weight_dtype='complex16'; allowed values: 'complex64', 'complex32'."),
        ({"optimizer_options": {"tensorgrad_rnk": 1}}, "Invalid optimizer option='tensorgrad_rnk'"),
        ({"recompute": "spectral"}, "Invalid recompute='spectral'; allowed values: 'none', 'fourier', 'block'."),
        ({"update_in_backward": "yes"}, "Invalid update_in_backward='yes'; allowed values: True, False."),
        # offline="maybe" (or "false") read as True; optimizer_options of another kind was a bare Python error;
        # a schedule of another kind was named twice, once as a config key; a file as the data root was taken
        ({"offline": "maybe"}, "Invalid offline='maybe'; allowed values: True, False."),
        ({"optimizer_options": 5}, "Invalid optimizer_options=5; expected a dict of tensorgrad_"),
        ({"optimizer_options": "abc"}, "Invalid optimizer_options='abc'; expected a dict of tensorgrad_"),
        ({"schedule": 5}, "Invalid schedule=5; expected None, a string like"),
        ({"data_root": __file__}, f"Invalid data_root={__file__!r}: a file; give the folder"),
        # values checked by the library's own checks, not first when the script builds the trainer or optimizer
        ({"loss_scaling": "dynamc"}, "Invalid loss_scaling='dynamc'; allowed values: 'auto', 'dynamic', 'none'."),
        ({"optimizer_options": {"tensorgrad_rank": 0}}, "Invalid tensorgrad_rank=0; expected a float in (0, 1]"),
        ({"optimizer_options": {"tensorgrad_update_proj_gap": 0}}, "Invalid tensorgrad_update_proj_gap=0; expected"),
        ({"update_in_backward": True, "loss_scaling": "dynamic"},
         "update_in_backward=True cannot be combined with loss_scaling='dynamic'"),
        # named as the caller wrote it: the key of optimizer_options
        ({"update_in_backward": True, "optimizer": "tensorgrad",
          "optimizer_options": {"tensorgrad_nonfinite_grad": "skip"}},
         "update_in_backward=True cannot be combined with tensorgrad_nonfinite_grad='skip'"),
    ],
)
def test_bad_options_fail_before_anything_is_patched(fake_parts, originals, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as info:
        neuralop_mp.enable(**kwargs)
    assert str(info.value).startswith(message)
    assert not activation.is_enabled()


@pytest.mark.parametrize("loss_scaling, optimizer, nonfinite_grad, refused", [
    ("dynamic", "adamw", None, ["loss_scaling='dynamic'"]),
    ("auto", "adamw", None, []),  # "auto": the trainer decides (adamw reads no nonfinite_grad: one is refused)
    ("auto", "tensorgrad", "skip", ["nonfinite_grad='skip'"]),
    ("none", "galore", "raise", []),
    ("dynamic", "sparse", "skip", ["loss_scaling='dynamic'", "nonfinite_grad='skip'"]),
])
def test_enable_and_a_config_refuse_the_same_update_in_backward_combinations(
        fake_parts, originals, loss_scaling, optimizer, nonfinite_grad, refused):
    """One rule (optim.update_in_backward's check, given the optimizer kind) for enable() and configs."""
    from neuralop_mp.configs import load_config

    def named(call):
        try:
            call()
        except ValueError as error:
            return [name for name in ("loss_scaling='dynamic'", "nonfinite_grad='skip'") if name in str(error)]
        return []

    def enable():
        neuralop_mp.enable(update_in_backward=True, loss_scaling=loss_scaling, optimizer=optimizer,
                           optimizer_options={} if nonfinite_grad is None else
                           {"tensorgrad_nonfinite_grad": nonfinite_grad})
        neuralop_mp.disable()

    config = {"opt.update_in_backward": "true", "opt.loss_scaling": loss_scaling, "opt.optimizer": optimizer,
              **({} if nonfinite_grad is None else {"opt.tensorgrad_nonfinite_grad": nonfinite_grad})}
    assert named(enable) == named(lambda: load_config("darcy", config)) == refused


def test_get_model_builds_through_the_plugin_with_the_requested_precision(fake_parts, tiny_config, originals):
    schedule = "half:0.25,mixed:0.5,full:0.25"
    with neuralop_mp.enabled(precision="mixed", half_dtype="bfloat16", stabilizer="tanh", schedule=schedule) as report:
        model = neuralop.get_model(tiny_config)
    (seen,) = fake_parts["get_model"]
    assert seen["model"]["fno_block_precision"] == "mixed"
    assert seen["model"]["half_dtype"] == "bfloat16"
    assert seen["model"]["stabilizer"] == "tanh"
    assert seen["opt"]["precision_schedule"] == schedule
    assert seen["patching"] == {"levels": 0}
    assert "fno_block_precision" not in tiny_config["model"], "the script's config must not be modified"
    assert any(isinstance(m, FakeMixedPrecisionSpectralConv) for m in model.modules())
    assert report.models[0]["layer_types"] == ["FakeMixedPrecisionSpectralConv"]
    assert report.models[0]["arch"] == "fno"
    # the stabilizer is not what the phases run with: said as `train` says it for model.stabilizer, with the
    # names a Python caller gave them (`neuralop-mp run`'s notes name its --mp.* flags: test_run_script.py)
    (note,) = [n for n in report.notes if "stabilizer" in n]
    assert note.startswith("stabilizer='tanh' is not applied: with schedule='half:0.25,mixed:0.5,full:0.25' "
                           "each phase runs with its own stabilizer ('half:0.25': none; 'mixed:0.5': none; "
                           "'full:0.25': none). To run a phase with tanh, write '/tanh' after it in schedule, "
                           "e.g. 'mixed/tanh'; to use stabilizer for the whole run, leave schedule unset."), note
    assert "--mp." not in note


def test_get_model_keeps_the_scripts_precision_when_none_is_requested(fake_parts, tiny_config):
    with neuralop_mp.enabled():
        model = neuralop.get_model(tiny_config)
    assert "fno_block_precision" not in fake_parts["get_model"][0]["model"]
    assert not any(isinstance(m, FakeMixedPrecisionSpectralConv) for m in model.modules())


def test_trainer_takes_upstream_arguments_and_is_bound_to_the_schedule(fake_parts, tiny_config):
    with neuralop_mp.enabled(schedule="paper", half_dtype="bfloat16", loss_scaling="dynamic") as report:
        model = neuralop.get_model(tiny_config)
        trainer = neuralop.Trainer(
            model=model, n_epochs=3, device="cpu", mixed_precision=False, data_processor=None,
            eval_interval=1, log_output=False, use_distributed=False, verbose=False, wandb_log=False,
        )
    assert isinstance(trainer, FakeMixedPrecisionTrainer)
    assert trainer.precision_schedule == PrecisionSchedule.parse("half:0.25,mixed:0.5,full:0.25")
    assert (trainer.half_dtype, trainer.loss_scaling, trainer.n_epochs) == ("bfloat16", "dynamic", 3)
    assert report.trainers[0]["schedule"] == "half:0.25,mixed:0.5,full:0.25"
    assert report.trainers[0]["history"][0]["precision"] == "mixed"  # copied when disabled
    assert report.phases_seen() == ["mixed"]


def test_recompute_reaches_the_model_config_and_update_in_backward_the_trainer(fake_parts, tiny_config):
    with neuralop_mp.enabled(recompute="Fourier", update_in_backward="true"):
        model = neuralop.get_model(tiny_config)
        trainer = neuralop.Trainer(model=model, n_epochs=1)
        explicit = neuralop.Trainer(model=model, n_epochs=1, update_in_backward=False)
    assert fake_parts["get_model"][0]["model"]["recompute"] == "fourier"
    assert "recompute" not in tiny_config["model"], "the script's config must not be modified"
    assert trainer.update_in_backward is True and explicit.update_in_backward is False


def test_recompute_chunk_points_reach_the_model_config_only_with_block(fake_parts, tiny_config):
    with neuralop_mp.enabled(recompute="block", recompute_chunk_points=512):
        neuralop.get_model(tiny_config)
    assert fake_parts["get_model"][0]["model"]["recompute_chunk_points"] == 512
    with pytest.raises(ValueError, match=r"recompute_chunk_points=512 is used only with recompute='block'"):
        neuralop_mp.enable(recompute="fourier", recompute_chunk_points=512)
    # the script's own config asks for block: the slice size alone is accepted and merged
    own = {**tiny_config, "model": {**tiny_config["model"], "recompute": "block"}}
    with neuralop_mp.enabled(recompute_chunk_points=256):
        neuralop.get_model(own)
    assert fake_parts["get_model"][-1]["model"]["recompute"] == "block"
    assert fake_parts["get_model"][-1]["model"]["recompute_chunk_points"] == 256
    assert not neuralop_mp.runner.activation.is_enabled(), "a refused option patches nothing"


def test_precision_alone_means_a_constant_schedule_and_script_kwargs_win(fake_parts, tiny_config):
    with neuralop_mp.enabled(precision="half", stabilizer=None):
        model = neuralop.get_model(tiny_config)
        constant = neuralop.Trainer(model=model, n_epochs=1)
        explicit = neuralop.Trainer(model=model, n_epochs=1, precision_schedule=PrecisionSchedule.constant("full"),
                                    half_dtype="float16")
        # None is the trainer's own default: not a schedule of the script's, the option's applies
        default = neuralop.Trainer(model=model, n_epochs=1, precision_schedule=None)
    assert constant.precision_schedule == PrecisionSchedule.constant("half")
    assert explicit.precision_schedule == PrecisionSchedule.constant("full") and explicit.half_dtype == "float16"
    assert default.precision_schedule == PrecisionSchedule.constant("half")


def test_trainer_refuses_a_model_the_plugin_did_not_build(fake_parts, tiny_config):
    from neuralop.models import FNO

    direct = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
    with neuralop_mp.enabled(precision="mixed"):
        with pytest.raises(RuntimeError, match=r"built it without neuralop.get_model"):
            neuralop.Trainer(model=direct, n_epochs=1)
    with neuralop_mp.enabled(precision="full"):  # nothing to switch: upstream's model is fine
        trainer = neuralop.Trainer(model=direct, n_epochs=1)
    assert trainer.precision_schedule == PrecisionSchedule.constant("full")


def test_optimizers_are_built_by_the_factory_for_the_matching_model(fake_parts, tiny_config, originals):
    upstream_adamw = originals[("neuralop.training", "AdamW")]
    with neuralop_mp.enabled(optimizer="tensorgrad", optimizer_options={"tensorgrad_rank": 0.2}) as report:
        model = neuralop.get_model(tiny_config)
        from neuralop.training import AdamW

        opt = AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
        second = neuralop.training.adamw.AdamW(model.parameters(), 2e-3, (0.8, 0.9))
    # the fake factory builds a torch AdamW
    assert type(opt) is torch.optim.AdamW and type(second) is torch.optim.AdamW
    (m1, cfg1), (m2, cfg2) = fake_parts["create_optimizer"]
    assert m1 is model and m2 is model
    assert cfg1 == {"optimizer": "tensorgrad", "learning_rate": 5e-3, "weight_decay": 1e-4,
                    "betas": (0.9, 0.999), "tensorgrad_rank": 0.2}
    assert cfg2["learning_rate"] == 2e-3 and cfg2["betas"] == (0.8, 0.9) and cfg2["weight_decay"] == 0.0
    assert [o["replaced"] for o in report.optimizers] == [f"{upstream_adamw.__module__}.AdamW"] * 2
    assert all(o["model_matched"] and o["kind"] == "tensorgrad" for o in report.optimizers)
    assert second.param_groups[0]["lr"] == 2e-3


def test_optimizer_arguments_without_equivalent_are_reported(fake_parts, tiny_config):
    with neuralop_mp.enabled(optimizer="adamw") as report:
        model = neuralop.get_model(tiny_config)
        neuralop.training.AdamW(model.parameters(), lr=1e-3, eps=1e-4, correct_bias=False)
    assert any("['correct_bias', 'eps']" in n for n in report.notes), report.notes


def test_parameter_groups_are_built_as_the_script_asked(fake_parts, tiny_config, originals):
    with neuralop_mp.enabled(optimizer="tensorgrad") as report:
        model = neuralop.get_model(tiny_config)
        opt = neuralop.training.AdamW([{"params": model.parameters(), "lr": 1e-2}])
    assert type(opt) is originals[("neuralop.training", "AdamW")]
    assert fake_parts["create_optimizer"] == []
    assert any("parameter groups" in n for n in report.notes)


def test_parameters_of_an_unknown_model_still_get_the_requested_optimizer(fake_parts):
    layer = torch.nn.Linear(3, 2)
    with neuralop_mp.enabled(optimizer="tensorgrad") as report:
        neuralop.training.AdamW(layer.parameters(), lr=1e-3)
    (holder, cfg), = fake_parts["create_optimizer"]
    assert [p is q for p, q in zip(holder.parameters(), layer.parameters())] == [True, True]
    assert report.optimizers[0]["model_matched"] is False
    assert any("do not belong to a model built through get_model" in n for n in report.notes)


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True), (None, False), (0, False),
                                             (1, True), (True, True)])
def test_offline_takes_the_flag_spellings(fake_parts, originals, value, expected):
    with neuralop_mp.enabled(offline=value) as report:
        assert report.options["offline"] is expected


def test_an_activation_that_builds_nothing_it_was_asked_for_warns_at_its_end(fake_parts, originals):
    """Names imported before it (`from neuralop import get_model`) keep upstream's objects: a script
    using them got nothing of the plugin, and an empty report, without a word."""
    with pytest.warns(UserWarning, match=r"no model was built through neuralop.get_model.*imported before") as caught:
        with neuralop_mp.enabled(precision="mixed"):
            pass
    assert caught[0].filename == __file__  # the with statement's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with neuralop_mp.enabled(data_root=None):  # nothing asked of a model: nothing to say
            pass
        with pytest.raises(FileNotFoundError):  # the block's own error is what to see
            with neuralop_mp.enabled(precision="mixed"):
                raise FileNotFoundError("data")
        with neuralop_mp.enabled(precision="mixed"):  # the plugin's get_model reached, then refusing: no word
            import neuralop

            with pytest.raises(Exception):
                neuralop.get_model({"model": {"model_arch": "nope"}})


def test_an_overruled_autocast_flag_is_decided_once_and_noted(monkeypatch):
    """The trainer decides whether the schedule overrules ``mixed_precision=True`` (and warns);
    the intercepted Trainer notes that same message for the summary instead of deciding it again."""
    from neuralop_mp.training.tests.tiny import tiny_fno

    calls = []
    original = PrecisionSchedule.autocast_overruled
    monkeypatch.setattr(PrecisionSchedule, "autocast_overruled",
                        lambda self, flag: calls.append(flag) or original(self, flag))
    model = tiny_fno()
    with neuralop_mp.enabled(schedule="paper") as report:
        with pytest.warns(UserWarning, match="mixed_precision=True is overruled") as caught:
            trainer = neuralop.Trainer(model=model, n_epochs=4, mixed_precision=True)
    assert calls == [True]
    assert trainer.overruled_autocast == str(caught[0].message)
    assert trainer.overruled_autocast in report.notes
