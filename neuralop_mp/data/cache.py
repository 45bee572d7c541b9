"""On-disk cache of generated datasets: file names, metadata, and the skip/regenerate rule.

Each file we write is a dict with the tensors upstream's readers expect (``x``,
``y``, ...) plus a ``meta`` dict of plain values: generator name and version,
every setting that changes the data, and the number of samples. A later call
with the same settings finds the file and skips the work; a file holding at
least as many samples as requested is also a hit, because sample ``i`` depends
only on ``(seed, split, i)`` (see :func:`neuralop_mp.data.grf.sample_seed`), so
the requested samples are its first rows. Files without such a record were not
written by us (upstream's downloaded data, the user's own, whatever their own
``meta`` holds): we never overwrite them unless told to.

Generating a file holds an exclusive lock on ``<file>.lock`` (POSIX ``flock``;
where ``fcntl`` is missing, e.g. on Windows, there is no lock) from the check that
decides to generate to the save, so that two runs never both report a file as
theirs: the second one finds the first one's file and uses it, or refuses to
replace it with other settings.

A file is saved through a temporary file next to it, named after the host and the process
(:func:`save_data_file`), which an exception or a Ctrl-C removes. A process killed where no
code of its own runs (SIGKILL, a crash of the machine) leaves it: the next generation in that
folder (of any file, or a check that finds a file up to date) removes the temporaries of every
data file there whose process is gone, each under its file's lock
(:func:`_remove_stale_temporaries`), and says so (:func:`reporting_generation`).
"""
import contextlib
import contextvars
import os
import re
import socket
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ..caller_frames import stacklevel_outside
from ..run_setup import RunSetupError, check_writable, file_lock
from ..run_setup import removed_temporaries_line as _removed_line
from ..vocabulary import check_int_at_least
from .file_checks import (DataFileError, DataFileReadError, generation_record, read_data_file,
                          unreadable_file_warning)

# Bump when the numerics of a generator change, so stale caches are regenerated.
GENERATOR_VERSION = 1


DATA_ROOT_ENV = "NEURALOP_MP_DATA"  # the environment variable that moves the default data root


