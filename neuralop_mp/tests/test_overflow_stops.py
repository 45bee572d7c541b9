"""`neuralop-mp train` ends a stop of the trainer's own (an overflow) without a traceback: why, what is
saved and how to go on, exit code 1, no traceback."""
from neuralop_mp import cli
from neuralop_mp.training.guarded_step import TrainingStopped


def test_train_prints_a_trainer_stop_without_a_traceback_with_the_saved_epoch(tmp_path, monkeypatch, capsys):
    import neuralop_mp.train_pipeline as pipeline
    from neuralop_mp.training import checkpointing
    from neuralop_mp.training.tests.tiny import tiny_fno

    out = tmp_path / "run"
    checkpointing.save_training_files(out / "checkpoint", "model", tiny_fno(), epoch=1)

    def overflowing(config, **kwargs):
        raise TrainingStopped("Training stopped: 4 consecutive optimizer steps were skipped. Try: use bfloat16.")

    monkeypatch.setattr(pipeline, "run_training", overflowing)
    assert cli.main(["train", "darcy", "--opt.n_epochs", "3", "--output_dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-2:] == [
        "neuralop-mp train: Training stopped: 4 consecutive optimizer steps were skipped. Try: use bfloat16.",
        f"neuralop-mp train: stopped; {out / 'checkpoint'} holds epoch 1, the last saved. Continue with one of "
        f"the changes above with: neuralop-mp train --resume {out}"]


def test_a_trainer_stop_before_any_save_says_to_run_again_with_a_change(tmp_path, monkeypatch, capsys):
    # the same settings would overflow the same way: "run the command again" alone is wrong advice
    import neuralop_mp.train_pipeline as pipeline

    out = tmp_path / "run"

    def overflowing(config, **kwargs):
        raise TrainingStopped("Training stopped: every training loss of epoch 0 was inf/NaN. Try: use bfloat16.")

    monkeypatch.setattr(pipeline, "run_training", overflowing)
    assert cli.main(["train", "darcy", "--opt.n_epochs", "3", "--output_dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-2:] == [
        "neuralop-mp train: Training stopped: every training loss of epoch 0 was inf/NaN. Try: use bfloat16.",
        f"neuralop-mp train: stopped before any epoch was saved in {out}: nothing to resume; run the command "
        "again with one of the changes above."]
