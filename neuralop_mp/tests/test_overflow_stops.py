"""`neuralop-mp train` ends a stop of the trainer's own (an overflow) with one line: why, what is
saved and how to go on, exit code 1, no traceback."""
from neuralop_mp import cli
from neuralop_mp.training.guarded_step import TrainingStopped


def test_train_prints_a_trainer_stop_as_one_line_with_the_saved_epoch(tmp_path, monkeypatch, capsys):
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
    assert err.strip().splitlines()[-1] == (
        "neuralop-mp train: Training stopped: 4 consecutive optimizer steps were skipped. Try: use bfloat16; "
        f"{out / 'checkpoint'} holds epoch 1, the last saved. Continue with: neuralop-mp train --resume {out}")
