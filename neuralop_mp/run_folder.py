"""The model files of a ``neuralop-mp train`` run folder, and loading a model back from them.

A run folder holds, besides ``results.json`` and ``loss_curve.png``:

- ``model_state_dict.pt`` + ``model_metadata.pkl``: the final model, written by
  upstream's ``BaseModel.save_checkpoint(folder, "model")``; its metadata records the
  precision the model ran in, so ``neuralop_mp.load_model(folder, "model")`` (or the
  plugin class's ``from_checkpoint``) gives it back in that precision;
- ``best_model_*`` the same way for the model with the lowest test L2 at the training
  resolution (``neuralop-mp train --save_best``);
- ``command.json``: the config and overrides of the run (those of its start and of
  every ``--resume`` that added some, later values winning; paths absolute), from
  which ``--resume`` and ``neuralop-mp eval`` rebuild the same config;
- ``checkpoint/``: the trainer's training state after the last finished epoch,
  which ``neuralop-mp train --resume RUN_DIR`` continues from.
"""
import json
import os
import tempfile
from pathlib import Path

import torch

# the run folder names its model files as upstream's Trainer names a checkpoint's (one source)
from .training.checkpointing import (BEST_MODEL_NAME as BEST_MODEL, METADATA_SUFFIX, MODEL_NAME as FINAL_MODEL,
                                     STATE_DICT_SUFFIX, load_torch_files, unwrap)

CHECKPOINT_DIR = "checkpoint"
RESULTS_FILE = "results.json"
COMMAND_FILE = "command.json"


def model_precision(model):
    """``{"mode", "half_dtype", "stabilizer", "spectral_weight_dtype"}`` of a model;
    ``mode`` is "full" and ``half_dtype`` None for a model without mixed-precision layers."""
    from .layers.precision_switch import get_precision_policy, mixed_precision_layers

    if not mixed_precision_layers(model):  # upstream's layers: full precision
        return {"mode": "full", "half_dtype": None, "stabilizer": None, "spectral_weight_dtype": "complex64"}
    policy = get_precision_policy(model)
    return {"mode": policy.fno_block_precision, "half_dtype": policy.half_dtype,
            "stabilizer": policy.stabilizer, "spectral_weight_dtype": policy.spectral_weight_dtype}


def save_model(model, folder, name=FINAL_MODEL):
    """Write ``model`` with upstream's ``save_checkpoint(folder, name)`` (precision included).

    Returns
    -------
    dict
        ``{"state_dict": path, "metadata": path}``.
    """
    folder = Path(folder)
    model = unwrap(model)
    if not hasattr(model, "save_checkpoint"):
        raise TypeError(f"{type(model).__name__} is not a neuralop BaseModel: it has no save_checkpoint().")
    model.save_checkpoint(folder, name)
    return {"state_dict": str(folder / f"{name}{STATE_DICT_SUFFIX}"),
            "metadata": str(folder / f"{name}{METADATA_SUFFIX}")}


def find_checkpoint(path):
    """``(folder, name)`` of the model checkpoint that ``path`` points at.

    ``path`` is a run folder (its final model, else its best model), a folder with a
    single ``*_state_dict.pt``, or a ``NAME_state_dict.pt`` file.
    """
    path = Path(path)
    suffix = STATE_DICT_SUFFIX
    if path.is_file() and path.name.endswith(suffix):
        return path.parent, path.name[: -len(suffix)]
    if not path.is_dir():
        raise FileNotFoundError(f"No model checkpoint at {path}: give a run folder of `neuralop-mp train` "
                                f"or a NAME{suffix} file written by save_checkpoint.")
    for name in (FINAL_MODEL, BEST_MODEL):
        if (path / f"{name}{suffix}").is_file():
            return path, name
    found = sorted(p.name[: -len(suffix)] for p in path.glob(f"*{suffix}"))
    if len(found) == 1:
        return path, found[0]
    raise FileNotFoundError(
        f"No single model checkpoint in {path}: expected {FINAL_MODEL}{suffix}"
        + (f"; found {', '.join(f + suffix for f in found)}: name one of them." if found else ".")
    )


