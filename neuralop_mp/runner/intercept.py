"""The stand-ins that :func:`neuralop_mp.enable` puts in place of upstream's names.

Each ``make_*`` function returns an object bound to one activation's options and
report: a ``get_model`` function, a ``Trainer`` class and optimizer classes. They
accept exactly what the names they replace accept, so an unmodified script calls
them without noticing, and they record what they did in the report. What they build,
they build with :mod:`neuralop_mp.build_steps`, the steps ``neuralop-mp train`` uses.
"""
import inspect
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from .. import build_steps
from ..configs.zencfg_compat import read_key, section_dict
from ..layers.layer_precision import upstream_spectral_layers
from ..layers.precision_switch import mixed_precision_layers
from ..precision_policy import PrecisionPolicy
from ..training.schedule import PrecisionSchedule
from ..vocabulary import none_if_null

# While the factory builds an optimizer it may itself call the replaced name (a
# factory optimizer that subclasses upstream's AdamW): this flag makes the stand-in step aside.
_building = threading.local()


def plugin_parts():
    """The plugin classes and functions the stand-ins build with.

    Imported here, before :func:`neuralop_mp.enable` patches anything, so that they
    bind upstream's original classes (``MixedPrecisionTrainer`` subclasses the real
    ``Trainer``, the factory's AdamW is torch's). Tests replace this function to run
    the stand-ins against fakes.
    """
    from ..layers.spectral_conv import MixedPrecisionSpectralConv
    from ..models.registry import get_model
    from ..optim.factory import create_optimizer
    from ..training.trainer import MixedPrecisionTrainer

    return SimpleNamespace(
        get_model=get_model,
        MixedPrecisionTrainer=MixedPrecisionTrainer,
        MixedPrecisionSpectralConv=MixedPrecisionSpectralConv,
        create_optimizer=create_optimizer,
    )


def _section(config, key):
    """``config[key]`` of a dict, Bunch (zencfg 0.7 or 1.0) or zencfg config, as a plain dict (or None)."""
    return section_dict(read_key(config, key))


# activation option -> the config.model key it sets
_MODEL_KEYS = {"precision": "fno_block_precision", "half_dtype": "half_dtype", "stabilizer": "stabilizer",
               "spectral_weight_dtype": "spectral_weight_dtype", "recompute": "recompute",
               "recompute_chunk_points": "recompute_chunk_points"}


def plugin_config(config, options):
    """The config that :func:`neuralop_mp.get_model` receives for a script's config.

    The script's ``config.model`` with the requested precision, half dtype,
    stabilizer, spectral weight dtype and recompute mode written over it, the script's ``patching``
    section, the requested schedule as ``opt.precision_schedule`` (so the model gets the
    mixed-precision layer even when it starts in "full"), and the script's ``device`` where its
    config has one (a half type of "auto" resolves on it, as :func:`neuralop_mp.get_model`
    resolves it; upstream's configs have none: CUDA when available, the device upstream's
    ``setup`` picks). The script's own config object is not modified.
    """
    model = _section(config, "model")
    if model is None:
        raise ValueError("neuralop.get_model(config): config has no 'model' section.")
    for option, key in _MODEL_KEYS.items():
        if options.get(option) is not None:
            model[key] = options[option]
    built = {"model": model}
    patching = _section(config, "patching")
    if patching is not None:
        built["patching"] = patching
    opt = _section(config, "opt") or {}
    if options.get("schedule") is not None:
        opt["precision_schedule"] = str(options["schedule"])
    built["opt"] = opt
    device = _script_device(config)
    if device is not None:
        built["device"] = device
    return built


def _script_device(config):
    """The script config's ``device`` where :func:`~neuralop_mp.run_setup.parse_device` reads it
    (auto, cpu, cuda, cuda:N), else None: a device the plugin does not run on ("mps", an index)
    is the script's own business, and the half type's "auto" then follows upstream's ``setup``
    (CUDA when available) as for a config without one."""
    from ..run_setup import parse_device

    device = none_if_null(read_key(config, "device"))
    if device is None:
        return None
    try:
        parse_device(device)
    except ValueError:  # RunSetupError
        return None
    return device


