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
  which ``--resume`` and ``neuralop-mp eval`` rebuild the same config, and its flags
  (``save_best``, the thread count it uses, ``cpu_allocator``); a resume's record
  holds from the first epoch it saved (:func:`write_pending_command`);
- ``data_processor.pt``: the data normalizers fitted on the training data (written when
  the data are loaded, before the first epoch), with which ``neuralop-mp eval`` encodes the
  test inputs and decodes the predictions without the training data; :func:`load_data_processor`
  gives them back for a user's own inference;
- ``checkpoint/``: the trainer's training state after the last finished epoch,
  which ``neuralop-mp train --resume RUN_DIR`` continues from;
- ``.lock``: while a run writes the folder, locked, holding its pid (:func:`run_folder_lock`).

Each file above is written through a temporary beside it (``.NAME.<12 hex digits>.tmp``: a file,
or a folder for a model's files), renamed into place; the one a killed run (SIGKILL) left is
removed by the next run that takes the folder's lock (:func:`remove_killed_temporaries`).
"""
import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

# the run folder names its model files as upstream's Trainer names a checkpoint's (one source)
# (and its checkpoint folder and command record: a weights file's load names the folder to resume from)
from .training.checkpointing import (BEST_MODEL_NAME as BEST_MODEL, CHECKPOINT_DIR, COMMAND_FILE, METADATA_SUFFIX,
                                     MODEL_NAME as FINAL_MODEL, OLD_CHECKPOINT_DIR, STATE_DICT_SUFFIX,
                                     CheckpointWriteError, loadable_save, run_folder_of, unwrap, write_error)
from .run_setup import removed_temporaries_line as _removed_line

RESULTS_FILE = "results.json"
DATA_PROCESSOR_FILE = "data_processor.pt"
LOSS_CURVE_FILE = "loss_curve.png"
LOCK_FILE = ".lock"


def _processor_classes():
    """``{name: class}`` of the data processors a run folder records (the loaders build no other)."""
    from neuralop.data.datasets.burgers import Burgers1dTimeDataProcessor
    from neuralop.data.transforms.data_processors import DefaultDataProcessor

    return {cls.__name__: cls for cls in (DefaultDataProcessor, Burgers1dTimeDataProcessor)}


def _upstream_stabilizer(model):
    """The stabilizer a model without mixed-precision layers applies: "tanh" where the upstream
    blocks that store one (``FNOBlocks``, ...) hold "tanh" (upstream applies it before each of
    their spectral convolutions: a run trained with ``--model.stabilizer tanh`` in full precision
    builds upstream's FNO so), None where they hold none or there is no such block; a ValueError
    naming the values where they differ (no one stabilizer to evaluate the model in)."""
    from .vocabulary import applied_stabilizer

    held = {applied_stabilizer(m.stabilizer) for m in model.modules()
            if "stabilizer" in m.__dict__ and not isinstance(m, torch.nn.ModuleList)}
    if len(held) > 1:
        raise ValueError(f"The blocks of {type(model).__name__} apply different stabilizers "
                         f"({sorted(map(str, held))}): a model is evaluated with one; set the same on every block.")
    return held.pop() if held else None


def model_precision(model):
    """``{"mode", "half_dtype", "stabilizer", "spectral_weight_dtype"}`` of a model;
    ``mode`` is "full" and ``half_dtype`` None for a model without mixed-precision layers, whose
    ``stabilizer`` is the one its upstream blocks apply (:func:`_upstream_stabilizer`)."""
    from .layers.precision_switch import get_precision_policy, mixed_precision_layers

    if not mixed_precision_layers(model):  # upstream's layers: full precision, with their blocks' stabilizer
        return {"mode": "full", "half_dtype": None, "stabilizer": _upstream_stabilizer(model),
                "spectral_weight_dtype": "complex64"}
    policy = get_precision_policy(model)
    return {"mode": policy.fno_block_precision, "half_dtype": policy.half_dtype,
            "stabilizer": policy.stabilizer, "spectral_weight_dtype": policy.spectral_weight_dtype}


def save_model(model, folder, name=FINAL_MODEL):
    """Write ``model`` with upstream's ``save_checkpoint(folder, name)`` (precision included).

    Written through a temporary folder beside the files (upstream's ``save_checkpoint`` writes in
    place), whose files, of upstream's names, are then renamed over the previous ones: a write
    that fails (a full disk) or a kill during it leaves the previous files (or none), never a
    cut-off one that a resume or ``eval`` would read.

    Returns
    -------
    dict
        ``{"state_dict": path, "metadata": path}``.

    Raises
    ------
    CheckpointWriteError
        An ``OSError`` naming the file that could not be written and a full disk
        (:func:`~neuralop_mp.training.checkpointing.write_error`); the previous files are kept.
    """
    folder = Path(folder)
    model = unwrap(model)
    if not hasattr(model, "save_checkpoint"):
        raise TypeError(f"{type(model).__name__} is not a neuralop BaseModel: it has no save_checkpoint().")
    files = {"state_dict": folder / f"{name}{STATE_DICT_SUFFIX}", "metadata": folder / f"{name}{METADATA_SUFFIX}"}
    written = folder  # what is being written, for the message of a write that fails
    try:
        folder.mkdir(parents=True, exist_ok=True)  # as upstream's save_checkpoint does
        tmp = _new_temporary_folder(folder / name)
        try:
            try:
                model.save_checkpoint(tmp, name)
            finally:  # upstream writes the weights, then the metadata: the one that failed is the last there
                written = files["metadata" if (tmp / files["metadata"].name).exists() else "state_dict"]
            # every file the save wrote (a subclass's own too), the weights last: they mark a model saved
            saved = sorted(tmp.iterdir(), key=lambda path: path.name == files["state_dict"].name)
            for path in saved:  # on disk before a rename makes any of them visible
                written = folder / path.name
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            for path in saved:
                written = folder / path.name
                os.replace(path, written)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch's writer on a full disk
        from .peak_memory import tensor_bytes

        raise write_error(written, err, "the model file", needed=tensor_bytes(model.state_dict())) from err
    return {key: str(path) for key, path in files.items()}


class RunFolderRemoved(CheckpointWriteError):
    """A run folder removed while its run wrote it (:func:`check_run_folder_present`)."""


def check_run_folder_present(run_dir):
    """Refuse to save into a run folder that was removed while the run wrote it: each save would
    otherwise create it again holding that file alone (a ``results.json`` listing files that are
    gone), and the run would end as if it had written a run. Called before every save of a run.

    Raises
    ------
    RunFolderRemoved
        A :class:`~neuralop_mp.training.checkpointing.CheckpointWriteError` (``ENOENT``) naming
        the folder: its checkpoint went with it, so there is nothing to resume from.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        error = RunFolderRemoved(f"{run_dir.absolute()} was removed while the run wrote it: stopped, and nothing is "
                                 "left to resume from (its checkpoint went with it); run the command again.")
        error.errno, error.filename = errno.ENOENT, str(run_dir)
        raise error


class FoundCheckpoint(NamedTuple):
    """A model checkpoint :func:`find_checkpoint` found: its folder and its ``NAME``. Given again
    where a path is taken (:func:`find_checkpoint`, :func:`load_model_and_precision`,
    :func:`~neuralop_mp.evaluate.evaluate_with_config`), it is used as it is: a run's final model
    is checked current once, where it is found, however many of them a caller passes it through."""

    folder: Path
    name: str


def find_checkpoint(path):
    """``(folder, name)`` (a :class:`FoundCheckpoint`) of the model checkpoint that ``path`` points at.

    ``path`` is a run folder (its final model, else its best model), a folder with a
    single ``*_state_dict.pt``, or a ``NAME_state_dict.pt`` file; a :class:`FoundCheckpoint`
    is returned as it is, neither looked up nor checked again. A folder that a crash
    between the two renames of a save left only as ``{folder}.old`` is read there, with a
    warning (:func:`~neuralop_mp.training.checkpointing.loadable_save`).

    Raises
    ------
    FileNotFoundError
        For no model there, and for a run folder's model that is not the run's last (the folder
        or its final model file named): stopped before its final save, or
        (:func:`check_final_model_current`) resumed and stopped so.
    """
    if isinstance(path, FoundCheckpoint):  # found, and checked, by the caller
        return path
    path = loadable_save(path)
    suffix = STATE_DICT_SUFFIX
    if path.is_file() and path.name.endswith(suffix):
        return _checked_model(path.parent, path.name[: -len(suffix)])
    if not path.is_dir():
        raise FileNotFoundError(f"No model checkpoint at {path}: give a run folder of `neuralop-mp train` "
                                f"or a NAME{suffix} file written by save_checkpoint.")
    for name in (FINAL_MODEL, BEST_MODEL):
        if (path / f"{name}{suffix}").is_file():
            return _checked_model(path, name)
    found = sorted(p.name[: -len(suffix)] for p in path.glob(f"*{suffix}"))
    if len(found) == 1:
        return FoundCheckpoint(path, found[0])
    # a training state (checkpoint/, or the checkpoint.old a crashed save leaves) and no model: a run
    # stopped before its final save
    if not found and any(name != RESULTS_FILE for name in run_files(path)):
        raise FileNotFoundError(_unfinished_run_message(path))
    raise FileNotFoundError(
        f"No single model checkpoint in {path}: expected {FINAL_MODEL}{suffix}"
        + (f"; found {', '.join(f + suffix for f in found)}: name one of them." if found else ".")
    )


def _checked_model(folder, name):
    """:class:`FoundCheckpoint` ``(folder, name)``, once a run folder's final model (the folder or
    the file named) is found current (:func:`check_final_model_current`): the one place that
    check runs."""
    if name == FINAL_MODEL and (folder / COMMAND_FILE).is_file():
        check_final_model_current(folder)
    return FoundCheckpoint(folder, name)


def load_model_and_precision(path, map_location="cpu", mixed_precision_layer=False):
    """Rebuild a model from a checkpoint written by ``save_checkpoint``, in its saved precision,
    and return it with that precision: a ``(model, precision)`` tuple.

    Unlike :func:`neuralop_mp.load_model` (``save_folder, save_name``; the model alone), it takes
    one path, as ``neuralop-mp eval`` does.

    Works for models written by ``neuralop-mp train`` and for upstream's own
    ``FNO(...).save_checkpoint(folder, name)`` (which runs in full precision).
    The metadata file is a pickle (upstream's format): load only checkpoints you trust.

    Parameters
    ----------
    path : str, Path or FoundCheckpoint
        See :func:`find_checkpoint`.
    map_location : str, torch.device, dict, callable or None
        As ``torch.load`` takes it; anything else is refused before a file is read
        (:func:`~neuralop_mp.training.checkpointing.check_map_location`).
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
    ValueError
        For a model whose layers (or, with upstream's layers, blocks) are in different
        precisions or stabilizers (:func:`model_precision`), naming them.
    """
    from .layers.precision_switch import mixed_precision_layers
    from .models.checkpoints import build_model, load_saved_model
    from .training.checkpointing import check_map_location

    check_map_location(map_location)  # first: a bad value is no fault of the files, nor a missing one
    folder, name = find_checkpoint(path)
    metadata_path = folder / f"{name}{METADATA_SUFFIX}"
    run_dir = run_folder_of(folder) if not metadata_path.is_file() else None
    if run_dir is not None:  # a run's training state: its weights alone, no model to rebuild them in
        finished = (run_dir / f"{FINAL_MODEL}{STATE_DICT_SUFFIX}").is_file()
        raise FileNotFoundError(f"{folder} is the training state of the run {run_dir}, not a model checkpoint: "
                                + (f"evaluate the run folder, {run_dir}." if finished
                                   else _unfinished_run_message(run_dir)))
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path} is missing: save_checkpoint writes it next to "
                                f"{name}{STATE_DICT_SUFFIX}, and the model cannot be rebuilt without it.")

    def build(metadata):  # the saved class, or the plugin's for upstream's layers where asked
        model = build_model(metadata)
        if mixed_precision_layer and not mixed_precision_layers(model):
            model = build_model(metadata, precision_policy="full")
        return model

    model = load_saved_model(folder, name, build, map_location=map_location)
    return model, model_precision(model)


