"""The console entry's interrupt guard, and the command that continues a torchrun run."""
import pytest

from neuralop_mp import cli
from neuralop_mp.signals import Terminated


@pytest.mark.parametrize("interrupt, status, said", [(KeyboardInterrupt, 130, "interrupted (Ctrl-C)"),
                                                      (Terminated, 143, "terminated (SIGTERM)")])
def test_an_interrupt_no_command_handles_is_one_line(monkeypatch, capsys, interrupt, status, said):
    def stopped(argv):  # e.g. while the command imports torch
        raise interrupt

    monkeypatch.setitem(cli.HANDLERS, "eval", stopped)
    try:
        code = cli.main(["eval", "x"])
    except KeyboardInterrupt:
        pytest.fail(f"{interrupt.__name__} escaped main (a traceback at the command line)")
    assert code == status
    captured = capsys.readouterr()
    assert captured.err.strip() == f"neuralop-mp: {said}" and not captured.out


def test_a_torchrun_run_is_continued_with_torchrun_on_as_many_ranks(monkeypatch, tmp_path):
    from neuralop_mp.training.checkpointing import save_training_files

    out = tmp_path / "run"
    save_training_files(out / "checkpoint", "model", __import__("torch").nn.Linear(1, 1), epoch=3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cli._interrupted_message(out).endswith(
        f"Continue with: torchrun --standalone --nproc_per_node 2 -m neuralop_mp.cli train --resume {out}")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli._interrupted_message(out).endswith(f"Continue with: neuralop-mp train --resume {out}")
    monkeypatch.setenv("WORLD_SIZE", "8")  # two nodes of 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert "torchrun --nnodes 2 --nproc_per_node 4 <your rendezvous options> -m neuralop_mp.cli train --resume" \
        in cli._interrupted_message(out)


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_the_console_script_ignores_signals_once_its_command_is_done():
    """A Ctrl-C or SIGTERM landing after a run's summary (while the interpreter shuts down) gave a
    traceback or exit -2 / -15 for a finished run: once main returned, both leave the exit status."""
    import subprocess
    import sys

    probe = ("import os, signal, sys, time\nfrom neuralop_mp import cli\nsys.argv = ['neuralop-mp', '--help']\n"
             "status = cli.console_main()\n"
             "os.kill(os.getpid(), signal.SIGTERM)\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\n"
             "sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
