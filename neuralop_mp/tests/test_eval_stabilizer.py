"""``neuralop-mp eval`` runs and reports the stabilizer the model ran with: a full-precision run
with ``--model.stabilizer tanh`` (upstream's FNO, tanh in its blocks) and a schedule's last
phase's ``/tanh`` under ``--precision`` of that phase's mode."""
import json

import torch
from neuralop.models import FNO

from neuralop_mp import cli
from neuralop_mp.evaluate import run_evaluation
from neuralop_mp.run_folder import load_model_and_precision

from .test_eval_and_best import train_tiny
from .test_report_table import cells
from .test_train_pipeline import _four_random_samples_as_data
from .test_warning_lines import shown_by_python


def _evaluated(path, precision=None, **kwargs):
    return run_evaluation(path, precision=precision, log=lambda *args: None, **kwargs)


def test_a_full_precision_tanh_run_is_evaluated_and_reported_with_tanh(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    run = tmp_path / "run"
    train_tiny(run, "--model.stabilizer", "tanh")  # no fno_block_precision: upstream's FNO, tanh in its blocks
    trained = capsys.readouterr().out
    assert "full+tanh [epochs 0-0]" in trained  # train's summary: the phase as it ran, and no half type
    assert ("precision (final)", "full") in cells(trained)
    results = json.loads((run / "results.json").read_text())
    assert [(p["mode"], p["stabilizer"]) for p in results["precision"]["phases"]] == [("full", "tanh")]
    for given in (None, "full"):  # tanh runs: the errors train reported, bit for bit
        evaluated = _evaluated(run, given)
        assert evaluated["metrics"] == results["metrics"], given
        assert (evaluated["precision"]["mode"], evaluated["precision"]["stabilizer"]) == ("full", "tanh"), given
    model, precision = load_model_and_precision(run)  # the record eval reads
    assert type(model).__name__ == "FNO" and model.fno_blocks.stabilizer == "tanh"
    assert (precision["mode"], precision["half_dtype"], precision["stabilizer"]) == ("full", None, "tanh")
    assert cli.main(["eval", str(run)]) == 0
    assert ("precision", "full+tanh") in cells(capsys.readouterr().out)  # eval's row: no half type either


def test_an_upstream_model_saved_elsewhere_with_tanh_is_evaluated_with_it(monkeypatch, tmp_path):
    _four_random_samples_as_data(monkeypatch)
    data = ["--data.test_resolutions", "[8]", "--data.n_tests", "[4]", "--data.test_batch_sizes", "[4]",
            "--data.train_resolution", "8", "--data.batch_size", "4", "--data.n_train", "4"]
    torch.manual_seed(0)
    FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
        stabilizer="tanh").save_checkpoint(tmp_path / "tanh", "model")
    evaluated = _evaluated(tmp_path / "tanh", overrides=data)
    assert (evaluated["precision"]["mode"], evaluated["precision"]["stabilizer"]) == ("full", "tanh")
    # --precision full is the precision it runs in: evaluated as it runs, tanh kept, the same errors
    in_full = _evaluated(tmp_path / "tanh", "full", overrides=data)
    assert in_full["precision"]["stabilizer"] == "tanh" and in_full["metrics"] == evaluated["metrics"]
    # the same weights recorded without tanh: other errors (the blocks' tanh ran above)
    (tmp_path / "none").mkdir()
    for suffix in ("_state_dict.pt", "_metadata.pkl"):
        (tmp_path / "none" / f"model{suffix}").write_bytes((tmp_path / "tanh" / f"model{suffix}").read_bytes())
    metadata = torch.load(tmp_path / "none" / "model_metadata.pkl", weights_only=False)
    torch.save({**metadata, "stabilizer": None}, tmp_path / "none" / "model_metadata.pkl")
    plain = _evaluated(tmp_path / "none", overrides=data)
    assert plain["precision"]["stabilizer"] is None and plain["metrics"] != evaluated["metrics"]


def test_precision_of_the_last_phases_mode_keeps_that_phases_stabilizer(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    run = tmp_path / "run"
    train_tiny(run, "--model.fno_block_precision", "half", "--model.half_dtype", "bfloat16",
           "--opt.precision_schedule", "half:0.5,mixed:0.5/tanh", epochs=2)
    results = json.loads((run / "results.json").read_text())
    assert [(p["mode"], p["stabilizer"]) for p in results["precision"]["phases"]] == [("half", None),
                                                                                       ("mixed", "tanh")]
    plain = _evaluated(run)
    assert plain["metrics"] == results["metrics"] and plain["precision"]["stabilizer"] == "tanh"
    # the mode the model ran in: as it ran, bit for bit
    mixed = _evaluated(run, "mixed")
    assert mixed["precision"] == plain["precision"] and mixed["metrics"] == plain["metrics"]
    # another mode: that mode's defaults (the /tanh was the mixed phase's own)
    assert [_evaluated(run, p)["precision"]["stabilizer"] for p in ("half", "full")] == [None, None]
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--precision", "mixed"]) == 0
    assert "mixed+autocast+tanh (half_dtype bfloat16)" in capsys.readouterr().out


def test_precision_of_the_best_epochs_mode_keeps_its_phases_stabilizer(monkeypatch, tmp_path):
    _four_random_samples_as_data(monkeypatch)
    run = tmp_path / "run"
    # a large step makes the second epoch worse: the best model is the first phase's (half/tanh)
    train_tiny(run, "--save_best", "--opt.learning_rate", "5.0", "--model.fno_block_precision", "half",
           "--model.half_dtype", "bfloat16", "--opt.precision_schedule", "half:0.5/tanh,mixed:0.5", epochs=2)
    results = json.loads((run / "results.json").read_text())
    assert results["best"]["epoch"] == 0, results["best"]
    first = {key: results["history"][0][key] for key in ("8_l2", "8_h1")}
    best = run / "best_model_state_dict.pt"
    for given in (None, "half"):  # the mode of its epoch: as that epoch ran, bit for bit
        evaluated = _evaluated(best, given)
        assert (evaluated["precision"]["mode"], evaluated["precision"]["stabilizer"]) == ("half", "tanh"), given
        assert evaluated["metrics"] == first, given
    assert _evaluated(best, "mixed")["precision"]["stabilizer"] is None  # another mode: its defaults


def test_eval_of_a_run_whose_schedule_skipped_a_phase_warns_of_nothing(monkeypatch, tmp_path, recwarn, capsys):
    """A schedule with a phase that got no epoch (paper's "half:0.25" in 2 epochs) is warned of by
    train (one warning line); eval, which builds the run's trainer again to evaluate in its last
    phase, trained nothing and repeated it (a SkippedPhaseWarning now, which eval leaves out)."""
    _four_random_samples_as_data(monkeypatch)
    run = tmp_path / "run"
    with shown_by_python():  # as a terminal shows it, pytest's recording set aside
        train_tiny(run, "--model.half_dtype", "bfloat16", "--opt.precision_schedule", "paper", epochs=2)
    assert any(line.startswith("[neuralop-mp] WARNING: ") and "get no epoch" in line
               for line in capsys.readouterr().err.splitlines())
    recwarn.clear()
    assert cli.main(["eval", str(run)]) == 0
    assert [str(w.message) for w in recwarn if "get no epoch" in str(w.message)] == []
    assert "get no epoch" not in capsys.readouterr().err
