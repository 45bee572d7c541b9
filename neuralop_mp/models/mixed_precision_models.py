"""FNO, TFNO and UNO whose precision is a constructor argument.

Upstream's ``BaseModel`` records the keyword arguments a model was built with and
``save_checkpoint`` / ``from_checkpoint`` rebuild the model from them. A precision set
on a built model (``set_precision``) is invisible to that record, so these subclasses
take the plugin's model keys (the fields of :class:`~neuralop_mp.PrecisionPolicy`:
``fno_block_precision``, ``half_dtype``, ``stabilizer``, ``spectral_weight_dtype``,
``autocast_scope``) as constructor arguments, build their spectral layers with them
(and keep the layers outside autocast's scope in float32; on CPU their pointwise
work runs in tiles of grid points, :mod:`~neuralop_mp.models.pointwise_tiles`), and write the
model's current settings into the record whenever it is saved. What the model recomputes in
backward (:func:`~neuralop_mp.models.recompute.set_recompute`) is recorded the same way: they take
``recompute`` and ``recompute_chunk_points`` as constructor arguments too, and a save records the
current ones where they are not the defaults. So are the Fourier modes set on the built model
(incremental training; no state dict entry holds them): ``layer_n_modes``, recorded where they moved
(:func:`current_n_modes`, :func:`set_n_modes`). They are registered
in upstream's registry under names of their own ("mixedprecisionfno",
"mixedprecisiontfno", "mixedprecisionuno"); "fno", "tfno" stay upstream's classes.

A checkpoint of upstream's plain model loads into these classes (its recorded
``conv_module=SpectralConv`` becomes the mixed-precision layer), and
:func:`neuralop_mp.load_model` loads theirs into upstream's classes.
"""
import contextlib
import difflib
import functools
import inspect
import io
import os
import types
import warnings
import weakref

import neuralop
import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import BaseModel
from neuralop.models.fno import FNO, TFNO

from ..caller_frames import stacklevel_outside
from ..layers.autocast_scope import install_recorded_precision_check, set_autocast_scope
from ..layers.input_checks import check_n_modes, check_resolution_scaling_factor
from ..layers.precision_switch import apply_precision_policy, get_precision_policy, mixed_precision_layers
from ..layers.soft_gating import adopt_half_safe_soft_gating
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..precision_policy import PrecisionPolicy
from ..vocabulary import check_int_at_least, normalize_recompute_chunk_points, normalize_stabilizer
from ..wrapped_module import unwrap
from .constructor_args import check_flag_arguments, constructor_params, positional_parameters, rebuilding_arguments
from .pointwise_chunks import DEFAULT_CHUNK_POINTS
from .pointwise_tiles import set_pointwise_tiles
from .recompute import check_recompute_mode, recompute_chunk_points, recompute_mode, set_recompute
from .uno_registration import UNO


def _layer_class(value, key):
    """Our layer for upstream's default ``SpectralConv`` (what upstream checkpoints record);
    any subclass of ours as given; anything else is refused."""
    if value is SpectralConv or value is None:
        return MixedPrecisionSpectralConv
    if isinstance(value, type) and issubclass(value, MixedPrecisionSpectralConv):
        return value
    raise TypeError(
        f"Invalid {key}={value!r}: a mixed-precision model needs MixedPrecisionSpectralConv or a subclass "
        "of it (upstream's SpectralConv is replaced by it)."
    )


#: the constructor arguments of the plugin's classes that set what the model recomputes in backward
#: (set_recompute's mode and chunk_points; None: its default), and their defaults
RECOMPUTE_DEFAULTS = {"recompute": "none", "recompute_chunk_points": None}

#: the constructor argument of the plugin's classes that sets the Fourier modes a built model's modules
#: were given since (incremental training): ``{module name: n_modes}``, what :func:`current_n_modes` reads
N_MODES_KEY = "layer_n_modes"


def _has_settable_n_modes(module):
    """Whether ``module``'s class has an ``n_modes`` property that can be set (upstream's spectral
    layers, ``FNOBlocks`` and FNO: what incremental training and ``model.n_modes = ...`` change)."""
    prop = getattr(type(module), "n_modes", None)
    return isinstance(prop, property) and prop.fset is not None


def _mode_list(n_modes):
    return [int(k) for k in n_modes] if isinstance(n_modes, (list, tuple)) else [int(n_modes)]


def current_n_modes(model):
    """The Fourier modes every module of ``model`` (the model it wraps, under DDP) keeps now.

    No state dict entry holds them: a layer's ``n_modes`` is an attribute, which upstream's
    ``IncrementalFNOTrainer`` (and ``model.n_modes = ...``) changes during training.

    Returns
    -------
    dict
        ``{module name: [int, ...]}`` for every module with a settable ``n_modes`` (the model
        itself under ""), each as its ``n_modes`` reads (a spectral layer's last entry halved
        plus one for real data, as upstream's ``SpectralConv`` stores it), parents first.
    """
    return {name: _mode_list(module.n_modes) for name, module in unwrap(model).named_modules()
            if _has_settable_n_modes(module)}


def _check_is_record(record, what):
    """ValueError naming ``what`` unless ``record`` is a dict (:func:`current_n_modes`' form)."""
    if not isinstance(record, dict):
        raise ValueError(f"Invalid {what}={record!r}; allowed values: a dict {{module name: n_modes}}, as "
                         "neuralop_mp.models.mixed_precision_models.current_n_modes(model) returns it.")


