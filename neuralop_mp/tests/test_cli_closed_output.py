"""A command whose output's reader closes early (``neuralop-mp train --help | head -1``) stops at the
print that meets it: no BrokenPipeError traceback, the exit status of a SIGPIPE stop (141) or 0 where
the reader took everything, and one line on stderr saying it stopped (nothing, and 0, for a help text) (``train``: what its run folder
keeps and how to continue). What a command was asked to write (``run``'s ``--mp.report``, ``eval``'s
``--json``, ``diagnose``'s results) is written before its summary, so a closed output cannot lose it.
Real processes, real pipes (a few seconds each: the CLI's imports)."""
import json
import os
import shlex
import subprocess
import sys

import pytest

from neuralop_mp.cli import main

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

CLI = [sys.executable, "-m", "neuralop_mp.cli"]
CLOSED = "its output was closed (the program reading it exited)"
# every print written at once, as under `python -u`: the print that meets the closed reader fails there
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TINY_RUN = ["--data.n_train", "8", "--data.batch_size", "8", "--data.train_resolution", "8",
            "--data.test_resolutions", "[8, 16]", "--data.n_tests", "[4, 4]", "--data.test_batch_sizes", "[4, 4]",
            "--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes", "[4, 4]", "--threads", "1"]

# `neuralop-mp ARGS` with its output's reader closed just before MODULE.NAME is called (the summary's
# formatter: the command's work is done, its summary is left to print)
CLOSE_BEFORE = """
import importlib, os, sys
module, name, *args = sys.argv[1:]
module = importlib.import_module(module)
real = getattr(module, name)
def closing(*a, **k):
    sys.stdout.flush()
    read, write = os.pipe()
    os.close(read)
    os.dup2(write, sys.stdout.fileno())
    os.close(write)
    return real(*a, **k)
setattr(module, name, closing)
sys.argv = ["neuralop-mp", *args]
from neuralop_mp.cli import console_main
sys.exit(console_main())
"""


def _closed_from_the_start(command, env=None):
    read, write = os.pipe()
    os.close(read)  # the reader closed before the command writes: every write meets it
    try:
        return subprocess.run(CLI + command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    finally:
        os.close(write)


def _closed_before(module, name, command):
    return subprocess.run([sys.executable, "-c", CLOSE_BEFORE, module, name, *command], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300, env=UNBUFFERED)


def test_output_whose_reader_is_gone_stops_with_sigpipes_status_and_says_so():
    """The usage printed for a missing command raised BrokenPipeError out of console_main: a traceback,
    exit 1; then exit 141 without a word."""
    done = _closed_from_the_start([])
    assert done.stderr == f"neuralop-mp: {CLOSED}: stopped there, and what it had left to print is lost.\n"
    assert done.returncode == 141


@pytest.mark.parametrize("command", [["--help"], ["help"], ["train", "--help"], ["train", "darcy", "-h"],
                                     ["eval", "--help"], ["run", "--help"], ["bench", "--help"],
                                     ["bench", "spectral", "--help"]], ids=" ".join)
def test_a_help_read_in_part_is_quiet_and_exits_0(command):
    """A help cut short is no lost work: it said "what it had left to print is lost" with 141 (train, eval,
    run, bench and the usage), where argparse's help of data and diagnose said nothing and exited 0."""
    done = _closed_from_the_start(command)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("command", ["data", "diagnose"])
def test_argparses_help_drops_the_write_and_exits_0(command):
    """What console_main's docstring says of the two argparse commands: argparse drops a failed write."""
    done = _closed_from_the_start([command, "--help"])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_help_piped_to_head_prints_its_first_line_without_a_traceback():
    pipeline = f"{shlex.join(CLI + ['train', '--help'])} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert done.stdout == "usage: neuralop-mp train [CONFIG] [--key value ...]\n"
    assert (done.returncode, done.stderr) == (0, "")


def test_train_stopped_at_its_first_print_names_its_folder(tmp_path):
    """It stopped at its first print (the thread count) with 141 and nothing said."""
    run = tmp_path / "run"
    done = _closed_from_the_start(["train", "darcy", *TINY_RUN, "--output_dir", str(run)], env=UNBUFFERED)
    assert done.returncode == 141
    assert done.stderr == (f"neuralop-mp train: {CLOSED}: stopped before any epoch was saved in {run}: nothing to "
                           "resume; run the command again.\n")


def test_a_resume_stopped_by_its_closed_output_says_how_to_continue(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "darcy", *TINY_RUN, "--opt.n_epochs", "1", "--output_dir", str(run)]) == 0
    capsys.readouterr()
    done = _closed_from_the_start(["train", "--resume", str(run), "--opt.n_epochs", "2"], env=UNBUFFERED)
    assert done.returncode == 141
    assert done.stderr == (f"neuralop-mp train: {CLOSED}: stopped; {run / 'checkpoint'} holds epoch 0, the last "
                           f"saved. Continue with: neuralop-mp train --resume {run} --opt.n_epochs 2\n")


