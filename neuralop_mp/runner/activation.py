"""Switching the plugin on for unmodified neuraloperator code, and off again.

``enable(...)`` replaces, for the duration of one activation, the names an
upstream training script uses to build its model, trainer, optimizer and data:

* ``neuralop.get_model`` (also ``neuralop.models.get_model`` and
  ``neuralop.models.base_model.get_model``) builds through
  :func:`neuralop_mp.get_model` with the requested precision, so the model gets
  :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers;
* ``neuralop.Trainer`` (also ``neuralop.training.Trainer`` and
  ``neuralop.training.trainer.Trainer``) becomes a subclass of
  :class:`~neuralop_mp.MixedPrecisionTrainer` bound to the requested schedule;
  ``neuralop.training.IncrementalFNOTrainer`` (also
  ``neuralop.training.incremental.IncrementalFNOTrainer``) becomes the same with
  upstream's incremental algorithms
  (:class:`~neuralop_mp.training.incremental.IncrementalMixedPrecisionTrainer`);
* ``neuralop.training.AdamW`` (what upstream's scripts import), only where an
  option needs the plugin's optimizer (:func:`optimizer_replacement_reason`:
  ``optimizer``, or complex32 spectral weights, which upstream's AdamW cannot
  step), builds the optimizer through
  :func:`neuralop_mp.optim.factory.create_optimizer`. The stand-in is a subclass
  of upstream's class: while the activation lasts, ``isinstance`` with it holds for
  upstream's optimizers and for the ones it built, and a class that subclasses it
  keeps its own ``__init__``. Without such an option upstream's class stays, with
  its own defaults and update. ``torch.optim`` is never touched;
* ``neuralop.training.setup`` (what the scripts call first) joins the process
  group ``torchrun`` describes, on CPUs (gloo) as on GPUs (nccl), when the
  script's ``distributed.use_distributed`` is set
  (:mod:`neuralop_mp.runner.distributed_setup`);
* upstream's dataset classes read files already on disk without any network
  call (:mod:`neuralop_mp.runner.offline`).

``disable()`` puts every replaced attribute back exactly as it was. Nothing is
patched on import: importing this module changes nothing.

Examples
--------
>>> import neuralop, neuralop_mp
>>> with neuralop_mp.enabled(schedule="paper") as report:
...     exec(open("train_darcy.py").read())       # an unmodified upstream script
>>> report.models[0]["layer_types"]
['MixedPrecisionSpectralConv']
"""
import contextlib
import inspect
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from importlib import import_module

from ..build_steps import precision_schedule_warning, stabilizer_schedule_warning
from ..caller_frames import stacklevel_outside
from ..layers.weight_storage import normalize_spectral_weight_dtype
from ..optim.settings import CONFIG_OPTIONS
from ..vocabulary import (PRECISION_MODES, check_choice, normalize_flag, normalize_half_dtype, normalize_recompute,
                          normalize_recompute_chunk_points, normalize_stabilizer_request, setting_as_given)
from .report import ActivationReport

#: extra optimizer settings ``enable(optimizer_options=...)`` passes to the factory
OPTIMIZER_OPTION_KEYS = tuple(option.config_field for option in CONFIG_OPTIONS)
_OPTIONS_BY_FIELD = {option.config_field: option for option in CONFIG_OPTIONS}

# (module, attribute) pairs that hold each replaced upstream name
GET_MODEL_SITES = (
    ("neuralop", "get_model"),
    ("neuralop.models", "get_model"),
    ("neuralop.models.base_model", "get_model"),
)
TRAINER_SITES = (
    ("neuralop", "Trainer"),
    ("neuralop.training", "Trainer"),
    ("neuralop.training.trainer", "Trainer"),
)
INCREMENTAL_TRAINER_SITES = (
    ("neuralop.training", "IncrementalFNOTrainer"),
    ("neuralop.training.incremental", "IncrementalFNOTrainer"),
)
SETUP_SITES = (
    ("neuralop.training", "setup"),
    ("neuralop.training.torch_setup", "setup"),
)
NEURALOP_ADAMW_SITES = (
    ("neuralop.training", "AdamW"),
    ("neuralop.training.adamw", "AdamW"),
)

