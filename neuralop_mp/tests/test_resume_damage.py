"""``neuralop-mp train --resume`` of a run folder left damaged: by a crash between the two renames
of a save (resumed from ``checkpoint.old``), by lost ``precision_state.pt`` / ``manifest.pt``
files, by a full disk while saving; and of a run that already finished (its results keep the
kernels and tiles of the forward its metrics come from). Small real runs on four random 8x8
samples (a second each)."""
import errno
import json
import shutil

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.training import checkpointing

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

pytestmark = pytest.mark.reliability

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]


def train(out, *args):
    return cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "3", "--threads", "1",
                     *TINY_ARGS, *args])


def resume(out, *args):
    return cli.main(["train", "--resume", str(out), *args])


def weights(out):
    return torch.load(out / "model_state_dict.pt", weights_only=False)


def assert_same_run(out, reference):
    """Bit for bit the same final weights, losses and test errors as the uninterrupted run."""
    a, b = weights(out), weights(reference)
    assert a.keys() == b.keys()
    for key, value in a.items():
        if torch.is_tensor(value):
            assert torch.equal(value, b[key]), key
    ra, rb = (json.loads((folder / "results.json").read_text()) for folder in (out, reference))
    assert ra["metrics"] == rb["metrics"]
    assert [(h["epoch"], h["train_err"]) for h in ra["history"]] == [(h["epoch"], h["train_err"])
                                                                     for h in rb["history"]]


@pytest.fixture
def uninterrupted(monkeypatch, tmp_path, capsys):
    """A run of three epochs, never stopped: what every resumed run here must end as."""
    _four_random_samples_as_data(monkeypatch)
    reference = tmp_path / "uninterrupted"
    assert train(reference) == 0
    capsys.readouterr()
    return reference


def test_a_run_killed_between_the_two_renames_of_a_save_resumes_from_the_old_folder(uninterrupted, monkeypatch,
                                                                                  tmp_path, capsys):
    """The CLI refused it ("it has no checkpoint/ folder") while the trainer resumes from
    checkpoint.old: the same rule now decides for both."""
    out = tmp_path / "run"
    real_replace, renames = checkpointing.os.replace, []

    def replace(source, target):
        real_replace(source, target)
        renames.append(target)
        if len(renames) == 3:  # epoch 1's save: checkpoint -> checkpoint.old done, .tmp -> checkpoint not
            raise KeyboardInterrupt  # a kill at this instant leaves the same folders

    monkeypatch.setattr(checkpointing.os, "replace", replace)
    assert train(out) == 130
    monkeypatch.setattr(checkpointing.os, "replace", real_replace)
    capsys.readouterr()
    assert not (out / "checkpoint").exists()
    assert (out / "checkpoint.old").is_dir() and (out / "checkpoint.tmp").is_dir()
    with pytest.warns(RuntimeWarning, match=r"checkpoint is missing but .*checkpoint\.old holds its previous complete save"):
        assert resume(out) == 0, capsys.readouterr().err
    assert not (out / "checkpoint.old").exists() and not (out / "checkpoint.tmp").exists()
    assert_same_run(out, uninterrupted)


def test_a_checkpoint_without_its_precision_state_is_refused_naming_the_missing_files(uninterrupted, tmp_path,
                                                                                     capsys):
    """It trained every epoch again from epoch 0 on the loaded weights, history and LR schedule lost."""
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "command.json").write_text((uninterrupted / "command.json").read_text().replace(
        str(uninterrupted), str(out)))
    results = (out / "results.json").read_text()
    for name in ("precision_state.pt", "manifest.pt"):
        (out / "checkpoint" / name).unlink()
    assert resume(out, "--opt.n_epochs", "4") == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp train: error: Cannot resume ") and "Traceback" not in err, err
    assert str(out / "checkpoint" / "precision_state.pt") in err and str(out / "checkpoint" / "manifest.pt") in err
    assert "every epoch again" in err
    assert (out / "results.json").read_text() == results  # nothing trained