def stabilizer_off_note(policy, options, prefix="", config=None):
    """:func:`~neuralop_mp.build_steps.stabilizer_off_note` for an activation's ``options`` and
    the ``policy`` a model is built with: the half type "auto" as the models built through
    ``neuralop.get_model`` resolve it, on ``config``'s device (a :func:`plugin_config`), CUDA when
    available without one (upstream's configs; the activation, before any config is read);
    ``prefix`` names the option as the caller wrote it."""
    from ..models.registry import _run_device  # get_model's own rule

    device = _run_device({} if config is None else config)
    return build_steps.stabilizer_off_note(policy, options["schedule"], policy.half_torch_dtype(device),
                                           stabilizer_key=prefix + "stabilizer")


def make_get_model(options, report, parts, keeps_upstream_adamw=False, prefix=""):
    """A ``get_model(config)`` that builds through :func:`neuralop_mp.get_model`.

    With ``keeps_upstream_adamw`` (the activation leaves ``neuralop.training.AdamW`` as it
    is), a model whose complex32 spectral weights come from the script's own config gets
    a note: upstream's AdamW cannot step them. A stabilizer "off" beside the script's own
    float16 "half" (no precision option given: the activation could not tell) gets the note
    :func:`stabilizer_off_note` (``prefix``: the options' as the caller wrote them).
    """

    def get_model(config):
        report.reached = True
        built = plugin_config(config, options)
        # the same steps as `neuralop-mp train`: the precision keys parsed once, then the model
        policy = build_steps.precision_policy(built)
        model = build_steps.build_model(built, policy, get_model=parts.get_model)
        entry = report.record_model(model, arch=str(built["model"].get("model_arch", "")))
        off_note = stabilizer_off_note(policy, options, prefix, built) if options["precision"] is None else None
        if off_note:  # given a precision, the activation said it already
            report.note(f"stabilizer {off_note}")
        if keeps_upstream_adamw and entry.get("spectral_weight_dtype") == "complex32":
            report.note(
                "the model has complex32 spectral weights (the script's model.spectral_weight_dtype), which "
                "upstream's neuralop.training.AdamW, kept without an optimizer option, cannot step (complex32 "
                "moments; no complex32 sqrt on CPU): ask for the spectral weight dtype or an optimizer through "
                "the plugin (--mp.spectral_weight_dtype complex32, --mp.optimizer adamw) so that the plugin's "
                "optimizer replaces it.")
        return model

    get_model.__doc__ = (
        "neuraloperator's get_model, replaced by neuralop_mp while the plugin is enabled: "
        "builds through neuralop_mp.get_model with the requested precision."
    )
    get_model.__module__ = __name__
    return get_model


def options_policy(options):
    """The :class:`PrecisionPolicy` of an activation's precision options (defaults for those not given)."""
    given = {key: options.get(option) for key, option in (
        ("fno_block_precision", "precision"), ("half_dtype", "half_dtype"),
        ("stabilizer", "stabilizer"), ("spectral_weight_dtype", "spectral_weight_dtype"))}
    return PrecisionPolicy.from_config({k: v for k, v in given.items() if v is not None}, prefix="mp")


def trainer_schedule(options):
    """The schedule the trainer is bound to: the requested one, else constant ``precision``
    (:func:`neuralop_mp.build_steps.precision_schedule`); None when neither is requested."""
    if options.get("schedule") is None and options.get("precision") is None:
        return None
    return build_steps.precision_schedule(options.get("schedule"), options_policy(options))


# Trainer arguments whose None is the trainer's own default ("no schedule of the script's own",
# "auto"): a script passing None asks for nothing, so the activation's value fills them as if
# absent. Not loss_scaling (None is "none", not the default "auto") nor update_in_backward
# (None is refused): there the script's None is its own choice.
_NONE_IS_DEFAULT = ("precision_schedule", "half_dtype")


@contextmanager
def refusal_recorded(report, trainer):
    """A block that builds ``trainer`` (a trainer stand-in under construction): an exception its
    constructor raises is recorded in ``report`` (:meth:`ActivationReport.record_trainer_refusal`),
    so the summary says the trainer refused and why, not that the script never created one; the
    exception goes on to the script."""
    try:
        yield
    except Exception as error:
        report.record_trainer_refusal(type(trainer).__name__, error)
        raise


def check_schedule_fits(schedule, options, n_epochs, prefix=""):
    """Refuse, naming both, the activation's ``schedule`` where the ``n_epochs`` the script gives its
    trainer never reach its last phase (``--mp.schedule half@5,full`` with the script's ``--opt.n_epochs
    2``): the trainer's own message names neither the option nor the script's setting. A count that is
    no count (0, 2.5) is left to the trainer's check, which names it."""
    from ..vocabulary import is_integer

    if not is_integer(n_epochs) or int(n_epochs) < 1:
        return
    try:
        schedule.check_fits(int(n_epochs), warn=False)  # the trainer warns of the phases it skips
    except (TypeError, ValueError) as error:
        typed = options.get("schedule_as_given") or str(schedule)
        raise ValueError(f"{prefix}schedule {typed!r} does not fit the script's n_epochs={n_epochs!r} (what it passes "
                         f"to Trainer): {error}") from None


