"""A Ctrl-C (or SIGTERM) during a checkpoint save: no temporary left, and raised as itself."""
import warnings

import pytest
import torch

from neuralop_mp.training import checkpointing, resume
from neuralop_mp.training.checkpointing import save_training_files


def test_an_interrupt_mid_save_removes_the_temporary_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_training_files(tmp_path / "checkpoint", "model", model, optimizer, epoch=0)
    real_save = torch.save
    calls = []

    def interrupted_save(obj, path, *args, **kwargs):  # Ctrl-C after the first file of the save
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_training_files(tmp_path / "checkpoint", "model", model, optimizer, epoch=1)
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint.tmp").exists()
    assert torch.load(tmp_path / "checkpoint" / "manifest.pt", weights_only=True)["epoch"] == 0


def test_an_interrupt_that_rmtree_turns_into_bad_file_descriptor_is_raised_as_itself(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    save_training_files(tmp_path / "checkpoint", "model", model, epoch=0)

    def rmtree_interrupted(path, *args, **kwargs):  # CPython 3.11: the second close of an fd, after Ctrl-C
        try:
            raise KeyboardInterrupt
        finally:
            raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(checkpointing.shutil, "rmtree", rmtree_interrupted)
    with pytest.raises(KeyboardInterrupt):  # the removal of checkpoint.old after the swap
        save_training_files(tmp_path / "checkpoint", "model", model, epoch=1)
    # the swap was done before the interrupt: the folder holds the new epoch, whole
    assert torch.load(tmp_path / "checkpoint" / "manifest.pt", weights_only=True)["epoch"] == 1


def test_a_resume_on_another_number_of_ranks_warns_naming_both(tmp_path):
    """The command that continues the run names its run folder (was the placeholder RUN_DIR); a
    checkpoint folder of a script's own (no run folder of train) names the script's launch."""
    state = {"history": [{"epoch": 0, "world_size": 2}, {"epoch": 1, "world_size": 2}]}
    run = tmp_path / "my run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "command.json").write_text("{}")
    with pytest.warns(UserWarning) as caught:
        resume._warn_other_world_size(state, run / "checkpoint")
    message = str(caught[0].message)
    assert "on 1 rank(s), but its last saved epoch (1) ran on 2: " in message
    assert message.endswith("torchrun --standalone --nproc_per_node 2 -m neuralop_mp.cli train "
                            f"--resume '{run}' on one node."), message
    with pytest.warns(UserWarning, match=r"e\.g\. torchrun --standalone --nproc_per_node 2 YOUR_SCRIPT\.py\.$"):
        resume._warn_other_world_size(state, tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resume._warn_other_world_size({"history": [{"epoch": 1, "world_size": 1}]}, tmp_path)
