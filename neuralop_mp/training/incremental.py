"""IncrementalMixedPrecisionTrainer: upstream's incremental FNO training with the plugin's trainer.

Upstream's ``IncrementalFNOTrainer`` grows the Fourier modes of ``model.fno_blocks.convs[0]``
after each epoch (its loss-gap or gradient algorithm). It cannot be combined with
:class:`~neuralop_mp.training.trainer.MixedPrecisionTrainer` by subclassing both: with the
plugin's class first, upstream's constructor runs without the incremental arguments and
asserts; the other way round, the plugin's arguments (``precision_schedule``...) are
refused. This class takes both sets of arguments and runs upstream's algorithms themselves
(its ``train_one_epoch``, ``incremental_update``, ``loss_gap`` and ``grad_explained``) on the
loss of the plugin's guarded epoch. Their per-run state (``loss_list``, ``grad_iter``,
``accumulated_grad``) is saved with the training state, beside the layers' ``n_modes``, and so is
the resolution step of upstream's ``IncrementalDataProcessor`` where it is the data processor, so a
resumed run continues as the uninterrupted one would.
"""
import torch
from neuralop.data.transforms.data_processors import IncrementalDataProcessor
from neuralop.models import FNO
from neuralop.training.incremental import IncrementalFNOTrainer

from ..vocabulary import check_int_at_least, check_real, normalize_flag
from ..wrapped_module import unwrap
from .trainer import MixedPrecisionTrainer, _shadowing

# what a run of upstream's algorithms accumulates (created by them on first use, but loss_list)
_RUN_STATE = ("grad_iter", "accumulated_grad")
# where upstream's IncrementalDataProcessor is in its resolution schedule: attributes it steps once per
# epoch gap, which no state dict holds (a resume would start its schedule over at the coarsest)
_RESOLUTION_STATE = ("current_index", "current_sub", "current_res", "current_logged_epoch")


