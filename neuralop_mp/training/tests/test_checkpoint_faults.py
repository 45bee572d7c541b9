"""Resume refuses every damaged, mixed or foreign checkpoint before loading anything.

Each case writes a real checkpoint with a short run, damages it the way a crash, a
disk or a user would, and asserts that ``resume_state_from_dir`` raises
:class:`CheckpointError` naming the file, with the model's weights untouched.
"""
import copy
import os
import shutil

import pytest
import torch
from neuralop.training import Trainer

from neuralop_mp.optim.tensorgrad import TensorGRaD
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import FORMAT_VERSION, MANIFEST_FILE, PRECISION_STATE_FILE, CheckpointError
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno

pytestmark = pytest.mark.reliability


def train_and_save(folder, n_epochs=2, schedule="mixed", half_dtype="auto", seed=0, hidden=6):
    """A short run that checkpoints every epoch into ``folder``; returns the trained model."""
    from neuralop.models import FNO

    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(seed)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=hidden, n_layers=2,
                conv_module=MixedPrecisionSpectralConv)
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, precision_schedule=schedule,
                                    half_dtype=half_dtype)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), save_every=1,
                  save_dir=folder)
    return model, trainer


def fresh_resumer(n_epochs=4, schedule="mixed", half_dtype="auto", hidden=6, with_optimizer=True):
    from neuralop.models import FNO

    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(5)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=hidden, n_layers=2,
                conv_module=MixedPrecisionSpectralConv)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, precision_schedule=schedule,
                                    half_dtype=half_dtype)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer.optimizer = optimizer if with_optimizer else None
    trainer.scheduler = scheduler if with_optimizer else None
    trainer.regularizer = None
    return model, trainer


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def assert_refused(folder, match, **resumer):
    model, trainer = fresh_resumer(**resumer)
    before = weights(model)
    with pytest.raises(CheckpointError, match=match):
        trainer.resume_state_from_dir(folder)
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed by a refused resume"
    assert trainer.start_epoch == 0


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A complete 2-epoch checkpoint, plus a copy of its epoch-0 state for mixing."""
    root = tmp_path_factory.mktemp("ckpt")
    model, trainer = train_and_save(root / "run", n_epochs=1)
    shutil.copytree(root / "run", root / "epoch0")
    model, trainer = train_and_save(root / "run2", n_epochs=2)
    return root


@pytest.fixture
def ckpt(saved, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved / "run2", folder)
    return folder


def test_checkpoint_is_written_atomically_with_a_manifest_of_every_file(saved):
    folder = saved / "run2"
    manifest = torch.load(folder / MANIFEST_FILE, weights_only=True)
    assert manifest["format_version"] == FORMAT_VERSION and manifest["epoch"] == 1
    names = sorted(p.name for p in folder.iterdir())
    assert sorted(manifest["files"]) == sorted(n for n in names if n != MANIFEST_FILE)
    # the classes resume compares with: the optimizer's own, not the epoch loop's wrapper of it
    assert manifest["classes"] == {"optimizer": "AdamW", "scheduler": "StepLR"}
    for name, entry in manifest["files"].items():
        assert entry["size"] == (folder / name).stat().st_size
        assert entry["sha256"] == checkpointing.file_digest(folder / name)
        assert entry["epoch"] == 1
    # nothing temporary is left next to the folder
    assert not (saved / "run2.tmp").exists() and not (saved / "run2.old").exists()


def test_a_crash_while_writing_leaves_the_previous_checkpoint(ckpt, monkeypatch):
    model, trainer = fresh_resumer()
    trainer.epoch, trainer.save_best = 7, None
    real_save = torch.save

    def dying_save(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            raise KeyboardInterrupt("killed while writing")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.checkpoint(ckpt)
    monkeypatch.undo()
    assert torch.load(ckpt / MANIFEST_FILE, weights_only=True)["epoch"] == 1  # the old one, complete
    _, resumed = fresh_resumer()
    resumed.resume_state_from_dir(ckpt)
    assert resumed.start_epoch == 2
    trainer.checkpoint(ckpt)  # the next save clears the leftover temporary folder
    assert torch.load(ckpt / MANIFEST_FILE, weights_only=True)["epoch"] == 7
    assert not ckpt.with_name("ckpt.tmp").exists()


def test_a_crash_between_the_two_renames_resumes_from_the_old_folder(ckpt):
    os.replace(ckpt, ckpt.with_name("ckpt.old"))
    _, trainer = fresh_resumer()
    with pytest.warns(RuntimeWarning, match="holds its previous complete save .*; resuming from it"):
        trainer.resume_state_from_dir(ckpt)
    assert trainer.start_epoch == 2


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt"])
def test_missing_optimizer_or_scheduler_file_is_refused(ckpt, name):
    (ckpt / name).unlink()
    assert_refused(ckpt, rf"{name}.*(listed in|missing)")


def test_missing_state_files_of_an_unlisted_checkpoint_are_refused(ckpt):
    """Only the model file (an upstream-style folder without manifest): no silent fresh optimizer."""
    for name in ("optimizer.pt", "scheduler.pt", MANIFEST_FILE, PRECISION_STATE_FILE):
        (ckpt / name).unlink()
    assert_refused(ckpt, r"optimizer.pt is missing: resuming would start the optimizer from scratch")


def test_files_of_different_epochs_are_refused(ckpt, saved):
    """What a crash while writing in place leaves: model and optimizer of one epoch, manifest of another."""
    for name in ("model_state_dict.pt", "optimizer.pt"):
        shutil.copy(saved / "epoch0" / name, ckpt / name)
    assert_refused(ckpt, r"model_state_dict.pt (has \d+ bytes|does not match its checksum)")


def test_precision_state_of_another_epoch_is_refused(ckpt, saved):
    shutil.copy(saved / "epoch0" / PRECISION_STATE_FILE, ckpt / PRECISION_STATE_FILE)
    assert_refused(ckpt, PRECISION_STATE_FILE)


def test_truncated_file_is_refused(ckpt):
    path = ckpt / "optimizer.pt"
    path.write_bytes(path.read_bytes()[:100])
    assert_refused(ckpt, r"optimizer.pt has 100 bytes but the manifest \(epoch 1\) recorded")


def test_random_bytes_of_the_same_size_are_refused(ckpt):
    path = ckpt / "model_state_dict.pt"
    path.write_bytes(os.urandom(path.stat().st_size))
    assert_refused(ckpt, r"model_state_dict.pt does not match its checksum")


def test_random_bytes_in_the_manifest_are_refused(ckpt):
    (ckpt / MANIFEST_FILE).write_bytes(os.urandom(300))
    assert_refused(ckpt, r"manifest.pt is not a readable torch file")


def test_another_models_checkpoint_is_refused_before_any_weight_changes(ckpt):
    assert_refused(ckpt, r"checkpoint of another model.*shape mismatches", hidden=8)


def _forget_recorded_classes(folder):
    """Make ``folder`` a checkpoint whose manifest records no classes (older, or upstream's)."""
    manifest = torch.load(folder / MANIFEST_FILE, weights_only=True)
    del manifest["classes"]
    torch.save(manifest, folder / MANIFEST_FILE)


def test_another_optimizers_state_is_refused(ckpt):
    """AdamW's state loaded into SGD would fail only at the first step(). Without a recorded
    class the settings of the parameter groups tell (a recorded one: the next test)."""
    _forget_recorded_classes(ckpt)
    model, trainer = fresh_resumer()
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1)
    before = weights(model)
    with pytest.raises(CheckpointError, match=r"optimizer.pt was written by another optimizer than this run's SGD"):
        trainer.resume_state_from_dir(ckpt)
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())


