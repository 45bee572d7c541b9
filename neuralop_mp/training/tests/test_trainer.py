"""MixedPrecisionTrainer: phase switching, autocast, guarded steps, upstream equivalence."""
import math
import warnings

import pytest
import torch
from neuralop.training import Trainer

import neuralop_mp.layers.precision_switch as precision_switch
from neuralop_mp.tests.exact import equal_exactly
from neuralop_mp.training.loss_scaling import ComplexGradScaler
import neuralop_mp.training.trainer as trainer_module
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import (assert_same, loss, optimizer_and_scheduler, snapshot, spectral_weights, tiny_data,
                   tiny_fno)


class RecordingTrainer(MixedPrecisionTrainer):
    """Records, at every epoch start, what the layers and autocast really are."""

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        layers = precision_switch.mixed_precision_layers(self.model)
        self.seen.append((epoch, {l.fno_block_precision for l in layers}, self.model.fno_blocks.stabilizer))


def autocast_probe(model, record):
    """Forward pre-hook that records whether autocast is on during the forward pass."""
    return model.register_forward_pre_hook(lambda *_: record.append(torch.is_autocast_enabled("cpu")))


@pytest.mark.parametrize("n_epochs, half_dtype", [(1, "auto"), (2, "float16"), (3, "auto"), (4, "float16"),
                                                  (6, "bfloat16")])
def test_layers_switch_at_the_schedules_boundaries(n_epochs, half_dtype, monkeypatch):
    calls = []
    # the phase switch's one setter of the layers
    real_setter = trainer_module.set_fixed_precision
    monkeypatch.setattr(trainer_module, "set_fixed_precision",
                        lambda model, mode, **kw: calls.append((mode, kw)) or real_setter(model, mode, **kw))
    model = tiny_fno()
    built = (model.fno_blocks.convs[0].fno_block_precision, model.fno_blocks.convs[0].half_dtype, None)
    train, test = tiny_data(n=8, batch_size=8)
    trainer = RecordingTrainer(model=model, n_epochs=n_epochs, precision_schedule="paper", half_dtype=half_dtype)
    trainer.seen = []
    autocast_seen = []
    autocast_probe(model, autocast_seen)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())

    schedule = trainer.precision_schedule
    expected = [schedule.phase_for_epoch(e, n_epochs) for e in range(n_epochs)]
    dtype = torch.float16 if half_dtype == "float16" else torch.bfloat16
    stabilizers = [p.stabilizer_for(dtype) for p in expected]
    if n_epochs >= 4:  # the half phase is reached: tanh exactly when fp16
        assert stabilizers[0] == ("tanh" if half_dtype == "float16" else None)
    # the layers are switched only when an epoch's settings differ from the model's
    wanted = [(p.mode, half_dtype, s) for p, s in zip(expected, stabilizers)]
    changes = [w for before, w in zip([built] + wanted, wanted) if w != before]
    assert [(mode, kw["half_dtype"], kw["stabilizer"]) for mode, kw in calls] == changes
    assert trainer.seen == [(e, {p.mode}, s) for e, (p, s) in enumerate(zip(expected, stabilizers))]
    assert [h["stabilizer"] for h in trainer.history] == stabilizers
    # one training and one evaluation forward (1 batch each + 2 test batches) per epoch
    train_autocast = autocast_seen[::3]
    assert train_autocast == [p.autocast for p in expected]
    assert [h["precision"] for h in trainer.history] == [p.mode for p in expected]
    assert [h["phase"] for h in trainer.history] == [schedule.index_for_epoch(e, n_epochs) for e in range(n_epochs)]


def test_an_epoch_in_the_phase_the_layers_are_in_reads_them_once_and_writes_nothing(monkeypatch):
    """Every epoch's start switches to its phase: one where the layers are in it already costs one
    read of them (the phase's settings are the trainer's), not three reads and a recorded-precision
    check; a layer changed since is still switched back."""
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, precision_schedule="mixed:0.5,full:0.5",
                                    half_dtype="bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's FNO does not record the switch
        trainer.on_epoch_start(0)
    walks, writes = [], []
    walk = model.modules
    monkeypatch.setattr(model, "modules", lambda: walks.append(1) or walk(), raising=False)
    real_set = trainer_module.set_fixed_precision
    monkeypatch.setattr(trainer_module, "set_fixed_precision",
                        lambda model, mode, **kw: writes.append(mode) or real_set(model, mode, **kw))
    trainer.on_epoch_start(1)
    assert (len(walks), writes) == (2, [])  # the layers, and their FNOBlocks for the stabilizer
    assert precision_switch.get_precision(model) == ("mixed", "bfloat16", None)
    model.fno_blocks.convs[1].fno_block_precision = "full"  # changed between epochs of the phase
    trainer.on_epoch_start(1)
    assert writes == ["mixed"] and precision_switch.get_precision(model) == ("mixed", "bfloat16", None)


