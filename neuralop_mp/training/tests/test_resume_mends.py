"""A resume reads each checkpoint file once, checks the settings overridden at a resume on
the states it read, and refuses an unreadable file by name; ReduceLROnPlateau's starting
learning rate is saved, so a changed ``opt.learning_rate`` is refused with it too."""
import json
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.run_folder import CHECKPOINT_DIR, COMMAND_FILE
from neuralop_mp.run_setup import RunSetupError
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import MANIFEST_FILE, CheckpointError
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno

TINY_RUN = {"model.n_modes": "[4,4]", "model.hidden_channels": "4", "model.n_layers": "1",
            "data.test_resolutions": "[8]", "data.n_tests": "[4]", "data.test_batch_sizes": "[4]",
            "data.train_resolution": "8", "data.batch_size": "4", "data.n_train": "4", "verbose": "false"}
PLATEAU = {"opt.scheduler": "ReduceLROnPlateau", "opt.scheduler_patience": "0", "opt.gamma": "0.5"}


def quiet(*args, **kwargs):
    pass


@pytest.fixture
def four_samples(monkeypatch):
    """The pipeline's data: four random 8x8 samples, one batch, for training and testing."""
    from neuralop_mp.tests.test_train_pipeline import _four_random_samples_as_data

    _four_random_samples_as_data(monkeypatch)


def train(out, n_epochs, resume=False, **overrides):
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": str(n_epochs), **overrides})
    flags = [f"--{key}={value}" for key, value in overrides.items()]
    return pipeline.run_training(config, progress=False, output_dir=out, log=quiet, resume=resume,
                                 command=("darcy", ["--opt.n_epochs", str(n_epochs), *flags]))


def folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def count_loads(monkeypatch):
    """Counts torch.load calls by file name (every load of a checkpoint goes through torch.load)."""
    loads, real_load = Counter(), torch.load

    def counting(f, *args, **kwargs):
        loads[Path(f).name if isinstance(f, (str, Path)) else repr(f)] += 1
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return loads


# the warning for a format-2 checkpoint whose manifest is gone or lists no files: it names the
# manifest and the format its folder records, and that the checkpoint is read unverified
LOST_MANIFEST = (r"manifest\.pt {}, though .+\.pt records format_version 2, whose manifest lists "
                 r"every file's size and SHA-256: the checkpoint cannot be verified, only read")


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "manifest-lost"])
def test_a_resume_reads_each_checkpoint_file_once(four_samples, monkeypatch, tmp_path, manifest):
    """The settings check reads no file of its own: it runs on the states the trainer's resume read.
    A format-2 checkpoint that lost its manifest (no checksums) is resumed with a warning naming the
    missing manifest, and its model file, whose only check is then that it reads, is read once too
    (the check read it and then the resume)."""
    out = tmp_path / "run"
    train(out, 1)
    if not manifest:
        (out / CHECKPOINT_DIR / MANIFEST_FILE).unlink()
    loads = count_loads(monkeypatch)
    with pytest.warns(RuntimeWarning, match=LOST_MANIFEST.format("is missing")) if not manifest else nullcontext():
        result = train(out, 2, resume=True)
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    names = ("precision_state.pt", "model_state_dict.pt", "optimizer.pt", "scheduler.pt")
    assert loads == {name: 1 for name in names + (("manifest.pt",) if manifest else ())}


