"""One rule, one place (session 22): the run lock is probed by one helper (a holder without a pid is
"pid unknown" for the refusal, the probe and eval alike), eval takes its thread count by train's
resume rule, results.json's epochs are read by one reader (a history that is no list no longer
crashes results_behind), and the resume check asks the optimizer factory which class "adamw" builds,
its refusal naming the classes the factory gives, not restating the factory's rule."""
import json
import os

import pytest

from neuralop_mp import cli
from neuralop_mp import run_setup
from neuralop_mp.run_folder import (CHECKPOINT_DIR, COMMAND_FILE, LOCK_FILE, RESULTS_FILE, find_checkpoint,
                                    results_behind, run_folder_lock, run_in_progress, write_command)
from neuralop_mp.run_setup import RunSetupError, file_lock

from .test_eval_and_best import train_tiny_run
from .test_resume_boundary_mends import seen  # noqa: F401 (a fixture)


def test_a_held_run_lock_names_its_holder_alike_in_the_refusal_the_probe_and_eval(tmp_path):
    """A pin of the one probe (run_folder._lock_at_once): it replaced two of its own."""
    run = tmp_path / "run"
    (run / CHECKPOINT_DIR).mkdir(parents=True)
    (run / COMMAND_FILE).write_text("{}")
    with file_lock(run / LOCK_FILE) as (descriptor, _):  # taken, no pid written yet
        for pid, named in ((0, "pid unknown"), (4242, "pid 4242")):
            if pid:
                os.write(descriptor, f"{pid}\n".encode())
            assert run_in_progress(run) == pid
            with pytest.raises(RunSetupError, match=rf"in use by another neuralop-mp train \({named}\)"):
                with run_folder_lock(run):
                    pass
            with pytest.raises(FileNotFoundError, match=rf"a neuralop-mp train \({named}\) is still writing"):
                find_checkpoint(run)
    assert run_in_progress(run) is None


def test_eval_takes_its_thread_count_by_trains_resume_rule(monkeypatch, capsys, tmp_path):
    """eval decided "--threads, else the run's recorded count, else auto" on its own (resolve_threads)."""
    run = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)
    asked, real = [], run_setup.train_threads
    monkeypatch.setattr(run_setup, "train_threads", lambda *args, **kwargs: asked.append((args, kwargs))
                        or real(*args, **kwargs))
    assert cli.main(["eval", str(run)]) == 0
    assert cli.main(["eval", str(run), "--threads", "1"]) == 0
    # the run's recorded count (command.json), read only where --threads is not given
    assert asked == [((None, "1"), {"resume": True}), (("1", None), {"resume": True})]


def test_results_epochs_are_read_by_one_reader(tmp_path):
    """results_behind and train_pipeline.current_results read results.json's history each their own way;
    a history that was no list raised KeyError in results_behind."""
    from neuralop_mp.run_folder import recorded_epochs
    from neuralop_mp.train_pipeline import current_results

    assert recorded_epochs(None) is None and recorded_epochs({}) is None
    assert recorded_epochs({"history": {"0": {"epoch": 0}}}) is None
    assert recorded_epochs({"history": [{"epoch": 0}, "damaged", {"epoch": 2}]}) == [0, None, 2]
    # a finished run resumed keeps its results where they record the checkpoint's epochs and the model is there
    results = {"history": [{"epoch": 0}, {"epoch": 1}]}
    (tmp_path / RESULTS_FILE).write_text(json.dumps(results))
    loaded = [{"epoch": 0}, {"epoch": 1}]
    assert current_results(tmp_path, loaded) is None  # no final model file
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    assert current_results(tmp_path, loaded) == results
    assert current_results(tmp_path, loaded[:1]) is None and current_results(tmp_path, []) is None


def test_results_behind_reads_a_history_that_is_no_list_without_a_crash(tmp_path):
    """It raised KeyError: -1 (history[-1] of a dict); results_behind alone is imported: the guard's test
    must not fail on a missing import of the reader that replaced its own reading."""
    assert results_behind(tmp_path, {"history": {"0": {"epoch": 0}}}) is None


def test_the_resume_check_asks_the_factory_which_class_adamw_builds(tmp_path, monkeypatch, seen):  # noqa: F811
    """The check restated the factory's rule (complex32 weights: TensorGRaD); with the factory building
    one class for both dtypes, the dtype may change."""
    from neuralop_mp.optim import TensorGRaD
    from neuralop_mp.optim import factory

    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2"])
    monkeypatch.setattr(factory, "adamw_class", lambda sixteen_bit: TensorGRaD)
    assert cli.main(["train", "--resume", str(tmp_path), "--model.spectral_weight_dtype", "complex32"]) == 0
    assert seen["config"].model.spectral_weight_dtype == "complex32"


def test_the_refusal_of_a_dtype_that_switches_adamws_class_names_the_factorys_classes_alone(
        tmp_path, monkeypatch, capsys, seen):  # noqa: F811
    """The message restated the factory's rule ("complex32 weights get TensorGRaD without compression"),
    which would stay in it whatever classes the factory builds."""
    import torch

    from neuralop_mp.optim import factory

    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2"])
    monkeypatch.setattr(factory, "adamw_class", lambda sixteen_bit: torch.optim.SGD if sixteen_bit
                        else torch.optim.AdamW)
    assert cli.main(["train", "--resume", str(tmp_path), "--model.spectral_weight_dtype", "complex32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert ("it switches the optimizer from torch's AdamW to SGD, and the checkpoint holds the state of torch's "
            "AdamW. Resume without this override") in err, err
    assert "TensorGRaD" not in err.partition("(with opt.optimizer")[0] and "complex32 weights" not in err
    assert not seen