@pytest.mark.filterwarnings("ignore::UserWarning")  # float16 on a CPU is emulated; FNO records no switch
def test_an_auto_phase_decided_otherwise_is_switched_once_not_every_epoch(monkeypatch):
    """An "auto" phase run in another mode than its own (float16 "mixed" without tanh on data
    past float16's range: "full") was set to the phase's mode and back to the decision at every
    epoch start, two writes and two recorded-precision checks; now its first epoch writes the
    phase's mode (the measurement's) and the decision, later epochs nothing, and a layer changed
    between epochs is switched back to the decision."""
    import neuralop_mp.training.auto_phases as auto_phases
    from .tiny import DictDataset

    writes = []
    for module in (trainer_module, auto_phases):
        real = module.set_fixed_precision
        monkeypatch.setattr(module, "set_fixed_precision", lambda model, mode, _real=real, **kw: writes.append(
            (trainer.epoch, mode)) or _real(model, mode, **kw))
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 1e6  # float16 ends at 65504
    train = torch.utils.data.DataLoader(DictDataset(x, torch.tanh(x)), batch_size=4, shuffle=True)
    test = {"8": torch.utils.data.DataLoader(DictDataset(x[:4], torch.tanh(x[:4])), batch_size=4)}
    model = tiny_fno()
    trainer = RecordingTrainer(model=model, n_epochs=3, precision_schedule="mixed/noautocast", half_dtype="float16",
                               auto_precision=True)
    trainer.seen = []
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    assert [h["auto_precision"]["mode"] for h in trainer.history] == ["full"] * 3
    assert [modes for _, modes, _ in trainer.seen] == [{"full"}] * 3
    assert writes == [(0, "mixed"), (0, "full")]  # epochs 1 and 2: none
    model.fno_blocks.convs[1].fno_block_precision = "mixed"  # changed between epochs of the phase
    writes.clear()
    trainer.on_epoch_start(2)
    assert writes == [(2, "full")]
    assert {conv.fno_block_precision for conv in model.fno_blocks.convs} == {"full"}


def test_history_has_the_agreed_keys_and_saved_bytes_shrink_in_half_phases():
    model = tiny_fno()
    train, test = tiny_data()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, precision_schedule="mixed:0.5,full:0.5")
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    keys = {"epoch", "phase", "precision", "autocast", "stabilizer", "half_dtype", "train_loss", "train_err",
            "lr", "skipped_steps", "loss_scale", "epoch_time", "saved_bytes", "step_peak_bytes", "8_l2"}
    assert all(keys <= set(h) for h in trainer.history)
    # at the end of the forward the weights and every saved activation are alive at once
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert all(h["step_peak_bytes"] >= weights + h["saved_bytes"] for h in trainer.history)
    assert [h["epoch"] for h in trainer.history] == [0, 1, 2, 3]
    assert [h["lr"] for h in trainer.history] == [1e-2, 5e-3, 5e-3, 2.5e-3]  # StepLR(2, 0.5) after each epoch
    assert all(h["half_dtype"] == "bfloat16" and h["loss_scale"] == 1.0 for h in trainer.history)
    assert not trainer.scaler.enabled  # bf16 on CPU: no scaling
    mixed, full = trainer.history[0]["saved_bytes"], trainer.history[-1]["saved_bytes"]
    assert 0 < mixed < full


def test_constant_full_schedule_and_no_schedule_match_upstream_bit_for_bit():
    results = []
    for make in (
        lambda m: Trainer(model=m, n_epochs=3),
        lambda m: MixedPrecisionTrainer(model=m, n_epochs=3),
        lambda m: MixedPrecisionTrainer(model=m, n_epochs=3, precision_schedule="full"),
    ):
        model = tiny_fno(mixed_precision_layer=False)
        train, test = tiny_data()
        torch.manual_seed(1)  # same shuffling for each run
        make(model).train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
        results.append(model.state_dict())
    for other in results[1:]:
        assert all(torch.equal(results[0][k], other[k]) for k in results[0] if torch.is_tensor(results[0][k]))


