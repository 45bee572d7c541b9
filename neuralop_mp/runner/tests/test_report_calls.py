"""The activation report's record of ``train()`` calls: a resume's restored epochs counted once
(also where a metric is NaN), and the optimizer the trainers trained with, which the summary's
optimizer line names.

The end-to-end cases run upstream's Trainer (the plugin's while enabled) on an 8x8 grid, 1-3 epochs.
"""
import warnings

import neuralop
import neuralop.training
import pytest
import torch

import neuralop_mp
from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.summary import format_summary
from neuralop_mp.training.tests.tiny import loss, tiny_data

TINY_CONFIG = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                         "hidden_channels": 4, "n_layers": 1}}
KEPT = "optimizer: the script's own (upstream neuralop.training.AdamW is kept"
NAN = float("nan")


@pytest.fixture(autouse=True)
def _left_disabled():
    yield
    neuralop_mp.disable()  # a failing test must not leave the plugin on for the next one


class _Trainer:
    """What the report reads of a trainer."""
    device = "cpu"


def _epochs(entry):
    return [[h["epoch"] for h in call["history"]] for call in entry["calls"]]


def test_a_resumed_epoch_with_a_nan_metric_is_counted_once():
    report = ActivationReport({})
    trainer = _Trainer()
    entry = report.record_trainer(trainer, schedule=None)
    first = [{"epoch": 0, "train_loss": 1.0, "32_l2": NAN}, {"epoch": 1, "train_loss": 0.5, "32_l2": NAN}]
    report.record_train_call(trainer, first)
    # the resume's copies, unpickled: new NaN objects (NaN != NaN: `{"a": nan} in [{"a": nan}]` is False
    # unless both hold the same object), and one epoch trained
    copies = [dict(h, **{"32_l2": float("nan")}) for h in first]
    report.record_train_call(trainer, copies + [{"epoch": 2, "train_loss": 0.2, "32_l2": NAN}])
    assert _epochs(entry) == [[0, 1], [2]]


def test_a_second_run_of_the_same_epochs_is_counted_again():
    """Epochs are told apart by their values too: a train() call that starts again at epoch 0
    (or a second trainer) trained them again."""
    report = ActivationReport({})
    trainer = _Trainer()
    entry = report.record_trainer(trainer, schedule=None)
    report.record_train_call(trainer, [{"epoch": 0, "train_loss": 1.0, "32_l2": NAN}])
    report.record_train_call(trainer, [{"epoch": 0, "train_loss": 0.9, "32_l2": NAN}])
    assert _epochs(entry) == [[0], [0]]


def _nan_l2(out, y=None, **kwargs):
    return torch.tensor(NAN)


def test_a_resume_in_the_same_script_with_a_nan_metric_adds_only_the_epochs_it_trained(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with neuralop_mp.enabled(precision="mixed") as report:
            model = neuralop.get_model(TINY_CONFIG)
            optimizer = neuralop.training.AdamW(model.parameters(), lr=1e-3)
            train, test = tiny_data(n=8)
            trainer = neuralop.Trainer(model=model, n_epochs=2, device="cpu", verbose=False)
            trainer.train(train, test, optimizer, None, training_loss=loss(), eval_losses={"l2": _nan_l2},
                          save_every=1, save_dir=tmp_path)
            trainer.n_epochs = 3
            trainer.train(train, test, optimizer, None, training_loss=loss(), eval_losses={"l2": _nan_l2},
                          resume_from_dir=tmp_path)
    (entry,) = report.trainers
    assert _epochs(entry) == [[0, 1], [2]]
    assert all(h[key] != h[key] for h in entry["history"] for key in h if key.endswith("_l2"))  # NaN kept
    assert "over 3 epochs in 2 train() calls" in format_summary(report)


def _train_with(make_optimizer, **options):
    with neuralop_mp.enabled(**options) as report:
        model = neuralop.get_model(TINY_CONFIG)
        optimizer = make_optimizer(model.parameters())
        trainer = neuralop.Trainer(model=model, n_epochs=1, device="cpu", verbose=False)
        trainer.train(*tiny_data(n=8), optimizer, None, training_loss=loss())
    return report, optimizer


def test_the_summary_says_upstreams_adamw_is_kept_where_a_trainer_trained_with_it():
    report, optimizer = _train_with(lambda params: neuralop.training.AdamW(params, lr=1e-3))
    assert type(optimizer) is neuralop.training.adamw.AdamW
    assert report.trainers[0]["optimizers"] == ["neuralop.training.adamw.AdamW"]
    assert [line for line in format_summary(report).splitlines() if line.startswith("optimizer:")] == [
        "optimizer: the script's own (upstream neuralop.training.AdamW is kept: no option asked for the "
        "plugin's optimizer)"]


def test_the_summary_names_a_torch_optimizer_and_claims_no_upstream_adamw_kept():
    """A script that never built upstream's AdamW used to be told that it was kept."""
    report, _ = _train_with(lambda params: torch.optim.SGD(params, lr=1e-3))
    summary = format_summary(report)
    assert KEPT not in summary, summary
    assert [line for line in summary.splitlines() if line.startswith("optimizer:")] == [
        "optimizer: the script's own torch.optim.SGD"]
    assert report.trainers[0]["optimizers"] == ["torch.optim.sgd.SGD"]


def test_a_replaced_optimizer_is_said_as_replaced_only():
    report, _ = _train_with(lambda params: neuralop.training.AdamW(params, lr=1e-3), optimizer="adamw")
    lines = [line for line in format_summary(report).splitlines() if line.startswith("optimizer:")]
    assert lines == ["optimizer: upstream neuralop.training.AdamW replaced by AdamW (adamw) because "
                     "optimizer=adamw"], lines
