"""Checks of a data file before it is trained on: readable, of its declared size, finite.

A file named ``darcy_train_16.pt`` promises 16x16 samples; upstream's readers
trust the name, so a file with 8x8 arrays under that name trains at 8 while every
summary says 16. A NaN in one target poisons the output normalizer (its mean and
std become NaN) and every batch is then skipped. Both are caught here, before any
work, with the path, the tensor and the sample indices in the message.
"""
import os
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from ..caller_frames import stacklevel_outside


# the ``generator`` our files record in their ``meta`` (darcy.py, navier_stokes.py, burgers.py)
GENERATORS = ("darcy", "navier_stokes", "burgers")


def generation_record(data):
    """The ``meta`` dict this package wrote into a data file's contents ``data``, or None.

    A file is ours when its ``meta`` is a dict naming one of our generators along with
    the seed and sample count every one of them records. A user's own file may have a
    ``meta`` of its own (a string, ``{"source": "my FEM solver"}``, ...): it is not ours,
    so it is used as it is and never replaced without ``overwrite``.
    """
    meta = data.get("meta") if isinstance(data, dict) else None
    if isinstance(meta, dict) and meta.get("generator") in GENERATORS and {"seed", "n_samples"} <= set(meta):
        return meta
    return None


class DataFileError(ValueError):
    """A data file that cannot be used as is; the message names the path.

    ``replaceable``: whether generating the file anew loses nothing (a partial file, a
    damaged cache of ours); the loaders and ``generate_*`` never replace one that is not."""

    replaceable = True


# the way out a damaged file of ours offers where it is refused (generate=False); moot where it is regenerated
REGENERATE = "Delete it to regenerate it"
REGENERATE_ADVICE = f"{REGENERATE}."


class DataFileChecksumError(DataFileError):
    """A readable data file whose bytes do not match their stored checksums, written by
    this package (it records its generation settings): a cache file that may be regenerated."""


class ForeignDataFileChecksumError(DataFileChecksumError):
    """A readable data file whose bytes do not match their stored checksums, not written by
    this package (no generation record: the user's own data or upstream's download): never
    replaced."""

    replaceable = False


class UnreadableDataFileError(DataFileError):
    """A complete file that cannot be read as a data file of torch tensors (numpy arrays or
    other objects a weights-only load refuses, torch's legacy format, another format, a
    damaged archive), or a path of a data file's name that cannot be read at all (a folder):
    whose it is cannot be read from it, so it is never replaced."""

    replaceable = False


class DataFileReadError(OSError):
    """An OSError raised while the bytes of a data file were read (a disk's EIO, say): the message
    names the file and says it could not be read; ``errno`` is the error's, ``filename`` the file.
    Not a verdict on the file (read again, it may load): never a :class:`DataFileError`."""

    def __str__(self):  # the message alone: OSError's would be "[Errno N] None: 'filename'"
        return str(self.args[0])


def _read_error(path, err):
    """The :class:`DataFileReadError` of ``err``, an OSError raised while ``path`` was read."""
    error = DataFileReadError(f"could not read the data file {path} ({type(err).__name__}: {err})")
    error.errno, error.filename = getattr(err, "errno", None), str(path)
    return error


# a name that opens the file a descriptor is open on (not whatever the path names by then)
_DESCRIPTOR_FOLDER = "/proc/self/fd"


