"""One call to load a model checkpoint, whichever class saved it and whichever loads it.

Upstream's ``BaseModel.from_checkpoint`` is a classmethod that calls
``cls(**recorded_init_kwargs)``: the caller has to know the saving class, and
upstream's classes cannot take the plugin's keys. :func:`load_model` reads the
class name the checkpoint recorded (or takes the class to load into), adapts the
recorded arguments across upstream's and the plugin's classes, and loads the weights.
"""
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import BaseModel

from ..caller_frames import stacklevel_outside
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..precision_policy import PrecisionPolicy
from ..training.checkpointing import (METADATA_SUFFIX, PRECISION_STATE_FILE, STATE_DICT_SUFFIX, CheckpointError,
                                      check_map_location, checkpoint_name, load_torch_files, load_weights_only,
                                      loadable_save)
from .mixed_precision_models import (N_MODES_KEY, PLUGIN_MODEL_CLASSES, RECOMPUTE_DEFAULTS, build_in_settings,
                                     current_n_modes, n_modes_key_taken, recompute_keys_taken, set_n_modes,
                                     set_recompute_settings)
from .constructor_args import constructor_params, rebuilding_arguments

_RECORD_ONLY = ("_name", "_version", "args")
_PACKAGE = os.path.dirname(os.path.dirname(__file__))


def read_checkpoint_metadata(save_folder, save_name):
    """The constructor arguments recorded by ``save_checkpoint`` (``<name>_metadata.pkl``).

    The file holds pickled classes and functions (upstream records ``conv_module``,
    ``non_linearity``...), so it is read with ``weights_only=False``, as upstream
    does: load only checkpoints you trust.
    """
    return torch.load(_metadata_file(save_folder, save_name), weights_only=False)


def _metadata_file(save_folder, save_name):
    """The path of ``save_name``'s metadata in ``save_folder``, or a FileNotFoundError naming it
    (with the recipe for a Trainer's folder of weights only)."""
    path = Path(save_folder) / f"{save_name}{METADATA_SUFFIX}"
    if not path.exists():
        message = f"No model checkpoint metadata at {path} (written by model.save_checkpoint)."
        weights = Path(save_folder) / f"{save_name}{STATE_DICT_SUFFIX}"
        if weights.is_file():  # a Trainer's save_every/save_best folder: weights only, by design
            message += (f" {weights.name} beside it holds weights only (a Trainer checkpoint): build the model "
                        "as the run did, e.g. neuralop_mp.get_model(config), then "
                        f"model.load_state_dict(torch.load({str(weights)!r}, weights_only=True)).")
        raise FileNotFoundError(message)
    return path


def _missing_weights_error(weights, metadata_path):
    """The FileNotFoundError for a checkpoint whose metadata is there and whose weights are not,
    worded as the missing-metadata one (what is missing, what writes it; the message alone, as
    that one: an ``errno`` set on it would make it print "[Errno 2] None: 'path'")."""
    return FileNotFoundError(f"No model checkpoint weights at {weights}: model.save_checkpoint writes them next "
                             f"to the metadata {metadata_path.name}, which is there, and the model cannot be "
                             "loaded without them (a save cut short, or the file moved or removed).")


