"""A finished run resumed trains nothing, so it keeps its files: an override given with the resume
(the spectral weights' storage, say) neither rounds the saved model nor stands in ``results.json``
or ``command.json`` for epochs it never trained. A run stopped after its last checkpoint, before
its final save, is finished by the resume: its results then report the last forward's kernels and
tiles as the uninterrupted run's do. (A resume with more epochs trains and records: its own tests.)"""
import json
import shutil

from neuralop_mp import cli

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
KEPT = ("model_state_dict.pt", "model_metadata.pkl", "results.json", "command.json", "loss_curve.png")


def _finished_run(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "2", "--threads", "1",
                     "--model.fno_block_precision", "mixed", "--model.half_dtype", "bfloat16",
                     "--opt.optimizer", "tensorgrad", *TINY_ARGS]) == 0  # whose weights may change storage
    capsys.readouterr()
    return out


def test_a_finished_run_resumed_with_another_weight_storage_keeps_its_model_results_and_command(
        monkeypatch, tmp_path, capsys):
    out = _finished_run(monkeypatch, tmp_path, capsys)
    before = {name: (out / name).read_bytes() for name in KEPT}
    assert cli.main(["train", "--resume", str(out), "--model.spectral_weight_dtype", "complex32"]) == 0
    said = capsys.readouterr().out
    assert "already finished all 2 epochs; nothing to train" in said
    assert "keeps its final model, results.json and command.json as they are" in said
    changed = [name for name in KEPT if (out / name).read_bytes() != before[name]]
    assert changed == []  # was: the model rounded to complex32, which results.json and command.json recorded
    # the summary printed is the run's own, not the override's
    assert "complex32" not in said.split("nothing to train", 1)[1]
    # a later eval builds the run as it trained
    assert "complex32" not in json.dumps(json.loads((out / "command.json").read_text()))


def test_a_run_stopped_before_its_final_save_is_finished_with_the_reports_of_its_last_forward(
        monkeypatch, tmp_path, capsys):
    out = _finished_run(monkeypatch, tmp_path, capsys)
    reference = json.loads((out / "results.json").read_text())
    assert reference["precision"]["product_paths"] and "last forward" in reference["pointwise_work"]
    stopped = tmp_path / "stopped"  # as a kill after the last checkpoint leaves it: no final model, no results
    shutil.copytree(out, stopped)
    for name in ("results.json", "model_state_dict.pt", "model_metadata.pkl", "loss_curve.png"):
        (stopped / name).unlink()
    assert cli.main(["train", "--resume", str(stopped)]) == 0
    assert "keeps its final model" not in capsys.readouterr().out
    finished = json.loads((stopped / "results.json").read_text())
    assert (stopped / "model_state_dict.pt").is_file()
    assert finished["metrics"] == reference["metrics"]
    # was: [] and "no forward yet", although the uninterrupted run reports them
    assert finished["precision"]["product_paths"] == reference["precision"]["product_paths"]
    assert finished["pointwise_work"] == reference["pointwise_work"]
