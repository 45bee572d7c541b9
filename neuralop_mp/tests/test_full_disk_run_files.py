"""A full disk (or a lost folder) while ``neuralop-mp train`` writes a file of its run folder other
than the per-epoch checkpoint: the final and best model files, ``loss_curve.png``,
``data_processor.pt``. Each stops the run with the checkpoint's one line (the file, what is kept,
the ``--resume`` command), exit status 1, and leaves the previous file whole, or none: never a
cut-off one. A full disk is simulated: torch's writer fails as it does on one (64 bytes written,
then ``RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0``).
A run folder removed while the run writes it stops at the next save with one line."""
import errno
import json
import os
from pathlib import Path

import pytest
import torch

from neuralop_mp import cli, run_folder
from neuralop_mp.run_folder import save_model, write_atomic
from neuralop_mp.run_trainer import RunFolderTrainer
from neuralop_mp.train_report import write_outputs
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import CheckpointWriteError

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
WRITER_ERROR = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


def train(out, *args):
    return cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "2", "--threads", "1",
                     *TINY_ARGS, *args])


def full_disk_for(monkeypatch, name):
    """torch.save of a file called ``name`` (a model file; not the checkpoint's of that name) writes 64 bytes,
    then fails as its writer does on a full disk."""
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if (isinstance(path, (str, os.PathLike)) and os.path.basename(path) == name
                and os.path.basename(os.path.dirname(path)) != "checkpoint.tmp"):
            with open(path, "wb") as f:
                f.write(b"\0" * 64)
            raise RuntimeError(WRITER_ERROR)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def small_model():
    from neuralop.models import FNO

    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)


