"""``neuralop-mp eval`` builds its config once; a damaged checkpoint file is an error naming it, for
``train --resume`` and ``eval`` alike; the best epoch is the lowest finite one, as the best-model
file holds it. Small real runs on four random 8x8 samples (a second each)."""
import json
import math
from pathlib import Path

import pytest

from neuralop_mp import cli
from neuralop_mp import configs
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.run_folder import COMMAND_FILE
from neuralop_mp.train_pipeline import best_epoch
from neuralop_mp.train_report import best_model_text, no_best_model_reason

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]


def write_counted_config(folder):
    """``folder/counted.py``, whose config class ``Counted`` appends a line to the returned
    file each time an instance is built."""
    built = folder / "built.txt"
    (folder / "counted.py").write_text(
        "from neuralop_mp.configs import DarcyConfig\n\nclass Counted(DarcyConfig):\n"
        "    def __init__(self, *args, **kwargs):\n"
        f"        open({str(built)!r}, 'a').write('built\\n')\n"
        "        super().__init__(*args, **kwargs)\n")
    return built


@pytest.fixture
def tiny_run(monkeypatch, tmp_path, capsys):
    """A run folder of `neuralop-mp train` (one epoch), its config a file whose class notes each
    instance built; returns ``(folder, builds)`` with ``builds()`` the instances built so far."""
    built = write_counted_config(tmp_path)
    out = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1, config=f"{tmp_path}/counted.py:Counted")
    built.unlink()
    return out, lambda: built.read_text().count("built") if built.exists() else 0


def train_tiny_run(monkeypatch, capsys, out, n_epochs, config="darcy"):
    """``out``, a finished run folder of `neuralop-mp train` (``n_epochs`` epochs, one thread) on the
    four random samples."""
    _four_random_samples_as_data(monkeypatch)
    train_tiny(out, epochs=n_epochs, config=config)
    capsys.readouterr()
    return out


def train_tiny(out, *flags, epochs=1, config="darcy"):
    """`neuralop-mp train` of the tiny run (:data:`TINY_ARGS`, one thread) into ``out``, with ``flags``
    after; the data are the caller's (e.g. :func:`_four_random_samples_as_data`)."""
    assert cli.main(["train", config, "--output_dir", str(out), "--opt.n_epochs", str(epochs), "--threads", "1",
                     *TINY_ARGS, *flags]) == 0


def _count_load_config(monkeypatch):
    calls, real = [], configs.load_config
    monkeypatch.setattr(configs, "load_config", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    return calls


@pytest.mark.parametrize("res", [[], ["--res", "8", "4"]])
def test_eval_builds_its_config_once_and_evaluates_the_run_with_it(tiny_run, monkeypatch, capsys, res):
    """One load_config call and one instance of the config class for the whole `eval` (run_evaluation
    evaluates with the config the CLI built; the option check runs only on a failed build), --res included."""
    out, builds = tiny_run
    loads, data_of = _count_load_config(monkeypatch), []
    build_data = pipeline.build_data  # the four samples, whatever the config asks
    monkeypatch.setattr(pipeline, "build_data", lambda config, **kwargs: data_of.append(config.data)
                        or build_data(config, **kwargs))
    json_path = out.parent / "eval.json"
    assert cli.main(["eval", str(out), "--json", str(json_path), *res]) == 0, capsys.readouterr().err
    assert len(loads) == 1 and builds() == 1
    # the config evaluated with is the run's, with --res applied
    (data,) = data_of
    assert type(data).__name__ == "DarcyDatasetConfig" and data.n_train == 4 and data.train_resolution == 8
    assert (data.test_resolutions, data.n_tests, data.test_batch_sizes) == (([8, 4], [4, 4], [4, 4]) if res
                                                                             else ([8], [4], [4]))
    trained = json.loads((out / "results.json").read_text())
    assert json.loads(json_path.read_text())["metrics"] == trained["metrics"]  # bit for bit


def test_eval_reads_the_runs_command_json_once(tiny_run, monkeypatch, capsys):
    """One read of the run's record for a whole `eval`, through the CLI: it was read three times
    (for the option check, for the config, and for whether the config is the run's own)."""
    out, _ = tiny_run
    reads, read_text = [], Path.read_text

    def counted(self, *args, **kwargs):
        if self.name == COMMAND_FILE:
            reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    json_path = out.parent / "eval.json"
    assert cli.main(["eval", str(out), "--json", str(json_path)]) == 0, capsys.readouterr().err
    assert reads == [out / COMMAND_FILE]
    # still evaluated as the run's own config: its errors, bit for bit
    trained = json.loads((out / "results.json").read_text())
    assert json.loads(json_path.read_text())["metrics"] == trained["metrics"]


def test_a_resume_from_a_truncated_optimizer_file_is_an_error_naming_it(tiny_run, capsys):
    out, _ = tiny_run
    optimizer_file = out / "checkpoint" / "optimizer.pt"
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:100])
    command = (out / "command.json").read_text()
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 2  # no traceback: it returns
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp train: error: ") and str(optimizer_file) in err, err
    assert "Traceback" not in err
    assert (out / "command.json").read_text() == command  # nothing trained
    assert len(json.loads((out / "results.json").read_text())["history"]) == 1


