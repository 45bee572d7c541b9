"""``eval`` of a trainer's checkpoint folder compares its errors with those the training recorded
at its last epoch: beyond :data:`RECORDED_METRIC_FACTOR` either way, one line names each error
off, both numbers, and the likely causes."""
import math

import torch

from neuralop_mp.evaluate import RECORDED_METRIC_FACTOR, TrainingRecord, recorded_metrics_text, training_record
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE

LAST = {"epoch": 4, "train_loss": 1.0, "16_l2": 0.2, "16_h1": 0.4, "32_l2": 0.25}


def test_errors_within_the_factor_either_way_are_not_warned():
    within = RECORDED_METRIC_FACTOR * 0.99
    assert recorded_metrics_text({"16_l2": 0.2 * within, "16_h1": 0.4 / within}, LAST, False) is None
    # nothing comparable: no record, keys the training did not evaluate, inf/NaN (said on their own)
    assert recorded_metrics_text({"16_l2": 99.0}, None, False) is None
    assert recorded_metrics_text({"64_l2": 99.0}, LAST, False) is None
    assert recorded_metrics_text({"16_l2": math.inf, "16_h1": math.nan}, LAST, False) is None


def test_errors_beyond_the_factor_are_named_with_both_numbers_and_the_causes():
    beyond = RECORDED_METRIC_FACTOR * 1.01
    text = recorded_metrics_text({"16_l2": 0.2 * beyond, "16_h1": 0.4, "32_l2": 0.25 / beyond}, LAST, False)
    assert f"16_l2 {0.2 * beyond:.4g} (recorded 0.2)" in text and f"32_l2 {0.25 / beyond:.4g} (recorded 0.25)" in text
    assert "16_h1" not in text and "(epoch 4)" in text and "\n" not in text
    assert "--data.encode_output false" in text and "--config" in text
    # with the training's own processor used, another normalizer is not the cause
    text = recorded_metrics_text({"16_l2": 0.2 * beyond}, LAST, True)
    assert "encode_output" not in text and "other test data" in text


def test_the_record_is_read_from_precision_state(tmp_path):
    (tmp_path / "model_state_dict.pt").write_bytes(b"")  # the trainer's save (save_every): `model`
    assert training_record(tmp_path, "model") == TrainingRecord()  # upstream's save_checkpoint: none
    processor = {"class": "DefaultDataProcessor", "in_normalizer": None, "out_normalizer": None}
    torch.save({"history": [{"epoch": 0}, LAST], "data_processor": processor}, tmp_path / PRECISION_STATE_FILE)
    assert training_record(tmp_path, "model") == TrainingRecord(processor, LAST)
    assert training_record(tmp_path, "mine") == TrainingRecord()  # other weights: not their record
    (tmp_path / PRECISION_STATE_FILE).write_bytes(b"damaged")
    damaged = training_record(tmp_path, "model")  # nothing used, and why, which eval says
    assert damaged._replace(unreadable=None) == TrainingRecord() and PRECISION_STATE_FILE in damaged.unreadable
