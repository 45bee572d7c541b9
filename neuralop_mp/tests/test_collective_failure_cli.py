"""``neuralop-mp train`` under torchrun's environment, in process (the training replaced): the SIGTERM
handler around the one line of a peer rank gone, and the backend the summary names.

Before: the line set SIGTERM to ignored for good, so ``train_command`` called from Python (not
through ``main``, which restores its own) left the calling process deaf to SIGTERM.
"""
import signal

import pytest

from neuralop_mp import cli, train_pipeline
from neuralop_mp.train_report import data_parallel_text

GLOO_CLOSED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
               "[127.0.0.1]:58510. This is typically caused by a remote worker crashing. Check the logs of the "
               "remote worker before reporting an error. GLHF!")


@pytest.fixture
def peer_gone(monkeypatch):
    """Rank 1 of 2 under torchrun, whose training meets rank 0's process gone."""
    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)

    def run_training(*args, **kwargs):
        raise RuntimeError(GLOO_CLOSED)

    monkeypatch.setattr(train_pipeline, "run_training", run_training)


@pytest.fixture
def own_sigterm_handler():
    """A SIGTERM handler of the caller's own, put back after the test whatever it left."""
    def handler(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_train_command_called_from_python_gives_back_the_callers_sigterm_handler(peer_gone, own_sigterm_handler,
                                                                                 capsys, tmp_path):
    assert cli.train_command(["darcy", "--output_dir", str(tmp_path / "run")]) == 1
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler  # was SIG_IGN, for good
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("[rank 1] neuralop-mp train: error: the data-parallel ranks could not communicate "
                           "(Connection closed by peer [127.0.0.1]:58510): another rank's process stopped"), line


def test_under_main_sigterm_stays_ignored_after_the_line_until_main_gives_back_its_handler(
        peer_gone, own_sigterm_handler, monkeypatch, tmp_path):
    """torchrun's SIGTERM, sent as it sees the stopped rank, must not add a "terminated" line once the
    command is over: ignored from the line to main's return, then the handler before main is back."""
    during = []
    say = cli._collective_failure_exit

    def saying(*args, **kwargs):
        code = say(*args, **kwargs)
        during.append(signal.getsignal(signal.SIGTERM))
        return code

    monkeypatch.setattr(cli, "_collective_failure_exit", saying)
    assert cli.main(["train", "darcy", "--output_dir", str(tmp_path / "run")]) == 1
    assert during == [signal.SIG_IGN]
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler


def test_the_summary_names_the_backend_by_the_device_the_run_joined_with():
    """One rule (distributed.backend_for): a "backend" key in a result, which no run writes, is not read."""
    result = {"world_size": 2, "device": "cpu", "backend": "nccl", "config": {"data": {"batch_size": 4}}}
    assert data_parallel_text(result).startswith("2 ranks (gloo), batch 4 per rank")
    assert data_parallel_text({**result, "device": "cuda:1"}).startswith("2 ranks (nccl)")
