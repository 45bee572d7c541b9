"""Offline data for upstream's loaders while the plugin is enabled.

Upstream's ``DarcyDataset`` and ``NavierStokesDataset`` (behind
``load_darcy_flow_small`` and ``load_navier_stokes_pt``) ask Zenodo for the
record's file list on every construction with ``download=True``, even when the
files are already on disk, so an unmodified script fails on a machine without
network. While the plugin is enabled:

* the dataset classes read the ``{name}_train_{res}.pt`` / ``{name}_test_{res}.pt``
  files that are present and never call the network, whatever ``download`` says;
* with a ``data_root``, they read from that folder instead of the script's;
* when files are missing they raise :class:`OfflineDataError` naming the missing
  files and the ``neuralop-mp data ...`` command that generates them;
* where the files hold fewer samples than the script asks for (upstream then
  silently uses what they hold), the report gets a note naming the file, both
  counts and the command that generates more;
* upstream's download helpers raise :class:`OfflineDataError` instead of
  connecting, for any other dataset that would try.

Upstream only accepts the resolutions its Zenodo records host (Navier–Stokes:
128 and 1024). Offline, any resolution whose files are present is read, so data
generated at 16 or 32 points per side works.
"""
import inspect
import sys
from importlib import import_module
from pathlib import Path

from neuralop.data.datasets.pt_dataset import PTDataset

from neuralop_mp.data.cache import data_file
from neuralop_mp.data.loaders import data_command, recorded_load_physics


class OfflineDataError(FileNotFoundError):
    """Data files are missing and the plugin does not download (no network call)."""


# dataset -> where upstream defines its class, the files' prefix, our generator's name,
# and whether its __init__ downloads (then we run PTDataset's loading ourselves)
DATASETS = {
    "darcy": dict(module="neuralop.data.datasets.darcy", cls="DarcyDataset", prefix="darcy", downloads=True),
    "navier_stokes": dict(
        module="neuralop.data.datasets.navier_stokes", cls="NavierStokesDataset", prefix="nsforcing", downloads=True
    ),
    "burgers": dict(module="neuralop.data.datasets.burgers", cls="Burgers1dTimeDataset", prefix="burgers", downloads=False),
}

DOWNLOAD_FUNCTIONS = ("download_from_zenodo_record", "download_from_url")


def _advice(dataset, root, values, writes):
    """The ``neuralop-mp data`` command that writes ``writes`` (``[(res, split, n)]``) into ``root``
    and the sentence naming what else it writes (the loaders' builder,
    :func:`neuralop_mp.data.loaders.data_command`), for the files of one dataset construction
    (``values``: its arguments). It carries the physics that the construction's files of ours
    record, so a file it adds matches them; none where they disagree (upstream compares nothing:
    the generator's defaults, as before)."""
    prefix = DATASETS[dataset]["prefix"]
    reads = _files_read(values)
    try:
        physics = recorded_load_physics(prefix, dataset, root, [data_file(root, prefix, s, r) for r, s in reads])
    except ValueError:
        physics = {}
    return data_command(root, prefix, dataset, reads, writes, physics)


def _files_read(values):
    """``[(res, split), ...]`` of the files upstream reads: the training file of the training
    resolution and the test files of the test resolutions."""
    return [(int(values["train_resolution"]), "train")] + [
        (int(res), "test") for res in _listify(values["test_resolutions"])]


def require_files(dataset, root, values):
    """Return the paths of the files a dataset construction (``values``: its arguments) reads, or
    raise :class:`OfflineDataError` naming the missing ones and the command that writes them
    alone, with the samples the script asks for (the generator's defaults where it gives none).
    """
    prefix = DATASETS[dataset]["prefix"]
    root = Path(root)
    reads = _files_read(values)
    counts = [values.get("n_train")] + _listify(values.get("n_tests"))
    asked = [(res, split, counts[i] if i < len(counts) else None) for i, (res, split) in enumerate(reads)]
    needed = [data_file(root, prefix, split, res) for res, split, _ in asked]
    missing = [(path, spec) for path, spec in zip(needed, asked) if not path.is_file()]
    if missing:
        command, also = _advice(dataset, root, values, [spec for _, spec in missing])
        also = f"{also}\n" if also else ""
        raise OfflineDataError(
            f"neuralop-mp (offline data): {', '.join(path.name for path, _ in missing)} not found in {root}. "
            f"Generate them with:\n    {command}\n{also}"
            "or point the script at a folder that has them (--mp.data-root DIR; from Python, "
            "neuralop_mp.enable(data_root=DIR)). "
            "(While the plugin is enabled, datasets are never downloaded.)"
        )
    return needed


