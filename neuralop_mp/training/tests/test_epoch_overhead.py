"""What the trainer adds to an epoch: the CPU memory meters watch only the epochs whose setting is
new, and the weight check after each step is one fused reduction, with the per-weight check
(which names the bad weights) only where it found something. Neither changes what a run records."""
import gc
import weakref

import pytest
import torch

import neuralop_mp.training.trainer as trainer_module
from neuralop_mp.optim.nonfinite import all_tensors_finite, norms_finite
from neuralop_mp.peak_memory import PeakTensorBytes
from neuralop_mp.training.guarded_step import TrainingStopped
from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

MEMORY = ("saved_bytes", "step_peak_bytes")


def _train(monkeypatch, schedule=None, n_epochs=4, measure_every_epoch=False, **kwargs):
    """A tiny run with AdamW; returns (history, the epochs whose first batch the step meter watched)."""
    return _train_with(monkeypatch, n_epochs=n_epochs, measure_every_epoch=measure_every_epoch,
                       mixed_precision_layer=schedule is not None, precision_schedule=schedule, **kwargs)


def _measured(history):
    """The history without the epochs' times and the first epoch's step peak (which the process's first
    forward of a model class may raise by a cached tensor or two: test_checkpoint.without_times)."""
    return [{k: v for k, v in h.items() if k != "epoch_time" and (h["epoch"] or k != "step_peak_bytes")}
            for h in history]


def test_the_meters_watch_the_first_two_epochs_and_the_later_ones_record_what_they_measured(monkeypatch):
    history, watched = _train(monkeypatch, n_epochs=5)
    # epoch 0's step creates AdamW's state: epoch 1 starts with it, so its peak is measured again
    assert watched == [0, 1]
    assert history[0]["step_peak_bytes"] < history[1]["step_peak_bytes"]
    assert all(h[key] == history[1][key] for h in history[2:] for key in MEMORY)
    monkeypatch.undo()
    every, watched_every = _train(monkeypatch, n_epochs=5, measure_every_epoch=True)
    assert watched_every == [0, 1, 2, 3, 4]
    # what each epoch's own first batch measures: the same numbers
    assert _measured(history) == _measured(every)


def test_a_new_phase_is_measured_and_the_history_is_that_of_measuring_every_epoch(monkeypatch):
    schedule = "mixed:0.5,full:0.5"
    history, watched = _train(monkeypatch, schedule, n_epochs=6)
    assert watched == [0, 1, 3]  # the run's first two epochs, then the full phase's first
    monkeypatch.undo()
    every, _ = _train(monkeypatch, schedule, n_epochs=6, measure_every_epoch=True)
    assert _measured(history) == _measured(every)
    assert history[0]["saved_bytes"] < history[-1]["saved_bytes"]  # mixed saves less than full


def test_an_epoch_whose_watched_step_was_skipped_is_not_carried(monkeypatch):
    """A first batch whose loss is not finite takes no step: its peak is no other epoch's."""
    calls = []

    def nan_on_the_first_batch_of_epoch_1(out, y, **kwargs):
        calls.append(1)
        value = loss()(out, y=y)
        return value * float("nan") if len(calls) == 5 else value  # 4 batches per epoch

    with pytest.warns(RuntimeWarning, match="skipped 1 optimizer step"):
        history, watched = _train_with(monkeypatch, n_epochs=4, mixed_precision_layer=False,
                                       training_loss=nan_on_the_first_batch_of_epoch_1, eval_losses={"l2": loss()})
    assert watched == [0, 1, 2]  # epoch 1's watched step was skipped: epoch 2 measures again
    assert [h["skipped_steps"] for h in history] == [0, 1, 0, 0]
    assert history[3]["step_peak_bytes"] == history[2]["step_peak_bytes"]


def test_the_weight_check_names_weights_only_where_the_fused_check_found_something(monkeypatch):
    calls = []
    check = trainer_module.non_finite_parameters
    monkeypatch.setattr(trainer_module, "non_finite_parameters", lambda *a: calls.append(1) or check(*a))
    history, _ = _train(monkeypatch, n_epochs=2)
    assert len(history) == 2 and calls == []  # 8 steps, finite weights: the fused check alone

    # finite weights whose 2-norm overflows float32: the per-weight check clears them, no stop
    model = tiny_fno(mixed_precision_layer=False)
    optimizer, _ = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    trainer.epoch = 0  # as during an epoch (the stop message names it)
    with torch.no_grad():
        next(model.parameters()).fill_(1e30)
    trainer._check_weights_finite(optimizer, 0)
    assert calls == [1]
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(TrainingStopped, match="turned the weights"):
        trainer._check_weights_finite(optimizer, 0)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("dtype, bad", [
    (dtype, bad) for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64,
                               torch.complex32)
    for bad in (INF, -INF, NAN) + ((complex(0, INF), complex(0, NAN)) if dtype.is_complex else ())])  # imaginary parts too
def test_the_fused_check_finds_every_non_finite_entry(dtype, bad):
    make = (lambda n: torch.ones(n, dtype=torch.complex64).to(dtype)) if dtype.is_complex else \
        (lambda n: torch.ones(n, dtype=dtype))
    tensors = [make(5), make(1000), torch.zeros(0, dtype=dtype)]  # an empty one has no entry to check
    assert norms_finite(tensors) and all_tensors_finite(tensors)
    tensors[1][999] = bad
    assert not norms_finite(tensors) and not all_tensors_finite(tensors)