def check_n_modes_record(model, record, what=N_MODES_KEY):
    """ValueError (naming ``what``, the bad entry and the allowed values) unless ``record``
    (:func:`current_n_modes`' form) fits ``model``: a dict naming modules of ``model`` that have
    a settable ``n_modes``, each with as many integers >= 1 as the module's ``n_modes`` has."""
    _check_is_record(record, what)
    modules = dict(unwrap(model).named_modules())
    for name, modes in record.items():
        module = modules.get(name) if isinstance(name, str) else None
        if module is None or not _has_settable_n_modes(module):
            names = [key for key, m in modules.items() if _has_settable_n_modes(m)]
            raise ValueError(f"Invalid {what}: {name!r} is no module of {type(unwrap(model)).__name__} with "
                             f"n_modes; allowed names: {', '.join(map(repr, names)) or 'none'}.")
        count = len(_mode_list(module.n_modes))
        try:  # the layer's own rule (a list or tuple here: a record holds no bare int)
            if not isinstance(modes, (list, tuple)):
                raise ValueError
            check_n_modes(modes, count)
        except ValueError:
            raise ValueError(f"Invalid {what}[{name!r}]={modes!r}; allowed values: {count} integer(s) >= 1, one "
                             "per spatial dimension of the module.") from None


def set_n_modes(model, record, what=N_MODES_KEY):
    """Set every module's ``n_modes`` that ``record`` (:func:`current_n_modes`' form) names back to
    the value recorded, checked first (:func:`check_n_modes_record`); returns ``model``.

    Parents are set before their children (a model's or ``FNOBlocks``' setter hands its value to
    every layer below it), so a record of every module gives each back exactly. A spectral layer's
    last entry is recorded as stored (``n // 2 + 1`` of the ``n`` its setter is given, real data):
    it is set through the setter with the ``n`` that gives it back, so the layer's own check runs."""
    check_n_modes_record(model, record, what)
    for name, module in unwrap(model).named_modules():
        if name not in record:
            continue
        modes = [int(k) for k in record[name]]
        if isinstance(module, SpectralConv) and not module.complex_data:
            modes[-1] = 2 * modes[-1] - 1  # the setter keeps n // 2 + 1 of the last one
        module.n_modes = modes
    kept = current_n_modes(model)
    wrong = {name: kept[name] for name in record if kept[name] != _mode_list(record[name])}
    if wrong:  # a module whose setter keeps something else than its getter read
        raise ValueError(f"Invalid {what}: setting it left {', '.join(f'{n!r} at {m}' for n, m in wrong.items())}, "
                         f"not at the values recorded ({', '.join(f'{record[n]}' for n in wrong)}).")
    return model


def _signature_with_policy(upstream_signature, layer_kwarg, **default_overrides):
    """Upstream's constructor signature, the layer argument defaulting to our layer, and
    every policy key: upstream's own (``fno_block_precision``, ``stabilizer``) where they
    are, the others keyword-only at the end, then the recompute arguments and
    ``layer_n_modes`` (keyword-only)."""
    params = []
    for name, param in upstream_signature.parameters.items():
        if name == layer_kwarg:
            param = param.replace(default=MixedPrecisionSpectralConv)
        elif name in PrecisionPolicy.defaults():
            param = param.replace(default=PrecisionPolicy.defaults()[name])
        elif name in default_overrides:
            param = param.replace(default=default_overrides[name])
        params.append(param)
    present = {p.name for p in params}
    params += [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default)
               for key, default in PrecisionPolicy.defaults().items() if key not in present]
    params += [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default)
               for key, default in RECOMPUTE_DEFAULTS.items()]
    params.append(inspect.Parameter(N_MODES_KEY, inspect.Parameter.KEYWORD_ONLY, default=None))
    return upstream_signature.replace(parameters=params)


# model -> the kinds of warning it was given: each is given once per model (weakly held: a model
# warned is not kept alive by it)
_WARNED = weakref.WeakKeyDictionary()


def _warn_once(model, kind, message, category):
    """Warn ``message`` unless ``model`` was given this ``kind`` of warning; whether it warned.

    It counts as given once ``warnings.warn`` returns: one that a filter turned into an error
    (raised, and perhaps suppressed, as at the end of a ``deferred_precision_check`` block that
    raises) is still due, and the next check gives it. It names the caller's line outside the
    plugin's code that switches and saves (``_SWITCHING_CODE``, ``_PASSING_FILES``).
    """
    given = _WARNED.setdefault(model, set())
    if kind in given:
        return False
    warnings.warn(message, category, stacklevel=stacklevel_outside(_SWITCHING_CODE, _PASSING_FILES))
    given.add(kind)
    return True


@functools.lru_cache(maxsize=None)  # per class: a save asks for it every time (state_dict)
def _keys_taken(cls, keys):
    """Those of ``keys`` that ``cls``'s constructor takes by name: its own and, through
    ``**kwargs``, those of the constructors it passes them on to, up to the plugin's, which takes
    the precision policy's and the recompute arguments
    (:func:`~neuralop_mp.models.constructor_args.constructor_params`)."""
    params, takes_any = constructor_params(cls)
    return frozenset(key for key in keys if takes_any or key in params)


@functools.lru_cache(maxsize=None)  # per class and count: a save asks for it every time (state_dict)
def _names_by_position(cls, count):
    """The names of ``cls``'s parameters that ``count`` positional arguments bind to
    (:func:`~neuralop_mp.models.constructor_args.positional_parameters`)."""
    return frozenset(p.name for p in positional_parameters(cls, count))


