"""Repository-wide pytest setup: never write into the user's home or the working directory."""
import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_root(tmp_path_factory):
    # Generated datasets go to a per-session temporary folder unless the caller chose one.
    if "NEURALOP_MP_DATA" not in os.environ:
        os.environ["NEURALOP_MP_DATA"] = str(tmp_path_factory.mktemp("neuralop_mp_data"))
    yield


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs on tiny tensors: one intra-op thread.

    A second thread gains nothing at these sizes, and when the 2-core runner is busy
    the two OpenMP threads spin-wait on each other (tiny FFTs and training steps were
    measured 10-1000x slower that way).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