_state = {"patches": None, "report": None}


class AttributePatches:
    """Attribute replacements that can be undone exactly, in reverse order."""

    def __init__(self):
        self._undo = []

    def set(self, owner, name, value):
        """Replace ``owner.name`` by ``value``, remembering the old value."""
        self._undo.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def set_module_attr(self, module_name, name, value):
        self.set(import_module(module_name), name, value)

    def restore(self):
        """Put back every replaced attribute (last replaced, first restored)."""
        while self._undo:
            owner, name, old = self._undo.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)

    def __len__(self):
        return len(self._undo)


_MISSING = object()


def _validated_options(options, prefix=""):
    """Every keyword of :func:`enable` (all of them, in ``options``), checked and normalized.

    The one check of the plugin's options, run by :func:`enable` and, on its ``--mp.*``
    flags, by ``neuralop-mp run`` (:mod:`neuralop_mp.runner.cli`) before the script
    starts: each message names a value as ``prefix + keyword``, as the caller wrote it
    (``prefix="--mp."`` on the command line). Values and settings that cannot be combined
    are refused with the library's own checks (TensorGRaD's settings, the trainer's loss
    scaling, the schedule parser, update in backward's), before anything is patched.
    Besides the keywords, ``schedule_as_given``: the schedule as the caller spelled it
    (``"paper"``; None without a schedule), which the report's notes name the option by.
    """
    from ..optim.update_in_backward import auto_scaling_refusal, check_update_in_backward_settings
    from ..training.trainer import _normalize_loss_scaling

    def name(key):
        return prefix + key

    recompute = options["recompute"]
    if recompute is not None:
        recompute = normalize_recompute(recompute, key=name("recompute"))
    recompute_chunk_points = normalize_recompute_chunk_points(
        options["recompute_chunk_points"], recompute, key=name("recompute_chunk_points"),
        recompute_key=name("recompute"))
    update_in_backward = options["update_in_backward"]
    if update_in_backward is not None:
        update_in_backward = normalize_flag(update_in_backward, name("update_in_backward"))
    spectral_weight_dtype = options["spectral_weight_dtype"]
    if spectral_weight_dtype is not None:
        spectral_weight_dtype = normalize_spectral_weight_dtype(spectral_weight_dtype,
                                                                key=name("spectral_weight_dtype"))
    precision = options["precision"]
    if precision is not None:
        check_choice(name("precision"), precision, PRECISION_MODES)
    half_dtype = options["half_dtype"]
    if half_dtype is not None:
        half_dtype = normalize_half_dtype(half_dtype, key=name("half_dtype"))
    # an explicit keyword, whose default None is "not given" (the mode's default): a string spelling
    # of None ("none", "null") asks for no stabilizer, "off", as --mp.stabilizer none does
    stabilizer = normalize_stabilizer_request(options["stabilizer"], key=name("stabilizer"), given=True)
    schedule = options["schedule"]
    # the schedule as the caller spelled it ("paper"), which the notes name the option by
    schedule_as_given = schedule if isinstance(schedule, str) else None
    if schedule is not None and schedule != "":
        from ..training.schedule import PrecisionSchedule

        if not isinstance(schedule, (str, list, tuple, PrecisionSchedule)):  # the kind of value: named once
            PrecisionSchedule.from_config(schedule, key=name("schedule"))
        try:
            schedule = PrecisionSchedule.from_config(schedule)
        except (ValueError, TypeError) as error:
            raise type(error)(f"Invalid {name('schedule')}={schedule!r}: {error}") from None
        schedule_as_given = schedule_as_given or str(schedule)  # a list or PrecisionSchedule: its own text
    else:
        schedule = schedule_as_given = None
    # the factory's registry, read now: a kind added with register_optimizer is one `train` builds
    from ..optim.factory import list_optimizers, setting_readers, unread_settings_error

    optimizer = options["optimizer"]
    if optimizer is not None:
        check_choice(name("optimizer"), optimizer, list_optimizers())
    optimizer_options = options["optimizer_options"] or {}
    if not isinstance(optimizer_options, Mapping):
        raise TypeError(f"Invalid {name('optimizer_options')}={optimizer_options!r}; expected a dict of "
                        f"{', '.join(OPTIMIZER_OPTION_KEYS)}.")
    optimizer_options = dict(optimizer_options)
    for key, value in optimizer_options.items():
        check_choice("optimizer option", key, OPTIMIZER_OPTION_KEYS)
        _OPTIONS_BY_FIELD[key].check(name(key), value)  # TensorGRaD's own check, now rather than at the first step
    # a setting the kind does not read (AdamW: none; galore/sparse: their dropped part): refused now
    unread = unread_settings_error(optimizer, {k: v for k, v in optimizer_options.items() if v is not None},
                                   name("optimizer"), prefix)
    if unread is not None:
        raise unread
    if optimizer_options and optimizer is None:  # upstream's AdamW is kept: nothing would read them
        raise ValueError(f"{', '.join(name(key) for key in optimizer_options)} set(s) TensorGRaD settings, which "
                         f"only {name('optimizer')} {'|'.join(setting_readers())} reads, and no {name('optimizer')} is "
                         "given; add it, or leave them out.")
    loss_scaling = options["loss_scaling"]
    if loss_scaling is not None:
        _normalize_loss_scaling(loss_scaling, key=name("loss_scaling"))  # the trainer's check
    if update_in_backward:  # what the trainer would refuse once the script builds it
        check_update_in_backward_settings(loss_scaling=loss_scaling, optimizer_kind=optimizer or "adamw",
                                          nonfinite_grad=optimizer_options.get("tensorgrad_nonfinite_grad"),
                                          prefix=prefix)
        if loss_scaling is None or _normalize_loss_scaling(loss_scaling) == "auto":
            # what the trainer will run: the schedule asked, else constant `precision` ("full": no half
            # type); a half type of "auto" resolves on the script's device, and without either the
            # script's own config decides: left to the trainer there
            asked = (setting_as_given(prefix, "schedule", schedule_as_given) if schedule is not None
                     else setting_as_given(prefix, "precision", precision))
            scaled = auto_scaling_refusal(
                runs_half=schedule.uses_half if schedule is not None else precision in ("mixed", "half"),
                half_is_float16=half_dtype == "float16", asked=asked,
                complex32_weights=spectral_weight_dtype == "complex32",
                names={key: prefix + key for key in ("half_dtype", "spectral_weight_dtype", "loss_scaling",
                                                     "update_in_backward")})
            if scaled is not None:
                raise ValueError(scaled)
    data_root = options["data_root"]
    if data_root is not None and not isinstance(data_root, (str, os.PathLike)):
        raise TypeError(f"Invalid {name('data_root')}={data_root!r}; expected a folder's path (a str or a Path).")
    if data_root is not None:  # "" or blank (an unset shell variable) refused: the data commands' rule
        from ..data.cache import data_root_option, resolve_root

        with data_root_option(name("data_root")):
            root = resolve_root(data_root)  # "~" expanded, as the loaders will read it
        if root.exists() and not root.is_dir():
            raise ValueError(f"Invalid {name('data_root')}={str(data_root)!r}: a file; give the folder that holds "
                             "(or is to hold) the data files.")
    return dict(
        precision=precision,
        half_dtype=half_dtype,
        schedule=schedule,
        schedule_as_given=schedule_as_given,
        stabilizer=stabilizer,
        spectral_weight_dtype=spectral_weight_dtype,
        optimizer=optimizer,
        optimizer_options=optimizer_options,
        recompute=recompute,
        recompute_chunk_points=recompute_chunk_points,
        update_in_backward=update_in_backward,
        loss_scaling=loss_scaling,
        data_root=None if data_root is None else str(data_root),
        # None, 0 and 1 as bool() read them (what the option took before its spellings were checked)
        offline=bool(options["offline"]) if options["offline"] in (None, 0, 1) else normalize_flag(
            options["offline"], name("offline")),
    )


