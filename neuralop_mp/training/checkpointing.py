"""Checkpoint folders that are complete or absent, verified before anything is loaded.

Layout: a checkpoint is one folder holding upstream's files
(``{name}_state_dict.pt``, ``optimizer.pt``, ``scheduler.pt``, ``regularizer.pt``,
``manifest.pt``) plus ``precision_state.pt`` (schedule position, loss scaler,
history, RNG state). Upstream's ``load_training_state`` reads it as is.

Crash safety: the folder is written under a temporary sibling name
(``{folder}.tmp``) and renamed into place once every file is on disk, so a
crash while writing leaves the previous checkpoint untouched (or, between the
two renames, under ``{folder}.old``, which resume, and a model load, then use with a
warning: :func:`resolve_checkpoint_dir`, :func:`loadable_save`). A write
that fails (a full disk) removes the partial ``{folder}.tmp`` and raises
:class:`CheckpointWriteError` naming the file, and a full disk with its free space
(:func:`write_error`, the rule of every file a run writes).

Verification (:func:`verify_checkpoint`) runs before anything is loaded: the
manifest records ``format_version``, the epoch and, per file, its size and
SHA-256, and the class of the optimizer, scheduler and regularizer that wrote
their states. A missing file, a file of another size or checksum (truncated, random
bytes, or left by another epoch), an unknown format version, an optimizer /
scheduler file that the resuming run needs but the checkpoint lacks, or a state
written by another class than the resuming run's, each raise
:class:`CheckpointError` naming the file.

Weights-only loading: ``BaseModel.state_dict`` adds a ``_metadata`` entry holding
constructor arguments (classes and functions), which ``torch.load(weights_only=True)``
refuses; we save the model's state dict without it.
"""
import errno
import functools
import hashlib
import os
import pickle
import shlex
import shutil
import warnings
import zipfile
from pathlib import Path

import torch

from ..caller_frames import stacklevel_outside
from ..optim.settings import BOOKKEEPING_KEYS
from ..run_records import human_bytes
from ..vocabulary import public_name
from ..wrapped_module import unwrap

# upstream's names, which its load_training_state reads: Trainer.checkpoint saves the model as
# "best_model" with save_best, else "model", and BaseModel.save_checkpoint(folder, name) writes
# f"{name}{STATE_DICT_SUFFIX}" and f"{name}{METADATA_SUFFIX}"
MODEL_NAME, BEST_MODEL_NAME = "model", "best_model"
STATE_DICT_SUFFIX, METADATA_SUFFIX = "_state_dict.pt", "_metadata.pkl"
PRECISION_STATE_FILE = "precision_state.pt"
MANIFEST_FILE = "manifest.pt"
# a run folder of `neuralop-mp train` (neuralop_mp.run_folder): its checkpoint folder and its command record
CHECKPOINT_DIR = "checkpoint"
COMMAND_FILE = "command.json"
FORMAT_VERSION = 2
# Format 1 (before manifests listed files) is still read, with a warning: it cannot be verified.
READABLE_FORMAT_VERSIONS = (1, 2)
_STATE_FILES = ("optimizer", "scheduler", "regularizer")


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be resumed from safely (the message names the file)."""


class CheckpointWriteError(OSError):
    """A checkpoint, or another file of a run (its model files, records, loss curve), that could not
    be written (a full disk, a lost mount): the previous one is kept. ``filename`` is the file (or
    folder) being written, ``errno`` the error's (``ENOSPC`` where :func:`write_error` finds the disk
    full, which torch's writer does not say: it raises a RuntimeError without one)."""

    def __str__(self):  # the message alone: OSError's would be "[Errno N] None: 'filename'"
        return str(self.args[0])


def plain_state_dict(model):
    """``model.state_dict()`` without upstream's pickled ``_metadata`` entry."""
    state = unwrap(model).state_dict()
    state.pop("_metadata", None)
    return state


def _named(paths, one, several):
    """``"a is ..."`` or ``"a and b are ..."``: the paths, then the phrase for their number."""
    return f"{' and '.join(map(str, paths))} {one if len(paths) == 1 else several}"


def load_torch_files(load, *paths, context=None):
    """``load()``, which reads the files ``paths`` that ``torch.save`` wrote, with a
    :class:`CheckpointError` naming the file that cannot be read.

    ``torch.save`` writes zip archives: a file of ``paths`` that is not one (truncated, or
    overwritten with other bytes) is refused by name before ``load`` runs. An error that
    torch raises after (a damaged archive, weights that do not fit) names every file of
    ``paths``: torch does not say which one it was reading. A :class:`CheckpointError` of
    ``load`` passes as it is, and so does ``torch.OutOfMemoryError`` (no fault of the files). ``context`` ("Cannot load the model from DIR") starts the
    message.
    """
    lead = f"{context}: " if context else ""
    damaged = [path for path in paths if Path(path).is_file() and not zipfile.is_zipfile(path)]
    if damaged:
        what = _named(damaged, "is not a readable torch file: not a zip archive",
                      "are not readable torch files: not zip archives")
        raise CheckpointError(f"{lead}{what} (truncated or overwritten with other bytes).")
    try:
        return load()
    except (CheckpointError, torch.OutOfMemoryError):  # out of memory: no fault of the files
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        # a damaged archive or weights that do not fit the model: torch's own words say which
        what = _named(paths, "cannot be loaded", "cannot be loaded together")
        raise CheckpointError(f"{lead}{what} ({type(err).__name__}: {err}).") from err


