"""One answer to "which rank am I": the process group's, else torchrun's RANK, else 0."""
import pytest
import torch.distributed as dist

from neuralop_mp import cli
from neuralop_mp.run_setup import RunSetupError
from neuralop_mp.training import distributed


@pytest.mark.parametrize("rank_env, expected", [("2", 2), ("0", 0), (None, 0), ("x", 0), ("", 0)])
def test_without_a_group_the_launch_rank_is_torchruns_rank(monkeypatch, rank_env, expected):
    assert not dist.is_initialized()
    if rank_env is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank_env)
    assert distributed.launch_rank() == expected
    assert distributed.rank() == 0  # rank() stays the group's alone


def test_a_group_outranks_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed.launch_rank() == distributed.rank() == 0
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("rank_env, claimed", [("1", False), ("0", True), (None, True), ("x", True)])
def test_train_claims_the_default_run_folder_on_the_launch_rank_0_only(monkeypatch, tmp_path, rank_env, claimed):
    """``neuralop-mp train`` claims its default run folder in the process that writes; a
    malformed RANK reads as 0 there as in ``neuralop-mp run`` (it was read as another rank)."""
    import neuralop_mp.train_pipeline as pipeline

    # a rank other than 0 waits for torchrun to stop it before it says an error rank 0 says too
    monkeypatch.setattr(cli, "_RANK_ERROR_WAIT_S", 0.0)
    monkeypatch.setattr(cli, "_QUIET_RANK_EXIT_DELAY_S", 0.0)
    if rank_env is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank_env)
    seen = []

    def output_dir_for(config, claim, created=None):
        seen.append(claim)
        raise RunSetupError("stop here")

    monkeypatch.setattr(pipeline, "output_dir_for", output_dir_for)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "darcy"]) == 2  # the stop above, as an error
    assert seen == [claimed]