@functools.lru_cache(maxsize=None)  # per class: a save asks for it every time (state_dict)
def _recompute_defaults(cls):
    """``{key: default}`` of the recompute arguments as ``cls``'s constructor chain defaults them
    (``RECOMPUTE_DEFAULTS`` where it does not take one by name); read-only, as it is shared."""
    params, _ = constructor_params(cls)
    return types.MappingProxyType({key: params[key].default if key in params else default
                                   for key, default in RECOMPUTE_DEFAULTS.items()})


def _policy_keys_taken(cls):
    """The precision policy's keys that ``cls``'s constructor takes by name (:func:`_keys_taken`)."""
    return _keys_taken(cls, tuple(PrecisionPolicy.defaults()))


def recompute_keys_taken(cls):
    """The recompute arguments (``RECOMPUTE_DEFAULTS``) that ``cls``'s constructor takes by name."""
    return _keys_taken(cls, tuple(RECOMPUTE_DEFAULTS))


def n_modes_key_taken(cls):
    """Whether ``cls``'s constructor takes ``layer_n_modes`` by name (:func:`_keys_taken`)."""
    return N_MODES_KEY in _keys_taken(cls, (N_MODES_KEY,))


def set_recompute_settings(model, recompute="none", recompute_chunk_points=None):
    """:func:`~neuralop_mp.models.recompute.set_recompute` from the constructor arguments of that
    name (a record's; ``recompute_chunk_points=None``: its default); returns ``model``."""
    chunk = {} if recompute_chunk_points is None else {"chunk_points": recompute_chunk_points}
    return set_recompute(model, recompute, **chunk)


def _keeping_built_policy(init):
    """``init`` (a narrow constructor, not the plugin's) that, once it has returned, notes the
    settings it left the model in: what a record without the policy's keys rebuilds. After all
    of its code, which may switch the model; where constructors of this kind call one another,
    the outermost one's note, the last, stands. Layers left in different settings are noted as
    ``None``: a record rebuilds them so, and no uniform setting is what it rebuilds. The recompute
    it left is noted too (``_record_current_recompute``), and so are the Fourier modes where it
    does not take ``layer_n_modes`` (``_record_current_n_modes``)."""

    @functools.wraps(init)  # its signature stays init's: upstream records, and rebuilds, by it
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._built_recompute = self._current_recompute()
        if not n_modes_key_taken(type(self)):  # a rebuild gives what it built
            self._built_n_modes = current_n_modes(self)
        try:
            self._built_policy = get_precision_policy(self).as_dict()
        except ValueError:  # the layers' settings differ
            self._built_policy = None

    return __init__


def _it_or_them(keys):
    """The pronoun for ``keys`` in a warning's text."""
    return "them" if len(keys) > 1 else "it"


def build_in_settings(cls, args, kwargs, settings):
    """``cls(*args, **kwargs)`` (one of the plugin's classes or a user's subclass of one) in the
    precision ``settings``: those its constructor takes by name are passed to it, the others set
    on the built model (:func:`set_after_construction`); a setting replaces the same key of ``kwargs``."""
    taken = _policy_keys_taken(cls)
    model = cls(*args, **{**kwargs, **{key: value for key, value in settings.items() if key in taken}})
    after = {key: value for key, value in settings.items() if key not in taken}
    return set_after_construction(model, after) if after else model


def set_after_construction(model, settings):
    """Put a built model of the plugin's classes (a user's subclass whose constructor does not take
    these precision ``settings``) in them, as its constructor would have: ``fno_block_precision=
    "auto"`` builds in "full" and leaves the decision pending, to be made from data; a fixed mode
    leaves none pending (a constructor's own "auto" included)."""
    settings = dict(settings)
    auto = settings.get("fno_block_precision") == "auto"
    if auto:
        settings["fno_block_precision"] = "full"
    apply_precision_policy(model, dict(settings))  # the settings given, the model's others kept
    if "fno_block_precision" in settings:  # a fixed mode ends a decision the constructor left pending
        model.precision_decision = "pending" if auto else None
    return model


# the model's own sizes and their least values, checked before it is built: upstream builds in_channels=0
# or out_channels=0 and fails at the first forward, and hidden_channels=0 would be refused by the first
# layer under its own name (in_channels). n_layers=0 builds upstream's FNO and TFNO (a lifting then a
# projection: kept, a checkpoint of one loads), not its UNO (an IndexError): the class's _min_layers
_MODEL_SIZE_ARGUMENTS = ("in_channels", "out_channels", "hidden_channels", "n_layers")


def _check_model_sizes(name, arguments, min_layers):
    """Refuse (naming ``<name>.<argument>``, its value and the allowed values) a given size in
    :data:`_MODEL_SIZE_ARGUMENTS` that is no integer >= 1 (``n_layers``: >= ``min_layers``); an
    accepted one becomes a Python int."""
    for key in _MODEL_SIZE_ARGUMENTS:
        if key in arguments:
            least = min_layers if key == "n_layers" else 1
            arguments[key] = check_int_at_least(f"{name}.{key}", arguments[key], least)


def _as_upstream_scaling_factor(factor, order, key):
    """A model's ``resolution_scaling_factor`` (``key``) checked and in the types upstream's
    validation reads: a number (numpy's, a 0-d tensor too) as a float, a list or tuple as a list
    with one entry per layer, each a number or the list of ``order`` floats the layer's own check
    gives (:func:`~neuralop_mp.layers.input_checks.check_resolution_scaling_factor`). Upstream
    turns a tuple, a numpy integer or a string into None (no scaling) without a word."""
    if factor is None or not order:  # no n_modes: upstream's own error comes first
        return factor
    try:
        if isinstance(factor, (list, tuple)):
            return [check_resolution_scaling_factor(item, order) for item in factor]
        return check_resolution_scaling_factor(factor, order)[0]
    except ValueError:
        raise ValueError(
            f"Invalid {key}={factor!r}; allowed values: None, a finite number > 0 (every layer, every spatial "
            f"dimension), or a list or tuple with one entry per layer, each a finite number > 0 or a list of "
            f"{order} of them (one per spatial dimension).") from None