MAP_LOCATION_KINDS = ("None", "a device (torch.device, or a name such as 'cpu', 'cuda', 'cuda:0')",
                      "a dict of location names to device names", "a callable (storage, location)")


def check_map_location(map_location):
    """``map_location`` if ``torch.load`` can use it: None, a device (a ``torch.device`` or a name
    ``torch.device`` takes, on a CUDA device this machine has), a dict of location names to device
    names, or a callable. Otherwise a ValueError or TypeError naming it, its value and these
    kinds, before any file is read: torch would fail inside the load, and the error would be
    blamed on the checkpoint's files."""
    allowed = "; allowed values: " + ", ".join(MAP_LOCATION_KINDS) + "."
    if map_location is None or callable(map_location):
        return map_location
    if isinstance(map_location, dict):
        for name in map_location.values():
            if not isinstance(name, (str, torch.device)):
                raise TypeError(f"Invalid map_location={map_location!r}: its value {name!r} is no device "
                                f"name{allowed}")
            _device(map_location, name, allowed)
        return map_location
    if not isinstance(map_location, (str, torch.device)):
        raise TypeError(f"Invalid map_location={map_location!r} ({type(map_location).__name__}){allowed}")
    _device(map_location, map_location, allowed)
    return map_location


def _device(map_location, name, allowed):
    """``name`` (part of ``map_location``) as a torch.device, refused where torch cannot place a
    tensor there: no such device name, or a CUDA device this machine lacks."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"Invalid map_location={map_location!r}: {name!r} is no device name{allowed}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"Invalid map_location={map_location!r}: {name!r} is not available on this machine "
                             f"({count} CUDA device{'' if count == 1 else 's'} visible); load onto 'cpu' or a "
                             "device it has.")
    return device


def load_weights_only(path):
    """``torch.load(path, weights_only=True)`` onto the CPU, with a clear error when the
    file holds pickled Python objects (as upstream's model checkpoints do) or is not a
    torch file at all (:func:`load_torch_files`)."""
    def load():
        try:
            return torch.load(Path(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # of a zip archive: not damaged, but not weights only
            lead = (f"{path} cannot be loaded with torch.load(weights_only=True): it contains pickled "
                    "Python objects (upstream's BaseModel.save_checkpoint stores the constructor "
                    "arguments, classes and functions included, under '_metadata').")
            run_checkpoint = _checkpoint_of_run_folder_holding(path)
            if run_checkpoint is not None:  # a run's own model beside its checkpoint/: the recipe leads nowhere
                raise CheckpointError(
                    f"{lead} It is a model that a run of `neuralop-mp train` saved in its run folder "
                    f"{run_checkpoint.parent}; the training state to resume from is its {run_checkpoint.name}/ "
                    f"folder: resume_from_dir={str(run_checkpoint)!r} (from the command line: neuralop-mp train "
                    f"--resume {shlex.quote(str(run_checkpoint.parent))}).") from err
            raise CheckpointError(
                f"{lead} Checkpoints written by MixedPrecisionTrainer.checkpoint() do not; to convert an upstream "
                "one, load it with weights_only=False only if you trust it, drop '_metadata' and save it again."
            ) from err

    return load_torch_files(load, path)


def run_folder_of(save_dir):
    """The run folder of ``neuralop-mp train`` whose checkpoint folder ``save_dir`` is (its
    ``checkpoint/`` or ``checkpoint.old``, beside the run's ``command.json``), else None: the one
    rule of where a run keeps its training state."""
    folder = Path(save_dir).absolute()
    if folder.name in (CHECKPOINT_DIR, OLD_CHECKPOINT_DIR) and (folder.parent / COMMAND_FILE).is_file():
        return folder.parent
    return None


def _checkpoint_of_run_folder_holding(path):
    """The ``checkpoint/`` folder of the run folder of ``neuralop-mp train`` that holds the file
    ``path`` at its top (beside its ``command.json``: the run's final or best model), else None."""
    checkpoint = Path(path).absolute().parent / CHECKPOINT_DIR
    return checkpoint if checkpoint.is_dir() and run_folder_of(checkpoint) is not None else None


def file_digest(path):
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def previous_save_dir(save_dir):
    """The folder that holds the previous complete save of ``save_dir`` while a save renames
    (``{save_dir}.old``): what a crash between the two renames leaves."""
    save_dir = Path(save_dir)
    if not save_dir.name:  # "." (the parent of a bare relative name) has no name to extend: its own
        save_dir = save_dir.absolute()
    return save_dir.with_name(save_dir.name + ".old")


OLD_CHECKPOINT_DIR = previous_save_dir(CHECKPOINT_DIR).name  # what a crash during a run's save leaves


def loadable_save(path, action="loading"):
    """``path`` (a save folder, or a file in one) to load a model from: as it is, or, where a crash
    between the two renames of a save left the folder only as ``{folder}.old``
    (:func:`previous_save_dir`), the same path in that folder, with a warning saying ``action``
    ("resuming" for :func:`resolve_checkpoint_dir`). A path that is missing either way is
    returned as it is, for its loader to say so."""
    path = Path(path)
    if path.exists():
        return path
    for folder, inside in ((path, ()), (path.parent, (path.name,))):
        if folder.exists():  # "." and "/", which exist, first: they have no previous save
            continue
        old = previous_save_dir(folder).joinpath(*inside)
        if previous_save_dir(folder).is_dir() and old.exists():
            package = Path(__file__).parents[1]  # the warning names the caller's line
            warnings.warn(f"{folder} is missing but {previous_save_dir(folder)} holds its previous complete save "
                          f"(a crash between the two renames of a save); {action} from it.", RuntimeWarning,
                          stacklevel=stacklevel_outside([package, *(package / sub for sub in ("models", "training"))]))
            return old
    return path


def _temporary_and_old(save_dir):
    return save_dir.with_name(save_dir.name + ".tmp"), previous_save_dir(save_dir)


def save_training_files(save_dir, save_name, model, optimizer=None, scheduler=None,
                        regularizer=None, epoch=None, precision_state=None):
    """Write a complete checkpoint folder at ``save_dir``, atomically (see module docstring).

    Returns
    -------
    dict
        The manifest written to ``manifest.pt``.
    """
    save_dir = Path(save_dir)
    tmp_dir, old_dir = _temporary_and_old(save_dir)
    objects = {"model": (f"{save_name}{STATE_DICT_SUFFIX}", plain_state_dict(model))}
    for name, obj in zip(_STATE_FILES, (optimizer, scheduler, regularizer)):
        if obj is not None:
            # a module holding an upstream model (a regularizer of its weights) carries its pickled
            # _metadata too, which a weights-only load refuses
            objects[name] = (f"{name}.pt", plain_state_dict(obj) if isinstance(obj, torch.nn.Module)
                             else obj.state_dict())
    if precision_state is not None:
        objects["precision_state"] = (PRECISION_STATE_FILE,
                                      {"format_version": FORMAT_VERSION, **precision_state})
    # the classes that wrote the states (check_state_class): a state does not say which class it is
    manifest = {"format_version": FORMAT_VERSION, "epoch": epoch, "files": {},
                "classes": {name: type(obj).__name__
                            for name, obj in zip(_STATE_FILES, (optimizer, scheduler, regularizer)) if obj is not None}}
    path = tmp_dir  # what is being written, for the message of a write that fails
    try:
        if tmp_dir.exists():  # left by a crash during an earlier write: never complete
            _remove_tree(tmp_dir)
        tmp_dir.mkdir(parents=True)
        for role, (filename, payload) in objects.items():
            path = tmp_dir / filename
            torch.save(payload, path)
            manifest[role] = filename  # upstream's manifest keys
            manifest["files"][filename] = {"size": path.stat().st_size, "sha256": file_digest(path), "epoch": epoch}
        path = tmp_dir / MANIFEST_FILE
        torch.save(manifest, path)
        path = tmp_dir
        _fsync_folder(tmp_dir)
    # RuntimeError: torch.save's writer reports a full disk so; nothing else here raises one
    except BaseException as err:  # a Ctrl-C or SIGTERM too: no partial temporary left behind
        _remove_tree(tmp_dir, ignore_errors=True)  # incomplete, and save_dir not touched yet
        if isinstance(err, (OSError, RuntimeError)):
            from ..peak_memory import tensor_bytes

            # the whole folder must fit beside the previous one: what a full disk is told by
            raise write_error(path, err, needed=tensor_bytes([payload for _, payload in objects.values()])) from err
        raise
    if save_dir.exists():
        _check_replaceable(save_dir)
    try:  # a failed rename leaves save_dir, or else old_dir (resolve_checkpoint_dir), complete
        if save_dir.exists():
            path = old_dir
            if old_dir.exists():
                _remove_tree(old_dir)
            os.replace(save_dir, old_dir)
        path = save_dir
        os.replace(tmp_dir, save_dir)
    except OSError as err:
        raise write_error(path, err) from err
    if old_dir.exists():
        _remove_tree(old_dir)
    return manifest


def _remove_tree(path, ignore_errors=False):
    """``shutil.rmtree(path)``, raising a Ctrl-C (or SIGTERM) that stopped it as itself.

    CPython 3.11's ``rmtree`` closes a descriptor twice when interrupted, and the ``OSError``
    (Bad file descriptor) of the second close replaces the ``KeyboardInterrupt``, which a
    command's interrupt handler would then miss (a traceback instead of what is kept).
    """
    try:
        shutil.rmtree(path, ignore_errors=ignore_errors)
    except OSError as error:
        if isinstance(error.__context__, KeyboardInterrupt):
            raise error.__context__ from None
        raise


def save_model_metadata(save_dir, save_name, model):
    """Write ``{save_name}_metadata.pkl`` into the checkpoint folder ``save_dir`` as upstream's
    ``BaseModel.save_checkpoint`` writes it (the constructor arguments the model recorded), so
    that ``Model.from_checkpoint(save_dir, save_name)`` rebuilds the model, as it does from
    the folders upstream's ``Trainer`` saves.

    Written beside the checkpoint, outside its manifest: resuming never reads it (it holds
    pickled classes and functions, which a weights-only load refuses).

    Returns
    -------
    Path or None
        The file written; None for a model that records no constructor arguments (not a
        neuralop ``BaseModel``), as upstream's ``Trainer`` then writes none either.
    """
    init_kwargs = getattr(unwrap(model), "_init_kwargs", None)
    if init_kwargs is None:
        return None
    path = Path(save_dir) / f"{save_name}{METADATA_SUFFIX}"
    try:
        torch.save(init_kwargs, path)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch's writer on a full disk
        raise write_error(path, err) from err
    return path


#: free bytes under which a write that failed without saying why (torch's writer: a RuntimeError,
#: no errno) is taken to have met a full disk, whatever it was writing
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(path):
    """The bytes an unprivileged user may still write on the file system of ``path`` (of the nearest
    folder above it that exists); None where it cannot be asked."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:  # not there (yet), or not a folder: ask the one above
            continue
    return None


def write_error(path, err, what="the checkpoint file", needed=None):
    """The :class:`CheckpointWriteError` of ``err``, raised while writing ``path`` (``what`` it is):
    one rule for every file a run writes (checkpoint, model files, run records, plots).

    A full disk is said so, with the free space of ``path``'s file system, and the error's
    ``errno`` is then ``ENOSPC``: when ``err`` is ENOSPC, or when it carries no errno (torch's
    writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] unexpected
    pos``) and less is free than ``needed`` (the bytes being written, where known) or
    :data:`NEARLY_FULL_BYTES`.
    """
    code = getattr(err, "errno", None)
    free = free_bytes(path)
    full = code == errno.ENOSPC or (code is None and free is not None
                                    and free < max(needed or 0, NEARLY_FULL_BYTES))
    room = f": the disk is full, {human_bytes(free)} free on its file system" if full and free is not None else \
        (": the disk is full" if full else "")
    error = CheckpointWriteError(f"could not write {what + ' ' if what else ''}{path}{room} ({err})")
    error.errno, error.filename = errno.ENOSPC if full else code, str(path)
    return error


def _fsync_folder(folder):
    """Flush every file of ``folder`` to disk before the rename makes it visible."""
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


# the model files of a checkpoint: ours and upstream's
_MODEL_FILES = tuple(f"{name}{suffix}" for name in (MODEL_NAME, BEST_MODEL_NAME)
                     for suffix in (STATE_DICT_SUFFIX, METADATA_SUFFIX))


def _known_file(name):
    # by exact name: another model saved in the folder (``pretrained_state_dict.pt``) is not
    # a checkpoint file, and replacing the folder would delete it
    return name in (MANIFEST_FILE, PRECISION_STATE_FILE, *_MODEL_FILES, *(f"{n}.pt" for n in _STATE_FILES))


def _check_replaceable(save_dir):
    """Refuse to replace a folder that holds anything but checkpoint files."""
    if not save_dir.is_dir():
        raise CheckpointError(f"Checkpoint path {save_dir} exists and is not a folder.")
    foreign = sorted(p.name for p in save_dir.iterdir() if not _known_file(p.name))
    if foreign:
        raise CheckpointError(
            f"Checkpoint folder {save_dir} also holds {foreign[:5]}, which are not checkpoint files; "
            "a checkpoint replaces its whole folder. Choose a folder used only for checkpoints."
        )


def check_save_dir(save_dir):
    """Fail before training when ``save_dir`` could not take a checkpoint: it is not a folder,
    holds other files, or its parent is not writable; a ValueError for no folder at all."""
    if not isinstance(save_dir, (str, os.PathLike)) or not str(save_dir):
        raise ValueError(f"Invalid save_dir={save_dir!r}: save_every and save_best write checkpoints into a "
                         "folder; give its path.")
    from ..run_setup import file_in_the_way

    save_dir = Path(save_dir)
    if save_dir.exists():
        _check_replaceable(save_dir)
    blocker = file_in_the_way(save_dir.parent)
    if blocker is not None:  # not "not writable": no permission would help
        raise CheckpointError(f"Cannot write checkpoints to {save_dir}: {blocker} is a file, not a folder.")
    parent = save_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"Cannot write checkpoints to {save_dir}: {parent} is not writable.")


def checkpoint_name(save_dir):
    """Upstream's rule: resume from ``best_model_*`` if present, else ``model_*``."""
    save_dir = Path(save_dir)
    for name in (BEST_MODEL_NAME, MODEL_NAME):
        if (save_dir / f"{name}{STATE_DICT_SUFFIX}").exists():
            return name
    raise CheckpointError(f"No checkpoint in {save_dir}: expected {BEST_MODEL_NAME}{STATE_DICT_SUFFIX} or "
                          f"{MODEL_NAME}{STATE_DICT_SUFFIX}.")


def resolve_checkpoint_dir(save_dir):
    """``save_dir``, or ``{save_dir}.old`` when a crash came between the two renames of a save."""
    save_dir = loadable_save(save_dir, action="resuming")
    if not save_dir.is_dir():
        raise CheckpointError(f"Checkpoint folder {save_dir} does not exist.")
    return save_dir


def verify_checkpoint(save_dir, require=()):
    """Check a checkpoint folder completely, loading no state (but the model file and
    ``precision_state.pt`` of a checkpoint without checksums, whose only check is that
    they read).

    Parameters
    ----------
    save_dir : Path
    require : iterable of str
        Roles (``"optimizer"``, ``"scheduler"``, ``"regularizer"``) the resuming run
        needs: a checkpoint without them would silently start them fresh.

    Returns
    -------
    manifest : dict
        The manifest; ``{}`` for an upstream checkpoint without one.

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong with it.
    """
    manifest, _ = _verify(save_dir, require)
    return manifest


def check_format_version(version, path):
    """Refuse a ``format_version`` (recorded in ``path``) that this version does not read: one
    above :data:`FORMAT_VERSION` was written by a newer neuralop_mp; any other (0, "2", None) is
    no format of ours."""
    if version in READABLE_FORMAT_VERSIONS and isinstance(version, int) and not isinstance(version, bool):
        return
    reads = f"this neuralop_mp reads {READABLE_FORMAT_VERSIONS[0]}..{READABLE_FORMAT_VERSIONS[-1]}"
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version={version!r} ({reads}): it was written by a newer "
                              "neuralop_mp; upgrade to resume it.")
    raise CheckpointError(f"{path} has format_version={version!r}, an unknown format version ({reads}): "
                          "damaged, or not written by neuralop_mp.")


def check_state_epoch(save_dir, manifest, precision_state):
    """Refuse a ``precision_state.pt`` of another epoch than the ``manifest`` records, where it
    records one (upstream's always does).

    Our manifest lists the files' checksums, so a mismatch there is a damaged folder. Upstream's
    manifest lists none: a folder that upstream's ``Trainer`` went on saving into (``save_dir`` and
    ``resume_from_dir`` the same) holds its later weights, optimizer and scheduler and our older
    ``precision_state.pt``, whose epoch would train the epochs between again, on weights and an
    optimizer state that already trained them, with the learning rate ahead of the history."""
    saved, recorded = precision_state.get("epoch"), manifest.get("epoch")
    if saved == recorded or (recorded is None and manifest.get("files") is None):  # upstream's without an epoch
        return
    save_dir = Path(save_dir)
    state_path, manifest_path = save_dir / PRECISION_STATE_FILE, save_dir / MANIFEST_FILE
    if manifest.get("files") is not None or not (isinstance(saved, int) and isinstance(recorded, int)
                                                 and saved < recorded):
        raise CheckpointError(f"{state_path} is of epoch {saved} but the manifest of epoch {recorded}.")
    raise CheckpointError(
        f"{state_path} is of epoch {saved} but {manifest_path} of epoch {recorded}: another trainer (upstream's "
        f"Trainer, which writes no {PRECISION_STATE_FILE}) saved epochs {saved + 1}-{recorded} into the folder "
        f"after it, and resuming from epoch {saved + 1} would train them again on weights and an optimizer state "
        f"that already trained them. Continue with that trainer, or delete {state_path} to resume after epoch "
        f"{recorded} as an upstream checkpoint (MixedPrecisionTrainer; history, loss scale and RNG state start "
        f"fresh; `neuralop-mp train --resume` needs the file: start a new run instead).")


def _verify(save_dir, require):
    """:func:`verify_checkpoint`, returning also the files it read (``{"model": ..., "precision_state":
    ...}``, None where not read) for :func:`load_training_files`, which then reads each file once."""
    save_dir = Path(save_dir)
    save_name = checkpoint_name(save_dir)
    manifest_path, state_path = save_dir / MANIFEST_FILE, save_dir / PRECISION_STATE_FILE
    manifest = load_weights_only(manifest_path) if manifest_path.exists() else {}
    read = {"model": None, "precision_state": None}
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path} does not hold a manifest dict (got {type(manifest).__name__}).")
    files = manifest.get("files")
    if files is None and state_path.exists():  # no checksums: its only check is that it reads
        read["precision_state"] = load_weights_only(state_path)
    ours = state_path.exists() or "format_version" in manifest
    # the manifest's version, else precision_state.pt's (which records it too), else 1 for ours
    version, version_path = manifest.get("format_version"), manifest_path
    if version is None and isinstance(read["precision_state"], dict):
        version, version_path = read["precision_state"].get("format_version"), state_path
    if version is None and ours:
        version = 1
    if version is not None:
        check_format_version(version, version_path)
    if isinstance(read["precision_state"], dict):  # read: no file list (upstream's manifest), before the model file
        check_state_epoch(save_dir, manifest, read["precision_state"])
    if files is not None:
        for filename, entry in files.items():
            path = save_dir / filename
            if not path.exists():
                raise CheckpointError(f"{path} is listed in {manifest_path} but missing: the checkpoint is incomplete.")
            size = path.stat().st_size
            if size != entry["size"]:
                raise CheckpointError(
                    f"{path} has {size} bytes but the manifest (epoch {manifest.get('epoch')}) recorded "
                    f"{entry['size']}: truncated, overwritten or left by another epoch.")
            if file_digest(path) != entry["sha256"]:
                raise CheckpointError(
                    f"{path} does not match its checksum in {manifest_path} (epoch {manifest.get('epoch')}): "
                    "corrupted, or written by another epoch than the manifest.")
        if f"{save_name}{STATE_DICT_SUFFIX}" not in files:
            raise CheckpointError(f"{save_dir / (save_name + STATE_DICT_SUFFIX)} is not listed in {manifest_path}.")
    else:
        if ours and version >= 2:
            # warned, not refused: precision_state.pt still holds the epoch, history and RNG state, so the
            # resume continues exactly; only the check against the checksums is lost
            warnings.warn(
                f"{manifest_path} {'lists no files' if manifest_path.exists() else 'is missing'}, though "
                f"{version_path} records format_version {version}, whose manifest lists every file's size and "
                "SHA-256: the checkpoint cannot be verified, only read (as a format-1 checkpoint).",
                RuntimeWarning, stacklevel=3)
        elif ours:
            warnings.warn(f"{save_dir} is a format-1 checkpoint without file checksums; it cannot be verified.",
                          RuntimeWarning, stacklevel=3)
        read["model"] = load_weights_only(save_dir / f"{save_name}{STATE_DICT_SUFFIX}")  # no checksum: readable
    for role in require:
        if not (save_dir / f"{role}.pt").exists():
            raise CheckpointError(
                f"{save_dir / (role + '.pt')} is missing: resuming would start the {role} from scratch. "
                f"Pass {role}=None to resume without it, or use a complete checkpoint.")
    return manifest, read


