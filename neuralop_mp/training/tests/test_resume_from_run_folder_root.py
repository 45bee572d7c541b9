"""``resume_from_dir`` given a run folder of ``neuralop-mp train`` (its top, where the final model saved
with ``save_checkpoint`` lies) names the run's ``checkpoint/`` folder to resume from; elsewhere the
upstream-checkpoint recipe stays."""
import json
import re
import warnings

import pytest
import torch

from neuralop_mp.training.checkpointing import CheckpointError, load_weights_only
from neuralop_mp.training.tests.tiny import loss, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer


def _run_folder_top(folder):
    """What a run folder holds at its top: command.json, checkpoint/ and the model save_checkpoint wrote."""
    folder.mkdir()
    (folder / "command.json").write_text(json.dumps({"config": "darcy", "overrides": []}))
    (folder / "checkpoint").mkdir()
    tiny_fno(mixed_precision_layer=False).save_checkpoint(folder, "model")
    return folder


def test_resume_from_a_run_folders_top_names_its_checkpoint_folder(tmp_path):
    run = _run_folder_top(tmp_path / "run")
    model = tiny_fno(mixed_precision_layer=False)
    train, test = tiny_data(n=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, verbose=False)
    with pytest.raises(CheckpointError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(),
                      eval_losses={"l2": loss()}, resume_from_dir=run)
    message = str(err.value)
    assert f"resume_from_dir={str(run / 'checkpoint')!r}" in message, message
    assert f"neuralop-mp train --resume {run}" in message, message
    assert "drop '_metadata'" not in message, message  # the recipe for upstream's checkpoints leads nowhere here


def test_an_upstream_weights_file_elsewhere_keeps_the_conversion_recipe(tmp_path):
    tiny_fno(mixed_precision_layer=False).save_checkpoint(tmp_path, "model")
    with pytest.raises(CheckpointError, match=re.escape("drop '_metadata' and save it again")):
        load_weights_only(tmp_path / "model_state_dict.pt")


def test_train_resume_of_a_runs_checkpoint_folder_names_the_run_folder(tmp_path, capsys):
    """`neuralop-mp train --resume RUN/checkpoint` said only "no command.json": it names RUN."""
    from neuralop_mp import cli

    run = tmp_path / "my run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "command.json").write_text("{}")
    assert cli.main(["train", "--resume", str(run / "checkpoint")]) == 2
    err = capsys.readouterr().err
    assert "has no command.json" in err
    assert f"It is the checkpoint folder of the run {run}: give --resume '{run}'." in err