def optimizer_replacement_reason(options, prefix=""):
    """Why the activation replaces ``neuralop.training.AdamW``, in words, or None when it keeps it.

    Upstream's AdamW (``eps=1e-6``, ``correct_bias``, its own update and state keys) is kept
    unless an option needs the plugin's optimizer factory: an ``optimizer`` kind, or
    complex32 spectral weights, whose moments upstream's AdamW would keep in complex32 (it
    cannot even step them on CPU: no complex32 ``sqrt``), where the factory's "adamw" keeps
    them in float32. ``update_in_backward``, loss scaling and the schedules work with
    upstream's AdamW. ``options`` are :func:`_validated_options`' for ``prefix``, which
    names them as the caller wrote them (``--mp.`` on the command line).
    """
    if options.get("optimizer") is not None:
        return f"{prefix}optimizer={options['optimizer']}"
    if options.get("spectral_weight_dtype") == "complex32":
        return (f"{prefix}spectral_weight_dtype=complex32 (upstream's AdamW would keep complex32 moments, "
                "and cannot step them on CPU)")
    return None


def is_enabled():
    """True while an activation is in force."""
    return _state["patches"] is not None


def enable(
    *,
    precision=None,
    half_dtype=None,
    schedule=None,
    stabilizer=None,
    spectral_weight_dtype=None,
    optimizer=None,
    optimizer_options=None,
    loss_scaling=None,
    recompute=None,
    recompute_chunk_points=None,
    update_in_backward=None,
    data_root=None,
    offline=True,
):
    """Activate the plugin for unmodified neuraloperator code; undo with :func:`disable`.

    Parameters
    ----------
    precision : {"full", "mixed", "half"}, optional
        ``fno_block_precision`` of models built through ``neuralop.get_model``;
        by default the script's own ``config.model.fno_block_precision``.
    half_dtype : {"auto", "float16", "bfloat16"}, optional
        Half type of the mixed-precision layers and of autocast.
    schedule : str, list or PrecisionSchedule, optional
        Precision schedule of the trainer, e.g. ``"half:0.25,mixed:0.5,full:0.25"``
        or ``"paper"``. Without it and with ``precision`` given, the trainer keeps
        that precision for the whole run.
    stabilizer : {None, "off", "none", "tanh"}, optional
        Pre-activation before every forward FFT. None (not given): the mode's default
        (tanh for "half" in float16, as ``neuralop-mp train``); "off" (in any case), or a
        string spelling of None ("none", "None", "null"): none, whatever the mode, as
        ``--mp.stabilizer none`` on the command line.
    spectral_weight_dtype : {"complex64", "complex32"}, optional
        Storage of the spectral weights (and their gradients) of models built
        through ``neuralop.get_model``; "complex32" is TensorGRaD's half recipe.
    optimizer : {"adamw", "tensorgrad", "galore", "sparse"}, optional
        Kind of optimizer built in place of ``neuralop.training.AdamW``. Without it
        upstream's AdamW is kept (its ``eps=1e-6``, ``correct_bias`` and update), unless
        ``spectral_weight_dtype="complex32"``, whose weights upstream's AdamW cannot step:
        then it is replaced by "adamw" (:func:`optimizer_replacement_reason`).
        ``torch.optim``'s classes are never replaced: an optimizer a script builds
        from them is kept.
    optimizer_options : dict, optional
        Factory settings such as ``tensorgrad_rank`` (see ``OPTIMIZER_OPTION_KEYS``).
    loss_scaling : str, optional
        Passed to the trainer (its default is "auto").
    recompute : {"none", "fourier", "block"}, optional
        What models built through ``neuralop.get_model`` recompute in backward
        instead of saving (:func:`neuralop_mp.models.recompute.set_recompute`).
    recompute_chunk_points : int, optional
        With ``recompute="block"`` only: grid points per slice of the lifting's and
        projection's replay (``set_recompute``'s ``chunk_points``).
    update_in_backward : bool, optional
        Passed to the trainer: step each parameter during backward and free its
        gradient (:mod:`neuralop_mp.optim.update_in_backward`).
    data_root : str or Path, optional
        Folder that upstream's dataset classes read instead of the script's own.
    offline : bool, default True
        Make upstream's dataset classes read present files without any network
        call, and fail with the command that generates missing ones.

    Returns
    -------
    ActivationReport
        Filled in while the plugin is active: models built, trainers, optimizers,
        datasets read, and notes on what could not be intercepted.

    Raises
    ------
    RuntimeError
        If the plugin is already enabled (activations do not nest).
    ValueError
        On an invalid option, before anything is patched.
    """
    return _activate(_validated_options(dict(
        precision=precision, half_dtype=half_dtype, schedule=schedule, stabilizer=stabilizer,
        spectral_weight_dtype=spectral_weight_dtype, optimizer=optimizer, optimizer_options=optimizer_options,
        loss_scaling=loss_scaling, recompute=recompute, recompute_chunk_points=recompute_chunk_points,
        update_in_backward=update_in_backward, data_root=data_root, offline=offline)))