def check_model_state(model, state, path):
    """Refuse a model state dict of another architecture before copying any tensor
    (``load_state_dict`` copies matching entries before it reports missing ones)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    expected = {k: v for k, v in plain_state_dict(model).items() if torch.is_tensor(v)}
    saved = {k: v for k, v in state.items() if k != "_metadata"}
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    shapes = [f"{k}: saved {tuple(saved[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in saved and torch.is_tensor(saved[k]) and saved[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path} is the checkpoint of another model than {type(model).__name__}: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, shape mismatches {shapes[:5]}.")


def check_n_modes_state(model, record, path, key="n_modes"):
    """Refuse, before anything is loaded, a ``precision_state.pt`` whose Fourier modes (``key``:
    ``n_modes`` or ``n_modes_at_start``, by module name) do not fit ``model``: a module it names that
    the model lacks, or another number of spatial dimensions."""
    from ..models.mixed_precision_models import check_n_modes_record  # models import this module

    try:
        check_n_modes_record(model, record, f"{key} of {path}")
    except ValueError as err:
        raise CheckpointError(f"{path} is the checkpoint of another model than {type(unwrap(model)).__name__}: "
                              f"{err}") from None


_ROLE_WORDS = {"scheduler": "learning-rate scheduler"}  # in messages; the others by their role


def _upstream_adamw():
    """neuraloperator's own ``AdamW`` class (the plugin's stand-in, while it is active, subclasses it)."""
    from neuralop.training import adamw

    return next(c for c in adamw.AdamW.__mro__ if c.__module__ == adamw.__name__)


def class_text(cls):
    """An optimizer class named as it is imported (:func:`~neuralop_mp.vocabulary.public_name`):
    ``torch.optim.AdamW``, ``upstream neuralop.training.AdamW`` (two classes of one name: upstream's
    is said so), ``neuralop_mp.optim.TensorGRaD``."""
    upstream = "upstream " if cls.__module__ == "neuralop.training.adamw" else ""
    return upstream + public_name(f"{cls.__module__}.{cls.__qualname__}")


@functools.lru_cache(maxsize=None)
def _known_optimizer_settings():
    """``{class: settings of its parameter groups}`` of the optimizers a checkpoint of ours or
    upstream's is written by (torch's Adam has AdamW's settings: told apart by the recorded name)."""
    from ..optim.tensorgrad import TensorGRaD

    param = torch.nn.Parameter(torch.zeros(1))
    classes = (torch.optim.AdamW, torch.optim.Adam, _upstream_adamw(), TensorGRaD)
    return {cls: frozenset(cls([param]).param_groups[0]) - _OPTIMIZER_BOOKKEEPING for cls in classes}