def _note_short_samples(report, dataset, root, values, loaded):
    """Note each file that holds fewer samples than the script asked for.

    Upstream slices ``[:n_train]`` and ``[:n_test]`` without a check, so a script asking for
    1000 samples trains on the 32 a file holds without a word: ``loaded`` (the dataset
    just built) is compared with the counts in ``values`` (its constructor's arguments).
    """
    prefix = DATASETS[dataset]["prefix"]
    train_resolution = int(values["train_resolution"])
    asked = [("train", train_resolution, values["n_train"], len(loaded.train_db))]
    asked += [("test", int(res), n, len(loaded.test_dbs[res]))
              for res, n in zip(_listify(values["test_resolutions"]), _listify(values["n_tests"]))]
    for split, res, wanted, held in asked:
        if not isinstance(wanted, int) or held >= wanted:
            continue
        command, _ = _advice(dataset, root, values, [(res, split, wanted)])  # that file alone: nothing else
        report.note(
            f"{data_file(root, prefix, split, res).name} in {root} holds {held} samples but the script asked for {wanted} "
            f"({'training' if split == 'train' else 'testing'} on {held}); generate more with `{command}`."
        )


def _resolve_root(root_dir, data_root):
    return Path(data_root if data_root is not None else root_dir).expanduser()


def _arguments(init, self, args, kwargs):
    bound = inspect.signature(init).bind(self, *args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    values.pop("self")
    return values


def _listify(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _downloading_init(dataset, original, report, data_root):
    """``__init__`` for a class that downloads: check files, then load them as upstream does."""
    prefix = DATASETS[dataset]["prefix"]

    def __init__(self, *args, **kwargs):
        values = _arguments(original, self, args, kwargs)
        root = _resolve_root(values["root_dir"], data_root)
        test_resolutions = _listify(values["test_resolutions"])
        files = require_files(dataset, root, values)
        report.record_dataset(dataset, root, files, download_requested=values.get("download", False))
        # upstream's __init__ after its download step, without the resolution whitelist
        PTDataset.__init__(
            self,
            root_dir=root,
            dataset_name=prefix,
            n_train=values["n_train"],
            n_tests=values["n_tests"],
            batch_size=values["batch_size"],
            test_batch_sizes=values["test_batch_sizes"],
            train_resolution=values["train_resolution"],
            test_resolutions=test_resolutions,
            encode_input=values["encode_input"],
            encode_output=values["encode_output"],
            encoding=values["encoding"],
            channel_dim=values["channel_dim"],
            input_subsampling_rate=values["subsampling_rate"],
            output_subsampling_rate=values["subsampling_rate"],
        )
        _note_short_samples(report, dataset, root, values, self)

    return __init__


def _reading_init(dataset, original, report, data_root):
    """``__init__`` for a class that only reads: check files, then run upstream's own."""

    def __init__(self, *args, **kwargs):
        values = _arguments(original, self, args, kwargs)
        root = _resolve_root(values["root_dir"], data_root)
        files = require_files(dataset, root, values)
        report.record_dataset(dataset, root, files, download_requested=False)
        values["root_dir"] = root
        original(self, **values)
        _note_short_samples(report, dataset, root, values, self)

    return __init__


def _blocked_download(name):
    def blocked(*args, **kwargs):
        call = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        raise OfflineDataError(
            f"neuralop-mp (offline data): {name}({call}) was called, but the plugin never downloads. "
            f"`neuralop-mp data` generates {', '.join(DATASETS)} (then pass --mp.data-root DIR, or "
            f"data_root=DIR to neuralop_mp.enable); any other "
            "dataset must be downloaded without the plugin (run the script once with plain python)."
        )

    blocked.__name__ = name
    return blocked


def install(patches, report, data_root=None):
    """Patch upstream's dataset classes and download helpers (undone by ``patches.restore()``)."""
    for dataset, spec in DATASETS.items():
        cls = getattr(import_module(spec["module"]), spec["cls"])
        original = cls.__init__
        make = _downloading_init if spec["downloads"] else _reading_init
        init = make(dataset, original, report, data_root)
        init.__doc__ = original.__doc__
        patches.set(cls, "__init__", init)

    web_utils = import_module("neuralop.data.datasets.web_utils")
    originals = {name: getattr(web_utils, name) for name in DOWNLOAD_FUNCTIONS}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "neuralop" or module_name.startswith("neuralop.")):
            continue
        for name, original in originals.items():
            if module.__dict__.get(name) is original:
                patches.set(module, name, _blocked_download(name))
