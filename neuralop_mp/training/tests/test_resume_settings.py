"""A resume outside the CLI (``MixedPrecisionTrainer.train(..., resume_from_dir=...)``) warns of
the optimizer and scheduler settings it was given that the saved states replace (torch's
``load_state_dict``), and of nothing the training itself changes (a decayed learning rate,
a scheduler's counters); with ``check_resume_states`` installed (the CLI's refusal) it does not."""
import shutil
import warnings

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, tiny_data, tiny_fno

SETTINGS_WARNING = "other optimizer or scheduler settings than it was saved with"


def adamw(model, **kwargs):
    return torch.optim.AdamW(model.parameters(), lr=1e-2, **kwargs)


def tensorgrad(model, rank=0.25, weight_decay=0.01):
    # min_params=0: the tiny model's weights are compressed (by default too small to be)
    return TensorGRaD(model.parameters(), lr=1e-2, weight_decay=weight_decay, compress=True, rank=rank, min_params=0)


def step_lr(optimizer, step_size=2):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.5)


def run(folder, n_epochs, make_optimizer, make_scheduler, resume=False, check=None):
    """Train a tiny FNO to ``n_epochs`` (saving every epoch in ``folder``), or resume it from
    there; returns the optimizer, the scheduler and the settings warnings the call gave."""
    model = tiny_fno()
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, verbose=False)
    if check is not None:
        trainer.check_resume_states = check
    train_loader, test_loaders = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train(train_loader, test_loaders, optimizer, scheduler, training_loss=loss(), save_every=1,
                      save_dir=folder, resume_from_dir=folder if resume else None)
    return optimizer, scheduler, [w for w in caught if SETTINGS_WARNING in str(w.message)]


def test_changed_optimizer_settings_are_named_and_the_saved_ones_kept(tmp_path):
    """The reviewer's case: TensorGRaD saved with rank 0.25 (and weight decay 0.01), resumed
    with 0.5 (and 0.1): one warning names both, pointing at the caller, and the run goes on
    with the saved values."""
    run(tmp_path, 1, tensorgrad, step_lr)
    optimizer, _, caught = run(tmp_path, 2, lambda m: tensorgrad(m, rank=0.5, weight_decay=0.1), step_lr,
                               resume=True)
    assert len(caught) == 1
    warning = caught[0]
    message = str(warning.message)
    assert warning.category is UserWarning
    assert "group 0: weight_decay=0.1 given, 0.01 saved" in message
    assert "group 0: rank=0.5 given, 0.25 saved" in message
    assert "load_state_dict" in message and "optimizer.param_groups" in message and "new run" in message
    # rank laid out the saved state (TensorGRaD refuses it changed in the groups), weight decay did not
    assert message.endswith("(rank laid out the saved optimizer state: only a new run changes them).")
    assert "lr=" not in message.replace("initial_lr", "")  # lr is no setting compared
    assert warning.filename == __file__  # the caller's line, not the plugin's
    assert [(g["rank"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.25, 0.01)]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("make_optimizer", [tensorgrad, adamw], ids=["tensorgrad", "adamw"])
def test_the_same_settings_give_no_warning(tmp_path, make_optimizer):
    run(tmp_path, 1, make_optimizer, step_lr)
    _, _, caught = run(tmp_path, 2, make_optimizer, step_lr, resume=True)
    assert caught == []


def test_a_changed_scheduler_setting_is_named(tmp_path):
    run(tmp_path, 1, adamw, step_lr)
    _, scheduler, caught = run(tmp_path, 2, adamw, lambda o: step_lr(o, step_size=3), resume=True)
    assert len(caught) == 1
    assert "scheduler: step_size=3 given, 2 saved" in str(caught[0].message)
    assert "group 0" not in str(caught[0].message)
    assert scheduler.step_size == 2


def plateau(optimizer):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)