def _saved_writer(state, saved_class):
    """The optimizer class whose parameter groups hold exactly the settings of ``state``'s (and
    whose name is ``saved_class``, where the manifest records one); None when none or several do."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not groups:
        return None
    settings = frozenset(groups[0]) - _OPTIMIZER_BOOKKEEPING
    found = [cls for cls, known in _known_optimizer_settings().items()
             if known == settings and saved_class in (None, cls.__name__)]
    return found[0] if len(found) == 1 else None


def _writer_text(optimizer, state, saved_class):
    """`` It was written by X; this run's optimizer is Y.`` where the saved state's settings tell
    its writer X exactly and this run's Y is another class (two classes may share a name:
    torch's and upstream's AdamW); "" otherwise."""
    writer = _saved_writer(state, saved_class)
    if writer is None or isinstance(optimizer, writer):
        return ""
    text = f" It was written by {class_text(writer)}; this run's optimizer is {class_text(type(optimizer))}."
    if writer is torch.optim.AdamW and type(optimizer).__module__ == "neuralop.training.adamw":
        # what `neuralop-mp run` wrote before it kept the scripts' own AdamW
        text += (" Under `neuralop-mp run` (or neuralop_mp.enabled()), --mp.optimizer adamw "
                 "(optimizer='adamw') builds torch's AdamW again for the script's neuralop.training.AdamW.")
    return text


def check_state_class(role, obj, saved_class, path, state=None):
    """Refuse the state of ``role`` (``"optimizer"``, ``"scheduler"``, ``"regularizer"``)
    when the manifest records another class than ``obj``'s as its writer (``saved_class``;
    None, as in older and upstream's checkpoints: nothing to compare).

    A state means something only to the class that wrote it, and loading rarely notices:
    the saved parameter groups replace this run's settings, so an upstream ``AdamW``
    state loaded into ``TensorGRaD`` turns compression off (the run goes on as upstream's
    AdamW), an ``AdamW`` state loaded into ``Adam`` turns decoupled weight decay on, and a
    scheduler's saved attributes overwrite another schedule's.

    Classes are matched by name, not by module, on purpose: the state of upstream
    neuraloperator's ``TensorGRaD`` (main branch) converts into ours, so the same name is
    accepted. Two classes of one name, torch's and upstream's ``AdamW``, pass here and are
    told apart by the settings of their parameter groups (:func:`check_optimizer_state`).
    An optimizer's saved ``state``, where given, names both classes exactly when its settings
    tell its writer."""
    name = type(obj).__name__
    if saved_class is not None and saved_class != name:
        exactly = _writer_text(obj, state, saved_class) if role == "optimizer" and state is not None else ""
        raise CheckpointError(
            f"{path} was written by the {_ROLE_WORDS.get(role, role)} {saved_class}, not by this run's {name}: "
            f"a state does not carry over to another class. Resume with the {role} the run was saved with; to "
            f"switch to {name}, load the saved weights into a new run instead of resuming.{exactly}")


# parameter-group entries that are bookkeeping, not settings of the optimizer class: the optimizer
# settings' own list (what LR schedulers and SWA write into the groups of any optimizer, ``initial_lr``
# also by the training pipeline for ReduceLROnPlateau, which older checkpoints lack; parameter names),
# the parameters, and ``differentiable``, which torch's load adds to the defaults of every class
# (TensorGRaD's loaded groups used to take it from there, so the checkpoints it saved after a resume hold it)
_OPTIMIZER_BOOKKEEPING = BOOKKEEPING_KEYS | {"params", "differentiable"}


def check_optimizer_state(optimizer, state, path, saved_class=None):
    """Refuse an optimizer state of another parameter layout, or of another optimizer class
    as the settings of its parameter groups tell (torch loads it and fails only at the first
    ``step()``): the check where the manifest records no class (:func:`check_state_class`),
    or the same name for two classes (torch's and upstream's ``AdamW``). Bookkeeping entries
    (``initial_lr``, ``param_names``, ...), which tell no class, are left out of the comparison.

    Where the settings are exactly those of one known writer (torch's AdamW, upstream's AdamW,
    TensorGRaD; of the name ``saved_class``, the manifest's record, where given), the message
    names it and this run's class exactly, and a state of such a writer is refused by another
    class also when only one side has settings the other lacks (upstream's AdamW state loaded
    into TensorGRaD would turn compression off)."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if groups is None:
        raise CheckpointError(f"{path} does not hold an optimizer state dict.")
    current = optimizer.param_groups
    sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in current]
    if sizes[0] != sizes[1]:
        raise CheckpointError(f"{path} holds parameter groups of sizes {sizes[0]}; this run's "
                              f"{type(optimizer).__name__} has {sizes[1]}: another model or another grouping.")
    exactly = _writer_text(optimizer, state, saved_class)
    for i, (saved, now) in enumerate(zip(groups, current)):
        saved_keys, keys = set(saved) - _OPTIMIZER_BOOKKEEPING, set(now) - _OPTIMIZER_BOOKKEEPING
        # keys missing on one side only is what a newer torch adds to a class: accepted, unless the
        # settings tell another class exactly
        if (saved_keys - keys and keys - saved_keys) or (exactly and saved_keys != keys):
            raise CheckpointError(
                f"{path} was written by another optimizer than this run's {type(optimizer).__name__}: parameter "
                f"group {i} has settings {sorted(saved_keys - keys)} that it lacks and lacks "
                f"{sorted(keys - saved_keys)}.{exactly}")


