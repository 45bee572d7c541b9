"""Review mends: the loss a ReduceLROnPlateau scheduler is stepped with, a mistyped
``save_best``, PrecisionPhase's messages, and the summary's "best model" row."""
import math

import pytest
import torch

from neuralop_mp.train_report import summary_rows
from neuralop_mp.training.schedule import PrecisionPhase, PrecisionSchedule
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import DictDataset, loss, tiny_data, tiny_fno


class RecordingPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """A ReduceLROnPlateau that keeps every value it is stepped with."""

    def __init__(self, optimizer, **kwargs):
        super().__init__(optimizer, **kwargs)
        self.seen = []

    def step(self, metrics, *args, **kwargs):
        self.seen.append(metrics)
        return super().step(metrics, *args, **kwargs)


def _plateau_run(training_loss, n_epochs=2, batches=4):
    model = tiny_fno()
    train, test = tiny_data(n=4 * batches, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = RecordingPlateau(optimizer, patience=0, factor=0.5)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs)
    trainer.train(train, test, optimizer, scheduler, training_loss=training_loss, eval_losses={"l2": loss()})
    return trainer, scheduler


def test_plateau_scheduler_gets_the_finite_batches_mean_not_a_zero_for_a_skipped_batch():
    """4 batches an epoch, the second epoch's second loss inf: the scheduler gets the 3 finite
    losses' mean times 4 (upstream's units); upstream's loop would add a 0 for the skipped one,
    a lower value than any epoch with the same losses and no skip."""
    lp = loss()
    finite = {0: [], 1: []}
    calls = {"n": 0}

    def inf_on_batch_6(out, y):
        calls["n"] += 1
        value = lp(out, y)
        if calls["n"] == 6:
            return value * float("inf")
        finite[(calls["n"] - 1) // 4].append(float(value.detach()))
        return value

    with pytest.warns(RuntimeWarning, match="Epoch 1: skipped 1 optimizer step"):
        trainer, scheduler = _plateau_run(inf_on_batch_6)
    assert [h["skipped_steps"] for h in trainer.history] == [0, 1] and len(finite[1]) == 3
    # no skip: upstream's number, bit for bit (its running sum of the batch losses)
    assert scheduler.seen[0] == sum(finite[0])
    # one skip: the 3 finite losses' mean in the same units, i.e. history's train_err times the batches
    assert scheduler.seen[1] == pytest.approx(sum(finite[1]) / 3 * 4, rel=1e-12)
    assert scheduler.seen[1] == pytest.approx(trainer.history[1]["train_err"] * 4, rel=1e-12)
    assert scheduler.seen[1] > sum(finite[1])  # what upstream's loop passed


def test_plateau_scheduler_is_not_stepped_by_an_epoch_whose_every_loss_is_nan():
    """No finite loss: nothing to judge a plateau by; the epoch stops with the usual error and
    the scheduler keeps its state (upstream's loop stepped it with 0, a "best" no later epoch beats)."""
    model = tiny_fno()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    train = torch.utils.data.DataLoader(DictDataset(x, torch.full_like(x, float("nan"))), batch_size=4)
    test = {"8": torch.utils.data.DataLoader(DictDataset(x, torch.tanh(x)), batch_size=4)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = RecordingPlateau(optimizer)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    with pytest.raises(RuntimeError, match="Every training loss of epoch 0 was inf/NaN"):
        trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    assert scheduler.seen == [] and scheduler.best == math.inf
    assert trainer.scheduler is scheduler  # the stand-in of the epoch is gone


def test_other_schedulers_are_stepped_as_upstream_steps_them():
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    assert trainer.scheduler is scheduler and scheduler.last_epoch == 2
    assert [h["lr"] for h in trainer.history] == [5e-3, 2.5e-3]


@pytest.mark.parametrize("eval_losses, save_best, allowed", [
    ({"l2": loss()}, "8_h1", "'8_l2'"),
    (None, "16_l2", "'8_l2'"),  # upstream's default eval loss is named "l2"
    ({"l2": loss(), "h1": loss()}, "l2", "'8_l2', '8_h1'"),
])
def test_a_save_best_that_is_no_evaluation_metric_is_a_value_error_before_any_epoch(
        tmp_path, eval_losses, save_best, allowed):
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    before = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with pytest.raises(ValueError, match=rf"^Invalid save_best='{save_best}'; allowed values: {allowed} \("):
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), eval_losses=eval_losses,
                      save_best=save_best, save_dir=tmp_path / "ckpt")
    assert trainer.history == [] and not optimizer.state and scheduler.last_epoch == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not (tmp_path / "ckpt").exists()


