"""Repository-wide pytest setup: never write into the user's home or the working directory."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_root(tmp_path_factory):
    # Generated datasets go to a per-session temporary folder unless the caller chose one.
    if "NEURALOP_MP_DATA" not in os.environ:
        os.environ["NEURALOP_MP_DATA"] = str(tmp_path_factory.mktemp("neuralop_mp_data"))
    yield