def test_a_format_2_checkpoint_without_its_manifest_names_the_manifest_as_missing(uninterrupted, monkeypatch,
                                                                                  tmp_path, capsys):
    """Warned, not refused: precision_state.pt still holds the epoch, history and RNG state, so the
    resume is exact; only the checksums are lost. It was called "a format-1 checkpoint"."""
    out = tmp_path / "run"
    assert train(out, "--opt.n_epochs", "1") == 0
    (out / "checkpoint" / "manifest.pt").unlink()
    with pytest.warns(RuntimeWarning) as warned:
        assert resume(out, "--opt.n_epochs", "3") == 0, capsys.readouterr().err
    (message,) = [str(w.message) for w in warned if "manifest.pt" in str(w.message)]
    assert message.startswith(f"{out / 'checkpoint' / 'manifest.pt'} is missing, though "
                              f"{out / 'checkpoint' / 'precision_state.pt'} records format_version 2"), message
    assert "is a format-1 checkpoint" not in message
    assert_same_run(out, uninterrupted)


def _disk_full_at_the_second_save(monkeypatch):
    """torch.save fails with ENOSPC on the second file of the second checkpoint (epoch 1's)."""
    real_save, manifests, files = torch.save, [], []

    def save(obj, path, *args, **kwargs):
        if path.parent.name == "checkpoint.tmp" and len(manifests) == 1:
            files.append(path)
            if len(files) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        if path.name == "manifest.pt":
            manifests.append(path)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", save)
    return files


def test_a_full_disk_while_saving_is_one_line_with_the_command_that_continues(uninterrupted, monkeypatch, tmp_path,
                                                                             capsys):
    """It was a raw traceback. The previous checkpoint is kept, the partial one removed, and the
    printed command resumes to the uninterrupted run's result."""
    out = tmp_path / "run"
    real_save = torch.save
    files = _disk_full_at_the_second_save(monkeypatch)
    assert train(out) == 1
    monkeypatch.setattr(checkpointing.torch, "save", real_save)
    err = capsys.readouterr().err
    # after the progress bar's line, ended by a newline of its own
    line = err.splitlines()[-1]
    assert line.startswith(f"neuralop-mp train: error: could not write the checkpoint file {files[1]}: the disk is "
                           "full, "), err  # and the free space of its file system (test_checkpoint_disk_full.py)
    assert err.endswith(f" free on its file system ([Errno 28] No space left on device: '{files[1]}'); stopped; "
                        f"{out / 'checkpoint'} holds epoch 0, the last saved. Continue with: neuralop-mp train "
                        f"--resume {out}\n"), err
    assert "Traceback" not in err and err.splitlines()[-2] == ""
    assert not (out / "checkpoint.tmp").exists()
    assert checkpointing.verify_checkpoint(out / "checkpoint")["epoch"] == 0
    assert resume(out) == 0, capsys.readouterr().err
    assert_same_run(out, uninterrupted)


def test_a_full_disk_at_the_first_save_says_nothing_was_saved(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    real_save = torch.save
    monkeypatch.setattr(checkpointing.torch, "save", lambda obj, path, *a, **k: real_save(obj, "/dev/full"))
    assert train(out) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        f"neuralop-mp train: error: could not write the checkpoint file {out / 'checkpoint.tmp'}/"), err
    assert err.endswith(f"; stopped before any epoch was saved in {out}: nothing to resume; run the command again.\n")
    assert "Traceback" not in err and not (out / "checkpoint.tmp").exists()


def test_an_os_error_of_training_is_not_reported_as_a_checkpoint_write(monkeypatch, tmp_path):
    """Only the save's errors get the message: any other OSError goes on as it was."""
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    _four_random_samples_as_data(monkeypatch)

    def broken(self, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(MixedPrecisionTrainer, "train_one_epoch", broken)
    with pytest.raises(OSError, match="Input/output error") as raised:
        train(tmp_path / "run")
    assert not isinstance(raised.value, checkpointing.CheckpointWriteError)


def test_resuming_a_finished_run_keeps_the_kernels_and_tiles_its_results_reported(monkeypatch, tmp_path, capsys):
    """Nothing is trained nor evaluated (the metrics come from the history), so no forward runs:
    results.json said product_paths [] and "no forward yet"."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert train(out, "--opt.n_epochs", "1", "--model.fno_block_precision", "mixed") == 0  # spectral paths to report
    before = json.loads((out / "results.json").read_text())
    assert before["precision"]["product_paths"] and "last forward" in before["pointwise_work"]
    assert resume(out) == 0, capsys.readouterr().err
    assert "already finished all 1 epochs; nothing to train" in capsys.readouterr().out  # a [neuralop-mp] line
    after = json.loads((out / "results.json").read_text())
    assert after["precision"]["product_paths"] == before["precision"]["product_paths"]
    assert after["pointwise_work"] == before["pointwise_work"]
    assert after["metrics"] == before["metrics"]