class _WeightedLoss:
    """A loss reading a sample key it does not name, through ``**kwargs`` (upstream passes them all)."""

    def __init__(self):
        self.seen = []

    def __call__(self, out, y, **kwargs):
        self.seen.append(sorted(kwargs))
        return (kwargs["weight"].view(-1, 1, 1, 1) * (out - y) ** 2).sum()


class _WeightedSamples(torch.utils.data.Dataset):
    def __init__(self, loader):
        self.samples = [dict(s, weight=torch.tensor(1.0 + i % 3)) for i, s in enumerate(loader.dataset)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def test_a_loss_taking_kwargs_gets_every_sample_key_as_upstreams_trainer_gives_it():
    """It got only the keys it named (a KeyError here; a loss reading ``kwargs.get`` with a default
    trained on another objective without a word). Upstream's own models and losses, which warn of
    and drop the keys they do not name, still get only those."""
    train, test = tiny_data(n=8, batch_size=4)
    data = _WeightedSamples(train)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    tests = {"8": torch.utils.data.DataLoader(data, batch_size=4)}
    runs = {}
    for cls in (Trainer, MixedPrecisionTrainer):
        model = tiny_fno(mixed_precision_layer=False)
        weighted = _WeightedLoss()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # upstream's Trainer: its model warns of the keys it drops
            cls(model=model, n_epochs=2, verbose=False).train(
                loader, tests, *optimizer_and_scheduler(model), training_loss=weighted, eval_losses={"w": weighted})
        runs[cls] = (snapshot(model, torch.optim.AdamW(model.parameters()))[0], weighted.seen)
    (upstream_weights, upstream_seen), (our_weights, our_seen) = runs[Trainer], runs[MixedPrecisionTrainer]
    assert our_seen == upstream_seen and our_seen[0] == ["weight", "x"]
    assert_same(our_weights, upstream_weights)
    # upstream's model and loss drop unnamed keys after a warning: they get the keys they name, no warning
    model, lp = tiny_fno(), loss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MixedPrecisionTrainer(model=model, n_epochs=1).train(loader, tests, *optimizer_and_scheduler(model),
                                                              training_loss=lp, eval_losses={"l2": lp})


class _DroppingModuleLoss(torch.nn.Module):
    """A module loss that warns of and drops the keys it does not name, as upstream's do."""

    def forward(self, out, y, **kwargs):
        if kwargs:
            warnings.warn(f"_DroppingModuleLoss.forward() received unexpected keyword arguments: {list(kwargs)}")
        return out


class _ReadingModuleLoss(torch.nn.Module):
    def forward(self, out, y, **kwargs):
        return kwargs["weight"]


def _sample_keys_given(name):
    import functools

    from neuralop.losses import LpLoss
    from neuralop.losses.equation_losses import PoissonEqnLoss
    from neuralop.models import GINO

    fno = tiny_fno(mixed_precision_layer=False)
    callables = {
        "FNO": fno.forward, "FNO in DataParallel": torch.nn.DataParallel(fno).forward,
        # its forward unpacks *args (CALL_FUNCTION_EX without a keyword mapping), and hands no kwargs on
        "GINO": GINO.forward.__get__(GINO.__new__(GINO)),
        "LpLoss": LpLoss(d=2), "partial LpLoss": functools.partial(LpLoss(d=2)),
        "PoissonEqnLoss": PoissonEqnLoss(1.0, 1.0),  # warns, then hands its kwargs on to its parts
        "dropping module loss": _DroppingModuleLoss(), "reading module loss": _ReadingModuleLoss(),
        "weighted loss": _WeightedLoss(),
    }
    from neuralop_mp.training.trainer import _accepted

    return sorted(_accepted(callables[name], {"x": 0, "y": 1, "weight": 2}))


@pytest.mark.parametrize("name, keys", [
    ("FNO", ["x"]), ("FNO in DataParallel", ["x"]), ("GINO", ["x"]), ("LpLoss", ["y"]), ("partial LpLoss", ["y"]),
    ("dropping module loss", ["y"]),
    ("PoissonEqnLoss", ["weight", "x", "y"]), ("reading module loss", ["weight", "x", "y"]),
    ("weighted loss", ["weight", "x", "y"]),
])
def test_what_each_kind_of_model_or_loss_is_given_of_a_sample(name, keys):
    """Upstream's models and losses that warn of and drop unnamed keys get the keys they name (through
    a module's forward, a DataParallel wrapper, a partial); those that read or hand on **kwargs get all."""
    assert _sample_keys_given(name) == keys


def test_a_plain_function_loss_is_read_once_not_at_every_batch(monkeypatch):
    import functools
    import inspect

    from neuralop_mp.training import trainer as trainer_module

    def my_loss(out, y, **kwargs):
        return (out - y).square().mean()

    reads = []
    signature = inspect.signature
    monkeypatch.setattr(trainer_module.inspect, "signature", lambda fn: reads.append(fn) or signature(fn))
    partial = functools.partial(my_loss)
    for _ in range(3):
        assert sorted(trainer_module._accepted(my_loss, {"x": 0, "y": 1, "w": 2})) == ["w", "x", "y"]
        assert sorted(trainer_module._accepted(partial, {"x": 0, "y": 1})) == ["x", "y"]
    assert reads == [my_loss, partial]


def test_mixed_precision_flag_without_schedule_autocasts_with_a_scaler():
    model = tiny_fno(mixed_precision_layer=False)  # an upstream model: layers untouched
    train, test = tiny_data(n=8, batch_size=8)
    seen = []
    autocast_probe(model, seen)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, mixed_precision=True, half_dtype="float16")
    assert trainer.scaler.enabled  # upstream's mixed_precision=True has no scaler at all
    trainer.scaler = ComplexGradScaler(init_scale=2.0**8)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    assert all(seen) and len(seen) == 6  # training and evaluation forwards under autocast
    assert [(h["precision"], h["autocast"], h["half_dtype"]) for h in trainer.history] == [("full", True, "float16")] * 2
    assert all(h["train_loss"] == h["train_loss"] for h in trainer.history)


