"""``neuralop-mp eval`` of a model whose test errors are inf/NaN: its ``--json`` is strict JSON (the
strings "inf" and "nan", as results.json writes them), its table prints nan (not n/a, which reads as
not evaluated), and one warning line says why and what to try, as the trainer's own does. Small real
runs on four random 8x8 samples (a second each)."""
import json
from types import SimpleNamespace

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
    return written.read_text(), capsys.readouterr().out


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
    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(model=model, _half_dtypes=lambda: [torch.float16],
                              _phase_text=lambda: "fno_block_precision='mixed' (float16)",
                              _overflow_tips=lambda: ["enable the tanh stabilizer", "lower the learning rate"])
    text = non_finite_metrics_text(trainer, ["16_l2", "16_h1"])
    assert text == ("test metrics 16_l2, 16_h1 are inf/NaN although the weights are finite: computing in float16 "
                    "(fno_block_precision='mixed' (float16)), the model probably overflows on a test sample. Try: "
                    "enable the tanh stabilizer; lower the learning rate; or evaluate in full precision "
                    "(--precision full).")
