"""One trainer, several ``train()`` calls, and what ``train()`` refuses or names at its start.

A call without ``resume_from_dir`` is a new run (epoch 0, the schedule's first phase, a fresh
loss scale and counters, no "auto" decision carried over), after a resume too;
``scheduler=None`` trains, saves and resumes without a schedule; a scheduler or regularizer a
checkpoint cannot hold is refused before the first batch; without a schedule the texts and
records name the half type the layers run in; a schedule that overrides the layers' explicit
half type says so.
"""
import math
import warnings

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.training.guarded_step import TrainingStopped
from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.tests.tiny import DictDataset, loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

PAPER_4 = ["half", "mixed", "mixed", "full"]  # the paper schedule's phases over 4 epochs


def _model(half_dtype="auto", mode="mixed"):
    """tiny_fno's network as a MixedPrecisionFNO, built with the given precision."""
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2,
                             fno_block_precision=mode, half_dtype=half_dtype)


def _fit(trainer, model, data=None, scheduler=True, **kwargs):
    train, test = data or tiny_data(n=8, batch_size=4)
    optimizer, step_lr = optimizer_and_scheduler(model)
    kwargs.setdefault("training_loss", loss())
    return trainer.train(train, test, optimizer, step_lr if scheduler else None, **kwargs)


def _epochs(trainer):
    return [(h["epoch"], h["precision"]) for h in trainer.history]


@pytest.mark.filterwarnings("ignore:Precision schedule .* get no epoch:UserWarning")  # paper on 2 epochs
@pytest.mark.filterwarnings("ignore:Resuming a run saved with:UserWarning")  # 2 epochs resumed as 4
def test_a_call_without_resume_after_a_resume_trains_every_epoch_in_the_schedules_phases(tmp_path):
    model = _model()
    _fit(MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="paper"), model,
         save_every=1, save_dir=tmp_path / "ckpt")
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, precision_schedule="paper")
    _fit(trainer, model, resume_from_dir=tmp_path / "ckpt")
    assert [epoch for epoch, _ in _epochs(trainer)] == [0, 1, 2, 3]  # two saved, two resumed
    _fit(trainer, model)
    assert _epochs(trainer) == list(enumerate(PAPER_4))
    assert trainer.start_epoch == 0 and not trainer.resumed_finished_run


@pytest.mark.filterwarnings("ignore:Precision schedule .* get no epoch:UserWarning")  # paper on 2 epochs
def test_a_call_without_resume_after_resuming_a_finished_run_trains_it_anew(tmp_path):
    model = _model()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="paper")
    _fit(trainer, model, save_every=1, save_dir=tmp_path / "ckpt")
    with pytest.warns(UserWarning, match="already finished all 2 epochs"):
        _fit(trainer, model, resume_from_dir=tmp_path / "ckpt")
    assert trainer.resumed_finished_run
    metrics = _fit(trainer, model)  # upstream's loop failed: UnboundLocalError 'epoch_metrics'
    assert _epochs(trainer) == [(0, "mixed"), (1, "full")] and not trainer.resumed_finished_run
    assert math.isfinite(metrics["train_err"])


def test_a_new_run_starts_the_loss_scaler_afresh_and_keeps_its_settings():
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, loss_scaling="dynamic")
    scaler = trainer.scaler = ComplexGradScaler(init_scale=2.0, growth_interval=1)  # doubles at each step
    _fit(trainer, model)
    assert scaler.get_scale() == 2.0 * 2**4 and scaler.total_steps == 4  # 2 epochs of 2 batches
    _fit(trainer, model)
    assert trainer.scaler is scaler and scaler.growth_interval == 1
    assert [h["loss_scale"] for h in trainer.history] == [2.0 * 2**2, 2.0 * 2**4]  # not 2**6, 2**8
    assert (scaler.total_steps, scaler.skipped_steps) == (4, 0)


def test_a_new_run_measures_its_auto_precision_phases_again():
    model = _model()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype="bfloat16",
                                    auto_precision=True)
    for _ in range(2):
        _fit(trainer, model)
        # an earlier run's decision for the same phase index would be reused without a check
        assert "auto_check" in trainer.history[0] and len(trainer.auto_decisions) == 1


def test_no_scheduler_trains_saves_and_resumes_without_one(tmp_path):
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    _fit(trainer, model, scheduler=False, save_every=1, save_dir=tmp_path / "ckpt")
    assert [h["lr"] for h in trainer.history] == [1e-2, 1e-2] and trainer.scheduler is None
    assert not (tmp_path / "ckpt" / "scheduler.pt").exists()
    resumed = MixedPrecisionTrainer(model=model, n_epochs=3)
    _fit(resumed, model, scheduler=False, resume_from_dir=tmp_path / "ckpt")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]


class _Counting(torch.utils.data.DataLoader):
    """A loader that counts the batches drawn from it."""

    drawn = 0

    def __iter__(self):
        for batch in super().__iter__():
            _Counting.drawn += 1
            yield batch


class _StatelessRegularizer:
    """Upstream's regularizer interface (``reset``, ``loss``), no state_dict."""

    def __init__(self, model):
        self.model = model

    def reset(self):
        pass

    @property
    def loss(self):
        return 1e-4 * sum(p.abs().square().sum() for p in self.model.parameters())


class _StepOnlyScheduler:
    def step(self, *args):
        pass


