"""What an activation of the plugin actually intercepted, recorded as it happens.

The report is how a user (and our tests) can tell that a script really ran with
the plugin: which models were built through ``get_model`` and with which spectral
layer, which trainer and optimizer classes were used, which precision phases
the trainer went through, and which data files were read.
"""
import json
import time
import weakref


def _spectral_layer_types(model):
    """Sorted names of the spectral-convolution classes inside ``model``."""
    from neuralop.layers.spectral_convolution import SpectralConv

    return sorted({type(m).__name__ for m in model.modules() if isinstance(m, SpectralConv)})


def _class_path(cls):
    """``module.qualname`` of ``cls``, e.g. "neuralop.training.adamw.AdamW"."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _epoch_key(record):
    """What tells one epoch record from another, hashable: its epoch and every value, NaN equal
    to NaN (a resume's copy of an epoch whose metric was NaN is the same epoch; ``==`` on the
    dicts says it is not). A second run of the same epochs differs in its losses and times."""
    return record.get("epoch"), json.dumps(record, sort_keys=True, default=repr)


class ActivationReport:
    """Record of one activation: filled in by the interceptors, finished by ``disable``.

    Attributes
    ----------
    options : dict
        The validated options of the activation.
    models : list of dict
        One entry per model built through ``neuralop.get_model``: ``arch``,
        ``model_class``, ``layer_types`` (spectral layer classes inside it),
        ``precision`` (mode, half dtype, stabilizer) when it has our layer; after
        :meth:`finish`, ``pointwise_work`` (pointwise tiles, as the summary shows them)
        and ``device`` (where its parameters are) for a model still alive then.
    trainers : list of dict
        One entry per trainer created: ``class``, ``bases``, ``schedule``, ``device``,
        ``calls`` (one entry per ``train()`` call that trained: its ``history``, per-epoch
        records), ``optimizers`` (the classes of the optimizers its ``train()`` calls were
        given, ``module.qualname``), and after :meth:`finish`, ``history`` (the epochs of
        every call, in order; a call that resumed from a checkpoint an earlier call saved adds
        only the epochs it trained, matched by epoch and values, NaN metrics included).
    optimizers : list of dict
        One entry per optimizer built in place of the script's: ``replaced``
        (the class the script called), ``kind``, ``class``, ``model_matched``,
        ``reason`` (the option that asked for the replacement).
    datasets : list of dict
        One entry per dataset read offline: ``dataset``, ``root``, ``files``,
        ``download_requested``.
    trainer_refusals : list of dict
        One entry per trainer constructor that raised (the plugin's ``Trainer`` refusing the
        script's arguments, or the activation's settings beside them): ``class`` and ``error``
        (the exception's type and the first line of its message); once the script ended,
        ``refused_by_plugin`` (the plugin's own checks refused, not an error raised inside
        upstream's constructor or torch's) and ``ended_script`` (the script ended with it, not
        caught it): :meth:`mark_trainer_refusals`.
    notes : list of str
        Things that were requested but could not be applied, in words.
    information : list of str
        What happened that is no warning (each rank's place in a data-parallel run).
    exit_status : int or None
        How the script ended (``neuralop-mp run``: 0, its ``sys.exit`` status, 1 after an
        uncaught exception, 130 when interrupted); None for an activation without a script.
    error : str or None
        ``repr`` of the exception the script ended with, if any.
    interrupted : bool
        Whether the script was stopped by Ctrl-C (SIGINT); what it finished is recorded.
    """

    def __init__(self, options):
        self.options = dict(options)
        self.models = []
        self.trainers = []
        self.optimizers = []
        self.datasets = []
        self.trainer_refusals = []
        self._refused = []  # the exceptions of trainer_refusals, until finish(): which ones the script met
        self.notes = []
        self.information = []
        self.reached = False  # the plugin's get_model, Trainer or AdamW was called (even if it then raised)
        self.started = time.perf_counter()
        self.elapsed = None
        self.exit_status = None
        self.error = None
        self.interrupted = False
        self._model_refs = []
        self._trainer_refs = []
        self._recorded_epochs = set()  # _epoch_key of every epoch record of every call recorded

    # -- recording -------------------------------------------------------------
    def record_model(self, model, arch):
        entry = {
            "arch": arch,
            "model_class": type(model).__name__,
            "layer_types": _spectral_layer_types(model),
        }
        try:
            from ..layers.precision_switch import get_precision_policy

            policy = get_precision_policy(model)
            entry["precision"] = {"mode": policy.fno_block_precision, "half_dtype": policy.half_dtype,
                                  "stabilizer": policy.stabilizer}
            entry["spectral_weight_dtype"] = policy.spectral_weight_dtype
        except (ValueError, ImportError):
            entry["precision"] = None  # upstream's layer: built in full precision, as upstream
        self.models.append(entry)
        self._model_refs.append(weakref.ref(model))
        return entry

    def record_trainer(self, trainer, schedule):
        entry = {
            "class": type(trainer).__name__,
            "bases": [c.__name__ for c in type(trainer).__mro__[1:-1]],
            "schedule": None if schedule is None else str(schedule),
            "device": None if getattr(trainer, "device", None) is None else str(trainer.device),
            "calls": [],
            "history": None,
            "optimizers": [],
        }
        self.trainers.append(entry)
        self._trainer_refs.append((entry, trainer))  # strong until finish(): history is read then
        return entry

    def record_train_call(self, trainer, history):
        """Record the ``history`` of one ``train()`` call of ``trainer`` (its per-epoch records,
        when a new call replaces them or the activation finishes): each call starts a new
        history, which would hide the earlier calls' epochs from the report. Records already
        recorded (a resume restores those of the run it continues, which an earlier call of this
        activation may have trained) are counted once; a call that adds none is not recorded.
        The class of the optimizer ``trainer`` trains with is added to its ``optimizers``."""
        for entry, recorded in self._trainer_refs:
            if recorded is trainer:
                optimizer = getattr(trainer, "optimizer", None)  # upstream's train() keeps the one it was given
                if optimizer is not None and _class_path(type(optimizer)) not in entry["optimizers"]:
                    entry["optimizers"].append(_class_path(type(optimizer)))
                new = []
                for h in history or []:
                    key = _epoch_key(h)
                    if key not in self._recorded_epochs:
                        self._recorded_epochs.add(key)
                        new.append(dict(h))
                if new:
                    entry["calls"].append({"history": new})
                return

    def record_optimizer(self, optimizer, replaced, kind, model_matched, reason=None):
        entry = {
            "replaced": _class_path(replaced),
            "kind": kind,
            "class": type(optimizer).__name__,
            "model_matched": model_matched,
            "reason": reason,
        }
        self.optimizers.append(entry)
        return entry

    def record_dataset(self, dataset, root, files, download_requested):
        entry = {
            "dataset": dataset,
            "root": str(root),
            "files": [str(f) for f in files],
            "download_requested": bool(download_requested),
        }
        self.datasets.append(entry)
        return entry

    def record_trainer_refusal(self, trainer_class, error):
        """A trainer constructor of class ``trainer_class`` (its name) that raised ``error``: the summary
        says the trainer refused and why, not that the script never created one. Once per exception
        (an incremental trainer's constructor runs the plain stand-in's)."""
        if any(seen is error for seen in self._refused):
            return
        self._refused.append(error)
        reason = (str(error).strip().splitlines() or [""])[0]
        self.trainer_refusals.append({"class": trainer_class,
                                      "error": f"{type(error).__name__}: {reason}" if reason else type(error).__name__})

    def refused_trainer(self, error):
        """The entry of :attr:`trainer_refusals` for ``error`` (the exception the script ended with),
        or None where no trainer constructor raised it; only before :meth:`finish`."""
        for seen, entry in zip(self._refused, self.trainer_refusals):
            if seen is error:
                return entry
        return None

    def mark_trainer_refusals(self, is_plugin_refusal, ended_with):
        """Record in each entry of :attr:`trainer_refusals` ``refused_by_plugin``
        (``is_plugin_refusal(exception)``) and ``ended_script`` (its exception is ``ended_with``,
        the one the script ended with); only before :meth:`finish`, which drops the exceptions."""
        for error, entry in zip(self._refused, self.trainer_refusals):
            entry["refused_by_plugin"] = is_plugin_refusal(error)
            entry["ended_script"] = error is ended_with

    def record_end(self, exit_status, error=None, interrupted=False):
        """How the script ended: its exit status, the exception it raised, a Ctrl-C."""
        self.exit_status = int(exit_status)
        self.error = None if error is None else repr(error)
        self.interrupted = bool(interrupted)

    def note(self, message):
        """Record something requested that could not be applied (a warning of the summary)."""
        if message not in self.notes:
            self.notes.append(message)

    def inform(self, message):
        """Record what happened that the summary tells as it is, not as a warning (each rank's place
        in a data-parallel run)."""
        if message not in self.information:
            self.information.append(message)

    # -- reading ---------------------------------------------------------------
    def live_models(self):
        """Models built during the activation that are still alive."""
        return [m for m in (r() for r in self._model_refs) if m is not None]

    def finish(self):
        """Copy the trainers' histories and drop every reference to them."""
        for entry, trainer in self._trainer_refs:  # the last call's history, which no later call replaced
            self.record_train_call(trainer, getattr(trainer, "history", None))
        for entry, trainer in self._trainer_refs:
            entry["history"] = [h for call in entry["calls"] for h in call["history"]]
        self._trainer_refs = []
        self._refused = []  # their tracebacks hold the script's frames
        from ..models.pointwise_tiles import describe_pointwise_tiles

        for entry, ref in zip(self.models, self._model_refs):
            model = ref()
            if model is not None:  # as `neuralop-mp train` reports it: tiles on CPU, and the last forward's count
                entry["pointwise_work"] = describe_pointwise_tiles(model)
                entry["device"] = next((str(p.device) for p in model.parameters()), None)
        if self.elapsed is None:
            self.elapsed = time.perf_counter() - self.started

    def phases_seen(self):
        """Precision modes the trainers went through, in order, without repeats in a row."""
        seen = []
        for entry, trainer in self._trainer_refs or [(t, None) for t in self.trainers]:
            history = entry.get("history")
            if history is None:  # before finish(): the calls recorded, then the one under way
                history = [h for call in entry["calls"] for h in call["history"]] + list(
                    getattr(trainer, "history", None) or [])
            for h in history or []:
                mode = h.get("precision")
                if mode is not None and (not seen or seen[-1] != mode):
                    seen.append(mode)
        return seen

    def to_dict(self):
        """A JSON-serialisable view of the report."""
        return {
            "options": {k: (str(v) if k == "schedule" and v is not None else v) for k, v in self.options.items()},
            "models": self.models,
            "trainers": self.trainers,
            "optimizers": self.optimizers,
            "datasets": self.datasets,
            "trainer_refusals": self.trainer_refusals,
            "phases_seen": self.phases_seen(),
            "notes": self.notes,
            "information": self.information,
            "elapsed_s": self.elapsed,
            "exit_status": self.exit_status,
            "error": self.error,
            "interrupted": self.interrupted,
        }