@pytest.mark.parametrize("damaged", ["model_state_dict.pt", "model_metadata.pkl"])
def test_eval_of_a_truncated_model_file_is_an_error_naming_it(tiny_run, capsys, damaged):
    out, _ = tiny_run
    path = out / damaged
    path.write_bytes(path.read_bytes()[:100])
    assert cli.main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp eval: error: Cannot load the model from ") and str(path) in err, err
    other = {"model_state_dict.pt", "model_metadata.pkl"} - {damaged}
    assert str(out / other.pop()) not in err  # the intact file is not blamed


@pytest.mark.parametrize("record", ["as written", "older pair form"])
def test_a_run_with_an_override_value_starting_with_dashes_evaluates_and_resumes(monkeypatch, tmp_path, capsys,
                                                                                   record):
    """``--name=--exp`` (the documented form of a value that starts with ``--``): command.json
    reads back, so ``eval`` and ``--resume`` of the run work, also from an older record holding
    the pair ``--name --exp`` (both failed: ``Missing value for option --name``, ``Unknown option --exp``)."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     "--name=--exp", *TINY_ARGS]) == 0
    command_file = out / "command.json"
    command = json.loads(command_file.read_text())
    assert "--name=--exp" in command["overrides"]
    if record == "older pair form":
        at = command["overrides"].index("--name=--exp")
        command["overrides"][at:at + 1] = ["--name", "--exp"]
        command_file.write_text(json.dumps(command))
    capsys.readouterr()

    evaluated = tmp_path / "eval.json"
    assert cli.main(["eval", str(out), "--json", str(evaluated)]) == 0, capsys.readouterr().err
    trained = json.loads((out / "results.json").read_text())
    assert json.loads(evaluated.read_text())["metrics"] == trained["metrics"]  # the run's config, bit for bit

    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 0, capsys.readouterr().err
    resumed = json.loads((out / "results.json").read_text())
    assert len(resumed["history"]) == 2 and resumed["config"]["name"] == "--exp"
    assert "--name=--exp" in json.loads(command_file.read_text())["overrides"]  # recorded to read back


def _history(*values):
    return [{"epoch": epoch, "8_l2": value} for epoch, value in enumerate(values)]


@pytest.mark.parametrize("values, epoch", [
    ((math.nan, 0.5, 0.3, 0.4), 2),  # a NaN met first is no minimum
    ((math.inf, math.nan, 0.7), 2),
    ((0.6, math.nan, 0.2, -math.inf, 0.2), 2),  # the earliest of equal values, as the trainer keeps it
])
def test_the_best_epoch_is_the_lowest_finite_value(values, epoch):
    assert best_epoch(_history(*values), "8_l2") == {"metric": "8_l2", "value": values[epoch], "epoch": epoch}


def test_no_best_epoch_without_a_finite_value():
    assert best_epoch(_history(math.nan, math.inf, math.nan), "8_l2") is None
    assert best_epoch(_history(0.5), None) is None


def _nan_at_epochs(monkeypatch, epochs):
    """The trainer's evaluation reports NaN errors at ``epochs`` (as a non-finite test sample would)."""
    from neuralop.training.trainer import Trainer

    evaluate_all = Trainer.evaluate_all

    def nan_then_real(self, epoch, *args, **kwargs):
        metrics = evaluate_all(self, epoch, *args, **kwargs)
        return {key: math.nan for key in metrics} if epoch in epochs else metrics

    monkeypatch.setattr(Trainer, "evaluate_all", nan_then_real)