def _activate(options, prefix=""):
    """:func:`enable` with ``options`` that :func:`_validated_options` returned for
    ``prefix``, which names the options in the report's notes as the caller wrote them."""
    if is_enabled():
        raise RuntimeError("neuralop_mp is already enabled; call neuralop_mp.disable() first.")

    # Import everything we build with *before* patching, so that our own modules bind
    # upstream's original classes (MixedPrecisionTrainer subclasses the real Trainer).
    from . import intercept, offline as offline_data
    from ..training.incremental import IncrementalMixedPrecisionTrainer

    parts = intercept.plugin_parts()
    report = ActivationReport(options)
    stabilizer_warning = stabilizer_schedule_warning(options["stabilizer"], options["schedule"], options["half_dtype"],
                                                     stabilizer_key=prefix + "stabilizer",
                                                     schedule_key=prefix + "schedule")
    if stabilizer_warning:  # the same message as `neuralop-mp train`'s for model.stabilizer
        report.note(stabilizer_warning)
    precision_warning = precision_schedule_warning(options["precision"], options["schedule"],
                                                   precision_key=prefix + "precision", schedule_key=prefix + "schedule")
    if precision_warning:  # as `neuralop-mp train`'s for model.fno_block_precision
        report.note(precision_warning)
    # the script's own mode (no precision given) is noted as its model is built (make_get_model)
    off_note = (intercept.stabilizer_off_note(intercept.options_policy(options), options, prefix)
                if options["precision"] is not None else None)
    if off_note:  # "off" in float16 "half": what it risks, as `train` says it
        report.note(f"stabilizer {off_note}")
    patches = AttributePatches()
    reason = optimizer_replacement_reason(options, prefix)
    try:
        get_model = intercept.make_get_model(options, report, parts, keeps_upstream_adamw=reason is None,
                                             prefix=prefix)
        for module, name in GET_MODEL_SITES:
            patches.set_module_attr(module, name, get_model)

        trainer_cls = intercept.make_trainer_class(options, report, parts, prefix=prefix)
        for module, name in TRAINER_SITES:
            patches.set_module_attr(module, name, trainer_cls)
        incremental_cls = incremental_trainer_class(IncrementalMixedPrecisionTrainer, trainer_cls, report)
        for module, name in INCREMENTAL_TRAINER_SITES:
            patches.set_module_attr(module, name, incremental_cls)

        if reason is not None:  # otherwise the script's own AdamW is upstream's, untouched
            kind = options["optimizer"] or "adamw"
            original = getattr(import_module(NEURALOP_ADAMW_SITES[0][0]), NEURALOP_ADAMW_SITES[0][1])
            replacement = intercept.make_optimizer_class(original, kind, options, report, parts, reason=reason)
            for module, name in NEURALOP_ADAMW_SITES:
                patches.set_module_attr(module, name, replacement)

        from .distributed_setup import make_setup

        setup = make_setup(getattr(import_module(SETUP_SITES[1][0]), SETUP_SITES[1][1]), report)
        for module, name in SETUP_SITES:
            patches.set_module_attr(module, name, setup)

        if options["offline"] or options["data_root"]:
            offline_data.install(patches, report, data_root=options["data_root"])
    except BaseException:
        patches.restore()
        raise
    _state["patches"], _state["report"] = patches, report
    return report


