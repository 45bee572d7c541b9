"""Checkpoint / resume: weights-only files, schedule position and scaler state, bit-exact resume."""
import pytest
import torch

from neuralop_mp.layers.precision_switch import set_spectral_weight_dtype
from neuralop_mp.optim import TensorGRaD
from neuralop_mp.tests.exact import equal_exactly
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE
from neuralop_mp.training.loss_scaling import ComplexGradScaler

from .tiny import CrashingTrainer, Interrupted, loss, optimizer_and_scheduler, tiny_data, tiny_fno

SCHEDULE = "half:0.25,mixed:0.5,full:0.25"
N_EPOCHS = 4


def make_run(model_seed, loss_scaling="auto", crash_at=None, complex32=False):
    model = tiny_fno(seed=model_seed)
    if complex32:  # the half recipe: complex32 spectral weights, TensorGRaD refreshing every 3 steps
        set_spectral_weight_dtype(model, "complex32")
        optimizer = TensorGRaD(model.parameters(), lr=1e-2, min_params=50, update_proj_gap=3, state_dtype="bfloat16")
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    else:
        optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = CrashingTrainer(model=model, n_epochs=N_EPOCHS, precision_schedule=SCHEDULE,
                              loss_scaling=loss_scaling)
    trainer.crash_at = crash_at
    # a scale that moves every few steps, so the scaler state is worth checking
    trainer.scaler = ComplexGradScaler(init_scale=2.0**6, growth_interval=3, enabled=trainer.scaler.enabled)
    return model, optimizer, scheduler, trainer


def without_times(history):
    """History without measurements of this process: time, and the step's peak bytes
    (the resumed model's first forward also builds upstream's cached positional-embedding
    grid, which the uninterrupted run built in epoch 0)."""
    return [{k: v for k, v in h.items() if k not in ("epoch_time", "step_peak_bytes")} for h in history]


@pytest.mark.parametrize("loss_scaling, complex32", [("auto", False), ("dynamic", False), ("auto", True)])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, loss_scaling, complex32):
    """bf16 autocast + mixed layers (CPU), then full: N epochs straight vs N/2 + checkpoint + resume.
    With complex32 weights: TensorGRaD's bases, bf16 moments and stochastic rounding too."""
    train, test = tiny_data()
    torch.manual_seed(123)
    model, optimizer, scheduler, straight = make_run(0, loss_scaling, complex32=complex32)
    straight.train(train, test, optimizer, scheduler, training_loss=loss())

    torch.manual_seed(123)
    _, optimizer, scheduler, first = make_run(0, loss_scaling, crash_at=N_EPOCHS // 2, complex32=complex32)
    with pytest.raises(Interrupted):
        first.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)

    torch.manual_seed(999)  # a different process state: everything must come from the checkpoint
    resumed_model, optimizer, scheduler, resumed = make_run(1, loss_scaling, complex32=complex32)
    resumed.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=tmp_path)

    final, expected = resumed_model.state_dict(), model.state_dict()
    assert final.keys() == expected.keys()
    for key in expected:
        if torch.is_tensor(expected[key]):
            assert equal_exactly(final[key], expected[key]), key
    if complex32:
        assert resumed.scaler.enabled  # complex32 gradients have fp16's range
        assert any(v.dtype == torch.complex32 for v in final.values() if torch.is_tensor(v))
    assert without_times(resumed.history) == without_times(straight.history)
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    assert [h["precision"] for h in resumed.history] == ["half", "mixed", "mixed", "full"]


def test_checkpoint_files_load_weights_only_and_hold_the_schedule_position(tmp_path):
    train, test = tiny_data()
    model, optimizer, scheduler, trainer = make_run(0, "dynamic", crash_at=2)
    with pytest.raises(Interrupted):
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["model_state_dict.pt", "optimizer.pt", "scheduler.pt", "manifest.pt", PRECISION_STATE_FILE])
    loaded = {name: torch.load(tmp_path / name, weights_only=True) for name in names}
    assert "_metadata" not in loaded["model_state_dict.pt"]
    assert loaded["manifest.pt"]["epoch"] == 1
    state = loaded[PRECISION_STATE_FILE]
    assert (state["epoch"], state["next_epoch"], state["phase_index"], state["schedule"]) == (1, 2, 1, SCHEDULE)
    assert state["scaler"] == trainer.scaler.state_dict() and state["scaler"]["scale"] != 2.0**6
    assert len(state["history"]) == 2

    # a new trainer picks up the phase, scale and history before training a single step
    _, optimizer, scheduler, resumed = make_run(1, "dynamic")
    resumed.optimizer, resumed.scheduler, resumed.regularizer = optimizer, scheduler, None
    resumed.resume_state_from_dir(tmp_path)
    assert resumed.start_epoch == 2
    assert resumed.scaler.state_dict() == trainer.scaler.state_dict()
    assert resumed.history == trainer.history
    assert resumed.precision_schedule.phase_for_epoch(resumed.start_epoch, N_EPOCHS).mode == "mixed"


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    train, test = tiny_data(n=8, batch_size=8)
    model, optimizer, scheduler, trainer = make_run(0)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)
    weights = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    model2, optimizer, scheduler, again = make_run(1)
    with pytest.warns(UserWarning, match="already finished all 4 epochs"):
        again.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=tmp_path)
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in weights.items())
    assert len(again.history) == N_EPOCHS


def test_upstream_pickled_checkpoint_gives_a_clear_error(tmp_path):
    model, optimizer, scheduler, trainer = make_run(0)
    model.save_checkpoint(tmp_path, "model")  # upstream: state dict with pickled _metadata
    trainer.optimizer, trainer.scheduler, trainer.regularizer = optimizer, scheduler, None
    with pytest.raises(RuntimeError, match=r"weights_only=True.*_metadata"):
        trainer.resume_state_from_dir(tmp_path)
