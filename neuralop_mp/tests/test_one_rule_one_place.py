"""One rule, one place: a run's final model is checked current once per evaluation or load, a value
given twice is refused in one format, a class is named by one rule, and ``eval --data CLASS`` of a
run keeps the run's dataset. Small real runs on four random 8x8 samples (a second each)."""
from types import SimpleNamespace

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp import run_folder
from neuralop_mp.evaluate import ConfigSource, eval_config, evaluate_with_config, run_evaluation

from .test_eval_and_best import TINY_ARGS, train_tiny_run


@pytest.fixture
def tiny_run(monkeypatch, tmp_path, capsys):
    """A finished run folder of `neuralop-mp train` (darcy, one epoch)."""
    return train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)


def _count_checks(monkeypatch):
    """The run folders whose final model is checked current, one entry a check."""
    checked, real = [], run_folder.check_final_model_current
    monkeypatch.setattr(run_folder, "check_final_model_current",
                        lambda run_dir: checked.append(run_dir) or real(run_dir))
    return checked


@pytest.mark.parametrize("caller", ["cli", "run_evaluation", "evaluate_with_config",
                                    "load_model_and_precision"])
@pytest.mark.parametrize("named", ["folder", "file"])
def test_a_runs_final_model_is_checked_current_once(tiny_run, monkeypatch, capsys, caller, named):
    """`eval` checked it three times (its own find, evaluate_with_config's, load_model_and_precision's), run_evaluation
    three, evaluate_with_config two."""
    path = tiny_run if named == "folder" else tiny_run / "model_state_dict.pt"
    checked = _count_checks(monkeypatch)
    quiet = {"log": lambda *args: None}
    if caller == "cli":
        assert cli.main(["eval", str(path), "--threads", "1"]) == 0
    elif caller == "run_evaluation":
        run_evaluation(path, **quiet)
    elif caller == "evaluate_with_config":
        source = ConfigSource("darcy", list(TINY_ARGS), True)
        evaluate_with_config(path, source, eval_config(source), **quiet)
    else:
        run_folder.load_model_and_precision(path)
    assert checked == [tiny_run]


def test_a_found_checkpoint_is_used_as_found(tiny_run, monkeypatch):
    found = run_folder.find_checkpoint(tiny_run)
    assert found == (tiny_run, "model") and found.folder == tiny_run
    checked = _count_checks(monkeypatch)
    assert run_folder.find_checkpoint(found) is found
    run_folder.load_model_and_precision(found)
    assert checked == []


@pytest.mark.parametrize("given, shown", [
    ("NavierStokesDatasetConfig", "NavierStokesDatasetConfig"), ("burgersdatasetconfig", "BurgersDatasetConfig"),
    ("DataConfig", "DataConfig"),
])
def test_eval_of_a_run_refuses_another_data_section_class(tiny_run, capsys, given, shown):
    """`eval RUN --data NavierStokesDatasetConfig` of a Darcy run evaluated its model on Navier-Stokes data
    (generating them in the run's data root), exit 0; `--data BurgersDatasetConfig` was refused as
    `--data.encode_input None (the run's: False); ...`."""
    assert cli.main(["eval", str(tiny_run), "--threads", "1", "--data", given]) == 2
    err = capsys.readouterr().err
    assert err == (f"neuralop-mp eval: error: --data {shown} (the run's: DarcyDatasetConfig): eval of a run keeps "
                   "the data its model was trained on and their encoding; drop the override, or give --config "
                   "CONFIG to evaluate with another config's data.\n")


def test_eval_data_class_the_runs_own_or_of_another_config_is_taken():
    run = ConfigSource("darcy", ["--data.n_train", "4"], True)
    assert type(eval_config(run, ["--data", "darcydatasetconfig"]).data).__name__ == "DarcyDatasetConfig"
    other = ConfigSource("darcy", [], False)  # --config darcy: the user's choice of data
    assert type(eval_config(other, ["--data", "NavierStokesDatasetConfig"]).data).__name__ == \
        "NavierStokesDatasetConfig"


def test_a_resolution_given_twice_is_refused_in_one_format():
    source = ConfigSource("darcy", [], False)
    tail = ": 16 given more than once; allowed values: each resolution once."
    with pytest.raises(ValueError) as res:
        eval_config(source, [], ["16", "32", "16"])
    with pytest.raises(ValueError) as config:
        eval_config(source, ["--data.test_resolutions", "[16,32,16]", "--data.n_tests", "[2,2,2]",
                             "--data.test_batch_sizes", "[2,2,2]"])
    assert str(res.value) == "Invalid --res 16 32 16" + tail
    assert str(config.value) == "Invalid data.test_resolutions=[16, 32, 16]" + tail


def _upstream_adamw():
    from neuralop.training import AdamW

    return AdamW


@pytest.mark.parametrize("cls, name", [
    (torch.optim.SGD, "torch.optim.SGD"), (torch.optim.SparseAdam, "torch.optim.SparseAdam"),
    (torch.optim.Adafactor, "torch.optim.Adafactor"), (_upstream_adamw(), "neuralop.training.AdamW"),
    ("tensorgrad", "neuralop_mp.optim.TensorGRaD"),
])
def test_a_checkpoint_message_and_the_run_summary_name_a_class_alike(cls, name):
    """`neuralop-mp run`'s summary said torch.optim.sparse_adam.SparseAdam where a checkpoint's message said
    torch.optim.SparseAdam, and a checkpoint's neuralop_mp.optim.tensorgrad.TensorGRaD where the summary said
    neuralop_mp.optim.TensorGRaD: two rules for one name."""
    from neuralop_mp.optim import TensorGRaD
    from neuralop_mp.runner.summary import _optimizer_lines
    from neuralop_mp.training.checkpointing import class_text

    cls = TensorGRaD if cls == "tensorgrad" else cls
    upstream = "upstream " if cls is _upstream_adamw() else ""
    assert class_text(cls) == upstream + name
    recorded = f"{cls.__module__}.{cls.__qualname__}"  # as the run's report records it
    report = SimpleNamespace(optimizers=[], options={}, trainers=[{"optimizers": [recorded]}])
    assert _optimizer_lines(report)[-1] == (f"optimizer: the script's own ({upstream}neuralop.training.AdamW is kept: "
                                            "no option asked for the plugin's optimizer)" if upstream
                                            else f"optimizer: the script's own {name}")


@pytest.mark.parametrize("named", ["folder", "folder/NAME"])
def test_diagnose_checks_a_runs_final_model_current_once(tiny_run, monkeypatch, capsys, tmp_path, named):
    """diagnose found the checkpoint twice (and checked it again in load_model_and_precision): three checks."""
    target = tiny_run if named == "folder" else tiny_run / "model"
    checked = _count_checks(monkeypatch)
    assert cli.main(["diagnose", str(target), "--n-samples", "1", "--resolution", "8", "--n-bands", "2",
                     "--out", str(tmp_path / "diag")]) == 0, capsys.readouterr().err
    assert checked == [tiny_run]
