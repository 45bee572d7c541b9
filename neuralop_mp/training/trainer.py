"""MixedPrecisionTrainer: upstream's Trainer with precision schedules and safe loss scaling.

It follows upstream's ``IncrementalFNOTrainer`` precedent: the model is changed
during training through the Trainer's template methods, not callbacks.

- ``on_epoch_start`` picks the schedule's phase for the epoch and switches every
  mixed-precision spectral layer to the phase's :class:`~neuralop_mp.PrecisionPolicy`
  (only what differs from the model's current settings is changed).
- ``train_one_batch`` runs the forward pass under ``torch.autocast`` in phases
  that ask for it and computes the loss in float32.
- upstream's ``train_one_epoch`` runs unchanged; during it, the batch hook it calls
  is the class's own ``train_one_batch`` (ours or a subclass's) wrapped by
  :meth:`~MixedPrecisionTrainer._guarded_batch`: its ``loss.backward()`` is a
  scaled backward (the loss the hook finally returns scales its gradient) and its
  ``optimizer.step()`` a guarded step (:class:`ComplexGradScaler`): a non-finite
  loss or gradient never reaches the weights, and weights made non-finite by the
  update stop the run. Upstream's ``Trainer(mixed_precision=True)`` autocasts with
  no scaler at all. A subclass's own epoch loop (one that does not call ours)
  trains as under upstream's Trainer, and is refused where loss scaling is on.
- with ``auto_precision=True`` (``fno_block_precision="auto"`` under a schedule),
  each phase that is not "full" is re-decided from a measurement on the first
  training batches when it starts (:mod:`.auto_phases`).
- ``checkpoint`` / ``resume_state_from_dir`` (:mod:`.resume`) save and restore the schedule
  position, scaler, history and RNG state in weights-only files, and resume at the
  epoch after the saved one (upstream re-trains the saved epoch).

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision
       Neural Operators". ICLR 2024, arXiv:2307.15034.
"""
import contextlib
import dis
import functools
import inspect
import math
import re
import os
import warnings
import weakref
from collections.abc import Mapping

import torch
from neuralop.training import Trainer

from ..caller_frames import stacklevel_outside
from ..memory import SavedTensorBytes
from ..optim.nonfinite import norms_finite
from ..peak_memory import PeakTensorBytes, tensor_bytes
from ..precision_policy import PrecisionPolicy
from ..models.mixed_precision_models import current_n_modes
from ..layers.layer_precision import NO_LAYER_HINT
from ..layers.precision_switch import (
    get_precision,
    mixed_precision_layers,
    set_fixed_precision,
    set_precision,
)
from ..vocabulary import (check_choice, check_int_at_least, dtype_name, normalize_flag, normalize_half_dtype,
                          resolve_half_dtype, UPSTREAM_UNUSED_KEYS_WARNING)
from ..wrapped_module import unwrap
from . import checkpointing, distributed
from .auto_phases import AutoPrecisionPhases
from .guarded_step import (DeferredPlateauStep, ScaleGradient, StepThroughTrainer, TrainingStopped,
                           non_finite_parameters)
from .interrupts import catching_interrupts, raise_if_interrupted
from .loss_scaling import ComplexGradScaler
from .resume import TrainingStateCheckpoints
from .schedule import PrecisionSchedule, SkippedPhaseWarning

LOSS_SCALING = ("auto", "dynamic", "none")
_HALF_TYPES = (torch.float16, torch.bfloat16)


def _as_float32(out):
    """Cast half-type model outputs to float32 so losses are computed in float32."""
    if torch.is_tensor(out) and out.dtype in _HALF_TYPES:
        return out.float()
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(o) for o in out)
    return out


def _processor_setting(processor):
    """The data processor's plain settings (numbers, strings, flags), of the CPU meters' setting
    (``MixedPrecisionTrainer._memory_setting``): a processor may change the batch in ``preprocess``
    as training goes, e.g. upstream's ``IncrementalDataProcessor`` its resolution every few epochs,
    while the loader's batches keep their shapes."""
    if processor is None:
        return None
    return tuple(sorted((key, value) for key, value in vars(processor).items()
                        if isinstance(value, (bool, int, float, str)) and not key.startswith("_")))


def _half_moments_hint(optimizer):
    """What to do where ``optimizer`` keeps a 16-bit parameter's moments in 16 bits (torch's
    Adam family on complex32 or float16 weights: ``eps=1e-8`` is 0 in float16, and the first
    step divides 0 by 0), else None."""
    half = (torch.float16, torch.complex32)  # bfloat16 has float32's range: eps is no 0 there
    kept = sorted({dtype_name(p.dtype) for group in optimizer.param_groups for p in group["params"]
                   if p.dtype in half and any(torch.is_tensor(value) and value.dtype == p.dtype and value.dim() > 0
                                              for value in optimizer.state.get(p, {}).values())})
    if not kept:
        return None
    return (f"{type(optimizer).__name__} keeps the moments of {', '.join(kept)} weights in their own dtype, whose "
            "range an Adam step does not fit in (its eps of 1e-8 is 0 in float16): likely the cause; use an "
            "optimizer that keeps them in float32: neuralop_mp.create_optimizer(model, {'optimizer': 'adamw'}) or "
            "neuralop_mp.TensorGRaD. Otherwise: ")


def _accepted(fn, sample):
    """The entries of ``sample`` to pass to ``fn`` where upstream's Trainer passes them all
    (``model(**sample)``, ``loss(out, **sample)``).

    A callable taking ``**kwargs`` gets them all, as upstream gives them (a loss may read any
    key: a user's weighted loss, upstream's ``PoissonEqnLoss``, which hands them on), unless
    its code shows that it drops the keys it does not name: upstream's models and data
    losses warn "FNO.forward() received unexpected keyword arguments: ['y']" and pass them
    nowhere, so they get the keys they name (the same call, without that warning once per
    batch). Any other callable gets the keys it names. A module is read by its ``forward``,
    a data-parallel wrapper's by the model it wraps (which receives what it is called with).
    """
    fn = _forward_of(fn)
    # decided once per function (a method's, a plain function or partial itself, a callable
    # object's class's): this runs for every batch
    key = getattr(fn, "__func__", None) or (fn if inspect.isroutine(fn) or isinstance(fn, functools.partial)
                                             else type(fn))
    try:
        named = _named_keys_of(key, fn)
    except TypeError:  # not weakly referable (a builtin): read at each call
        named = _named_keys(fn)
    return sample if named is None else {k: v for k, v in sample.items() if k in named}