# scheduler state entries that are bookkeeping, not settings: their names differ between torch
# versions (``verbose`` was dropped, ``_is_initial`` added) for one and the same class
_SCHEDULER_BOOKKEEPING = ("base_lrs", "last_epoch", "verbose")


def check_scheduler_state(scheduler, state, path):
    """Refuse a scheduler state written by another scheduler class, where the manifest
    records no class (older or upstream's checkpoints; a recorded one is compared by
    :func:`check_state_class`): torch's schedulers copy every saved attribute over their
    own, so a StepLR state loaded into a cosine schedule would run neither schedule. The
    settings the two states hold are compared, bookkeeping entries (private ones,
    ``base_lrs``, ``last_epoch``, ``verbose``) left out, and refused only when each side
    has settings the other lacks: a newer torch adds settings to a class
    (ReduceLROnPlateau's ``default_min_lr`` in 2.6), so a one-sided difference is accepted,
    and with it a class whose settings are a subset of the other's, which only the
    recorded class tells apart."""
    name = type(scheduler).__name__
    now = scheduler.state_dict()
    if not isinstance(state, dict) or not isinstance(now, dict):
        return

    def settings(keys):
        return {k for k in keys if not k.startswith("_") and k not in _SCHEDULER_BOOKKEEPING}

    saved_keys, keys = settings(state), settings(now)
    if saved_keys - keys and keys - saved_keys:
        raise CheckpointError(
            f"{path} was written by another learning-rate scheduler than this run's {name}: it has the settings "
            f"{sorted(saved_keys - keys)}, which {name} lacks, and lacks {name}'s {sorted(keys - saved_keys)}. "
            "Resume with the scheduler the run was saved with.")


