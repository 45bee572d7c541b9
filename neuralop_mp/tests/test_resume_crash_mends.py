"""A run folder stays true to itself across kills and resumes: the thread count a run used is the
one its resume uses; ``eval`` refuses a final model that a killed resume trained past; results.json
is written whole or not at all; a save folder a kill left as ``DIR.old`` still loads; a resume's
command is recorded no later than the checkpoint that was trained with it.

Real ``neuralop-mp train`` processes killed with SIGKILL (by the process itself, at the instant
under test) on four random 8x8 samples; a few seconds each."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from neuralop_mp import cli, run_setup
from neuralop_mp.run_folder import COMMAND_FILE, RESULTS_FILE, read_command, saved_epoch

from .test_eval_and_best import TINY_ARGS, train_tiny_run
from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability

DATA_ARGS = [token for key, value in TINY_RUN.items() if key.startswith("data.") for token in (f"--{key}", value)]

# `neuralop-mp` on the four random samples of _four_random_samples_as_data; with KILL_AT_SAVE=before|after, a
# --resume kills itself with SIGKILL at its first checkpoint save (before the save starts, or once its renames
# are done), or after the save of epoch KILL_EPOCH
DRIVER = textwrap.dedent('''
    import os, signal, sys
    import torch
    from torch.utils.data import DataLoader
    from neuralop_mp import train_pipeline
    from neuralop_mp.training import checkpointing

    generator = torch.Generator().manual_seed(0)
    samples = [{"x": torch.randn(1, 8, 8, generator=generator), "y": torch.randn(1, 8, 8, generator=generator)}
               for _ in range(4)]
    loaders = (DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None)
    train_pipeline.build_data = lambda config, progress=True: loaders
    kill, epoch = os.environ.get("KILL_AT_SAVE"), os.environ.get("KILL_EPOCH")
    if kill and "--resume" in sys.argv:
        save = checkpointing.save_training_files

        def save_and_die(*args, **kwargs):
            if kill == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            save(*args, **kwargs)
            if epoch is None or kwargs.get("epoch") == int(epoch):
                os.kill(os.getpid(), signal.SIGKILL)

        checkpointing.save_training_files = save_and_die
    from neuralop_mp.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def run_killed(tmp_path, args, kill_at, kill_epoch=None):
    """``neuralop-mp ARGS`` in a process of its own that SIGKILLs itself (:data:`DRIVER`)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, KILL_AT_SAVE=kill_at, PYTHONWARNINGS="ignore")
    env.pop("KILL_EPOCH", None)
    if kill_epoch is not None:
        env["KILL_EPOCH"] = str(kill_epoch)
    done = subprocess.run([sys.executable, str(driver), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


@pytest.fixture
def two_epoch_run(monkeypatch, tmp_path, capsys):
    """A finished run of `neuralop-mp train` (two epochs, one thread) on the four random samples."""
    return train_tiny_run(monkeypatch, capsys, tmp_path / "run", 2)


def test_auto_threads_record_the_count_used_which_a_resume_keeps_whatever_the_load(monkeypatch, tmp_path, capsys):
    """`--threads auto` (the default) recorded null, and the resume asked the load again: 2 threads
    at the start and 1 at the resume (another thread count, not bitwise the uninterrupted run; the
    conftest gives torch back its threads after each test)."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    monkeypatch.setattr(run_setup, "default_threads", lambda *args, **kwargs: 2)  # an idle machine
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", *TINY_ARGS]) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / COMMAND_FILE).read_text())["flags"]["threads"] == "2"
    assert "2 CPU thread(s) for torch (auto: the CPUs other processes leave idle" in printed

    monkeypatch.setattr(run_setup, "default_threads", lambda *args, **kwargs: 1)  # a busy one at the resume
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 0
    assert json.loads((out / RESULTS_FILE).read_text())["threads"] == 2
    assert "2 CPU thread(s) for torch (the run's own, from its command.json" in capsys.readouterr().out

    # --threads given at the resume wins, and is the count recorded from then on
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "3", "--threads", "1"]) == 0
    assert "1 CPU thread(s) for torch (as given" in capsys.readouterr().out
    assert json.loads((out / RESULTS_FILE).read_text())["threads"] == 1
    assert read_command(out)["flags"]["threads"] == "1"

    # a run recorded before the count was (threads null) resumes, asking the load as it did
    record = json.loads((out / COMMAND_FILE).read_text())
    record["flags"]["threads"] = None
    (out / COMMAND_FILE).write_text(json.dumps(record))
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "4"]) == 0
    assert "1 CPU thread(s) for torch (auto: the CPUs other processes leave idle; the run recorded no count" in \
        capsys.readouterr().out
    assert read_command(out)["flags"]["threads"] == "1"


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_eval_refuses_a_final_model_that_a_killed_resume_trained_past(two_epoch_run, tmp_path, capsys):
    """It evaluated the two-epoch model file with the resume's config (its epochs, its precision), silently."""
    out = two_epoch_run
    run_killed(tmp_path, ["train", "--resume", str(out), "--opt.n_epochs", "5", "--model.fno_block_precision",
                          "mixed"], "after", kill_epoch=3)
    assert saved_epoch(out) == 3 and json.loads((out / RESULTS_FILE).read_text())["history"][-1]["epoch"] == 1
    for path in (out, out / "model_state_dict.pt"):  # the run folder, or its model file named
        assert cli.main(["eval", str(path), "--threads", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"neuralop-mp eval: error: The model file in {out} is of epoch 1"), err
        assert f"{out / 'checkpoint'} holds epoch 3, the last saved" in err
        assert f"Finish the run with `neuralop-mp train --resume {out}`" in err
    # finished, the run's model is evaluated in the precision it finished in
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert cli.main(["eval", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "mixed" in printed.split("| precision ")[1].splitlines()[0], printed


def test_results_json_is_written_whole_or_not_at_all(monkeypatch, tmp_path):
    """A write cut short (a kill, a full disk) left a truncated results.json."""
    import builtins
    import io

    from neuralop_mp.train_report import write_outputs

    from .test_train_pipeline import _DiesMidWrite

    result = {"history": [{"epoch": 0, "train_loss": 1.0}], "train_resolution": 8, "metrics": {"8_l2": 0.5}}
    write_outputs(result, tmp_path)
    before = (tmp_path / RESULTS_FILE).read_bytes()
    real_open = builtins.open

    def dying_open(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        # results.json by name, or a temporary file by descriptor (os.fdopen); not the plot
        ours = isinstance(file, int) or str(file).endswith(RESULTS_FILE)
        return _DiesMidWrite(opened) if "w" in mode and ours else opened

    monkeypatch.setattr(builtins, "open", dying_open)
    monkeypatch.setattr(io, "open", dying_open)
    with pytest.raises(OSError, match="No space left on device"):
        write_outputs({**result, "metrics": {"8_l2": 0.25}}, tmp_path)
    monkeypatch.undo()
    assert (tmp_path / RESULTS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_curve.png", RESULTS_FILE]  # no temporary file


@pytest.mark.parametrize("damage, error", [("cut", "JSONDecodeError"), ("not an object", "ValueError")])
def test_a_damaged_results_json_is_named_with_the_resume_that_writes_it_again(two_epoch_run, capsys, damage, error):
    """eval printed `error: Unterminated string starting at: line 14 ...`, naming no file (and a JSON
    list there was an AttributeError traceback)."""
    out = two_epoch_run
    results = out / RESULTS_FILE
    whole = json.loads(results.read_text())
    results.write_text(results.read_text()[:300] if damage == "cut" else "[1]")
    # whether the final model is the run's last cannot be told without it: refused, naming the file
    assert cli.main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp eval: error: {results} is damaged ({error}: "), err
    assert f"`neuralop-mp train --resume {out}` writes it again" in err and len(err.splitlines()) == 1
    assert cli.main(["train", "--resume", str(out)]) == 0  # the finished run trains nothing, writes it again
    assert json.loads(results.read_text())["history"] == whole["history"]
    assert cli.main(["eval", str(out)]) == 0


# a trainer's save_dir (as `neuralop-mp run` writes it: weights, and the model's metadata beside them), the
# process killed with SIGKILL between the two renames of its second save
TRAINER_KILLED_BETWEEN_RENAMES = textwrap.dedent('''
    import os, signal, sys
    from neuralop_mp.runner.intercept import save_model_metadata_beside
    from neuralop_mp.training import checkpointing
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    save_dir, replace, renames = sys.argv[1], os.replace, []

    def replace_and_die(source, target):
        replace(source, target)
        renames.append(target)
        if len(renames) == 2:  # epoch 1's save: save_dir -> save_dir.old done, save_dir.tmp -> save_dir not
            os.kill(os.getpid(), signal.SIGKILL)

    checkpointing.os.replace = replace_and_die

    class Trainer(MixedPrecisionTrainer):
        def checkpoint(self, save_dir):
            super().checkpoint(save_dir)
            save_model_metadata_beside(save_dir, self.model)

    model = tiny_fno(mixed_precision_layer=False)
    train, test = tiny_data()
    optimizer, scheduler = optimizer_and_scheduler(model)
    Trainer(model=model, n_epochs=3, verbose=False).train(train, test, optimizer, scheduler, training_loss=loss(),
                                                          eval_losses={"l2": loss()}, save_every=1,
                                                          save_dir=save_dir)
''')


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_a_save_dir_killed_between_the_two_renames_of_a_save_loads_from_its_old_folder(monkeypatch, tmp_path,
                                                                                       capsys):
    """load_model and `eval DIR` said "No model checkpoint at DIR" while DIR.old held epoch 0's save."""
    from neuralop_mp.models.checkpoints import load_model as load_saved
    from neuralop_mp.run_folder import load_model_and_precision

    script, save_dir = tmp_path / "train.py", tmp_path / "ckpt"
    script.write_text(TRAINER_KILLED_BETWEEN_RENAMES)
    done = subprocess.run([sys.executable, str(script), str(save_dir)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    old = tmp_path / "ckpt.old"
    assert not save_dir.exists() and old.is_dir() and (tmp_path / "ckpt.tmp").is_dir()
    saved = torch.load(old / "model_state_dict.pt", weights_only=True)
    assert torch.load(old / "manifest.pt", weights_only=True)["epoch"] == 0

    warning = rf"{save_dir} is missing but {old} holds its previous complete save"
    for path in (save_dir, save_dir / "model_state_dict.pt"):
        with pytest.warns(RuntimeWarning, match=warning):
            model, _ = load_model_and_precision(path)
        assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())
    with pytest.warns(RuntimeWarning, match=warning):
        model = load_saved(save_dir, "model")
    assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())

    _four_random_samples_as_data(monkeypatch)  # eval's data: the 8x8 samples the model takes
    with pytest.warns(RuntimeWarning, match=warning):
        assert cli.main(["eval", str(save_dir), "--threads", "1", *DATA_ARGS]) == 0, capsys.readouterr().err
    assert f"checkpoint               | {old / 'model_state_dict.pt'}" in capsys.readouterr().out


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_a_resumes_overrides_hold_from_the_instant_its_first_checkpoint_is_in_place(two_epoch_run, tmp_path,
                                                                                    capsys):
    """A kill right after the resume's first save, before command.json was written, lost its overrides:
    the run later said it "already finished all 2 epochs" and trained its last epochs in full precision."""
    out = two_epoch_run
    before = read_command(out)
    resume = ["train", "--resume", str(out), "--opt.n_epochs", "4", "--model.fno_block_precision", "mixed"]
    # killed before the save: the checkpoint holds epoch 1, trained with the run's own command, kept
    run_killed(tmp_path, resume, "before")
    assert saved_epoch(out) == 1 and read_command(out) == before
    assert cli.main(["eval", str(out), "--threads", "1"]) == 0  # the finished run's model, as it was
    # killed once the save's renames are done: the checkpoint holds epoch 2, trained with the resume's command
    run_killed(tmp_path, resume, "after")
    assert saved_epoch(out) == 2
    overrides = read_command(out)["overrides"]
    recorded = dict(zip(overrides[::2], overrides[1::2]))
    assert recorded["--opt.n_epochs"] == "4" and recorded["--model.fno_block_precision"] == "mixed", overrides
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out)]) == 0  # continued without repeating them
    assert "already finished" not in capsys.readouterr().out
    history = json.loads((out / RESULTS_FILE).read_text())["history"]
    assert [(h["epoch"], h["precision"]) for h in history] == [(0, "full"), (1, "full"), (2, "mixed"), (3, "mixed")]
    assert "pending" not in json.loads((out / COMMAND_FILE).read_text())  # the resumed record, alone


def test_eval_runs_with_the_thread_count_the_runs_command_json_records(two_epoch_run, monkeypatch, tmp_path):
    """eval read the count from results.json alone: one without it (or damaged) gave "auto", another
    count than the run's, so not the errors train reported."""
    out = two_epoch_run
    monkeypatch.setattr(run_setup, "default_threads", lambda *args, **kwargs: 2)  # what "auto" would give
    results = json.loads((out / RESULTS_FILE).read_text())
    del results["threads"]
    (out / RESULTS_FILE).write_text(json.dumps(results))
    assert read_command(out)["flags"]["threads"] == "1"
    assert cli.main(["eval", str(out), "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["threads"] == 1
    # a run recorded before the count was (threads null): the count of its results.json
    record = json.loads((out / COMMAND_FILE).read_text())
    record["flags"]["threads"] = None
    (out / COMMAND_FILE).write_text(json.dumps(record))
    (out / RESULTS_FILE).write_text(json.dumps({**results, "threads": 1}))
    assert cli.main(["eval", str(out), "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["threads"] == 1
