"""What :func:`~neuralop_mp.training.distributed.collective_failure` takes for a peer rank gone (the
CLI's one line, "another rank's process stopped ... --resume"), and what it leaves to its traceback;
the padding warning's counts; the backend init_from_env picks.

Before: any message naming ``ProcessGroupGloo`` or ``ProcessGroupNCCL`` counted, so torch's refusal of
a collective's arguments (a caller's shape bug) became "another rank's process stopped", and every
``DistError`` did, a process group that could not be set up (a wrong MASTER_ADDR) included.
"""
import datetime
import os
import time
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.training import distributed

from .test_distributed import _START_METHOD, _free_port, _worker
from .test_distributed_mends import _run_ranks

# real texts, as torch 2.13 raised them on 2 gloo ranks (the path is torch's build folder)
GLOO_CLOSED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
               "[127.0.0.1]:58510. This is typically caused by a remote worker crashing. Check the logs of the "
               "remote worker before reporting an error. GLHF!")
GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:19376: "
              "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the "
              "application. Check the logs of the remote worker before reporting an error. GLHF!")
GLOO_SIZE = "ProcessGroupGloo::allgather: invalid tensor size at index 0 (expected (3), got (2))"


@pytest.fixture
def torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")


@pytest.mark.parametrize("error", [
    RuntimeError(GLOO_CLOSED),
    RuntimeError(GLOO_RESET),  # DDP's reducer in backward, a peer SIGKILLed
    dist.DistBackendError("NCCL communicator was aborted on rank 1. Original reason for failure was: ..."),
    dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network "
                          "error, NCCL version 2.21.5"),
    dist.DistBackendError("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, "
                          "OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600012 milliseconds "
                          "before timing out."),
])
def test_a_peer_gone_is_a_collective_failure(torchrun, error):
    assert distributed.collective_failure(error)


@pytest.mark.parametrize("error", [
    RuntimeError(GLOO_SIZE),  # was True: a caller's shape bug said as "another rank's process stopped"
    RuntimeError("ProcessGroupGloo::allreduce: tensors must be on the same device"),
    # gloo meets a peer gone as a closed connection at once: its timeout is a peer alive elsewhere
    RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out "
                 "waiting 1800000ms for recv operation to complete"),
    dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1970, invalid usage (run with NCCL_DEBUG=WARN "
                          "for details), NCCL version 2.21.5"),  # was True (any DistError)
    # setting the group up, which no stopped rank caused (was True: any DistError)
    dist.DistNetworkError("The client socket has timed out after 1000ms while trying to connect to (10.0.0.9, 29500)."),
    dist.DistStoreError("Timed out after 901 seconds waiting for clients. 1/2 clients joined."),
    dist.DistNetworkError("Connection reset by peer"),  # the store's connection: also no collective
    ValueError(GLOO_CLOSED),  # not torch's
])
def test_other_errors_are_no_collective_failure(torchrun, error):
    assert not distributed.collective_failure(error)


def test_a_peer_gone_outside_torchrun_is_no_collective_failure(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.collective_failure(RuntimeError(GLOO_CLOSED))


def test_a_process_group_that_cannot_be_reached_is_no_collective_failure(torchrun):
    """A real setup failure: a store client's connection to a port no one listens on."""
    with pytest.raises(RuntimeError) as caught:
        dist.TCPStore("127.0.0.1", _free_port(), is_master=False, timeout=datetime.timedelta(seconds=0.3))
    assert isinstance(caught.value, dist.DistError)  # was True: every DistError counted
    assert not distributed.collective_failure(caught.value)


def _judge(error):
    return dict(failure=distributed.collective_failure(error), text=str(error),
                said=distributed.collective_failure_text(error))


def _peer_exits_mid_collective(world_size, rank):
    """Rank 1's process exits while rank 0 waits in an all-reduce rank 1 never joins."""
    os.environ["WORLD_SIZE"] = str(world_size)  # as torchrun sets it (a forked rank's own environment)
    distributed.barrier()  # both ranks connected
    if rank == 1:
        time.sleep(0.3)  # rank 0 is in its all-reduce by then
        os._exit(0)
    try:
        distributed.sum_over_ranks([1.0])
    except RuntimeError as error:
        return _judge(error)
    return dict(failure=None, text="the all-reduce returned")


def _run_surviving(tmp_path, job):
    """``job`` on 2 forked gloo ranks of which some exit on their own: the results of those that returned."""
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(out), {}, job), nprocs=2, join=True,
                       start_method=_START_METHOD)
    return {r: torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2) if (out / f"rank{r}.pt").exists()}