def _named_keys(fn):
    """The keys :func:`_accepted` passes to ``fn`` (a frozenset), or None for all of them."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and not _drops_unnamed_keys(fn):
        return None
    return frozenset(k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


_NAMED_KEYS = weakref.WeakKeyDictionary()  # function or class -> _named_keys of its calls


def _named_keys_of(key, fn):
    if key not in _NAMED_KEYS:
        _NAMED_KEYS[key] = _named_keys(fn)
    return _NAMED_KEYS[key]


def _forward_of(fn):
    """``fn``, or the ``forward`` that calling it runs: a module's own, through data-parallel
    wrappers (``model.forward`` of a DDP model is the wrapper's ``(*inputs, **kwargs)``)."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, torch.nn.Module) and getattr(fn, "__name__", None) == "forward":
        fn = owner
    return unwrap(fn).forward if isinstance(fn, torch.nn.Module) else fn


def _drops_unnamed_keys(fn):
    """Whether ``fn`` (a function, bound method, ``functools.partial`` or callable object) warns
    of the keyword arguments it does not name and hands none on (no ``f(**kwargs)`` call)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        code = getattr(getattr(type(fn), "__call__", None), "__code__", None)
    return code is not None and _warns_and_forwards_nothing(code)


@functools.lru_cache(maxsize=None)
def _warns_and_forwards_nothing(code):
    warns = any(isinstance(const, str) and re.search(UPSTREAM_UNUSED_KEYS_WARNING, const)
                for const in code.co_consts)  # upstream's warning text
    # a call passing a keyword mapping (f(**kwargs)): CALL_FUNCTION_EX with its flag 1 set (f(*args) clears it)
    # a Python that no longer sets the flag (op.arg None) counts as handing them on: every key, as upstream
    return warns and not any(op.opname == "CALL_FUNCTION_EX" and (op.arg is None or op.arg & 1)
                             for op in dis.get_instructions(code))


def _call_loss(loss, out, sample, what):
    """``loss(out, **kept)``, ``kept`` the entries of ``sample`` that :func:`_accepted` passes.

    Where that left keys out and the call does not bind (``torch.nn.MSELoss`` takes
    ``(input, target)``: no key of ``{"x", "y"}`` reaches it), the TypeError is said again in
    one line naming ``what`` (e.g. "training_loss"), the keys passed and those left out, and
    how losses are called; upstream's ``loss(out, **sample)`` would show the unexpected key."""
    kept = _accepted(loss, sample)
    try:
        return loss(out, **kept)
    except TypeError as error:
        dropped = [key for key in sample if key not in kept]
        if not dropped or _binds(loss, out, **kept):
            raise  # a TypeError of the loss's own code, not of the call
        raise TypeError(
            f"{what} ({type(loss).__name__}) could not be called: {error}. The trainer calls a loss as "
            f"loss(y_pred, **sample), with the sample's keys as keyword arguments (y_pred=..., y=...): it was passed "
            f"{sorted(kept)} and not {sorted(dropped)}, which it does not name. Give it parameters named after the "
            "sample's keys (e.g. def loss(y_pred, y, **kwargs)) or wrap it: "
            "lambda y_pred, y, **kwargs: mse(y_pred, y).") from None


def _binds(fn, *args, **kwargs):
    """Whether a call of ``fn`` (read as :func:`_accepted` reads it) with these arguments binds;
    True where its signature cannot be read."""
    try:
        inspect.signature(_forward_of(fn)).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


_ABSENT = object()


def _loss_terms(sample):
    """The number of samples a loss sums over: the batch size of the targets ``sample["y"]`` as the
    loss sees them, after the data processor's ``postprocess`` (1 for a target that is no tensor).

    Upstream's trainer counts the targets after ``preprocess``; multi-grid patching without stitching
    splits them there into ``batch * 4**levels`` patches and, in evaluation, stitches them back into
    ``batch`` samples before the loss: the test errors were divided by ``4**levels`` times too many
    samples. Counted after ``postprocess``, an error is the mean over what the loss summed: the
    samples, or in training without stitching the patches."""
    y = sample["y"]
    return y.shape[0] if torch.is_tensor(y) else 1


def _epoch_record(*, epoch, phase, precision, autocast, stabilizer, half_dtype, train_loss, train_err, lr,
                  skipped_steps, loss_scale, epoch_time, world_size, auto_precision=_ABSENT, auto_check=_ABSENT,
                  cuda_peak_bytes=_ABSENT, saved_bytes=_ABSENT, step_peak_bytes=_ABSENT):
    """The history entry of one epoch (:meth:`MixedPrecisionTrainer._record_epoch`): the
    keywords given, in this order. ``world_size``: the number of data-parallel ranks that
    trained the epoch (1 without DDP), so a run resumed on another number of ranks says
    which epochs ran on how many. The keywords are the one list of the entry's keys
    (:data:`_EPOCH_RECORD_KEYS`); an unknown one is a TypeError, not a silent new key."""
    fields = dict(locals())
    return {key: value for key, value in fields.items() if value is not _ABSENT}


# the keys _record_epoch writes into a history entry; evaluate_all adds the metrics beside them
_EPOCH_RECORD_KEYS = frozenset(inspect.signature(_epoch_record).parameters)


def _normalize_loss_scaling(value, key="loss_scaling"):
    """``loss_scaling`` as one of :data:`LOSS_SCALING` (True is "dynamic", False and None
    "none"); ValueError naming ``key`` (how the caller spells the setting) otherwise."""
    if value is True:
        value = "dynamic"
    elif value is False or value is None:
        value = "none"
    return check_choice(key, value, LOSS_SCALING)


def _check_save_best(save_best, test_loaders, eval_losses):
    """ValueError unless ``save_best`` is one of the metrics ``train`` evaluates:
    ``"{loader}_{loss}"`` for each test loader and eval loss (upstream's rule, and its
    default ``eval_losses``: one loss named "l2")."""
    losses = ("l2",) if eval_losses is None else eval_losses
    allowed = [f"{loader}_{loss}" for loader in (test_loaders or {}) for loss in losses]
    if save_best not in allowed:
        shown = ", ".join(map(repr, allowed)) or "none (no test loader or no eval loss is given)"
        raise ValueError(f"Invalid save_best={save_best!r}; allowed values: {shown} (the evaluation "
                         "metrics \"<test_loaders key>_<eval_losses key>\" of this train() call).")


# the modes upstream's ``evaluate`` runs (any other value leaves its losses unset: an
# UnboundLocalError after a whole epoch of training)
EVAL_MODES = ("single_step", "autoregression")


def _check_eval_modes(eval_modes, test_loaders):
    """ValueError unless every key of ``eval_modes`` is a key of ``test_loaders`` and every
    value one of :data:`EVAL_MODES` (upstream looks a loader's mode up by its key, so a key
    of another type or spelling is silently single-step, and fails on another mode only
    when it first evaluates). None is no mode given."""
    if eval_modes is None:
        return
    if not isinstance(eval_modes, Mapping):
        raise ValueError(f"Invalid eval_modes={eval_modes!r}; allowed values: None or a dict "
                         "{test_loaders key: mode}, each mode one of " + ", ".join(map(repr, EVAL_MODES)) + ".")
    loaders = list(test_loaders or {})
    for key, mode in eval_modes.items():
        if key not in loaders:
            shown = ", ".join(map(repr, loaders)) or "none (no test loader is given)"
            same = [name for name in loaders if str(name) == str(key)]
            hint = f" Did you mean {same[0]!r} ({type(same[0]).__name__}, not {type(key).__name__})?" if same else ""
            raise ValueError(f"Invalid eval_modes key {key!r}; allowed values: the test_loaders keys {shown}.{hint}")
        _check_eval_mode(f"eval_modes[{key!r}]", mode)


def _check_rollout_ends(trainer, max_steps, where):
    """ValueError for a rollout that could never end: without a data processor (whose
    ``preprocess`` returning None ends it) and without a step limit, upstream's loop evaluates the
    same batch forever. ``where`` names the argument asking for the rollout."""
    if trainer.data_processor is None and max_steps is None:
        raise ValueError(f"Invalid {where}: an autoregressive rollout without a data processor never ends (the "
                         "data processor's preprocess ends it by returning None); give a step limit "
                         "(train's max_autoregressive_steps, evaluate's max_steps) or a data processor.")


def _check_eval_mode(name, mode):
    """ValueError unless ``mode`` (``name`` in the message) is one of :data:`EVAL_MODES`."""
    try:
        check_choice(name, mode, EVAL_MODES)
    except ValueError as error:
        if mode != "autoregressive":
            raise
        # upstream's train() docstring spells the mode so; its evaluate() takes "autoregression"
        raise ValueError(f"{error} Did you mean 'autoregression'?") from None


class _NoScheduler:
    """What upstream's epoch loop steps where ``train`` was given ``scheduler=None``: nothing."""

    def step(self, *args, **kwargs):
        pass


_NO_SCHEDULER = _NoScheduler()


@contextlib.contextmanager
def _shadowing(obj, name, value):
    """Within the block, ``obj.<name>`` is ``value`` (an instance attribute, which a method of
    the same name on its class yields to); then what was there before."""
    attributes = vars(obj)
    before = attributes.get(name, _ABSENT)
    attributes[name] = value
    try:
        yield
    finally:
        if before is _ABSENT:
            attributes.pop(name, None)
        else:
            attributes[name] = before


def _check_checkpointable(*, saves, resumes, **objects):
    """TypeError naming the object (``objects``: by argument name, None for none) whose state
    a checkpoint cannot hold: one without ``state_dict()`` where ``train`` saves, or without
    ``load_state_dict()`` where it resumes. Upstream's checkpoint would fail on it after a
    whole epoch, its resume after loading the other files."""
    needed = {"state_dict": "save_every / save_best" if saves else None,
              "load_state_dict": "resume_from_dir" if resumes else None}
    for name, obj in objects.items():
        for method, argument in needed.items():
            if argument is None or obj is None or callable(getattr(obj, method, None)):
                continue
            instead = "pass scheduler=None (no learning-rate schedule), " if name == "scheduler" else ""
            raise TypeError(
                f"{name} (a {type(obj).__name__}) has no {method}(), which {argument} needs: the checkpoint "
                f"holds its state. Give it state_dict() and load_state_dict() (one without state: return {{}} "
                f"and ignore what it is given; or subclass torch.nn.Module), {instead}or train without "
                "save_every, save_best and resume_from_dir.")


class MixedPrecisionTrainer(TrainingStateCheckpoints, AutoPrecisionPhases, Trainer):
    """neuralop's Trainer with precision schedules, autocast, and complex-safe loss scaling.

    Same constructor contract and ``train(...)`` signature/return as
    :class:`neuralop.training.Trainer`, plus the keywords below.

    Parameters
    ----------
    model, n_epochs, device, data_processor, eval_interval, log_output, verbose, wandb_log
        As in :class:`neuralop.training.Trainer`.
    use_distributed : bool, default False
        Inside a ``torch.distributed`` process group of several ranks: wrap the model
        in DDP (on CPUs too, unlike upstream), check that the ranks agree on the
        epochs and batches, reshuffle a DistributedSampler every epoch, skip a step
        on every rank when one rank's loss or gradient is not finite, stop every rank
        when one rank's epoch had no finite loss, and average evaluation metrics over
        ranks (:mod:`~neuralop_mp.training.distributed`).
    mixed_precision : bool, default False
        Without a schedule: run the forward pass under autocast for the whole run
        (with loss scaling, unlike upstream). With a schedule, the phases decide (a
        warning names the phases that run without autocast when this is True).
    precision_schedule : PrecisionSchedule, str, list or None
        Anything :meth:`PrecisionSchedule.from_config` accepts, e.g. ``"paper"`` or
        ``"half:0.25,mixed:0.5,full:0.25"``. None: the layers keep their precision.
        Phases that get no epoch in a run of ``n_epochs`` are said in a
        :class:`~.schedule.SkippedPhaseWarning` naming the line that built the trainer (under
        DDP by rank 0 alone: every rank builds alike).
    half_dtype : {"auto", "float16", "bfloat16"}
        Half type of autocast and, with a schedule, of the spectral layers (set on them at
        each phase: ``train()`` warns where that overrides a type the layers were built with;
        without a schedule they keep their own). "auto" = float16 on CUDA, bfloat16 elsewhere.
    loss_scaling : {"auto", "dynamic", "none"} or bool
        "auto" scales the loss only when float16 is used (bfloat16 and float32 have
        float32's range): as the half type, or as storage, i.e. complex32 spectral
        weights, whose gradients are float16 pairs. Decided when the trainer is built and
        again by each ``train()`` (the model may have been switched to float16 since), and
        by a resume against its checkpoint. In a phase where nothing is computed or stored
        in float16 the scale does not grow (nothing there overflows: the next float16 phase
        would skip a step per doubling); a run without float16 anywhere grows it as
        ``torch.amp.GradScaler`` does. The non-finite guard runs in every case.
    max_consecutive_skips : int, default 20
        Stop with a :class:`~.guarded_step.TrainingStopped` (a RuntimeError) after this many
        skipped steps in a row.
    progress : bool, default False
        Show a tqdm bar over epochs (postfix: phase, loss, skipped steps, scale).
    auto_precision : bool, default False
        With a schedule: at the start of every phase that is not "full", measure the
        model on the first ``auto_precision_batches`` training batches and run the
        phase in the more precise of its mode and the cheapest mode the measurement
        accepts, with autocast only where the same measurement accepts it too
        (:mod:`~neuralop_mp.training.auto_phases`).
    auto_precision_batches : int, default 2
        Training batches each re-check measures.
    update_in_backward : bool, default False
        Step each parameter during backward, as soon as its gradient is accumulated,
        and free that gradient (:mod:`~neuralop_mp.optim.update_in_backward`): the same
        weights as the ordinary step, without all gradients held at once. Refused
        (ValueError, when the trainer is built) together with loss scaling or several
        ranks (``use_distributed``, or a model wrapped in ``DistributedDataParallel``), and at
        ``train()`` with TensorGRaD's ``nonfinite_grad="skip"``.

    Attributes
    ----------
    history : list of dict
        One entry per epoch: ``epoch``, ``phase``, ``precision``, ``autocast``,
        ``stabilizer``, ``half_dtype``, ``train_loss``, ``train_err``, ``lr``,
        ``skipped_steps``, ``loss_scale``, ``epoch_time``, ``world_size``, ``saved_bytes`` and
        ``step_peak_bytes`` (CPU: bytes saved for backward by the epoch's first batch,
        and the peak of live tensor bytes during that whole step, measured by
        :class:`~neuralop_mp.peak_memory.PeakTensorBytes`; an epoch in which nothing they
        depend on changed since the last measured one records that one's values, see
        :meth:`_memory_needs_measuring`) or ``cuda_peak_bytes``,
        the eval metrics (``"{loader}_{loss}"``) of epochs that were evaluated, and
        with ``auto_precision`` the ``auto_precision`` decision (its ``mode``, ``autocast``
        and the ``conditions`` it was measured under; ``auto_check`` where it was measured).
    auto_decisions : list of dict
        With ``auto_precision``: every re-check's measurement and decision.
    scaler : ComplexGradScaler
    resumed_finished_run : bool
        Whether the last ``train()`` resumed a checkpoint that had finished all ``n_epochs``
        already (nothing was trained).
    on_finished_run : callable or None
        None: such a resume is said as a warning. A callable taking the checkpoint folder
        says it instead (the training pipeline's writes it in the run's log).
    """

    on_finished_run = None

    def __init__(self, *, model, n_epochs, device="cpu", data_processor=None, eval_interval=1,
                 log_output=False, use_distributed=False, verbose=False, wandb_log=False,
                 mixed_precision=False, precision_schedule=None, half_dtype="auto",
                 loss_scaling="auto", max_consecutive_skips=20, progress=False, auto_precision=False,
                 auto_precision_batches=2, update_in_backward=False):
        # upstream's own arguments too: n_epochs=0 ends in an UnboundLocalError, eval_interval=0
        # in a ZeroDivisionError after a whole epoch, a fractional n_epochs in range()
        n_epochs = check_int_at_least("n_epochs", n_epochs)
        eval_interval = check_int_at_least("eval_interval", eval_interval)
        super().__init__(model=model, n_epochs=n_epochs, wandb_log=wandb_log, device=device,
                         mixed_precision=mixed_precision, data_processor=data_processor,
                         eval_interval=eval_interval, log_output=log_output,
                         use_distributed=use_distributed, verbose=verbose)
        self.precision_schedule = PrecisionSchedule.from_config(precision_schedule)
        #: the warning that the schedule overrules ``mixed_precision=True`` (None where it does not);
        #: kept for the runner's summary, which says it again
        self.overruled_autocast = None
        if self.precision_schedule is not None:
            # a last phase that never runs is an error; the earlier ones that get no epoch are said below
            self.precision_schedule.check_fits(n_epochs, warn=False)
            skipped_phases = self.precision_schedule.skipped_phases_text(n_epochs)
            self.overruled_autocast = self.precision_schedule.autocast_overruled(mixed_precision)
            # named at the line that built the trainer (the plugin's subclasses and runner passed); every
            # rank of a data-parallel run builds one: rank 0 alone says them, as it alone logs the epochs
            builders = [os.path.dirname(__file__), os.path.join(os.path.dirname(os.path.dirname(__file__)), "runner")]
            if skipped_phases and distributed.rank() == 0:
                warnings.warn(skipped_phases, SkippedPhaseWarning, stacklevel=stacklevel_outside(builders))
            if self.overruled_autocast and distributed.rank() == 0:
                warnings.warn(self.overruled_autocast, stacklevel=stacklevel_outside(builders))
        self.half_dtype = normalize_half_dtype(half_dtype)
        self.autocast_dtype = resolve_half_dtype(self.half_dtype, device)
        self.loss_scaling = _normalize_loss_scaling(loss_scaling)
        self.max_consecutive_skips = check_int_at_least("max_consecutive_skips", max_consecutive_skips)
        self.progress = normalize_flag(progress, "progress")
        self.update_in_backward = normalize_flag(update_in_backward, "update_in_backward")
        self.has_mixed_precision_layers = bool(mixed_precision_layers(model))
        schedule = self.precision_schedule
        if schedule is not None and not self.has_mixed_precision_layers:
            modes = sorted({p.mode for p in schedule if p.mode != "full"})
            if modes:
                raise ValueError(
                    f"precision_schedule={str(schedule)!r} switches the spectral layers to {modes}, but "
                    f"{type(model).__name__} has no MixedPrecisionSpectralConv layer; {NO_LAYER_HINT}")
        self._init_auto_precision(auto_precision, auto_precision_batches)
        self.scaler = ComplexGradScaler(enabled=self._scaling_enabled())
        self._check_update_in_backward(self.scaler.enabled)  # refused now, not after the data are loaded
        self._bar = None
        self._step_meter = None
        self._epoch_log = None  # during upstream's epoch loop: its log_training call, deferred
        self._guarded_epochs = 0  # calls of our train_one_epoch: a subclass's own loop adds none
        self._in_guarded_step = False  # the one place the optimizer may step where steps are guarded
        self._eval_sample_counts = {}  # per metric key, the samples it is the mean over (evaluate_all)
        if self.precision_schedule is None and self.has_mixed_precision_layers:
            self._layers_precision()  # layers in different precisions: refused now, not at the first epoch
        self._start_new_run()  # history, phase, autocast, epoch stats: a run's state
        # the weights a DDP model of ours leaves to _guarded_step (distributed.wrap_model), for a
        # train_one_epoch called directly; train() finds them again once it has wrapped the model
        self._self_averaged = distributed.self_averaged_parameters(self.model)

    # ------------------------------------------------------------------ precision state
    def _float16_storage(self):
        """Names of the float16-range dtypes the model's parameters are stored in (their gradients
        are too), sorted; [] for none. What makes "auto" loss scaling scale, whatever is computed."""
        return sorted({dtype_name(p.dtype) for p in self.model.parameters()
                       if p.dtype in (torch.float16, torch.complex32)})

    def _uses_float16(self):
        """Whether some part of the run computes in float16 or keeps gradients in its range."""
        return bool(self._float16_storage()) or self._computes_float16()

    def _computes_float16(self):
        """Whether some phase of the run (its one precision, without a schedule) computes in
        float16: the half type of its layers or of autocast. Storage aside (:meth:`_uses_float16`)."""
        if self.precision_schedule is not None:
            return self.autocast_dtype == torch.float16 and self.precision_schedule.uses_half
        if self.mixed_precision and self.autocast_dtype == torch.float16:
            return True
        if self.has_mixed_precision_layers:
            mode, layer_dtype, _ = self._layers_precision()
            return mode != "full" and resolve_half_dtype(layer_dtype, self.device) == torch.float16
        return False

    def _layers_precision(self):
        """``(mode, half_dtype, stabilizer)`` of the model's spectral layers, which run the whole
        run without a schedule: ValueError, saying what to do, where they are in different ones."""
        try:
            return get_precision(self.model)
        except ValueError as error:  # the model has such layers: they disagree
            raise ValueError(
                f"The spectral layers of {type(unwrap(self.model)).__name__} are in different precisions "
                f"({str(error).split(': ', 1)[-1]}); without a precision_schedule MixedPrecisionTrainer runs "
                "and records the one precision of all of them. Set one on every layer "
                "(neuralop_mp.set_precision(model, 'mixed'), or 'full' / 'half'), or pass a precision_schedule "
                "(each of its phases sets every layer).") from None

    def _scaling_enabled(self):
        if self.loss_scaling == "auto":
            return self._uses_float16()
        return self.loss_scaling == "dynamic"

    def _check_update_in_backward(self, scaling):
        """With ``update_in_backward``: ValueError where the run scales its loss (``scaling``) or
        runs on several ranks, naming the setting."""
        if self.update_in_backward:
            from ..optim.update_in_backward import check_update_in_backward_settings

            # a model the caller wrapped in DDP counts, whatever use_distributed says
            check_update_in_backward_settings(loss_scaling=self.loss_scaling if scaling else False,
                                              distributed=distributed.data_parallel(self.model, self.use_distributed),
                                              float16_storage=self._float16_storage() if scaling else (),
                                              float16_compute=scaling and self._computes_float16())

    def _decide_loss_scaling(self):
        """Decide whether the run that starts now scales its loss: "auto" again, as the model may
        have been switched to float16 since the trainer was built (``set_precision`` after it,
        complex32 weights converted later). A resume then decides once more, against its
        checkpoint's scaler (``_load_scaler_state``), as it did before."""
        scaling = self._scaling_enabled()
        self._check_update_in_backward(scaling)  # before anything of the run changes
        self.scaler.set_enabled(scaling)

    def _scale_may_grow(self):
        """Whether this epoch's finite steps may grow the loss scale: not in a phase where nothing
        is computed or stored in float16 (e.g. "full" without autocast) of a run that uses float16
        in another phase. Nothing overflows there, so the scale would double without limit and the
        next float16 phase skip a step per doubling (``max_consecutive_skips`` of them stop the
        run). A run without float16 anywhere ("dynamic" in bfloat16) grows it as torch's does."""
        if not self.scaler.enabled or torch.float16 in self._half_dtypes() or self._float16_storage():
            return True
        return not self._uses_float16()

    def _current_precision(self):
        """(mode, stabilizer) the layers run in now, for the history."""
        if self.phase is not None:
            mode = self._auto["mode"] if self.auto_precision and self._auto is not None else self.phase.mode
            return mode, self.phase.stabilizer_for(self.autocast_dtype)
        if self.has_mixed_precision_layers:
            mode, _, stabilizer = self._layers_precision()
            return mode, stabilizer
        return "full", None

    def _layer_half_dtype(self):
        """The torch half type the spectral layers compute in when not "full": with a schedule
        the trainer's (each phase writes it to them), else the one the layers were built with
        (or set to since); the trainer's for a model without such layers."""
        if self.precision_schedule is None and self.has_mixed_precision_layers:
            return resolve_half_dtype(self._layers_precision()[1], self.device)
        return self.autocast_dtype

    def _half_dtypes(self):
        """The 16-bit torch types the current phase computes in, the layers' first: theirs in a
        "half" or "mixed" mode, autocast's under autocast; none in full precision."""
        types = [self._layer_half_dtype()] if self._current_precision()[0] != "full" else []
        if self.autocast_enabled and self.autocast_dtype not in types:
            types.append(self.autocast_dtype)
        return types

    def _autocast(self):
        return torch.autocast(device_type=self.autocast_device_type, dtype=self.autocast_dtype,
                              enabled=self.autocast_enabled)

    def on_epoch_start(self, epoch):
        """Select the schedule's phase for ``epoch`` and switch the model to it."""
        super().on_epoch_start(epoch)
        self._enter_phase(epoch)
        if self.progress and self._bar is None:
            from ..progress_bars import progress_bar

            self._bar = progress_bar(total=self.n_epochs, initial=epoch, unit="epoch", desc="train")
        if self.autocast_device_type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _enter_phase(self, epoch, measure=True):
        """Switch the model, autocast and the auto-precision decision to ``epoch``'s phase
        (``measure=False``: no auto-precision check, see ``_apply_auto_precision``)."""
        schedule = self.precision_schedule
        if schedule is not None:
            self.phase_index = schedule.index_for_epoch(epoch, self.n_epochs)
            self.phase = schedule[self.phase_index]
            if self.has_mixed_precision_layers:
                self._switch_layers_to_phase()
            else:  # only full phases reach here (checked in __init__)
                set_precision(self.model, "full", stabilizer=self.phase.stabilizer_for(self.autocast_dtype))
            self.autocast_enabled = self.phase.autocast
            if self.auto_precision:
                self._apply_auto_precision(epoch, measure=measure)

    def _switch_layers_to_phase(self):
        """Put every spectral layer in the phase's mode (or the mode "auto" decided for the phase),
        stabilizer and the trainer's half type, where they are not in them already (their weight
        storage and autocast scope are the model's: a phase leaves them). Layers built in
        different precisions are all set alike."""
        # built from what the trainer knows, not read back from the layers: they are read once (every epoch
        # starts here), and the other fields keep their defaults on both sides of the comparison
        wanted = self.phase.policy(PrecisionPolicy(half_dtype=self.half_dtype), self.autocast_dtype)
        decided = self._decided_mode()  # "auto"'s decision for this phase, where made: what the layers run
        if decided is not None:
            wanted = wanted.replace(fno_block_precision=decided)
        try:
            current = PrecisionPolicy(*get_precision(self.model))
        except ValueError:  # layers in different precisions: none is the phase's
            current = None
        if current != wanted:
            set_fixed_precision(self.model, wanted.fno_block_precision, half_dtype=wanted.half_dtype,
                                stabilizer=wanted.stabilizer)

    # ------------------------------------------------------------------ one batch / epoch
    # Upstream's ``train_one_epoch`` runs, per batch: ``loss = self.train_one_batch(...)``,
    # ``loss.backward()``, ``self.optimizer.step()``, ``loss.item()``. For the duration of our
    # epoch, ``self.train_one_batch`` is :meth:`_guarded_batch` around the class's own hook
    # (ours: the forward under the phase's autocast; or a subclass's, whose whole loss is then
    # checked and scaled), and ``self.optimizer`` an optimizer whose ``step()`` is the
    # scaler's guarded step. The epoch wrapper below only adds bookkeeping around
    # ``super().train_one_epoch``.
    # test_the_trainer_overrides_only_the_batch_hook_of_upstreams_epoch_loop (tests/test_training_faults.py)
    # fails when upstream's loop changes under this.
    def _prepare(self, sample):
        if self.data_processor is not None:
            return self.data_processor.preprocess(sample)
        return {k: v.to(self.device) for k, v in sample.items() if torch.is_tensor(v)}

    def _forward(self, sample):
        """The model on a prepared ``sample`` under the phase's autocast, its output in float32
        (training and evaluation alike: the losses are computed in float32)."""
        with self._autocast():
            out = self.model(**_accepted(self.model.forward, sample))
        return _as_float32(out)

    def train_one_batch(self, idx, sample, training_loss):
        """Upstream's batch hook: forward under the phase's autocast, loss in float32.

        Returns the loss as computed. During an epoch the trainer's guard
        (:meth:`_guarded_batch`) wraps whatever ``train_one_batch`` the class has, this
        one or a subclass's (which may call this one and add terms to its loss), and
        checks and scales the loss it finally returns."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.regularizer:
            self.regularizer.reset()
        sample = self._prepare(sample)
        out = self._forward(sample)
        if self.epoch == 0 and idx == 0 and self.verbose and torch.is_tensor(out):
            print(f"Raw outputs of shape {out.shape}")
        if self.data_processor is not None:
            out, sample = self.data_processor.postprocess(out, sample)
        self.n_samples += _loss_terms(sample)
        loss = _call_loss(training_loss, out, sample, "training_loss")
        if self.regularizer:
            loss = loss + self.regularizer.loss
        return loss

    def _guarded_batch(self, batch_hook, idx, sample, training_loss):
        """What upstream's loop calls as ``self.train_one_batch`` during our epoch: ``batch_hook``
        (the class's ``train_one_batch``) with the per-batch bookkeeping around it.

        Returns its loss, ready for upstream's ``loss.backward()``: with loss scaling its
        backward multiplies the gradient by the scale (its value is the unscaled loss), every
        term the hook added included. A non-finite loss is returned as a detached 0 (its
        backward does nothing) and the step is marked to be skipped."""
        raise_if_interrupted()  # a Ctrl-C that a finalizer swallowed during the previous batch
        samples_before = self.n_samples
        if idx == 0 and self.autocast_device_type != "cuda" and self._memory_needs_measuring(sample):
            # the peak of live tensor bytes of this whole step: forward here, upstream's backward
            # (with the in-backward updates), the step; closed at the end of _guarded_step
            self._step_meter = PeakTensorBytes(
                alive=[list(self.model.parameters()), self._optimizer_in_epoch.state, sample])
            self._step_meter.__enter__()
            with SavedTensorBytes(exclude=self.model.parameters()) as meter:
                loss = batch_hook(idx, sample, training_loss)
            self._epoch_stats["saved_bytes"] = meter.bytes
        else:
            loss = batch_hook(idx, sample, training_loss)
        if not torch.is_tensor(loss):  # upstream's loop would fail at loss.backward()
            raise TypeError(f"{type(self).__name__}.train_one_batch returned a {type(loss).__name__} ({loss!r}); "
                            "the epoch loop calls loss.backward() on it: return the loss tensor.")
        finite = bool(torch.isfinite(loss.detach()).all())
        self._batch = dict(idx=idx, finite=finite, loss=float(loss.detach()) if finite else math.nan,
                           samples=self.n_samples - samples_before,
                           lasso=float(torch.as_tensor(self.regularizer.loss).detach())  # a tensor with grad
                           if self.regularizer and finite else 0.0)
        if not finite:
            self.scaler.skip_step()  # backward through inf/NaN would only make NaN gradients
            if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
                # DDP all-reduces gradients inside backward: this rank must run it through the
                # model too, or the other ranks wait forever. Its value and gradient are zero
                # or NaN; the step is skipped on every rank anyway (the scaler all-reduces the flag).
                return torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0) * 0.0
            return torch.zeros((), device=loss.device, requires_grad=True)
        if self.scaler.enabled:
            return ScaleGradient.apply(loss, self.scaler.get_scale())
        return loss

    def _guarded_step(self):
        """What upstream's ``self.optimizer.step()`` runs during an epoch: the scaler's
        guarded step, then the checks that stop a run going wrong."""
        optimizer, batch, stats = self._optimizer_in_epoch, self._batch, self._epoch_stats
        steps_taken_before = self.scaler.total_steps - self.scaler.skipped_steps  # in this run (resumed ones too)
        metered = self._step_meter is not None
        try:
            # complex32 weights, which DDP leaves out (distributed.wrap_model): averaged here, before the
            # scaler unscales and checks them, so every rank checks and steps the same gradients
            distributed.average_gradients(self._self_averaged)
            self._in_guarded_step = True
            stepped = self.scaler.step(optimizer)
        finally:
            self._in_guarded_step = False
            self._close_step_meter()
        # a non-finite loss on any rank (agreed once the step skips; update() clears it) is no skip of
        # a scale still calibrating: this rank's own finite loss would count it on this rank only
        loss_skipped = self.scaler.loss_skipped
        # decided at the epoch's first step, not in on_epoch_start: a subclass's on_epoch_start may set
        # precision or weight dtypes after super()'s (or not call it), and the step sees what it set
        if stats["scale_grows"] is None:
            stats["scale_grows"] = self._scale_may_grow()
        self.scaler.update(grow=stats["scale_grows"])
        if metered:
            stats["metered_step_taken"] = stepped  # a skipped step's peak is no other step's (_remember_memory)
        if stepped:
            self._check_weights_finite(optimizer, batch["idx"])
        elif self.scaler.enabled and not loss_skipped and not steps_taken_before:
            stats["calibration_skips"] += 1  # the scale still coming down to one the gradients fit
        if batch["finite"]:
            stats["loss_sum"] += batch["loss"]
            stats["batches"] += 1
            stats["samples"] += batch["samples"]
            stats["lasso_sum"] += batch["lasso"]
        if self.scaler.consecutive_skips >= self.max_consecutive_skips:
            self._close_bar()
            raise TrainingStopped(self._too_many_skips_message(self.epoch, batch["idx"]))

    def _check_weights_finite(self, optimizer, idx):
        """The gradients were finite; if the weights are not, the update overflowed
        (e.g. an infinite learning rate). Stop: every later step would build on NaN."""
        if norms_finite([p for group in optimizer.param_groups for p in group["params"]]):
            return  # the one check of nearly every step; naming the bad weights is the rare case's
        bad = non_finite_parameters(optimizer, self.model)
        if not bad:
            return
        lrs = sorted({g.get("lr") for g in optimizer.param_groups}, key=str)
        # the first three by name, and how many more: a list of three must not read as all there are
        n_params = sum(len(g["params"]) for g in optimizer.param_groups)
        named = f"{bad[:3]}" + (f" and {len(bad) - 3} more (of {n_params})" if len(bad) > 3 else "")
        self._close_bar()
        if self.update_in_backward:
            # each parameter was stepped as backward produced its gradient, before any check
            raise TrainingStopped(
                f"The weights {named} turned into inf/NaN at epoch {self.epoch}, batch {idx}. With "
                "update_in_backward=True each parameter is stepped as soon as backward produces its "
                "gradient, before the gradients are checked, so a non-finite gradient (an overflow in "
                "backward) or a non-finite update (learning rate(s) "
                f"{lrs}, {type(optimizer).__name__}) reached them. Check the data and the loss for inf/NaN "
                "and lower the learning rate, or train without update_in_backward, where a non-finite "
                "gradient skips the step instead; resume from the last checkpoint, the current weights are lost.")
        raise TrainingStopped(
            f"The optimizer step at epoch {self.epoch}, batch {idx} turned the weights {named} into inf/NaN "
            f"although every gradient was finite: the update itself is not finite (learning rate(s) {lrs}, "
            f"{type(optimizer).__name__}). " + (_half_moments_hint(optimizer) or "") +
            "Lower the learning rate or check the optimizer's settings; resume from the last checkpoint, the "
            "current weights are lost.")

    def _close_step_meter(self):
        meter, self._step_meter = self._step_meter, None
        if meter is not None:
            meter.__exit__(None, None, None)
            self._epoch_stats["step_peak_bytes"] = meter.peak_bytes

    def _fresh_epoch_stats(self):
        # steps_before: the scaler's step count at the epoch's start (its steps since are the epoch's
        # batches, each step taken or skipped); batches: those with a finite loss; totals: what
        # _epoch_totals computed (once per epoch); memory_setting / metered_step_taken: see
        # _memory_needs_measuring; scale_grows: _scale_may_grow, at the epoch's first step
        return dict(loss_sum=0.0, batches=0, steps_before=self.scaler.total_steps, samples=0, lasso_sum=0.0,
                    saved_bytes=None, step_peak_bytes=None, totals=None, calibration_skips=0,
                    memory_setting=None, metered_step_taken=False, scale_grows=None)

    def _memory_setting(self, sample):
        """What the CPU meters' values of a first batch depend on: the precision the epoch runs in
        (phase, mode, stabilizer, autocast, half types, loss scaling), the batch's tensors' shapes and
        dtypes, the parameters' shapes and dtypes, the Fourier modes every module keeps (a subclass
        may grow them, as upstream's ``IncrementalFNOTrainer`` does) and the optimizer state's bytes
        (the run's first step creates it, so the next step's peak holds it from the start)."""
        batch = tuple((key, tuple(value.shape), value.dtype) for key, value in sample.items()
                      if torch.is_tensor(value)) if isinstance(sample, Mapping) else type(sample)
        optimizer = self._optimizer_in_epoch
        state = optimizer.state
        state_bytes = tensor_bytes([entry for entry in state.values() if isinstance(entry, Mapping)])
        # a step that refreshes TensorGRaD's bases holds more than one that does not
        refreshes = getattr(optimizer, "next_step_refreshes", None)
        return (self.phase_index, self._current_precision(), self.autocast_enabled, self.autocast_dtype,
                self._layer_half_dtype(), self.scaler.enabled, batch, _processor_setting(self.data_processor),
                tuple((tuple(p.shape), p.dtype) for p in self.model.parameters()),
                tuple((name, tuple(modes)) for name, modes in current_n_modes(self.model).items()),
                len(state), state_bytes, refreshes() if callable(refreshes) else None)

    def _memory_needs_measuring(self, sample):
        """Whether the CPU meters watch this epoch's first batch (``sample``): not where nothing they
        depend on (:meth:`_memory_setting`) changed since the last epoch whose first step they watched
        and that step was taken; the epoch then records that epoch's values, which its own first
        batch would measure again. Watching one step takes about as long as the step itself (every
        operator passes through Python), so a run measures its first epochs and each new phase."""
        setting = self._memory_setting(sample)
        known = self._measured_memory
        if known is not None and known[0] == setting:
            self._epoch_stats["saved_bytes"], self._epoch_stats["step_peak_bytes"] = known[1:]
            return False
        self._epoch_stats["memory_setting"] = setting
        return True

    def _remember_memory(self):
        """After an epoch whose first step the meters watched: keep its values for the epochs with
        the same setting, where that step was taken (a skipped step frees no optimizer update's
        temporaries and creates no state: the next epoch measures again)."""
        stats = self._epoch_stats
        if stats["memory_setting"] is not None and stats["metered_step_taken"] \
                and stats["saved_bytes"] is not None and stats["step_peak_bytes"] is not None:
            self._measured_memory = (stats["memory_setting"], stats["saved_bytes"], stats["step_peak_bytes"])

    def _epoch_steps(self):
        """The steps of this epoch so far, taken or skipped: one per batch."""
        return self.scaler.total_steps - self._epoch_stats["steps_before"]

    def train_one_epoch(self, epoch, train_loader, training_loss):
        """Upstream's epoch with a guarded step; returns
        ``(train_err, avg_loss, avg_lasso_loss, epoch_train_time)`` as upstream does.

        Under DDP the averages (and ``history``'s ``train_loss``, ``train_err``) are over
        every rank's batches, the same on every rank: what one process of the ranks' batch size
        records (with a loss averaged over the batch, ``avg_loss`` is per sample divided by that
        size, as upstream's; docs/distributed.md). Losses of non-finite batches are left
        out of the averages (they are counted in ``history[-1]["skipped_steps"]``), and out
        of the loss a ``ReduceLROnPlateau``
        scheduler is stepped with (:meth:`_step_plateau`). An epoch without a finite loss
        stops the run with a RuntimeError; under DDP every rank stops when one rank had
        none, and the message names those ranks (:meth:`_epoch_totals`). The ``verbose``
        epoch line (and wandb's values) gives these averages too (:meth:`log_training`)."""
        self._guarded_epochs += 1  # see _checked_epoch
        self._epoch_stats = self._fresh_epoch_stats()
        distributed.set_sampler_epoch(train_loader, epoch)
        skipped_before = self.scaler.skipped_steps
        self._optimizer_in_epoch = self.optimizer
        self.optimizer = StepThroughTrainer(self._optimizer_in_epoch, self._guarded_step)
        # the class's batch hook, a subclass's own included: the guard wraps whatever it returns
        guarded_batch = functools.partial(self._guarded_batch, self.train_one_batch)
        self._epoch_log = "deferred"  # see log_training
        try:
            with self._epoch_stand_ins(train_loader), _shadowing(self, "train_one_batch", guarded_batch):
                scheduler = self.scheduler
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    # upstream would step it with a sum where a skipped batch counts 0: a stand-in that is
                    # no ReduceLROnPlateau gets upstream's plain step() call, at the same point, instead
                    self.scheduler = DeferredPlateauStep(scheduler, lambda: self._step_plateau(scheduler))
                _, _, _, epoch_train_time = super().train_one_epoch(epoch, train_loader, training_loss)
        finally:
            log, self._epoch_log = self._epoch_log, None
            self.optimizer = self._optimizer_in_epoch
            self._close_step_meter()  # a step that raised before its end
        stats = self._epoch_stats
        # under DDP over every rank's batches, as the evaluation's metrics are: one rank's shard alone
        # would record (and show in the bar) that rank's loss only
        loss_sum, finite, _, samples, lasso_sum, ranks_without_finite_loss = self._epoch_totals()
        if ranks_without_finite_loss:
            self._close_bar()
            raise TrainingStopped(self._no_finite_loss_message(epoch, ranks_without_finite_loss))
        train_err = loss_sum / finite if finite else math.nan
        avg_loss = loss_sum / samples if samples else math.nan
        avg_lasso_loss = lasso_sum / samples if self.regularizer and samples else None
        lr = self.optimizer.param_groups[-1]["lr"]
        skipped = self.scaler.skipped_steps - skipped_before
        if log == "asked":  # where upstream's loop logs, with the numbers the history records
            super().log_training(epoch=epoch, time=epoch_train_time, avg_loss=avg_loss, train_err=train_err,
                                 avg_lasso_loss=avg_lasso_loss, lr=lr)
        self._remember_memory()
        self._record_epoch(epoch, avg_loss, train_err, lr, skipped, epoch_train_time, stats["saved_bytes"],
                           stats["step_peak_bytes"])
        self._warn_skipped_steps(epoch, skipped)
        return train_err, avg_loss, avg_lasso_loss, epoch_train_time

    def _warn_skipped_steps(self, epoch, skipped):
        """Warn of the epoch's ``skipped`` steps: always without loss scaling (a skip there always
        means trouble) and with ``verbose``; with scaling where more than half of the epoch's
        steps were skipped, not counting the skips of a scale still calibrating itself at the
        run's start (before its first step; a step skipped for a non-finite loss, on any rank,
        is none), or where no step of the epoch was taken at all. Under DDP rank 0 alone warns:
        every rank counts the same skips."""
        steps, calibrating = self._epoch_steps(), self._epoch_stats["calibration_skips"]
        most = skipped == steps or 2 * (skipped - calibrating) > steps
        # every rank counts the same skips (the scaler's all-reduced decisions): rank 0 alone says them
        if not skipped or not (self.verbose or not self.scaler.enabled or most) or distributed.rank() != 0:
            return
        text = f"Epoch {epoch}: skipped {skipped} optimizer step(s) of {steps} with non-finite loss or gradients " \
               f"({self._phase_text()})"
        if most and calibrating == skipped:
            text += (": no step of the epoch changed the weights, the loss scale is still looking for one the "
                     f"gradients fit (halved at each overflow from {self.scaler.init_scale:g}). If the next "
                     "epochs skip as well, try: " + "; ".join(self._overflow_tips()))
        elif most:
            text += (": no step of the epoch changed the weights" if skipped == steps else
                     ": most of the epoch's steps did not change the weights") + \
                ". Try: " + "; ".join(self._overflow_tips())
        # at the line that called train(), past our epoch wrappers and upstream's loop
        warnings.warn(text + ".", RuntimeWarning, stacklevel=stacklevel_outside(
            [os.path.dirname(__file__), os.path.dirname(inspect.getfile(Trainer))]))

    # ------------------------------------------------------------------ a subclass's own epoch loop
    @contextlib.contextmanager
    def _checking_epoch_loops(self, optimizer):
        """Within ``train``: ``self.train_one_epoch`` is :meth:`_checked_epoch` around the class's
        own (a subclass's may run a loop of its own instead of calling ours), and where steps
        must be guarded (:meth:`_steps_need_guard`) a step of ``optimizer`` outside the guarded
        step raises before it changes anything."""
        hook = None
        if self._steps_need_guard() and callable(getattr(optimizer, "register_step_pre_hook", None)):
            hook = optimizer.register_step_pre_hook(self._refuse_unguarded_step)
        try:
            with _shadowing(self, "train_one_epoch", functools.partial(self._checked_epoch, self.train_one_epoch)):
                yield
        finally:
            if hook is not None:
                hook.remove()

    def _steps_need_guard(self):
        """Why a step outside the guarded step would train wrongly (None where it would not):
        loss scaling, or weights that only the guarded step averages over the ranks."""
        if self.scaler.enabled:
            return f"loss scaling is on (loss_scaling={self.loss_scaling!r}): such steps are neither scaled nor " \
                "checked"
        if self._self_averaged:
            return ("the complex32 spectral weights, which DDP leaves out, are averaged over the ranks by the "
                    "guarded step only")
        return None

    @contextlib.contextmanager
    def _epoch_stand_ins(self, train_loader):
        """For one epoch, ours (called by ``train`` or directly) or a subclass's own loop: a
        scheduler to step where there is none (upstream's loop steps one unconditionally after
        the epoch) and ``train_loader`` as the loader the "auto" re-check measures; then what
        was there before (a checkpoint saves no scheduler.pt for None). Nested, the outer
        block's are kept."""
        scheduler, loader = getattr(self, "scheduler", None), self._epoch_loader  # none before train()
        if scheduler is None:
            self.scheduler = _NO_SCHEDULER
        if loader is None:
            self._epoch_loader = train_loader
        try:
            yield
        finally:
            self.scheduler, self._epoch_loader = scheduler, loader

    def _checked_epoch(self, epoch_hook, epoch, train_loader, training_loss):
        """What upstream's ``train`` calls as ``self.train_one_epoch``: ``epoch_hook`` (the class's),
        given a scheduler to step where ``train`` got None and the loader the "auto" re-check
        measures. An epoch it trained without calling our :meth:`train_one_epoch` (a subclass's
        own loop, as upstream's Trainer runs it) is recorded in :attr:`history` from what it
        returns."""
        guarded_before = self._guarded_epochs
        with self._epoch_stand_ins(train_loader):
            result = epoch_hook(epoch, train_loader, training_loss)
        if self._guarded_epochs == guarded_before:
            reason = self._steps_need_guard()
            if reason:  # an optimizer without step hooks: its steps could not be refused one by one
                raise RuntimeError(self._own_loop_message(reason))
            train_err, avg_loss, _, epoch_time = result  # upstream's train() unpacks it alike
            self._record_epoch(epoch, avg_loss, train_err, self.optimizer.param_groups[-1]["lr"], 0, epoch_time,
                               None)
        return result

    def _refuse_unguarded_step(self, optimizer, args, kwargs):
        """The optimizer's step pre-hook during ``train`` where steps must be guarded."""
        if not self._in_guarded_step:
            raise RuntimeError(self._own_loop_message(self._steps_need_guard()))

    def _own_loop_message(self, reason):
        owner = next(cls for cls in type(self).__mro__ if "train_one_epoch" in vars(cls))
        if self._epoch_log is not None:  # our epoch runs: a step of the optimizer itself, past the guard
            return (f"The optimizer was stepped outside MixedPrecisionTrainer's guarded step, where {reason}: "
                    "step through self.optimizer.step() inside the epoch (the guarded step), once per batch.")
        return (f"{owner.__name__}.train_one_epoch stepped the optimizer outside MixedPrecisionTrainer's guarded "
                f"step (its loop does not call super().train_one_epoch), where {reason}. Call "
                "super().train_one_epoch(epoch, train_loader, training_loss) from it and put per-batch changes "
                "into an override of train_one_batch (the guard wraps it and scales the loss it returns)"
                + (", or train with loss_scaling='none' (neuralop-mp run: --mp.loss_scaling none)."
                   if self.scaler.enabled else "."))

    def log_training(self, epoch, time, avg_loss, train_err, avg_lasso_loss=None, lr=None):
        """Upstream's per-epoch line (``verbose``) and wandb values.

        Upstream's epoch loop calls it with its own sums: this rank's batches only under DDP,
        and a skipped batch counted as a loss of 0. Called from that loop, it is deferred:
        :meth:`train_one_epoch` logs the epoch's totals instead, those :attr:`history`
        records (over every rank's batches, skipped ones left out). Called otherwise, it
        logs what it is given."""
        if self._epoch_log is not None:
            self._epoch_log = "asked"
            return
        super().log_training(epoch=epoch, time=time, avg_loss=avg_loss, train_err=train_err,
                             avg_lasso_loss=avg_lasso_loss, lr=lr)

    def _step_plateau(self, scheduler):
        """Step ``scheduler`` (a ``ReduceLROnPlateau``) where upstream's epoch loop steps it.

        Upstream passes the sum of the epoch's batch losses, where a batch whose loss is
        not finite adds the 0 that :meth:`_guarded_batch` returns in its place: a lower
        "loss" the more batches were skipped. Here the sum is taken over the batches with
        a finite loss (those of ``train_err``) and scaled to the epoch's batch count: their
        mean, in upstream's units, and upstream's exact number when none was skipped (so
        a saved scheduler's ``best`` stays comparable). With every loss of the epoch
        non-finite there is nothing to judge: the scheduler is not stepped, and the epoch
        stops with an error (:meth:`train_one_epoch`).

        Under DDP the finite losses' sum and both batch counts are summed over the ranks
        first (:meth:`_epoch_totals`): every rank steps with the same number, the loss of
        all the ranks' batches (what one process training on every shard would pass), and
        skips the step only when no rank had a finite loss."""
        loss_sum, finite, n_batches, *_ = self._epoch_totals()
        if finite:
            # a ratio of exactly 1.0 leaves upstream's sum bit for bit
            scheduler.step(loss_sum * (n_batches / finite))

    def _epoch_totals(self):
        """The epoch's ``(loss_sum, finite, n_batches, samples, lasso_sum, ranks)``: the finite
        losses' sum, the numbers of batches with a finite loss and of all batches, the number
        of samples in the batches with a finite loss and their regularizer losses' sum, and
        the ranks (a list) that ran batches without a single finite loss.

        Under DDP the numbers are summed over the ranks and ``ranks`` gathered from all of
        them, in one all-reduce per epoch (of 5 + world size numbers): the first call, by
        :meth:`_step_plateau` where a ``ReduceLROnPlateau`` is stepped, else by
        :meth:`train_one_epoch`, computes them, a later one reuses them. Outside DDP they
        are this process's own, with ``ranks`` ``[0]`` or ``[]``."""
        stats = self._epoch_stats
        if stats["totals"] is None:
            loss_sum, finite, n_batches = stats["loss_sum"], stats["batches"], self._epoch_steps()
            samples, lasso_sum = stats["samples"], stats["lasso_sum"]
            no_finite_loss = bool(n_batches and not finite)
            if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
                # each rank trained on its own shard: a plateau stepped with its own loss would
                # drift the ranks' learning rates apart, and a rank stopping alone for its own
                # lack of a finite loss would leave the others waiting in their next collective
                # until the process group's timeout. One slot per rank: the sum names the ranks.
                flags = [0.0] * distributed.world_size()
                flags[distributed.rank()] = float(no_finite_loss)
                loss_sum, finite, n_batches, samples, lasso_sum, *flags = distributed.sum_over_ranks(
                    [loss_sum, finite, n_batches, samples, lasso_sum, *flags])
                ranks = [r for r, flag in enumerate(flags) if flag]
            else:
                ranks = [0] if no_finite_loss else []
            stats["totals"] = (loss_sum, finite, n_batches, samples, lasso_sum, ranks)
        return stats["totals"]

    def _no_finite_loss_message(self, epoch, ranks):
        """The error of an epoch in which ``ranks`` had no finite loss (:meth:`_epoch_totals`)."""
        n_batches = self._epoch_steps()
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            # a non-finite loss on one rank skips the step on every rank: none was taken
            where = (f"on rank(s) {ranks} of {distributed.world_size()} ({n_batches} batches per rank): nothing was "
                     "learned, every rank stops. The data of those ranks' shards or the model produces non-finite "
                     "values")
        else:
            where = (f"({n_batches} batches): nothing was learned. The data or the model produces non-finite "
                     "values")
        if self._computes_in_half():
            # finite data overflow a 16-bit type too (float16 above 65504): the precision comes first
            return (f"Every training loss of epoch {epoch} was inf/NaN {where} ({self._phase_text()}): in "
                    f"{self._half_text()} the model likely overflows. Try: " + "; ".join(self._overflow_tips()) + ".")
        return (f"Every training loss of epoch {epoch} was inf/NaN {where}: check the training data for inf/NaN "
                "(the built-in loaders report them per sample), then the learning rate and the precision "
                f"({self._phase_text()}).")

    def _record_epoch(self, epoch, avg_loss, train_err, lr, skipped, epoch_time, saved_bytes, step_peak_bytes=None):
        mode, stabilizer = self._current_precision()
        if self.autocast_device_type == "cuda":
            memory = dict(cuda_peak_bytes=torch.cuda.max_memory_allocated(self.device))
        else:
            memory = dict(saved_bytes=saved_bytes, step_peak_bytes=step_peak_bytes)
        self.history.append(_epoch_record(
            epoch=epoch, phase=self.phase_index, precision=mode, autocast=self.autocast_enabled,
            stabilizer=stabilizer, half_dtype=dtype_name(  # the type computed in: autocast's alone in full precision
                self.autocast_dtype if mode == "full" and self.autocast_enabled else self._layer_half_dtype()),
            train_loss=float(avg_loss), train_err=float(train_err), lr=float(lr), skipped_steps=skipped,
            loss_scale=self.scaler.get_scale(), epoch_time=epoch_time,
            world_size=distributed.world_size() if isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
            else 1, **self._auto_records(), **memory))
        if self._bar is not None:
            self._bar.set_postfix(phase=mode, loss=f"{avg_loss:.4g}", skipped=skipped,
                                  scale=f"{self.scaler.get_scale():g}", refresh=False)
            self._bar.update(1)

    def _phase_text(self):
        mode, stabilizer = self._current_precision()
        where = f"phase {self.phase_index + 1}/{len(self.precision_schedule)} {str(self.phase)!r}: " \
            if self.phase is not None else ""
        # each with the type it computes in: the layers' and autocast's may differ (no schedule)
        layers = f" ({dtype_name(self._layer_half_dtype())})" if mode != "full" else ""
        autocast = f" ({dtype_name(self.autocast_dtype)})" if self.autocast_enabled else ""
        scale = f"loss scale {self.scaler.get_scale():g}" if self.scaler.enabled else "loss scaling off"
        return (f"{where}fno_block_precision={mode!r}{layers}, autocast={self.autocast_enabled}{autocast}, "
                f"stabilizer={stabilizer!r}, {scale}")

    def _computes_in_half(self):
        """Whether the current phase computes in a 16-bit type (half/mixed layers or autocast)."""
        return bool(self._half_dtypes())

    def _half_text(self):
        return " and ".join(map(dtype_name, self._half_dtypes()))

    def _overflow_tips(self):
        """What to try when losses or gradients are not finite: the one list of both stop
        messages and the evaluation warning. Each setting in its Python and its
        ``neuralop-mp train`` spelling: the trainer does not know which one the run used."""
        mode, stabilizer = self._current_precision()
        tips = []
        if self._computes_in_half():
            if mode != "full" and stabilizer is None:
                # a schedule's phase sets its own stabilizer: the example is this phase's with /tanh
                phase = str(self.phase).split("/")[0] if self.phase is not None else mode
                tips.append("enable the tanh stabilizer (stabilizer='tanh' / --model.stabilizer tanh; in a "
                            f"precision schedule, the phase's /tanh, e.g. '{phase}/tanh')")
            if torch.float16 in self._half_dtypes():
                tips.append("use half_dtype='bfloat16' / --model.half_dtype bfloat16 (float32's exponent range, "
                            "no overflow)")
            tips += ["encode the inputs and outputs (the data processor's normalizers / --data.encode_input true "
                     "--data.encode_output true): values of order 1e4 and more overflow float16",
                     "train in full precision (fno_block_precision='full' / --model.fno_block_precision full)"]
        return tips + ["lower the learning rate",
                       "check the training data for inf/NaN (the built-in loaders report them per sample)"]

    def _too_many_skips_message(self, epoch, idx):
        return (f"Training stopped: {self.scaler.consecutive_skips} consecutive optimizer steps were "
                f"skipped because the loss or the gradients were not finite (max_consecutive_skips="
                f"{self.max_consecutive_skips}, --opt.max_consecutive_skips; epoch {epoch}, batch {idx}, "
                f"{self._phase_text()}). Try: " + "; ".join(self._overflow_tips()) + ".")

    # ------------------------------------------------------------------ evaluation
    def eval_one_batch(self, sample, eval_losses, return_output=False):
        """Upstream's evaluation step, run in the current phase's precision
        (the precision the model was last trained in); losses in float32."""
        sample = self._prepare(sample)
        out = self._forward(sample)
        if self.data_processor is not None:
            out, sample = self.data_processor.postprocess(out, sample)
        self.n_samples += _loss_terms(sample)
        losses = {name: _call_loss(loss, out, sample, f"eval_losses[{name!r}]") for name, loss in eval_losses.items()}
        return losses, (out if return_output else None)

    def eval_one_batch_autoreg(self, sample, eval_losses, return_output=False, max_steps=None):
        """Upstream's autoregressive evaluation (a rollout of up to ``max_steps`` steps, the data
        processor preparing each step's input with ``step=t``; without ``max_steps`` until it
        returns None), each step's forward in the current phase's precision as in
        :meth:`eval_one_batch`; losses in float32, averaged over the steps."""
        losses = dict.fromkeys(eval_losses, 0.0)
        limit = math.inf if max_steps is None else max_steps
        steps, out, counted = 0, None, False
        while sample is not None and steps < limit:
            if self.data_processor is not None:
                sample = self.data_processor.preprocess(sample, step=steps)
            else:
                sample = self._prepare(sample)
            if sample is None:
                break
            out = self._forward(sample)
            if self.data_processor is not None:
                out, sample = self.data_processor.postprocess(out, sample, step=steps)
            if not counted:  # the batch's samples, once per rollout
                self.n_samples += _loss_terms(sample)
                counted = True
            for name, loss in eval_losses.items():
                losses[name] += _call_loss(loss, out, sample, f"eval_losses[{name!r}]")
            steps += 1
        losses = {name: value / steps for name, value in losses.items()}  # upstream's ZeroDivisionError for none
        return losses, (out if return_output else None)

    def evaluate(self, loss_dict, data_loader, log_prefix="", epoch=None, mode="single_step", max_steps=None):
        """Upstream's ``evaluate``, ``mode`` checked first: upstream evaluates nothing for another
        value and ends in an UnboundLocalError after moving the model (``"autoregressive"``, its
        ``train`` docstring's spelling, included: a ValueError names the mode meant)."""
        _check_eval_mode("mode", mode)
        if mode == "autoregression":
            _check_rollout_ends(self, max_steps, "mode='autoregression' with max_steps=None")
        errors = super().evaluate(loss_dict, data_loader, log_prefix=log_prefix, epoch=epoch, mode=mode,
                                  max_steps=max_steps)
        # the samples each metric is the mean over: evaluate_all weighs the ranks' shards by them
        self._eval_sample_counts.update(dict.fromkeys(errors, self.n_samples))
        return errors

    def evaluate_all(self, epoch, eval_losses, test_loaders, eval_modes, max_autoregressive_steps=None):
        self._eval_sample_counts = {}
        data_parallel = isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        # under DDP upstream's "Eval:" line (verbose) would print this rank's shard: printed below, over all ranks
        verbose, self.verbose = self.verbose, self.verbose and not data_parallel
        try:
            metrics = super().evaluate_all(epoch=epoch, eval_losses=eval_losses, test_loaders=test_loaders,
                                           eval_modes=eval_modes, max_autoregressive_steps=max_autoregressive_steps)
        finally:
            self.verbose = verbose
        if data_parallel:
            # each rank evaluated its shard: report (and pick save_best by) the mean over every rank's
            # samples, so every rank makes the same checkpoint decision
            metrics = distributed.mean_over_ranks(metrics, self._eval_sample_counts)
            if self.verbose:
                self.log_eval(epoch=epoch, eval_metrics=metrics)
        non_finite = []
        for key, value in metrics.items():
            if torch.is_tensor(value) or isinstance(value, (int, float)):
                if not math.isfinite(float(value)):
                    non_finite.append(key)
                if self.history and self.history[-1]["epoch"] == epoch:
                    self.history[-1][key] = float(value)
        if non_finite:
            warnings.warn(f"Epoch {epoch}: evaluation metrics {non_finite} are inf/NaN although the weights are "
                          "finite: " + self.non_finite_metrics_cause("the saved model",
                                                                     "neuralop-mp eval RUN_DIR --precision full"),
                          RuntimeWarning, stacklevel=2)
        return metrics

    def non_finite_metrics_cause(self, what, full_precision):
        """Why finite weights gave inf/NaN test metrics in this trainer's precision, and what to try
        (the end of one sentence): in float16, an overflow and the phase's remedies, or evaluating
        ``what`` in full precision (``full_precision``: how); else an overflow of float32 or a test
        sample that is not finite. The one text of the trainer's warning and of ``neuralop-mp eval``."""
        if torch.float16 in self._half_dtypes():
            # finite test data overflow float16 as easily as training data do
            return (f"computing in float16 ({self._phase_text()}), the model probably overflows on a test sample. "
                    "Try: " + "; ".join(self._overflow_tips()) + f"; or evaluate {what} in full precision "
                    f"({full_precision}).")
        return ("the model's outputs overflow float32, or a test sample (input or target) is not finite. The "
                "built-in loaders refuse non-finite files (neuralop_mp.data.file_checks); check your test data.")

    # ------------------------------------------------------------------ train / checkpoint
    def train(self, train_loader, test_loaders, optimizer, scheduler, regularizer=None,
              training_loss=None, eval_losses=None, eval_modes=None, save_every=None, save_best=None,
              save_dir="./ckpt", resume_from_dir=None, max_autoregressive_steps=None):
        """Upstream's ``Trainer.train`` (same arguments and return value). A resumed run
        continues at the epoch after the checkpoint, in that epoch's phase.

        A call without ``resume_from_dir`` is a new run, however many calls came before:
        it starts at epoch 0 in the schedule's first phase, with a new :attr:`history` (so
        ``save_best`` compares its own epochs only), a loss scaler back at its initial scale
        with its counters at 0 (its settings kept), no phase and no "auto" decision carried
        over (:attr:`auto_decisions` empty). What it keeps is what the caller hands over, as
        with upstream's Trainer: the model's weights (and, without a schedule, the layers'
        precision), and the optimizer, scheduler and regularizer objects as given, with
        their states. ``loss_scaling="auto"`` is decided again for the model as it is now
        (``update_in_backward`` refused where it scales). A resume starts from the same
        blank state and loads the checkpoint's.

        ``scheduler`` may be None: no learning-rate schedule (upstream's loop would fail
        on it after the first epoch); such a run saves no ``scheduler.pt`` and resumes
        with None. With ``save_every`` / ``save_best`` the scheduler and regularizer given
        need ``state_dict()``, and with ``resume_from_dir`` ``load_state_dict()``.

        Raises
        ------
        ValueError
            Before anything is trained or loaded, for a ``save_best`` that is not one of
            the evaluation keys ``"{test loader}_{eval loss}"`` (upstream: a bare
            AssertionError), and for ``eval_modes`` with a key that is no ``test_loaders``
            key (upstream: that loader silently single-step) or a mode other than
            ``"single_step"`` and ``"autoregression"`` (upstream: an UnboundLocalError at
            the first evaluation); and for ``update_in_backward`` where the run now scales
            its loss (a model switched to float16 after the trainer was built).
        TypeError
            Before anything is trained or loaded, for an optimizer, scheduler or regularizer
            that a checkpoint to save or resume cannot hold (no ``state_dict`` /
            ``load_state_dict``; upstream: an AttributeError after the first epoch)."""
        if save_best is not None:
            _check_save_best(save_best, test_loaders, eval_losses)
        _check_eval_modes(eval_modes, test_loaders)
        rollouts = sorted(str(key) for key, mode in (eval_modes or {}).items() if mode == "autoregression")
        if rollouts:
            _check_rollout_ends(self, max_autoregressive_steps,
                                f"eval_modes for {', '.join(rollouts)} with max_autoregressive_steps=None")
        _check_checkpointable(optimizer=optimizer, scheduler=scheduler, regularizer=regularizer or None,
                              saves=save_every is not None or save_best is not None,
                              resumes=resume_from_dir is not None)
        if save_every is not None or save_best is not None:
            checkpointing.check_save_dir(save_dir)  # fail now, not after the first epoch
        self._warn_schedule_overrides_layer_half_type()
        self._decide_loss_scaling()
        self._start_new_run()
        if resume_from_dir is not None:
            # resume here rather than inside upstream's train(), so a finished run is detected
            self.optimizer, self.scheduler, self.regularizer = optimizer, scheduler, regularizer or None
            self.save_best = save_best
            self.resume_state_from_dir(resume_from_dir)
            self.resumed_finished_run = self.start_epoch >= self.n_epochs
            if self.resumed_finished_run:
                if self.on_finished_run is None:
                    # the epochs the checkpoint holds: a run resumed with fewer asks for fewer
                    warnings.warn(f"The checkpoint in {resume_from_dir} already finished all "
                                  f"{self.start_epoch} epochs; nothing to train.", stacklevel=2)
                else:
                    self.on_finished_run(resume_from_dir)
                if self.history:  # the model in the precision the run finished in, as after training
                    # (a checkpoint of a longer run resumed with fewer epochs: this run's last epoch)
                    self._enter_phase(min(self.history[-1]["epoch"], self.n_epochs - 1), measure=False)
                return self._last_epoch_metrics()
        use_distributed = self.use_distributed
        if use_distributed and distributed.is_distributed():
            distributed.check_same_on_all_ranks(
                n_epochs=self.n_epochs, start_epoch=self.start_epoch,
                batches_per_epoch=len(train_loader) if hasattr(train_loader, "__len__") else None,
                precision_schedule=None if self.precision_schedule is None else str(self.precision_schedule),
                # the skip stop is decided from the shared skip count: the same limit, or one rank stops alone
                max_consecutive_skips=self.max_consecutive_skips)
            # wrapped here: upstream's train() would pass device_ids=[rank], which DDP refuses on CPUs
            self.model = distributed.wrap_model(self.model, self.device)
            self.use_distributed = False
        # the weights DDP leaves to _guarded_step, found once per run rather than at every step
        self._self_averaged = distributed.self_averaged_parameters(self.model)
        hooks = None
        if self.update_in_backward:
            from ..optim.update_in_backward import enable_update_in_backward

            hooks = enable_update_in_backward(
                optimizer, loss_scaling=self.loss_scaling if self.scaler.enabled else False,
                distributed=distributed.data_parallel(self.model, use_distributed))
        self._loop_saves_best = save_best is not None  # see TrainingStateCheckpoints._beats_earlier_epochs
        try:
            # the step meter's finalizers may swallow a Ctrl-C: it is raised again at the next batch
            with catching_interrupts(), self._checking_epoch_loops(optimizer):
                return super().train(train_loader, test_loaders, optimizer, scheduler, regularizer=regularizer,
                                     training_loss=training_loss, eval_losses=eval_losses, eval_modes=eval_modes,
                                     save_every=save_every, save_best=save_best, save_dir=save_dir,
                                     resume_from_dir=None, max_autoregressive_steps=max_autoregressive_steps)
        finally:
            self._loop_saves_best = False
            self.use_distributed = use_distributed
            self._close_bar()
            if hooks is not None:
                hooks.remove()

    def _start_new_run(self):
        """The state a run starts from (``__init__``, and each ``train()`` call, which forgets
        what an earlier call left; see :meth:`train`): everything but the settings and the
        caller's objects."""
        self.start_epoch = 0  # a resume moves it forward only (resume_state_from_dir)
        self.history = []
        self.resumed_finished_run = False
        self.phase_index, self.phase = None, None  # set by the first epoch's on_epoch_start
        # without a schedule upstream's flag decides; with one, each phase
        self.autocast_enabled = bool(self.mixed_precision) and self.precision_schedule is None
        # a decision left here would be taken for the new run's phase of the same index
        self._reset_auto_precision()
        # the scaler in place (a caller may hold it, or have set its settings): settings kept
        self.scaler.reset()
        self._epoch_stats = self._fresh_epoch_stats()  # filled by train_one_batch / _guarded_step
        # (setting, saved_bytes, step_peak_bytes) of the last epoch the CPU meters watched: a run measures anew
        self._measured_memory = None
        self._note_n_modes_at_start()  # a resume tells the modes the run grew from a model built otherwise

    def _warn_schedule_overrides_layer_half_type(self):
        """Warn when the schedule will run the spectral layers in another half type than the
        one they were explicitly built with: each phase writes the trainer's ``half_dtype``
        to them. Not where they agree, or where the layers say "auto"."""
        schedule = self.precision_schedule
        if (schedule is None or not self.has_mixed_precision_layers or all(p.mode == "full" for p in schedule)
                or distributed.rank() != 0):  # every rank builds alike: rank 0 alone says it, as it logs
            return
        try:
            layers = get_precision(self.model)[1]
        except ValueError:  # layers in different precisions: no one type to name
            return
        if layers == "auto" or resolve_half_dtype(layers, self.device) == self.autocast_dtype:
            return
        resolved = f" ({dtype_name(self.autocast_dtype)} on {torch.device(self.device).type})" \
            if self.half_dtype == "auto" else ""
        warnings.warn(
            f"The precision schedule {str(schedule)!r} runs the spectral layers in the trainer's "
            f"half_dtype={self.half_dtype!r}{resolved}, not in the {layers} the model's layers were built with: "
            f"each phase sets the trainer's half type on them. To keep {layers}, pass half_dtype={layers!r} to "
            "MixedPrecisionTrainer.",
            UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))

    def _last_epoch_metrics(self):
        """What upstream's ``train`` returns (the last epoch's training values and evaluation
        metrics), from the history of a run that already finished; ``avg_lasso_loss`` is
        not in the history and is None."""
        last = self.history[-1] if self.history else {}
        metrics = dict(train_err=last.get("train_err"), avg_loss=last.get("train_loss"), avg_lasso_loss=None,
                       epoch_train_time=last.get("epoch_time"))
        metrics.update({key: value for key, value in last.items() if key not in _EPOCH_RECORD_KEYS})
        return metrics

    def precision_state_dict(self, rng_states=None, cuda_rng_states=None):
        """The saved training state (:meth:`~.resume.TrainingStateCheckpoints.precision_state_dict`)
        with ``data_processor``: the trainer's data processor as ``data_processor.pt`` records it
        (:func:`~neuralop_mp.run_folder.data_processor_state`; None for one it cannot record), so that
        ``neuralop-mp eval`` of the checkpoint encodes and decodes as the training did, not as a
        config's defaults would (upstream's ``train_darcy.py`` trains on raw outputs; the ``darcy``
        config encodes them). A resume does not read it: the caller hands the processor over."""
        from ..run_folder import data_processor_state

        state = super().precision_state_dict(rng_states, cuda_rng_states)
        state["data_processor"] = data_processor_state(getattr(self, "data_processor", None))
        return state

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