def test_mixed_precision_flag_overruled_by_a_schedule_is_said_naming_the_phases_without_autocast():
    """With a schedule its phases decide autocast: ``mixed_precision=True`` does nothing in a phase
    without it, which was silent (upstream's scripts always pass their config's flag)."""
    model = tiny_fno()
    with pytest.warns(UserWarning, match=r"mixed_precision=True is overruled by the precision schedule "
                                         r"'half:0.25,mixed:0.5,full:0.25'.* it is off in full:0.25\. .*"
                                         r"'full/autocast'") as caught:
        MixedPrecisionTrainer(model=model, n_epochs=4, mixed_precision=True, precision_schedule="paper")
    assert len(caught) == 1
    assert caught[0].filename == __file__  # names the caller's line
    for quiet in ({"mixed_precision": False, "precision_schedule": "full"},
                  {"mixed_precision": True, "precision_schedule": "half:0.5,full:0.5/autocast"},
                  {"mixed_precision": True, "precision_schedule": None}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            MixedPrecisionTrainer(model=model, n_epochs=4, **quiet)


def test_schedule_needs_mixed_precision_layers():
    plain = tiny_fno(mixed_precision_layer=False)
    with pytest.raises(ValueError, match=r"switches the spectral layers to \['half', 'mixed'\].*"
                                         r"no MixedPrecisionSpectralConv layer.*neuralop_mp.get_model"):
        MixedPrecisionTrainer(model=plain, n_epochs=4, precision_schedule="paper")
    # full-precision phases (autocast only) are fine on an upstream model
    MixedPrecisionTrainer(model=plain, n_epochs=4, precision_schedule="full/autocast")


@pytest.mark.parametrize("kwargs, message", [
    ({"half_dtype": "fp16"}, r"Invalid half_dtype='fp16'; allowed values: 'auto', 'float16', 'bfloat16'"),
    ({"loss_scaling": "static"}, r"Invalid loss_scaling='static'; allowed values: 'auto', 'dynamic', 'none'"),
    ({"max_consecutive_skips": 0}, r"max_consecutive_skips=0"),
    ({"precision_schedule": "half:0.5,full:0.6"}, r"sum to 1.1"),
])
def test_invalid_trainer_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixedPrecisionTrainer(model=tiny_fno(), n_epochs=2, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n_epochs": 0}, ValueError, r"Invalid n_epochs=0; allowed values: integers >= 1"),
    ({"n_epochs": 2.5}, TypeError, r"Invalid n_epochs=2.5; allowed values: integers >= 1"),
    ({"eval_interval": 0}, ValueError, r"Invalid eval_interval=0; allowed values: integers >= 1"),
])
def test_upstreams_own_arguments_are_checked_before_training(kwargs, error, message):
    # upstream: an UnboundLocalError (n_epochs=0), a TypeError in range() or a
    # ZeroDivisionError after a whole epoch (eval_interval=0)
    with pytest.raises(error, match=message):
        MixedPrecisionTrainer(model=tiny_fno(), **{"n_epochs": 2, **kwargs})


