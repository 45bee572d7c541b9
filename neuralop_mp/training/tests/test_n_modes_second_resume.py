"""A resume keeps the saved run's start (``n_modes_at_start``) for the checkpoints it writes, so
that a second resume of a model built with other modes still compares them with the modes the run
started with, not with those the first resume was built with."""
import torch

from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE

from .test_n_modes_built_otherwise import _run


def test_a_second_resume_compares_the_built_modes_with_the_runs_start(tmp_path):
    _run(tmp_path, (2, 2), 2)  # the run starts at [2, 2]; epoch 1 grows the first layer to [4, 3]
    _, first = _run(tmp_path, (8, 8), 3, resume=True)  # built otherwise: warned, and saves epoch 2
    assert len(first) == 1 and "the run started at [2, 2]" in first[0]
    state = torch.load(tmp_path / PRECISION_STATE_FILE, weights_only=True)
    # the start the first resume saves is the run's, not the [8, 5] it was built with
    assert state["n_modes_at_start"]["fno_blocks.convs.1"] == [2, 2]
    assert state["n_modes_at_start"][""] == [2, 2]
    model, second = _run(tmp_path, (8, 8), 4, resume=True)
    assert len(second) == 1
    assert "fno_blocks.convs.1 built [8, 5], the run started at [2, 2], restored [2, 2]" in second[0]
    assert model.fno_blocks.convs[0].n_modes == [4, 3]
