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

import torch

from ..optim.adam_math import as_real
from ..optim.nonfinite import finite_flags
from ..vocabulary import check_int_at_least, check_real, normalize_flag
from .distributed import any_rank
from .guarded_step import TrainingStopped

# Added after the first release: optional in loaded states (older checkpoints lack them).
_OPTIONAL_STATE = {"min_scale": 1.0, "max_floor_hits": 10, "floor_hits": 0}
_STATE_KEYS = (
    "scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker",
    "enabled", "skipped_steps", "consecutive_skips", "total_steps",
)


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
        or its model, which no scale fixes. Reaching the floor warns once.
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
        init_scale = check_real("init_scale", init_scale, low=0, low_open=True)
        growth_factor = check_real("growth_factor", growth_factor, low=1, low_open=True)
        backoff_factor = check_real("backoff_factor", backoff_factor, 0, 1, low_open=True, high_open=True)
        growth_interval = check_int_at_least("growth_interval", growth_interval)
        enabled = normalize_flag(enabled, "enabled")
        min_scale = check_real("min_scale", min_scale, 0, init_scale, low_open=True,
                               allowed=f"numbers in (0, init_scale={init_scale!r}]")
        max_floor_hits = check_int_at_least("max_floor_hits", max_floor_hits)
        self.min_scale = min_scale
        self.max_floor_hits = max_floor_hits
        self.floor_hits = 0
        self.init_scale = init_scale
        self.enabled = enabled
        self.scale_value = init_scale if self.enabled else 1.0
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.total_steps = 0
        self.last_step_skipped = False
        self._found_inf = None  # per-step: None until the gradients were checked
        self._loss_skip = False  # per-step: skipped by skip_step (a non-finite loss), not by a gradient

    # ------------------------------------------------------------------ per step
    def get_scale(self):
        """The current loss scale (1.0 when disabled)."""
        return self.scale_value if self.enabled else 1.0

    def scale(self, loss):
        """Multiply ``loss`` by the current scale (no-op when disabled)."""
        return loss * self.scale_value if self.enabled else loss

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

        Returns
        -------
        bool
            True when a non-finite gradient was found.
        """
        if self._found_inf is not None:
            raise RuntimeError("unscale_() was already called for this step; call update() first.")
        self._found_inf = self._inspect(optimizer, 1.0 / self.scale_value if self.enabled else None)
        return self._found_inf

    def _inspect(self, optimizer, inverse):
        """Whether a gradient is non-finite; multiplies them by ``inverse`` unless None."""
        grads = list(self._grads(optimizer))
        if inverse is not None:
            for grad in grads:
                as_real(grad).mul_(inverse)
        # one read back to the host per device (on a GPU every read waits for it)
        return not all(finite_flags(grads))

    def skip_step(self):
        """Mark the current step as non-finite without looking at gradients
        (e.g. when the loss itself is not finite and backward was not run).

        The step is skipped and counted, but :meth:`update` leaves the scale, its growth
        count and its floor count as they are: the scale multiplies only the backward pass,
        so it cannot have caused a non-finite loss, and lowering it would not prevent the
        next one (one bad sample per epoch would walk it down to the floor). Under data
        parallelism a step that any rank skipped this way leaves the scale on every rank."""
        self._found_inf = True
        self._loss_skip = True

    def step(self, optimizer, *args, **kwargs):
        """Unscale (if not done yet), then run ``optimizer.step`` unless a gradient is
        non-finite. Returns True if the optimizer stepped, False if the step was skipped.

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
        if self._found_inf is None:
            if self.enabled and getattr(optimizer, "supports_grad_scale", False):
                self._found_inf = self._inspect(optimizer, None)
                kwargs = dict(kwargs, grad_scale=self.scale_value)
            else:
                self.unscale_(optimizer)
        self._found_inf = any_rank(self._found_inf)
        if self._found_inf:
            # every rank backs off or none: a second collective, on skipped steps only (every rank is here)
            self._loss_skip = any_rank(self._loss_skip)
        self.total_steps += 1
        if self._found_inf:
            self.skipped_steps += 1
            self.consecutive_skips += 1
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
            # (a flag left set would step them scaled and unchecked)
            self._found_inf, self._loss_skip = None, False
            raise
        self.consecutive_skips = 0
        self.last_step_skipped = False
        return True

    def update(self):
        """Adjust the scale after a step: back off on a step skipped for non-finite
        gradients, grow after ``growth_interval`` finite steps in a row; a step skipped for
        a non-finite loss (:meth:`skip_step`) changes nothing. Clears the per-step state."""
        found_inf, loss_skip = bool(self._found_inf), self._loss_skip
        self._found_inf, self._loss_skip = None, False
        if not self.enabled or (found_inf and loss_skip):
            return
        if found_inf:
            self.growth_tracker = 0
            if self.scale_value * self.backoff_factor >= self.min_scale:
                self.scale_value *= self.backoff_factor
                return
            self.scale_value = self.min_scale
            self.floor_hits += 1
            if self.floor_hits == 1:
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
        else:
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
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise KeyError(f"ComplexGradScaler state is missing {missing}.")
        self.scale_value = float(state["scale"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self.growth_tracker = int(state["growth_tracker"])
        self.enabled = bool(state["enabled"])
        self.skipped_steps = int(state["skipped_steps"])
        self.consecutive_skips = int(state["consecutive_skips"])
        self.total_steps = int(state["total_steps"])
        self.min_scale = float(state.get("min_scale", _OPTIONAL_STATE["min_scale"]))
        self.max_floor_hits = int(state.get("max_floor_hits", _OPTIONAL_STATE["max_floor_hits"]))
        self.floor_hits = int(state.get("floor_hits", _OPTIONAL_STATE["floor_hits"]))
        self._found_inf, self._loss_skip = None, False

    def __repr__(self):
        return (f"ComplexGradScaler(scale={self.get_scale():g}, enabled={self.enabled}, "
                f"skipped_steps={self.skipped_steps})")