def _for_upstream_class(cls, kwargs):
    """Arguments of a plugin model's record that upstream's ``cls`` can take: the plugin's
    layer back to ``SpectralConv``, plugin-only keys dropped (with a warning when they
    were not the defaults: upstream's model runs them in full precision). The tanh
    stabilizer is upstream's own argument and is kept wherever ``cls`` takes it (FNO, and
    TFNO through its ``**kwargs``)."""
    params, _ = constructor_params(cls)
    policy, kwargs = PrecisionPolicy.pop_from(kwargs)
    policy = policy.applied()  # a stabilizer of "off" is upstream's None
    keeps_stabilizer = "stabilizer" in params
    lost = policy.replace(stabilizer=None) if keeps_stabilizer else policy
    if not lost.is_default:
        dropped = "" if keeps_stabilizer or policy.stabilizer is None else (
            f", and without the tanh stabilizer, which {cls.__name__} does not take (it computes another function)")
        warnings.warn(f"Loading a checkpoint saved with {policy} into upstream's {cls.__name__}: it runs in full "
                      f"precision with complex64 weights{dropped} (load it into the plugin's class to keep the "
                      "settings).", stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
    for key, value in list(kwargs.items()):
        if isinstance(value, type) and issubclass(value, MixedPrecisionSpectralConv):
            kwargs[key] = SpectralConv
    if "operator_block" in kwargs and getattr(kwargs["operator_block"], "func", None) is FNOBlocks:
        kwargs["operator_block"] = FNOBlocks
    for key in ("fno_block_precision", "stabilizer"):
        if key in params:
            kwargs[key] = PrecisionPolicy.defaults()[key] if key == "fno_block_precision" else policy.stabilizer
    return kwargs


def build_model(metadata, model_class=None, *, precision_policy=None):
    """The model that a checkpoint's recorded constructor arguments build, without its weights.

    The half of :func:`load_model` that runs no file read: :func:`load_saved_model` reads the
    metadata and loads the weights under its file checks around it, and lets an error of the
    constructor pass as it is.

    Parameters
    ----------
    metadata : dict
        What :func:`read_checkpoint_metadata` returns.
    model_class, precision_policy
        As for :func:`load_model`.
    """
    kwargs = dict(metadata)
    saved_name = str(kwargs.get("_name", ""))
    saved_class = BaseModel._models.get(saved_name.lower())
    args = kwargs.pop("args", ())
    for key in _RECORD_ONLY:
        kwargs.pop(key, None)
    asked_for = model_class  # a class the caller named: built as named, never swapped for the plugin's
    if model_class is None:
        model_class = saved_name
    if isinstance(model_class, str):
        registry = BaseModel._models
        if model_class.lower() not in registry:
            raise ValueError(f"Invalid model_class={model_class!r}; registered models: {', '.join(sorted(registry))}.")
        model_class = registry[model_class.lower()]
    # the record is of a call of the saving class: its positional values are named after that class's
    # parameters (a class taking *args, TFNO, would leave them positional beside the recorded defaults)
    args, kwargs = rebuilding_arguments(saved_class or model_class, tuple(args), kwargs)
    plugin = tuple(PLUGIN_MODEL_CLASSES.values())
    settings = {}  # precision settings asked for: build_in_settings puts them where the class takes them
    if precision_policy is not None:
        if model_class in BaseModel._models.values() and not issubclass(model_class, plugin):
            swapped = PLUGIN_MODEL_CLASSES.get(model_class.__name__.lower(), model_class)
            if asked_for is not None and swapped is not model_class:  # its checkpoints would be the plugin's
                raise ValueError(f"Invalid model_class={_class_text(asked_for)} with precision_policy="
                                 f"{precision_policy!r}: upstream's {model_class.__name__} runs no precision "
                                 f"policy; give model_class={swapped.__name__.lower()!r} (the plugin's "
                                 f"{model_class.__name__}, which takes it), or leave out precision_policy.")
            model_class = swapped
        if not issubclass(model_class, plugin):
            raise ValueError(f"precision_policy needs one of the plugin's classes (or a subclass of one), not "
                             f"{model_class.__name__}.")
        settings = PrecisionPolicy.fields_of(precision_policy)
    # the recompute the plugin's classes record: passed where the constructor takes it (a rebuild as
    # from_checkpoint's), set on the built model otherwise (upstream's classes, a narrow subclass's)
    taken = recompute_keys_taken(model_class)
    recompute = {key: kwargs.pop(key) for key in RECOMPUTE_DEFAULTS if key in kwargs and key not in taken}
    # the modules' Fourier modes set since the saved model was built (incremental training): the same way
    n_modes = kwargs.pop(N_MODES_KEY, None) if not n_modes_key_taken(model_class) else None
    # a subclass of the plugin's classes takes the record as they do (or fails as the narrow one it is)
    if saved_class is not None and issubclass(saved_class, plugin) and not issubclass(model_class, plugin):
        kwargs = _for_upstream_class(model_class, kwargs)
    try:
        model = build_in_settings(model_class, args, kwargs, settings) if settings else model_class(*args, **kwargs)
    except TypeError as err:
        if model_class is saved_class:  # the saving class's own constructor: its error as it is
            raise
        saver = saved_class.__name__ if saved_class else repr(saved_name)
        raise TypeError(f"{model_class.__name__} cannot be built from the arguments that a checkpoint saved by "
                        f"{saver} records: {err}") from err
    if n_modes is not None:
        set_n_modes(model, n_modes, f"the checkpoint's {N_MODES_KEY}")
    return set_recompute_settings(model, **recompute) if recompute else model


def _class_text(model_class):
    """``model_class`` as the caller gave it: a registered name quoted, a class by its name."""
    return repr(model_class) if isinstance(model_class, str) else model_class.__name__


def _records_n_modes(metadata):
    """Where the Fourier modes that ``metadata``'s model moved since its build are recorded:

    - "metadata": it holds ``layer_n_modes`` (the plugin's classes, grown): the whole record.
    - "either": it was saved by a class that records them (the plugin's classes, and subclasses
      whose constructor takes ``layer_n_modes``) but holds none: none moved, or the model was
      pickled before its built modes were noted and then grown (then only the training state
      holds them). The training state is read where it can be; where not, the metadata stands,
      without a word (a damaged record beside sound weights is no reason to refuse them).
    - "training state": upstream's classes, which record none in their metadata.
    """
    if N_MODES_KEY in metadata:
        return "metadata"
    saved_class = BaseModel._models.get(str(metadata.get("_name", "")).lower())
    return "either" if saved_class is not None and n_modes_key_taken(saved_class) else "training state"


def trainer_record(save_folder, save_name):
    """``(path, state)`` of the training record beside the weights ``save_name`` in ``save_folder``:
    the ``precision_state.pt`` that ``MixedPrecisionTrainer.checkpoint`` writes with its own save
    (:func:`~neuralop_mp.training.checkpointing.checkpoint_name`: ``best_model`` over ``model``), as
    loaded. None for a folder without one, and for other weights than the trainer's save there (a
    user's own ``model`` saved beside the trainer's ``best_model``): the record is not theirs.

    The one rule of whose record it is, for the modes a load restores
    (:func:`restore_trained_n_modes`), the data processor and errors ``eval`` takes
    (:func:`neuralop_mp.evaluate.training_record`) and
    :func:`neuralop_mp.run_folder.load_data_processor`.

    Raises
    ------
    CheckpointError
        For a ``precision_state.pt`` of that save that cannot be read, naming it.
    """
    folder = Path(save_folder)
    path = folder / PRECISION_STATE_FILE
    if not path.is_file():
        return None
    try:
        if checkpoint_name(folder) != save_name:  # other weights than the ones the trainer saved with it
            return None
    except CheckpointError:  # no trainer save in the folder at all
        return None
    return path, load_weights_only(path)


def restore_trained_n_modes(model, save_folder, save_name, metadata):
    """Set the Fourier modes a trainer's checkpoint records beside the weights on ``model``, built
    from ``metadata``, where that record is the only one: upstream's classes record none in their
    metadata (incremental training grows ``n_modes``, which no state dict entry holds; a new
    metadata key would break upstream's ``from_checkpoint``), but a folder that
    ``MixedPrecisionTrainer.checkpoint`` wrote (``neuralop-mp run``'s trainer included) holds every
    module's ``n_modes`` of the same save in its ``precision_state.pt``. Returns ``model``.

    Nothing is read for metadata holding ``layer_n_modes`` (the plugin's classes, grown: the build
    set them), for a folder without that file, or for weights of another name than the trainer's
    save there (``best_model`` over ``model``). A ``precision_state.pt`` that cannot be read
    (truncated, overwritten) leaves the constructor's modes, with a warning naming it: the weights
    and metadata loaded are sound. For a class that records the modes itself but whose metadata
    holds none (never grown, or pickled before its built modes were noted and grown since) the
    file is read where it can be, and skipped without a word where not (:func:`_records_n_modes`).

    Raises
    ------
    CheckpointError
        For a readable ``precision_state.pt`` whose modes do not fit ``model``, naming it.
    """
    path = Path(save_folder) / PRECISION_STATE_FILE
    recorded = _records_n_modes(metadata)
    if recorded == "metadata":
        return model
    try:
        found = trainer_record(save_folder, save_name)
    except CheckpointError as err:
        if recorded == "either":  # the metadata is likely the whole record: nothing lost to say
            return model
        warnings.warn(f"{path} cannot be read, so the Fourier modes the training left ({type(model).__name__} "
                      f"records none in its metadata) are not set: the model has its constructor's modes. {err}",
                      UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__), _PACKAGE]))
        return model
    if found is None:
        return model
    _, state = found
    record = state.get("n_modes") if isinstance(state, dict) else None
    if record is not None:
        try:
            set_n_modes(model, record, f"n_modes of {path}")
        except ValueError as err:
            raise CheckpointError(f"{path} is the training state of another model than {type(model).__name__}: "
                                  f"{err}") from None
    return model


