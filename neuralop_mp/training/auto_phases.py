"""``fno_block_precision="auto"`` under a precision schedule: re-decided at every phase boundary.

A schedule says which precision each phase *may* use; "auto" says whether the data
allows it. At the first epoch of every phase that is not "full", before its first
batch, the trainer measures the model (in the phase's half type and stabilizer) on the
first ``auto_precision_batches`` batches of the training loader and runs the phase in
the more precise of the phase's mode and the cheapest mode the measurement accepts
(:func:`neuralop_mp.diagnose.auto.recheck_phase`): a "half" phase may run "mixed" or
"full", a "mixed" phase "full", never cheaper than the schedule says. Overflow risk
(float16 without tanh) forces "full". A phase that autocasts keeps autocast only where
the same measurement accepts it (the model's output under autocast, by the rule of
:func:`neuralop_mp.diagnose.recommend.recommend`; :func:`~neuralop_mp.diagnose.auto.decide_autocast`),
or where its autocast scope is "spectral" (autocast then rounds nothing outside the
spectral layers); a phase decided "full" runs without autocast. "full" phases are not
measured.

The batches are drawn with the global RNG forked, so the run's data order is the one
it would have without the re-check. Each epoch's record in ``history`` carries
``auto_precision`` (the phase's mode, the mode run, whether it autocasts, the epoch of
the check, the schedule, the conditions measured under); the epoch of a check also
carries ``auto_check``, the measurement behind it (per layer: mode, precision error,
bound; the autocast check and its note). A run resumed in the middle of a phase takes
the decision of that phase from its history instead of measuring again, when the
decision was made for the same phase of the same schedule and measured under the same
conditions (``conditions``: half type, stabilizer, autocast and its scope, spectral
weight storage, device type); otherwise it measures again and says why (a warning, and
``recheck_reason`` in the check's record), e.g. "half type changed from bfloat16 to
float16". Records without ``conditions`` (older checkpoints) are measured again. In a
data-parallel run every rank measures its own shard and all run the most precise
decision of any rank.

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision
       Neural Operators". ICLR 2024, arXiv:2307.15034.
"""
import os
import warnings

from ..caller_frames import stacklevel_outside
from ..layers.autocast_scope import get_autocast_scope
from ..layers.layer_precision import get_spectral_weight_dtype, set_fixed_precision
from ..vocabulary import check_int_at_least, dtype_name, resolve_autocast_scope
from . import distributed

# what a phase's measurement depends on besides the phase and the schedule, in words
_CONDITION_NAMES = {"half_dtype": "half type", "stabilizer": "stabilizer", "autocast": "autocast",
                    "autocast_scope": "autocast scope", "spectral_weight_dtype": "spectral weight storage",
                    "device_type": "device"}