def make_trainer_class(options, report, parts, prefix=""):
    """A ``Trainer`` subclass of :class:`MixedPrecisionTrainer` bound to ``options``.

    It takes upstream ``Trainer``'s constructor arguments; the schedule, half dtype,
    loss scaling and update in backward of the activation are filled in unless the
    script passes them (a ``precision_schedule`` or ``half_dtype`` of None counts as not
    passed: None is the trainer's default for them). A constructor that raises is recorded
    in ``report`` (:func:`refusal_recorded`); ``prefix`` names the options in its messages as
    the caller wrote them (``--mp.`` on the command line).
    """
    schedule = trainer_schedule(options)
    precision_kwargs = build_steps.trainer_precision_kwargs(
        schedule, options.get("half_dtype"), options.get("loss_scaling"))
    precision_kwargs.update(build_steps.trainer_memory_kwargs(options.get("update_in_backward")))

    class Trainer(parts.MixedPrecisionTrainer):
        __doc__ = (
            "neuraloperator's Trainer, replaced by neuralop_mp while the plugin is enabled: "
            f"a MixedPrecisionTrainer with precision_schedule={str(schedule)!r}."
        )

        def __init__(self, *args, **kwargs):
            report.reached = True
            with refusal_recorded(report, self):
                own_schedule = self._construct_from_script_arguments(args, kwargs)
            model = kwargs.get("model", args[0] if args else None)
            # the script's own autocast flag, where the schedule of --mp.precision/--mp.schedule overrules it:
            # the trainer warns as the run starts, the summary says it again
            if self.overruled_autocast:
                report.note(self.overruled_autocast)
            entry = report.record_trainer(self, schedule=kwargs["precision_schedule"])
            if model is not None:
                entry.update(trained_model_entry(model, report, parts))
            # compared as schedules: the script's "paper" is the option's half:0.25,mixed:0.5,full:0.25
            kept = (own_schedule is not None and schedule is not None
                    and self.precision_schedule != PrecisionSchedule.from_config(schedule))
            entry["schedule_from"] = ("the script" if own_schedule is not None
                                      else "options" if schedule is not None else None)
            if kept:
                report.note(f"the script passes its own precision_schedule={str(own_schedule)!r} to "
                            f"{type(self).__name__}: it was kept, and the requested "
                            f"{requested_precision(options, schedule)} was NOT applied to that trainer.")

        def _construct_from_script_arguments(self, args, kwargs):
            """The plugin's trainer built from the script's arguments (``kwargs`` filled in with the
            activation's settings, in place); returns the schedule the script passed itself, or None."""
            for key in _NONE_IS_DEFAULT:
                if key in kwargs and kwargs[key] is None:
                    del kwargs[key]
            model = kwargs.get("model", args[0] if args else None)
            own_schedule = kwargs.get("precision_schedule")  # the script's own choice wins over the option's
            # the option's schedule is refused for a model without the plugin's layer only where it is the one
            # the trainer gets: a script's own all-"full" schedule asks nothing of the model (the summary says
            # the option was overridden), and MixedPrecisionTrainer refuses an own one that switches layers
            switches_layers = (own_schedule is None and schedule is not None
                               and any(p.mode != "full" for p in schedule))
            if switches_layers and model is not None and not mixed_precision_layers(
                    model, layer_class=parts.MixedPrecisionSpectralConv):
                raise RuntimeError(
                    f"neuralop-mp: precision schedule {str(schedule)!r} requested, but the model "
                    f"passed to Trainer ({type(model).__name__}) has no MixedPrecisionSpectralConv "
                    "layer: the script built it without neuralop.get_model, so the plugin cannot "
                    "switch its precision. Build the model with get_model(config) (or give it the plugin's "
                    "layer: conv_module=neuralop_mp.MixedPrecisionSpectralConv, or MixedPrecisionSpectralConv in "
                    "place of a SpectralConv(...) a module of your own creates), or run without "
                    "--mp.precision/--mp.schedule."
                )
            if own_schedule is None and schedule is not None and "n_epochs" in kwargs:
                check_schedule_fits(schedule, options, kwargs["n_epochs"], prefix)
            kwargs.setdefault("precision_schedule", schedule)
            for key, value in precision_kwargs.items():
                kwargs.setdefault(key, value)
            super().__init__(*args, **kwargs)
            return own_schedule

        # Each train() call starts a new history list (a resume then fills it with the saved one):
        # the report keeps the epochs of the list that is replaced, and finish() those of the last.
        # A property rather than a train() wrapper, whose frame would stand between the script's
        # line and the warnings train() points at it.
        @property
        def history(self):
            return self.__dict__.get("_history_of_this_run", [])

        @history.setter
        def history(self, value):
            report.record_train_call(self, self.__dict__.get("_history_of_this_run"))
            self.__dict__["_history_of_this_run"] = value

        def checkpoint(self, save_dir):
            # upstream's Trainer writes the model's constructor arguments beside its weights
            # (BaseModel.save_checkpoint): its scripts rebuild the model with Model.from_checkpoint
            super().checkpoint(save_dir)
            save_model_metadata_beside(save_dir, self.model, epoch=getattr(self, "epoch", None))

    Trainer.__module__ = __name__
    Trainer.__qualname__ = "Trainer"
    return Trainer