@pytest.mark.parametrize("half_dtype, loss_scaling, schedule, enabled", [
    ("float16", "auto", "mixed", True),
    ("bfloat16", "auto", "mixed", False),
    ("auto", "auto", "mixed", False),       # auto = bfloat16 on CPU
    ("float16", "auto", "full", False),     # never computes in fp16
    ("float16", "none", "mixed", False),
    ("bfloat16", "dynamic", "mixed", True),
    ("float16", True, "mixed", True),
])
def test_loss_scaling_only_where_float16_is_used(half_dtype, loss_scaling, schedule, enabled):
    trainer = MixedPrecisionTrainer(model=tiny_fno(), n_epochs=2, half_dtype=half_dtype,
                                    loss_scaling=loss_scaling, precision_schedule=schedule)
    assert trainer.scaler.enabled is enabled


def test_complex32_spectral_weights_turn_loss_scaling_on():
    """bf16 compute needs no scaling, but complex32 gradients are fp16 pairs."""
    from neuralop_mp import set_spectral_weight_dtype
    from neuralop_mp.optim import TensorGRaD

    model = tiny_fno()
    assert not MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed").scaler.enabled
    set_spectral_weight_dtype(model, "complex32")
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="mixed", half_dtype="bfloat16")
    assert trainer.scaler.enabled
    train, test = tiny_data()
    optimizer = TensorGRaD(model.parameters(), lr=1e-2, min_params=50)
    before = [p.detach().clone() for p in spectral_weights(model)]
    trainer.train(train, test, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), training_loss=loss())
    assert trainer.scaler.skipped_steps == 0  # seeded: no scaled gradient overflows fp16 here
    assert all(p.dtype == torch.complex32 for p in spectral_weights(model))
    assert all(not equal_exactly(p, q) for p, q in zip(spectral_weights(model), before))


def inject_on_steps(param, steps, value):
    """Gradient hook writing ``value`` into one entry of ``param``'s gradient on the given steps."""
    counter = {"step": -1}

    def hook(grad):
        counter["step"] += 1
        if counter["step"] in steps:
            grad = grad.clone()
            grad.view(-1)[1] = value
        return grad

    return param.register_hook(hook)


@pytest.mark.parametrize("half_dtype", ["float16", "bfloat16"])
def test_injected_inf_gradient_skips_the_step(half_dtype):
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=8)  # one step per epoch
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", half_dtype=half_dtype)
    if half_dtype == "float16":  # start low enough that the first step does not overflow
        trainer.scaler = ComplexGradScaler(init_scale=2.0**8)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    assert optimizer.state and trainer.scaler.skipped_steps == 0
    weights, state = snapshot(model, optimizer)
    scale = trainer.scaler.get_scale()

    # the imaginary part of one entry of one complex spectral weight's gradient
    inject_on_steps(spectral_weights(model)[0], {0}, complex(0.0, float("inf")))
    if half_dtype == "bfloat16":  # no scaling: a skip is never expected, so it warns
        with pytest.warns(RuntimeWarning, match="skipped 1 optimizer step"):
            trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    else:
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    after_weights, after_state = snapshot(model, optimizer)
    assert_same(weights, after_weights)
    assert_same(state, after_state)
    assert trainer.history[-1]["skipped_steps"] == 1 and trainer.scaler.skipped_steps == 1
    assert trainer.scaler.get_scale() == (scale / 2 if half_dtype == "float16" else 1.0)


