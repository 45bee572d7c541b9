""""auto" decides autocast as ``diagnose`` does: from the same measurement, by recommend's rule."""
import json
import re
import warnings

import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main
from neuralop_mp.diagnose import auto
from neuralop_mp.diagnose.measure import measure
from neuralop_mp.diagnose.recommend import recommend


def _model(half_dtype):
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                             half_dtype=half_dtype)


def _smooth_inputs():
    """A smooth periodic field on 16x16: a small discretization error, so autocast's rounding shows."""
    grid = torch.linspace(0, 1, 17)[:-1]
    return (torch.sin(2 * torch.pi * grid)[:, None] * torch.cos(2 * torch.pi * grid)[None, :]).expand(4, 1, 16, 16)


def test_the_calibration_judges_autocast_as_recommend_does_on_the_same_measurement():
    x = _smooth_inputs()
    verdicts = set()
    for half in ("bfloat16", "float16"):
        model = _model(half)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float16 on a CPU is emulated
            decision = auto.calibrate_precision(model, x, apply=False)
            rec = recommend(measure(model, x, half_dtypes=(half,), modes=("mixed",)), half_dtypes=(half,))
        assert decision["fno_block_precision"] == rec["model"]["fno_block_precision"] == "mixed"
        check = decision["autocast_check"]
        assert check["variant"] == f"mixed-{half}+autocast"
        assert check["accepted"] == rec["model"]["autocast"]
        assert check["accepted"] == (check["error"] <= check["bound"])
        verdicts.add(check["accepted"])
    assert verdicts == {True, False}  # bfloat16 autocast is refused on this model, float16 accepted


def test_a_recheck_judges_autocast_in_the_mode_the_phase_runs():
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    decision = auto.recheck_phase(_model("bfloat16"), x, "half", apply=False)
    # on a CPU "half" computes as "mixed": that measurement is the one judged
    assert decision["fno_block_precision"] == "half" and decision["autocast_check"]["variant"] == \
        "mixed-bfloat16+autocast"
    assert auto.recheck_phase(_model("bfloat16"), x, "full")["autocast_check"] is None


_ACCEPTED = {"variant": "mixed-bfloat16+autocast", "error": 1e-3, "bound": 2e-3, "accepted": True}
_REFUSED = {"variant": "mixed-bfloat16+autocast", "error": 3e-3, "bound": 2e-3, "accepted": False}


@pytest.mark.parametrize("mode, check, requested, scope, autocast, note", [
    ("mixed", _REFUSED, False, "model", False, None),                 # the run does not autocast
    ("mixed", _REFUSED, True, "spectral", True, None),                # autocast rounds nothing more
    ("mixed", _ACCEPTED, True, "model", True,
     "autocast kept: mixed-bfloat16+autocast precision error 1.0e-03 <= bound 2.0e-03"),
    ("mixed", _REFUSED, True, "model", False,
     "autocast off: mixed-bfloat16+autocast precision error 3.0e-03 > bound 2.0e-03"),
    ("mixed", _REFUSED, True, "fno_blocks", False,
     "autocast off: mixed-bfloat16+autocast precision error 3.0e-03 > bound 2.0e-03"),
    ("full", None, True, "model", False, "autocast off: the layers run full"),
    ("full", None, True, "spectral", False, "autocast off: the layers run full"),
])
def test_decide_autocast(mode, check, requested, scope, autocast, note):
    decided = auto.decide_autocast({"fno_block_precision": mode, "autocast_check": check}, requested, scope)
    assert (decided["autocast"], decided["autocast_note"]) == (autocast, note)


def test_ranks_autocast_only_where_every_rank_accepts(monkeypatch):
    from neuralop_mp.training import distributed

    gathered = []

    def gather(obj):
        gathered.append(obj)
        return [obj, ("mixed", False)]  # another rank's measurement refuses autocast

    monkeypatch.setattr(distributed, "gather_objects", gather)
    decision = {"fno_block_precision": "mixed", "autocast_check": dict(_ACCEPTED)}
    agreed = auto.agree_across_ranks(_model("bfloat16"), decision, apply=False)
    assert gathered == [("mixed", True)]
    assert agreed["per_rank"] == ["mixed", "mixed"] and agreed["autocast_check"]["accepted"] is False
    assert decision["autocast_check"]["accepted"] is True  # the rank's own record is left as it was


def test_train_auto_runs_without_autocast_where_the_calibration_refuses_it(tmp_path, capsys):
    """Autocast scope "model" (the CUDA default) on a CPU: bfloat16 autocast over the whole model is
    above the bound on this run, so the decided "mixed" runs as mixed/noautocast, and says why."""
    args = ["train", "darcy", "--model.fno_block_precision", "auto", "--model.autocast_scope", "model",
            "--model.hidden_channels", "8", "--model.n_layers", "2", "--opt.n_epochs", "1", "--data.n_train", "16",
            "--data.batch_size", "8", "--data.n_tests", "[8, 8]", "--data.test_batch_sizes", "[8, 8]",
            "--threads", "1", "--output_dir", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    precision = json.loads((tmp_path / "results.json").read_text())["precision"]
    decision = precision["auto_decision"]
    check = decision["autocast_check"]
    assert decision["fno_block_precision"] == "mixed" and check["variant"] == "mixed-bfloat16+autocast"
    assert not check["accepted"] and check["error"] > check["bound"]
    assert decision["autocast"] is False and decision["autocast_note"].startswith("autocast off: ")
    assert precision["schedule"] == "mixed/noautocast"
    assert [(p["mode"], p["autocast"]) for p in precision["phases"]] == [("mixed", False)]
    assert re.search(r"\| precision phases\s+\| mixed \[epochs 0-0\]", printed), printed
    flat = " ".join(" ".join(line.strip("| ") for line in printed.splitlines()).split())
    assert f"autocast off: mixed-bfloat16+autocast precision error {check['error']:.1e} > bound " \
           f"{check['bound']:.1e}" in flat
