import pytest

from neuralop_mp.diagnose import cli as diagnose_cli


@pytest.fixture
def no_work(monkeypatch):
    """Loading the data is the first work of a diagnosis: it must not start."""
    def refuse(*args, **kwargs):
        raise AssertionError("the diagnosis started its work")

    monkeypatch.setattr(diagnose_cli, "fine_inputs", refuse)
