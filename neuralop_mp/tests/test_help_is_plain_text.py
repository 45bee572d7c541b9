"""Every command's ``--help`` is plain text: docstrings shown as help lose their reST roles
and literals (``:func:`name```, ````value````), which a terminal shows as noise."""
import re

import pytest

from neuralop_mp import cli
from neuralop_mp.bench.cli import BENCHMARKS
from neuralop_mp.vocabulary import plain_text

COMMAND_LINES = [[command, "--help"] for command in cli.COMMANDS if command not in ("bench", "data")]
COMMAND_LINES += [["data", "darcy", "--help"], ["bench", "--help"]]
COMMAND_LINES += [["bench", name, "--help"] for name in BENCHMARKS]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_help_has_no_rest_markup(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as done:  # argparse's --help exits
        status = done.code
    out = capsys.readouterr().out
    assert status in (0, None), out
    assert "usage" in out.lower()
    # single backquotes around a command are the help's own quoting; double ones and roles are reST
    marked = [line for line in out.splitlines() if "``" in line or re.search(r":\w+:`", line)]
    assert not marked, marked


def test_plain_text_keeps_the_words_of_roles_and_literals():
    assert plain_text("Use :func:`neuralop_mp.load_model` with ``precision=\"mixed\"``.") == \
        'Use neuralop_mp.load_model with precision="mixed".'
