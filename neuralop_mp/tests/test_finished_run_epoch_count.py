"""``train --resume`` of a finished run with a smaller ``--opt.n_epochs``: the run's log names the
epochs the checkpoint holds, and the count a resume must exceed to train more."""
from neuralop_mp import cli

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]


def test_a_finished_run_resumed_with_fewer_epochs_says_the_epochs_it_holds(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "2", "--threads", "1",
                     *TINY_ARGS]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "1"]) == 0
    said = capsys.readouterr().out
    # was: "already finished all 1 epochs; ... N > 1", which N = 2 would not have trained past
    assert (f"{out / 'checkpoint'} already finished all 2 epochs; nothing to train "
            "(resume with --opt.n_epochs N, N > 2, to train more)") in said