@pytest.mark.parametrize("name", ["model_state_dict.pt", "model_metadata.pkl"])
def test_a_model_save_that_fails_keeps_the_previous_files_whole(tmp_path, monkeypatch, name):
    """Upstream's save_checkpoint wrote in place: a cut-off 64-byte model file replaced the model."""
    model = small_model()
    save_model(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    full_disk_for(monkeypatch, name)
    monkeypatch.setattr(checkpointing, "free_bytes", lambda path: 4096, raising=False)
    with pytest.raises(CheckpointWriteError) as raised:
        save_model(model, tmp_path)
    error = raised.value
    assert str(error) == (f"could not write the model file {tmp_path / name}: the disk is full, 4.00 KiB free on its "
                          f"file system ({WRITER_ERROR})")
    assert error.errno == errno.ENOSPC and error.filename == str(tmp_path / name)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left either


def test_a_model_save_keeps_upstreams_file_names_and_loads_back(tmp_path):
    model = small_model()
    files = save_model(model, tmp_path, "mine")
    assert files == {"state_dict": str(tmp_path / "mine_state_dict.pt"),
                     "metadata": str(tmp_path / "mine_metadata.pkl")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine_metadata.pkl", "mine_state_dict.pt"]
    loaded, _ = run_folder.load_model_and_precision(tmp_path / "mine_state_dict.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))


def test_a_loss_curve_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    """The PNG was written in place: a full disk left a 0-byte loss_curve.png."""
    from matplotlib.figure import Figure

    result = {"history": [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5}], "train_resolution": 8}
    write_outputs(result, tmp_path)
    before = (tmp_path / "loss_curve.png").read_bytes()

    _full_disk_for(monkeypatch, "loss_curve.png")
    with pytest.raises(CheckpointWriteError, match=f"could not write {tmp_path / 'loss_curve.png'}: the disk is full"):
        write_outputs(result, tmp_path)
    assert (tmp_path / "loss_curve.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_curve.png", "results.json"]
    monkeypatch.undo()

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug of the plot")

    # an error of the plot itself is the plot's: not reported as a failed write of the file (or a full disk)
    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="a bug of the plot") as info:
        write_outputs(result, tmp_path)
    assert not isinstance(info.value, CheckpointWriteError)
    assert (tmp_path / "loss_curve.png").read_bytes() == before


def test_an_atomic_write_that_fails_says_the_file_and_the_full_disk(tmp_path):
    (tmp_path / "results.json").write_text("{}")

    def enospc(f):
        f.write(b"{partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointWriteError) as raised:
        write_atomic(tmp_path / "results.json", enospc)
    assert str(raised.value).startswith(f"could not write {tmp_path / 'results.json'}: the disk is full, ")
    assert raised.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["results.json"] and (tmp_path / "results.json").read_text() == "{}"


def _assert_one_line(err, out, text):
    lines = err.rstrip("\n").splitlines()
    assert "Traceback" not in err, err
    assert lines[-1].startswith(f"neuralop-mp train: error: could not write {text}"), err
    return lines[-1]


@pytest.mark.parametrize("save_best", [False, True])
def test_a_full_disk_at_a_model_save_is_one_line_and_leaves_no_cut_off_file(monkeypatch, tmp_path, capsys,
                                                                            save_best):
    """It was a traceback (exit 1) and a 64-byte model_state_dict.pt / best_model_state_dict.pt."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    name = "best_model_state_dict.pt" if save_best else "model_state_dict.pt"
    full_disk_for(monkeypatch, name)
    code = train(out, *(["--save_best"] if save_best else []))
    err = capsys.readouterr().err
    assert code == 1, err
    # the test's disk has room: torch's error alone, no "the disk is full" (test_checkpoint_disk_full.py)
    line = _assert_one_line(err, out, f"the model file {out / name} ({WRITER_ERROR}); stopped")
    if save_best:  # at epoch 0's evaluation, before its checkpoint
        assert line.endswith(f"; stopped before any epoch was saved in {out}: nothing to resume; run the command "
                             "again."), line
    else:  # after the last epoch: its checkpoint continues the run, which then writes its outputs
        assert line.endswith(f"; stopped; {out / 'checkpoint'} holds epoch 1, the last saved. Continue with: "
                             f"neuralop-mp train --resume {out}"), line
    assert not (out / name).exists()
    if save_best:  # the folder this run made, nothing of the run saved in it: given back (c5f92cb)
        assert not out.exists()
    else:
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left
    if not save_best:
        monkeypatch.undo()
        _four_random_samples_as_data(monkeypatch)
        assert cli.main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
        assert (out / name).is_file()


def _full_disk_for(monkeypatch, name):
    """Writes of the file ``name`` through write_atomic go to /dev/full (ENOSPC, as on a full disk)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    new_temporary = run_folder._new_temporary

    def temporary(path):
        handle, tmp = new_temporary(path)
        if Path(path).name != name:
            return handle, tmp
        os.close(handle)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(run_folder, "_new_temporary", temporary)


def test_a_full_disk_at_the_loss_curve_is_one_line_and_keeps_no_cut_off_png(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    _full_disk_for(monkeypatch, "loss_curve.png")
    assert train(out) == 1
    _assert_one_line(capsys.readouterr().err, out, f"{out / 'loss_curve.png'}: the disk is full")
    assert not (out / "loss_curve.png").exists() and not (out / "results.json").exists()


def test_a_full_disk_at_a_resumes_data_processor_is_one_line_with_the_command_that_continues(monkeypatch, tmp_path,
                                                                                              capsys):
    """A --resume on a full disk stopped with a traceback at data_processor.pt (written before its first epoch)."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert train(out) == 0
    capsys.readouterr()

    def save_data_processor(data_processor, run_dir):
        def enospc(f):
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        return write_atomic(run_dir / "data_processor.pt", enospc)

    monkeypatch.setattr(run_folder, "save_data_processor", save_data_processor)
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "3"]) == 1
    line = _assert_one_line(capsys.readouterr().err, out, f"{out / 'data_processor.pt'}: the disk is full")
    assert line.endswith(f"; stopped; {out / 'checkpoint'} holds epoch 1, the last saved. Continue with: "
                         f"neuralop-mp train --resume {out} --opt.n_epochs 3"), line
    assert not (out / "data_processor.pt").exists()


@pytest.mark.parametrize("save_best", [False, True])
def test_a_run_folder_removed_while_the_run_writes_it_stops_at_the_next_save(monkeypatch, tmp_path, capsys,
                                                                              save_best):
    """The run created its folder again at each save and ended with exit 0, its results.json listing
    files that were gone. With --save_best the best model's save comes first after an epoch (its
    save_checkpoint would create the folder again, and the checkpoint's check find it)."""
    import shutil

    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    real_start = RunFolderTrainer.on_epoch_start

    def remove_at_epoch_1(self, epoch):
        if epoch == 1:
            shutil.rmtree(out)
        return real_start(self, epoch)

    monkeypatch.setattr(RunFolderTrainer, "on_epoch_start", remove_at_epoch_1)
    assert train(out, *(["--save_best"] if save_best else [])) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.rstrip("\n").splitlines()[-1] == (
        f"neuralop-mp train: error: {out} was removed while the run wrote it: stopped, and nothing is left to "
        "resume from (its checkpoint went with it); run the command again."), err
    assert not out.exists()


def test_a_run_folder_removed_before_the_final_save_is_not_written_again(monkeypatch, tmp_path):
    """The Python API too: run_training raises the folder's error rather than creating it again."""
    import shutil

    from neuralop_mp.configs import load_config
    from neuralop_mp.run_folder import RunFolderRemoved
    from neuralop_mp.train_pipeline import run_training

    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    real_train = RunFolderTrainer.train

    def train_then_remove(self, *args, **kwargs):
        real_train(self, *args, **kwargs)
        shutil.rmtree(out)

    monkeypatch.setattr(RunFolderTrainer, "train", train_then_remove)
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"})
    with pytest.raises(RunFolderRemoved) as raised:
        run_training(config, progress=False, output_dir=out, log=lambda *a, **k: None)
    assert raised.value.errno == errno.ENOENT and not out.exists()
    assert json.dumps(str(raised.value))  # one plain message


def test_a_run_folder_removed_during_a_checkpoint_save_is_said_removed(monkeypatch, tmp_path, capsys):
    """The removal met a save halfway: the rename of checkpoint.tmp failed on a missing file, and the line
    said 'stopped before any epoch was saved', though epochs had been saved."""
    import shutil

    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    real_save = checkpointing.save_training_files
    calls = []

    def removed_halfway(save_dir, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's save: the folder goes while it writes
            shutil.rmtree(out)  # the rename of checkpoint.tmp then finds no file, as the save reports it:
            raise checkpointing.write_error(save_dir, FileNotFoundError(2, "No such file or directory", str(save_dir)))
        return real_save(save_dir, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_training_files", removed_halfway)
    assert train(out) == 1
    err = capsys.readouterr().err
    assert err.rstrip("\n").splitlines()[-1] == (
        f"neuralop-mp train: error: {out} was removed while the run wrote it: stopped, and nothing is left to "
        "resume from (its checkpoint went with it); run the command again."), err
