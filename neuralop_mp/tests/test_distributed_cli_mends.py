"""``neuralop-mp train`` under torchrun, in process (torchrun's environment set, the training
replaced): a peer rank that died mid-run is one line with the command that continues the run;
a usage error every rank meets is said once, by rank 0, whatever the ranks' timing; the summary
of a run on several ranks says it was data parallel, and its memory figures are per rank."""
import signal

import pytest
import torch

from neuralop_mp import cli, train_pipeline
from neuralop_mp.signals import Terminated
from neuralop_mp.train_report import summary_rows
from neuralop_mp.training.checkpointing import save_training_files

# what a surviving gloo rank raised when the other was SIGKILLed mid-epoch (DDP's backward)
GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:19376: "
              "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the "
              "application. Check the logs of the remote worker before reporting an error. GLHF!")


@pytest.fixture
def torchrun_rank(monkeypatch):
    """Set torchrun's environment of rank ``rank`` of 2 on one node."""
    def as_rank(rank):
        for key, value in {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                           "LOCAL_WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(key, value)
    return as_rank


def _training_raising(monkeypatch, error):
    def run_training(*args, **kwargs):
        raise error

    monkeypatch.setattr(train_pipeline, "run_training", run_training)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_peer_rank_gone_mid_run_is_one_line_naming_the_saved_epoch_and_the_resume(
        monkeypatch, capsys, tmp_path, torchrun_rank, rank):
    """Before: the gloo RuntimeError's traceback, no word of what the run folder keeps."""
    out = tmp_path / "run"
    save_training_files(out / "checkpoint", "model", torch.nn.Linear(1, 1), epoch=1)
    torchrun_rank(rank)
    _training_raising(monkeypatch, RuntimeError(GLOO_RESET))
    handler = signal.getsignal(signal.SIGTERM)
    assert cli.main(["train", "darcy", "--output_dir", str(out)]) == 1
    assert signal.getsignal(signal.SIGTERM) == handler  # main gives back the handler it replaced
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    prefix = "" if rank == 0 else "[rank 1] "  # the rank that stopped may be rank 0: a survivor says it
    assert line.startswith(f"{prefix}neuralop-mp train: error: the data-parallel ranks could not communicate "
                           "(Read error [127.0.0.1]:19376: Connection reset by peer): another rank's process "
                           "stopped"), line
    assert line.endswith(f"{out / 'checkpoint'} holds epoch 1, the last saved. Continue with: torchrun --standalone "
                         f"--nproc_per_node 2 -m neuralop_mp.cli train --resume {out}"), line
    assert "Traceback" not in captured.err and not captured.out


def test_a_peer_rank_gone_before_any_save_says_there_is_nothing_to_resume(monkeypatch, capsys, tmp_path,
                                                                          torchrun_rank):
    torchrun_rank(0)
    _training_raising(monkeypatch, torch.distributed.DistBackendError("NCCL communicator was aborted on rank 1"))
    assert cli.main(["train", "darcy", "--output_dir", str(tmp_path / "run")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "(NCCL communicator was aborted on rank 1)" in line and "nothing to resume" in line, line


@pytest.mark.parametrize("message, torchrun", [
    ("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x8)", True),  # a model's bug: its traceback
    (GLOO_RESET, False),  # one process: no rank to have stopped
])
def test_other_runtime_errors_keep_their_traceback(monkeypatch, tmp_path, torchrun_rank, message, torchrun):
    if torchrun:
        torchrun_rank(0)
    else:
        for key in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(key, raising=False)
    _training_raising(monkeypatch, RuntimeError(message))
    with pytest.raises(RuntimeError, match=r"mat1 and mat2|Connection reset"):
        cli.main(["train", "darcy", "--output_dir", str(tmp_path / "run")])


def _sleep_until_terminated(seconds):
    raise Terminated  # torchrun's SIGTERM, sent as rank 0 exits with the same error


def test_a_usage_error_is_not_said_by_another_rank_that_torchrun_stops_in_its_wait(monkeypatch, capsys,
                                                                                    torchrun_rank):
    """Before: rank 1's wait ended in torchrun's SIGTERM, and main said "neuralop-mp: terminated (SIGTERM)"
    (or, where rank 0 was slower than the wait, rank 1 repeated rank 0's error)."""
    torchrun_rank(1)
    monkeypatch.setattr("time.sleep", _sleep_until_terminated)
    assert cli.main(["train", "darcy", "--data.n_train", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_another_rank_waits_longer_for_a_slow_rank_0_than_for_a_stop(monkeypatch, capsys, torchrun_rank):
    """A rank's own error (rank 0 went on) is still said once its wait runs out, prefixed; the wait is the
    longer one of errors (rank 0 may meet the same error seconds later), not the second of a stop."""
    torchrun_rank(1)
    waited = []
    monkeypatch.setattr("time.sleep", waited.append)
    assert cli.main(["train", "darcy", "--data.n_train", "0"]) == 2
    assert capsys.readouterr().err == "[rank 1] neuralop-mp train: error: Invalid data.n_train=0; it must be > 0.\n"
    assert waited == [cli._RANK_ERROR_WAIT_S] and cli._RANK_ERROR_WAIT_S > cli._QUIET_RANK_EXIT_DELAY_S


def test_a_stop_another_rank_waits_out_ends_quietly_when_torchrun_stops_it(monkeypatch, capsys, tmp_path,
                                                                          torchrun_rank):
    from neuralop_mp.training.guarded_step import TrainingStopped

    torchrun_rank(1)
    _training_raising(monkeypatch, TrainingStopped("Training stopped: 2 consecutive optimizer steps were skipped"))
    monkeypatch.setattr("time.sleep", _sleep_until_terminated)
    assert cli.main(["train", "darcy", "--output_dir", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == ""  # was: "neuralop-mp: terminated (SIGTERM)"


def _result(world_size, device="cpu"):
    return {"metrics": {"16_l2": 0.5, "16_h1": 0.7}, "train_resolution": 16, "test_resolutions": [16],
            "seconds_per_epoch": 1.0, "skipped_steps": 0, "wall_time_s": 2.0, "world_size": world_size,
            "device": device, "config": {"data": {"batch_size": 4}},
            "precision": {"phases": [], "final_mode": "full", "half_dtype": "auto (bfloat16)", "schedule": "full"},
            "memory": {"n_params": 10, "n_real_params": 10, "params_bytes": 40, "optimizer_state_bytes": 80,
                       "saved_bytes": 1024, "step_peak_bytes": 2048, "cuda_peak_bytes": None}}


def test_the_summary_of_a_run_on_several_ranks_says_it_was_data_parallel_with_its_batches():
    rows = dict(summary_rows(_result(2)))
    assert rows["data parallel"] == "2 ranks (gloo), batch 4 per rank, 8 global (each step averages the ranks' " \
                                    "gradients)"
    assert rows["saved activations / step (per rank)"] == "1.00 KiB" and "optimizer state (per rank)" in rows
    assert dict(summary_rows(_result(4, "cuda:0")))["data parallel"].startswith("4 ranks (nccl), batch 4 per rank, "
                                                                                "16 global")
    one = dict(summary_rows(_result(1)))
    assert "data parallel" not in one and "saved activations / step" in one and "optimizer state" in one
