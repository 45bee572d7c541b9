"""`neuralop-mp train` ends a stop of the trainer's own (a float16 overflow) without a traceback:
the stop's message, then what is saved and how to go on, exit code 1. Real runs on four 8x8
samples scaled to 1e9 (they overflow float16 in the spectral product), a second each."""
import pytest

from neuralop_mp import cli

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
FLOAT16 = ["--model.fno_block_precision", "mixed", "--model.half_dtype", "float16"]


def _stop_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, last = err.strip().splitlines()[-2:]
    assert first.startswith("neuralop-mp train: Every training loss of epoch")
    assert "in float16 the model likely overflows" in first and "--model.half_dtype bfloat16" in first
    return last


def test_an_overflow_before_any_save_says_to_run_again_with_a_change(tmp_path, monkeypatch, capsys):
    # the same settings overflow the same way: "run the command again" alone would be wrong advice
    out = tmp_path / "run"
    _four_random_samples_as_data(monkeypatch, scale=1e9)
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "2", "--threads", "1",
                     *TINY_ARGS, *FLOAT16]) == 1
    assert _stop_lines(capsys) == (f"neuralop-mp train: stopped before any epoch was saved in {out}: nothing to "
                                   "resume; run the command again with one of the changes above.")


def test_an_overflow_after_a_saved_epoch_names_it_and_the_resume_command(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _four_random_samples_as_data(monkeypatch)
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     *TINY_ARGS, *FLOAT16]) == 0
    capsys.readouterr()
    _four_random_samples_as_data(monkeypatch, scale=1e9)  # the resumed epoch overflows
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 1
    assert _stop_lines(capsys) == (
        f"neuralop-mp train: stopped; {out / 'checkpoint'} holds epoch 0, the last saved. Continue with one of "
        f"the changes above with: neuralop-mp train --resume {out} --opt.n_epochs 2")
