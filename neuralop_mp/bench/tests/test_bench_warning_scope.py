"""``bench schedule`` and ``bench scope`` hide upstream's unused-keys warning only, and only while they run.

They once ignored every UserWarning for the rest of the process: the plugin's own warnings
(TensorGRaD's "compresses no weight") were hidden from runs whose numbers go to the docs, and the
filter outlived ``main``."""
import warnings

import pytest

from neuralop_mp.bench import autocast_scope, schedule

PLUGIN = "opt.optimizer='tensorgrad' compresses no weight and keeps plain AdamW moments for all of them"
UPSTREAM = "FNO.forward() received unexpected keyword arguments: ['y']"
ARGS = {schedule: ["--quick", "--runs", "full", "--n-train", "16", "--threads", "1"],
        autocast_scope: ["--quick", "--runs", "full", "--n-train", "16", "--n-test", "8", "--threads", "1"]}


@pytest.mark.parametrize("bench", [schedule, autocast_scope], ids=["schedule", "scope"])
def test_only_upstreams_unused_keys_warning_is_hidden_and_only_during_the_run(bench, tmp_path, monkeypatch, recwarn):
    real = bench.train_once

    def warning_train_once(*args, **kwargs):
        warnings.warn(PLUGIN, UserWarning)
        warnings.warn(UPSTREAM, UserWarning)
        return real(*args, **kwargs)

    argv = ARGS[bench] + ["--out", str(tmp_path)]
    # a first run imports what the run imports lazily (sympy, on first use, adds a filter of its own)
    with warnings.catch_warnings():
        assert bench.main(argv) == 0
    monkeypatch.setattr(bench, "train_once", warning_train_once)
    recwarn.clear()
    before = list(warnings.filters)
    assert bench.main(argv) == 0
    assert warnings.filters == before  # nothing left behind for the rest of the process
    shown = [str(w.message) for w in recwarn]
    assert PLUGIN in shown, shown  # the plugin's own warning reaches the user
    assert UPSTREAM not in shown, shown


def test_bench_auto_shows_the_plugins_warnings_of_its_runs(tmp_path, monkeypatch, recwarn):
    """bench auto ignored every UserWarning of its training runs (scoped, but the plugin's own
    hidden from runs whose numbers go to the docs): upstream's unused-keys warning and the short
    --quick schedule's skipped phases only, now."""
    from neuralop_mp import train_pipeline
    from neuralop_mp.bench import auto_precision

    from neuralop_mp.training.schedule import PrecisionSchedule

    real = train_pipeline.run_training
    short = PrecisionSchedule.parse("half:0.25,mixed:0.5,full:0.25")
    with warnings.catch_warnings(record=True) as caught:  # the schedule's own words for phases a run skips
        warnings.simplefilter("always")
        short.check_fits(2)
    (skipped,) = [str(w.message) for w in caught]

    def warning_run_training(*args, **kwargs):
        for text in (PLUGIN, UPSTREAM):
            warnings.warn(text, UserWarning)
        short.check_fits(2)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_pipeline, "run_training", warning_run_training)
    before = list(warnings.filters)
    argv = ["--quick", "--datasets", "darcy", "--recipes", "full", "--threads", "1", "--out", str(tmp_path)]
    assert auto_precision.main(argv) == 0
    assert warnings.filters == before
    shown = [str(w.message) for w in recwarn]
    assert PLUGIN in shown and UPSTREAM not in shown and skipped not in shown, shown
