"""Dynamic loss scaling that handles complex gradients, plus a non-finite step guard.

Why not ``torch.amp.GradScaler``: its unscale kernel
(``_amp_foreach_non_finite_check_and_unscale_``) is not implemented for complex
dtypes (PyTorch issue 58228; still true for the CPU kernel of torch 2.13, see
``tests/test_loss_scaling.py::test_torch_gradscaler_rejects_complex_grads``), and
the spectral weights of an FNO are complex. Here every gradient is unscaled and
checked through ``torch.view_as_real``, which sees both the real and the imaginary
part, so an inf hiding in an imaginary part is found too.

An optimizer that declares ``supports_grad_scale`` (:class:`~neuralop_mp.TensorGRaD`)
is handed the scale by :meth:`ComplexGradScaler.step` and divides each gradient by
it after up-casting to fp32, so 16-bit gradients (complex32 spectral weights) are
never unscaled in place, where the small ones would underflow to zero again. It is
also told that the gradients were found finite (``gradients_checked=True``), so it
does not check them a second time.

Under data parallelism (``torch.distributed`` initialised, more than one rank) the
skip decision is all-reduced in :meth:`ComplexGradScaler.step`: a non-finite loss or
gradient on one rank skips the step, and backs the scale off, on every rank.

The finiteness check runs even when scaling is disabled (bfloat16 and float32
need no scaling: bf16 has float32's exponent range): a non-finite gradient never
reaches the weights in any precision.

References
----------
.. [1] Micikevicius, P. et al. (2018). "Mixed Precision Training". ICLR 2018,
       arXiv:1710.03740 (dynamic loss scaling).
.. [2] PyTorch issue 58228, "GradScaler: unscale not implemented for ComplexFloat".
"""
import warnings

from ..optim.adam_math import as_real
from ..optim.nonfinite import all_tensors_finite
from ..vocabulary import check_int_at_least, check_real, normalize_flag
from .distributed import any_rank, rank
from .guarded_step import TrainingStopped

# Added after the first release: optional in loaded states (older checkpoints lack them).
_OPTIONAL_STATE = {"min_scale": 1.0, "max_floor_hits": 10, "floor_hits": 0}
_STATE_KEYS = (
    "scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker",
    "enabled", "skipped_steps", "consecutive_skips", "total_steps",
)
_UNSCALED, _STEPPED = "unscaled", "stepped"  # an optimizer's stage in the current iteration


def _checked_settings(init_scale, growth_factor, backoff_factor, growth_interval, enabled, min_scale,
                      max_floor_hits):
    """The scaler's settings, checked (errors name the value and the allowed ones), in
    the constructor's order; for the constructor and for a loaded state alike."""
    init_scale = check_real("init_scale", init_scale, low=0, low_open=True)
    growth_factor = check_real("growth_factor", growth_factor, low=1, low_open=True)
    backoff_factor = check_real("backoff_factor", backoff_factor, 0, 1, low_open=True, high_open=True)
    growth_interval = check_int_at_least("growth_interval", growth_interval)
    enabled = normalize_flag(enabled, "enabled")
    min_scale = check_real("min_scale", min_scale, 0, init_scale, low_open=True,
                           allowed=f"numbers in (0, init_scale={init_scale!r}]")
    max_floor_hits = check_int_at_least("max_floor_hits", max_floor_hits)
    return init_scale, growth_factor, backoff_factor, growth_interval, enabled, min_scale, max_floor_hits


