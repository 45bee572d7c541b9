"""A usage error of every argparse command is one line, as train's and eval's are: argparse
printed its usage block (3 to 9 lines) before the line that says what is wrong."""
import pytest

from neuralop_mp import cli


@pytest.mark.parametrize("argv, line", [
    (["data", "darcy", "--res", "0"],
     "neuralop-mp data: error: argument --res: invalid value '0'; allowed values: positive integers"),
    (["diagnose", "darcy", "--n-bands", "x"],
     "neuralop-mp diagnose: error: argument --n-bands: invalid int value: 'x'"),
    (["bench", "spectral", "--rounds", "x"],
     "neuralop-mp bench spectral: error: argument --rounds: invalid value 'x'; allowed values: positive integers"),
    (["bench", "optimizer", "--setups", "x"],
     "neuralop-mp bench optimizer: error: argument --setups: invalid int value: 'x'"),
])
def test_a_usage_error_is_one_line(argv, line, capsys):
    try:  # data returns argparse's status, the others exit with it
        status = cli.main(argv)
    except SystemExit as ended:
        status = ended.code
    assert status == 2
    assert capsys.readouterr().err == line + "\n"