def _group_settings(optimizer):
    return copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups])


@pytest.mark.parametrize("make", [
    lambda params: torch.optim.Adam(params, lr=1e-2),  # AdamW's state layout: it loaded, as AdamW
    lambda params: TensorGRaD(params, lr=1e-2),
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
], ids=["Adam", "TensorGRaD", "SGD"])
def test_a_state_of_another_optimizer_class_is_refused_naming_both(ckpt, make):
    model, trainer = fresh_resumer()
    trainer.optimizer = make(model.parameters())
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1)
    name = type(trainer.optimizer).__name__
    settings = _group_settings(trainer.optimizer)
    before = weights(model)
    with pytest.raises(CheckpointError, match=rf"optimizer.pt was written by the optimizer AdamW, not by this "
                                              rf"run's {name}: a state does not carry over to another class"):
        trainer.resume_state_from_dir(ckpt)
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())
    assert not trainer.optimizer.state and trainer.start_epoch == 0
    assert _group_settings(trainer.optimizer) == settings


@pytest.mark.parametrize("saved_with, resumed_with", [("upstream AdamW", "TensorGRaD"),
                                                      ("TensorGRaD", "upstream AdamW")])
def test_tensorgrad_and_upstreams_adamw_do_not_resume_each_others_checkpoints(tmp_path, saved_with, resumed_with):
    """Both loaded before (TensorGRaD converts upstream's AdamW state, upstream's AdamW steps on
    TensorGRaD's), but the saved parameter groups bring their settings: TensorGRaD resumed from
    upstream's AdamW ran as upstream's AdamW, compression off. A user switching optimizer on
    resume would not get the one asked for: refused, naming both, this run's settings untouched."""
    from neuralop.training import AdamW

    make = {"upstream AdamW": lambda params: AdamW(params, lr=1e-2),
            "TensorGRaD": lambda params: TensorGRaD(params, lr=1e-2, min_params=0, rank=0.5)}
    model = tiny_fno()
    optimizer = make[saved_with](model.parameters())
    train, test = tiny_data(n=8, batch_size=4)
    MixedPrecisionTrainer(model=model, n_epochs=1).train(
        train, test, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), training_loss=loss(),
        save_every=1, save_dir=tmp_path)
    model, trainer = fresh_resumer()
    trainer.optimizer = make[resumed_with](model.parameters())
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1)
    settings = _group_settings(trainer.optimizer)
    saved_class, name = type(optimizer).__name__, type(trainer.optimizer).__name__
    with pytest.raises(CheckpointError, match=rf"written by the optimizer {saved_class}, not by this run's {name}"):
        trainer.resume_state_from_dir(tmp_path)
    assert _group_settings(trainer.optimizer) == settings
    assert not trainer.optimizer.state