def load_model(path, map_location="cpu", mixed_precision_layer=False):
    """Deprecated name of :func:`load_model_and_precision`: returns ``(model, precision)``.

    It shared its name with :func:`neuralop_mp.load_model`, which returns the model alone, so a
    caller of the one got what the other returns. Warns (``FutureWarning``) and forwards.
    """
    # FutureWarning, not DeprecationWarning: Python shows it to a script's user by default
    warnings.warn("neuralop_mp.run_folder.load_model is deprecated: use "
                  "neuralop_mp.run_folder.load_model_and_precision, which returns (model, precision) as this "
                  "did (neuralop_mp.load_model(folder, name) returns the model alone).",
                  FutureWarning, stacklevel=2)
    return load_model_and_precision(path, map_location=map_location, mixed_precision_layer=mixed_precision_layer)


def saved_state(run_dir):
    """``(folder, epoch)`` of the training state a run folder last saved: its ``checkpoint/``, or
    the ``checkpoint.old`` a crashed save leaves, and the epoch its manifest alone records;
    ``(None, None)`` when none is saved, ``(folder, None)`` when its epoch cannot be read."""
    from .training.checkpointing import MANIFEST_FILE, CheckpointError, load_weights_only, resolve_checkpoint_dir

    try:
        with warnings.catch_warnings():  # a checkpoint.old is resumed with its own warning, not read with one
            warnings.simplefilter("ignore")
            checkpoint = resolve_checkpoint_dir(Path(run_dir) / CHECKPOINT_DIR)
    except (CheckpointError, OSError):  # nothing saved
        return None, None
    try:
        return checkpoint, load_weights_only(checkpoint / MANIFEST_FILE).get("epoch")
    except (CheckpointError, OSError, AttributeError, RuntimeError, ValueError):  # saved, not readable
        return checkpoint, None