def requested_precision(options, schedule=None):
    """The option that asked for a precision, as typed: ``--mp.schedule paper`` or ``--mp.precision mixed``.

    With ``schedule`` (the schedule the option means), that schedule follows in parentheses where
    it says more than the value typed: ``--mp.schedule paper (schedule 'half:0.25,mixed:0.5,full:0.25')``,
    but ``--mp.schedule mixed:0.5,full:0.5`` and ``--mp.precision mixed`` alone.
    """
    if options.get("schedule") is not None:
        flag, typed = "--mp.schedule", options["schedule_as_given"]
    else:
        flag, typed = "--mp.precision", options.get("precision")
    if schedule is not None and str(schedule) != typed:
        return f"{flag} {typed} (schedule {str(schedule)!r})"
    return f"{flag} {typed}"


def trained_model_entry(model, report, parts):
    """What the runner tells of the model a trainer received (it may not come from ``get_model``):
    ``trained_model`` (its class), ``built_by`` ("get_model" or "the script"), ``plugin_layers``
    (its count of the plugin's spectral layer) and ``upstream_layers`` (the names of the upstream
    spectral layers in it, which a precision switch leaves in their own precision)."""
    through_get_model = any(built is model or built is getattr(model, "module", None)
                            for built in report.live_models())
    layer_class = parts.MixedPrecisionSpectralConv
    return {"trained_model": type(model).__name__,
            "built_by": "get_model" if through_get_model else "the script",
            "plugin_layers": len(mixed_precision_layers(model, layer_class=layer_class)),
            "upstream_layers": [name for name, _ in upstream_spectral_layers(model, layer_class=layer_class)]}


def save_model_metadata_beside(save_dir, model, epoch=None):
    """``{name}_metadata.pkl`` beside the model weights a trainer's checkpoint wrote into
    ``save_dir`` (``best_model`` or ``model``, upstream's names), by the process that writes
    checkpoints (local rank 0); nothing where no checkpoint is there yet, or the checkpoint
    there is of another ``epoch`` than the one just trained (``save_best`` skipped a worse epoch:
    the metadata stays that of the saved weights, not the precision of the current phase), or
    the model records no constructor arguments."""
    import neuralop.mpu.comm as comm

    from ..training import checkpointing

    if comm.get_local_rank() != 0:
        return None
    try:
        name = checkpointing.checkpoint_name(save_dir)
        if epoch is not None:
            manifest = checkpointing.load_weights_only(Path(save_dir) / checkpointing.MANIFEST_FILE)
            if not isinstance(manifest, dict) or manifest.get("epoch") != epoch:  # this epoch was not saved
                return None
    except checkpointing.CheckpointError:  # no weights saved there yet, or no manifest telling their epoch
        return None
    return checkpointing.save_model_metadata(save_dir, name, model)


