"""Which folder a ``neuralop-mp train`` run writes into, and what a run refuses before any work:
a new run into a folder that holds a run, two runs claiming one default folder, a folder printed
relative to a working directory the user never saw; ``opt.update_in_backward`` with "auto" loss
scaling of a float16 run; a resume whose factorized rank changed kind (1.0 read now as 1); and a
finished run resumed, said as a line of the run's log. Small real runs on four random 8x8 samples."""
import json
import os
import warnings
from datetime import datetime

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.run_setup import RunSetupError

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]


def quiet(*args, **kwargs):
    pass


def train(*args):
    return cli.main(["train", "darcy", "--opt.n_epochs", "1", "--threads", "1", *TINY_ARGS, *args])


def folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data_loads(monkeypatch):
    """Four random samples as the pipeline's data; counts the loads."""
    _four_random_samples_as_data(monkeypatch)
    loads, load = [], pipeline.build_data

    def counted(config, progress=True):
        loads.append(config)
        return load(config, progress=progress)

    monkeypatch.setattr(pipeline, "build_data", counted)
    return loads


# ---------------------------------------------------------------- a folder that holds a run

def test_a_new_run_into_a_folder_that_holds_a_run_is_refused_before_any_work(data_loads, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--output_dir", str(out), "--save_best") == 0
    before = folder_bytes(out)
    capsys.readouterr()
    loads = len(data_loads)
    assert train("--output_dir", str(out), "--model.hidden_channels", "8") == 2
    err = capsys.readouterr().err
    assert f"Output folder {str(out)!r} already holds a run (checkpoint, results.json)" in err
    assert f"--resume {out}" in err and "another folder with --output_dir" in err
    # nothing loaded, nothing written: the first run's files, its best model included, are as they were
    assert len(data_loads) == loads
    assert folder_bytes(out) == before


@pytest.mark.parametrize("left", ["checkpoint", "checkpoint.old", "results.json"])
def test_any_file_of_a_run_marks_its_folder(data_loads, tmp_path, left):
    """A run's saved epoch (or the checkpoint.old a crashed save leaves), or a folder with its results
    only: each is a run (the Python API refuses it too)."""
    out = tmp_path / "run"
    (out / left).mkdir(parents=True) if left.startswith("checkpoint") else (out.mkdir(), (out / left).write_text("{}"))
    config = load_config("darcy", TINY_RUN)
    with pytest.raises(RunSetupError, match=f"already holds a run \\({left}\\)"):
        pipeline.run_training(config, progress=False, output_dir=out, log=quiet)
    assert not data_loads


def test_the_files_of_a_run_stopped_before_its_first_epoch_do_not_mark_its_folder(data_loads, tmp_path):
    """command.json alone (a run refused at the data load, or stopped before its first save) was a run:
    the same command was refused, and --resume too, as there was nothing to resume."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("command.json", "data_processor.pt"):
        (out / name).write_text("{}")
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
    pipeline.run_training(config, progress=False, output_dir=out, log=quiet)
    assert len(data_loads) == 1 and (out / "results.json").is_file()


def test_a_folder_without_a_run_is_trained_into(data_loads, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    assert train("--output_dir", str(out)) == 0
    assert (out / "notes.txt").read_text() == "kept" and (out / "results.json").is_file()


# ---------------------------------------------------------------- the default folder

def test_two_runs_started_in_the_same_second_get_folders_of_their_own(data_loads, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stamp, default = datetime(2026, 12, 5, 12, 0, 0), pipeline.default_output_dir
    monkeypatch.setattr(pipeline, "default_output_dir", lambda config, now=None: default(config, stamp))
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
    folders = [pipeline.run_training(config, progress=False, log=quiet)["output_dir"] for _ in range(3)]
    base = tmp_path / "runs" / "darcy-20261205-120000"
    assert folders == [str(base), f"{base}-2", f"{base}-3"]
    for folder in folders:  # each a whole run of its own
        assert json.loads((tmp_path / folder / "results.json").read_text())["output_dir"] == folder


def test_a_default_folder_is_claimed_once(tmp_path, monkeypatch):
    """Claiming creates the folder: a name already taken, by a folder or a file, is never shared."""
    monkeypatch.chdir(tmp_path)
    config, stamp = load_config("darcy"), datetime(2026, 1, 2, 3, 4, 5)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "darcy-20260102-030405-2").write_text("a file in the way")
    first = pipeline.output_dir_for(config, now=stamp)
    second = pipeline.output_dir_for(config, now=stamp)
    assert (first.name, second.name) == ("darcy-20260102-030405", "darcy-20260102-030405-3")
    assert first.is_dir() and second.is_dir()
    named = pipeline.output_dir_for(config, now=stamp, claim=False)  # a process that writes nothing
    assert named == first and not (tmp_path / "runs" / "darcy-20260102-030405-4").exists()


def test_a_run_refused_before_any_work_leaves_no_default_folder(data_loads, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--save_best", "--data.test_resolutions", "[4]", "--data.n_tests", "[4]",
                 "--data.test_batch_sizes", "[4]") == 2
    assert "--save_best" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # the runs/ folder made for it is given back too


# ---------------------------------------------------------------- a run stopped before its first epoch

def _refused_at_the_data_load(config, progress=True):
    raise FileNotFoundError("no data file x.pt")


def _normalized_data(monkeypatch):
    """The four random samples with a fitted output normalizer, so a run writes data_processor.pt."""
    from neuralop.data.transforms.data_processors import DefaultDataProcessor
    from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

    _four_random_samples_as_data(monkeypatch)
    train_loader, test_loaders, _ = pipeline.build_data(None)
    processor = DefaultDataProcessor(out_normalizer=UnitGaussianNormalizer(mean=torch.zeros(1, 1, 1),
                                                                           std=torch.ones(1, 1, 1)))
    monkeypatch.setattr(pipeline, "build_data", lambda config, progress=True: (train_loader, test_loaders, processor))


def _interrupted_after_the_data_load(monkeypatch):
    """Ctrl-C while the model is built: command.json and data_processor.pt are written by then."""
    _normalized_data(monkeypatch)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build_model", interrupted)


def test_a_data_load_refusal_leaves_the_output_folder_to_the_same_command(data_loads, tmp_path, monkeypatch,
                                                                          capsys):
    """It was refused as a run (its command.json), and --resume as having nothing to resume. A folder
    given with --output_dir is never removed, nor a file the run did not write."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    good = pipeline.build_data
    monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    assert train("--output_dir", str(out)) == 2
    assert "no data file x.pt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "kept"
    monkeypatch.setattr(pipeline, "build_data", good)
    assert train("--output_dir", str(out)) == 0, capsys.readouterr().err
    assert (out / "results.json").is_file() and (out / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize("stop", ["data refused", "ctrl-c"])
@pytest.mark.parametrize("through", ["cli", "python"])
def test_a_run_stopped_before_its_first_epoch_leaves_no_default_folder(tmp_path, monkeypatch, capsys, stop,
                                                                         through):
    """The claimed folder held command.json (CLI) or stayed empty (Python), and data_processor.pt after
    the data load."""
    monkeypatch.chdir(tmp_path)
    if stop == "ctrl-c":
        _interrupted_after_the_data_load(monkeypatch)
    else:
        monkeypatch.setattr(pipeline, "build_data", _refused_at_the_data_load)
    if through == "cli":
        assert train() == (130 if stop == "ctrl-c" else 2)
        if stop == "ctrl-c":  # true now: the folder is gone, the same command starts again
            assert capsys.readouterr().err.rstrip().endswith("nothing to resume; run the command again.")
    else:
        config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
        with pytest.raises(KeyboardInterrupt if stop == "ctrl-c" else RunSetupError):
            pipeline.run_training(config, progress=False, log=quiet)
    assert not (tmp_path / "runs").exists()  # the runs/ folder made for it is given back too


def test_a_run_interrupted_in_a_folder_it_was_given_leaves_the_folder_and_its_files(tmp_path, monkeypatch):
    """Only a folder the run claimed is given back: one given to run_training stays, with what it held."""
    _interrupted_after_the_data_load(monkeypatch)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_training(config, progress=False, output_dir=out, log=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["data_processor.pt", "notes.txt"]


def test_releasing_a_folder_removes_only_the_files_a_run_writes_before_its_first_epoch(tmp_path):
    from neuralop_mp.run_folder import release_run_folder

    stopped, other, run = tmp_path / "stopped", tmp_path / "other", tmp_path / "run"
    for folder, names in ((stopped, ["command.json", "data_processor.pt"]),
                          (other, ["command.json", "data_processor.pt", "notes.txt"]),
                          (run, ["command.json", "data_processor.pt", "results.json"])):
        folder.mkdir()
        for name in names:
            (folder / name).write_text("{}")
    assert release_run_folder(stopped) and not stopped.exists()
    assert not release_run_folder(other) and [p.name for p in other.iterdir()] == ["notes.txt"]
    assert not release_run_folder(run) and len(list(run.iterdir())) == 3  # a run: left as it is
    assert not release_run_folder(tmp_path / "missing")


# ---------------------------------------------------------------- the folder printed and recorded

@pytest.mark.parametrize("given", [None, "rel/run"], ids=["default", "relative"])
def test_the_output_folder_is_printed_and_recorded_as_an_absolute_path(data_loads, tmp_path, monkeypatch, capsys,
                                                                       given):
    monkeypatch.chdir(tmp_path)
    assert train(*(["--output_dir", given] if given else [])) == 0
    folder, = (tmp_path / "runs").iterdir() if given is None else [tmp_path / "rel" / "run"]
    results = json.loads((folder / "results.json").read_text())
    assert results["output_dir"] == str(folder) and folder.is_absolute()
    assert all(str(path).startswith(str(folder)) for path in results["files"].values())
    table = capsys.readouterr().out
    assert f"| output folder              | {folder}" in table


# ---------------------------------------------------------------- update in backward with float16

FLOAT16_UPDATE = ["--opt.update_in_backward", "true", "--model.half_dtype", "float16",
                  "--model.fno_block_precision", "mixed", "--device", "cpu"]


def test_update_in_backward_with_auto_loss_scaling_of_a_float16_run_is_refused_before_the_data_load(
        data_loads, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--output_dir", str(out), *FLOAT16_UPDATE) == 2
    err = capsys.readouterr().err
    # the rule `run` applies to its flags (optim.update_in_backward.auto_scaling_refusal), naming the config keys
    assert ("opt.update_in_backward=True cannot be combined with loss scaling: model.half_dtype='float16' with "
            "model.fno_block_precision='mixed' computes in float16") in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not data_loads and not out.exists()


@pytest.mark.parametrize("change", [
    ["--opt.loss_scaling", "none"], ["--model.half_dtype", "bfloat16"], ["--model.fno_block_precision", "full"],
    ["--opt.precision_schedule", "full"],
], ids=["no-scaling", "bfloat16", "full", "full-schedule"])
def test_update_in_backward_without_float16_scaling_is_left_to_run(change):
    """Where the trainer would not scale the loss, the check lets the run start (as the trainer does)."""
    import torch

    from neuralop_mp.configs.validation import check_update_in_backward_scaling, validated_precision_policy

    config = load_config("darcy", [*FLOAT16_UPDATE, *change])
    check_update_in_backward_scaling(config, validated_precision_policy(config), torch.device("cpu"))


# ---------------------------------------------------------------- a rank that changed kind

def test_a_resume_whose_recorded_rank_now_reads_as_another_kind_is_refused(data_loads, tmp_path, capsys):
    """A run recorded ``--model.rank 1`` when every rank was a float (a fraction): read now as the
    integer rank 1, a smaller model. Refused before the data load, with the override that resumes it."""
    out = tmp_path / "run"
    assert train("--output_dir", str(out), "--model.factorization", "tucker", "--model.rank", "1.0") == 0
    command = json.loads((out / "command.json").read_text())
    index = command["overrides"].index("--model.rank")
    assert command["overrides"][index + 1] == "1.0"
    command["overrides"][index + 1] = "1"  # as a record written before ranks kept their type
    (out / "command.json").write_text(json.dumps(command))
    capsys.readouterr()
    loads = len(data_loads)
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "saved with model.rank=1.0 (a fraction of the full rank)" in err
    assert "reads 1 (the rank itself)" in err and "Resume with --model.rank 1.0." in err
    assert len(data_loads) == loads
    # the override the message gives resumes it
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--model.rank", "1.0"]) == 0
    assert [h["epoch"] for h in json.loads((out / "results.json").read_text())["history"]] == [0, 1]


# ---------------------------------------------------------------- a finished run resumed

def test_resuming_a_finished_run_says_so_in_the_runs_log_not_as_a_python_warning(data_loads, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--output_dir", str(out)) == 0
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["train", "--resume", str(out)]) == 0
    assert not [w for w in caught if "already finished" in str(w.message)]
    printed = capsys.readouterr().out
    assert (f"[neuralop-mp] {out / 'checkpoint'} already finished all 1 epochs; nothing to train "
            "(resume with --opt.n_epochs N, N > 1, to train more)") in printed


def test_eval_of_a_run_still_training_says_so_not_to_resume_it(tmp_path):
    """eval of a folder whose run is still writing said "Finish the run with neuralop-mp train --resume",
    which the running run's lock refuses: it names the run still writing instead."""
    from neuralop_mp.run_folder import CHECKPOINT_DIR, find_checkpoint, run_folder_lock, run_in_progress

    run = tmp_path / "run"
    (run / CHECKPOINT_DIR).mkdir(parents=True)
    (run / "command.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="Finish the run with"):
        find_checkpoint(run)  # stopped before its final save
    with run_folder_lock(run):
        assert run_in_progress(run) == os.getpid()
        with pytest.raises(FileNotFoundError, match=rf"a neuralop-mp train \(pid {os.getpid()}\) is still writing"):
            find_checkpoint(run)
    assert run_in_progress(run) is None