def test_a_save_best_without_any_metric_says_there_is_none(tmp_path):
    model = tiny_fno()
    train, _ = tiny_data(n=8, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    with pytest.raises(ValueError, match=r"Invalid save_best='8_l2'; allowed values: none \(no test loader"):
        trainer.train(train, {}, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1),
                      training_loss=loss(), save_best="8_l2", save_dir=tmp_path)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(mode="hlaf"), ValueError, r"mode='hlaf'; allowed values: 'full', 'mixed', 'half'"),
    (dict(mode="half", share="x"), TypeError, r"share='x'; expected a number in \(0, 1\]"),
    (dict(mode="half", share=1.5), ValueError, r"share=1.5; a share must be in \(0, 1\]"),
    (dict(mode="half", share=0.5, end_epoch=3), ValueError, r"either a share or an end_epoch.*share=0.5, end_epoch=3"),
    # int() alone raised "invalid literal for int()", "cannot convert float NaN to integer", ...
    (dict(mode="half", end_epoch="abc"), TypeError, r"end_epoch='abc'; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=float("nan")), TypeError, r"end_epoch=nan; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=float("inf")), TypeError, r"end_epoch=inf; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=[3]), TypeError, r"end_epoch=\[3\]; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=2.5), TypeError, r"end_epoch=2.5; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=True), TypeError, r"end_epoch=True; allowed values: integers >= 1"),
    (dict(mode="half", end_epoch=0), ValueError, r"end_epoch=0; allowed values: integers >= 1"),
    (dict(mode="half", autocast="yes"), TypeError, r"autocast='yes'; expected True or False"),
    (dict(mode="half", stabilizer="clip"), ValueError, r"stabilizer='clip'; allowed values: None, 'tanh', 'auto'"),
])
def test_each_phase_error_names_the_field_the_value_and_the_allowed_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        PrecisionPhase(**kwargs)


def test_whole_number_end_epochs_are_still_accepted():
    assert PrecisionPhase("half", end_epoch=3.0).end_epoch == 3
    assert PrecisionPhase("half", end_epoch=torch.tensor(4)).end_epoch == 4


@pytest.mark.parametrize("item, message", [
    ({"mode": "half", "shar": 0.5},
     r"Invalid precision phase 1 \{'mode': 'half', 'shar': 0.5\}: unknown field\(s\) \['shar'\]; "
     r"allowed fields: 'mode', 'share', 'end_epoch', 'autocast', 'stabilizer'"),
    ({"share": 0.5}, r"Invalid precision phase 1 \{'share': 0.5\}: no 'mode'; allowed fields: 'mode', "),
])
def test_a_dict_phase_with_an_unknown_or_missing_field_names_it_and_the_fields_there_are(item, message):
    with pytest.raises(TypeError, match=message):
        PrecisionSchedule([item, "full"])


def _result(best, files=None, output_dir="runs/x"):
    return {
        "train_resolution": 16, "test_resolutions": [16], "metrics": {"16_l2": 0.1, "16_h1": 0.2},
        "seconds_per_epoch": 1.0, "skipped_steps": 0, "wall_time_s": 2.0,
        "precision": {"schedule": "mixed", "half_dtype": "auto", "final_mode": "mixed",
                      "phases": [{"mode": "mixed", "start_epoch": 0, "end_epoch": 3, "autocast": True,
                                  "stabilizer": None}]},
        "memory": {"n_params": 10, "params_bytes": 40, "optimizer_state_bytes": 80, "saved_bytes": None},
        "best": best, "files": files or {}, "output_dir": output_dir,
    }


BEST = {"metric": "16_l2", "value": 0.25, "epoch": 0}


@pytest.mark.parametrize("result, row", [
    (_result(BEST, files={"best_model": "runs/x/best_model_state_dict.pt"}), "epoch 0, 16_l2 0.25"),
    # --save_best given first at a resume, after the best epoch (run_training logs the same reason)
    (_result(BEST), "no file written (epoch 0, 16_l2 0.25): the best epoch came before --save_best was "
                    "given, and no later epoch beat it"),
    (_result(BEST, output_dir=None), "no file written (epoch 0, 16_l2 0.25): this run wrote no output folder"),
    (_result({**BEST, "value": math.nan}),
     "no file written (epoch 0, 16_l2 nan): no evaluated epoch had a finite 16_l2"),
])
def test_the_best_model_row_claims_an_epoch_only_where_its_file_was_written(result, row):
    assert dict(summary_rows(result))["best model"] == row


def test_no_best_model_row_without_save_best():
    assert "best model" not in dict(summary_rows(_result(None)))