def _bind(replaced, args, kwargs):
    """Bind a call to the replaced optimizer class's signature (its own defaults applied)."""
    bound = inspect.signature(replaced).bind(*args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    for name, param in inspect.signature(replaced).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            values.update(values.pop(name, {}))
    return values


def _find_model(report, params):
    """The model built during the activation whose parameters are exactly ``params``."""
    wanted = {id(p) for p in params}
    for model in report.live_models():
        own = {id(p) for p in model.parameters()}
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        if wanted in (own, trainable):
            return model
    return None


def _parameter_holder(params):
    """A module holding bare parameters, for the factory when no built model matches."""
    from torch import nn

    holder = nn.Module()
    holder.params = nn.ParameterList(params)
    return holder


# arguments of the replaced classes that the factory has a field for
_FORWARDED = {"lr": "learning_rate", "weight_decay": "weight_decay", "betas": "betas"}


class _StandInType(type):
    """Metaclass of the optimizer stand-ins: ``isinstance`` holds for what the replaced name meant.

    An instance of the replaced class (built before the activation, or by a
    subclass) and every optimizer the stand-in built count as instances, so code
    that checks ``isinstance(opt, neuralop.training.AdamW)`` while the plugin is
    active sees the optimizer it was given as one.
    """

    def __instancecheck__(cls, obj):
        if "replaced" not in vars(cls):  # a subclass of the stand-in: ordinary isinstance
            return super().__instancecheck__(obj)
        return isinstance(obj, cls.replaced) or obj in cls.built


def make_optimizer_class(replaced, kind, options, report, parts, reason=None):
    """A stand-in for optimizer class ``replaced`` that builds a factory optimizer of ``kind``.

    Calling it with the replaced class's arguments (``params, lr, betas,
    weight_decay, ...``) returns ``create_optimizer(model, opt_config)``, where
    ``model`` is the model built through ``get_model`` that owns ``params``. Other
    arguments the factory has no field for (``eps``, ``amsgrad``...) are noted in
    the report when they differ from the replaced class's default. Parameter
    groups (dicts) are handed to the replaced class unchanged, with a note.

    The stand-in is a subclass of ``replaced``: a class deriving from it (defined
    while the plugin is active) is built as itself, with its own ``__init__``.
    ``reason`` (the option that asked for the replacement, in words) goes to the report
    with each optimizer built.
    """
    defaults = {
        name: p.default
        for name, p in inspect.signature(replaced).parameters.items()
        if p.default is not inspect.Parameter.empty
    }

    class OptimizerStandIn(replaced, metaclass=_StandInType):
        def __new__(cls, *args, **kwargs):
            if cls is not OptimizerStandIn or getattr(_building, "active", False):
                # a user's subclass, or the factory itself: plain construction, own __init__
                return replaced.__new__(cls)
            report.reached = True
            values = _bind(replaced, args, kwargs)
            params = list(values.pop("params"))
            if any(isinstance(p, dict) for p in params):
                report.note(
                    f"{replaced.__qualname__} was given parameter groups; it was built as the script "
                    f"asked, not as a {kind!r} optimizer."
                )
                return replaced(params, **{k: v for k, v in values.items()})
            opt_config = {"optimizer": kind}
            for name, field in _FORWARDED.items():
                if name in values:
                    opt_config[field] = values.pop(name)
            opt_config.update(options.get("optimizer_options") or {})
            ignored = sorted(k for k, v in values.items() if k in defaults and v != defaults[k])
            ignored += sorted(k for k in values if k not in defaults)
            if ignored:
                report.note(
                    f"{replaced.__qualname__} arguments {ignored} have no equivalent in the "
                    f"{kind!r} optimizer and were not used."
                )
            model = _find_model(report, params)
            if model is None:
                report.note(
                    f"The parameters given to {replaced.__qualname__} do not belong to a model built "
                    "through get_model; the optimizer sees them as a flat list of parameters."
                )
            _building.active = True
            try:
                optimizer = build_steps.build_optimizer(
                    model if model is not None else _parameter_holder(params), opt_config,
                    create_optimizer=parts.create_optimizer,
                )
            finally:
                _building.active = False
            OptimizerStandIn.built.add(optimizer)
            report.record_optimizer(optimizer, replaced, kind, model_matched=model is not None, reason=reason)
            return optimizer

    OptimizerStandIn.__name__ = OptimizerStandIn.__qualname__ = replaced.__name__
    OptimizerStandIn.__module__ = __name__
    OptimizerStandIn.__doc__ = (
        f"{replaced.__module__}.{replaced.__qualname__}, replaced by neuralop_mp while the plugin is "
        f"enabled: builds a {kind!r} optimizer through neuralop_mp.optim.factory.create_optimizer."
    )
    OptimizerStandIn.replaced = replaced
    OptimizerStandIn.built = weakref.WeakSet()
    return OptimizerStandIn