def _as_upstream_uno_scalings(scalings, uno_n_modes, key):
    """UNO's ``uno_scalings`` (``key``) checked, each row as a list of floats: one row per layer
    (upstream counts them), each a list or tuple of one finite number > 0 per spatial dimension (as
    many as ``uno_n_modes[0]`` has entries), the layer's ``resolution_scaling_factor``
    (:func:`~neuralop_mp.layers.input_checks.check_resolution_scaling_factor`). A row of another
    length was refused by the layer under its own argument's name, not the row the user typed;
    upstream builds one (its end-to-end factor zips the rows, the layer keeps what it is given) and
    a row of one entry fails at the first forward. Where ``uno_n_modes`` gives no count, or
    ``scalings`` is None, upstream's own error comes first."""
    rows_of_modes = uno_n_modes if isinstance(uno_n_modes, (list, tuple)) else ()
    if scalings is None or not rows_of_modes or not isinstance(rows_of_modes[0], (list, tuple)):
        return scalings
    order = len(rows_of_modes[0])
    allowed = (f"a list of {order} finite number{'s' if order > 1 else ''} > 0 (the layer's scaling of each of its "
               f"{order} spatial dimension{'s' if order > 1 else ''}, as uno_n_modes[0] has {order} entr"
               f"{'ies' if order > 1 else 'y'})")
    if not isinstance(scalings, (list, tuple)):
        raise ValueError(f"Invalid {key}={scalings!r}; allowed values: a list with one row per layer, each {allowed}.")
    checked = []
    for i, row in enumerate(scalings):
        try:
            if not isinstance(row, (list, tuple)) or len(row) != order:
                raise ValueError
            checked.append(check_resolution_scaling_factor(row, order))
        except ValueError:
            wrong_length = isinstance(row, (list, tuple)) and len(row) != order
            length = f" ({len(row)} entr{'ies' if len(row) != 1 else 'y'})" if wrong_length else ""
            raise ValueError(f"Invalid {key}[{i}]={row!r}{length}; allowed values: {allowed}.") from None
    return checked


def _bound_arguments(cls, signature, args, kwargs):
    """``signature.bind(*args, **kwargs).arguments``; its TypeError names the class whose
    constructor takes ``signature`` and, for an unknown keyword, the closest argument (or
    them all), as Python's own names ``FNO.__init__()``."""
    try:
        return signature.bind(*args, **kwargs).arguments
    except TypeError as err:
        # the plugin's class that holds the signature (a user's subclass calls it through super())
        owner = next((klass for klass in cls.__mro__ if "_plugin_signature" in vars(klass)), cls).__name__
        params = signature.parameters
        names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [] if takes_any else [key for key in kwargs if key not in params]
        if not unknown:
            raise TypeError(f"{owner}.__init__() {err}") from None
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        what = "unexpected keyword arguments" if len(unknown) > 1 else "an unexpected keyword argument"
        listed = "" if all("did you mean" in hint for hint in hints) else f"; its arguments are: {', '.join(names)}"
        # Python's own first complaint (a missing argument, too many positional ones) leads where it is another
        first = "" if "unexpected keyword argument" in str(err) else f"{err}; it also "
        raise TypeError(f"{owner}.__init__() {first}got {what} {', '.join(hints)}{listed}.") from None


