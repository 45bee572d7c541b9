"""Shared fixtures of the end-to-end tests: one small Darcy dataset per test session."""
import pytest
import torch

# Sizes shared by the integration tests: 16x16 training grid, 32x32 for the 2x test.
DARCY_N_TRAIN = 500
DARCY_N_TEST = 100


@pytest.fixture(scope="session")
def darcy_root(tmp_path_factory):
    """A folder with darcy_{train,test}_{16,32}.pt generated offline (seeded)."""
    from neuralop_mp.data.darcy import generate_darcy

    root = tmp_path_factory.mktemp("darcy")
    generate_darcy(root, resolutions=(16, 32), n_train=DARCY_N_TRAIN, n_test=DARCY_N_TEST, seed=0, progress=False)
    return root


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