def saved_epoch(run_dir):
    """The epoch of :func:`saved_state`; None when none is saved or it cannot be read."""
    return saved_state(run_dir)[1]


def _unfinished_run_message(run_dir, model_epoch=None):
    """Why a run folder with a training state but no model file (or, ``model_epoch`` given, a model
    file of that earlier epoch) has no model of the run to evaluate, and how to get one: the run
    stopped before its final save."""
    checkpoint, epoch = saved_state(run_dir)
    checkpoint = checkpoint or Path(run_dir) / CHECKPOINT_DIR  # the folder that holds the epoch
    epoch = "an unreadable epoch" if epoch is None else f"epoch {epoch}"  # the folder is still named
    holder = run_in_progress(run_dir)
    if holder is not None:  # not stopped: still training (a resume of it would be refused)
        head = (f"No model file in {run_dir} yet" if model_epoch is None else
                f"The model file in {run_dir} is of epoch {model_epoch} ({RESULTS_FILE}'s last)")
        return (f"{head}: a neuralop-mp train ({_pid_text(holder)}) is still writing the run; "
                f"{checkpoint} holds {epoch}, the last saved. Evaluate it once that run has ended.")
    head = (f"No model file in {run_dir}: the run stopped" if model_epoch is None else
            f"The model file in {run_dir} is of epoch {model_epoch} ({RESULTS_FILE}'s last): the run, resumed "
            "since, stopped")
    return (f"{head} before its final save ({FINAL_MODEL}{STATE_DICT_SUFFIX}); "
            f"{checkpoint} holds {epoch}, the last saved. Finish the run with `neuralop-mp train --resume "
            f"{run_dir}`, which writes the model, then evaluate it.")