def load_model(save_folder, save_name, model_class=None, *, precision_policy=None, map_location=None):
    """Rebuild a model saved with ``model.save_checkpoint(save_folder, save_name)``.

    Parameters
    ----------
    save_folder : str or Path
        A folder that a crash between the two renames of a trainer's save left only as
        ``{save_folder}.old`` is loaded from there, with a warning.
    save_name : str
    model_class : type or str, optional
        The class to build (or its registered name, e.g. "fno" or
        "mixedprecisionfno"). Default: the class that saved the checkpoint. A
        checkpoint of upstream's FNO/TFNO/UNO loads into the plugin's class for it
        and the other way round; the plugin's precision keys do not exist upstream
        (a warning says so when they were not the defaults). A class whose constructor
        cannot take the recorded arguments raises a TypeError naming it and the saving class.
    precision_policy : PrecisionPolicy, str or dict, optional
        Precision settings to build the plugin's model with instead of the
        recorded ones (e.g. load an upstream checkpoint to evaluate it in "mixed"): a
        mode string changes only ``fno_block_precision`` and a dict only its keys, the
        recorded settings keep the rest (a checkpoint saved with the tanh stabilizer
        keeps it); a ``PrecisionPolicy`` replaces every precision setting. Without
        ``model_class``, a checkpoint of upstream's FNO/TFNO/UNO is built as the plugin's class
        for it; a ``model_class`` of upstream's given with it is refused (ValueError naming the
        plugin's class to give): it would not be the class asked for, and its checkpoints would
        be the plugin's. A user's subclass of the plugin's classes takes it too: settings its
        constructor does not take are set on the built model.
    map_location : optional
        As for ``torch.load``: None, a device (``torch.device`` or a name, on a CUDA device
        this machine has), a dict of location names to device names, or a callable; another
        value is refused (ValueError or TypeError naming it) before any file is read.

    Returns
    -------
    torch.nn.Module
        The model, with the checkpoint's weights, recomputing in backward what the saved
        model did where its checkpoint records it (the plugin's classes do;
        :func:`~neuralop_mp.models.recompute.set_recompute` on the built model where the class
        built does not take it as a constructor argument). Upstream's classes record no
        recompute: set it again on a model loaded from their checkpoints. The Fourier modes
        the saved model's modules kept, where they had moved since it was built (incremental
        training), are set again the same way (the plugin's classes record them as
        ``layer_n_modes``; upstream's record none: in a trainer's checkpoint folder they are
        set from its ``precision_state.pt``, :func:`restore_trained_n_modes`, elsewhere an
        upstream class's checkpoint loads with its constructor's modes).

    Raises
    ------
    FileNotFoundError
        For a missing metadata or weights file, naming it and what writes it.
    ValueError or TypeError
        For a ``map_location`` that ``torch.load`` cannot use, naming it.
    CheckpointError
        A RuntimeError naming the file, for one that torch cannot read (truncated, emptied,
        overwritten) or weights that do not fit the model built.

    Notes
    -----
    Upstream's ``BaseModel`` records a model built with positional arguments
    (``FNO((16, 16), 1, 1, 32)``) as those arguments plus the default of every parameter
    not passed by keyword, theirs included, so upstream's ``from_checkpoint`` passes them
    twice and fails ("got multiple values for argument"); this function names each
    positional value after the parameters of the class that saved it (values its constructor
    takes only by position, its positional-only or ``*args`` ones, are passed by position),
    whichever class it then builds. The plugin's
    classes record positional arguments so, after the constructor of the class built (a
    subclass's own included: :func:`~neuralop_mp.models.constructor_args.rebuilding_arguments`),
    so ``MixedPrecisionFNO.from_checkpoint`` loads their checkpoints too
    (not those saved before they did); for upstream's own classes it can only be fixed in
    neuraloperator (``BaseModel.__new__``), and this function is the way to load them.
    """
    check_map_location(map_location)  # first: a bad value is no fault of the files
    # a folder a crash left between the two renames of a save: its previous save, with a warning
    save_folder = loadable_save(save_folder)
    return load_saved_model(save_folder, save_name,
                            lambda metadata: build_model(metadata, model_class, precision_policy=precision_policy),
                            map_location=map_location)