@pytest.mark.parametrize("save", [dict(save_every=1), dict(save_best="8_l2")])
@pytest.mark.parametrize("role", ["regularizer", "scheduler"])
def test_a_checkpoint_that_cannot_hold_a_state_is_refused_before_the_first_batch(tmp_path, role, save):
    model = tiny_fno()
    x = torch.randn(8, 1, 8, 8)
    train = _Counting(DictDataset(x, x), batch_size=4)
    test = {"8": torch.utils.data.DataLoader(DictDataset(x, x), batch_size=4)}
    optimizer, scheduler = optimizer_and_scheduler(model)
    objects = dict(scheduler=scheduler, regularizer=None)
    objects[role] = _StatelessRegularizer(model) if role == "regularizer" else _StepOnlyScheduler()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    _Counting.drawn = 0
    with pytest.raises(TypeError, match=rf"^{role} \(a _\w+\) has no state_dict\(\), which save_every / "
                                        "save_best needs") as info:
        trainer.train(train, test, optimizer, training_loss=loss(), save_dir=tmp_path / "ckpt", **objects, **save)
    assert _Counting.drawn == 0 and trainer.history == [] and not (tmp_path / "ckpt").exists()
    assert ("scheduler=None" in str(info.value)) is (role == "scheduler")
    trainer.train(train, test, optimizer, training_loss=loss(), **objects)  # without a checkpoint: trains
    assert _Counting.drawn == 4 and len(trainer.history) == 2


class _SaveOnlyRegularizer(_StatelessRegularizer):
    def state_dict(self):
        return {}


def test_a_resume_into_a_regularizer_without_load_state_dict_is_refused_before_loading(tmp_path):
    model = tiny_fno()
    _fit(MixedPrecisionTrainer(model=model, n_epochs=1), model, regularizer=_SaveOnlyRegularizer(model),
         save_every=1, save_dir=tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "regularizer.pt").exists()
    other = tiny_fno(seed=1)
    before = [p.detach().clone() for p in other.parameters()]
    trainer = MixedPrecisionTrainer(model=other, n_epochs=2)
    # upstream's loader: an AttributeError once the model's weights were loaded
    with pytest.raises(TypeError, match="regularizer .* has no load_state_dict\\(\\), which resume_from_dir needs"):
        _fit(trainer, other, regularizer=_SaveOnlyRegularizer(other), resume_from_dir=tmp_path / "ckpt")
    assert all(torch.equal(a, p) for a, p in zip(before, other.parameters())) and trainer.history == []


def _float16_layers_model():
    return _model("float16")


@pytest.mark.filterwarnings("ignore::UserWarning")  # float16 on a CPU is emulated
def test_without_a_schedule_the_overflow_stop_names_the_layers_float16_and_its_advice():
    model = _float16_layers_model()
    x = torch.randn(8, 1, 8, 8) * 1e6  # overflows float16 (65504) in the spectral layers
    train = torch.utils.data.DataLoader(DictDataset(x, torch.randn(8, 1, 8, 8)), batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)  # half_dtype "auto": bfloat16 on a CPU
    with pytest.raises(TrainingStopped, match="Every training loss of epoch 0") as info:
        trainer.train(train, {}, *optimizer_and_scheduler(model), training_loss=loss())
    message = str(info.value)
    assert "fno_block_precision='mixed' (float16), autocast=False," in message
    assert "in float16 the model likely overflows" in message and "bfloat16)" not in message
    assert "use half_dtype='bfloat16'" in message


@pytest.mark.filterwarnings("ignore::UserWarning")  # float16 on a CPU is emulated
def test_without_a_schedule_the_history_records_the_layers_half_type():
    model = _float16_layers_model()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    _fit(trainer, model)
    assert [(h["precision"], h["half_dtype"]) for h in trainer.history] == [("mixed", "float16")]


def test_autocast_keeps_its_own_type_beside_layers_of_another():
    trainer = MixedPrecisionTrainer(model=_float16_layers_model(), n_epochs=1, mixed_precision=True,
                                    half_dtype="bfloat16")
    assert trainer._autocast().fast_dtype == torch.bfloat16
    text = trainer._phase_text()
    assert "fno_block_precision='mixed' (float16), autocast=True (bfloat16)," in text
    assert trainer._half_text() == "float16 and bfloat16"
    assert any("half_dtype='bfloat16'" in tip for tip in trainer._overflow_tips())


def _schedule_warnings(trainer, model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(trainer, model)
    return [str(w.message) for w in caught if "runs the spectral layers in the trainer's" in str(w.message)]


def test_a_schedule_overriding_the_layers_explicit_half_type_warns_once():
    model = _float16_layers_model()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed")
    first = _schedule_warnings(trainer, model)
    assert len(first) == 1, first
    assert ("half_dtype='auto' (bfloat16 on cpu), not in the float16 the model's layers" in first[0]
            and "pass half_dtype='float16' to MixedPrecisionTrainer" in first[0])
    assert trainer.history[0]["half_dtype"] == "bfloat16"
    assert _schedule_warnings(trainer, model) == []  # the layers now hold the trainer's type


@pytest.mark.filterwarnings("ignore::UserWarning")  # float16 on a CPU is emulated
@pytest.mark.parametrize("layers, trainer_half", [("float16", "float16"), ("bfloat16", "auto"), ("auto", "float16")])
def test_no_warning_where_the_types_agree_or_the_layers_say_auto(layers, trainer_half):
    model = _model(layers)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype=trainer_half)
    assert _schedule_warnings(trainer, model) == []
