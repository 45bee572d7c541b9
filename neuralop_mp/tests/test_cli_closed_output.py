"""A command whose output's reader closes early (``neuralop-mp train --help | head -1``) ends quietly:
no BrokenPipeError traceback, the exit status of a SIGPIPE stop (141) or 0 where the reader took
everything. Real processes, real pipes (about ten seconds each: the CLI's imports)."""
import os
import shlex
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "neuralop_mp.cli"]


@pytest.mark.parametrize("command", [["train", "--help"], ["--help"]], ids=["train", "usage"])
def test_output_whose_reader_is_gone_ends_quietly_with_sigpipes_status(command):
    """Both raised BrokenPipeError out of console_main: a traceback, exit 1 (train's through train_command's
    error handler, the usage's from _dispatch's print)."""
    read, write = os.pipe()
    os.close(read)  # the reader closed before the command writes: every write meets it
    try:
        done = subprocess.run(CLI + command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141


def test_help_piped_to_head_prints_its_first_line_without_a_traceback():
    pipeline = f"{shlex.join(CLI + ['train', '--help'])} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert done.stdout == "usage: neuralop-mp train [CONFIG] [--key value ...]\n"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode in (0, 141)