def incremental_trainer_class(incremental_base, trainer_cls, report):
    """What ``neuralop.training.IncrementalFNOTrainer`` is while the plugin is enabled: the plugin's
    ``incremental_base`` (:class:`~neuralop_mp.training.incremental.IncrementalMixedPrecisionTrainer`,
    upstream's incremental arguments and algorithms) before the activation's ``Trainer`` stand-in
    ``trainer_cls``, whose constructor it reaches in the MRO: a script's incremental trainer gets the
    precision settings, checks and report entry a script's ``Trainer`` gets. A refusal of its own
    arguments (before that constructor) is recorded in ``report`` as the stand-in's are."""
    import functools

    from .intercept import refusal_recorded

    @functools.wraps(incremental_base.__init__)
    def __init__(self, *args, **kwargs):
        report.reached = True
        with refusal_recorded(report, self):
            incremental_base.__init__(self, *args, **kwargs)

    return type("IncrementalFNOTrainer", (incremental_base, trainer_cls), {
        "__init__": __init__,
        "__doc__": ("neuraloperator's IncrementalFNOTrainer, replaced by neuralop_mp while the plugin is enabled: "
                    f"{incremental_base.__name__} with the precision settings of the activation "
                    f"({(trainer_cls.__doc__ or '').split(': ', 1)[-1]})"),
        "__module__": trainer_cls.__module__, "__qualname__": "IncrementalFNOTrainer"})


