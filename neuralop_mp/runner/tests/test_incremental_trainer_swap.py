"""While the plugin is enabled, upstream's ``IncrementalFNOTrainer`` is replaced as its ``Trainer``
is: a script's incremental trainer runs the requested schedule with upstream's algorithm
(:class:`~neuralop_mp.training.incremental.IncrementalMixedPrecisionTrainer`), refuses a model
the plugin did not build where the schedule switches layers, and the names are upstream's again
once the activation ends. Real plugin parts, an 8x8 grid, 2 epochs."""
import neuralop
import neuralop.training
import neuralop.training.incremental
import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.training.tests.tiny import loss, tiny_data

ORIGINAL = neuralop.training.incremental.IncrementalFNOTrainer
CONFIG = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [2, 2],
                    "max_n_modes": [6, 6], "hidden_channels": 4, "n_layers": 1}}
INCREMENTAL = dict(incremental_loss_gap=True, incremental_loss_eps=1e9)


@pytest.fixture(autouse=True)
def _left_disabled():
    yield
    neuralop_mp.disable()  # a failing test must not leave the plugin on for the next one


def test_a_scripts_incremental_trainer_runs_the_schedule_and_grows_the_modes():
    with neuralop_mp.enabled(schedule="mixed:0.5,full:0.5", half_dtype="bfloat16") as report:
        replaced = neuralop.training.IncrementalFNOTrainer
        assert replaced is not ORIGINAL, "upstream's IncrementalFNOTrainer is not replaced"
        from neuralop_mp.training.incremental import IncrementalMixedPrecisionTrainer

        assert neuralop.training.incremental.IncrementalFNOTrainer is replaced
        assert issubclass(replaced, IncrementalMixedPrecisionTrainer) and replaced.__name__ == "IncrementalFNOTrainer"
        model = neuralop.get_model(CONFIG)
        trainer = replaced(model=model, n_epochs=2, device="cpu", **INCREMENTAL)
        train, _ = tiny_data(n=8)
        trainer.train(train, {}, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(),
                      eval_losses={})
    assert [h["precision"] for h in trainer.history] == ["mixed", "full"]
    assert model.fno_blocks.convs[0].n_modes == [3, 2]
    assert [entry["class"] for entry in report.trainers] == ["IncrementalFNOTrainer"]
    assert neuralop.training.IncrementalFNOTrainer is ORIGINAL
    assert neuralop.training.incremental.IncrementalFNOTrainer is ORIGINAL


def test_a_model_built_directly_is_refused_as_by_the_replaced_trainer():
    model = FNO(n_modes=(2, 2), max_n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    with neuralop_mp.enabled(schedule="mixed:0.5,full:0.5"):
        with pytest.raises(RuntimeError, match=r"the model passed to Trainer \(FNO\) has no MixedPrecisionSpectralConv"):
            neuralop.training.IncrementalFNOTrainer(model=model, n_epochs=2, **INCREMENTAL)


def test_a_scripts_incremental_trainer_takes_model_and_n_epochs_by_position_as_upstreams_does():
    """Upstream's IncrementalFNOTrainer(model, n_epochs, ...) (its Trainer is keyword-only): the
    replaced class refused the positional form, so a script that ran without the plugin failed with it."""
    ORIGINAL(FNO(n_modes=(2, 2), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1), 2, **INCREMENTAL)
    with neuralop_mp.enabled():
        model = neuralop.get_model(CONFIG)
        trainer = neuralop.training.IncrementalFNOTrainer(model, 2, device="cpu", **INCREMENTAL)
        assert trainer.model is model and trainer.n_epochs == 2 and trainer.incremental_loss_gap
