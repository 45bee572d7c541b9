"""Offline loaders: generate missing files, then build upstream's datasets from the files checked.

Each ``load_*`` returns ``(train_loader, test_loaders, data_processor)`` like
upstream's ``load_darcy_flow_small`` but never touches the network. Its datasets are
built from the very contents :func:`ensure_files` read and checked (and a run's
``results.json`` records), never by opening the paths again: a concurrent run
regenerating a file in between (another seed, ``neuralop-mp data --overwrite``)
does not change what is trained on. They hold what upstream's ``PTDataset`` (behind
``DarcyDataset``, ``NavierStokesDataset``, ``Burgers1dTimeDataset``) holds for the same
files: the first ``n`` samples of each, float32 inputs, a channel axis, its
channel-wise ``UnitGaussianNormalizer`` fitted on the training tensors and its data
processors, so what we generate is exactly what an upstream user would read.

A file that exists and holds at least the requested number of samples is used as
is, whoever wrote it (our generator, or upstream's download, or the user: a file
without our generation record, whatever ``meta`` of its own it has), unless our
generator wrote it with another ``seed`` than the one requested: that file is
regenerated with the requested seed, as many samples as it held and the physics
it records (viscosity, final time, ...), with a warning naming both seeds and the
settings kept, or, with ``generate=False``, refused with a message naming both
seeds. A file of ours recording another resolution than its name's (a copy under another
resolution's name) and one written by another generator version are regenerated (or refused,
naming the command that regenerates them) the same way; one of another dataset (its record
names another generator: a copy under this dataset's name) is regenerated as a missing file
is, or refused, naming both generators; a ``reference`` record of another dataset is refused,
naming both. The physics of a load is one: a missing file is
generated with the physics
our other files of the load record (the generator's defaults when there are none),
and files of ours recording different physics are refused, naming them. A load of
test files alone (:func:`load_test_sets`) may be given the records whose physics it
must have (the files a run trained on): they join those of its files; so may a full
load (``load_*``'s ``reference``: a run's data at another resolution than its own). To
change the physics, generate explicitly with the CLI or ``generate_*`` and ``overwrite=True``.
"""
import inspect
import os
import warnings
from pathlib import Path

from neuralop.data.datasets.burgers import Burgers1dTimeDataProcessor
from neuralop.data.datasets.tensor_dataset import TensorDataset
from neuralop.data.transforms.data_processors import DefaultDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
import torch
from torch.utils.data import DataLoader

from ..caller_frames import stacklevel_outside
from ..vocabulary import check_choice, check_each_once, check_int_at_least
from . import burgers, darcy, navier_stokes
from .burgers import burgers_settings, generate_burgers, generate_burgers_split
from .cache import GENERATOR_VERSION, data_file, file_info, resolve_root
from .darcy import darcy_settings, generate_darcy, generate_darcy_split
from .file_checks import DataFileError, check_data_file, generation_record, read_data_file
from .navier_stokes import generate_navier_stokes, generate_navier_stokes_split, ns_settings

# Trailing spatial axes of the stored tensors (Burgers' y is (N, time, space)).
SPATIAL_DIMS = {"darcy": 2, "nsforcing": 2, "burgers": 1}
# Axes of the stored y between its samples and its spatial axes (Burgers' times); x has none.
TIME_AXES = {"darcy": 0, "nsforcing": 0, "burgers": 1}

# What each built-in loader's samples hold, known before any file is read (check_data_file checks
# the stored tensors: one value per grid point): one input and one output channel, and the
# dimensions of the target the model predicts (Burgers' whole space-time trajectory: 2).
SAMPLE_LAYOUT = {"load_darcy": {"data_channels": 1, "out_channels": 1, "dims": SPATIAL_DIMS["darcy"]},
                 "load_navier_stokes": {"data_channels": 1, "out_channels": 1, "dims": SPATIAL_DIMS["nsforcing"]},
                 "load_burgers": {"data_channels": 1, "out_channels": 1,
                                  "dims": SPATIAL_DIMS["burgers"] + TIME_AXES["burgers"]}}

#: each dataset's generator, by the name `neuralop-mp data` takes
GENERATORS = {"darcy": generate_darcy, "navier_stokes": generate_navier_stokes, "burgers": generate_burgers}


def generator_defaults(cli_name):
    """``{"resolutions", "n_train", "n_test"}``: the defaults of the dataset's generator
    (:data:`GENERATORS`), which ``neuralop-mp data`` and its advice take for what is not given."""
    params = inspect.signature(GENERATORS[cli_name]).parameters
    return {key: params[key].default for key in ("resolutions", "n_train", "n_test")}


# The physics of a load: the split generator's arguments its files record. A file of ours
# that is regenerated keeps its own; a missing one takes those of the load's other files.
PHYSICS = {"darcy": ("face_average", "solver_resolution"),
           "nsforcing": ("viscosity", "t_final", "solver_resolution", "dt"),
           "burgers": ("viscosity", "t_final", "n_time", "solver_resolution")}
# the discretization, not the equation: each file solves on at least its own grid (with the
# default step of that grid unless it records a dt), so files of one load legitimately record
# different ones; never compared between files. A file made from scratch takes the smallest
# recorded: the finest grid and step the load has solved with. (Darcy records a solver grid only
# where it is finer than the stored one: the smallest of those that record one; and its files that
# record one are not mixed with coarser ones that do not: _check_darcy_solver_grids.)
PER_FILE = ("solver_resolution", "dt")
# the physics settings `neuralop-mp data` has a flag for (--viscosity, ...), in its order; its
# parser reads them from here
CLI_FLAGS = ("face_average", "viscosity", "t_final", "solver_resolution", "n_time", "dt")