@pytest.mark.parametrize("checksums, message", [
    (True, r"optimizer\.pt does not match its checksum"),
    (False, r"optimizer\.pt is not a readable torch file: not a zip archive"),
], ids=["manifest-checksums", "manifest-lost-its-list"])
def test_an_unreadable_optimizer_file_is_refused_by_name_and_the_run_folder_is_kept(four_samples, tmp_path,
                                                                                    checksums, message):
    """Never skipped: with checksums the manifest refuses it; in a format-2 checkpoint whose
    manifest lost its file list (warned, naming the manifest), the read itself."""
    out = tmp_path / "run"
    train(out, 1)
    folder = out / CHECKPOINT_DIR
    if not checksums:  # no checksum left: nothing tells a damaged file but reading it
        manifest = torch.load(folder / MANIFEST_FILE, weights_only=True)
        del manifest["files"]
        torch.save(manifest, folder / MANIFEST_FILE)
    size = (folder / "optimizer.pt").stat().st_size
    (folder / "optimizer.pt").write_bytes(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    before = folder_bytes(out)
    # resumed with another learning rate as well: the damaged file is what the resume reports
    lost = pytest.warns(RuntimeWarning, match=LOST_MANIFEST.format("lists no files"))
    with lost if not checksums else nullcontext():
        with pytest.raises(CheckpointError, match=message):
            train(out, 2, resume=True, **{"opt.learning_rate": "0.01"})
    assert folder_bytes(out) == before
    assert json.loads((out / COMMAND_FILE).read_text())["overrides"] == ["--opt.n_epochs", "1"]


def _saved_checkpoint(folder):
    model = tiny_fno(seed=0)
    train_loader, test_loaders = tiny_data(n=8, batch_size=4)
    MixedPrecisionTrainer(model=model, n_epochs=1).train(
        train_loader, test_loaders, *optimizer_and_scheduler(model), training_loss=loss(), save_every=1,
        save_dir=folder)


def test_load_training_files_gives_the_states_it_read_to_check_states_before_loading_any(tmp_path):
    _saved_checkpoint(tmp_path / "ckpt")
    model = tiny_fno(seed=1)
    optimizer, scheduler = optimizer_and_scheduler(model, lr=0.5)
    weights = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    seen = []

    def refuse(states, save_dir):
        seen.append((sorted(states), Path(save_dir)))
        assert states["optimizer"]["param_groups"][0]["lr"] == 1e-2  # the saved value
        assert states["scheduler"]["step_size"] == 2
        raise RunSetupError("refused")

    with pytest.raises(RunSetupError, match="refused"):
        checkpointing.load_training_files(tmp_path / "ckpt", model, optimizer, scheduler, check_states=refuse)
    assert seen == [(["optimizer", "scheduler"], tmp_path / "ckpt")]
    # nothing loaded: this run's weights and settings
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items() if torch.is_tensor(v))
    assert optimizer.param_groups[0]["lr"] == 0.5 and not optimizer.state
    # a state of another class is refused by the class check, before check_states sees it
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    with pytest.raises(CheckpointError, match="scheduler.pt was written by the learning-rate scheduler StepLR"):
        checkpointing.load_training_files(tmp_path / "ckpt", model, optimizer, cosine, check_states=refuse)
    assert len(seen) == 1


def test_a_resume_of_a_plateau_run_with_another_learning_rate_is_refused(four_samples, tmp_path):
    """ReduceLROnPlateau's state holds no starting rate; the optimizer's groups save it as "initial_lr"."""
    out = tmp_path / "run"
    train(out, 1, **PLATEAU)
    saved = torch.load(out / CHECKPOINT_DIR / "optimizer.pt", weights_only=True)
    assert {g["initial_lr"] for g in saved["param_groups"]} == {0.005}
    before = folder_bytes(out)
    with pytest.raises(RunSetupError, match=r"opt.learning_rate=0.01 given, 0.005 saved"):
        train(out, 2, resume=True, **PLATEAU, **{"opt.learning_rate": "0.01"})
    assert folder_bytes(out) == before  # command.json and the checkpoint as they were
    result = train(out, 2, resume=True, **PLATEAU)
    assert [h["epoch"] for h in result["history"]] == [0, 1]


def test_a_plateau_checkpoint_saved_without_a_starting_rate_still_resumes(four_samples, monkeypatch, tmp_path):
    """Checkpoints written before the starting rate was recorded: nothing to compare, resumed as before."""
    out = tmp_path / "run"
    build_scheduler = pipeline.build_scheduler

    def without_initial_lr(optimizer, config):
        scheduler = build_scheduler(optimizer, config)
        for group in optimizer.param_groups:
            group.pop("initial_lr")
        return scheduler

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "build_scheduler", without_initial_lr)
        train(out, 1, **PLATEAU)
    saved = torch.load(out / CHECKPOINT_DIR / "optimizer.pt", weights_only=True)
    assert not any("initial_lr" in g for g in saved["param_groups"])
    result = train(out, 2, resume=True, **PLATEAU)
    assert [h["epoch"] for h in result["history"]] == [0, 1]


def test_the_plateau_scheduler_still_lowers_the_rate_it_started_from():
    """The recorded "initial_lr" is bookkeeping: ReduceLROnPlateau changes "lr" alone."""
    config = load_config("darcy", {**TINY_RUN, **PLATEAU})
    model = pipeline.build_model(config)
    optimizer = pipeline.build_optimizer(model, config)
    scheduler = pipeline.build_scheduler(optimizer, config)
    for metric in (1.0, 2.0, 3.0):
        scheduler.step(metric)
    assert [g["lr"] for g in optimizer.param_groups] == [0.005 * 0.25] * len(optimizer.param_groups)
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.005] * len(optimizer.param_groups)