def load_saved_model(save_folder, save_name, build, *, map_location=None):
    """The model saved with ``save_checkpoint(save_folder, save_name)``, built by ``build`` and
    loaded: the one path of :func:`load_model` and
    :func:`neuralop_mp.run_folder.load_model_and_precision`, which differ in the folder they are
    given (a save folder, a run folder) and the model they build from the metadata.

    The metadata is read, ``build(metadata)`` builds the model, ``model.load_checkpoint`` loads
    its weights, and :func:`restore_trained_n_modes` sets the Fourier modes a trainer's record
    holds. A damaged file, or weights that do not fit the model built, is a
    :class:`CheckpointError` naming the files
    (:func:`~neuralop_mp.training.checkpointing.load_torch_files`; torch's own errors name no
    file); a missing one a FileNotFoundError naming it.

    Parameters
    ----------
    save_folder : str or Path
    save_name : str
    build : callable
        ``build(metadata)``: the model without its weights (:func:`build_model`). Called outside
        the file checks: an error of the constructor (a subclass's own) is no fault of the files
        and passes as it is.
    map_location : optional
        As for ``torch.load``; the public callers check it first (``check_map_location``).

    Returns
    -------
    torch.nn.Module
    """
    folder = Path(save_folder)
    context = f"Cannot load the model from {save_folder}"
    # a missing file is refused before load_torch_files, which would call it unreadable
    metadata_path = _metadata_file(folder, save_name)
    metadata = load_torch_files(lambda: torch.load(metadata_path, weights_only=False), metadata_path, context=context)
    model = build(metadata)
    weights = folder / f"{save_name}{STATE_DICT_SUFFIX}"
    if not weights.exists():
        raise _missing_weights_error(weights, metadata_path)
    load_torch_files(lambda: model.load_checkpoint(folder, save_name, map_location=map_location), weights,
                     metadata_path, context=context)
    return restore_trained_n_modes(model, folder, save_name, metadata)