# Each generator's own check of a stored resolution: its settings function, which raises a
# ValueError naming the value and the rule (the resolution rules do not depend on the physics,
# the generator's defaults here).
CHECK_RESOLUTION = {
    "darcy": lambda res: darcy_settings(res, 0),
    "nsforcing": lambda res: ns_settings(res, 0, navier_stokes.DEFAULT_VISCOSITY, navier_stokes.DEFAULT_T_FINAL,
                                         navier_stokes.DEFAULT_SOLVER_RESOLUTION),
    "burgers": lambda res: burgers_settings(res, 0, burgers.DEFAULT_VISCOSITY, burgers.DEFAULT_T_FINAL,
                                            burgers.DEFAULT_N_TIME, burgers.DEFAULT_SOLVER_RESOLUTION),
}
# each generator's smallest stored grid and its rule, in words: the sizes CHECK_RESOLUTION takes (diagnose's refusal)
RESOLUTION_RULES = {
    "darcy": (darcy.MIN_RESOLUTION, f"integers >= {darcy.MIN_RESOLUTION}"),
    "nsforcing": (navier_stokes.MIN_RESOLUTION, f"powers of 2 >= {navier_stokes.MIN_RESOLUTION}"),
    "burgers": (burgers.MIN_RESOLUTION, f"integers >= {burgers.MIN_RESOLUTION}"),
}


def needed_files(train_resolution, test_resolutions, n_train, n_tests, test_batch_sizes):
    """``[(resolution, split, n_samples), ...]``, every value checked before any file is touched."""
    tests = files_of_test_sets(test_resolutions, n_tests, test_batch_sizes)
    train_resolution = check_int_at_least("train_resolution", train_resolution, 2)
    n_train = check_int_at_least("n_train", n_train, 1)
    return [(train_resolution, "train", n_train)] + tests


def files_of_test_sets(test_resolutions, n_tests, test_batch_sizes):
    """``[(resolution, "test", n_samples), ...]`` of the test sets, every value checked (each
    resolution once: a ValueError names a repeated one).

    ``test_batch_sizes`` must also have one entry per test resolution: checked here, before
    any file is generated, for the training loaders and the test sets alike.
    """
    test_resolutions, n_tests = list(test_resolutions), list(n_tests)
    if len(test_resolutions) != len(n_tests):
        raise ValueError(f"n_tests={n_tests} needs one entry per test resolution {test_resolutions}")
    if not test_resolutions:
        raise ValueError("test_resolutions is empty; allowed values: one or more resolutions (integers >= 2).")
    if len(list(test_batch_sizes)) != len(test_resolutions):
        raise ValueError(f"test_batch_sizes={list(test_batch_sizes)} needs one entry per test resolution "
                         f"{test_resolutions}")
    test_resolutions = [check_int_at_least("test_resolutions entry", r, 2) for r in test_resolutions]
    # one test set per resolution: the loaders key them by resolution, so a repeated one kept the last
    check_each_once(f"test_resolutions={test_resolutions}", test_resolutions)
    n_tests = [check_int_at_least("n_tests entry", n, 1) for n in n_tests]
    return [(res, "test", n) for res, n in zip(test_resolutions, n_tests)]


def generated_from_scratch(root, prefix, needed, read=None):
    """The ``(res, split)`` of ``needed`` whose file a load generates from scratch: missing, or
    unreadable (:func:`~.file_checks.read_data_file` refuses it). ``read``: path -> contents the
    caller read already (a path not in it is then not readable); without it, each file is read
    here. The rule :func:`ensure_files` checks generator resolutions by, and ``neuralop-mp
    diagnose`` before it loads."""
    generated = []
    for res, split in needed:
        path = data_file(root, prefix, split, res)
        if read is not None:
            readable = path in read
        else:
            try:
                readable = path.exists() and read_data_file(path) is not None
            except DataFileError:
                readable = False
        if not readable:
            generated.append((res, split))
    return generated


