"""The bench commands refuse a negative seed (a seed is an integer >= 0, as `neuralop-mp data
--seed` takes it) and, like every parser of ours (vocabulary.OneLineErrorParser), an abbreviated
option, in one line and before any work."""
import pytest

from neuralop_mp import cli


def _refused(argv, capsys):
    """The one error line of ``argv``, which must exit 2 before any work."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("bench", ["schedule", "auto", "scope"])
def test_a_negative_seed_is_refused_by_name(bench, capsys):
    line = _refused(["bench", bench, "--seeds", "0", "-1"], capsys)
    assert "--seeds" in line and "'-1'" in line and "integers >= 0" in line, line


@pytest.mark.parametrize("bench, abbreviated", [("schedule", "--seed"), ("optimizer", "--quic")])
def test_an_abbreviated_option_is_refused(bench, abbreviated, capsys):
    line = _refused(["bench", bench, abbreviated, *(["1"] if abbreviated == "--seed" else [])], capsys)
    assert f"unrecognized arguments: {abbreviated}" in line, line