def test_non_finite_loss_skips_without_backward():
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed")
    calls = {"n": 0}
    finite_losses = []  # the training losses of the batches that are not made NaN
    lp = loss()

    def sometimes_nan_loss(out, **sample):
        calls["n"] += 1
        value = lp(out, **sample)
        if calls["n"] == 2:
            return value * float("nan")
        finite_losses.append(float(value.detach()))
        return value

    with pytest.warns(RuntimeWarning, match="skipped 1 optimizer step"):
        trainer.train(train, test, optimizer, scheduler, training_loss=sometimes_nan_loss, eval_losses={"l2": lp})
    entry = trainer.history[-1]
    assert entry["skipped_steps"] == 1
    # the NaN batch is left out of the averages: those of the one finite batch (its samples), exactly
    assert len(finite_losses) == 1 and math.isfinite(entry["train_loss"])
    assert entry["train_err"] == sum(finite_losses) / len(finite_losses)  # mean per batch
    assert entry["train_loss"] == sum(finite_losses) / train.batch_size  # per sample
    assert int(optimizer.state[next(iter(model.parameters()))]["step"]) == 1


def test_persistent_non_finite_gradients_stop_training_with_advice():
    model = tiny_fno()
    train, test = tiny_data(n=16, batch_size=2)
    optimizer, scheduler = optimizer_and_scheduler(model)
    weights, _ = snapshot(model, optimizer)
    inject_on_steps(spectral_weights(model)[-1], set(range(100)), float("nan"))
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="mixed:0.5,full:0.5",
                                    half_dtype="float16", max_consecutive_skips=3)
    with pytest.raises(RuntimeError) as info:
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    message = str(info.value)
    for part in ("3 consecutive optimizer steps", "epoch 0, batch 2", "phase 1/2 'mixed:0.5'",
                 "fno_block_precision='mixed'", "tanh stabilizer", "half_dtype='bfloat16'", "lower the learning rate"):
        assert part in message, part
    assert trainer.scaler.get_scale() == 2.0**16 / 8  # backed off three times
    after, _ = snapshot(model, optimizer)
    assert_same(weights, after)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float16_schedule_scales_loss_and_reports_peak_memory():
    model = tiny_fno()
    train, test = tiny_data(size=16)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=4, device="cuda", precision_schedule="paper")
    assert trainer.autocast_dtype == torch.float16 and trainer.scaler.enabled
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    history = trainer.history
    assert [h["precision"] for h in history] == ["half", "mixed", "mixed", "full"]
    assert history[0]["stabilizer"] == "tanh" and history[1]["stabilizer"] is None
    assert all(h["cuda_peak_bytes"] > 0 and "saved_bytes" not in h for h in history)
    assert all(h["train_loss"] == h["train_loss"] for h in history)  # finite losses were averaged


def test_the_history_records_keys_are_one_list_and_the_finished_metrics_are_the_rest():
    """_record_epoch writes the keywords of _epoch_record, the one list _last_epoch_metrics leaves out:
    what a finished run returns is upstream's four values plus exactly the evaluation metrics."""
    from neuralop_mp.training import trainer as trainer_module

    train, test = tiny_data(n=8, batch_size=4)
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="mixed", half_dtype="bfloat16",
                                    auto_precision=True, auto_precision_batches=1)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    last = trainer.history[-1]
    metric_keys = {key for key in last if key.startswith("8_")}
    assert metric_keys and {"auto_precision", "saved_bytes", "step_peak_bytes"} <= set(last)
    assert set(last) - metric_keys <= trainer_module._EPOCH_RECORD_KEYS
    assert set(trainer._last_epoch_metrics()) == {"train_err", "avg_loss", "avg_lasso_loss",
                                                  "epoch_train_time"} | metric_keys
    with pytest.raises(TypeError, match="unexpected keyword argument 'new_key'"):
        trainer_module._epoch_record(**{key: 0 for key in ("epoch", "phase", "precision", "autocast",
                                                           "stabilizer", "half_dtype", "train_loss", "train_err",
                                                           "lr", "skipped_steps", "loss_scale", "epoch_time")},
                                     new_key=1)


def test_an_overruled_mixed_precision_flag_is_said_by_rank_0_only(monkeypatch):
    """Every rank of a data-parallel run builds the trainer: rank 0 alone warns, as it alone logs
    the epochs (the rank faked as the pipeline's tests do); every rank keeps the message."""
    from neuralop_mp.training import distributed

    model = tiny_fno()
    for rank in (1, 0):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = MixedPrecisionTrainer(model=model, n_epochs=4, mixed_precision=True, precision_schedule="paper")
        overruled = [w for w in caught if "is overruled by the precision schedule" in str(w.message)]
        assert len(overruled) == (rank == 0)
        assert trainer.overruled_autocast.startswith("mixed_precision=True is overruled")