class _Penalty(torch.nn.Module):
    """A regularizer with state (upstream's Trainer adds ``loss`` and calls ``reset()``)."""

    def __init__(self, weight=0.1):
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight))
        self.loss = 0.0

    def reset(self):
        self.loss = 0.0


class _OtherPenalty(_Penalty):
    """Another regularizer with the same state entries: its state loads without complaint."""


def test_a_state_of_another_regularizer_class_is_refused(tmp_path):
    model = tiny_fno()
    checkpointing.save_training_files(tmp_path / "ckpt", "model", model, regularizer=_Penalty(0.5), epoch=0)
    other = _OtherPenalty()
    with pytest.raises(CheckpointError, match=r"regularizer.pt was written by the regularizer _Penalty, not by "
                                              r"this run's _OtherPenalty"):
        checkpointing.load_training_files(tmp_path / "ckpt", tiny_fno(seed=1), regularizer=other)
    assert other.weight.item() == pytest.approx(0.1)
    same = _Penalty()
    checkpointing.load_training_files(tmp_path / "ckpt", tiny_fno(seed=1), regularizer=same)
    assert same.weight.item() == pytest.approx(0.5)


class _WeightPenalty(torch.nn.Module):
    """A regularizer holding the model (an L1 penalty of its real weights): its state dict then
    carries upstream's pickled ``_metadata`` of the model, as the model's own does."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.loss = 0.0

    def reset(self):
        self.loss = 1e-3 * sum(p.abs().sum() for p in self.model.parameters() if not p.is_complex())


@pytest.mark.filterwarnings("error::UserWarning")  # its loss, a tensor with grad, is recorded without a warning
def test_a_regularizer_holding_the_model_saves_a_weights_only_state_that_resumes(tmp_path):
    """Its regularizer.pt held the model's pickled constructor record: every checkpoint of the run
    was refused at resume (as holding pickled objects), though each was written without a word."""
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    trainer.train(train, test, *optimizer_and_scheduler(model), regularizer=_WeightPenalty(model),
                  training_loss=loss(), save_every=1, save_dir=tmp_path)
    state = torch.load(tmp_path / "regularizer.pt", weights_only=True)
    assert "_metadata" not in state and any(key.startswith("model.") for key in state)
    resumed_model = tiny_fno(seed=1)
    resumed = MixedPrecisionTrainer(model=resumed_model, n_epochs=3)
    resumed.train(train, test, *optimizer_and_scheduler(resumed_model), regularizer=_WeightPenalty(resumed_model),
                  training_loss=loss(), resume_from_dir=tmp_path)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]


def test_without_recorded_classes_a_resume_compares_the_schedulers_settings(ckpt):
    """An older or upstream's checkpoint: the scheduler's settings decide (StepLR into a cosine schedule)."""
    _forget_recorded_classes(ckpt)
    model, trainer = fresh_resumer()
    trainer.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=4)
    with pytest.raises(CheckpointError, match=r"scheduler.pt was written by another learning-rate scheduler than "
                                              r"this run's CosineAnnealingLR: it has the settings"):
        trainer.resume_state_from_dir(ckpt)
    _, trainer = fresh_resumer()
    trainer.resume_state_from_dir(ckpt)  # the same classes resume
    assert trainer.start_epoch == 2


def test_an_optimizer_state_of_another_parameter_grouping_is_refused(ckpt):
    model, trainer = fresh_resumer()
    params = list(model.parameters())
    trainer.optimizer = torch.optim.AdamW([{"params": params[:3]}, {"params": params[3:]}], lr=1e-2)
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1)
    with pytest.raises(CheckpointError, match=r"optimizer.pt holds parameter groups of sizes \[\d+\]"):
        trainer.resume_state_from_dir(ckpt)


def test_a_future_format_version_is_refused(ckpt):
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    manifest["format_version"] = FORMAT_VERSION + 1
    torch.save(manifest, ckpt / MANIFEST_FILE)
    assert_refused(ckpt, rf"format_version={FORMAT_VERSION + 1}.*newer neuralop_mp")


def test_save_dir_with_foreign_files_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    train, test = tiny_data(n=8, batch_size=8)
    with pytest.raises(CheckpointError, match=r"also holds \['notes.txt'\]"):
        trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), save_every=1,
                      save_dir=tmp_path)
    assert trainer.history == []  # refused before the first epoch
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("saving", [{"save_every": 1}, {"save_best": "8_l2"}])
def test_saving_without_a_save_dir_is_refused_naming_it(saving):
    """save_dir=None ended in a TypeError from inside pathlib."""
    model = tiny_fno()
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1)
    train, test = tiny_data(n=8, batch_size=8)
    with pytest.raises(ValueError, match=r"Invalid save_dir=None: save_every and save_best write checkpoints"):
        trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), eval_losses={"l2": loss()},
                      save_dir=None, **saving)
    assert trainer.history == []


def test_bf16_checkpoint_resumed_in_float16_turns_loss_scaling_on(tmp_path):
    _, saved_trainer = train_and_save(tmp_path / "bf16", n_epochs=1, half_dtype="bfloat16")
    assert not saved_trainer.scaler.enabled
    model, trainer = fresh_resumer(n_epochs=3, half_dtype="float16")
    assert trainer.scaler.enabled
    with pytest.warns(RuntimeWarning, match="turns it on, starting from scale 65536"):
        trainer.resume_state_from_dir(tmp_path / "bf16")
    assert trainer.scaler.enabled and trainer.scaler.get_scale() == 2.0**16
    train, test = tiny_data(n=8, batch_size=4)
    trainer.train(train, test, trainer.optimizer, trainer.scheduler, training_loss=loss(),
                  resume_from_dir=tmp_path / "bf16")
    assert [h["half_dtype"] for h in trainer.history[1:]] == ["float16", "float16"]
    assert all(h["loss_scale"] > 1 for h in trainer.history[1:])


def test_upstream_trainer_checkpoint_resumes_in_ours(tmp_path):
    """Upstream's Trainer writes a pickled model file: refused with the conversion advice, and
    after the documented conversion it resumes after upstream's saved epoch."""
    model = tiny_fno(mixed_precision_layer=False)
    train, test = tiny_data(n=8, batch_size=4)
    upstream = Trainer(model=model, n_epochs=2)
    upstream.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), save_every=1,
                   save_dir=tmp_path)
    resumed_model = tiny_fno(mixed_precision_layer=False, seed=3)
    ours = MixedPrecisionTrainer(model=resumed_model, n_epochs=4)
    ours.optimizer, ours.scheduler = optimizer_and_scheduler(resumed_model)
    ours.regularizer = None
    with pytest.raises(CheckpointError, match=r"weights_only=True.*_metadata"):
        ours.resume_state_from_dir(tmp_path)
    state = torch.load(tmp_path / "model_state_dict.pt", weights_only=False)
    state.pop("_metadata")
    torch.save(state, tmp_path / "model_state_dict.pt")
    ours.resume_state_from_dir(tmp_path)
    assert ours.start_epoch == 2  # upstream saved epoch 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in resumed_model.state_dict().items()
               if torch.is_tensor(v))


