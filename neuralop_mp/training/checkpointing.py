"""Checkpoint files that load with ``torch.load(weights_only=True)``.

Upstream's ``save_training_state`` writes ``{name}_state_dict.pt``,
``optimizer.pt``, ``scheduler.pt``, ``regularizer.pt`` and ``manifest.pt``. Two of
its habits break a safe resume on torch >= 2.6, where ``torch.load`` defaults to
``weights_only=True``:

- ``BaseModel.state_dict`` adds a ``_metadata`` entry holding the constructor
  arguments, which contain classes and functions (``conv_module``,
  ``non_linearity=F.gelu``): a weights-only load refuses them. We save the model's
  state dict without it (``BaseModel.load_state_dict`` does not need it).
- ``{name}_metadata.pkl`` pickles the same objects; it is only for
  ``BaseModel.from_checkpoint`` and is not written here.

We keep upstream's file names, so upstream's ``load_training_state`` reads our
model/optimizer/scheduler files too, and add one file, ``precision_state.pt``
(see :data:`PRECISION_STATE_FILE`), for the schedule position, loss scaler,
history and RNG state.
"""
import pickle
from pathlib import Path

import torch

PRECISION_STATE_FILE = "precision_state.pt"
FORMAT_VERSION = 1


def unwrap(model):
    """The module inside DistributedDataParallel / DataParallel, else the model itself."""
    return model.module if isinstance(model, (torch.nn.parallel.DistributedDataParallel,
                                              torch.nn.DataParallel)) else model


def plain_state_dict(model):
    """``model.state_dict()`` without upstream's pickled ``_metadata`` entry."""
    state = unwrap(model).state_dict()
    state.pop("_metadata", None)
    return state


def load_weights_only(path):
    """``torch.load(path, weights_only=True)`` onto the CPU, with a clear error when the
    file holds pickled Python objects (as upstream's model checkpoints do)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains pickled "
            "Python objects (upstream's BaseModel.save_checkpoint stores the constructor "
            "arguments, classes and functions included, under '_metadata'). Checkpoints written "
            "by MixedPrecisionTrainer.checkpoint() do not; to convert an upstream one, load it "
            "with weights_only=False only if you trust it, drop '_metadata' and save it again."
        ) from err


def save_training_files(save_dir, save_name, model, optimizer=None, scheduler=None,
                        regularizer=None, epoch=None, precision_state=None):
    """Write upstream's checkpoint files (weights-only loadable) plus our precision state."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"model": f"{save_name}_state_dict.pt"}
    torch.save(plain_state_dict(model), save_dir / manifest["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("regularizer", regularizer)):
        if obj is not None:
            torch.save(obj.state_dict(), save_dir / f"{name}.pt")
            manifest[name] = f"{name}.pt"
    if epoch is not None:
        manifest["epoch"] = epoch
    if precision_state is not None:
        torch.save({"format_version": FORMAT_VERSION, **precision_state}, save_dir / PRECISION_STATE_FILE)
        manifest["precision_state"] = PRECISION_STATE_FILE
    torch.save(manifest, save_dir / "manifest.pt")
    return manifest


def checkpoint_name(save_dir):
    """Upstream's rule: resume from ``best_model_*`` if present, else ``model_*``."""
    save_dir = Path(save_dir)
    for name in ("best_model", "model"):
        if (save_dir / f"{name}_state_dict.pt").exists():
            return name
    raise FileNotFoundError(
        f"No checkpoint in {save_dir}: expected best_model_state_dict.pt or model_state_dict.pt."
    )


def load_training_files(save_dir, model, optimizer=None, scheduler=None, regularizer=None):
    """Load what :func:`save_training_files` wrote into the given objects, in place.

    Returns
    -------
    manifest : dict
        Upstream's manifest (may hold ``epoch``).
    precision_state : dict or None
        The contents of ``precision_state.pt``, or None for an upstream checkpoint.
    """
    save_dir = Path(save_dir)
    save_name = checkpoint_name(save_dir)
    unwrap(model).load_state_dict(load_weights_only(save_dir / f"{save_name}_state_dict.pt"))
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("regularizer", regularizer)):
        path = save_dir / f"{name}.pt"
        if obj is not None and path.exists():
            obj.load_state_dict(load_weights_only(path))
    manifest_path = save_dir / "manifest.pt"
    manifest = load_weights_only(manifest_path) if manifest_path.exists() else {}
    state_path = save_dir / PRECISION_STATE_FILE
    precision_state = load_weights_only(state_path) if state_path.exists() else None
    return manifest, precision_state
