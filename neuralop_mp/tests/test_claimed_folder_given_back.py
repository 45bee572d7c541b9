"""The folders a run claimed are given back by one rule (:func:`~neuralop_mp.run_folder.give_back_claimed`,
used by ``run_training`` and by ``neuralop-mp train``), a ``runs/`` removed under a claim is made again,
and a run's checkpoint folder is told by one rule (:func:`~neuralop_mp.training.checkpointing.run_folder_of`)."""
import json
from datetime import datetime

import pytest
import torch

from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.run_folder import give_back_claimed
from neuralop_mp.run_setup import RunSetupError
from neuralop_mp.training.checkpointing import CheckpointError, load_weights_only, run_folder_of


def _claimed(tmp_path):
    """``[run folder, runs/, top/]``: a run folder holding what a run writes before its first epoch."""
    top = tmp_path / "top"
    run = top / "runs" / "darcy-1"
    run.mkdir(parents=True)
    (run / "command.json").write_text("{}")
    return [run, run.parent, top]


def test_the_run_folder_and_its_empty_parents_are_given_back(tmp_path):
    folders = _claimed(tmp_path)
    assert give_back_claimed(folders) is True
    assert not folders[2].exists() and list(tmp_path.iterdir()) == []


def test_a_folder_holding_a_run_is_kept_with_its_parents(tmp_path):
    folders = _claimed(tmp_path)
    (folders[0] / "checkpoint").mkdir()  # a run saved an epoch: no longer the claim's to give back
    assert give_back_claimed(folders) is False
    assert sorted(p.name for p in folders[0].iterdir()) == ["checkpoint", "command.json"]


def test_a_parent_holding_something_stays_and_so_do_those_above(tmp_path):
    folders = _claimed(tmp_path)
    (folders[1] / "notes.txt").write_text("another run's")
    assert give_back_claimed(folders) is True
    assert not folders[0].exists() and (folders[1] / "notes.txt").is_file() and folders[2].is_dir()


def test_a_run_folder_removed_under_the_run_still_gives_back_its_empty_parents(tmp_path):
    folders = _claimed(tmp_path)
    (folders[0] / "command.json").unlink()
    folders[0].rmdir()
    assert give_back_claimed(folders) is False  # not given back here: removed under it
    assert list(tmp_path.iterdir()) == []


def test_a_runs_folder_removed_between_its_check_and_the_claim_is_made_again(tmp_path, monkeypatch):
    """Another run gave back the empty runs/ after this one's check_writable made it: the claim
    makes it again (was: FileNotFoundError) and gives it back with the run's folder."""
    monkeypatch.chdir(tmp_path)
    checked = []
    real_check = pipeline.check_writable

    def check_then_removed(folder, *args, **kwargs):
        real_check(folder, *args, **kwargs)
        if not checked:  # the first check only: the other run's give-back
            folder.rmdir()
        checked.append(folder)

    monkeypatch.setattr(pipeline, "check_writable", check_then_removed)
    created = []
    folder = pipeline.output_dir_for(load_config("darcy"), now=datetime(2026, 1, 2, 3, 4, 5), created=created)
    assert folder == tmp_path / "runs" / "darcy-20260102-030405" and folder.is_dir()
    assert created == [folder, tmp_path / "runs"] and len(checked) == 2
    assert give_back_claimed(created) and list(tmp_path.iterdir()) == []


def test_a_runs_folder_removed_at_every_claim_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_check = pipeline.check_writable

    def check_then_removed(folder, *args, **kwargs):
        real_check(folder, *args, **kwargs)
        folder.rmdir()

    monkeypatch.setattr(pipeline, "check_writable", check_then_removed)
    with pytest.raises(RunSetupError, match=r"runs' was removed 4 times while a run folder was claimed in it; "
                                            r"give the run a folder with --output_dir"):
        pipeline.output_dir_for(load_config("darcy"), now=datetime(2026, 1, 2, 3, 4, 5), created=[])


@pytest.mark.parametrize("name", ["checkpoint", "checkpoint.old"])
def test_a_runs_checkpoint_folder_is_told_by_one_rule(tmp_path, name):
    """run_folder_of names the run of its checkpoint/ or checkpoint.old only beside a command.json;
    a model file at the top of such a run folder is met with the run's checkpoint/ to resume from."""
    run = tmp_path / "run"
    (run / name).mkdir(parents=True)
    assert run_folder_of(run / name) is None  # no command.json: no run of `neuralop-mp train`
    (run / "command.json").write_text(json.dumps({"config": "darcy"}))
    assert run_folder_of(run / name) == run and run_folder_of(run) is None
    assert run_folder_of(tmp_path / "elsewhere" / name) is None

    (run / "checkpoint").mkdir(exist_ok=True)
    model_file = run / "model_state_dict.pt"
    torch.save({"_metadata": {"a": object}}, model_file)  # pickled objects, as save_checkpoint writes
    with pytest.raises(CheckpointError, match=rf"resume_from_dir='{run / 'checkpoint'}'"):
        load_weights_only(model_file)