def test_a_rank_that_exits_mid_collective_is_a_collective_failure_on_the_survivor(tmp_path):
    results = _run_surviving(tmp_path, _peer_exits_mid_collective)
    assert list(results) == [0]
    survivor = results[0]
    assert survivor["failure"] is True, survivor["text"]
    assert "Connection closed by peer" in survivor["said"] or "Connection reset by peer" in survivor["said"]


def _gather_of_other_sizes(world_size, rank):
    """Rank 0 gives all_gather a tensor of 3 for outputs of 2 (a caller's bug): torch refuses it on
    rank 0, which then leaves the group (as its process would exit); rank 1 waits for rank 0."""
    os.environ["WORLD_SIZE"] = str(world_size)
    gathered = [torch.ones(2) for _ in range(world_size)]
    try:
        dist.all_gather(gathered, torch.ones(3 if rank == 0 else 2))
    except RuntimeError as error:
        return _judge(error)
    return dict(failure=None, text="the all_gather returned")


def test_a_gather_of_tensors_of_another_size_keeps_its_traceback_where_torch_refuses_it(tmp_path):
    r0, r1 = _run_ranks(tmp_path, _gather_of_other_sizes)
    assert r0["text"].startswith("ProcessGroupGloo::allgather: invalid tensor size"), r0["text"]
    assert r0["failure"] is False  # was True
    # the rank left waiting met rank 0 gone: that one is a peer gone
    assert r1["failure"] is True, r1["text"]


@pytest.mark.parametrize("n_samples, n_ranks", [(33, 2), (10, 4), (3, 8), (2, 4), (1, 4), (6, 4)])
def test_the_padding_warning_says_how_often_the_sampler_shows_each_sample(n_samples, n_ranks):
    """Counted from the DistributedSampler's own indices over every rank. Before: "5 of the 3 training
    samples are seen twice" for 3 samples on 8 ranks, where each is seen 2 or 3 times."""
    dataset = list(range(n_samples))
    seen = Counter(i for r in range(n_ranks)
                   for i in torch.utils.data.DistributedSampler(dataset, num_replicas=n_ranks, rank=r, seed=5))
    assert sorted(seen) == dataset  # every sample at least once
    message = distributed.padding_warning(n_samples, n_ranks)
    times = sorted(set(seen.values()))
    total = sum(seen.values())
    if max(times) == 2 and n_samples > 1:
        twice = sum(1 for c in seen.values() if c == 2)
        assert message.startswith(f"{twice} of the {n_samples} training samples are seen twice in every epoch: "), message
    elif n_samples == 1:
        assert message.startswith(f"the one training sample is repeated in every epoch (seen {total} times)"), message
    else:
        assert min(times) >= 2, times
        seen_text = f"{times[0]} times" if len(times) == 1 else f"{times[0]} or {times[1]} times"
        assert message.startswith(f"all {n_samples} training samples are repeated in every epoch (each seen "
                                  f"{seen_text}): "), message
    assert f"pads the {n_samples} samples to {total} ({total // n_ranks} per rank on {n_ranks} ranks)" in message


def test_no_padding_no_warning():
    assert distributed.padding_warning(32, 4) is None


def test_init_from_env_picks_its_backend_by_backend_for(monkeypatch):
    """One rule for the backend: init_from_env(None) asks backend_for of its default device, the rule
    `neuralop-mp train` joins by and its summary names the backend by (was: a rule of its own)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked, joined = [], []
    real_backend_for = distributed.backend_for
    monkeypatch.setattr(distributed, "backend_for", lambda device: asked.append(device) or real_backend_for(device))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(backend))
    assert distributed.init_from_env() == torch.device("cpu")
    assert asked == [torch.device("cpu")] and joined == ["gloo"]

