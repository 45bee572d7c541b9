"""Fixtures of the training tests."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # The tests train tiny models (8x8 grids, 6 channels): intra-op threads only add
    # synchronisation, and on a busy 2-core runner spinning threads slow them 10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
