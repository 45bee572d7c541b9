"""The trainer of ``neuralop-mp train``: keeps the best model and says how long the run will take.

It adds two things to :class:`~neuralop_mp.MixedPrecisionTrainer` through its
template methods:

- after each evaluation, when the epoch is the best so far by ``best_metric`` (e.g.
  ``"16_l2"``; :func:`neuralop_mp.train_report.best_epoch`: the lowest finite value, the
  earliest of equal ones), the model is written into the run folder with upstream's
  ``save_checkpoint`` (:func:`neuralop_mp.run_folder.save_model`); the earlier values
  are taken from the history, so a resumed run keeps comparing against the epochs
  before the kill;
- after the first few training batches it logs a first estimate of the run's
  duration (training only, from those batches' times), and after the first epoch it
  trains in this process, the expected time of the rest of the run, from that epoch's
  training and evaluation times.
"""
import time

from .run_folder import BEST_MODEL, check_run_folder_present, save_model
from .train_report import best_epoch
from .training import distributed
from .training.trainer import MixedPrecisionTrainer


def format_duration(seconds):
    """``75`` -> ``"1.2 min"``; ``20`` -> ``"20 s"``; ``5400`` -> ``"1.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class RunFolderTrainer(MixedPrecisionTrainer):
    """:class:`~neuralop_mp.MixedPrecisionTrainer` plus best-model files and a duration estimate.

    Parameters
    ----------
    run_dir : str or Path, optional
        Where the best model goes (nothing is written without it).
    best_metric : str, optional
        Evaluation key to minimise, ``"{resolution}_{loss}"``; None: no best model.
    log : callable, optional
        Receives the duration estimate (default: nothing is logged).
    on_checkpoint : callable, optional
        Called with ``save_dir`` after each saved training state (the attribute of the
        same name may be changed or set to None during training).
    before_checkpoint : callable, optional
        Called with ``save_dir`` just before each save of the training state (an
        attribute, as ``on_checkpoint``).
    **kwargs
        As :class:`~neuralop_mp.MixedPrecisionTrainer`.
    """

    def __init__(self, *, run_dir=None, best_metric=None, log=None, on_checkpoint=None, before_checkpoint=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self.on_checkpoint = on_checkpoint
        self.before_checkpoint = before_checkpoint
        self.best_metric = best_metric
        self.log = log
        self.best_files = None
        self._estimated = False
        self._epoch_started = None
        # (epoch, batches per epoch) while the first estimate is pending; False once done or
        # impossible (no log, a loader without a length, fewer than three batches per epoch)
        self._early_estimate = None
        self._early_started = None

    #: training batches timed (after one warm-up batch) for the estimate logged at the start
    EARLY_ESTIMATE_BATCHES = 3

    def train_one_epoch(self, epoch, train_loader, training_loss):
        if self._early_estimate is None:
            n_batches = len(train_loader) if hasattr(train_loader, "__len__") else 0
            self._early_estimate = self.log is not None and n_batches > 2 and (epoch, n_batches)
        return super().train_one_epoch(epoch, train_loader, training_loss)

    def train_one_batch(self, idx, sample, training_loss):
        # read at the start of a batch: upstream's loop runs the previous batch's backward
        # and optimizer step after train_one_batch returns
        if self._early_estimate:
            self._time_early_batches(idx)
        return super().train_one_batch(idx, sample, training_loss)

    def _time_early_batches(self, idx):
        """Batch 0 is a warm-up (allocations, first-call overheads, the optimizer's first
        step); whole batches 1..k are timed, from the start of batch 1 to that of batch k + 1."""
        epoch, n_batches = self._early_estimate
        if idx == 1:
            self._early_started = time.perf_counter()
            return
        timed = min(self.EARLY_ESTIMATE_BATCHES, n_batches - 2)
        if idx < timed + 1:
            return
        per_batch = (time.perf_counter() - self._early_started) / timed
        epochs = self.n_epochs - epoch
        # three significant digits: a small model's batch takes milliseconds ("0.00 s" said nothing)
        # on several ranks each runs its shard's batches, all at once: the count is one rank's
        each = " per rank" if distributed.is_distributed() else ""
        self.log(f"[neuralop-mp] {per_batch:.3g} s per training batch: expect about "
                 f"{format_duration(per_batch * n_batches * epochs)} of training for {epochs} epoch(s) "
                 f"of {n_batches} batches{each}, plus evaluation (refined after the first epoch)")
        self._early_estimate = False

    def on_epoch_start(self, epoch):
        super().on_epoch_start(epoch)
        self._epoch_started = time.perf_counter()

    def evaluate_all(self, epoch, eval_losses, test_loaders, eval_modes, max_autoregressive_steps=None):
        eval_started = time.perf_counter()
        metrics = super().evaluate_all(epoch, eval_losses, test_loaders, eval_modes,
                                       max_autoregressive_steps=max_autoregressive_steps)
        if not self._estimated and self.log is not None and self._epoch_started is not None:
            self._estimated = True
            self.log(self.duration_message(epoch, eval_started - self._epoch_started,
                                           time.perf_counter() - eval_started))
        if self.best_metric is not None and self.run_dir is not None:
            self._save_if_best(epoch, metrics)
        return metrics

    def checkpoint(self, save_dir):
        """The training state after every epoch, without the trainer's per-epoch "saved" line
        (the summary names the run folder); ``before_checkpoint`` and ``on_checkpoint`` run around it.
        A run folder removed meanwhile stops the run (:func:`~neuralop_mp.run_folder.check_run_folder_present`)."""
        if self.run_dir is not None:
            check_run_folder_present(self.run_dir)
        if self.before_checkpoint is not None:
            self.before_checkpoint(save_dir)
        verbose, self.verbose = self.verbose, False
        try:
            super().checkpoint(save_dir)
        finally:
            self.verbose = verbose
        if self.on_checkpoint is not None:
            self.on_checkpoint(save_dir)

    def duration_message(self, epoch, train_seconds, eval_seconds):
        """The expected remaining time after ``epoch``, given one epoch's training and evaluation time."""
        remaining = range(epoch + 1, self.n_epochs)
        n_evals = sum(1 for e in remaining if e % self.eval_interval == 0)
        total = len(remaining) * train_seconds + n_evals * eval_seconds
        return (f"[neuralop-mp] epoch {epoch} took {train_seconds + eval_seconds:.1f} s "
                f"(training {train_seconds:.1f} s, evaluation {eval_seconds:.1f} s): expect about "
                f"{format_duration(total)} for the remaining {len(remaining)} epoch(s)")

    def _save_if_best(self, epoch, metrics):
        value = metrics.get(self.best_metric)
        if value is None:
            raise KeyError(f"best_metric={self.best_metric!r} is not an evaluation key; "
                           f"keys: {', '.join(sorted(metrics))}.")
        # this epoch's value against the history's earlier ones (a resumed run's included), by
        # the rule that names the run's best epoch
        earlier = [h for h in self.history if h.get("epoch") != epoch]
        best = best_epoch([*earlier, {"epoch": epoch, self.best_metric: float(value)}], self.best_metric)
        if best is not None and best["epoch"] == epoch:
            check_run_folder_present(self.run_dir)
            self.best_files = save_model(self.model, self.run_dir, BEST_MODEL)
            self.best_files["epoch"] = epoch
