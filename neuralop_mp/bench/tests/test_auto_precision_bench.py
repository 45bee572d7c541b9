"""``neuralop-mp bench auto --quick``: every recipe on both datasets, errors at two resolutions,
times, and the precision each layer chose under "auto", in one run; docs/ left alone."""
import json
import math

import pytest

from neuralop_mp import cli
from neuralop_mp.bench.auto_precision import QUICK_DATASETS, RECIPES, SIZES
from neuralop_mp.bench.report import DEFAULT_DOC


@pytest.mark.filterwarnings("ignore::UserWarning")
# trains every recipe on both datasets (seconds): the end-to-end tier
@pytest.mark.slow
def test_quick_run_compares_every_recipe_on_both_datasets(tmp_path):
    docs_before = DEFAULT_DOC.read_bytes()
    assert cli.main(["bench", "auto", "--quick", "--out", str(tmp_path)]) == 0
    assert DEFAULT_DOC.read_bytes() == docs_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.json", "auto.md"]
    data = json.loads((tmp_path / "auto.json").read_text())
    rows = data["rows"]
    assert {(r["dataset"], r["recipe"]) for r in rows} == {(d, r) for d in QUICK_DATASETS for r in RECIPES}
    for row in rows:
        assert row["test_resolutions"] == [row["train_resolution"], 2 * row["train_resolution"]]
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("l2", "l2_2x", "seconds_per_epoch"))
        phases = row["phases"]
        n_layers = SIZES["quick"]["model.n_layers"]
        if row["recipe"] == "paper":  # 2 epochs: the paper schedule's half phase rounds to nothing
            assert phases == "mixed+autocast x1, full x1" and "auto_checks" not in row
        elif row["recipe"] == "auto":  # decided once, before training
            (check,) = row["auto_checks"]
            assert check["when"] == "before training" and check["mode"] in ("full", "mixed")
            assert phases.startswith(check["mode"])
        elif row["recipe"] == "paper+auto":  # re-decided at the start of the mixed phase; full is not measured
            (check,) = row["auto_checks"]
            assert check["when"] == "epoch 0, mixed phase" and check["mode"] in ("full", "mixed")
            assert phases.split(" x1")[0].split("+")[0] == check["mode"] and phases.endswith("full x1")
        for check in row.get("auto_checks", []):
            assert [layer["name"] for layer in check["layers"]] == [f"fno_blocks.convs.{i}" for i in range(n_layers)]
            for layer in check["layers"]:  # a half mode only where the rule's bound was met
                assert layer["mode"] == "full" or layer["precision_error"] <= layer["bound"]
    text = (tmp_path / "auto.md").read_text()
    assert text.startswith("## ") and "auto (decided: " in text and "epoch 0, mixed phase" in text and "fno_blocks.convs.1" in text


def test_the_decision_table_writes_a_layer_that_stays_full_with_its_reason():
    """A layer kept in full precision records no accepted precision error (None, with a reason):
    the table's number format raised a TypeError on it."""
    from neuralop_mp.bench.auto_precision import decision_rows

    layers = [{"name": "fno_blocks.convs.0", "mode": "full", "half_dtype": None, "precision_error": None,
               "bound": 1.0e-2, "reason": "float16 overflow margin 3.2 < 16"},
              {"name": "fno_blocks.convs.1", "mode": "mixed", "half_dtype": "bfloat16", "precision_error": 2.5e-3,
               "bound": None, "reason": None}]
    row = {"dataset": "darcy", "recipe": "auto", "seed": 0,
           "auto_checks": [{"when": "before training", "mode": "full", "layers": layers}]}
    full, mixed = decision_rows([row])
    assert (full["precision error"], full["bound (0.5 x discretization)"], full["why full"]) == (
        "-", "1.00e-02", "float16 overflow margin 3.2 < 16")
    assert (mixed["precision error"], mixed["bound (0.5 x discretization)"], mixed["why full"]) == ("2.50e-03", "-", "")
