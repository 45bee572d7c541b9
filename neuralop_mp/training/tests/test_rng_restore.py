"""The RNG states a checkpoint records are restored onto the devices and ranks this run has
(CUDA faked: the functions the restore calls are recorded, no GPU needed)."""
import pytest
import torch

from neuralop_mp.training import distributed
from neuralop_mp.training.resume import restore_rng_states


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with ``count`` CUDA devices whose ``set_rng_state`` calls are recorded."""
    calls = []

    def install(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": calls.append((state, device)))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.extend(
            (s, i) for i, s in enumerate(states)))
        return calls

    return install


def _state(cuda_devices=0, ranks=1):
    cpu = torch.get_rng_state()
    state = {"rng_state": cpu}
    if cuda_devices:
        state["cuda_rng_state"] = [torch.full((4,), i, dtype=torch.uint8) for i in range(cuda_devices)]
    if ranks > 1:
        state["rng_states_by_rank"] = [cpu.clone() for _ in range(ranks)]
        state["cuda_rng_states_by_rank"] = [torch.full((4,), 10 + r, dtype=torch.uint8) for r in range(ranks)]
    return state


def test_a_run_saved_with_more_gpus_restores_the_ones_this_machine_has(fake_cuda):
    calls = fake_cuda(count=1)
    restore_rng_states(_state(cuda_devices=8))  # torch's set_rng_state_all would index devices 1-7
    assert [(int(s[0]), d) for s, d in calls] == [(0, 0)]


def test_a_run_saved_with_fewer_gpus_restores_those(fake_cuda):
    calls = fake_cuda(count=4)
    restore_rng_states(_state(cuda_devices=2))
    assert [(int(s[0]), d) for s, d in calls] == [(0, 0), (1, 1)]


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_continues_its_own_device_stream(fake_cuda, monkeypatch, rank):
    calls = fake_cuda(count=2)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    restore_rng_states(_state(cuda_devices=2, ranks=2))
    assert [int(s[0]) for s, _ in calls] == [10 + rank]  # its own device's state, not rank 0's view


def test_another_number_of_ranks_restarts_every_device_from_the_saved_states(fake_cuda, monkeypatch):
    calls = fake_cuda(count=2)
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    restore_rng_states(_state(cuda_devices=2, ranks=2))
    assert [(int(s[0]), d) for s, d in calls] == [(0, 0), (1, 1)]


def test_the_cpu_stream_is_restored_without_cuda():
    state = _state()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    state["rng_state"] = torch.get_rng_state()
    torch.rand(5)  # move the stream on
    restore_rng_states(state)
    assert torch.equal(torch.rand(3), expected)