def test_the_scalers_gradient_check_is_exact_where_a_norm_overflows():
    """The scaler checks the gradients by the fused norms (one reduction per device and dtype), and
    where a norm overflows from finite entries (scaled gradients of 1e30) by each tensor: no step is
    skipped for finite gradients; a NaN is still found."""
    from neuralop_mp.training.loss_scaling import ComplexGradScaler

    weight = torch.nn.Parameter(torch.zeros(4, 4))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    scaler = ComplexGradScaler(enabled=False)
    weight.grad = torch.full((4, 4), 1e30)
    assert not norms_finite([weight.grad]) and all_tensors_finite([weight.grad])
    assert scaler.step(optimizer) is True
    scaler.update()
    weight.grad[1, 2] = float("nan")
    assert scaler.step(optimizer) is False
    scaler.update()


def test_the_step_meter_leaves_nothing_alive_after_its_block():
    """Tensors made in the block that outlive it (a first step's optimizer state) keep no
    bookkeeping of the meter alive for the rest of the run."""
    with PeakTensorBytes() as meter:
        kept = torch.ones(100) * 2
    mode = weakref.ref(meter._mode)
    del meter
    gc.collect()
    assert mode() is None
    assert kept.sum() == 200


def _train_with(monkeypatch, make_optimizer=None, n_epochs=4, measure_every_epoch=False, data_processor=None,
                trainer_cls=MixedPrecisionTrainer, mixed_precision_layer=True, training_loss=None, eval_losses=None,
                **trainer_kwargs):
    """A tiny run with ``make_optimizer(model)`` (default AdamW and a StepLR) and ``training_loss``
    (default the relative L2); returns (history, the epochs whose first batch the step meter watched)."""
    watched = []

    class CountingMeter(PeakTensorBytes):
        def __enter__(self):
            watched.append(trainer.epoch)
            return super().__enter__()

    monkeypatch.setattr(trainer_module, "PeakTensorBytes", CountingMeter)
    if measure_every_epoch:
        monkeypatch.setattr(MixedPrecisionTrainer, "_memory_needs_measuring", lambda self, sample: True)
    train, test = tiny_data()
    torch.manual_seed(0)
    model = tiny_fno(mixed_precision_layer=mixed_precision_layer)
    trainer = trainer_cls(model=model, n_epochs=n_epochs, data_processor=data_processor, **trainer_kwargs)
    if make_optimizer is None:
        optimizer, scheduler = optimizer_and_scheduler(model)
    else:
        optimizer = make_optimizer(model)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 100)
    trainer.train(train, test, optimizer, scheduler, training_loss=training_loss or loss(), eval_losses=eval_losses)
    return trainer.history, watched


def test_an_epoch_starting_on_a_tensorgrad_refresh_step_is_measured(monkeypatch):
    """Whether an epoch's first step refreshes TensorGRaD's bases (its update_proj_gap) sets its peak:
    those epochs were given the last measured epoch's figures."""
    from neuralop_mp.optim import TensorGRaD

    def tensorgrad(model):  # 4 steps an epoch, a refresh every 6: epochs 0 and 3 start on one
        return TensorGRaD(model.parameters(), lr=1e-3, update_proj_gap=6, min_params=0, rank=0.5, sparse_ratio=0.25)

    history, watched = _train_with(monkeypatch, tensorgrad, n_epochs=5)
    assert 3 in watched
    monkeypatch.undo()
    every, _ = _train_with(monkeypatch, tensorgrad, n_epochs=5, measure_every_epoch=True)
    assert _measured(history) == _measured(every)


def test_a_data_processor_that_changes_the_batch_during_training_is_measured_again(monkeypatch):
    """Upstream's IncrementalDataProcessor raises the resolution in preprocess every few epochs while the
    loader's batches keep their shape: the epochs at a finer resolution recorded the coarse one's bytes."""
    from neuralop.data.transforms.data_processors import IncrementalDataProcessor

    from neuralop_mp.training.incremental import IncrementalMixedPrecisionTrainer

    def processor():
        return IncrementalDataProcessor(in_normalizer=None, out_normalizer=None, device="cpu",
                                        subsampling_rates=[2, 1], dataset_resolution=8, dataset_indices=[2, 3],
                                        epoch_gap=2, verbose=False)

    def adamw(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-3)

    # upstream's incremental trainer steps the processor's epoch (its loss-gap rule also grows the modes)
    kwargs = dict(trainer_cls=IncrementalMixedPrecisionTrainer, incremental_loss_gap=True)
    history, watched = _train_with(monkeypatch, adamw, n_epochs=5, data_processor=processor(), **kwargs)
    assert 2 in watched  # the epoch whose batches the processor refines
    monkeypatch.undo()
    every, _ = _train_with(monkeypatch, adamw, n_epochs=5, measure_every_epoch=True, data_processor=processor(),
                           **kwargs)
    # the step peaks of the incremental algorithms' epochs move by a KiB from run to run (their lazily
    # made state): the saved bytes, which the resolution sets, are compared
    assert [h["saved_bytes"] for h in history] == [h["saved_bytes"] for h in every]
    assert history[1]["saved_bytes"] < history[-1]["saved_bytes"]  # the finer grid saves more