def default_data_root():
    """Where generated data lives: ``$NEURALOP_MP_DATA`` if set, else ``~/.cache/neuralop_mp/data``.

    Raises
    ------
    RunSetupError
        If the variable is set but empty or blank (a ValueError naming it): an empty value
        written ``NEURALOP_MP_DATA=`` is a folder forgotten, not a request for the default,
        and a blank one would be a folder named by spaces.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env is None:
        return Path.home() / ".cache" / "neuralop_mp" / "data"
    _refuse_blank(env, ENVIRONMENT_DATA_ROOT_OPTION, "unset it for the default (~/.cache/neuralop_mp/data)")
    return Path(env).expanduser()


def resolve_root(root):
    """``root`` as a Path, or the default data root (:func:`default_data_root`) when ``root`` is None.

    Raises
    ------
    RunSetupError
        If ``root`` is an empty or blank string, or a path object of blanks (a ValueError naming
        the running command's option, :func:`current_data_root_option`): ``Path("")`` is the
        current folder, so ``--root ""`` wrote the data there. None is the way to ask for the default (a
        config's ``data_root: null``, whose spellings include ``""``, is None here).
    """
    if root is None:
        return default_data_root()
    # a path object of blanks too (Path(" ") is the folder " "); Path("") is Path("."): no way to tell
    text = os.fspath(root) if isinstance(root, (str, os.PathLike)) else None
    if isinstance(text, str):
        _refuse_blank(text, current_data_root_option(), "leave it out for the default "
                      "($NEURALOP_MP_DATA, else ~/.cache/neuralop_mp/data)")
    try:
        return Path(root).expanduser()
    except RuntimeError as err:  # "~nosuchuser/...": no home folder to expand it to
        raise RunSetupError(f"{current_data_root_option()} is {str(root)!r}: {err}; allowed is a folder's "
                            "path.") from None


def _refuse_blank(value, what, default):
    """Refuse a data root ``value`` given as an empty or blank string, naming ``what`` gave it
    and the allowed values (a folder's path, or ``default``, the way to ask for the default)."""
    if not value.strip():
        raise RunSetupError(f"{what} is {value!r} ({'empty' if not value else 'blank'}): allowed is a folder's "
                            f"path; {default}.")


def data_file(root, prefix, split, resolution):
    """Path of ``{prefix}_{split}_{resolution}.pt``, the naming upstream's PTDataset reads."""
    return Path(root) / f"{prefix}_{split}_{resolution}.pt"


def read_file_info(path):
    """``(meta, n_samples)`` of a data file, its tensors memory-mapped (its records'
    checksums read once per process while it is unchanged, :func:`~.file_checks.read_data_file`).

    ``meta`` is None for files we did not write (:func:`~.file_checks.generation_record`).
    """
    return file_info(read_data_file(path))


def file_info(data):
    """``(meta, n_samples)`` of a data file's loaded contents (:func:`read_file_info`)."""
    return generation_record(data), int(data["x"].shape[0])


def settings_match(meta, settings, n_samples):
    """True when ``meta`` records exactly ``settings`` and at least ``n_samples`` samples."""
    if meta is None:
        return False
    return _recorded_settings(meta) == settings and meta.get("n_samples", -1) >= n_samples


def _recorded_settings(meta):
    return {k: v for k, v in meta.items() if k != "n_samples"}


# what a user changes to write the data elsewhere, for the message of an unwritable data root: the
# option of the command that runs (:func:`data_root_option`); unset, the config key of train and eval,
# which a Python caller of the loaders (their ``data_root``) reaches too
CONFIG_DATA_ROOT_OPTION = "--data.data_root"  # train's, eval's and diagnose's spelling (a config key)
# a command without a data-root option of its own (the benchmarks): what chooses their data root
ENVIRONMENT_DATA_ROOT_OPTION = "the NEURALOP_MP_DATA environment variable"
_DATA_ROOT_OPTION = contextvars.ContextVar("data_root_option", default=CONFIG_DATA_ROOT_OPTION)


@contextmanager
def data_root_option(option):
    """Within this block (this thread), the message of a data root that cannot be written
    (:func:`generate_cached`) names ``option`` as the way to choose another: a command gives
    its own (``neuralop-mp data``: ``"--root"``; ``neuralop-mp bench``, which has none:
    :data:`ENVIRONMENT_DATA_ROOT_OPTION`), so its user is told what they can change there."""
    token = _DATA_ROOT_OPTION.set(option)
    try:
        yield
    finally:
        _DATA_ROOT_OPTION.reset(token)


def current_data_root_option():
    """What a data root that cannot be written names now (:func:`data_root_option`): the running
    command's option, else :data:`CONFIG_DATA_ROOT_OPTION`."""
    return _DATA_ROOT_OPTION.get()


class GenerationReport:
    """What the generations of this thread did while :func:`reporting_generation` ran: ``generated``,
    the data files it saved itself (not those another run saved meanwhile, which it found), and
    ``removed``, the paths of the stale temporaries it removed (:func:`_remove_stale_temporaries`)."""

    def __init__(self):
        self.generated, self.removed = [], []


_GENERATION_REPORT = contextvars.ContextVar("generation_report", default=None)


@contextmanager
def reporting_generation():
    """Within this block (this thread), :func:`generate_cached` records what it did in the
    :class:`GenerationReport` yielded, for a command to say: ``neuralop-mp data`` lists the files it
    generated, those it found, and the temporaries it removed. Outside one, a removed temporary is
    a RuntimeWarning."""
    report = GenerationReport()
    token = _GENERATION_REPORT.set(report)
    try:
        yield report
    finally:
        _GENERATION_REPORT.reset(token)


def generate_cached(path, settings, n_samples, overwrite, compute):
    """Make sure ``path`` holds ``n_samples`` samples generated with ``settings``; return ``path``.

    A file of ours with these settings and enough samples is used as it is;
    otherwise (:func:`_stale`) ``compute()`` makes the tensors and they are saved
    (:func:`save_data_file`). From the check that decides to generate to the save,
    an exclusive lock on ``<path>.lock`` is held; after it is acquired the file is
    checked again if another run changed it meanwhile: a file it wrote with these
    settings is used, one it wrote with other settings is not replaced (unless
    ``overwrite``), so that both runs never report the same file as theirs.

    The folder is checked first (created if missing, a file written in it): a file
    in the way or a missing permission fails here, before the samples are computed.

    Raises
    ------
    FileExistsError
        If the file exists, was not written by this package and ``overwrite`` is
        False; or another run wrote it with other settings while this one waited.
    RunSetupError
        If the file must be written and its folder cannot be written into (a ValueError,
        naming the folder, why, and the option to choose another: :func:`data_root_option`).
    """
    path = Path(path)
    n_samples = check_int_at_least("n_samples", n_samples, 1)
    seen = _identity(path)
    # an up-to-date file is used without the lock: a read-only data root stays usable
    if not _stale(path, settings, n_samples, overwrite):
        _remove_stale_temporaries(path.parent)  # a file found up to date: what a killed rewrite left
        return path
    check_writable(path.parent, current_data_root_option(), what="Data folder")
    with _generation_lock(path) as locked:
        _remove_stale_temporaries(path.parent, held=path if locked else None)
        if _identity(path) != seen:  # written (or removed) by another run while this one waited
            if not _stale(path, settings, n_samples, overwrite=False):
                return path
            try:
                meta, _ = read_file_info(path)
            except DataFileError:  # removed, or unreadable: nothing of the other run's to keep
                meta = None
            if meta is not None and not overwrite and _recorded_settings(meta) != settings:
                differing = [k for k in sorted(set(settings) | set(meta) - {"n_samples"})
                             if meta.get(k) != settings.get(k)]
                theirs = ", ".join(f"{k}={meta.get(k)!r}" for k in differing)
                ours = ", ".join(f"{k}={settings.get(k)!r}" for k in differing)
                raise FileExistsError(
                    f"{path} was written by another run ({theirs}) while this one waited to write it ({ours}); "
                    "refusing to replace it. Run this one again to replace it, or give the runs different roots.")
        save_data_file(path, compute(), settings, n_samples)
    report = _GENERATION_REPORT.get()
    if report is not None:
        report.generated.append(path)
    return path


def _identity(path):
    """What changes when ``path`` is replaced or removed: None if missing, else inode, size and mtime."""
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # no file (a file in the way of its folder: no file either)
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@contextmanager
def _generation_lock(path):
    """Hold an exclusive lock on ``<path>.lock`` (none where ``fcntl`` is missing); yield whether it is held.

    The lock file stays: removing it would let a third run lock a new file of that
    name while a second one still waits on the removed one."""
    # another user's lock file in a shared data root is as usable as one's own (run_setup.file_lock)
    with file_lock(_lock_file(path)) as held:
        yield held is not None


def _lock_file(path):
    """The lock file of the data file ``path``: ``<path>.lock``."""
    return path.with_name(path.name + ".lock")


def _stale(path, settings, n_samples, overwrite):
    """Whether ``path`` must be (re)generated for ``settings`` and ``n_samples``
    (:func:`generate_cached`, whose exceptions it raises but the folder check)."""
    if overwrite or not path.exists():
        return True
    try:
        meta, _ = read_file_info(path)
    except DataFileError as err:  # nothing usable in it: replacing it loses nothing
        if not err.replaceable:  # the user's own, or a complete file whose owner cannot be read: never replaced
            # the error already says it is not ours and is not replaced; only the way out is added
            raise FileExistsError(f"{err} To replace it with generated data anyway, pass overwrite=True "
                                  "(CLI: --overwrite), or choose another root.") from err
        unreadable_file_warning(path, err)
        return True
    if meta is None:
        raise FileExistsError(
            f"{path} exists but was not written by neuralop_mp (no generation record of neuralop_mp in it); "
            "refusing to replace it. Pass overwrite=True (CLI: --overwrite) to replace it, or choose another root."
        )
    return not settings_match(meta, settings, n_samples)


def save_data_file(path, tensors, settings, n_samples):
    """Write ``tensors`` plus metadata atomically (a partial file never looks complete).

    Raises
    ------
    CheckpointWriteError
        An ``OSError`` naming ``path`` and a full disk with its free space, for a write that
        failed (:func:`~neuralop_mp.training.checkpointing.write_error`); the temporary removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(tensors)
    payload["meta"] = dict(settings, n_samples=int(n_samples))
    tmp = _temporary_path(path)
    try:
        try:
            # saved through a handle: given a file name, torch names the archive's records after
            # it (here with the pid), so the same data gave different bytes in every run
            with open(tmp, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch's writer on a full disk
        from ..training.checkpointing import write_error

        raise write_error(path, err, "the data file", needed=sum(
            t.numel() * t.element_size() for t in tensors.values() if torch.is_tensor(t))) from err
    return path


def data_os_error(root, err):
    """The one-line error of an OSError raised while a data file of ``root`` was being made or read,
    worded after what failed: :func:`save_data_file`'s own (a ``CheckpointWriteError`` naming its
    file) and a read that failed (a :class:`~.file_checks.DataFileReadError` naming its file) as
    they are; anything else happened before a save (the folder, a lock file that cannot be opened:
    ``err`` names it), one naming the data folder. ``neuralop-mp data`` and ``train`` say it."""
    from ..training.checkpointing import CheckpointWriteError, write_error

    if isinstance(err, (CheckpointWriteError, DataFileReadError)):
        return err
    return write_error(root, err, "a data file in")


# the host in a temporary's name: a process id tells whether a writer is gone on its own host only
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


def _temporary_path(path):
    """``<path>.<host>.<pid>.<thread>.tmp``: a unique name, so two generations of the same file never
    share a partial file (threads too, where no lock serializes them), saying whose it is."""
    return path.with_name(f"{path.name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp")


# a temporary of a data file of ours (data_file's name, :func:`_temporary_path`'s suffix; versions
# before the host was named wrote ``<file>.<pid>.<thread>.tmp``): groups file, host, pid
_TEMPORARY = re.compile(r"([A-Za-z0-9]+_(?:train|test)_\d+\.pt)\.(?:([A-Za-z0-9-]*)\.)?(\d+)\.\d+\.tmp")


def _remove_stale_temporaries(folder, held=None):
    """Remove the temporaries of the data files of ``folder`` (:func:`_temporary_path`) that processes
    of this host that no longer exist left (killed by SIGKILL while saving), each while holding its
    data file's generation lock (``held``: the data file whose lock the caller holds; the others'
    are tried without waiting, one being generated now is left for a later run). Each removal is
    recorded (:func:`reporting_generation`), or warned of outside a report.

    This process's own and those of a live process or of another host are left alone: a writer
    that did not take the lock (a host whose ``flock`` does not reach this folder) may still be
    writing them; so are all where there is no lock (no ``fcntl``). Names of another pattern (a
    user's file) are never touched. A temporary that cannot be removed (another user's) is left.
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    removed = []
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or match[2] not in (None, _HOST):
            continue
        pid = int(match[3])
        if pid == os.getpid() or _process_exists(pid):
            continue
        data_path = Path(folder) / match[1]
        try:
            with contextlib.ExitStack() as stack:
                if data_path != held:  # BlockingIOError below while another run generates it
                    if stack.enter_context(file_lock(_lock_file(data_path), wait=False)) is None:
                        continue  # no lock here: a writer cannot be told from a dead one
                (Path(folder) / name).unlink()
        except OSError:  # being generated, gone meanwhile, or not ours to remove (a lock file we cannot open)
            continue
        removed.append(Path(folder) / name)
    if not removed:
        return
    report = _GENERATION_REPORT.get()
    if report is not None:
        report.removed.extend(removed)
    else:
        warnings.warn(removed_temporaries_line(removed), RuntimeWarning,
                      stacklevel=stacklevel_outside([os.path.dirname(__file__)]))


def removed_temporaries_line(removed):
    """The one line that says the stale temporaries ``removed`` (paths) were removed."""
    return _removed_line(removed, "a killed generation")


def _process_exists(pid):
    """Whether a process ``pid`` exists on this host (POSIX; the lock, and so this, exists only there)."""
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists is checked
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's; or no pid of this system
        pass  # counted as one that exists: its files are kept
    return True


def generate_train_test(generate_split, check_settings, root, resolutions, n_train, n_test, seed, progress, overwrite,
                        **kwargs):
    """Run a per-split generator for the train and the test split of every resolution.

    ``check_settings(resolution)`` validates one resolution's settings (the
    generator's settings function, raising a ValueError naming a bad value): every
    resolution is checked before any file is generated, so a bad one late in the
    list does not leave the earlier ones' files behind an error.

    A split of 0 samples is not written (its path is None): a test set at a new
    resolution needs no training file there.

    Returns ``{res: (train_path, test_path)}``, the shape every ``generate_*`` returns.
    """
    if isinstance(resolutions, int):
        resolutions = (resolutions,)
    n_train = check_int_at_least("n_train", n_train, 0)
    n_test = check_int_at_least("n_test", n_test, 0)
    if n_train == n_test == 0:
        raise ValueError("n_train=0 and n_test=0: nothing to generate; give at least one split a count >= 1")
    for res in resolutions:
        check_settings(res)
    splits = (("train", n_train), ("test", n_test))
    return {
        int(res): tuple(generate_split(root, res, split, n, seed, progress, overwrite, **kwargs) if n else None
                        for split, n in splits)
        for res in resolutions
    }