def test_a_nan_first_epoch_is_not_named_best_the_best_model_file_holds_the_named_one(monkeypatch, tmp_path):
    from neuralop_mp.evaluate import run_evaluation

    _four_random_samples_as_data(monkeypatch)
    _nan_at_epochs(monkeypatch, {0})
    out, logged = tmp_path / "run", []
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "3"})
    with pytest.warns(RuntimeWarning, match="Epoch 0: evaluation metrics"):
        result = pipeline.run_training(config, progress=False, output_dir=out, log=logged.append, save_best=True)
    assert math.isnan(result["history"][0]["8_l2"])
    finite = {h["epoch"]: h["8_l2"] for h in result["history"][1:]}
    assert result["best"] == {"metric": "8_l2", "value": min(finite.values()),
                              "epoch": min(finite, key=finite.get)}
    assert "best_model" in result["files"] and not [line for line in logged if "no best model file" in line]
    # the file holds the epoch named: its evaluation (same precision, same data) is that epoch's, bit for bit
    evaluated = run_evaluation(out / "best_model_state_dict.pt", progress=False, log=lambda *a: None)
    assert evaluated["metrics"]["8_l2"] == result["best"]["value"]


def test_a_run_without_a_finite_epoch_names_none_best_and_says_so_in_the_reports_words(monkeypatch, tmp_path):
    _four_random_samples_as_data(monkeypatch)
    _nan_at_epochs(monkeypatch, {0, 1})
    out, logged = tmp_path / "run", []
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "2"})
    with pytest.warns(RuntimeWarning, match="evaluation metrics"):
        result = pipeline.run_training(config, progress=False, output_dir=out, log=logged.append, save_best=True)
    assert result["best"] is None and "best_model" not in result["files"]
    assert not (out / "best_model_state_dict.pt").exists()
    reason = "no evaluated epoch had a finite 8_l2"
    assert f"[neuralop-mp] no best model file: {reason}" in logged
    # the summary's row words it the same way (for a result that names a non-finite best)
    nan_best = {**result, "best": {"metric": "8_l2", "value": math.nan, "epoch": 0}}
    assert best_model_text(nan_best) == f"no file written (epoch 0, 8_l2 nan): {reason}"


def test_the_reason_for_a_best_epoch_before_save_best_is_worded_once():
    """run_training's log names the epoch; the summary row, which names it before, does not."""
    best = {"metric": "8_l2", "value": 0.125, "epoch": 3}
    result = {"best": best, "files": {}, "output_dir": "runs/x"}
    assert no_best_model_reason("8_l2", best, name_epoch=True) == (
        "the best epoch (3, 8_l2 0.125) came before --save_best was given, and no later epoch beat it")
    assert best_model_text(result) == (
        "no file written (epoch 3, 8_l2 0.125): " + no_best_model_reason("8_l2", best))
    assert no_best_model_reason("8_l2", best) == (
        "the best epoch came before --save_best was given, and no later epoch beat it")


@pytest.mark.parametrize("content", ["{not json", '{"config": "darcy"}', "[1, 2]"])
def test_a_damaged_command_record_is_an_error_naming_it(tmp_path, capsys, content):
    """eval and --resume of a folder whose command.json is not the record train writes: exit 2
    with the file named, no traceback (a KeyError or TypeError traceback before)."""
    (tmp_path / "command.json").write_text(content)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{tmp_path / 'command.json'} is not a run record") == 2 and "Traceback" not in err, err
