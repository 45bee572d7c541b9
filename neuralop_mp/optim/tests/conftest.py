"""Optimizer unit tests work on tiny tensors: one intra-op thread avoids thread
start-up and oversubscription costs that dominate such ops on a shared 2-core box."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