class _PrecisionRecordingModel:
    """Constructor and checkpoint glue shared by the plugin's model classes.

    ``_layer_kwarg`` names the upstream argument that takes the spectral layer, and
    ``_plugin_signature`` the class's constructor arguments (its ``__signature__``, which a
    subclass with a constructor of its own, or a mixin's before the plugin's class, does not
    inherit). The stabilizer is always applied by the enclosing ``FNOBlocks`` (upstream
    applies it right before each spectral convolution), so the layers get none: tanh runs once.
    """

    _layer_kwarg = "conv_module"
    _prints_when_built = False  # whether upstream's constructor prints although verbose is False
    _min_layers = 0  # the least n_layers upstream's class builds (see _MODEL_SIZE_ARGUMENTS)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # what cls(...) runs: the first class in the MRO that defines __init__
        owner = next(klass for klass in cls.__mro__ if "__init__" in vars(klass))
        if owner is not cls and issubclass(owner, _PrecisionRecordingModel):
            return  # ours (the plugin's classes), or a subclass's already seen: cls is built as by it
        # a subclass's own constructor, or a mixin's placed before the plugin's class
        if "__signature__" not in vars(cls):
            # upstream's BaseModel records the arguments of inspect.signature(cls) and from_checkpoint
            # passes them to cls: that constructor is what takes them back, not ours
            cls.__signature__ = None
        # what it builds is what a save compares with where a record may lack a key (_record_current_policy): one its
        # constructor chain does not take by name, or one a call may pass by position (the record keeps it there)
        by_position = {name for name, p in inspect.signature(cls).parameters.items()
                       if p.kind is p.POSITIONAL_OR_KEYWORD}
        if (_policy_keys_taken(cls) - by_position != set(PrecisionPolicy.defaults())
                or recompute_keys_taken(cls) - by_position != set(RECOMPUTE_DEFAULTS)):
            cls.__init__ = _keeping_built_policy(cls.__init__)

    def __init__(self, *args, **kwargs):
        # upstream's record is of the call of type(self) (a subclass's own constructor where it has one):
        # rewritten so that cls(*args, **record), upstream's from_checkpoint, makes that call again
        args_kept, record = rebuilding_arguments(type(self), tuple(self._init_kwargs.get("args", ())),
                                                 self._init_kwargs)
        self._init_kwargs = {**record, "args": args_kept}
        arguments = _bound_arguments(type(self), self._plugin_signature, args, kwargs)
        _check_model_sizes(type(self).__name__, arguments, self._min_layers)
        check_flag_arguments(type(self).__name__, arguments, self._plugin_signature.parameters)
        if "resolution_scaling_factor" in arguments:
            arguments["resolution_scaling_factor"] = _as_upstream_scaling_factor(
                arguments["resolution_scaling_factor"], len(arguments.get("n_modes") or ()),
                f"{type(self).__name__}.resolution_scaling_factor")
        if "stabilizer" in arguments:  # as a model built directly takes it: "off" and None are none (no mode
            # default here); upstream's FNOBlocks and the layers take None
            arguments["stabilizer"] = normalize_stabilizer(arguments["stabilizer"],
                                                           key=f"{type(self).__name__}.stabilizer")
        policy, arguments = PrecisionPolicy.pop_from(arguments, prefix=type(self).__name__)
        # checked before the (possibly large) model is built; set on it once built, as get_model does
        recompute = check_recompute_mode(arguments.pop("recompute", "none"), key=f"{type(self).__name__}.recompute")
        chunk_points = normalize_recompute_chunk_points(
            arguments.pop("recompute_chunk_points", None), recompute,
            key=f"{type(self).__name__}.recompute_chunk_points", recompute_key=f"{type(self).__name__}.recompute")
        layer_n_modes = arguments.pop(N_MODES_KEY, None)
        if layer_n_modes is not None:  # before the model is built; its entries are checked against it once built
            _check_is_record(layer_n_modes, f"{type(self).__name__}.{N_MODES_KEY}")
        # "auto" is decided later from data (neuralop_mp.diagnose.auto); until then: full
        auto = policy.fno_block_precision == "auto"
        if auto:
            policy = policy.replace(fno_block_precision="full")
        # every policy key reaches the layer; FNOBlocks passes fno_block_precision itself
        # and applies the stabilizer, so the layer gets none (tanh once per forward FFT)
        layer_settings = {**policy.as_dict(), "stabilizer": None}
        layer_settings.pop("fno_block_precision")
        layer_settings.pop("autocast_scope")  # a property of the whole model, applied below
        layer = functools.partial(_layer_class(arguments.pop(self._layer_kwarg, None), self._layer_kwarg),
                                  **layer_settings)
        upstream_kwargs = self._upstream_kwargs(arguments, policy, layer)
        quiet = self._prints_when_built and not upstream_kwargs.get("verbose", False)
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            super().__init__(**upstream_kwargs)
        # the block's soft-gating skip would otherwise promote autocast activations to fp32
        adopt_half_safe_soft_gating(self)
        set_autocast_scope(self, policy.autocast_scope)
        set_pointwise_tiles(self)  # CPU: the pointwise work a cache-sized tile at a time (same forward)
        self.precision_decision = "pending" if auto else None
        if recompute != "none":
            set_recompute_settings(self, recompute, chunk_points)
        self._record_current_recompute()  # upstream recorded the defaults: a record holds only other values
        # what the other arguments build: a save records the modes only where they moved from it
        self._built_n_modes = current_n_modes(self)
        if layer_n_modes is not None:
            set_n_modes(self, layer_n_modes, f"{type(self).__name__}.{N_MODES_KEY}")
        self._record_current_n_modes()

    def _upstream_kwargs(self, arguments, policy, layer):
        return {**arguments, self._layer_kwarg: layer, "fno_block_precision": policy.fno_block_precision,
                "stabilizer": policy.stabilizer}

    @property
    def precision_policy(self):
        """The model's current settings (a :class:`~neuralop_mp.PrecisionPolicy`)."""
        return get_precision_policy(self)

    def _record_current_policy(self):
        """Write the current settings into the constructor record that checkpoints keep.

        set_precision / a schedule may have switched the model since it was built. Layers set
        one by one may disagree: there is then no model-level policy to write, and saving must
        not fail, so the record stays as it was and a warning (once per model) says so. The
        record takes the policy's keys that the constructor chain takes by name
        (:func:`_policy_keys_taken`), less those its call passed by position (the record keeps
        them in its positional arguments: by name too, a rebuild would pass them twice). The
        others are rebuilt as that constructor builds them, and a warning (once per model) names
        those that differ from what it left the model in (``_keeping_built_policy``), or the
        settings of a model whose constructor left its layers in different ones and that is now
        in one. A model pickled whole before the plugin noted that has no note: nothing is
        warned for it (a warning at every save of a model that may lose nothing would be a false
        alarm), and the keys its constructor takes are recorded as ever.
        """
        try:
            current = self.precision_policy.as_dict()
        except ValueError as err:
            _warn_once(self, "layer settings",
                       f"{type(self).__name__}: the spectral layers' precision settings differ ({err}); the "
                       "checkpoint records the model-level precision policy it was last built or switched "
                       "with, so the per-layer settings must be reapplied after loading it.", UserWarning)
            return
        name = type(self).__name__
        by_position = _names_by_position(type(self), len(self._init_kwargs.get("args", ())))
        taken = _policy_keys_taken(type(self)) - by_position
        built = self.__dict__.get("_built_policy", current)  # none noted (an old pickle, or all taken): nothing to tell
        if built is None:
            _warn_once(self, "unrecorded",
                       f"{name}'s constructor leaves the spectral layers in different precision settings, and its "
                       f"checkpoint rebuilds them so: the settings set on the whole model since are lost "
                       f"({self.precision_policy}). Set them again after loading the checkpoint "
                       "(neuralop_mp.set_precision).", UnrecordedPrecisionWarning)
        else:
            changed = {k: v for k, v in current.items() if k not in taken and v != built[k]}
            if changed:
                not_taken = [k for k in changed if k not in by_position]
                passed = [k for k in changed if k in by_position]
                whys = ([f"does not take {', '.join(not_taken)}"] if not_taken else []) + (
                    [f"took {', '.join(passed)} by position"] if passed else [])
                take = ", ".join(not_taken) if passed else _it_or_them(not_taken)  # names where both advices are
                as_arguments = "as constructor arguments" if len(not_taken) > 1 else "as a constructor argument"
                advice = ([f"Take {take} {as_arguments} (or **kwargs passed on) to "
                           f"record {_it_or_them(not_taken)}."] if not_taken else []) + (
                    [f"Pass {', '.join(passed)} by keyword to record {_it_or_them(passed)}."] if passed else [])
                them = _it_or_them(changed)
                _warn_once(self, "unrecorded",
                           f"{name}'s constructor {' and '.join(whys)}: its checkpoint rebuilds {them} as that "
                           f"constructor builds {them}, so the precision set on the model since is lost: "
                           f"{_lost_settings(built, changed)}. {' '.join(advice)}", UnrecordedPrecisionWarning)
        # a new dict, not an update in place: earlier state dicts hold the old one as their _metadata
        self._init_kwargs = {**self._init_kwargs, **{k: v for k, v in current.items() if k in taken}}

    def _current_recompute(self):
        """The constructor arguments that rebuild what the model recomputes now (the default
        chunk points as None, the constructor's default)."""
        chunk_points = recompute_chunk_points(self)
        return {"recompute": recompute_mode(self),
                "recompute_chunk_points": None if chunk_points == DEFAULT_CHUNK_POINTS else chunk_points}

    def _record_current_recompute(self):
        """Write what the model recomputes in backward now (``recompute``, ``recompute_chunk_points``)
        into the constructor record, as :meth:`_record_current_policy` does the precision.

        Only the values that differ from the constructor's defaults are recorded, so the record of
        a model without recompute holds neither key (as before they were recorded), and records
        without them rebuild no recompute. A constructor that does not take one of them by keyword
        (a subclass's own) rebuilds what it builds: the value is not recorded, and a warning (once
        per model) names it where it differs from what that constructor left the model in
        (``_keeping_built_policy``; a model with no note, as while it is built, warns nothing).
        """
        by_position = _names_by_position(type(self), len(self._init_kwargs.get("args", ())))
        taken = recompute_keys_taken(type(self)) - by_position
        current = self._current_recompute()
        defaults = _recompute_defaults(type(self))
        changed = {key: value for key, value in current.items() if value != defaults[key]}
        built = self.__dict__.get("_built_recompute", current)
        lost = [key for key in current if key not in taken and current[key] != built[key]]
        if lost:
            _warn_once(self, "unrecorded recompute",
                       f"{type(self).__name__}'s constructor does not take {', '.join(lost)} by keyword: its "
                       "checkpoint rebuilds the recompute that constructor sets, so the one set on the model since is "
                       f"lost: {_lost_settings(built, {key: current[key] for key in lost})}. Set it again after "
                       "loading the checkpoint (neuralop_mp.models.recompute.set_recompute).",
                       UnrecordedPrecisionWarning)
        # a new dict, not an update in place: earlier state dicts hold the old one as their _metadata
        self._init_kwargs = {**{key: value for key, value in self._init_kwargs.items() if key not in taken},
                             **{key: value for key, value in changed.items() if key in taken}}

    def _record_current_n_modes(self):
        """Write the Fourier modes the model's modules keep now (:func:`current_n_modes`) into the
        constructor record as ``layer_n_modes``, where any of them differs from what the other
        arguments built (incremental training grows a layer's ``n_modes``, which no state dict entry
        holds): the whole map then, so a rebuild sets every module back. A record of a model whose
        modes never moved holds no such key (as before it was recorded). A subclass whose own
        constructor does not take it by keyword rebuilds the modes that constructor builds: a warning
        (once per model) says what is lost.
        """
        built = self.__dict__.get("_built_n_modes")
        if built is None:  # a model pickled whole before the modes were noted: nothing to compare with
            return
        current = current_n_modes(self)
        record = {key: value for key, value in self._init_kwargs.items() if key != N_MODES_KEY}
        if current != built:
            if n_modes_key_taken(type(self)):
                record[N_MODES_KEY] = current
            else:
                moved = ", ".join(f"{name or 'the model'} {current[name]} (it loads with {built[name]})"
                                  for name in current if current[name] != built[name])
                _warn_once(self, "unrecorded n_modes",
                           f"{type(self).__name__}'s constructor does not take {N_MODES_KEY}: its checkpoint "
                           f"rebuilds the Fourier modes that constructor sets, so those set since are lost: {moved}. "
                           f"Take {N_MODES_KEY} as a keyword argument (or **kwargs passed on) to record them, or "
                           "set them again after loading (neuralop_mp.models.mixed_precision_models.set_n_modes).",
                           UnrecordedPrecisionWarning)
        # a new dict, not an update in place: earlier state dicts hold the old one as their _metadata
        self._init_kwargs = record

    def _apply(self, fn, recurse=True):
        """``Module._apply``, after every spectral layer has checked ``fn`` (a conversion to a real
        dtype is refused, :meth:`MixedPrecisionSpectralConv._apply`): here, before any module of the
        model is converted (UNO's lifting comes before its first spectral layer)."""
        for module in self.modules():
            if isinstance(module, MixedPrecisionSpectralConv):
                module._check_conversion(fn)
        return super()._apply(fn, recurse)

    def state_dict(self, *args, **kwargs):
        """Upstream's state dict; its ``_metadata`` holds the current precision and recompute settings
        and the modules' Fourier modes where they moved (:meth:`_record_current_n_modes`)."""
        self._record_current_policy()
        self._record_current_recompute()
        self._record_current_n_modes()
        return super().state_dict(*args, **kwargs)

    def save_checkpoint(self, save_folder, save_name):
        """Upstream's ``save_checkpoint``, recording the current precision and recompute settings and
        the modules' Fourier modes where they moved since the model was built."""
        self._record_current_policy()
        self._record_current_recompute()
        self._record_current_n_modes()
        return super().save_checkpoint(save_folder, save_name)