def test_train_whose_summary_meets_a_closed_output_says_the_run_finished(tmp_path):
    run = tmp_path / "run"
    done = _closed_before("neuralop_mp.train_report", "format_summary",
                          ["train", "darcy", *TINY_RUN, "--opt.n_epochs", "1", "--output_dir", str(run)])
    assert done.returncode == 141, done.stderr
    assert done.stderr.splitlines()[-1] == (f"neuralop-mp train: {CLOSED} before its summary: the run finished, "
                                            f"and {run / 'results.json'} holds its results.")
    assert "Traceback" not in done.stderr
    assert json.loads((run / "results.json").read_text())["history"]


def test_run_writes_its_report_before_the_summary_meets_a_closed_output(tmp_path):
    """The report was written after the summary's print, which raised first: no report, nothing said."""
    script, report = tmp_path / "s.py", tmp_path / "r.json"
    script.write_text("print('script ran')\n")
    done = _closed_before("neuralop_mp.runner.cli", "format_summary",
                          ["run", str(script), "--mp.report", str(report)])
    assert json.loads(report.read_text())["exit_status"] == 0
    assert "script ran" in done.stdout
    assert done.returncode == 141
    assert done.stderr == f"neuralop-mp run: {CLOSED}: stopped there, and what it had left to print is lost.\n"


def test_eval_writes_its_json_before_the_summary_meets_a_closed_output(tmp_path, capsys):
    run, written = tmp_path / "run", tmp_path / "eval.json"
    assert main(["train", "darcy", *TINY_RUN, "--opt.n_epochs", "1", "--output_dir", str(run)]) == 0
    capsys.readouterr()
    done = _closed_before("neuralop_mp.train_report", "format_eval_summary",
                          ["eval", str(run), "--json", str(written)])
    assert json.loads(written.read_text())["threads"] == 1
    assert done.returncode == 141
    assert done.stderr.splitlines()[-1] == f"neuralop-mp eval: {CLOSED}: stopped there, and what it had left to " \
                                           "print is lost."


def test_diagnose_writes_its_results_before_its_table_meets_a_closed_output(tmp_path):
    out = tmp_path / "out"
    done = _closed_before("neuralop_mp.diagnose.report", "format_table",
                          ["diagnose", "darcy", "--model.hidden_channels", "4", "--model.n_layers", "1",
                           "--model.n_modes", "[4, 4]", "--data.train_resolution", "8", "--n-samples", "2",
                           "--n-bands", "2", "--out", str(out)])
    assert json.loads((out / "results.json").read_text())["recommendation"]["train_flags"]
    assert (out / "error_bands.png").is_file()
    assert done.returncode == 141
    assert done.stderr.splitlines()[-1] == f"neuralop-mp diagnose: {CLOSED}: stopped there, and what it had left " \
                                           "to print is lost."