class ComplexGradScaler:
    """Dynamic loss scaler for real and complex parameters, with step skipping.

    Usage mirrors ``torch.amp.GradScaler``::

        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)      # optional, e.g. before gradient clipping
        stepped = scaler.step(optimizer)
        scaler.update()

    Parameters
    ----------
    init_scale : float, default 2.0**16
        Initial loss scale.
    growth_factor : float, default 2.0
        Factor applied to the scale after ``growth_interval`` consecutive finite steps.
    backoff_factor : float, default 0.5
        Factor applied to the scale after a step with non-finite gradients (not after one
        skipped for a non-finite loss, :meth:`skip_step`).
    growth_interval : int, default 2000
        Number of consecutive finite steps before the scale grows.
    enabled : bool, default True
        Scale the loss. When False the scale stays 1 and never changes, but
        :meth:`step` still skips steps whose gradients are not finite.
    min_scale : float, default 1.0
        Floor of the scale. Scales below 1 would shrink gradients, not protect them
        from underflow: a run that keeps overflowing at scale 1 overflows in its data
        or its model, which no scale fixes. Reaching the floor warns once (under data
        parallelism rank 0 alone warns: every rank's scale is the same).
    max_floor_hits : int, default 10
        After this many non-finite steps at the floor (without the scale growing in
        between), :meth:`update` raises a :class:`~.guarded_step.TrainingStopped` (a
        RuntimeError) instead of letting every later
        step be skipped or every gradient underflow.

    Attributes
    ----------
    skipped_steps : int
        Steps skipped since construction (or the loaded state).
    consecutive_skips : int
        Steps skipped in a row; reset by a finite step.
    last_step_skipped : bool
        Whether the most recent step was skipped.
    """

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True, min_scale=1.0, max_floor_hits=10):
        (init_scale, growth_factor, backoff_factor, growth_interval, enabled, min_scale,
         max_floor_hits) = _checked_settings(init_scale, growth_factor, backoff_factor, growth_interval,
                                             enabled, min_scale, max_floor_hits)
        self.min_scale = min_scale
        self.max_floor_hits = max_floor_hits
        self.init_scale = init_scale
        self.enabled = enabled
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.reset()

    def reset(self):
        """Back to the scale and counters the scaler was built with (``init_scale``, or 1
        when disabled; every counter 0), its settings kept: what a new training run starts
        from."""
        self.scale_value = self.init_scale if self.enabled else 1.0
        self.growth_tracker = self.floor_hits = 0
        self.skipped_steps = self.consecutive_skips = self.total_steps = 0
        self.last_step_skipped = False
        self._new_iteration()

    def _new_iteration(self):
        """Forget the per-iteration state (what :meth:`update` clears)."""
        # per optimizer (keyed by id, as torch's GradScaler): {"stage": _UNSCALED or _STEPPED,
        # "found_inf": bool}; each optimizer is unscaled, checked and stepped on its own
        self._per_optimizer = {}
        self._loss_skip = False  # skipped by skip_step (a non-finite loss), not by a gradient
        self._skips_before = None  # consecutive_skips before this iteration's first step; None until then
        self._iteration_skipped = False  # the iteration was already counted as skipped

    # ------------------------------------------------------------------ per step
    def get_scale(self):
        """The current loss scale (1.0 when disabled)."""
        return self.scale_value if self.enabled else 1.0

    def scale(self, outputs):
        """Multiply ``outputs`` by the current scale (no-op when disabled): a tensor, or a
        list or tuple of them (nested too), as ``torch.amp.GradScaler.scale`` takes."""
        if not self.enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            scaled = [self.scale(item) for item in outputs]
            return type(outputs)(*scaled) if hasattr(outputs, "_fields") else type(outputs)(scaled)
        return outputs * self.scale_value

    @staticmethod
    def _grads(optimizer):
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    if param.grad.is_sparse:
                        raise NotImplementedError("ComplexGradScaler does not handle sparse gradients.")
                    yield param.grad

    def unscale_(self, optimizer):
        """Divide the gradients of ``optimizer``'s parameters by the scale, in place,
        and record whether any of them (real or imaginary part) is inf or NaN.

        Once per optimizer and iteration, before its :meth:`step`; with several
        optimizers each one is unscaled and checked on its own.

        Returns
        -------
        bool
            True when a non-finite gradient was found.
        """
        state = self._per_optimizer.get(id(optimizer))
        if state is not None:
            raise RuntimeError(
                "unscale_() was already called on this optimizer since the last update(); call update() first."
                if state["stage"] == _UNSCALED else
                "unscale_() is being called after step() on this optimizer; unscale_ before step(), then update().")
        found_inf = self._inspect(optimizer, 1.0 / self.scale_value if self.enabled else None)
        self._per_optimizer[id(optimizer)] = dict(stage=_UNSCALED, found_inf=found_inf)
        return found_inf

    def _inspect(self, optimizer, inverse):
        """Whether a gradient is non-finite; multiplies them by ``inverse`` unless None."""
        grads = list(self._grads(optimizer))
        if not grads and self.enabled and not self._loss_skip:
            # as torch's GradScaler ("No inf checks were recorded"): stepping nothing would count as a
            # finite step and grow the scale. Disabled, no gradients is what update-in-backward leaves.
            raise RuntimeError(
                f"{type(optimizer).__name__} has no gradients to check: call scaler.scale(loss).backward() "
                "first (or skip_step() when the loss is not finite), then scaler.step(optimizer).")
        if inverse is not None:
            for grad in grads:
                as_real(grad).mul_(inverse)
        # one fused reduction and one read back to the host per device (on a GPU every read waits for it)
        return not all_tensors_finite(grads)

    @property
    def loss_skipped(self):
        """Whether this iteration's step is skipped for a non-finite loss (:meth:`skip_step`), not
        for a gradient: this process's own until :meth:`step` skips, then any rank's (agreed in a
        process group, so every rank reads the same); False again after :meth:`update`."""
        return self._loss_skip

    def skip_step(self):
        """Mark the current step as non-finite without looking at gradients
        (e.g. when the loss itself is not finite and backward was not run).

        The step is skipped and counted, but :meth:`update` leaves the scale, its growth
        count and its floor count as they are: the scale multiplies only the backward pass,
        so it cannot have caused a non-finite loss, and lowering it would not prevent the
        next one (one bad sample per epoch would walk it down to the floor). Under data
        parallelism a step that any rank skipped this way leaves the scale on every rank.
        Every optimizer's :meth:`step` then skips, until :meth:`update`."""
        self._loss_skip = True

    def step(self, optimizer, *args, **kwargs):
        """Unscale (if not done yet), then run ``optimizer.step`` unless a gradient is
        non-finite. Returns True if the optimizer stepped, False if the step was skipped.

        Once per optimizer and iteration (a second call before :meth:`update` raises). With
        several optimizers each one's gradients are checked on its own, as with
        ``torch.amp.GradScaler``: one with a non-finite gradient is skipped, and the
        iteration counts as one skipped step (:attr:`total_steps` counts iterations).

        An optimizer with ``supports_grad_scale`` gets ``grad_scale=<scale>`` instead
        of in-place unscaled gradients (unless :meth:`unscale_` was called first).

        In a process group of several ranks this is a collective: every rank calls
        it once per step, and all of them skip when any one found a non-finite value.

        A ``closure`` (which computes the gradients again, unscaled) is refused while
        scaling is enabled, as torch's ``GradScaler`` refuses it: the optimizer would
        divide its fresh gradients by the scale, and the check would have seen the old
        ones. Disabled, it is passed on as before."""
        # torch's optimizers take the closure first; another optimizer's first argument may be no closure
        closure = kwargs.get("closure", args[0] if args and callable(args[0]) else None)
        if closure is not None and self.enabled:
            raise ValueError(
                f"Invalid closure={closure!r} with loss scaling enabled: the closure's gradients are not scaled, "
                "and they come after the check for non-finite values. Step as "
                "`scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()`, or disable scaling.")
        state = self._per_optimizer.get(id(optimizer))
        if state is not None and state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called on this optimizer since the last update(); "
                               "call scaler.update() once per iteration, after stepping each optimizer once.")
        if self._loss_skip:
            found_inf = True  # the gradients of a non-finite loss are not looked at
        elif state is not None:
            found_inf = state["found_inf"]
        elif self.enabled and getattr(optimizer, "supports_grad_scale", False):
            found_inf = self._inspect(optimizer, None)
            kwargs = dict(kwargs, grad_scale=self.scale_value)
        else:
            found_inf = self.unscale_(optimizer)
        found_inf = any_rank(found_inf)
        if found_inf:
            # every rank backs off or none: a second collective, on skipped steps only (every rank is here)
            self._loss_skip = any_rank(self._loss_skip)
        self._per_optimizer[id(optimizer)] = dict(stage=_STEPPED, found_inf=found_inf)
        if self._skips_before is None:  # this iteration's first step
            self._skips_before = self.consecutive_skips
            self.total_steps += 1
        if found_inf:
            if not self._iteration_skipped:
                self._iteration_skipped = True
                self.skipped_steps += 1
                self.consecutive_skips = self._skips_before + 1
                self.last_step_skipped = True
            return False
        if getattr(optimizer, "supports_grad_scale", False) and closure is None:
            # every gradient was just found finite here: the optimizer need not check again (a closure's
            # gradients, computed after, are its own to check)
            kwargs = dict(kwargs, gradients_checked=True)
        try:
            optimizer.step(*args, **kwargs)
        except BaseException:
            # this step is over: the next one must unscale and check its own gradients
            # (a state left recorded would step them scaled and unchecked)
            self._new_iteration()
            raise
        if not self._iteration_skipped:  # another optimizer's skip this iteration stays counted
            self.consecutive_skips = 0
            self.last_step_skipped = False
        return True

    def update(self, grow=True):
        """Adjust the scale after a step: back off on a step skipped for non-finite
        gradients (of any optimizer), grow after ``growth_interval`` finite steps in a row;
        a step skipped for a non-finite loss (:meth:`skip_step`) changes nothing. Clears the
        per-iteration state. Raises RuntimeError when nothing was stepped, unscaled or
        skipped since the last update.

        ``grow=False``: a finite step leaves the scale and its count of finite steps as they
        are (a non-finite one still backs off). The trainer passes it in a phase where nothing
        is computed or stored in float16: nothing there can overflow, so the scale would double
        without limit, and the next float16 phase skip one step per doubling to come back
        down. ``torch.amp.GradScaler.update`` has no such switch: it grows after every
        ``growth_interval`` finite steps."""
        if not self._per_optimizer and not self._loss_skip:
            raise RuntimeError("update() found no step() since the last update(): call "
                               "scaler.scale(loss).backward() and scaler.step(optimizer) (or skip_step()) first.")
        loss_skip = self._loss_skip
        found_inf = loss_skip or any(state["found_inf"] for state in self._per_optimizer.values())
        self._new_iteration()
        if not self.enabled or loss_skip:
            return
        if found_inf:
            self.growth_tracker = 0
            if self.scale_value * self.backoff_factor >= self.min_scale:
                self.scale_value *= self.backoff_factor
                return
            self.scale_value = self.min_scale
            self.floor_hits += 1
            # every rank's scale and count are the same (the skip decisions are all-reduced in step()):
            # rank 0 alone says it, as it alone logs
            if self.floor_hits == 1 and rank() == 0:
                warnings.warn(
                    f"The loss scale reached its floor {self.min_scale:g} and a step was still not finite: "
                    "the data or the model overflows (not the gradients' range). Training stops after "
                    f"{self.max_floor_hits} such steps. Check the data for inf/NaN, use bfloat16, or enable "
                    "the tanh stabilizer.", RuntimeWarning, stacklevel=2)
            if self.floor_hits >= self.max_floor_hits:
                raise TrainingStopped(
                    f"Loss scaling gave up: {self.floor_hits} steps were not finite at the scale floor "
                    f"{self.min_scale:g} ({self.skipped_steps} skipped of {self.total_steps} steps). The data or "
                    "the model overflows in float16: check the data for inf/NaN (neuralop_mp.data reports "
                    "them per sample), use half_dtype='bfloat16', enable the tanh stabilizer, encode the "
                    "inputs and outputs, train in full precision, or lower the learning rate.")
        elif grow:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.growth_tracker = 0
                self.floor_hits = 0  # the scale recovered: the earlier overflows were transient

    def set_enabled(self, enabled):
        """Turn scaling on (from ``init_scale``) or off (scale 1), keeping the counters."""
        enabled = bool(enabled)
        if enabled != self.enabled:
            self.enabled = enabled
            self.scale_value = self.init_scale if enabled else 1.0
            self.growth_tracker = 0
            self.floor_hits = 0

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Plain numbers only, loadable with ``torch.load(weights_only=True)``."""
        state = {key: getattr(self, key) for key in _STATE_KEYS if key != "scale"}
        state["scale"] = self.scale_value
        state.update({key: getattr(self, key) for key in _OPTIONAL_STATE})
        return state

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s numbers, checked as the constructor checks its
        arguments (nothing is changed when one is refused; ``min_scale`` at most this
        scaler's ``init_scale``). ``init_scale`` itself stays this scaler's: it is the scale
        :meth:`set_enabled` restarts from, which a resumed run chooses (the trainer's resume
        says so when it turns scaling on)."""
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise KeyError(f"ComplexGradScaler state is missing {missing}.")
        state = dict(_OPTIONAL_STATE, **state)
        (_, growth_factor, backoff_factor, growth_interval, enabled, min_scale,
         max_floor_hits) = _checked_settings(self.init_scale, state["growth_factor"], state["backoff_factor"],
                                             state["growth_interval"], state["enabled"], state["min_scale"],
                                             state["max_floor_hits"])
        scale = check_real("scale", state["scale"], low=0, low_open=True)
        counters = {key: check_int_at_least(key, state[key], 0) for key in (
            "growth_tracker", "skipped_steps", "consecutive_skips", "total_steps", "floor_hits")}
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.enabled, self.min_scale, self.max_floor_hits = enabled, min_scale, max_floor_hits
        self.scale_value = scale
        for key, value in counters.items():
            setattr(self, key, value)
        self._new_iteration()

    def __repr__(self):
        return (f"ComplexGradScaler(scale={self.get_scale():g}, enabled={self.enabled}, "
                f"skipped_steps={self.skipped_steps})")