class MixedPrecisionFNO(_PrecisionRecordingModel, FNO, name="MixedPrecisionFNO"):
    """Upstream's :class:`~neuralop.models.FNO` with mixed-precision spectral layers.

    Takes every argument of ``FNO`` plus ``half_dtype``, ``spectral_weight_dtype`` and
    ``autocast_scope`` (:mod:`neuralop_mp.layers.autocast_scope`);
    ``fno_block_precision`` and ``stabilizer`` keep upstream's names and meaning but are
    validated and carried out by :class:`~neuralop_mp.MixedPrecisionSpectralConv`.
    ``conv_module`` defaults to that layer (upstream's ``SpectralConv`` is replaced by it).

    Examples
    --------
    >>> model = MixedPrecisionFNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=8,
    ...                           fno_block_precision="mixed", half_dtype="bfloat16")
    >>> model.precision_policy.fno_block_precision
    'mixed'
    """

    __signature__ = _plugin_signature = _signature_with_policy(inspect.signature(FNO), "conv_module")


class MixedPrecisionTFNO(_PrecisionRecordingModel, TFNO, name="MixedPrecisionTFNO"):
    """Upstream's :class:`~neuralop.models.TFNO` (Tucker, rank 0.1 by default) with
    mixed-precision spectral layers; arguments as :class:`MixedPrecisionFNO`."""

    __signature__ = _plugin_signature = _signature_with_policy(inspect.signature(FNO), "conv_module",
                                                               factorization="Tucker", rank=0.1)