def ensure_files(root, prefix, needed, generate_split, cli_name, generate=True, progress=True, seed=0,
                 reference=None):
    """Make sure every ``(resolution, split, n_samples)`` file exists with enough samples,
    then check each (:func:`~neuralop_mp.data.file_checks.check_data_file`): declared
    resolution, sample count, finite values. Each file is read (and its checksums
    checked) once for both its information and its checks; a file replaced here is read
    again once written.

    Missing files, unreadable ones (a partial file from an interrupted generation or
    copy; replaced with a warning, never loaded) and our own files with too few
    samples or another seed than ``seed`` are generated when ``generate`` is True;
    otherwise a FileNotFoundError names the missing files and the command that
    generates them, and a ValueError the file of another seed. A file of ours that this
    generator does not write now (:func:`_outdated_record`: another dataset's, or another
    generator version's) is regenerated with a warning, or refused with a ValueError naming
    what its record says and what the load expects (:func:`_outdated_file`). So is a file of ours
    whose record names another resolution than its name (:func:`_other_resolution_file`), refused
    with a :class:`~.file_checks.DataFileError`.

    A file to generate from scratch at a resolution its generator refuses (Navier-Stokes:
    powers of 2) is a ValueError naming the value and the rule, before anything is generated.

    The physics of a load is one (:func:`_load_physics`): a file of ours that is
    regenerated keeps the settings it records (viscosity, final time, ...), a missing
    or unreadable one is generated with those of our other files of the load (the
    generator's defaults when there are none), and our files recording different
    physics are refused with a ValueError naming them, before anything is generated.
    ``reference`` (``{name: generation record}``, e.g. the training file of a run whose
    test files alone are loaded) joins the files' records there: a missing file is
    generated with its physics, a file of other physics is refused naming it and the
    reference, and the command a FileNotFoundError suggests carries its flags. A reference
    record of another dataset (its generator is not this load's) is a ValueError naming both
    generators, before any file is read (:func:`_refuse_reference_of_another_dataset`).

    Returns
    -------
    dict
        ``{path: contents}`` of every file in ``needed``, in the order of ``needed`` whichever
        were found and whichever generated, as :func:`~neuralop_mp.data.file_checks.check_data_file`
        returns them: for a caller that reads the tensors itself, without reading the files again.
    """
    root = Path(root)
    _refuse_reference_of_another_dataset(cli_name, reference)
    requested = {"seed": int(seed)}  # what the loader asks for; the physics is whatever the files hold
    missing = []
    # path -> its contents (memory-mapped) as read here, checked below without reading the file
    # again; the only reference, so that a file being replaced is no longer mapped
    read, unreadable = {}, {}
    for res, split, n in needed:  # every file's record first: the physics of the load comes from all
        path = data_file(root, prefix, split, res)
        if path.exists() and path not in read and path not in unreadable:
            try:
                read[path] = read_data_file(path)
            except DataFileError as err:
                unreadable[path] = err
    records = {path: file_info(data)[0] for path, data in read.items()}
    # the reference first: the files differing from it are the ones the refusal lists after it
    records = {**(reference or {}), **records}
    # another generator's file under this dataset's name records another equation's physics: it is
    # regenerated or refused below (_outdated_record), its physics never the load's
    physics_records = {path: meta for path, meta in records.items()
                       if meta and "generator" not in _outdated_record(cli_name, meta)}
    _refuse_own_data_mixed(root, prefix, needed, records, read, unreadable, generate, set(reference or ()))
    physics = _load_physics(prefix, cli_name, root, physics_records)
    if generate:
        # a file generated from scratch needs a resolution its generator takes: all checked before
        # the first is generated, as `neuralop-mp data` and generate_* do
        for res, _ in generated_from_scratch(root, prefix, [(res, split) for res, split, _ in needed], read):
            CHECK_RESOLUTION[prefix](res)

    def generate_file(path, res, split, n, settings):
        read.pop(path, None)  # the new file is read for its checks
        # overwrite=False: the generator decides again, under its lock, what the file needs (a
        # concurrent run may have made it meanwhile) and warns about an unreadable file it replaces
        generate_split(root, res, split, n, seed=seed, progress=progress, overwrite=False, **settings)

    reads = [(res, split) for res, split, _ in needed]
    for res, split, n in needed:
        path = data_file(root, prefix, split, res)
        if path in unreadable:
            err = unreadable.pop(path)
            # only a partial file or a damaged one of ours is regenerated: the user's own (no
            # generation record), or a complete file whose owner cannot be read, is theirs to replace
            if not generate or not err.replaceable:
                raise err
            generate_file(path, res, split, n, physics)
            continue
        if path.exists():
            if path not in read:
                read[path] = read_data_file(path)
            meta, n_file = file_info(read[path])
            outdated = _outdated_record(cli_name, meta)
            if outdated:  # ours, but not what this load's generator writes now
                n_new, settings = _outdated_file(root, prefix, cli_name, (res, split, n), n_file, meta, outdated,
                                                 reads, physics, generate, seed)
                generate_file(path, res, split, n_new, settings)
                continue
            kept = _recorded_physics(prefix, meta)  # a file of ours keeps its physics when regenerated
            if meta is not None and meta.get("resolution", res) != res:  # ours, copied under another name
                n_new = _other_resolution_file(root, prefix, cli_name, (res, split, n), read[path], meta, reads,
                                               kept, generate, seed)
                generate_file(path, res, split, n_new, kept)
                continue
            differing = {} if meta is None else {k: meta.get(k) for k, v in requested.items() if meta.get(k) != v}
            if differing:
                recorded = ", ".join(f"{k}={v!r}" for k, v in differing.items())
                wanted = ", ".join(f"{k}={requested[k]!r}" for k in differing)
                if not generate:
                    # that file alone, as many samples as it held (the other split's count 0: kept)
                    command, _ = data_command(root, prefix, cli_name, reads, [(res, split, max(n, n_file))], kept,
                                              seed=requested["seed"], overwrite=True)
                    raise ValueError(
                        f"{path} was generated with {recorded}, not the requested {wanted} (data.{wanted} in a "
                        f"training config); regenerate it (`{command}`, or "
                        f"generate=True: --data.generate true), or request {recorded}.")
                # as many samples as the file held: regenerating must not shrink a user's dataset
                keeping = f", keeping its {_settings_text(kept)}" if kept else ""
                warnings.warn(f"{path} was generated with {recorded}, not the requested {wanted}: it is regenerated "
                              f"with {wanted} and {max(n, n_file)} samples{keeping} (request {recorded} to use it "
                              "as it is).", RuntimeWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
                generate_file(path, res, split, max(n, n_file), kept)
                continue
            if n_file >= n:
                continue
            if meta is None:  # the user's own data: regenerating would replace it with synthetic samples
                count = ("--data.n_train in a training config, n_train= to the loader" if split == "train" else
                         f"the entry of resolution {res} in --data.n_tests in a training config, in n_tests= to "
                         "the loader")
                raise ValueError(f"{path} holds {n_file} samples but {n} were requested; it is a file of your own "
                                 f"(no generation record of neuralop-mp data): lower the count to at most {n_file} "
                                 f"({count}).")
            if not generate:
                command, _ = data_command(root, prefix, cli_name, reads, [(res, split, n)], kept, seed=int(seed))
                raise ValueError(f"{path} holds {n_file} samples but {n} were requested; lower the count or "
                                 f"regenerate it (`{command}`).")
            generate_file(path, res, split, n, kept)
        elif generate:
            generate_file(path, res, split, n, physics)
        else:
            missing.append((path, res, split, n))
    if missing:
        raise FileNotFoundError(_missing_files_message(root, prefix, cli_name, needed, missing, physics, seed))
    # in the order of ``needed`` (a run's ``data_files`` lists them so): ``read`` holds the files found
    # first and those generated after, an order that depends on what the data root held
    checked = {}
    for res, split, n in needed:
        path = data_file(root, prefix, split, res)
        checked[path] = check_data_file(path, res, n, SPATIAL_DIMS[prefix], data=read.pop(path, None), split=split,
                                        time_axes=TIME_AXES[prefix])
    return checked


def _refuse_reference_of_another_dataset(cli_name, reference):
    """Refuse a ``reference`` (``{name: generation record}``, :func:`ensure_files`) whose record
    names another generator than ``cli_name``, this load's: the run it comes from trained on
    another dataset (another equation), so this load's files are not the data it recorded, and
    neither its physics nor its seed say anything about them. A ValueError names both generators."""
    for name, meta in (reference or {}).items():
        other = _outdated_record(cli_name, meta).get("generator")
        if other:
            recorded, expected = other
            raise ValueError(
                f"{name} records {recorded} data (its generation record names the generator {recorded!r}), but this "
                f"load reads {expected} data (the generator {expected!r}): a run trains and is evaluated on the data "
                f"it recorded. Load {recorded} data as the run did (its config's data section), or start a new run "
                f"for {expected} data.")


def _outdated_record(cli_name, meta):
    """What makes a generation record of ours ``meta`` not one that this load's generator writes
    now: ``{"generator": (recorded, expected)}`` for another dataset's file under this one's name
    (a copy or rename: another equation), else ``{"version": (recorded, expected)}`` for a file of
    another :data:`~neuralop_mp.data.cache.GENERATOR_VERSION` (numerics changed since); ``{}``
    for a current one, or a file that is not ours (None). ``cli_name``, the dataset's name
    (:data:`LOADER_FILES`), is the ``generator`` its records name."""
    if not meta:
        return {}
    expected = cli_name
    if meta.get("generator") != expected:
        return {"generator": (meta.get("generator"), expected)}
    if meta.get("version") != GENERATOR_VERSION:
        return {"version": (meta.get("version"), GENERATOR_VERSION)}
    return {}


def _outdated_file(root, prefix, cli_name, file, n_file, meta, outdated, reads, physics, generate, seed):
    """Refuse, or say it is regenerated, a file of ours that this load's generator does not write
    now (``outdated``, :func:`_outdated_record`); return the ``(n_samples, physics)`` to regenerate
    it with where ``generate``.

    Another dataset's file (a copy under this one's name) is replaced as a missing one is: the
    requested count, the load's ``physics``; a file of another generator version keeps its count
    and the physics it records, as a file of another seed does. With ``generate`` False, a
    ValueError names the file, what its record says, what this load expects, and the command
    that regenerates it (which replaces it: its record differs).
    """
    res, split, n = file
    path = data_file(root, prefix, split, res)
    if "generator" in outdated:
        recorded, expected = outdated["generator"]
        what = (f"{path} holds {recorded} data (its generation record names the generator {recorded!r}), not "
                f"{expected} data (the generator {expected!r} this load's files are written by)")
        n_new, settings, other_way = n, physics, f", or put {expected} data of your own there"
    else:
        recorded, expected = outdated["version"]
        what = (f"{path} was written by version {recorded!r} of the {meta['generator']} generator, not by its "
                f"current version {expected!r} (whose numerics differ)")
        n_new, settings, other_way = max(n, n_file), _recorded_physics(prefix, meta), ""
    if not generate:
        command, _ = data_command(root, prefix, cli_name, reads, [(res, split, n_new)], settings, seed=int(seed))
        raise ValueError(f"{what}; regenerate it (`{command}`, or generate=True: --data.generate true)"
                         f"{other_way}.")
    keeping = f", keeping its {_settings_text(settings)}" if settings and "version" in outdated else ""
    warnings.warn(f"{what}: it is regenerated with {n_new} samples{keeping}.", RuntimeWarning,
                  stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
    return n_new, settings


def _other_resolution_file(root, prefix, cli_name, file, data, meta, reads, kept, generate, seed):
    """Refuse, or say it is regenerated, a file of ours (contents ``data``, record ``meta``) whose
    record names another resolution than the one its name declares (a copy or rename of another
    resolution's file), as a file of another seed is; return the samples to regenerate it with.

    Where ``generate``, it is regenerated at its name's resolution with as many samples as it
    held and the physics it records (``kept``), with a warning; otherwise a
    :class:`~.file_checks.DataFileError` names the command that regenerates it.
    """
    res, split, n = file
    path = data_file(root, prefix, split, res)
    n_new = max(n, int(data["x"].shape[0]))  # regenerating must not shrink a user's dataset
    what = (f"{path}: 'x' has shape {tuple(data['x'].shape)} and its generation record says resolution "
            f"{meta['resolution']!r}, but the file name declares resolution {res} (a copy or rename of another "
            "resolution's file)")
    if not generate:
        command, _ = data_command(root, prefix, cli_name, reads, [(res, split, n_new)], kept, seed=int(seed),
                                  overwrite=True)
        raise DataFileError(f"{what}; regenerate it (`{command}`, or generate=True: --data.generate true), or "
                            "rename it after its real resolution.")
    keeping = f", keeping its {_settings_text(kept)}" if kept else ""
    warnings.warn(f"{what}: it is regenerated at resolution {res} with {n_new} samples{keeping}.",
                  RuntimeWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
    return n_new


class OwnDataError(ValueError):
    """A load of the user's own data files that would mix in generated ones (:func:`ensure_files`):
    ``own`` (the user's files) and ``absent`` (the load's files that are not there, or were
    generated: not the user's) name them."""

    def __init__(self, message, own=(), absent=()):
        super().__init__(message)
        self.own, self.absent = list(own), list(absent)


class OwnDataMissingError(FileNotFoundError):
    """Files missing from a load of the user's own data files, with ``generate=False``
    (``own``, ``absent`` as :class:`OwnDataError`'s)."""

    def __init__(self, message, own=(), absent=()):
        super().__init__(message)
        self.own, self.absent = list(own), list(absent)


def _refuse_own_data_mixed(root, prefix, needed, records, read, unreadable, generate, run_records=()):
    """Refuse a load that holds the user's own data files (no generation record; a reference
    entry of None: the run trained on one) beside files of ours, or beside files it would
    generate: the generator's equation is not theirs, and the test errors of such a load
    compare a model trained on one PDE with labels of another (1e4 relative L2, said nowhere).
    ``run_records``: the names of the records that are a run's (a resume's or an eval's
    ``reference``): own against generated between those and the files now is a change of the
    data since the run, said so.

    Raises
    ------
    OwnDataError
        A ValueError naming the user's files and ours (or the ones that would be generated), and the way out.
    OwnDataMissingError
        A FileNotFoundError, with ``generate`` False, for missing files beside the user's own: naming them, and what
        to put there (not the ``neuralop-mp data`` command, which writes the generator's data).
    """
    own = [str(name) for name, meta in records.items() if meta is None]
    if not own:
        return
    ours = [str(name) for name, meta in records.items() if meta is not None]
    absent = [str(path) for path in dict.fromkeys(data_file(root, prefix, split, res) for res, split, _ in needed)
              if path not in read and (path not in unreadable or unreadable[path].replaceable)]
    theirs = f"{', '.join(own)} {'holds' if len(own) == 1 else 'hold'} your own data (no generation record of " \
             "neuralop-mp data)"
    if ours and run_records:  # the run's record (a resume, an eval of its test sets) against the files now
        recorded = [name for name in own + ours if name in run_records]
        kind = "your own data" if recorded and recorded[0] in own else "generated"
        # the files now of the other kind than the run's
        now = [name for name in (ours if kind == "your own data" else own) if name not in run_records]
        if recorded and now:
            raise OwnDataError(
                f"The data changed since the run: {', '.join(recorded)} {'was' if len(recorded) == 1 else 'were'} "
                f"{kind}, and {', '.join(now)} {'is' if len(now) == 1 else 'are'} now "
                f"{'generated' if kind == 'your own data' else 'your own data'}. Put the run's files back in "
                "the data root, or start a new run on this data.", own=own, absent=ours)
    if ours:
        raise OwnDataError(f"This load mixes files of your own with files neuralop-mp generated: {theirs}; "
                           f"{', '.join(ours)} {'was' if len(ours) == 1 else 'were'} generated (synthetic {prefix} "
                           "data, another equation). Replace the generated ones with your own data, or leave their "
                           "resolutions out of the load.", own=own, absent=ours)
    if not absent:
        return
    missing = ", ".join(absent)
    if generate:
        raise OwnDataError(f"{theirs}; {missing} {'is' if len(absent) == 1 else 'are'} not there, and generating "
                           f"{'it' if len(absent) == 1 else 'them'} would put synthetic {prefix} data (another "
                           "equation) beside yours. Put your own file there (a dict with tensors 'x' and 'y'), or "
                           "leave its resolution out of the load.", own=own, absent=absent)
    raise OwnDataMissingError(f"Missing data files: {missing}. {theirs[0].upper()}{theirs[1:]}: put your own file "
                              "there (a dict with tensors 'x' and 'y'), or leave its resolution out of the load.",
                              own=own, absent=absent)


def _missing_files_message(root, prefix, cli_name, needed, missing, physics, seed):
    """The FileNotFoundError of :func:`ensure_files` with ``generate=False``: the ``missing``
    files (``(path, res, split, n)``) and the ``neuralop-mp data`` command that writes them with
    the load's ``physics`` (:func:`data_command`)."""
    names = ", ".join(str(p) for p, *_ in missing)
    command, also = data_command(root, prefix, cli_name, [(res, split) for res, split, _ in needed],
                                 [(res, split, n) for _, res, split, n in missing], physics, seed=seed)
    also = f"{also}\n" if also else ""
    return (f"Missing data files: {names}. Generate them offline with:\n  {command}\n"
            f"{also}or load with generate=True (--data.generate true).")


def data_command(root, prefix, cli_name, reads, writes, physics=None, *, seed=0, overwrite=False):
    """The ``neuralop-mp data`` command that writes the files ``writes``, and what else it writes.

    The one builder of that advice: the loaders' missing files and the offline data of
    upstream's scripts under ``neuralop-mp run`` (:mod:`neuralop_mp.runner.offline`) both
    call it.

    Parameters
    ----------
    root : path
        The data folder (``--root``).
    prefix, cli_name : str
        The files' prefix (``nsforcing``) and the CLI's dataset name (``navier_stokes``).
    reads : iterable of (int, str)
        ``(resolution, split)`` of every file the load reads.
    writes : iterable of (int, str, int or None)
        ``(resolution, split, n_samples)`` of the files to write; ``n_samples`` None (a
        count the caller does not know): the generator's default (:func:`generator_defaults`).
    physics : dict, optional
        Generator arguments the command carries as flags (:data:`CLI_FLAGS`).
    seed : int
        The base seed the files must have (``--seed``, given where it is not the CLI's 0).
    overwrite : bool
        Regenerate the files even where they match (``--overwrite``: a file of another seed).

    Returns
    -------
    (str, str)
        The command, and the sentence naming the files it also writes that the load does
        not read ("" when none). The CLI writes each split at every resolution it is given
        (with the most samples asked of that split), unless its count is 0: a split with no
        file to write gets 0, so a test set alone writes no training file; missing files of
        both splits at different resolutions also write the files between them.
    """
    writes = list(writes)
    defaults = generator_defaults(cli_name)
    defaults = {"train": defaults["n_train"], "test": defaults["n_test"]}
    counts = {}
    for split in ("train", "test"):
        asked = [n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else defaults[split]
                 for _, s, n in writes if s == split]
        counts[split] = max(asked, default=0)
    resolutions = sorted({int(res) for res, _, _ in writes})
    command = (f"neuralop-mp data {cli_name} --root {root} --res {' '.join(map(str, resolutions))} "
               f"--n-train {counts['train']} --n-test {counts['test']}{' --seed %d' % seed if seed else ''}"
               f"{_cli_flags(physics or {})}{' --overwrite' if overwrite else ''}")
    read = {data_file(root, prefix, split, int(res)) for res, split in reads}
    extra = [(path, counts[split]) for res in resolutions for split in ("train", "test")
             if counts[split] and (path := data_file(root, prefix, split, res)) not in read]
    if not extra:
        return command, ""
    listed = ", ".join(f"{path} ({n} sample{'s' if n > 1 else ''})" for path, n in extra)
    # the CLI regenerates a file of ours recording other settings: say so before it is run
    replaced = "".join(f"; {path} exists: it is replaced if it records other settings"
                       for path, _ in extra if path.exists())
    return command, f"It also writes {listed}, which this load does not read{replaced}."


def recorded_load_physics(prefix, cli_name, root, paths):
    """The physics (:func:`_load_physics`) that the readable files of ours among ``paths`` record:
    what a command writing the others of their load carries; {} when there are none.

    Raises ValueError (naming them) where they record different physics.
    """
    records = {}
    for path in paths:
        if Path(path).is_file():
            # the record alone, memory-mapped: no checksum pass over a file (upstream's many-GB
            # downloads included) only to word advice; a file that does not load records nothing
            try:
                meta = generation_record(torch.load(path, mmap=True, weights_only=True, map_location="cpu"))
            except Exception:
                continue
            if meta and "generator" not in _outdated_record(cli_name, meta):  # another equation's: not this load's
                records[Path(path)] = meta
    return _load_physics(prefix, cli_name, root, records)


def _recorded_physics(prefix, meta):
    """The generator arguments (:data:`PHYSICS`) a file of ours records; {} for another file."""
    return {k: meta[k] for k in PHYSICS[prefix] if k in meta} if meta else {}


def _load_physics(prefix, cli_name, root, records):
    """The generator arguments for the files of a load that are generated from scratch.

    ``records`` maps each readable file of ours in the load (and each reference record
    :func:`ensure_files` was given) to its metadata. They
    must all record the same physics (:data:`PHYSICS` but :data:`PER_FILE`): a
    ValueError names the files and the settings that differ otherwise. The grid
    solved on differs with the resolution, and with it the default time step, so neither
    is compared; the smallest one recorded is taken (each generator solves on at least
    the stored grid anyway, and a smaller step is the stabler one).
    """
    found = {path: {k: v for k, v in _recorded_physics(prefix, meta).items() if k not in PER_FILE}
             for path, meta in records.items()}
    first = next(iter(found.values()), {})
    if any(settings != first for settings in found.values()):
        keys = sorted({k for settings in found.values() for k in set(settings) | set(first)
                       if settings.get(k) != first.get(k)})
        listing = "; ".join(f"{path}: {_settings_text({k: settings.get(k) for k in keys})}"
                            for path, settings in found.items())
        raise ValueError(
            f"The data files of this load record different physics ({listing}); a model would be trained and "
            "tested on different equations. Regenerate the odd ones with the settings of the others "
            f"(`neuralop-mp data {cli_name} --root {root} --res ... --overwrite` with the flags of those settings), "
            "or give this load another data root.")
    physics = dict(first)
    for key in PER_FILE:
        values = [meta[key] for meta in records.values() if key in PHYSICS[prefix] and key in meta]
        if values:
            physics[key] = min(values)
    if prefix == "darcy":
        _check_darcy_solver_grids(cli_name, root, records, physics)
    return physics


def _check_darcy_solver_grids(cli_name, root, records, physics):
    """Refuse a Darcy load whose files of ours mix labels solved on a finer grid with plain ones.

    Darcy records a solver grid only where it is finer than the stored one (:data:`PER_FILE`), and
    its plain labels are a few percent from the PDE's solution at 16 points, about the FNO's own
    error (docs/data.md): a model trained on one kind and tested on the other measures the labels'
    difference. The values recorded differ with the resolution by design (121 at 16, 125 at 32),
    so only whether one is recorded is compared. A plain file whose own grid has at least the
    points of the smallest recorded solver grid (``physics``' one) was solved as finely, as a file
    generated for this load is there (:func:`~neuralop_mp.data.darcy.solver_grid`): not refused.
    The ValueError names both kinds and the command that regenerates the plain files of ``root``
    on the solver grid (where the plain ones are only a reference's, a run's training files, the
    one that regenerates the refined ones plainly).
    """
    grid = physics.get("solver_resolution")
    if grid is None:  # none records one
        return
    refined = {path: meta["solver_resolution"] for path, meta in records.items() if "solver_resolution" in meta}
    plain = [path for path, meta in records.items()
             if "solver_resolution" not in meta and int(meta.get("resolution") or 0) < grid]
    if not plain:
        return
    def in_root(paths):
        """``(resolution, split, samples, seed)`` of the files of ``root`` among ``paths`` (a
        reference's record names a run's file, which is not regenerated here)."""
        files = []
        for path in paths:
            meta = records[path]
            res = meta.get("resolution")
            for split in ("train", "test"):
                if isinstance(res, int) and Path(path) == data_file(root, "darcy", split, res):
                    files.append((res, split, meta.get("n_samples"), int(meta.get("seed", 0))))
        return files

    files, flags, which = in_root(plain), physics, "the plain ones on the solver grid"
    if not files:  # the plain labels are a run's training data: this folder's refined files go plain
        files, which = in_root(refined), "the refined ones of this folder plainly"
        flags = {k: v for k, v in physics.items() if k != "solver_resolution"}
    advice = ""
    if files:
        reads = [(res, split) for res, split, _, _ in in_root(list(records))]
        command, also = data_command(root, "darcy", cli_name, reads, [(res, split, n) for res, split, n, _ in files],
                                     flags, seed=files[0][3], overwrite=True)
        advice = f"regenerate {which} (`{command}`{'; ' + also if also else ''}), or "
    listing = ", ".join(f"{path} ({value})" for path, value in refined.items())
    raise ValueError(
        f"The Darcy files of this load mix labels solved on a finer grid (solver grid recorded: {listing}) with "
        f"labels solved on their own grid (none recorded: {', '.join(map(str, plain))}); the two differ by about "
        f"a model's own error (docs/data.md). Make them one kind: {advice}give this load another data root.")


def _settings_text(settings):
    return ", ".join(f"{k}={v!r}" for k, v in settings.items())


def _cli_flags(settings):
    """``settings`` as ``neuralop-mp data`` flags (:data:`CLI_FLAGS`, in their order)."""
    return "".join(f" --{k.replace('_', '-')} {settings[k]}" for k in CLI_FLAGS if k in settings)


# each loader's files: (file prefix, split generator, `neuralop-mp data` name)
LOADER_FILES = {"load_darcy": ("darcy", generate_darcy_split, "darcy"),
                "load_navier_stokes": ("nsforcing", generate_navier_stokes_split, "navier_stokes"),
                "load_burgers": ("burgers", generate_burgers_split, "burgers")}


def resolution_rules_text():
    """Every dataset's stored resolutions in words, from :data:`RESOLUTION_RULES` (the help of
    ``neuralop-mp data --res`` and ``diagnose --resolution``): "darcy: integers >= 4; ..."."""
    return "; ".join(f"{name}: {RESOLUTION_RULES[prefix][1]}" for prefix, _, name in LOADER_FILES.values())


def describe_files(stored):
    """``[{"file", "samples_in_file", "record"}, ...]`` of the files a load read (``stored``, as
    :func:`ensure_files` returns them): each file's path, the samples it holds and its generation
    record (generator, seed and physics: viscosity, final time, ...; None for a file we did not
    write), so a run's results say which equation its data solve."""
    described = []
    for path, data in stored.items():
        record, n_samples = file_info(data)
        described.append({"file": str(path), "samples_in_file": n_samples, "record": record})
    return described


def make_loaders(dataset, test_resolutions, batch_size, test_batch_sizes, files=None):
    """DataLoaders over a dataset with upstream's ``PTDataset`` attributes (``train_db``,
    ``test_dbs``, ``data_processor``: a :class:`CheckedDataset`): shuffled training batches,
    ordered test batches (one batch size per test resolution, as :func:`files_of_test_sets` checked). ``files``
    (:func:`describe_files`) is kept as the training loader's ``data_files``, for the run's
    results (the return value stays upstream's three)."""
    # num_workers=0: worker processes cost more than they save on these small tensors.
    train_loader = DataLoader(dataset.train_db, batch_size=batch_size, shuffle=True, num_workers=0)
    train_loader.data_files = files
    test_loaders = {
        res: DataLoader(dataset.test_dbs[res], batch_size=bs, shuffle=False, num_workers=0)
        for res, bs in zip(test_resolutions, test_batch_sizes)
    }
    return train_loader, test_loaders, dataset.data_processor


def stored_samples(data, n):
    """The first ``n`` samples of a file's contents (``data``, as :func:`ensure_files` returns
    them) as upstream's ``PTDataset`` holds them: ``x`` as float32, ``y`` in its stored dtype,
    each with a channel axis (axis 1). Copied out of the memory-mapped file: the dataset keeps
    no reference to it."""
    return data["x"][:n].float().clone().unsqueeze(1), data["y"][:n].clone().unsqueeze(1)


def _channel_normalizer(train_tensor):
    """Upstream's channel-wise ``UnitGaussianNormalizer`` (``PTDataset``'s default
    ``encoding``), fitted on ``train_tensor``: over every axis but the channel axis 1."""
    normalizer = UnitGaussianNormalizer(dim=[axis for axis in range(train_tensor.ndim) if axis != 1])
    normalizer.fit(train_tensor)
    return normalizer


class CheckedDataset:
    """A load's training set, test sets and data processor, built from the file contents
    :func:`ensure_files` checked (``stored``), as upstream's ``PTDataset`` builds them from the
    same files (no subsampling, channel-wise encoding): the attributes ``train_db``,
    ``test_dbs`` (``{resolution: TensorDataset}``, in ``test_resolutions``' order) and
    ``data_processor`` (a ``DefaultDataProcessor`` whose normalizers, where ``encode_input`` /
    ``encode_output``, are fitted on the training tensors; None otherwise).
    """

    def __init__(self, stored, root, prefix, n_train, n_tests, train_resolution, test_resolutions,
                 encode_input, encode_output):
        x_train, y_train = stored_samples(stored[data_file(root, prefix, "train", train_resolution)], n_train)
        self.train_db = TensorDataset(x_train, y_train)
        self.data_processor = DefaultDataProcessor(
            in_normalizer=_channel_normalizer(x_train) if encode_input else None,
            out_normalizer=_channel_normalizer(y_train) if encode_output else None)
        self.test_dbs = {res: TensorDataset(*stored_samples(stored[data_file(root, prefix, "test", res)], n))
                         for res, n in zip(test_resolutions, n_tests)}


def load_darcy(data_root=None, n_train=1000, n_tests=(200, 200), batch_size=32, test_batch_sizes=(32, 32),
               train_resolution=16, test_resolutions=(16, 32), encode_input=False, encode_output=True,
               generate=True, progress=True, seed=0, reference=None):
    """Darcy-flow loaders from local files, generating the missing ones first.

    The datasets hold what upstream's ``DarcyDataset(download=False)`` (resolutions 16,
    32, 64, 128, 421) and its ``PTDataset`` base (any resolution) read from the files, built
    from the contents the load checked (:class:`CheckedDataset`): the files are read once.

    Parameters
    ----------
    data_root : str or Path, optional
        Folder of ``darcy_{split}_{res}.pt``; default ``$NEURALOP_MP_DATA`` or
        ``~/.cache/neuralop_mp/data``.
    n_train, n_tests, batch_size, test_batch_sizes, train_resolution, test_resolutions,
    encode_input, encode_output
        As in upstream's ``DarcyDataset``.
    generate : bool
        Generate missing files; when False a missing file raises FileNotFoundError
        naming it and the ``neuralop-mp data darcy`` command that makes it.
    progress : bool
        Progress bar while generating.
    seed : int
        Seed for generated files.
    reference : dict, optional
        ``{name: generation record}`` whose physics the files must have, e.g. those a trained
        run's data record (:func:`neuralop_mp.run_folder.run_data_records`): with no file of the
        load there yet, nothing else says it (:func:`ensure_files`). None: the files' own.

    Returns
    -------
    tuple
        ``(train_loader, {res: test_loader}, data_processor)``.
    """
    return _load_2d(
        "load_darcy", data_root, n_train, n_tests, batch_size, test_batch_sizes,
        train_resolution, test_resolutions, encode_input, encode_output, generate, progress, seed, reference,
    )


def load_navier_stokes(data_root=None, n_train=400, n_tests=(100,), batch_size=16, test_batch_sizes=(16,),
                       train_resolution=32, test_resolutions=(32,), encode_input=False, encode_output=True,
                       generate=True, progress=True, seed=0, reference=None):
    """Forced 2-D Navier-Stokes loaders (``nsforcing_{split}_{res}.pt``), generating missing files.

    The datasets hold what upstream's ``NavierStokesDataset(download=False)`` (128,
    1024) and its ``PTDataset`` base (any resolution) read from the files, built from the
    contents the load checked (:class:`CheckedDataset`).
    Parameters and return value as in :func:`load_darcy`.
    """
    return _load_2d(
        "load_navier_stokes", data_root, n_train, n_tests, batch_size, test_batch_sizes,
        train_resolution, test_resolutions, encode_input, encode_output, generate, progress, seed, reference,
    )


def load_burgers(data_root=None, n_train=800, n_tests=(200,), batch_size=32, test_batch_sizes=(32,),
                 train_resolution=16, test_resolutions=(16,), generate=True, progress=True, seed=0, reference=None):
    """1-D Burgers time-series loaders (``burgers_{split}_{res}.pt``), generating missing files.

    The datasets hold what upstream's ``Burgers1dTimeDataset`` (resolutions 16, 128; it
    has no download path) reads from the files, at any resolution, built from the contents
    the load checked (:class:`CheckedDataset`). As upstream, inputs and outputs are
    normalized, and its ``Burgers1dTimeDataProcessor`` repeats ``x`` along the time axis of
    ``y``: batches reach the model as ``(B, 1, n_time, res)``.
    Parameters and return value as in :func:`load_darcy`.
    """
    root = resolve_root(data_root)
    test_resolutions = [int(r) for r in test_resolutions]
    needed = needed_files(train_resolution, test_resolutions, n_train, n_tests, test_batch_sizes)
    prefix, generate_split, cli_name = LOADER_FILES["load_burgers"]
    stored = ensure_files(root, prefix, needed, generate_split, cli_name, generate, progress, seed, reference)
    # upstream's Burgers1dTimeDataset: both sides normalized, its processor in place of the default one
    dataset = CheckedDataset(stored, root, prefix, int(n_train), list(n_tests), int(train_resolution),
                             test_resolutions, encode_input=True, encode_output=True)
    processor = dataset.data_processor
    dataset.data_processor = Burgers1dTimeDataProcessor(processor.in_normalizer, processor.out_normalizer)
    return make_loaders(dataset, test_resolutions, batch_size, test_batch_sizes, describe_files(stored))


def load_test_sets(loader_name, data_root=None, n_tests=(200,), test_batch_sizes=(32,), test_resolutions=(16,),
                   generate=True, progress=True, seed=0, reference=None):
    """``{resolution: DataLoader}`` of a loader's test files alone (no training file read or
    generated), ordered batches of the raw samples as upstream's ``PTDataset`` reads them
    (float32 inputs, a channel axis, the first ``n`` samples): for a run whose data processor
    was fitted and saved already (:func:`neuralop_mp.run_folder.load_data_processor`).

    ``loader_name`` is one of :data:`LOADER_FILES` (``"load_darcy"``, ...); the other
    arguments as in :func:`load_darcy`; missing files are generated as it generates them.
    ``reference`` (``{name: generation record}``: the files the run trained on, as its
    ``results.json`` records them) gives the physics the test files must have: without the
    training file in the load, nothing else says it (:func:`ensure_files`).
    """
    prefix, generate_split, cli_name = LOADER_FILES[check_choice("loader", loader_name, tuple(LOADER_FILES))]
    root = resolve_root(data_root)
    tests = files_of_test_sets(test_resolutions, n_tests, test_batch_sizes)
    stored = ensure_files(root, prefix, tests, generate_split, cli_name, generate, progress, seed, reference)
    loaders = {}
    for (res, _, n), batch_size in zip(tests, test_batch_sizes):
        samples = stored_samples(stored[data_file(root, prefix, "test", res)], n)
        loaders[res] = DataLoader(TensorDataset(*samples), batch_size=batch_size, shuffle=False, num_workers=0)
    return loaders


def _load_2d(loader_name, data_root, n_train, n_tests, batch_size, test_batch_sizes, train_resolution,
             test_resolutions, encode_input, encode_output, generate, progress, seed, reference):
    """Shared body of the 2-D loaders: make sure the files exist, then build the datasets from
    the contents checked (:class:`CheckedDataset`), as upstream's ``PTDataset`` reads them."""
    root = resolve_root(data_root)
    test_resolutions = [int(r) for r in test_resolutions]
    dataset_name, generate_split, cli_name = LOADER_FILES[loader_name]
    needed = needed_files(train_resolution, test_resolutions, n_train, n_tests, test_batch_sizes)
    stored = ensure_files(root, dataset_name, needed, generate_split, cli_name, generate, progress, seed, reference)
    dataset = CheckedDataset(stored, root, dataset_name, int(n_train), list(n_tests), int(train_resolution),
                             test_resolutions, encode_input, encode_output)
    return make_loaders(dataset, test_resolutions, batch_size, test_batch_sizes, describe_files(stored))
