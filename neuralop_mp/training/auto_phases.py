"""``fno_block_precision="auto"`` under a precision schedule: re-decided at every phase boundary.

A schedule says which precision each phase *may* use; "auto" says whether the data
allows it. At the first epoch of every phase that is not "full", before its first
batch, the trainer measures the model (in the phase's half type and stabilizer) on the
first ``auto_precision_batches`` batches of the training loader and runs the phase in
the more precise of the phase's mode and the cheapest mode the measurement accepts
(:func:`neuralop_mp.diagnose.auto.recheck_phase`): a "half" phase may run "mixed" or
"full", a "mixed" phase "full", never cheaper than the schedule says. Overflow risk
(float16 without tanh) forces "full". The phase's autocast setting is kept as it is.
"full" phases are not measured.

The batches are drawn with the global RNG forked, so the run's data order is the one
it would have without the re-check. Each epoch's record in ``history`` carries
``auto_precision`` (the phase's mode, the mode run, the epoch of the check, the
schedule); the epoch of a check also carries ``auto_check``, the measurement behind it
(per layer: mode, precision error, bound). A run resumed in the middle of a phase takes
the decision of that phase from its history instead of measuring again, when the
decision was made for the same phase of the same schedule; a resume with another
schedule measures again. In a
data-parallel run every rank measures its own shard and all run the most precise
decision of any rank.

References
----------
.. [1] Tu, R. et al. (2024). "Guaranteed Approximation Bounds for Mixed-Precision
       Neural Operators". ICLR 2024, arXiv:2307.15034.
"""
from ..layers.layer_precision import set_fixed_precision
from ..vocabulary import check_int_at_least


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
        self.auto_decisions = []  # one per check: what was measured and decided
        # the current phase's decision: {"phase", "phase_mode", "mode", "checked_at_epoch", "schedule"}
        self._auto = None
        self._auto_check = None  # the full decision of a check made this epoch, for its record
        self._epoch_loader = None

    def _auto_decision_from_history(self, phase_index):
        """The decision a resumed run made for ``phase_index`` before it was saved, if made
        for the same phase: a resume with another schedule may give the index to another
        phase, whose mode (or stabilizer, autocast) the old decision was not measured for.
        Records without ``schedule`` (older checkpoints) are matched by the phase's mode."""
        schedule = str(self.precision_schedule)
        for entry in reversed(self.history):
            record = entry.get("auto_precision")
            if record and entry.get("phase") == phase_index:
                if record.get("phase_mode") == self.phase.mode and record.get("schedule", schedule) == schedule:
                    return dict(record)
                return None
        return None

    def _apply_auto_precision(self, epoch, measure=True):
        """Called right after the phase's policy is applied at the start of ``epoch``.
        ``measure=False`` (no epoch to train, no loader): a phase the history holds no
        decision for runs its own mode instead of being checked."""
        self._auto_check = None
        phase_mode = self.phase.mode
        if self._auto is None or self._auto["phase"] != self.phase_index:
            record = self._auto_decision_from_history(self.phase_index)
            if record is None:
                record = {"phase": self.phase_index, "phase_mode": phase_mode, "mode": phase_mode,
                          "checked_at_epoch": None, "schedule": str(self.precision_schedule)}
                if phase_mode != "full" and measure:
                    record.update(self._check_phase(epoch, phase_mode))
            self._auto = record
        if self._auto["mode"] != phase_mode:
            set_fixed_precision(self._auto_model(), self._auto["mode"])

    def _auto_model(self):
        return getattr(self.model, "module", self.model)  # the model inside DDP

    def _check_phase(self, epoch, phase_mode):
        from ..diagnose.auto import agree_across_ranks, loader_inputs, recheck_phase

        if self._epoch_loader is None:
            raise RuntimeError("auto_precision: the training loader of this epoch is unknown; the re-check runs "
                               "inside MixedPrecisionTrainer.train_one_epoch.")
        model = self._auto_model()
        # drawn with the RNG forked: the run's shuffling stays as without the check
        xs = loader_inputs(model, self._epoch_loader, self.data_processor, n_batches=self.auto_precision_batches)
        # _apply_auto_precision switches the layers, once, from the agreed decision
        decision = agree_across_ranks(model, recheck_phase(model, xs, phase_mode, apply=False), apply=False)
        mode = decision["fno_block_precision"]
        self._auto_check = {"epoch": epoch, "phase": self.phase_index, **decision}
        self.auto_decisions.append(self._auto_check)
        return {"mode": mode, "checked_at_epoch": epoch}

    def _auto_records(self):
        """The entries this epoch adds to its ``history`` record."""
        if not self.auto_precision or self._auto is None:
            return {}
        records = {"auto_precision": dict(self._auto)}
        if self._auto_check is not None:
            records["auto_check"] = self._auto_check
        return records
