"""``neuralop-mp eval`` of a model whose test errors are inf/NaN: its ``--json`` is strict JSON (the
strings "inf" and "nan", as results.json writes them), its table prints nan (not n/a, which reads as
not evaluated), and one warning line says why and what to try, as the trainer's own does. Small real
runs on four random 8x8 samples (a second each)."""
import json

import torch

from neuralop_mp import cli
from neuralop_mp.evaluate import non_finite_metrics_text

from .test_eval_and_best import train_tiny_run
from .test_report_table import cells

WARNING = "[neuralop-mp] WARNING: "


def _strict(text):
    """``text`` parsed as JSON, refusing the Infinity and NaN that only Python's parser takes."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _with_projection_scaled(run, factor):
    """Multiplies the last projection weight of ``run``'s model file by ``factor``."""
    path = run / "model_state_dict.pt"
    state = torch.load(path, weights_only=False)
    key = [k for k in state if k.startswith("projection.") and k.endswith(".weight")][-1]
    state[key] = state[key] * factor
    torch.save(state, path)
    return key


def _eval(run, tmp_path, capsys):
    written = tmp_path / "eval.json"
    assert cli.main(["eval", str(run), "--json", str(written), "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert WARNING not in captured.out  # a warning is no result: on stderr, as train's
    return written.read_text(), captured.out + captured.err


def test_eval_of_an_overflowing_model_writes_strict_json_prints_the_same_and_warns_once(monkeypatch, tmp_path, capsys):
    run = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)
    text, out = _eval(run, tmp_path, capsys)
    assert all(isinstance(v, float) for v in _strict(text)["metrics"].values()) and WARNING not in out
    _with_projection_scaled(run, 1e38)
    text, out = _eval(run, tmp_path, capsys)
    metrics = _strict(text)["metrics"]
    assert set(metrics) == {"8_l2", "8_h1"} and set(metrics.values()) <= {"inf", "nan"}, metrics
    rows = dict(cells(out[out.index("eval: "):]))  # the table's values: nan where a NaN, never n/a
    assert [rows["test rel. L2 @ 8 (train)"], rows["test H1 @ 8 (train)"]] == [metrics["8_l2"], metrics["8_h1"]]
    warnings = [line for line in out.splitlines() if line.startswith(WARNING)]
    assert warnings == [f"{WARNING}test metrics 8_l2, 8_h1 are inf/NaN although the weights are finite: the "
                        "model's outputs overflow float32, or a test sample (input or target) is not finite. The "
                        "built-in loaders refuse non-finite files (neuralop_mp.data.file_checks); check your test "
                        "data."], out


def test_eval_of_a_model_with_nan_weights_names_them(monkeypatch, tmp_path, capsys):
    run = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)
    key = _with_projection_scaled(run, float("nan"))
    _, out = _eval(run, tmp_path, capsys)
    warnings = [line for line in out.splitlines() if line.startswith(WARNING)]
    assert len(warnings) == 1 and f"the model's weights ['{key}'] hold inf/NaN" in warnings[0], out


def test_a_float16_evaluation_gives_the_trainers_overflow_advice_and_full_precision():
    """On the plugin's own trainer (its model's layers in float16 "mixed"), the advice of its
    evaluation warning, with eval's --precision full."""
    from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTrainer

    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                              fno_block_precision="mixed", half_dtype="float16")
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, device="cpu", verbose=False)
    text = non_finite_metrics_text(trainer, ["16_l2", "16_h1"])
    assert text == ("test metrics 16_l2, 16_h1 are inf/NaN although the weights are finite: "
                    + trainer.non_finite_metrics_cause("it", "--precision full"))
    assert text.startswith("test metrics 16_l2, 16_h1 are inf/NaN although the weights are finite: computing in "
                           "float16 (fno_block_precision='mixed' (float16)")
    assert "Try: " in text and text.endswith("; or evaluate it in full precision (--precision full).")
