"""Checks of a data file before it is trained on: readable, of its declared size, finite.

A file named ``darcy_train_16.pt`` promises 16x16 samples; upstream's readers
trust the name, so a file with 8x8 arrays under that name trains at 8 while every
summary says 16. A NaN in one target poisons the output normalizer (its mean and
std become NaN) and every batch is then skipped. Both are caught here, before any
work, with the path, the tensor and the sample indices in the message.
"""
import os
import warnings
import zipfile
from pathlib import Path

import torch

from ..caller_frames import stacklevel_outside


class DataFileError(ValueError):
    """A data file that cannot be used as is; the message names the path."""


class DataFileChecksumError(DataFileError):
    """A readable data file whose bytes do not match their stored checksums, written by
    this package (it records its generation settings): a cache file that may be regenerated."""


class ForeignDataFileChecksumError(DataFileChecksumError):
    """A readable data file whose bytes do not match their stored checksums, not written by
    this package (no generation record: the user's own data or upstream's download): never
    replaced."""


def read_data_file(path):
    """The dict stored in ``path`` (memory-mapped, weights-only).

    Raises
    ------
    DataFileError
        When the file is not a complete torch file (e.g. truncated by an interrupted
        copy or write) or holds no ``x``/``y`` tensors.
    DataFileChecksumError
        When a record's bytes do not match its stored checksum:
        :class:`ForeignDataFileChecksumError` when the file holds no generation record.
    """
    path = Path(path)
    try:
        data = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for broken files
        raise DataFileError(f"{path} is not a readable data file (truncated or corrupted: "
                            f"{type(err).__name__}: {err}).") from err
    # a memory-mapped load reads no checksum: bytes overwritten in place (same size, same
    # layout) would be trained on; torch's archive keeps a CRC-32 of every record
    bad = _damaged_record(path)
    if bad is not None:
        ours = isinstance(data, dict) and "meta" in data
        raise (DataFileChecksumError if ours else ForeignDataFileChecksumError)(
            f"{path} is corrupted: its record {bad!r} does not match the checksum stored with it (bytes "
            "overwritten after it was written). Delete it to regenerate it.")
    if not isinstance(data, dict) or not all(torch.is_tensor(data.get(k)) for k in ("x", "y")):
        raise DataFileError(f"{path} does not hold a dict with tensors 'x' and 'y'.")
    return data


# files whose checksums were read in this process: a process that loads the same files
# again (`neuralop-mp diagnose`'s recipe table, once per architecture; generate_* then
# load_*; a notebook cell run twice) would otherwise read every byte again for the same
# answer. Keyed by size and both times: copies that keep a file's modification time
# (cp -p, rsync -t, os.utime) still change its status-change time.
_VERIFIED = set()


def _damaged_record(path):
    """The name of the first record of the zip archive ``path`` whose CRC-32 does not match, or None.

    A record stored with a CRC of 0 is not checked: torch writes 0 for every record when
    ``torch.serialization.set_crc32_options(False)`` is set, and still reads such files."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _VERIFIED:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with archive.open(info) as record:  # raises at its end on a wrong CRC-32
                        while record.read(1 << 20):
                            pass
                except zipfile.BadZipFile:
                    return info.filename
    except zipfile.BadZipFile as err:
        return f"(the archive itself: {err})"
    _VERIFIED.add(key)
    return None


def non_finite_samples(tensor, n_samples=None):
    """Indices (along the first axis, among the first ``n_samples``) of samples holding inf or NaN."""
    t = tensor if n_samples is None else tensor[:n_samples]
    if t.shape[0] == 0:
        return []
    finite = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    return torch.nonzero(~finite).flatten().tolist()


def check_data_file(path, resolution, n_samples, spatial_dims, data=None):
    """Check that ``path`` holds at least ``n_samples`` finite samples at ``resolution``.

    Parameters
    ----------
    path : Path
    resolution : int
        Points per spatial axis the file name declares.
    n_samples : int
        Samples the run will read (the first ``n_samples`` rows).
    spatial_dims : int
        Number of trailing spatial axes of ``x`` and ``y`` (2 for Darcy and
        Navier-Stokes, 1 for Burgers, whose ``y`` has a time axis before space).
    data : dict, optional
        What :func:`read_data_file` returned for ``path``, when the caller has read it
        already: the file is not read again.

    Returns
    -------
    dict
        The file's contents, as :func:`read_data_file` returns them.

    Raises
    ------
    DataFileError
        Naming the path and what is wrong: unreadable, wrong spatial size, fewer
        samples than requested, or the indices of non-finite samples.
    """
    if data is None:
        data = read_data_file(path)
    meta = data.get("meta") or {}
    for key in ("x", "y"):
        tensor = data[key]
        spatial = tuple(tensor.shape[-spatial_dims:])
        if tensor.ndim < spatial_dims + 1 or spatial != (resolution,) * spatial_dims:
            raise DataFileError(
                f"{path}: '{key}' has shape {tuple(tensor.shape)}, i.e. samples of size {spatial}, but the "
                f"file name declares resolution {resolution}. Regenerate it (`neuralop-mp data ... --overwrite`) "
                "or rename it after its real resolution.")
    n_x, n_y = data["x"].shape[0], data["y"].shape[0]
    if n_x != n_y:
        raise DataFileError(f"{path}: 'x' holds {n_x} samples but 'y' holds {n_y}.")
    if "n_samples" in meta and meta["n_samples"] != n_x:
        raise DataFileError(f"{path}: its metadata declares {meta['n_samples']} samples but it holds {n_x}.")
    if "resolution" in meta and meta["resolution"] != resolution:
        raise DataFileError(f"{path}: its metadata declares resolution {meta['resolution']}, its name {resolution}.")
    if n_x < n_samples:
        raise DataFileError(f"{path} holds {n_x} samples but {n_samples} were requested.")
    for key in ("x", "y"):
        bad = non_finite_samples(data[key], n_samples)
        if bad:
            raise DataFileError(
                f"{path}: '{key}' holds inf/NaN in {len(bad)} of the first {n_samples} samples, at sample "
                f"indices {bad[:10]}{' ...' if len(bad) > 10 else ''}. One non-finite sample makes the "
                "normalizer NaN and every batch is skipped: fix or drop these samples, or regenerate the file.")
    return data


def unreadable_file_warning(path, err):
    """Warn, at the user's line, that ``path`` is replaced because it cannot be read."""
    warnings.warn(f"{path} cannot be read ({err}); it is regenerated (a partial file from an interrupted "
                  "generation or copy is never loaded).", RuntimeWarning,
                  stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