class AutoPrecisionPhases:
    """Mixin for :class:`~neuralop_mp.training.trainer.MixedPrecisionTrainer`: the "auto"
    re-check at phase boundaries. Needs ``precision_schedule``, ``phase``, ``phase_index``,
    ``history``, ``model`` and ``data_processor``."""

    def _init_auto_precision(self, auto_precision, auto_precision_batches):
        if not isinstance(auto_precision, bool):
            raise TypeError(f"Invalid auto_precision={auto_precision!r}; allowed values: True, False.")
        check_int_at_least("auto_precision_batches", auto_precision_batches)
        if auto_precision and self.precision_schedule is None:
            raise ValueError("auto_precision=True re-decides the phases of a precision_schedule, and none was "
                             "given; pass one (e.g. 'paper' or 'mixed'), or decide once before training with "
                             "neuralop_mp.set_precision(model, 'auto', calibration=train_loader).")
        if auto_precision and not self.has_mixed_precision_layers:
            raise ValueError(f"auto_precision=True needs MixedPrecisionSpectralConv layers; "
                             f"{type(self.model).__name__} has none.")
        self.auto_precision = auto_precision
        self.auto_precision_batches = auto_precision_batches
        self._epoch_loader = None
        self._reset_auto_precision()

    def _reset_auto_precision(self):
        """No decision yet: a new run (each ``train()`` call) measures its phases again;
        a resume takes its phases' decisions from the history it loads."""
        self.auto_decisions = []  # one per check: what was measured and decided
        # the current phase's decision: {"phase", "phase_mode", "mode", "autocast", "checked_at_epoch",
        # "schedule", "conditions"}
        self._auto = None
        self._auto_check = None  # the full decision of a check made this epoch, for its record

    def _auto_conditions(self):
        """What the current phase's measurement depends on besides its mode: the half type
        the layers and autocast compute in, the stabilizer, whether the phase autocasts and
        where (the scope on the model's device), the spectral weights' storage, the device."""
        model = self._auto_model()
        device_type = next(model.parameters()).device.type
        return {"half_dtype": dtype_name(self.autocast_dtype),
                "stabilizer": self.phase.stabilizer_for(self.autocast_dtype),
                "autocast": self.phase.autocast,
                "autocast_scope": resolve_autocast_scope(get_autocast_scope(model), device_type),
                "spectral_weight_dtype": get_spectral_weight_dtype(model),
                "device_type": device_type}

    def _auto_decision_from_history(self, phase_index, conditions):
        """``(record, changed)``: the decision a resumed run made for ``phase_index`` before it
        was saved, if made for the same phase, and ``changed``: None when it was measured
        under ``conditions``, else what differs, in words. A resume with another schedule
        may give the index to another phase, whose mode (or stabilizer, autocast) the old
        decision was not measured for: no record. Records without ``schedule`` (older
        checkpoints) are matched by the phase's mode; those without ``conditions`` count as
        measured under other conditions."""
        for entry in reversed(self.history):
            record = entry.get("auto_precision")
            if record and entry.get("phase") == phase_index:
                # an older checkpoint's text (shares to 12 digits) is this schedule too
                if record.get("phase_mode") == self.phase.mode and (
                        "schedule" not in record or self.precision_schedule.written_as(record["schedule"])):
                    return dict(record), changed_conditions(record.get("conditions"), conditions)
                return None, None
        return None, None

    def _apply_auto_precision(self, epoch, measure=True):
        """Called right after the phase's policy (and autocast) is applied at the start of
        ``epoch``. ``measure=False`` (no epoch to train, no loader): a phase the history holds
        no decision for runs its own mode instead of being checked, and one it holds a
        decision for runs that decision (the precision the run finished in), whatever the
        conditions now."""
        self._auto_check = None
        phase_mode = self.phase.mode
        if self._auto is None or self._auto["phase"] != self.phase_index:
            conditions = self._auto_conditions()
            record, changed = self._auto_decision_from_history(self.phase_index, conditions)
            if record is not None and changed is not None and measure:
                record = None  # measured under other conditions: measure again
            if record is None:
                record = {"phase": self.phase_index, "phase_mode": phase_mode, "mode": phase_mode,
                          "autocast": self.phase.autocast, "checked_at_epoch": None,
                          "schedule": str(self.precision_schedule), "conditions": conditions}
                if phase_mode != "full" and measure:
                    record.update(self._check_phase(epoch, phase_mode, conditions, changed))
            self._auto = record
            # the phase's first epoch here: the layers are in the phase's mode (measured in it); its
            # later epochs find the decision in place (_switch_layers_to_phase builds it)
            if record["mode"] != phase_mode:
                set_fixed_precision(self._auto_model(), record["mode"])
        self.autocast_enabled = self._auto.get("autocast", self.phase.autocast)

    def _decided_mode(self):
        """The mode "auto" decided for the current phase, once it has (the phase's later epochs);
        None before, or without auto_precision: the phase's own mode applies."""
        if self.auto_precision and self._auto is not None and self._auto["phase"] == self.phase_index:
            return self._auto["mode"]
        return None

    def _auto_model(self):
        return getattr(self.model, "module", self.model)  # the model inside DDP

    def _check_phase(self, epoch, phase_mode, conditions, changed=None):
        """Measure the phase; ``changed``: why a decision in the history is not reused."""
        from ..diagnose.auto import agree_across_ranks, decide_autocast, loader_inputs, recheck_phase

        if self._epoch_loader is None:
            raise RuntimeError("auto_precision: the training loader of this epoch is unknown; the re-check runs "
                               "inside MixedPrecisionTrainer.train_one_epoch.")
        model = self._auto_model()
        # drawn with the RNG forked: the run's shuffling stays as without the check
        xs = loader_inputs(model, self._epoch_loader, self.data_processor, n_batches=self.auto_precision_batches)
        # _apply_auto_precision switches the layers, once, from the agreed decision
        decision = agree_across_ranks(model, recheck_phase(model, xs, phase_mode, apply=False), apply=False)
        decision = decide_autocast(decision, conditions["autocast"], conditions["autocast_scope"])
        self._auto_check = {"epoch": epoch, "phase": self.phase_index, **decision}
        if changed is not None:
            self._auto_check["recheck_reason"] = changed
            if distributed.rank() == 0:  # every rank re-checks alike: rank 0 alone says it
                warnings.warn(f"fno_block_precision='auto': phase {self.phase_index + 1} {str(self.phase)!r} "
                              f"re-checked at epoch {epoch}: {changed}.", UserWarning,
                              stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
        self.auto_decisions.append(self._auto_check)
        return {"mode": decision["fno_block_precision"], "autocast": decision["autocast"], "checked_at_epoch": epoch}

    def _auto_records(self):
        """The entries this epoch adds to its ``history`` record."""
        if not self.auto_precision or self._auto is None:
            return {}
        records = {"auto_precision": dict(self._auto)}
        if self._auto_check is not None:
            records["auto_check"] = self._auto_check
        return records


def changed_conditions(recorded, current):
    """None when a decision measured under ``recorded`` conditions holds under ``current``;
    else what changed, in words, e.g. "half type changed from bfloat16 to float16" (also the
    words of a plain "auto" run resumed: :func:`neuralop_mp.train_pipeline.resumed_auto_decision`)."""
    if not isinstance(recorded, dict):
        return "the recorded decision does not say what it was measured with (an older checkpoint)"
    changes = [f"{_CONDITION_NAMES.get(key, key)} changed from {recorded.get(key)} to {value}"
               for key, value in current.items() if recorded.get(key) != value]
    return "; ".join(changes) or None
