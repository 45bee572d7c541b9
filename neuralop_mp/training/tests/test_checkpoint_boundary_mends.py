"""Checkpoint folders at the boundary with upstream and with the file system: a folder that
upstream's ``Trainer`` went on saving into, a relative folder that does not exist, and format
versions that are no version of ours."""
import warnings

import pytest
import torch

import neuralop_mp
from neuralop_mp.training import checkpointing
from neuralop_mp.training.checkpointing import MANIFEST_FILE, PRECISION_STATE_FILE, CheckpointError

from .test_checkpoint_damage import ckpt, saved  # noqa: F401 (fixtures: a checkpoint of epoch 1, a copy of it)
from .test_checkpoint_faults import fresh_resumer
from .tiny import loss, optimizer_and_scheduler, tiny_data

pytestmark = pytest.mark.reliability


def _continue_with_upstreams_trainer(folder, n_epochs):
    """Plain neuraloperator continues the folder in place (save_dir = resume_from_dir), then the model
    file is converted as the weights-only message says (upstream's keeps pickled '_metadata')."""
    from neuralop import Trainer
    from neuralop.models import FNO

    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2,
                conv_module=MixedPrecisionSpectralConv)
    train, test = tiny_data(n=8, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(model=model, n_epochs=n_epochs, device="cpu", verbose=False).train(
            train, test, *optimizer_and_scheduler(model), training_loss=loss(), eval_losses={"l2": loss()},
            save_every=1, save_dir=folder, resume_from_dir=folder)
    path = folder / "model_state_dict.pt"
    state = torch.load(path, weights_only=False)
    state.pop("_metadata", None)
    torch.save(state, path)


def test_a_folder_upstreams_trainer_went_on_saving_into_is_refused_naming_both_epochs(ckpt):
    """Upstream's manifest lists no files: the epochs went uncompared, and the resume trained epochs 2-3
    again from precision_state.pt's epoch 1, on weights and an optimizer that had trained them."""
    _continue_with_upstreams_trainer(ckpt, n_epochs=4)
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    assert manifest["epoch"] == 3 and "files" not in manifest  # upstream's
    model, trainer = fresh_resumer(n_epochs=6)
    before = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "manifest.pt lists no files": the refusal is the point
        with pytest.raises(CheckpointError) as refused:
            trainer.resume_state_from_dir(ckpt)
    message = str(refused.value)
    assert f"{ckpt / PRECISION_STATE_FILE} is of epoch 1 but {ckpt / MANIFEST_FILE} of epoch 3" in message, message
    assert f"delete {ckpt / PRECISION_STATE_FILE} to resume after epoch 3" in message, message
    assert trainer.start_epoch == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "weights loaded by a refusal"
    # the way out the message names: without precision_state.pt it resumes as upstream's checkpoint
    (ckpt / PRECISION_STATE_FILE).unlink()
    _, trainer = fresh_resumer(n_epochs=6)
    trainer.resume_state_from_dir(ckpt)
    assert trainer.start_epoch == 4


def test_verify_checkpoint_refuses_an_older_precision_state_beside_upstreams_manifest(ckpt):
    """The check comes before the model file is read: upstream's, with its pickled '_metadata', would
    otherwise be refused first, and once converted, resumed from the older epoch."""
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    torch.save({**{key: manifest[key] for key in ("model", "optimizer", "scheduler")}, "epoch": 3},
               ckpt / MANIFEST_FILE)
    (ckpt / "model_state_dict.pt").write_bytes(b"not read")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match=r"precision_state\.pt is of epoch 1 but .*manifest\.pt of epoch 3: "
                                                  r"another trainer \(upstream's Trainer"):
            checkpointing.verify_checkpoint(ckpt)


def test_a_precision_state_of_the_manifests_epoch_still_resumes_under_upstreams_manifest(ckpt):
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    torch.save({key: manifest[key] for key in ("model", "optimizer", "scheduler", "epoch")}, ckpt / MANIFEST_FILE)
    _, trainer = fresh_resumer(n_epochs=4)
    with pytest.warns(RuntimeWarning, match="lists no files"):
        trainer.resume_state_from_dir(ckpt)
    assert trainer.start_epoch == 2


@pytest.mark.parametrize("name", ["nope", "./nope"])
def test_a_missing_relative_folder_is_named_as_missing(tmp_path, monkeypatch, name):
    """Path("nope").parent is Path("."), whose empty name made the .old lookup raise a ValueError."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"^Checkpoint folder nope does not exist\.$"):
        checkpointing.resolve_checkpoint_dir(name)
    with pytest.raises(FileNotFoundError, match="No model checkpoint"):
        neuralop_mp.load_model(name, "model")
    _, trainer = fresh_resumer()
    with pytest.raises(CheckpointError, match="Checkpoint folder nope does not exist"):
        trainer.resume_state_from_dir(name)


def test_a_relative_folder_left_as_its_old_save_still_resumes_from_it(ckpt, monkeypatch):
    monkeypatch.chdir(ckpt.parent)
    ckpt.rename(ckpt.with_name("ckpt.old"))  # a crash between the two renames of a save
    _, trainer = fresh_resumer()
    with pytest.warns(RuntimeWarning, match="ckpt is missing but ckpt.old holds its previous complete save"):
        trainer.resume_state_from_dir("ckpt")
    assert trainer.start_epoch == 2


@pytest.mark.parametrize("version", [0, "2", True, 2.0])
def test_a_format_version_that_is_none_of_ours_is_called_unknown(ckpt, version):
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    torch.save({**manifest, "format_version": version}, ckpt / MANIFEST_FILE)
    _, trainer = fresh_resumer()
    with pytest.raises(CheckpointError) as refused:
        trainer.resume_state_from_dir(ckpt)
    message = str(refused.value)
    assert f"has format_version={version!r}, an unknown format version (this neuralop_mp reads 1..2)" in message
    assert "newer" not in message


def test_a_format_version_above_ours_is_called_newer(ckpt):
    manifest = torch.load(ckpt / MANIFEST_FILE, weights_only=True)
    torch.save({**manifest, "format_version": checkpointing.FORMAT_VERSION + 1}, ckpt / MANIFEST_FILE)
    _, trainer = fresh_resumer()
    with pytest.raises(CheckpointError, match=r"format_version=3 \(this neuralop_mp reads 1\.\.2\): it was written "
                                              r"by a newer neuralop_mp"):
        trainer.resume_state_from_dir(ckpt)


def test_upstreams_own_adamw_fails_on_the_torch_adamw_state_train_saves():
    """What docs/training.md says of resuming a train checkpoint in upstream's Trainer with
    upstream's own AdamW: the state loads, its first step raises KeyError 'correct_bias' (torch's
    AdamW, which train saves, has no such group key); torch's AdamW steps on it."""
    from neuralop.training import AdamW as UpstreamAdamW

    weight = torch.nn.Parameter(torch.randn(3, 3))
    torch_adamw = torch.optim.AdamW([weight], lr=1e-3)
    weight.grad = torch.randn(3, 3)
    torch_adamw.step()
    upstream = UpstreamAdamW([weight], lr=1e-3)
    upstream.load_state_dict(torch_adamw.state_dict())
    with pytest.raises(KeyError, match="correct_bias"):
        upstream.step()
    again = torch.optim.AdamW([weight], lr=1e-3)
    again.load_state_dict(torch_adamw.state_dict())
    again.step()