def read_data_file(path):
    """The dict stored in ``path`` (memory-mapped, weights-only), its records' checksums checked.

    The file is opened once: the tensors are mapped from, and the checksums read from, that open
    file (on Linux, through its descriptor's name), so a file renamed over ``path`` meanwhile is
    neither mapped nor checked in its place. Where no descriptor has a name, a path that names
    another file once the load is done is a :class:`DataFileReadError`.

    Raises
    ------
    DataFileError
        When the file is not a complete torch file (e.g. truncated by an interrupted
        copy or write) or holds no ``x``/``y`` tensors.
    DataFileChecksumError
        When a record's bytes do not match its stored checksum:
        :class:`ForeignDataFileChecksumError` when the file holds no generation record.
    DataFileReadError
        An OSError naming the file, when its bytes could not be read (an I/O error).
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as err:  # a folder of that name, a file this user may not read, one removed meanwhile
        raise UnreadableDataFileError(f"{path} cannot be read ({type(err).__name__}: {err}); it is not replaced "
                                      "with generated data.") from err
    with handle:
        data = _load_mapped(path, handle)
        # a memory-mapped load reads no checksum: bytes overwritten in place (same size, same
        # layout) would be trained on; torch's archive keeps a CRC-32 of every record
        try:
            bad = _damaged_record(handle)
        except OSError as err:  # the disk, not the archive: named as a read that failed
            raise _read_error(path, err) from err
    if bad is not None:
        damage = f"{path} is corrupted: {bad} (bytes overwritten after it was written)."
        if generation_record(data) is not None:  # generated by us: a cache, regenerating loses nothing
            raise DataFileChecksumError(f"{damage} {REGENERATE_ADVICE}")
        # the user's data (or upstream's download): generated data in its place would be no substitute
        raise ForeignDataFileChecksumError(
            f"{damage} It holds no generation record of neuralop_mp, so it is not replaced with generated data: "
            "restore it from its source (your copy, or upstream's download).")
    if not isinstance(data, dict) or not all(torch.is_tensor(data.get(k)) for k in ("x", "y")):
        raise DataFileError(f"{path} does not hold a dict with tensors 'x' and 'y'.")
    return data


def _load_mapped(path, handle):
    """``torch.load`` of the file ``handle`` is open on (``path``), memory-mapped, weights-only
    (:func:`read_data_file`, whose DataFileErrors it raises for a file torch cannot read)."""
    by_descriptor = os.path.isdir(_DESCRIPTOR_FOLDER)
    # torch opens the name it is given twice (its archive, then the mapping): the descriptor's name
    # is the open file both times
    name = f"{_DESCRIPTOR_FOLDER}/{handle.fileno()}" if by_descriptor else path
    try:
        data = torch.load(name, mmap=True, weights_only=True, map_location="cpu")
    except MemoryError:  # the machine's state, not the file's: no verdict on the file
        raise
    except Exception as err:  # torch raises RuntimeError, OSError, UnpicklingError, ... for files it cannot read
        reason = f"{type(err).__name__}: {_first_line(err)}".replace(str(name), str(path))
        try:
            partial = _is_partial(handle)
        except OSError as unreadable:  # a file whose bytes cannot be read
            raise UnreadableDataFileError(f"{path} cannot be read ({type(unreadable).__name__}: {unreadable}); it is "
                                          "not replaced with generated data.") from err
        if partial:  # cut short by an interrupted copy or write: nothing in it is usable
            raise DataFileError(f"{path} is not a readable data file (truncated: {reason}).") from err
        raise UnreadableDataFileError(
            f"{path} is a complete file but not one of torch tensors that a weights-only load reads ({reason}); "
            "it is not replaced with generated data. Your own data: save 'x' and 'y' as torch tensors "
            "(torch.from_numpy for numpy arrays) with torch.save's default format; a file neuralop-mp generated: "
            "delete it to regenerate it.") from err
    if not by_descriptor:
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except OSError:  # removed meanwhile
            same = False
        if not same:  # torch read the file that replaced the one open here: what it mapped was not checked
            raise DataFileReadError(f"could not read the data file {path} (it was replaced while it was read; "
                                    "read it again)")
    return data


def _archive_damage(err):
    """Whether ``err``, raised while zipfile read an archive, says its bytes are damaged: beside
    BadZipFile, a header field read as another zip version (NotImplementedError), a record's name
    no longer UTF-8 (UnicodeDecodeError), sizes and offsets pointing nowhere (ValueError, EOFError,
    struct.error, and RuntimeError, which torch's own zip reader raises). Not a machine out of
    memory, a file that could not be read (OSError), nor a bug of ours (TypeError, AttributeError...)."""
    return isinstance(err, _ARCHIVE_DAMAGE)


# what reading a damaged archive raises (zipfile, struct, codecs, torch's reader); see _archive_damage.
# No MemoryError nor OSError, nor a class above them: those are the machine's or the disk's, not damage
_ARCHIVE_DAMAGE = (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError, ValueError, EOFError, struct.error,
                   RuntimeError, KeyError, IndexError, OverflowError)


def _is_partial(handle):
    """Whether the file open as ``handle`` is one cut short: empty, or the start of a zip archive
    (torch's format) without the directory written at its end. Anything else that does not load is complete."""
    handle.seek(0)
    head = handle.read(4)
    if not head:
        return True
    if head != b"PK\x03\x04":
        return False
    try:
        return not zipfile.is_zipfile(handle)
    except Exception as err:  # is_zipfile catches OSError alone: a damaged end record raises BadZipFile, ...
        if not _archive_damage(err):
            raise
        return True  # no readable directory at its end, as a file cut short


def _first_line(err):
    """``err``'s message in one line: the global a weights-only load refused (torch's message is a
    page of advice with terminal escapes), else the first line."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"a weights-only load refuses the object {found.group(1)}"
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()
    return lines[0].strip() if lines else ""


# files whose checksums were read in this process: a process that loads the same files
# again (`neuralop-mp diagnose`'s recipe table, once per architecture; generate_* then
# load_*; a notebook cell run twice) would otherwise read every byte again for the same
# answer. Keyed by the file (device, inode), its size and both times: copies that keep a
# file's modification time (cp -p, rsync -t, os.utime) still change its status-change time.
_VERIFIED = set()


def _damaged_record(handle):
    """What is damaged in the zip archive open as ``handle`` (read from it, not from a path), in
    words (the first record whose CRC-32 does not match, or headers zipfile cannot read,
    :func:`_archive_damage`), or None. An OSError reading it is raised as it is.

    A record stored with a CRC of 0 is not checked: torch writes 0 for every record when
    ``torch.serialization.set_crc32_options(False)`` is set, and still reads such files."""
    stat = os.fstat(handle.fileno())
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _VERIFIED:
        return None
    try:
        with zipfile.ZipFile(handle) as archive:  # leaves the handle open
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with archive.open(info) as record:  # raises at its end on a wrong CRC-32
                        while record.read(1 << 20):
                            pass
                except Exception as err:  # BadZipFile, or what damaged headers make zipfile raise
                    if not _archive_damage(err):
                        raise
                    if isinstance(err, zipfile.BadZipFile):
                        return f"its record {info.filename!r} does not match the checksum stored with it"
                    return f"the header of its record {info.filename!r} does not read ({type(err).__name__}: " \
                           f"{_first_line(err)})"
    except Exception as err:  # torch's reader took it, zipfile's does not: its headers are damaged
        if not _archive_damage(err):
            raise
        return f"its zip headers do not read ({type(err).__name__}: {_first_line(err)})"
    _VERIFIED.add(key)
    return None


def non_finite_samples(tensor, n_samples=None):
    """Indices (along the first axis, among the first ``n_samples``) of samples holding inf or NaN."""
    t = tensor if n_samples is None else tensor[:n_samples]
    if t.shape[0] == 0:
        return []
    finite = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    return torch.nonzero(~finite).flatten().tolist()


# what one non-finite sample of a file does to a run, by the file's role
NON_FINITE_EFFECT = {
    "train": "One non-finite sample makes the normalizer NaN and every batch is skipped",
    "test": "One non-finite sample makes the test errors at this resolution NaN",
}

def check_data_file(path, resolution, n_samples, spatial_dims, data=None, split="train", time_axes=0):
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
    split : {"train", "test"}
        The file's role, which decides what a non-finite sample would do (the normalizers
        are fitted on the training file; a test file's NaN reaches its metrics).
    time_axes : int
        Axes of ``y`` between its samples and its spatial axes (1 for Burgers' times);
        ``x`` has none. Together with ``spatial_dims`` they are every axis the file holds.

    Returns
    -------
    dict
        The file's contents, as :func:`read_data_file` returns them.

    Raises
    ------
    DataFileError
        Naming the path and what is wrong: unreadable, another number of axes than the
        layout, wrong spatial size, fewer samples than requested, or the indices of
        non-finite samples.
    """
    if data is None:
        data = read_data_file(path)
    meta = generation_record(data) or {}  # a user's own meta promises nothing we could check
    for key in ("x", "y"):
        _check_axes(path, key, data[key], resolution, spatial_dims, time_axes if key == "y" else 0)
        tensor = data[key]
        spatial = tuple(tensor.shape[-spatial_dims:])
        if spatial != (resolution,) * spatial_dims:  # _check_axes: ndim is 1 + time axes + spatial_dims
            # a file of ours recording another resolution is regenerated or refused, naming the command, by the
            # loaders before this check (loaders._other_resolution_file); here: the user's own, or one whose record
            # agrees with its name, whose command cannot be read from it
            ours = f" {REGENERATE}, or rename" if meta else " Rename"
            raise DataFileError(
                f"{path}: '{key}' has shape {tuple(tensor.shape)}, i.e. samples of size {spatial}, but the "
                f"file name declares resolution {resolution}.{ours} it after its real resolution.")
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
                f"indices {bad[:10]}{' ...' if len(bad) > 10 else ''}. {NON_FINITE_EFFECT[split]}: fix or drop "
                "these samples, or regenerate the file.")
    return data


def _check_axes(path, key, tensor, resolution, spatial_dims, time_axes):
    """Refuse a tensor with another number of axes than ``(samples, *time, *space)``.

    The readers add the channel axis themselves and treat every axis after it as a grid
    axis, so a channel axis already stored, or a missing time axis, reaches the model as
    data of another dimension: its errors then ask for another number of Fourier modes
    and never name the file.
    """
    expected = ("samples",) + ("n_time",) * time_axes + (resolution,) * spatial_dims
    if tensor.ndim == len(expected):
        return
    shape = tuple(tensor.shape)
    layout = "(" + ", ".join(map(str, expected)) + ")"
    if tensor.ndim > len(expected):
        ones = [axis for axis in range(1, tensor.ndim) if shape[axis] == 1]
        extra = tensor.ndim - len(expected)
        if len(ones) >= extra:  # e.g. a channel axis of size 1: the loader adds its own
            hint = (f"drop the axis of size 1 before saving, e.g. {key} = {key}.squeeze({ones[0]})" if extra == 1
                    else f"drop {extra} axes of size 1 before saving")
        else:  # several channels: not a layout of the built-in loaders
            hint = ("the built-in loaders take one value per grid point; for other layouts train from Python "
                    "with loaders of your own (docs/data.md)")
    elif time_axes and tensor.ndim == len(expected) - time_axes:
        hint = f"'{key}' holds the solution at n_time times: stack them along axis 1 (torch.stack(..., dim=1))"
    else:  # a flattened grid, say
        hint = "reshape it to that layout before saving"
    raise DataFileError(
        f"{path}: '{key}' has shape {shape} ({tensor.ndim} axes), but this load reads '{key}' as {layout} "
        f"({len(expected)} axes; the loader adds the channel axis itself): {hint}.")


def unreadable_file_warning(path, err):
    """Warn, at the user's line, that ``path`` is replaced because it cannot be read (``err``, a
    replaceable :class:`DataFileError`: its advice to delete the file is not repeated)."""
    reason = str(err).removesuffix(f" {REGENERATE_ADVICE}")
    warnings.warn(f"{path} cannot be read ({reason}); it is regenerated (a partial file from an interrupted "
                  "generation or copy is never loaded).", RuntimeWarning,
                  stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
