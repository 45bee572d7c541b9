"""Repository-wide pytest setup: never write into the user's home or the working directory; the test-tier
rule checked (:mod:`neuralop_mp.tests.tier_check`: a default-tier test that starts the package in an
interpreter of its own fails)."""
import gc
import os
import signal

import pytest
import torch

pytest_plugins = ["neuralop_mp.tests.tier_check"]

# A shell without job control starts a background command (`bash .ci/run &`) with SIGINT ignored,
# and Python keeps it ignored: the Ctrl-C tests (in-process, and the processes they start, which
# inherit it) would then see no Ctrl-C at all. The suite runs with SIGINT's own handling.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session):
    """Take what collection made (torch, neuraloperator, every test module and item, alive for
    the whole session) out of the garbage collector's sweeps.

    A full collection walks every tracked object: the GPU campaign's ``gc.collect()`` before each
    row took 0.19 s a call in a session of its test file alone (cProfile, 29 calls of one dry run),
    and test_bench_cli.py (its allocator case left out) ran in 52 s with this instead of 74 s.
    Objects made after this point are collected as before.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_root(tmp_path_factory):
    # Generated datasets go to a per-session temporary folder unless the caller chose one; under
    # pytest-xdist, a chosen one gets a subfolder per worker: two workers generating one file
    # with different settings would otherwise meet in the same folder.
    if "NEURALOP_MP_DATA" not in os.environ:
        os.environ["NEURALOP_MP_DATA"] = str(tmp_path_factory.mktemp("neuralop_mp_data"))
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["NEURALOP_MP_DATA"] = os.path.join(os.environ["NEURALOP_MP_DATA"], os.environ["PYTEST_XDIST_WORKER"])
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


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test function starts from torch's seed 0: a test's random inputs are its own, not
    what the tests before it (another order, another xdist worker) left torch's generator at. A
    test that seeds itself is unaffected. Fixtures of a wider scope (module, session) run before
    it: one drawing random numbers seeds itself."""
    torch.manual_seed(0)
    yield


class _FakeGlibc:
    """Takes mallopt calls without changing malloc: in-process tests see the allocator code run
    as on glibc while the test session's own malloc stays as it is."""

    calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture(autouse=True)
def _cpu_allocator_untouched(monkeypatch):
    """`train` and `bench spectral` keep freed memory by default, for the whole process; the tests
    call them in-process, so the setting is faked there (tests/test_cpu_allocator.py checks the
    real one in fresh interpreters)."""
    from neuralop_mp import cpu_allocator

    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: _FakeGlibc())
    monkeypatch.setattr(cpu_allocator, "_state", {"mode": "system", "detail": "malloc as the system configures it"})
    yield