def load_model(path, map_location="cpu", mixed_precision_layer=False):
    """Rebuild a model from a checkpoint written by ``save_checkpoint``, in its saved precision.

    Works for models written by ``neuralop-mp train`` and for upstream's own
    ``FNO(...).save_checkpoint(folder, name)`` (which runs in full precision).
    The metadata file is a pickle (upstream's format): load only checkpoints you trust.

    Parameters
    ----------
    path : str or Path
        See :func:`find_checkpoint`.
    map_location : str or torch.device
    mixed_precision_layer : bool
        Build a model saved with upstream's ``SpectralConv`` as the plugin's class for
        it instead (same parameters and state dict keys), so it can run in "mixed" or
        "half".

    Returns
    -------
    model : torch.nn.Module
    precision : dict
        :func:`model_precision` of the loaded model.

    Raises
    ------
    FileNotFoundError
        For a missing checkpoint or metadata file, naming it.
    CheckpointError
        For a file that torch cannot read (truncated, overwritten) or weights that do not
        fit the model its metadata records, naming the file
        (:func:`~neuralop_mp.training.checkpointing.load_torch_files`). An error the
        model's constructor raises (a subclass's own) is no fault of the files: it passes
        as it is.
    """
    from .layers.precision_switch import mixed_precision_layers
    from .models.checkpoints import build_model, read_checkpoint_metadata

    folder, name = find_checkpoint(path)
    metadata_path = folder / f"{name}{METADATA_SUFFIX}"
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path} is missing: save_checkpoint writes it next to "
                                f"{name}{STATE_DICT_SUFFIX}, and the model cannot be rebuilt without it.")
    context = f"Cannot load the model from {folder}"
    weights = folder / f"{name}{STATE_DICT_SUFFIX}"
    metadata = load_torch_files(lambda: read_checkpoint_metadata(folder, name), metadata_path, context=context)
    # built outside load_torch_files: an error of the constructor (a subclass's own) is no fault of the files
    model = build_model(metadata)
    if mixed_precision_layer and not mixed_precision_layers(model):
        model = build_model(metadata, precision_policy="full")
    load_torch_files(lambda: model.load_checkpoint(folder, name, map_location=map_location), weights, metadata_path,
                     context=context)
    return model, model_precision(model)


def run_files(folder):
    """The files of ``folder`` that make it a run folder of ``neuralop-mp train`` (``command.json``,
    ``checkpoint/`` or the ``checkpoint.old`` a crashed save leaves, ``results.json``), as names;
    empty for a folder that holds no run (missing, empty, or other files only)."""
    folder = Path(folder)
    return [name for name in (COMMAND_FILE, CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old", RESULTS_FILE)
            if (folder / name).exists()]


def read_results(run_dir):
    """The ``results.json`` of a run folder, or None when there is none."""
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def override_tokens(overrides):
    """The command-line tokens of ``overrides`` (``(key, value)`` pairs, e.g. a dict's items)
    as ``parse_overrides`` reads them back: ``--key value``, or the one token ``--key=value``
    for a value that starts with ``--``, which would be read as the next option."""
    tokens = []
    for key, value in overrides:
        value = str(value)
        tokens += [f"--{key}={value}"] if value.startswith("--") else [f"--{key}", value]
    return tokens


def _readable_overrides(tokens):
    """A record's ``overrides`` as ``parse_overrides`` reads them: records written before
    override values starting with ``--`` were kept as one token hold them as a pair (``--name
    --exp``), in which ``--exp`` now reads as an option; such a pair is joined (``--name=--exp``).
    A record holds ``--key value`` pairs and ``--key=value`` tokens only."""
    tokens, readable = list(tokens), []
    while tokens:
        token = tokens.pop(0)
        if token.startswith("--") and "=" not in token and tokens:
            readable += override_tokens([(token[2:], tokens.pop(0))])
        else:
            readable.append(token)
    return readable


def write_command(run_dir, spec, overrides, **flags):
    """Record the config, overrides and run flags (``save_best``; from the CLI also ``threads``
    as asked and ``cpu_allocator``, which ``--resume`` reuses unless given again) a run was
    started with.

    Written atomically (a temporary file in the same folder, then renamed over the old one):
    a resume rewrites it mid-run, and a kill during the write must leave the previous
    record, which ``--resume`` reads, complete.
    """
    path = Path(run_dir) / COMMAND_FILE
    text = json.dumps({"config": str(spec), "overrides": list(overrides), "flags": flags}, indent=2) + "\n"
    # a temporary file of its own, so that two writers never remove each other's
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_command(run_dir):
    """The dict :func:`write_command` wrote (``config``, ``overrides``, ``flags``), or None;
    ``overrides`` as ``parse_overrides`` reads them, an older record's included."""
    path = Path(run_dir) / COMMAND_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
        missing = [key for key in ("config", "overrides") if key not in recorded]
        if missing:
            raise KeyError(", ".join(missing))
        recorded["overrides"] = _readable_overrides(recorded["overrides"])
    except (ValueError, KeyError, TypeError) as err:  # not JSON, or not the record write_command writes
        raise ValueError(f"{path} is not a run record of `neuralop-mp train` (damaged or edited: "
                         f"{type(err).__name__}: {err}); a run folder's command.json holds its config, "
                         "overrides and flags.") from err
    return recorded
