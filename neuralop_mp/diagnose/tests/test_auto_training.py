"""``model.fno_block_precision="auto"`` in a config: decided before training, reported, applied."""
import json
import re

from neuralop_mp.cli import main


def test_train_with_auto_precision_reports_and_applies_the_decision(tmp_path, capsys):
    args = ["train", "darcy", "--model.fno_block_precision", "auto", "--model.hidden_channels", "8",
            "--model.n_layers", "2", "--opt.n_epochs", "1", "--data.n_train", "16", "--data.batch_size", "8",
            "--data.n_tests", "[8, 8]", "--data.test_batch_sizes", "[8, 8]", "--output_dir", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "precision (auto decision)" in printed
    result = json.loads((tmp_path / "results.json").read_text())
    decision = result["precision"]["auto_decision"]
    assert decision["fno_block_precision"] in ("full", "mixed")
    assert result["precision"]["final_mode"] == decision["fno_block_precision"]
    assert len(decision["per_layer"]) == 2
    # the row names the layer with the least headroom (bound / error), with its own error and bound
    if decision["fno_block_precision"] == "mixed":
        _, i, layer = min((layer["bound"] / layer["precision_error"], i, layer)
                          for i, layer in enumerate(decision["per_layer"]))
        value = f"mixed (layer {i}: precision error {layer['precision_error']:.1e} <= bound {layer['bound']:.1e})"
    else:  # why it is full: test_decision_report.py
        value = "full ("
    assert re.search(rf"\| precision \(auto decision\)\s+\| {re.escape(value)}", printed), printed
    # `neuralop-mp eval` evaluates in the decided mode ("auto" is no mode to run in)
    assert main(["eval", str(tmp_path), "--res", "16"]) == 0
    evaluated = capsys.readouterr().out
    assert re.search(rf"\| precision\s+\| {decision['fno_block_precision']}\b", evaluated)
    assert f"{result['metrics']['16_l2']:.4f}" in evaluated  # the same model, the same precision


def test_auto_with_a_schedule_is_rechecked_at_each_phase_start_and_reported(tmp_path, capsys):
    args = ["train", "darcy", "--model.fno_block_precision", "auto", "--opt.precision_schedule", "mixed@1,full",
            "--model.hidden_channels", "8", "--model.n_layers", "2", "--opt.n_epochs", "2", "--data.n_train", "16",
            "--data.batch_size", "8", "--data.n_tests", "[8, 8]", "--data.test_batch_sizes", "[8, 8]",
            "--output_dir", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    precision = result["precision"]
    assert precision["auto_decision"] is None  # not decided up front: the phases are
    (check,) = precision["auto_rechecks"]  # the "full" phase is not measured
    assert (check["epoch"], check["phase_mode"]) == (0, "mixed") and len(check["per_layer"]) == 2
    runs = [(h["epoch"], h["precision"], h["auto_precision"]["mode"]) for h in result["history"]]
    assert runs == [(0, check["fno_block_precision"], check["fno_block_precision"]), (1, "full", "full")]
    assert f"phase mixed runs {check['fno_block_precision']}" in printed and "precision (auto, epoch 0)" in printed