_PLUGIN_PACKAGE = __name__.split(".")[0]


class _PluginReference(pickle.UnpicklingError):
    """A pickle that names one of the plugin's classes or functions (:func:`_plugin_reference`)."""


class _RefusesPlugin:
    """A ``pickle_module`` for ``torch.load`` that unpickles as plain neuraloperator would without
    the plugin installed: a global of the plugin's package raises :class:`_PluginReference`."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == _PLUGIN_PACKAGE or module.startswith(_PLUGIN_PACKAGE + "."):
                raise _PluginReference(f"{module}.{name}")
            return super().find_class(module, name)

    load = pickle.load


def _plugin_reference(path):
    """The first of the plugin's classes or functions that the torch file ``path`` pickles (what
    makes it unreadable where neuralop_mp is not installed), else None."""
    try:
        torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RefusesPlugin)
    except _PluginReference as found:
        return str(found)
    return None


def _upstream_class_of(saved_class):
    """The upstream ``BaseModel`` class that ``saved_class`` is or derives from (MixedPrecisionFNO:
    FNO), else None (the plugin's registration of UNO: upstream's UNO is no BaseModel)."""
    for cls in saved_class.__mro__:
        if cls is not BaseModel and issubclass(cls, BaseModel) and cls.__module__.split(".")[0] == "neuralop":
            return cls
    return None


def export_upstream_checkpoint(save_folder, save_name, out_folder, out_name=None, *, map_location=None):
    """Write the checkpoint ``save_name`` of ``save_folder`` again, in ``out_folder``, as one that
    plain neuraloperator reads where neuralop_mp is not installed:
    ``FNO.from_checkpoint(out_folder, out_name)`` (TFNO's for a TFNO).

    The plugin's checkpoints (of ``MixedPrecisionFNO`` / ``MixedPrecisionTFNO``, and of upstream's
    FNO/TFNO built with ``conv_module=MixedPrecisionSpectralConv``) pickle the plugin's classes in
    both files (upstream's ``BaseModel.state_dict()`` stores the constructor record under
    ``_metadata`` in the weights file too), so upstream alone cannot unpickle them. This is
    :func:`load_model` into the upstream class the saving class derives from (the plugin's layer
    back to ``SpectralConv``; full precision, complex64 weights: a warning names the settings
    dropped) and that model's ``save_checkpoint``, with both files written checked to name none
    of the plugin's classes.

    Parameters
    ----------
    save_folder : str or Path
        A ``save_checkpoint`` folder, e.g. a run folder of ``neuralop-mp train``.
    save_name : str
        ``"model"``, ``"best_model"``, ...
    out_folder : str or Path
        Where to write ``{out_name}_state_dict.pt`` and ``{out_name}_metadata.pkl`` (created if needed).
        Both are written and checked first in a temporary folder in it, then moved into place: an
        export refused leaves it as it was (files of an earlier export included; a folder made for
        it removed).
    out_name : str, optional
        Default: ``save_name``.
    map_location : optional
        As for :func:`load_model`.

    Returns
    -------
    torch.nn.Module
        The upstream model written (upstream's class, the checkpoint's weights).

    Raises
    ------
    ValueError
        For a model of no upstream ``BaseModel`` class (UNO: upstream's UNO has no checkpoint
        format), or one whose record keeps one of the plugin's objects upstream's class takes
        as it is (e.g. the plugin's layer in a ``functools.partial``), naming it.
    """
    check_map_location(map_location)
    save_folder = loadable_save(save_folder)
    out_name = save_name if out_name is None else out_name

    def build(metadata):
        saved_class = BaseModel._models.get(str(metadata.get("_name", "")).lower())
        upstream = _upstream_class_of(saved_class) if saved_class is not None else None
        if upstream is None:
            raise ValueError(
                f"Cannot export {Path(save_folder) / save_name}_* (a {metadata.get('_name')!r} checkpoint) to "
                "upstream's format: its model is of no upstream BaseModel class (upstream's UNO is a plain "
                "torch Module, without checkpoints). Load it with neuralop_mp.load_model, save "
                "torch.nn.Module.state_dict(model) with torch.save, and load that into upstream's class built "
                "with the same arguments.")
        plugin = PLUGIN_MODEL_CLASSES.get(upstream.__name__.lower())
        if not issubclass(saved_class, tuple(PLUGIN_MODEL_CLASSES.values())) and plugin is not None and any(
                isinstance(value, type) and issubclass(value, MixedPrecisionSpectralConv) for value in metadata.values()):
            # upstream's FNO/TFNO with the plugin's layer: read as the plugin's class for it records it, so
            # the layer and its precision keys go back to upstream's as they do for the plugin's classes
            metadata = {**metadata, "_name": plugin._name}
        return build_model(metadata, upstream)

    model = load_saved_model(save_folder, save_name, build, map_location=map_location)
    out_folder = Path(out_folder).absolute()
    made = []  # out_folder and the folders above it made for it, innermost first: gone with a refused export
    for folder in (out_folder, *out_folder.parents):
        if folder.exists():
            break
        made.append(folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    # written and checked in a folder of its own first: a refused export leaves out_folder as it was
    # (an earlier export of out_name there included); in out_folder, so the renames stay on its disk
    staging = Path(tempfile.mkdtemp(prefix=f".{out_name}.export-", suffix=".tmp", dir=out_folder))
    try:
        model.save_checkpoint(staging, out_name)
        names = [f"{out_name}{suffix}" for suffix in (STATE_DICT_SUFFIX, METADATA_SUFFIX)]
        for name in names:
            found = _plugin_reference(staging / name)
            if found is not None:
                raise ValueError(f"Cannot export {Path(save_folder) / save_name}_* to upstream's format: its {name} "
                                 f"still names the plugin's {found} (a value of the model's constructor arguments "
                                 f"that upstream's class takes as it is); build the model without it. Nothing was "
                                 f"written in {out_folder}.")
        # the Fourier modes upstream's from_checkpoint rebuilds, read before the files are in place
        rebuilt = current_n_modes(type(model).from_checkpoint(staging, out_name))
        for name in names:  # the metadata, which from_checkpoint reads first, last
            os.replace(staging / name, out_folder / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # made for this export: removed while empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    # the Fourier modes a training moved (incremental): upstream's record holds the constructor's only
    moved = {name: modes for name, modes in current_n_modes(model).items() if rebuilt.get(name) != modes}
    if moved:
        warnings.warn(f"{out_folder}: upstream's {type(model).__name__}.from_checkpoint rebuilds the Fourier "
                      f"modes its constructor sets, not those the training moved to ("
                      + ", ".join(f"{name or 'the model'} {modes}" for name, modes in moved.items())
                      + "): set them again after loading (model.n_modes = ...).",
                      UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
    return model