def disable():
    """Undo :func:`enable`: restore every replaced attribute.

    Returns the finished :class:`ActivationReport` (trainer histories copied, no
    reference to models or trainers kept), or None if the plugin was not enabled.

    Warns when a precision or an optimizer was requested and nothing took it: the plugin's
    ``neuralop.get_model``, ``Trainer`` and ``AdamW`` were never called, as when
    the script imported those names before :func:`enable` (``from neuralop import
    get_model``), which keeps upstream's objects bound to them.
    """
    report = _disable()
    requested = report is not None and any(report.options.get(key) is not None for key in _APPLIED_TO_OBJECTS)
    if requested and not report.reached:
        warnings.warn(
            "neuralop_mp was enabled, but no model was built through neuralop.get_model and no Trainer or AdamW "
            "was created while it was: the requested settings were applied to nothing. Names imported before "
            "it was enabled (`from neuralop import get_model, Trainer`) keep upstream's objects: call "
            "neuralop.get_model(...), neuralop.Trainer(...) or import them inside the block.",
            UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)], [contextlib.__file__]))
    return report


# options that take effect only on what the activation builds (models, trainers, optimizers)
_APPLIED_TO_OBJECTS = ("precision", "half_dtype", "schedule", "stabilizer", "spectral_weight_dtype", "optimizer",
                       "recompute", "update_in_backward", "loss_scaling")


def _disable():
    """:func:`disable` without its check of what the activation took (``neuralop-mp run`` says
    it in its summary)."""
    patches, report = _state["patches"], _state["report"]
    if patches is None:
        return None
    try:
        patches.restore()
    finally:
        _state["patches"] = _state["report"] = None
        report.finish()
    return report


@contextmanager
def enabled(**options):
    """Context manager form of :func:`enable` / :func:`disable`; yields the report.

    Everything is restored when the block ends, also when it raises.
    """
    report = enable(**options)
    try:
        yield report
    except BaseException:
        _disable()  # the block's own error is what to see: nothing to say of what it did not reach
        raise
    disable()


def _enable_keywords(options):
    """``options`` as every keyword of :func:`enable`, its defaults for those not given (what
    :func:`_validated_options` takes), for ``neuralop-mp run``, which checks them under its
    flags' names before it enables them.

    Raises
    ------
    TypeError
        For a keyword that ``enable`` does not take, named as a call of ``enable`` names it.
    """
    try:
        keywords = inspect.signature(enable).bind(**options)
    except TypeError as exc:
        raise TypeError(f"enable() {exc}") from None
    keywords.apply_defaults()
    return keywords.arguments


@contextmanager
def _enabled_checked(options, prefix=""):
    """:func:`enabled` with ``options`` that :func:`_validated_options` returned for ``prefix``
    (as :func:`_activate` takes them); yields the report and disables when the block ends."""
    report = _activate(options, prefix=prefix)
    try:
        yield report
    finally:
        _disable()
