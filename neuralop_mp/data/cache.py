"""On-disk cache of generated datasets: file names, metadata, and the skip/regenerate rule.

Each file we write is a dict with the tensors upstream's readers expect (``x``,
``y``, ...) plus a ``meta`` dict of plain values: generator name and version,
every setting that changes the data, and the number of samples. A later call
with the same settings finds the file and skips the work; a file holding at
least as many samples as requested is also a hit, because sample ``i`` depends
only on ``(seed, split, i)`` (see :func:`neuralop_mp.data.grf.sample_seed`), so
the requested samples are its first rows. Files without ``meta`` were not
written by us (e.g. upstream's downloaded data): we never overwrite them unless
told to.
"""
import os
from pathlib import Path

import torch

from ..run_setup import check_writable
from .file_checks import DataFileError, ForeignDataFileChecksumError, read_data_file, unreadable_file_warning

# Bump when the numerics of a generator change, so stale caches are regenerated.
GENERATOR_VERSION = 1


def default_data_root():
    """Where generated data lives: ``$NEURALOP_MP_DATA`` if set, else ``~/.cache/neuralop_mp/data``."""
    env = os.environ.get("NEURALOP_MP_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "neuralop_mp" / "data"


def resolve_root(root):
    """``root`` as a Path, or the default data root when ``root`` is None."""
    return default_data_root() if root is None else Path(root).expanduser()


def data_file(root, prefix, split, resolution):
    """Path of ``{prefix}_{split}_{resolution}.pt``, the naming upstream's PTDataset reads."""
    return Path(root) / f"{prefix}_{split}_{resolution}.pt"


def read_file_info(path):
    """``(meta, n_samples)`` of a data file, its tensors memory-mapped (its records'
    checksums read once per process while it is unchanged, :func:`~.file_checks.read_data_file`).

    ``meta`` is None for files we did not write.
    """
    return file_info(read_data_file(path))


def file_info(data):
    """``(meta, n_samples)`` of a data file's loaded contents (:func:`read_file_info`)."""
    return data.get("meta"), int(data["x"].shape[0])


def settings_match(meta, settings, n_samples):
    """True when ``meta`` records exactly ``settings`` and at least ``n_samples`` samples."""
    if meta is None:
        return False
    recorded = {k: v for k, v in meta.items() if k != "n_samples"}
    return recorded == settings and meta.get("n_samples", -1) >= n_samples


# what a user changes to write the data elsewhere, for the message of an unwritable data root
DATA_ROOT_OPTIONS = "--data.data_root (`neuralop-mp data`: --root)"


def needs_generation(path, settings, n_samples, overwrite):
    """Decide whether ``path`` must be (re)generated for ``settings`` and ``n_samples``.

    When it must, its folder is checked first (created if missing, a file written in it):
    a file in the way or a missing permission fails here, before the samples are
    computed, not when they are saved.

    Raises
    ------
    FileExistsError
        If the file exists, was not written by this package and ``overwrite`` is False.
    RunSetupError
        If the file must be written and its folder cannot be written into (a ValueError,
        naming the folder and why).
    """
    path = Path(path)
    if _stale(path, settings, n_samples, overwrite):
        check_writable(path.parent, DATA_ROOT_OPTIONS, what="Data folder")
        return True
    return False


def _stale(path, settings, n_samples, overwrite):
    """:func:`needs_generation` without the folder check."""
    if overwrite or not path.exists():
        return True
    try:
        meta, _ = read_file_info(path)
    except DataFileError as err:  # nothing usable in it: replacing it loses nothing
        if isinstance(err, ForeignDataFileChecksumError):  # readable, damaged, and not ours: never replaced
            # the error already says it is not ours and is not replaced; only the way out is added
            raise FileExistsError(f"{err} To replace it with generated data anyway, pass overwrite=True "
                                  "(CLI: --overwrite), or choose another root.") from err
        unreadable_file_warning(path, err)
        return True
    if meta is None:
        raise FileExistsError(
            f"{path} exists but was not written by neuralop_mp (no metadata); refusing to replace it. "
            "Pass overwrite=True (CLI: --overwrite) to replace it, or choose another root."
        )
    return not settings_match(meta, settings, n_samples)


def save_data_file(path, tensors, settings, n_samples):
    """Write ``tensors`` plus metadata atomically (a partial file never looks complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(tensors)
    payload["meta"] = dict(settings, n_samples=int(n_samples))
    # a unique temporary name: two generations of the same file never share a partial file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def generate_train_test(generate_split, root, resolutions, n_train, n_test, seed, progress, overwrite, **kwargs):
    """Run a per-split generator for the train and the test split of every resolution.

    Returns ``{res: (train_path, test_path)}``, the shape every ``generate_*`` returns.
    """
    if isinstance(resolutions, int):
        resolutions = (resolutions,)
    splits = (("train", n_train), ("test", n_test))
    return {
        int(res): tuple(generate_split(root, res, split, n, seed, progress, overwrite, **kwargs) for split, n in splits)
        for res in resolutions
    }