class MixedPrecisionUNO(_PrecisionRecordingModel, UNO, name="MixedPrecisionUNO"):
    """Upstream's U-shaped neural operator with mixed-precision spectral layers.

    Upstream's ``UNO`` has no ``stabilizer`` argument and never hands its
    ``integral_operator`` or a precision to its blocks: here the layer, the precision
    and the stabilizer are given to every ``FNOBlocks`` directly.
    """

    _layer_kwarg = "integral_operator"
    __signature__ = _plugin_signature = _signature_with_policy(inspect.signature(UNO), "integral_operator")
    # upstream's UNO prints its skips' names (fno_skip=..., channel_mlp_skip=...) at every build, whatever
    # `verbose`: lines amid a run's output; printed here with verbose=True only
    _prints_when_built = True
    _min_layers = 1  # upstream's UNO fails to build 0 blocks (an IndexError)

    def _upstream_kwargs(self, arguments, policy, layer):
        if "uno_scalings" in arguments:
            arguments["uno_scalings"] = _as_upstream_uno_scalings(
                arguments["uno_scalings"], arguments.get("uno_n_modes"), f"{type(self).__name__}.uno_scalings")
        block = arguments.pop("operator_block", FNOBlocks)
        if isinstance(block, functools.partial):  # a record of ours: keep its block class only
            block = block.func
        return {**arguments, "integral_operator": layer,
                "operator_block": functools.partial(block, conv_module=layer, stabilizer=policy.stabilizer,
                                                    fno_block_precision=policy.fno_block_precision)}


#: upstream architecture name -> the plugin's class for it
PLUGIN_MODEL_CLASSES = {"fno": MixedPrecisionFNO, "tfno": MixedPrecisionTFNO, "uno": MixedPrecisionUNO}


class UnrecordedPrecisionWarning(UserWarning):
    """A precision set on an upstream model that its checkpoint would not keep
    (:func:`warn_unrecorded_precision`)."""


