"""``neuralop-mp data`` takes its options written in full: argparse read ``--n-tr 4`` as
``--n-train 4`` (an abbreviation), so a typo or a shortened option ran a generation the user did
not write, and a later option sharing the prefix would break a command that worked."""
from neuralop_mp.data.cli import build_parser, main


def test_an_abbreviated_option_is_refused_and_nothing_is_written(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["darcy", "--res", "4", "--n-tr", "2", "--n-test", "1", "--root", str(root), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "neuralop-mp data: error: unrecognized arguments: --n-tr 2"]
    assert not root.exists()


def test_every_option_written_in_full_is_read():
    args = build_parser().parse_args(["burgers", "--res", "16", "--n-train", "3", "--n-test", "400", "--n-time", "5",
                                      "--solver-resolution", "65", "--t-final", "0.5"])
    assert (args.n_train, args.n_test, args.n_time, args.solver_resolution, args.t_final) == (3, 400, 5, 65, 0.5)
