"""A recompute mode is read in any case (``--model.recompute Fourier``), as it was before the one
spelling rule: a run folder's command.json records the overrides as typed, so a run started with
``Fourier`` must still evaluate and resume; scripts and checkpoints hold the mode as written too."""
import json

import pytest

from neuralop_mp import cli
from neuralop_mp.configs import load_config
from neuralop_mp.run_folder import COMMAND_FILE
from neuralop_mp.vocabulary import normalize_recompute

from .test_eval_and_best import TINY_ARGS
from .test_train_pipeline import _four_random_samples_as_data


@pytest.mark.parametrize("value, mode", [("Fourier", "fourier"), ("BLOCK", "block"), ("None", "none"),
                                         ("fourier", "fourier")])
def test_a_recompute_mode_in_any_case_is_its_lowercase_spelling(value, mode):
    assert normalize_recompute(value) == mode
    load_config("darcy", ["--model.recompute", value])  # accepted by the config's validation too


def test_a_misspelled_recompute_mode_is_still_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError) as refused:
        normalize_recompute("Spectral", key="model.recompute")
    assert str(refused.value) == "Invalid model.recompute='Spectral'; allowed values: 'none', 'fourier', 'block'."


def test_a_run_started_with_recompute_fourier_evaluates_and_resumes(monkeypatch, capsys, tmp_path):
    """command.json keeps ``--model.recompute Fourier`` as typed: eval and train --resume read it again."""
    _four_random_samples_as_data(monkeypatch)
    run = tmp_path / "run"
    assert cli.main(["train", "darcy", "--model.recompute", "Fourier", "--output_dir", str(run),
                     "--opt.n_epochs", "1", "--threads", "1", *TINY_ARGS]) == 0, capsys.readouterr().err
    recorded = json.loads((run / COMMAND_FILE).read_text())
    assert "Fourier" in json.dumps(recorded)  # the spelling as typed, which the next commands read again
    capsys.readouterr()
    assert cli.main(["eval", str(run)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--opt.n_epochs", "2", "--threads", "1"]) == 0, \
        capsys.readouterr().err