@pytest.mark.parametrize("make_scheduler", [lambda o: step_lr(o, step_size=1), plateau], ids=["StepLR", "plateau"])
def test_what_training_changes_gives_no_warning(tmp_path, make_scheduler):
    """A learning rate the scheduler decayed (the same initial_lr), the scheduler's counters
    (last_epoch, _last_lr; ReduceLROnPlateau's best, num_bad_epochs) differ from a fresh
    run's: no settings."""
    optimizer, scheduler, _ = run(tmp_path, 2, adamw, make_scheduler)
    if isinstance(scheduler, torch.optim.lr_scheduler.StepLR):
        assert optimizer.param_groups[0]["lr"] < optimizer.param_groups[0]["initial_lr"]
    else:
        assert scheduler.best < float("inf")
    _, _, caught = run(tmp_path, 3, adamw, make_scheduler, resume=True)
    assert caught == []


def test_cycled_momentum_and_scheduler_written_keys_are_not_settings(tmp_path):
    """OneCycleLR writes max_lr, min_lr, base/max_momentum and the betas into the groups."""
    def one_cycle(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20)

    run(tmp_path, 2, adamw, one_cycle)
    _, _, caught = run(tmp_path, 3, adamw, one_cycle, resume=True)
    assert caught == []


def test_an_installed_check_replaces_the_warning(tmp_path):
    """The CLI installs its refusal as ``check_resume_states``: it gets the states, and no
    warning is given besides."""
    run(tmp_path, 1, adamw, step_lr)
    seen = []
    _, _, caught = run(tmp_path, 2, lambda m: adamw(m, weight_decay=0.5), step_lr, resume=True,
                       check=lambda states, save_dir: seen.append(sorted(states)))
    assert seen == [["optimizer", "scheduler"]]
    assert caught == []


def plain_tensorgrad(**given):
    """TensorGRaD with plain (AdamW) moments only (nothing compressed), ``given`` settings changed."""
    return lambda model: TensorGRaD(model.parameters(), lr=1e-2, **{"compress": False, **given})


@pytest.mark.parametrize("given, fixed", [
    ({"rank": 0.5, "min_params": 10}, None),  # lay out no plain moment: TensorGRaD takes them set back
    ({"rank": 0.5, "adam_convention": "neuralop"}, "adam_convention"),  # lays out every moment
    ({"rank": 0.5, "compress": True, "min_params": 0}, "compress, min_params, rank"),  # these compress some
])
def test_the_note_names_only_settings_that_laid_out_the_groups_state(tmp_path, given, fixed):
    """In a group of plain moments only, TensorGRaD takes a layout setting changed but
    ``adam_convention`` (and one that would compress the parameters): the note names no other."""
    run(tmp_path, 1, plain_tensorgrad(), step_lr)
    optimizer, _, caught = run(tmp_path, 2, plain_tensorgrad(**given), step_lr, resume=True)
    (warning,) = caught
    message = str(warning.message)
    assert all(f"group 0: {key}={value!r} given" in message for key, value in given.items())
    if fixed is None:
        assert message.endswith("or start a new run.") and "laid out" not in message
    else:
        assert message.endswith(f"({fixed} laid out the saved optimizer state: only a new run changes them).")
    if fixed is None:  # what the note leaves out is indeed taken: set back, the next step runs
        for key, value in given.items():
            optimizer.param_groups[0][key] = value
        optimizer._check_layouts()


def test_only_rank_0_warns_of_the_changed_settings(tmp_path, monkeypatch):
    """Every rank of a data-parallel run resumes alike: rank 0 alone gives the warning, as it
    alone logs the epochs (the rank faked as the pipeline's tests do)."""
    from neuralop_mp.training import distributed

    run(tmp_path / "saved", 1, adamw, step_lr)
    for rank in (1, 0):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        folder = tmp_path / f"rank{rank}"
        shutil.copytree(tmp_path / "saved", folder)
        _, _, caught = run(folder, 2, lambda m: adamw(m, weight_decay=0.5), step_lr, resume=True)
        assert len(caught) == (rank == 0)