def _load_into(obj, role, state, path):
    try:
        obj.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as err:
        raise CheckpointError(f"{path} does not fit this run's {role} ({type(obj).__name__}): {err}") from err


def load_training_files(save_dir, model, optimizer=None, scheduler=None, regularizer=None, check_states=None):
    """Verify the checkpoint folder (:func:`verify_checkpoint`), then load it into the
    given objects in place. Each file is read once; one that cannot be read raises
    :class:`CheckpointError` naming it.

    Parameters
    ----------
    save_dir : str or Path
    model, optimizer, scheduler, regularizer
        The objects to load into; an optimizer, scheduler or regularizer left None is
        neither read nor loaded.
    check_states : callable, optional
        Called as ``check_states(states, save_dir)`` with the saved states read, by role
        (``{"optimizer": state_dict, ...}``, the roles given), once they passed the
        class and layout checks and before anything is loaded: it raises to refuse the
        resume (the training pipeline refuses settings overridden at a resume), and the
        objects still hold this run's settings to compare with.

    Returns
    -------
    manifest : dict
        The manifest (may hold ``epoch``).
    precision_state : dict or None
        The contents of ``precision_state.pt``, or None for an upstream checkpoint.
    """
    save_dir = resolve_checkpoint_dir(save_dir)
    objects = dict(zip(_STATE_FILES, (optimizer, scheduler, regularizer)))
    # a model file read by the check (no checksums) is not read again below
    manifest, read = _verify(save_dir, [r for r, o in objects.items() if o is not None])
    model_state, precision_state = read["model"], read["precision_state"]
    save_name = checkpoint_name(save_dir)
    model_path = save_dir / f"{save_name}{STATE_DICT_SUFFIX}"
    state_path = save_dir / PRECISION_STATE_FILE
    if state_path.exists() and precision_state is None:  # read by _verify: checked there (upstream's manifest)
        precision_state = load_weights_only(state_path)
        check_format_version(precision_state.get("format_version"), state_path)
        check_state_epoch(save_dir, manifest, precision_state)
    if model_state is None:
        model_state = load_weights_only(model_path)
    check_model_state(unwrap(model), model_state, model_path)
    for key in ("n_modes", "n_modes_at_start"):  # the modes to set, and those a resume compares with the model's
        if isinstance(precision_state, dict) and precision_state.get(key) is not None:
            check_n_modes_state(model, precision_state[key], state_path, key)
    states = {}
    for role, obj in objects.items():
        if obj is not None:
            path = save_dir / f"{role}.pt"
            states[role] = (obj, load_weights_only(path), path)
    classes = manifest.get("classes") or {}
    for role, (obj, state, path) in states.items():
        check_state_class(role, obj, classes.get(role), path, state=state)
    if optimizer is not None:
        check_optimizer_state(optimizer, states["optimizer"][1], states["optimizer"][2],
                              saved_class=classes.get("optimizer"))
    if scheduler is not None and "scheduler" not in classes:  # no class to compare: the settings
        check_scheduler_state(scheduler, states["scheduler"][1], states["scheduler"][2])
    if check_states is not None:
        check_states({role: state for role, (_, state, _) in states.items()}, save_dir)
    _load_into(unwrap(model), "model", model_state, model_path)
    for role, (obj, state, path) in states.items():
        _load_into(obj, role, state, path)
    return manifest, precision_state