class IncrementalMixedPrecisionTrainer(IncrementalFNOTrainer, MixedPrecisionTrainer):
    """:class:`~neuralop_mp.MixedPrecisionTrainer` that grows the FNO's Fourier modes during
    training as upstream's ``IncrementalFNOTrainer`` does.

    Parameters
    ----------
    model : FNO or TFNO
        Upstream's or the plugin's (``MixedPrecisionFNO`` / ``MixedPrecisionTFNO``); its
        ``fno_blocks.convs[0]`` grows up to its ``max_n_modes``.
    n_epochs : int
    incremental_grad : bool, default False
        Upstream's gradient algorithm: grow when the explained variance of the accumulated
        spectral weights falls below ``incremental_grad_eps``.
    incremental_loss_gap : bool, default False
        Upstream's loss-gap algorithm: grow when the epoch's training loss changed by at most
        ``incremental_loss_eps``. Exactly one of the two algorithms must be on.
    incremental_grad_eps : float, default 0.001
        Finite, >= 0.
    incremental_buffer : int, default 5
        Modes left out of the explained variance; >= 0.
    incremental_max_iter : int, default 1
        Stored as upstream does (neither algorithm reads it); >= 1.
    incremental_grad_max_iter : int, default 10
        Epochs the gradient algorithm accumulates before it decides; >= 1.
    incremental_loss_eps : float, default 0.001
        Finite, >= 0.
    **kwargs
        Every other argument of :class:`~neuralop_mp.MixedPrecisionTrainer` (upstream
        ``Trainer``'s, ``precision_schedule``, ``half_dtype``, ``loss_scaling``...).

    Notes
    -----
    The loss-gap algorithm sees the epoch's training loss as the plugin's epoch computes it
    (non-finite batches left out, averaged over ranks under DDP). A model wrapped in DDP
    grows the model it wraps. Each ``train()`` call without ``resume_from_dir`` is a new run
    (as for the plugin's trainer): the algorithms' state starts afresh, the model's modes are
    the ones it has. A checkpoint holds every module's ``n_modes``, the algorithms' state and
    an ``IncrementalDataProcessor``'s resolution step, and a resume sets them back; one saved
    before they were saved resumes with the model's own modes and a fresh state.
    """

    # model and n_epochs also by position, as upstream's IncrementalFNOTrainer takes them (its Trainer does not)
    def __init__(self, model, n_epochs, *, incremental_grad=False, incremental_loss_gap=False,
                 incremental_grad_eps=0.001, incremental_buffer=5, incremental_max_iter=1,
                 incremental_grad_max_iter=10, incremental_loss_eps=0.001, **kwargs):
        grad = normalize_flag(incremental_grad, "incremental_grad")
        loss_gap = normalize_flag(incremental_loss_gap, "incremental_loss_gap")
        if grad == loss_gap:  # upstream asserts, naming neither
            raise ValueError(f"Invalid incremental_loss_gap={incremental_loss_gap!r} with incremental_grad="
                             f"{incremental_grad!r}; allowed values: exactly one of them True (the loss-gap or "
                             "the gradient algorithm).")
        settings = dict(
            incremental_grad_eps=check_real("incremental_grad_eps", incremental_grad_eps, low=0),
            incremental_buffer=check_int_at_least("incremental_buffer", incremental_buffer, 0),
            incremental_max_iter=check_int_at_least("incremental_max_iter", incremental_max_iter, 1),
            incremental_grad_max_iter=check_int_at_least("incremental_grad_max_iter", incremental_grad_max_iter, 1),
            incremental_loss_eps=check_real("incremental_loss_eps", incremental_loss_eps, low=0))
        if not isinstance(unwrap(model), FNO):  # upstream's algorithms grow model.fno_blocks.convs[0]
            raise TypeError(f"Invalid model: a {type(unwrap(model)).__name__}; allowed values: an FNO or TFNO "
                            "(upstream's or neuralop_mp's MixedPrecisionFNO / MixedPrecisionTFNO), whose "
                            "fno_blocks.convs[0] the incremental algorithms grow.")
        # the constructor after upstream's in the MRO (MixedPrecisionTrainer's, or that of a class placed
        # between them): upstream's own would refuse the plugin's arguments
        super(IncrementalFNOTrainer, self).__init__(model=model, n_epochs=n_epochs, **kwargs)
        self.incremental_grad, self.incremental_loss_gap = grad, loss_gap
        self.incremental = True
        self.__dict__.update(settings)

    def _start_new_run(self):
        """The plugin's new run (:meth:`MixedPrecisionTrainer.train`), with the algorithms' state
        afresh: no losses seen, nothing accumulated."""
        super()._start_new_run()
        self.loss_list = []
        for name in _RUN_STATE:
            self.__dict__.pop(name, None)

    def incremental_update(self, loss=None):
        """Upstream's update, on the model a DDP wrapper holds (its algorithms read
        ``self.model.fno_blocks``)."""
        with _shadowing(self, "model", unwrap(self.model)):
            return IncrementalFNOTrainer.incremental_update(self, loss)

    def precision_state_dict(self, *args, **kwargs):
        """The plugin's training state plus the algorithms' (``incremental``: ``loss_list``,
        ``grad_iter``, ``accumulated_grad``, None where not made yet; ``data_processor``: an
        ``IncrementalDataProcessor``'s resolution step)."""
        state = super().precision_state_dict(*args, **kwargs)
        accumulated = self.__dict__.get("accumulated_grad")
        state["incremental"] = dict(
            loss_list=[float(loss) for loss in self.loss_list],
            grad_iter=self.__dict__.get("grad_iter"),
            # upstream's sum keeps the weights' autograd history: the values alone are its state
            accumulated_grad=None if accumulated is None else accumulated.detach().clone())
        if isinstance(self.data_processor, IncrementalDataProcessor):
            state["incremental"]["data_processor"] = {name: getattr(self.data_processor, name)
                                                      for name in _RESOLUTION_STATE}
        return state

    def _restore_run_state(self, state):
        """Set the algorithms' state (and the data processor's resolution step) a resume read back."""
        super()._restore_run_state(state)
        saved = state.get("incremental")
        if saved is None:  # a checkpoint of another trainer, or from before this was saved
            return
        self.loss_list = list(saved["loss_list"])
        for name in _RUN_STATE:
            value = saved.get(name)
            if value is None:
                self.__dict__.pop(name, None)
            else:
                self.__dict__[name] = value.to(self.device) if torch.is_tensor(value) else value
        resolution = saved.get("data_processor")
        if resolution is not None and isinstance(self.data_processor, IncrementalDataProcessor):
            for name, value in resolution.items():
                setattr(self.data_processor, name, value)
