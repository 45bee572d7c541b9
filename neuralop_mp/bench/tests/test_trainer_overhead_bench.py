"""``neuralop-mp bench trainer``: ours and upstream's Trainer train the same steps side by side."""
import json

import pytest

from neuralop_mp import cli
from neuralop_mp.bench import report, trainer_overhead
from neuralop_mp.bench.cli import BENCHMARKS, usage


def test_quick_run_times_both_trainers_over_the_same_steps_and_leaves_the_docs(tmp_path, capsys):
    docs = report.DEFAULT_DOC.read_bytes()
    assert cli.main(["bench", "trainer", "--quick", "--out", str(tmp_path)]) == 0
    assert report.DEFAULT_DOC.read_bytes() == docs  # only --update-docs writes them
    data = json.loads((tmp_path / "trainer.json").read_text())
    (row,) = data["rows"]
    size = trainer_overhead.QUICK_SIZES[0]
    steps = size["batches"] * size["epochs"]
    assert row["steps"] == {"upstream": steps, "ours": steps}
    assert row["same_weights"] is True  # full precision without a schedule trains as upstream, bit for bit
    for which in trainer_overhead.TRAINERS:
        (run,) = row["runs"][which]  # --quick: one timed pair after the warm-up pair
        assert len(run["epochs_cpu_s"]) == size["epochs"] and run["cpu_s"] > 0 and run["wall_s"] > 0
    assert row["ratio_cpu_median"] > 0 and row["ratio_wall_median"] > 0
    text = (tmp_path / "trainer.md").read_text()
    assert text.startswith("## Trainer overhead") and "Command: `neuralop-mp bench trainer --quick`" in text
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header == "| " + " | ".join(trainer_overhead.COLUMNS) + " |"
    assert f"| {steps} / {steps} | yes |" in text
    assert "1 torch thread(s)" in text  # --threads defaults to 1


def test_update_docs_is_refused_beside_quick(capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["bench", "trainer", "--quick", "--update-docs"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert "--update-docs rewrites docs/benchmarks.md's whole trainer section" in err and "--quick" in err


def test_the_benchmark_is_listed():
    assert BENCHMARKS["trainer"][0] == "neuralop_mp.bench.trainer_overhead"
    assert "  trainer " in usage()