def test_our_checkpoint_loads_into_upstreams_trainer(ckpt):
    """Upstream's load_training_state reads our folder (same file names, weights-only files);
    it re-trains the saved epoch, as upstream always does."""
    model = tiny_fno()
    saved_state = torch.load(ckpt / "model_state_dict.pt", weights_only=True)
    upstream = Trainer(model=model, n_epochs=4)
    upstream.optimizer, upstream.scheduler = optimizer_and_scheduler(model)
    upstream.regularizer = None
    upstream.resume_state_from_dir(ckpt)
    assert upstream.start_epoch == 1
    assert all(torch.equal(v, saved_state[k]) for k, v in model.state_dict().items() if torch.is_tensor(v))
    assert upstream.optimizer.state  # the moments came along


def test_out_of_memory_while_loading_is_not_blamed_on_the_files(tmp_path):
    """A load that runs out of memory says so; only torch's read errors name the files."""
    from neuralop_mp.training.checkpointing import load_torch_files

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.randn(3)}, path)

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory")

    def damaged():
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    with pytest.raises(torch.OutOfMemoryError):
        load_torch_files(out_of_memory, path)
    with pytest.raises(CheckpointError, match=r"weights\.pt cannot be loaded \(RuntimeError: PytorchStreamReader"):
        load_torch_files(damaged, path)


def test_a_second_train_call_is_a_new_run_whose_best_epoch_is_its_own(tmp_path):
    """Its first epoch was compared with the earlier call's epochs too: a worse restart wrote no best
    checkpoint at all (upstream's each call starts from inf), and the history held both calls."""
    model = tiny_fno()
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=2)
    trainer.train(train, test, *optimizer_and_scheduler(model, lr=1e-2), training_loss=loss(),
                  eval_losses={"l2": loss()}, save_best="8_l2", save_dir=tmp_path / "first")
    first_best = min(h["8_l2"] for h in trainer.history)
    with torch.no_grad():  # a worse start than the first run's best
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    trainer.train(train, test, *optimizer_and_scheduler(model, lr=1e-2), training_loss=loss(),
                  eval_losses={"l2": loss()}, save_best="8_l2", save_dir=tmp_path / "second")
    assert [h["epoch"] for h in trainer.history] == [0, 1]
    assert min(h["8_l2"] for h in trainer.history) > first_best
    assert (tmp_path / "second" / "best_model_state_dict.pt").is_file()