@contextlib.contextmanager
def ignoring_unrecorded_precision():
    """Context manager: no :class:`UnrecordedPrecisionWarning` inside, for models that are
    never saved (benchmarks and measurements building upstream's classes to compare with)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnrecordedPrecisionWarning)
        yield


_HERE = os.path.dirname(__file__)
# frames the warnings skip to name the user's line: the precision setters (layers/), the models package (models/),
# the plugin's code that switches or saves a model for its user (a schedule's phase and checkpoints in
# training/, from upstream's training loop, which calls the trainer's hooks; the calibration in diagnose/),
# the context managers' frames (contextlib) and torch's Module (a container's or a wrapper's state_dict)
_SWITCHING_CODE = ([_HERE, os.path.join(os.path.dirname(neuralop.__file__), "training")]
                   + [os.path.join(os.path.dirname(_HERE), name) for name in ("layers", "training", "diagnose")])
_PASSING_FILES = [contextlib.__file__, torch.nn.modules.module.__file__]


# what an FNOBlocks decides for its spectral layers (it passes its fno_block_precision to them and
# applies its stabilizer itself), and what a layer in it takes from its own arguments
_BLOCK_KEYS = ("fno_block_precision", "stabilizer")
_LAYER_KEYS = ("half_dtype", "spectral_weight_dtype")


def _partial_keywords(value):
    """The keyword arguments a ``functools.partial`` (nested ones included) adds; {} for anything else."""
    keywords = {}
    while isinstance(value, functools.partial):
        keywords = {**value.keywords, **keywords}  # the outer partial's keyword is the one passed
        value = value.func
    return keywords


def _lost_settings(loaded, current):
    """``"key=value (it loads with old), ..."`` for each setting of ``current`` that differs from
    ``loaded`` (what a checkpoint rebuilds); "" where none does."""
    return ", ".join(f"{key}={value!r} (it loads with {loaded[key]!r})"
                     for key, value in current.items() if value != loaded[key])


def _recorded_policy(model):
    """The settings upstream's constructor record of ``model`` rebuilds.

    Its precision keys; those its recorded layer argument adds as a ``functools.partial``
    (FNO's and TFNO's ``conv_module``, FNOGNO's and GINO's ``fno_conv_module``; upstream's UNO
    hands its ``integral_operator`` to no block, its layers are its ``operator_block``'s
    ``conv_module``, its precision that block's keywords); the layers' defaults for the
    others; and, where it records none, an upstream model's autocast scope, "model" (plain
    autocast).
    """
    record = getattr(model, "_init_kwargs", {})
    # FNOGNO and GINO name their FNO's arguments "fno_" + FNO's name (fno_block_precision is FNO's own)
    record = {**{key: record[f"fno_{key}"] for key in ("conv_module", "stabilizer") if f"fno_{key}" in record},
              **record}
    block = _partial_keywords(record.get("operator_block"))
    layer = _partial_keywords(record.get("conv_module", block.get("conv_module")))
    passed = {**{k: layer[k] for k in _LAYER_KEYS if k in layer}, **{k: block[k] for k in _BLOCK_KEYS if k in block}}
    recorded, _ = PrecisionPolicy.pop_from({"autocast_scope": "model", **passed, **record})
    return recorded


def warn_unrecorded_precision(model):
    """Warn, once per model, when ``model``'s precision settings would not survive its checkpoint.

    That is an upstream neuraloperator model (a ``BaseModel``, not one of the plugin's
    classes) with mixed-precision layers whose settings differ from the ones its
    constructor record holds: upstream's ``save_checkpoint`` writes only that record, and
    ``from_checkpoint`` and :func:`~neuralop_mp.load_model` rebuild the model in it, so a
    precision set on the built model (``set_precision``, a schedule's switch, the weight
    storage, the autocast scope) is lost. The plugin's class for the architecture writes
    the current settings into its record whenever it is saved. The precision setters call
    it once they have changed ``model``, through
    :func:`~neuralop_mp.layers.autocast_scope.check_recorded_precision` (not for a temporary
    switch, restored when its block ends); the warning names the caller's line outside the
    plugin's code that switches precision (its models, layers, trainer and calibration, and
    upstream's training loop).

    A model in ``DistributedDataParallel`` or ``DataParallel`` is checked as the model it
    wraps (what is saved); its bare parts (``fno_blocks``) and other containers pass.

    Returns
    -------
    bool
        Whether it warned (a model already warned, or one that loses nothing: False).
    """
    model = unwrap(model)
    if (not isinstance(model, BaseModel) or isinstance(model, _PrecisionRecordingModel)
            or not mixed_precision_layers(model)):
        return False
    recorded = _recorded_policy(model)
    try:
        current = get_precision_policy(model)
    except ValueError:  # layers in different settings: no model-level setting to record either
        current = None
    if current == recorded:
        return False
    lost = ("the layers' own precision settings (they differ)" if current is None
            else _lost_settings(recorded.as_dict(), current.as_dict()))
    name = type(model).__name__
    # upstream's class the model is, or derives from (the plugin's registration of upstream's UNO counts as it)
    upstream = next(klass for klass in type(model).__mro__
                    if klass is UNO or klass.__module__.split(".")[0] == neuralop.__name__)
    plugin = PLUGIN_MODEL_CLASSES.get(upstream.__name__.lower())
    again = "Set the precision again after loading the checkpoint (neuralop_mp.set_precision)"
    if plugin is None:
        advice = (f"{again}; the plugin's classes that record it in their checkpoints are "
                  f"{', '.join(c.__name__ for c in PLUGIN_MODEL_CLASSES.values())}.")
    elif upstream is type(model):  # load_model builds the plugin's class for it where given a precision_policy
        advice = (f"neuralop_mp.{plugin.__name__} (what neuralop_mp.get_model builds for mixed precision) records "
                  "the current settings in its checkpoints; or pass them when loading: "
                  "neuralop_mp.load_model(folder, name, precision_policy=...).")
    else:
        advice = (f"{again}, or derive {name} from neuralop_mp.{plugin.__name__}, which records the current "
                  "settings in its checkpoints.")
    whose = "upstream's class" if upstream is type(model) else f"a subclass of upstream's {upstream.__name__}"
    return _warn_once(model, "unrecorded",
                      f"{name} is {whose}: its checkpoint (save_checkpoint) records only the arguments it was "
                      f"built with, so the precision set on it since is lost: {lost}. {advice}",
                      UnrecordedPrecisionWarning)


install_recorded_precision_check(warn_unrecorded_precision)  # what the precision setters run