def run_in_progress(folder):
    """The pid (0 where it records none) of the run holding ``folder``'s lock (:func:`run_folder_lock`),
    else None: no lock file, or one no process holds (a killed run's). Asked without creating the
    file; the lock, when free, is taken and let go at once (a run starting in that instant is
    refused as a second run would be: started again, it runs)."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        with _lock_at_once(path):
            return None
    except _LockHeld as held:
        return held.pid


def results_behind(run_dir, results=None):
    """``(results' last epoch, the checkpoint's epoch)`` when the run folder's ``checkpoint/`` holds a
    later epoch than the last of its ``results.json`` (``results``: as read already), else None.

    So a ``--resume`` that trained more epochs and stopped before its final save leaves the run:
    ``results.json`` and the final model file are of the earlier end, while ``command.json`` is
    the resume's (its epochs, its precision). A ``results.json`` that is missing or records no
    epoch says nothing here (None); a damaged one raises :func:`read_results`' ValueError (naming
    it and the resume that writes it again): whether the model is current cannot be told.
    """
    if results is None:
        results = read_results(run_dir)
    epochs = recorded_epochs(results)
    last = epochs[-1] if epochs else None
    if not isinstance(last, int):
        return None
    epoch = saved_epoch(run_dir)
    return (last, epoch) if isinstance(epoch, int) and epoch > last else None


def recorded_epochs(results):
    """The epochs a run's ``results.json`` (``results``, as :func:`read_results` gives it) records,
    in order (None for an entry that is no epoch record); None where it records no history (no
    results, or a ``history`` that is no list)."""
    history = results.get("history") if isinstance(results, dict) else None
    if not isinstance(history, list):
        return None
    return [entry.get("epoch") if isinstance(entry, dict) else None for entry in history]


def check_final_model_current(run_dir):
    """Refuse the final model file of a run folder that a ``--resume`` trained past
    (:func:`results_behind`): it is not the run's model, and the run's ``command.json`` (epochs,
    precision) is no longer the one it was trained with.

    Raises
    ------
    FileNotFoundError
        As for a run stopped before its final save: the epoch the checkpoint holds, and the
        ``neuralop-mp train --resume`` that finishes the run.
    """
    behind = results_behind(run_dir)
    if behind is not None:
        raise FileNotFoundError(_unfinished_run_message(run_dir, model_epoch=behind[0]))


def write_atomic(path, write, what=""):
    """Write ``path`` with ``write(file)`` (a binary file object) through a temporary file in the
    same folder, then rename it over ``path``: a kill during the write leaves the previous file
    (or none) complete, never a partial one that a later run or ``eval`` would read.

    Raises
    ------
    CheckpointWriteError
        An ``OSError`` naming ``path`` (``what`` it is, for the message) and a full disk
        (:func:`~neuralop_mp.training.checkpointing.write_error`), for a write that failed; the
        previous file is kept and the temporary removed. A RuntimeError of ``write`` is taken
        as torch's writer's report of a failed write, as a checkpoint's is.
    """
    path = Path(path)
    tmp = None
    try:
        handle, tmp = _new_temporary(path)
        try:
            with os.fdopen(handle, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (OSError, RuntimeError) as err:
        raise write_error(path, err, what) from err
    return path


def _temporary_name(path):
    """``.<name>.<12 random hex digits>.tmp`` beside ``path``: the name of every temporary this module
    writes (:data:`_RUN_TEMPORARY` finds a run folder's)."""
    return path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")


def _new_temporary(path):
    """``(descriptor, name)`` of a new empty file :func:`_temporary_name` beside ``path``, of its own
    so that two writers never remove each other's.

    Created with mode 0666 less the umask (and the folder's default ACL), as ``open`` creates a file:
    ``tempfile.mkstemp`` creates 0600, so ``results.json`` and ``command.json`` were unreadable to the
    group of a shared run folder whose model files it could read."""
    for _ in range(tempfile.TMP_MAX):
        tmp = _temporary_name(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:  # 48 random bits taken: draw again
            continue
    raise FileExistsError(f"no free temporary file name beside {path}")


def _new_temporary_folder(path):
    """A new empty folder :func:`_temporary_name` beside ``path`` (mode 0700, as ``tempfile.mkdtemp``
    makes one), of its own as :func:`_new_temporary`'s file is: where :func:`save_model` writes a model
    named ``path.name`` before renaming its files into place."""
    for _ in range(tempfile.TMP_MAX):
        tmp = _temporary_name(path)
        try:
            tmp.mkdir(mode=0o700)
            return tmp
        except FileExistsError:  # 48 random bits taken: draw again
            continue
    raise FileExistsError(f"no free temporary folder name beside {path}")


# the temporaries a run writes in its run folder (:func:`_temporary_name`): a file of write_atomic for
# each file it writes so, a folder of save_model for each model it saves. Versions before 2026-12-06
# named the model's folder ``tempfile.mkdtemp``'s way (8 characters of [a-z0-9_]): found too.
_RUN_FILES = "|".join(map(re.escape, (COMMAND_FILE, DATA_PROCESSOR_FILE, RESULTS_FILE, LOSS_CURVE_FILE)))
_RUN_MODELS = "|".join(map(re.escape, (FINAL_MODEL, BEST_MODEL)))
_RUN_TEMPORARY = re.compile(rf"\.(?:(?P<file>{_RUN_FILES})\.[0-9a-f]{{12}}"
                            rf"|(?P<model>{_RUN_MODELS})\.(?P<draw>[0-9a-f]{{12}}|[a-z0-9_]{{8}}))\.tmp")


def _killed_run_temporary(entry):
    """Whether ``entry`` (an ``os.DirEntry`` of a run folder) is a temporary a run of this package
    writes there (:data:`_RUN_TEMPORARY`): a file of its file names, or a folder of its model names
    (one named ``tempfile.mkdtemp``'s way, as earlier versions did, holding only files of that
    model's name, as upstream's ``save_checkpoint`` writes them). A link is never one."""
    match = _RUN_TEMPORARY.fullmatch(entry.name)
    if match is None or entry.is_symlink():
        return False
    if match["file"]:
        return entry.is_file()
    if not entry.is_dir():
        return False
    if len(match["draw"]) == 12:  # this version's name: the folder is ours whatever it holds
        return True
    try:  # an earlier version's name, which a folder of the user's could have: ours by what it holds
        with os.scandir(entry.path) as inside:
            return all(inner.is_file(follow_symlinks=False) and inner.name.startswith(f"{match['model']}_")
                       for inner in inside)
    except OSError:
        return False


def remove_killed_temporaries(folder):
    """Remove the temporaries that runs killed while writing ``folder`` left in it (SIGKILL, a machine
    crash: their own cleanup never ran), and return their paths. Called by :func:`run_folder_lock`
    once it holds the folder's lock: no other run writes the folder then, so every temporary of a
    run's naming there (:func:`_killed_run_temporary`) is an earlier writer's, whose random name no
    later write would find. Other names (a user's file), links, and the checkpoint's own
    ``checkpoint.tmp`` (cleared at the next save) are left; so is a temporary that cannot be removed
    (another user's)."""
    removed = []
    try:
        with os.scandir(folder) as found:
            entries = sorted(found, key=lambda entry: entry.name)
    except OSError:  # no folder (yet), or not readable: nothing of a run's to remove
        return removed
    for entry in entries:
        if not _killed_run_temporary(entry):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # not ours to remove (another user's), or removed meanwhile
            continue
        removed.append(Path(entry.path))
    return removed


def removed_temporaries_line(removed):
    """The one line that says the temporaries ``removed`` (paths) that killed runs left were removed, in
    the words of the data cache's (:func:`neuralop_mp.data.cache.removed_temporaries_line`); a folder
    (a model's) is named with a trailing ``/``."""
    def named(path):  # a model's temporary is a folder (save_model's)
        match = _RUN_TEMPORARY.fullmatch(Path(path).name)
        return f"{path}{os.sep}" if match and match["model"] else str(path)

    return _removed_line([named(path) for path in removed], "a killed run")


def _normalizer_state(normalizer):
    if normalizer is None:
        return None
    return {"mean": normalizer.mean.detach().cpu().clone(), "std": normalizer.std.detach().cpu().clone(),
            "eps": float(normalizer.eps)}


def data_processor_state(data_processor):
    """``{"class", "in_normalizer", "out_normalizer"}`` of ``data_processor``, each normalizer
    ``{"mean", "std", "eps"}`` or None (no encoding of that side), readable with
    ``torch.load(weights_only=True)``: what ``data_processor.pt`` holds, and a trainer's checkpoint
    (``precision_state.pt``'s ``"data_processor"``). None for a processor this record cannot
    rebuild: none, another class than upstream's ``DefaultDataProcessor`` /
    ``Burgers1dTimeDataProcessor`` (a subclass, ``MGPatchingDataProcessor``, an incremental one),
    or a normalizer other than upstream's ``UnitGaussianNormalizer`` (whose encoding is its mean,
    std and eps alone)."""
    from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

    cls = _processor_classes().get(type(data_processor).__name__)
    if data_processor is None or type(data_processor) is not cls:
        return None
    normalizers = [getattr(data_processor, key, None) for key in ("in_normalizer", "out_normalizer")]
    if any(n is not None and type(n) is not UnitGaussianNormalizer for n in normalizers):
        return None
    return {"class": cls.__name__, "in_normalizer": _normalizer_state(normalizers[0]),
            "out_normalizer": _normalizer_state(normalizers[1])}


_MISSING = object()


def _normalizer_record_problem(saved):
    """What is wrong with a normalizer's record of :func:`data_processor_state`, in words; None
    for a sound one (None, or ``{"mean", "std", "eps"}`` with tensors and a number)."""
    if saved is _MISSING:
        return "missing"
    if saved is None:
        return None
    if not isinstance(saved, dict):
        return f"a {type(saved).__name__}"
    kinds = {"mean": torch.Tensor, "std": torch.Tensor, "eps": (int, float)}
    bad = [key for key, kind in kinds.items()
           if not isinstance(saved.get(key), kind) or isinstance(saved.get(key), bool)]
    return f"a dict with keys {sorted(map(str, saved))} (bad or missing: {', '.join(bad)})" if bad else None


def data_processor_from_state(state, where):
    """The data processor of a :func:`data_processor_state` record, in eval mode on the CPU;
    a ValueError naming ``where`` (the file it was read from) for a class it does not know."""
    from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

    classes = _processor_classes()
    name = state.get("class") if isinstance(state, dict) else None
    if name not in classes:
        raise ValueError(f"{where} records data processor {name!r}; allowed: {', '.join(classes)}.")
    for key in ("in_normalizer", "out_normalizer"):  # a damaged or hand-made record: one line, not a KeyError
        problem = _normalizer_record_problem(state.get(key, _MISSING))
        if problem:
            raise ValueError(f"{where} records a malformed data processor: its {key} is {problem}; allowed: None "
                             "or {'mean': tensor, 'std': tensor, 'eps': number}, as `neuralop-mp train` and "
                             "MixedPrecisionTrainer.checkpoint write it.")

    def normalizer(saved):
        return None if saved is None else UnitGaussianNormalizer(mean=saved["mean"], std=saved["std"],
                                                                 eps=saved["eps"])

    processor = classes[name](in_normalizer=normalizer(state["in_normalizer"]),
                              out_normalizer=normalizer(state["out_normalizer"]))
    processor.eval()
    return processor


def save_data_processor(data_processor, run_dir):
    """Write ``data_processor``'s fitted normalizers to ``run_dir/data_processor.pt``, atomically
    (:func:`write_atomic`), as :func:`data_processor_state` records them.

    Returns the path, or None for a processor this file cannot record (:func:`data_processor_state`).
    """
    state = data_processor_state(data_processor)
    if state is None:
        return None
    return write_atomic(Path(run_dir) / DATA_PROCESSOR_FILE, lambda f: torch.save(state, f))


def load_data_processor(run_dir):
    """The data processor a ``neuralop-mp train`` run fitted on its training data, from its run
    folder's ``data_processor.pt``, in eval mode on the CPU (``.to(device)`` to move it). A
    checkpoint folder of ``MixedPrecisionTrainer`` (``save_every`` / ``save_best``, e.g. of a script
    under ``neuralop-mp run``) has no such file: there it is the processor its training used, as
    the ``precision_state.pt`` of the trainer's own save records it
    (:func:`~neuralop_mp.models.checkpoints.trainer_record`), as ``neuralop-mp eval`` takes it.

    ``processor.preprocess({"x": x, "y": y})`` encodes a batch as the model was trained on it,
    ``processor.postprocess(model(x), {"y": y})`` decodes the predictions to physical units.

    Parameters
    ----------
    run_dir : str or Path
        A run folder of ``neuralop-mp train`` or a trainer's checkpoint folder (or a model file in
        it: in a checkpoint folder, only the trainer's own save has the record).

    Returns
    -------
    DefaultDataProcessor or Burgers1dTimeDataProcessor

    Raises
    ------
    FileNotFoundError
        For a folder with neither (a run folder of a version that did not write ``data_processor.pt``,
        a trainer's checkpoint that records no processor, a model saved by ``save_checkpoint`` alone).
    CheckpointError
        For a file torch cannot read, naming it.
    ValueError
        For a record that is no data processor this function rebuilds, naming the file.
    """
    from .models.checkpoints import trainer_record
    from .training.checkpointing import CheckpointError, checkpoint_name, load_weights_only

    run_dir, name = Path(run_dir), None
    if run_dir.is_file():
        name = next((run_dir.name[: -len(suffix)] for suffix in (STATE_DICT_SUFFIX, METADATA_SUFFIX)
                     if run_dir.name.endswith(suffix)), None)
        run_dir = run_dir.parent
    path = run_dir / DATA_PROCESSOR_FILE
    if path.is_file():
        return data_processor_from_state(load_weights_only(path), path)
    # a trainer's checkpoint folder (save_every / save_best): the processor its precision_state.pt records
    # for the trainer's own save (a folder given: whichever that is)
    if name is None:
        try:
            name = checkpoint_name(run_dir)
        except CheckpointError:  # no trainer save there
            name = None
    found = trainer_record(run_dir, name) if name is not None else None
    if found is not None:
        record, state = found
        if isinstance(state, dict) and state.get("data_processor") is not None:
            return data_processor_from_state(state["data_processor"], record)
        raise FileNotFoundError(f"{record} records no data processor (the training had none, or one it cannot "
                                f"record: a processor of another class, MGPatchingDataProcessor, ...), and {path} "
                                "is missing: the model was trained on data encoded otherwise, or raw.")
    raise FileNotFoundError(f"{path} is missing, and {run_dir} holds no trainer checkpoint recording a data "
                            f"processor: `neuralop-mp train` writes {DATA_PROCESSOR_FILE} in the run folder, "
                            f"MixedPrecisionTrainer.checkpoint records it in precision_state.pt beside its save. "
                            "A run folder of an earlier version has neither: `neuralop-mp eval` fits its "
                            "normalizers on the training data again.")


# what a run writes before its first epoch: a run stopped there left nothing to resume, and a new
# run rewrites them (command.json alone made its folder unusable: refused as a run, with nothing to resume)
_FIRST_FILES = (COMMAND_FILE, DATA_PROCESSOR_FILE)


def run_files(folder):
    """The files of ``folder`` that make it a run folder of ``neuralop-mp train`` (``checkpoint/``
    or the ``checkpoint.old`` a crashed save leaves, ``results.json``), as names; empty for a
    folder that holds no run (missing, empty, other files only, or only the ``command.json`` and
    ``data_processor.pt`` of a run stopped before its first epoch)."""
    folder = Path(folder)
    return [name for name in (CHECKPOINT_DIR, OLD_CHECKPOINT_DIR, RESULTS_FILE) if (folder / name).exists()]


def release_run_folder(folder):
    """Give back the folder a run claimed when the run stopped before saving any of itself
    (:func:`run_files` finds nothing): remove the files a run writes before its first epoch
    (``command.json``, ``data_processor.pt``; no other file, which the run did not write), then
    the folder if that left it empty. A folder that holds a run is left as it is.

    Returns
    -------
    bool
        Whether the folder was removed.
    """
    folder = Path(folder)
    if not folder.is_dir() or run_files(folder):
        return False
    for name in _FIRST_FILES:
        (folder / name).unlink(missing_ok=True)
    if any(folder.iterdir()):
        return False
    folder.rmdir()
    return True


def give_back_claimed(folders):
    """Give back the folders made for a run that was refused or stopped before it saved any of
    itself: ``folders`` innermost first, index 0 the run folder (given back by
    :func:`release_run_folder`), then the folders above it made for it (``runs/``), each removed
    only where empty. One missing is passed over (never made, or removed under the run); the first
    one left (the run folder holding a run or another file, a parent holding anything) stays, and
    so do those above it.

    Returns
    -------
    bool
        Whether the run folder was given back (removed here).
    """
    released = False
    for index, folder in enumerate(Path(folder) for folder in folders):
        if not folder.is_dir():
            continue
        if index == 0:  # the files the run wrote before its first epoch go with it
            if not release_run_folder(folder):
                break
            released = True
            continue
        try:  # made for it: the run wrote nothing there, so only an empty one goes
            folder.rmdir()
        except OSError:
            break
    return released


@contextmanager
def run_folder_lock(folder, removed=None):
    """Hold an exclusive lock on ``folder/.lock`` while the block runs (nothing where ``fcntl`` is
    missing): one run at a time writes a run folder.

    Without it a ``--resume`` (or a new run) of a folder another run is writing is accepted, and
    the two replace each other's checkpoint until one fails to rename a temporary the other
    moved. The lock is ``flock``'s: the system releases it when its process ends, a killed one
    included, so a lock file left behind never blocks a later run. The file records the pid of
    the holder, for the message of the run refused; the holder removes it when the block ends
    (a lock taken checks that its file is still the one at the path: not one removed meanwhile).

    Once the lock is held, the temporaries that killed runs left in the folder are removed
    (:func:`remove_killed_temporaries`; not without ``fcntl``, where a writer of the folder cannot be
    told from a dead one): their paths are appended to ``removed`` (a list) where one is given, for
    the caller to say; otherwise they are said in one ``RuntimeWarning``
    (:func:`removed_temporaries_line`).

    Raises
    ------
    RunSetupError
        At once (never waiting), when another process holds the lock: naming the folder and its pid.
    """
    from .run_setup import RunSetupError

    path = Path(folder) / LOCK_FILE
    while True:
        with contextlib.ExitStack() as stack:
            try:
                held = stack.enter_context(_lock_at_once(path))
            except _LockHeld as busy:
                raise RunSetupError(
                    f"{folder} is in use by another neuralop-mp train "
                    f"({_pid_text(busy.pid)}): a second run would overwrite its checkpoint. "
                    "Wait for it to end (or stop it), then resume; or give a new run another --output_dir.") from None
            if held is None:  # no fcntl: no lock
                yield
                return
            descriptor, writable = held
            if not _same_file(descriptor, path):
                continue  # its holder removed that file as it ended: lock the one at the path now
            if writable:
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"{os.getpid()}\n".encode())
            try:
                _say_removed(remove_killed_temporaries(folder), removed)
                yield
            finally:
                if writable:  # removed while held: a run that opened it meanwhile finds it gone (_same_file)
                    path.unlink(missing_ok=True)
            return


def _say_removed(swept, removed):
    """``swept`` (paths :func:`remove_killed_temporaries` removed) appended to the caller's list
    ``removed``, or, where none is given, said in one ``RuntimeWarning`` pointing at the caller's line."""
    from .caller_frames import stacklevel_outside

    if removed is not None:
        removed.extend(swept)
    elif swept:
        warnings.warn(removed_temporaries_line(swept), RuntimeWarning,
                      stacklevel=stacklevel_outside([os.path.dirname(__file__), os.path.dirname(contextlib.__file__)]))


def _same_file(descriptor, path):
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


class _LockHeld(Exception):
    """A run folder's lock that another process holds: ``pid`` as its file records it, 0 where the
    file records none (not written yet, gone, or not a number)."""

    def __init__(self, pid):
        super().__init__(_pid_text(pid))
        self.pid = pid


@contextmanager
def _lock_at_once(path):
    """Hold the lock on ``path`` (:func:`~neuralop_mp.run_setup.file_lock`, never waiting) while the
    block runs, yielding file_lock's value; where another process holds it, raise :class:`_LockHeld`
    with the pid its file records. The one probe of :func:`run_in_progress` and
    :func:`run_folder_lock`."""
    from .run_setup import file_lock

    with contextlib.ExitStack() as stack:
        try:
            held = stack.enter_context(file_lock(path, wait=False))
        except BlockingIOError:
            raise _LockHeld(_lock_holder(path)) from None
        yield held


def _lock_holder(path):
    """The pid a lock file records, or 0 (gone, not written yet, or not a number)."""
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _pid_text(pid):
    """How a message names a lock's holder: ``pid N``, or ``pid unknown`` for 0."""
    return f"pid {pid}" if pid else "pid unknown"


def read_results(run_dir):
    """The ``results.json`` of a run folder, or None when there is none.

    Raises
    ------
    ValueError
        For a file that is not JSON (cut short, edited), naming it and the resume that writes
        it again.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict):  # JSON, but not the object train writes
            raise ValueError(f"a JSON {type(results).__name__}, not the object of a run's results")
    except ValueError as err:  # UnicodeDecodeError included
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); `neuralop-mp train --resume {run_dir}` "
                         "writes it again from the run's checkpoint (a finished run trains nothing).") from err
    return results


def run_data_records(folder, data, *, recorded_only=False):
    """``{name: generation record}`` of the data the run in ``folder`` trained on: the physics its
    test files must have (a test set generated without it would take the generator's defaults,
    another equation). The training file's record in its ``results.json`` (``data_files``), else
    the records there of its other files; a run without them (stopped before its final save, or
    of an earlier version) gives the record of the training file in ``data``'s root. A training
    file of the user's own (recorded without a generation record, or found without one) gives
    ``{name: None}``: its test files must be the user's too (the loaders refuse to generate them).
    Empty when none is known (a training file no longer there, unreadable, ...). ``recorded_only``:
    from ``results.json`` alone (a resume compares the data root with it)."""
    from .data.cache import data_file, read_file_info, resolve_root
    from .data.file_checks import DataFileError
    from .data.loaders import LOADER_FILES

    prefix = LOADER_FILES[data.loader_name()][0]
    train_file = data_file(resolve_root(data.data_root), prefix, "train", data.train_resolution)
    try:
        results = read_results(folder)
    except ValueError:  # a damaged results.json: the training file still says it
        results = None
    files = (results.get("data_files") if isinstance(results, dict) else None) or []
    entries = [entry for entry in files if isinstance(entry, dict) and "record" in entry
               and (entry["record"] is None or isinstance(entry["record"], dict))]
    named = f"(as {Path(folder) / RESULTS_FILE} records it)"
    # the training file's own entry first: a record, or None for a file of the user's (whose run's test
    # files are the user's too, whatever else the load generated beside them)
    trained = [entry for entry in entries if Path(str(entry.get("file"))).name == train_file.name]
    if trained:
        return {f"{trained[0].get('file')} {named}": trained[0]["record"]}
    recorded = [entry for entry in entries if entry["record"] is not None]
    if recorded:
        return {f"{entry.get('file')} {named}": entry["record"] for entry in recorded}
    if recorded_only:  # what the run recorded, not what its data root holds now
        return {}
    try:
        meta, _ = read_file_info(train_file)
    except (DataFileError, OSError):  # missing or unreadable: nothing known of the run's physics
        return {}
    return {f"{train_file} (the run's training file)": meta}


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


def _command_record(spec, overrides, flags):
    return {"config": str(spec), "overrides": list(overrides), "flags": flags}


def _write_record(run_dir, record):
    """``command.json`` holding ``record``, written atomically (:func:`write_atomic`)."""
    text = json.dumps(record, indent=2) + "\n"
    return write_atomic(Path(run_dir) / COMMAND_FILE, lambda f: f.write(text.encode("utf-8")))


def write_command(run_dir, spec, overrides, **flags):
    """Record the config, overrides and run flags (``save_best``; from the CLI also ``threads``,
    the count the run uses, and ``cpu_allocator``, which ``--resume`` reuses unless given again)
    a run was started with.

    Written atomically (a temporary file in the same folder, then renamed over the old one):
    a resume rewrites it mid-run, and a kill during the write must leave the previous
    record, which ``--resume`` reads, complete.
    """
    return _write_record(run_dir, _command_record(spec, overrides, flags))


def write_pending_command(run_dir, spec, overrides, from_epoch, **flags):
    """Record, beside the run's current record, the command a resumed run trains with, to hold
    once the run's ``checkpoint/`` holds epoch ``from_epoch`` (:func:`read_command` picks by it).

    Written before the save of that epoch: whenever a kill comes, ``command.json`` holds the
    command of the epoch the checkpoint holds (the previous one until the save's rename, the
    resumed one from then on), with nothing written before the resumed run saves (a refused or
    stopped resume leaves the file as it was). :func:`write_command` then writes the resumed
    record alone. A run folder without a record has none to keep: nothing is written (None).
    """
    current = read_command(run_dir)
    if current is None:
        return None
    record = _command_record(current["config"], current["overrides"], current.get("flags", {}))
    record["pending"] = {**_command_record(spec, overrides, flags), "from_epoch": int(from_epoch)}
    return _write_record(run_dir, record)


def read_command(run_dir):
    """The dict :func:`write_command` wrote (``config``, ``overrides``, ``flags``), or None;
    ``overrides`` as ``parse_overrides`` reads them, an older record's included. A record
    written with a pending one (:func:`write_pending_command`) gives the pending one where the
    run's checkpoint holds its ``from_epoch`` or a later one (:func:`saved_epoch`)."""
    path = Path(run_dir) / COMMAND_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
        pending = recorded.pop("pending", None)
        if pending is not None:
            from_epoch = pending.pop("from_epoch")
            if not isinstance(from_epoch, int):
                raise TypeError(f"pending.from_epoch={from_epoch!r} is no epoch")
            epoch = saved_epoch(run_dir)
            if epoch is not None and epoch >= from_epoch:
                recorded = pending
        missing = [key for key in ("config", "overrides") if key not in recorded]
        if missing:
            raise KeyError(", ".join(missing))
        recorded["overrides"] = _readable_overrides(recorded["overrides"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # not JSON, or not what write_command writes
        raise ValueError(f"{path} is not a run record of `neuralop-mp train` (damaged or edited: "
                         f"{type(err).__name__}: {err}); a run folder's command.json holds its config, "
                         "overrides and flags.") from err
    return recorded
