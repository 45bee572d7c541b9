"""A resumed run that had no epoch left: the trainer records it (``resumed_finished_run``) and says
it through ``on_finished_run`` when set (the training pipeline's run log), else as a warning."""
import warnings

import pytest

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno


def _trainer(n_epochs):
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    return MixedPrecisionTrainer(model=model, n_epochs=n_epochs), optimizer, scheduler


@pytest.fixture
def saved(tmp_path):
    """A checkpoint folder of a finished two-epoch run, and the data."""
    train, test = tiny_data(n=8, batch_size=8)
    trainer, optimizer, scheduler = _trainer(2)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path)
    assert trainer.resumed_finished_run is False  # a new run
    return tmp_path, train, test


def test_a_finished_run_is_recorded_and_said_by_the_hook_instead_of_a_warning(saved):
    folder, train, test = saved
    trainer, optimizer, scheduler = _trainer(2)
    said = []
    trainer.on_finished_run = said.append
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the hook replaces the warning
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=folder)
    assert trainer.resumed_finished_run is True and said == [folder]
    # a later call that trains is no finished run: the record is of the last call
    trainer.n_epochs = 3
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=folder)
    assert trainer.resumed_finished_run is False and said == [folder]
    assert [h["epoch"] for h in trainer.history] == [0, 1, 2]


def test_without_a_hook_the_trainer_warns(saved):
    folder, train, test = saved
    trainer, optimizer, scheduler = _trainer(2)
    with pytest.warns(UserWarning, match=f"The checkpoint in {folder} already finished all 2 epochs"):
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=folder)
    assert trainer.resumed_finished_run is True


def test_a_resume_with_epochs_left_is_no_finished_run(saved):
    folder, train, test = saved
    trainer, optimizer, scheduler = _trainer(3)
    said = []
    trainer.on_finished_run = said.append
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=folder)
    assert trainer.resumed_finished_run is False and not said
    assert [h["epoch"] for h in trainer.history] == [0, 1, 2]


def test_a_finished_run_resumed_with_fewer_epochs_names_the_epochs_it_holds(saved):
    """The checkpoint holds 2 epochs; asking for 1 does not make it a run of 1 epoch (it said "all 1 epochs")."""
    folder, train, test = saved
    trainer, optimizer, scheduler = _trainer(1)
    with pytest.warns(UserWarning, match=f"The checkpoint in {folder} already finished all 2 epochs") as caught:
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=folder)
    assert trainer.resumed_finished_run is True
    assert not [w for w in caught if "all 1 epochs" in str(w.message)]
