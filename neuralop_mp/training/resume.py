"""Checkpoint and resume of :class:`~neuralop_mp.training.trainer.MixedPrecisionTrainer`.

What the trainer adds to upstream's ``checkpoint`` / ``resume_state_from_dir``: the
schedule position, loss scaler, history, RNG state and the model's Fourier modes
(``precision_state.pt``), a
verified, atomically written folder (:mod:`~neuralop_mp.training.checkpointing`),
resume at the epoch after the saved one, and a loss scaler that follows the
resuming run's precision.
"""
import math
import os
import shlex
import warnings

import torch
import neuralop.mpu.comm as comm

from . import checkpointing, distributed
from ..caller_frames import stacklevel_outside
from ..models.mixed_precision_models import current_n_modes, set_n_modes
from ..optim.settings import BOOKKEEPING_KEYS, LAYOUT_KEYS
from ..optim.tensorgrad import TensorGRaD

# param-group entries that are no setting a resume could change: the parameters, the labels and what
# torch's LR schedulers and SWA write (the optimizer's bookkeeping keys: "lr" decays; "initial_lr", the
# rate a schedule starts from, is compared instead, as is upstream's "tensorgrad" switch) and torch's
# implementation flags
_GROUP_NON_SETTINGS = (BOOKKEEPING_KEYS - {"initial_lr", "tensorgrad"}) | {
    "params", "lr", "foreach", "fused", "capturable", "differentiable"}
# rewritten each step by a cyclic scheduler (OneCycleLR, CyclicLR), which marks the group with "base_momentum"
_CYCLED_MOMENTUM = ("betas", "momentum")
#: the entries of torch's scheduler state dicts that are constructor settings (counters such as
#: last_epoch, _step_count, best or num_bad_epochs move while training and are not compared)
SCHEDULER_SETTINGS = (
    "step_size", "gamma", "milestones", "factor", "total_iters", "start_factor", "end_factor", "power", "T_max",
    "eta_min", "T_0", "T_mult", "mode", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps",
    "max_lrs", "total_size", "step_ratio", "total_steps", "cycle_momentum", "use_beta1",
)


def _plain(value):
    # tuples as lists (a config gives lists where torch keeps tuples), one-element tensors as numbers
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return value


def same_setting(a, b):
    """Whether two values of a setting are equal: a tuple equals the list of its items, a
    one-element tensor its number."""
    a, b = _plain(a), _plain(b)
    try:
        return bool(a == b)
    except (RuntimeError, TypeError, ValueError):  # tensors of several elements compare element-wise
        return (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape
                and torch.equal(a.cpu(), b.cpu()))


def given_and_saved(changed):
    """``"key=<given> given, <saved> saved; ..."`` of ``{key: (given, saved)}``: how a resume names the
    settings it was given otherwise than the checkpoint holds them."""
    return "; ".join(f"{key}={given!r} given, {saved!r} saved" for key, (given, saved) in changed.items())


def changed_settings(optimizer, scheduler, states, group_keys=None, scheduler_keys=SCHEDULER_SETTINGS):
    """The settings that saved states hold otherwise than this run's optimizer and scheduler,
    which loading the states would replace with the saved ones (torch's ``load_state_dict``).

    Parameters
    ----------
    optimizer, scheduler
        This run's, nothing loaded into them yet.
    states : dict
        The saved states by role (``check_states`` of
        :func:`~neuralop_mp.training.checkpointing.load_training_files`), their parameter
        layout already checked.
    group_keys : iterable of str, optional
        The param-group keys to compare; None: every key but those no setting (the
        parameters, ``lr``, what schedulers write, torch's implementation flags).
    scheduler_keys : iterable of str
        The scheduler state entries to compare.

    Returns
    -------
    list of (group, setting, given, saved)
        ``group`` the param-group index, None for the scheduler; a setting only one
        side holds (one a newer torch adds) is left out.
    """
    changed = []
    state = states.get("optimizer")
    if state is not None:
        for index, (saved, now) in enumerate(zip(state["param_groups"], optimizer.param_groups)):
            keys = group_keys
            if keys is None:
                cycled = "base_momentum" in saved or "base_momentum" in now
                keys = [key for key in now if key not in _GROUP_NON_SETTINGS
                        and not (cycled and key in _CYCLED_MOMENTUM)]
            changed += [(index, key, now[key], saved[key]) for key in keys
                        if key in saved and key in now and not same_setting(saved[key], now[key])]
    state = states.get("scheduler")
    if isinstance(state, dict):  # anything else is refused, naming the file, by the load that follows
        now = scheduler.state_dict()
        changed += [(None, key, now[key], state[key]) for key in scheduler_keys
                    if key in state and key in now and not same_setting(state[key], now[key])]
    return changed


def laid_out_keys(optimizer, state, changed):
    """Those of the param-group settings in ``changed`` (:func:`changed_settings`) that laid out
    the saved state of their group's parameters, so TensorGRaD refuses them set back after the
    resume (:data:`~neuralop_mp.optim.settings.LAYOUT_KEYS`).

    TensorGRaD's own rule (:meth:`~neuralop_mp.optim.TensorGRaD.laid_out_keys`): a group none
    of whose parameters has a saved state has nothing laid out, and in a group of plain (AdamW)
    moments only (none compressed when saved, none compressed with the given settings) only
    ``adam_convention`` lays them out.
    """
    keys = set()
    for index in sorted({group for group, key, _, _ in changed if group is not None and key in LAYOUT_KEYS}):
        saved_group, given_group = state["param_groups"][index], optimizer.param_groups[index]
        # torch's load_state_dict pairs the saved parameters with this run's in order
        stepped = [(p, state["state"][saved]) for p, saved in zip(given_group["params"], saved_group["params"])
                   if state["state"].get(saved)]
        keys |= TensorGRaD.laid_out_keys(index, given_group, stepped,
                                         [key for group, key, _, _ in changed if group == index])
    return keys


def restore_rng_states(state):
    """Set the RNG states a checkpoint's ``precision_state.pt`` records.

    The same number of ranks continues each rank's CPU stream and its own CUDA device's;
    another number restarts from rank 0's. A run saved with more CUDA devices visible than
    this one has restores the devices it has (torch's ``set_rng_state_all`` would index
    devices that are not there).
    """
    by_rank = state.get("rng_states_by_rank")
    world_size = distributed.world_size()
    if by_rank is not None and len(by_rank) == world_size:
        torch.set_rng_state(by_rank[distributed.rank()])
    else:
        torch.set_rng_state(state["rng_state"])
    if not torch.cuda.is_available():
        return
    cuda_by_rank = state.get("cuda_rng_states_by_rank")
    if cuda_by_rank is not None and len(cuda_by_rank) == world_size:
        torch.cuda.set_rng_state(cuda_by_rank[distributed.rank()])  # this rank's current device
    elif "cuda_rng_state" in state:
        for device, device_state in enumerate(state["cuda_rng_state"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


def train_launch(world, local=None):
    """How a command starts ``neuralop-mp train`` on ``world`` ranks, ``local`` of them a node:
    plainly on one, else the torchrun form of docs/distributed.md (on several nodes with the
    rendezvous options of the run's own launch). The interrupt line of ``train`` and the warning
    of a resume on another rank count both give it."""
    if world <= 1:
        return "neuralop-mp train"
    if not local or local == world:  # one node
        return f"torchrun --standalone --nproc_per_node {world} -m neuralop_mp.cli train"
    return (f"torchrun --nnodes {world // local} --nproc_per_node {local} <your rendezvous options> "
            "-m neuralop_mp.cli train")


def _warn_built_other_n_modes(built, state, save_dir):
    """Warn when the model a resume is given was built with other Fourier modes than the saved run
    started with (``n_modes_at_start``): the code that builds it was changed, not the modes grown by
    the run (incremental training), and the resume sets the saved modes over the built ones. One
    warning naming every such module; nothing for a module that already has the modes restored (the
    run's own model resumed in the same process: nothing is overwritten), nor for a record without
    ``n_modes_at_start`` (saved before it was)."""
    start, saved = state.get("n_modes_at_start"), state.get("n_modes") or {}
    if not isinstance(start, dict):
        return
    changed = [name for name in start if name in built and built[name] != list(start[name])
               and built[name] != list(saved.get(name, start[name]))]
    if not changed:
        return
    moves = "; ".join(f"{name or 'the model'} built {built[name]}, the run started at {list(start[name])}, "
                      f"restored {list(saved.get(name, start[name]))}" for name in changed)
    warnings.warn(f"Resuming {save_dir} with a model built with other Fourier modes (n_modes) than the saved run "
                  f"started with: the checkpoint's are set over them ({moves}). To train with the modes built, "
                  "start a new run; to continue the saved one, build the model as it was built.",
                  UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))


def saved_world_size(state):
    """The number of ranks that trained the last epoch a checkpoint's ``precision_state.pt`` saved (its
    history's ``world_size``, else the count of its per-rank RNG states); None where neither says."""
    history = state.get("history") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    if isinstance(last.get("world_size"), int):
        return last["world_size"]
    by_rank = state.get("rng_states_by_rank")
    return len(by_rank) if by_rank is not None else None


def _warn_other_world_size(state, save_dir):
    """Warn when this resume runs on another number of ranks than the checkpoint's last epoch: the
    weights and optimizer state are the saved ones, but the shards, the global batch and the RNG
    streams are not, so the run continues differently from the one it resumes (docs/distributed.md)."""
    saved, now = saved_world_size(state), distributed.world_size()
    if saved is None or saved == now:
        return
    history = state.get("history") or []
    epoch = history[-1].get("epoch") if history and isinstance(history[-1], dict) else None
    # the history records the ranks, not how they were spread over nodes: the one-node form as an example;
    # `train --resume` takes the run folder, which holds the checkpoint folder (a script's own: its launch)
    run_dir = checkpointing.run_folder_of(save_dir)
    # (--standalone is one node already)
    same = (f"{train_launch(saved)} --resume {shlex.quote(str(run_dir))}" + (" on one node" if saved > 1 else "")
            if run_dir is not None else f"torchrun --standalone --nproc_per_node {saved} YOUR_SCRIPT.py")
    warnings.warn(
        f"Resuming {save_dir} on {now} rank(s), but its last saved epoch{'' if epoch is None else f' ({epoch})'} "
        f"ran on {saved}: the shards and the global batch (batch_size x ranks) change and every rank starts from "
        f"rank 0's RNG state, so the run continues differently from one on {saved} rank(s) (docs/distributed.md). "
        f"To continue it as it ran, launch it on {saved} rank(s) again, e.g. {same}.", UserWarning, stacklevel=3)


class TrainingStateCheckpoints:
    """Mixin for a neuralop ``Trainer`` subclass with ``precision_schedule``, ``scaler``,
    ``history``, ``half_dtype`` and ``_scaling_enabled()``."""

    #: None, or a callable that :meth:`resume_state_from_dir` runs on the saved states it read,
    #: before loading them (``check_states`` of :func:`~neuralop_mp.training.checkpointing.load_training_files`)
    check_resume_states = None

    def _note_n_modes_at_start(self):
        """Note the Fourier modes the model has as a run starts (``n_modes_at_start`` of the training
        state; a resume replaces them with the saved run's)."""
        self._n_modes_at_start = current_n_modes(self.model)

    def precision_state_dict(self, rng_states=None, cuda_rng_states=None):
        """Schedule position, scaler, history, RNG state and the model's Fourier modes
        (weights-only loadable).

        ``n_modes``: every module's ``n_modes`` (:func:`~neuralop_mp.models.mixed_precision_models.current_n_modes`,
        by module name): no state dict entry holds them, and incremental training changes them.
        ``n_modes_at_start``: the same as the run started (its first epoch, before a resume), so that
        a resume tells modes the run grew from a model built with other modes (a warning).
        ``rng_states``: every rank's CPU RNG state, indexed by rank (data-parallel runs);
        ``cuda_rng_states``: every rank's state of its own CUDA device, the same way."""
        epoch = getattr(self, "epoch", None)
        state = dict(epoch=epoch, next_epoch=None if epoch is None else epoch + 1, n_epochs=self.n_epochs,
                     schedule=None if self.precision_schedule is None else str(self.precision_schedule),
                     phase_index=self.phase_index, half_dtype=self.half_dtype,
                     scaler=self.scaler.state_dict(), history=[dict(h) for h in self.history],
                     rng_state=torch.get_rng_state(), n_modes=current_n_modes(self.model),
                     n_modes_at_start=self.__dict__.get("_n_modes_at_start"))
        if rng_states is not None and len(rng_states) > 1:
            state["rng_states_by_rank"] = list(rng_states)
        if torch.cuda.is_available():
            state["cuda_rng_state"] = torch.cuda.get_rng_state_all()
            if cuda_rng_states is not None and len(cuda_rng_states) > 1:
                state["cuda_rng_states_by_rank"] = list(cuda_rng_states)
        return state

    def checkpoint(self, save_dir):
        """Upstream's checkpoint files (weights-only loadable) plus ``precision_state.pt``.

        Data-parallel runs: every rank calls it (upstream's loop does); rank 0 alone
        writes, with every rank's RNG state, and the others wait until the folder is
        in place, so a rank that stops after this call leaves a complete checkpoint."""
        if getattr(self, "_loop_saves_best", False) and not self._beats_earlier_epochs():
            return
        rng_states = distributed.gather_objects(torch.get_rng_state())
        # each rank draws on its own device: its stream is that device's state, not rank 0's view of it
        cuda_rng_states = distributed.gather_objects(torch.cuda.get_rng_state()) if torch.cuda.is_available() else None
        if comm.get_local_rank() != 0:
            distributed.barrier()
            return
        save_name = checkpointing.BEST_MODEL_NAME if self.save_best is not None else checkpointing.MODEL_NAME
        checkpointing.save_training_files(save_dir, save_name, self.model, optimizer=self.optimizer,
                                          scheduler=self.scheduler, regularizer=self.regularizer,
                                          epoch=self.epoch,
                                          precision_state=self.precision_state_dict(rng_states, cuda_rng_states))
        distributed.barrier()
        if self.verbose:
            print(f"[Rank 0]: saved training state to {save_dir}")

    def _restore_run_state(self, state):
        """Hook of a subclass that saves state of its own in :meth:`precision_state_dict`: set it
        from the ``precision_state.pt`` contents ``state`` a resume read (after everything else)."""

    def _beats_earlier_epochs(self):
        """With ``save_best``: whether this epoch's metric is lower than every earlier
        epoch's in the history, the epochs before a resume included. Upstream's ``train``
        calls :meth:`checkpoint` when the metric beats the best of its own call, which
        restarts from inf after a resume: the first resumed epoch would replace the best
        checkpoint even when it is worse. Every rank decides alike (the metrics in the
        history are the mean over ranks)."""
        key = self.save_best
        if not self.history or self.history[-1].get("epoch") != getattr(self, "epoch", None) \
                or key not in self.history[-1]:
            return True
        best = math.inf
        for entry in self.history[:-1]:
            value = entry.get(key)
            if value is not None and value < best:  # a NaN never counts as best, as in upstream's loop
                best = value
        return self.history[-1][key] < best

    def _warn_changed_settings(self, states, save_dir):
        """Warn of the optimizer and scheduler settings that loading ``states`` replaces with
        the saved ones (:func:`changed_settings`): the resume's ``check_states`` where no
        :attr:`check_resume_states` is set (the training pipeline's refuses them instead)."""
        optimizer = getattr(self, "optimizer", None)
        changed = changed_settings(optimizer, getattr(self, "scheduler", None), states)
        if not changed or distributed.rank() != 0:  # every rank resumes alike: rank 0 alone says it, as it logs
            return
        listed = given_and_saved({f"{'scheduler' if group is None else f'group {group}'}: {key}": (given, saved)
                                  for group, key, given, saved in changed})
        # TensorGRaD's state was laid out by these: its step refuses them changed in the groups
        fixed = sorted(laid_out_keys(optimizer, states.get("optimizer"), changed))
        fixed_note = (f" ({', '.join(fixed)} laid out the saved optimizer state: only a new run changes them)"
                      if fixed else "")
        warnings.warn(
            f"Resuming from {save_dir} with other optimizer or scheduler settings than it was saved with "
            f"({listed}): loading the checkpoint replaces them with the saved values (torch's load_state_dict), "
            "which this run continues with. To train with the given values, set them on optimizer.param_groups "
            f"(or the scheduler's attributes) after the resume, or start a new run{fixed_note}.",
            UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))

    def _load_scaler_state(self, scaler_state, saved_half_dtype):
        """Restore the scaler, but let this run decide whether scaling is on: a bfloat16
        checkpoint resumed in float16 must start scaling (and the reverse must stop)."""
        wanted = self._scaling_enabled()
        self.scaler.load_state_dict(scaler_state)
        if self.scaler.enabled != wanted:
            if distributed.rank() == 0:  # every rank resumes alike: rank 0 alone says it, as it logs
                # the saved half type explains the saved scaler only where it is not this run's
                saved = (f" (half_dtype={saved_half_dtype!r})"
                         if saved_half_dtype is not None and saved_half_dtype != self.half_dtype else "")
                warnings.warn(
                    f"The checkpoint was saved with loss scaling {'on' if self.scaler.enabled else 'off'}{saved}; "
                    f"this run ({self._scaling_reason(wanted)}) turns it {'on' if wanted else 'off'}"
                    + (f", starting from scale {self.scaler.init_scale:g}." if wanted else "."),
                    RuntimeWarning, stacklevel=3)
            self.scaler.set_enabled(wanted)

    def _scaling_reason(self, wanted):
        """Why this run scales its loss (``wanted``) or does not, as the trainer's ``_scaling_enabled``
        decides: ``loss_scaling`` itself, else ("auto") 16-bit weights or float16 compute."""
        if self.loss_scaling != "auto":
            return f"loss_scaling={self.loss_scaling!r}"
        # 16-bit weights keep their gradients in the float16 range, whatever the half type computes in
        stored = self._float16_storage()
        if wanted and stored:
            return f"loss_scaling='auto', parameters stored in {', '.join(stored)}"
        if wanted:
            return f"loss_scaling='auto', half_dtype={self.half_dtype!r}: computes in float16"
        return f"loss_scaling='auto', half_dtype={self.half_dtype!r}: nothing in float16"

    def _first_moved_epoch(self, saved_schedule, saved_n_epochs, next_epoch):
        """The first epoch from ``next_epoch`` on that this run trains in another phase than
        the saved run would have (an epoch past the saved run's end: in its last phase), or
        None. Only the epochs still to train count: a longer run of one phase moves nothing."""
        from .schedule import PrecisionSchedule

        current = self.precision_schedule
        if current is not None and isinstance(saved_schedule, str) and current.written_as(saved_schedule):
            saved = current  # an older checkpoint's shares, rounded to 12 digits, would move boundaries
        else:
            saved = PrecisionSchedule.from_config(saved_schedule)  # written by str(PrecisionSchedule)

        def phase(schedule, epoch, n_epochs):
            if schedule is None:
                return None
            index = schedule.index_for_epoch(min(epoch, n_epochs - 1), n_epochs)
            p = schedule[index]  # not the phase itself: its share or end epoch may move without moving this epoch
            return index, p.mode, p.autocast, p.stabilizer

        for epoch in range(next_epoch or 0, self.n_epochs):
            if phase(saved, epoch, saved_n_epochs) != phase(self.precision_schedule, epoch, self.n_epochs):
                return epoch
        return None

    def resume_state_from_dir(self, save_dir):
        """Load a checkpoint and set ``start_epoch`` to the epoch after the saved one.

        Restores model, optimizer, scheduler, regularizer, loss scaler, history, the
        RNG state (so data shuffling continues as in an uninterrupted run) and the
        Fourier modes of the model's modules (a checkpoint from before they were saved
        leaves the model's own; a ``UserWarning`` names the modules of a model built with
        other modes than the saved run started with, which the saved ones replace). An
        upstream checkpoint without ``precision_state.pt`` resumes after its
        manifest's epoch with a fresh scaler.

        Nothing is loaded before the whole folder is verified
        (:func:`~neuralop_mp.training.checkpointing.verify_checkpoint`): a missing
        optimizer/scheduler file, a file of another size or checksum than the
        manifest records, a newer format or another model's weights raise
        :class:`~neuralop_mp.training.checkpointing.CheckpointError` naming the file;
        nor before :attr:`check_resume_states`, when set, has accepted the saved states.
        Without it, optimizer or scheduler settings that differ from the saved ones,
        which the load replaces, are named in a ``UserWarning``.
        """
        self.model = self.model.to(self.device)  # optimizer state follows the parameters' device
        manifest, state = checkpointing.load_training_files(
            save_dir, self.model, optimizer=getattr(self, "optimizer", None),
            scheduler=getattr(self, "scheduler", None), regularizer=getattr(self, "regularizer", None),
            check_states=self._warn_changed_settings if self.check_resume_states is None else self.check_resume_states)
        next_epoch = None
        if state is not None:
            moved = self._first_moved_epoch(state["schedule"], state["n_epochs"], state["next_epoch"])
            if moved is not None and distributed.rank() == 0:  # every rank resumes alike: rank 0 alone says it
                saved = (state["schedule"], state["n_epochs"])
                current = (None if self.precision_schedule is None else str(self.precision_schedule), self.n_epochs)
                text = (f"Resuming a run saved with (schedule, n_epochs)={saved} as {current}: the "
                        f"phase boundaries move (epoch {moved} changes phase).")
                warnings.warn(text, UserWarning, stacklevel=stacklevel_outside([os.path.dirname(__file__)]))
            self._load_scaler_state(state["scaler"], state.get("half_dtype"))
            self.history = [dict(h) for h in state["history"]]
            if distributed.rank() == 0:  # every rank resumes alike: rank 0 alone says it
                _warn_other_world_size(state, save_dir)
            restore_rng_states(state)
            if state.get("n_modes") is not None:  # checked with the files; older checkpoints: the model's own
                if distributed.rank() == 0:  # every rank resumes alike: rank 0 alone says it
                    _warn_built_other_n_modes(current_n_modes(self.model), state, save_dir)
                set_n_modes(self.model, state["n_modes"], f"{checkpointing.PRECISION_STATE_FILE}'s n_modes")
            if state.get("n_modes_at_start") is not None:  # the run continues: its start stays the saved one
                self._n_modes_at_start = state["n_modes_at_start"]
            self._restore_run_state(state)
            next_epoch = state["next_epoch"]
        elif manifest.get("epoch") is not None:
            next_epoch = manifest["epoch"] + 1
        elif distributed.rank() == 0:  # every rank resumes alike: rank 0 alone says it
            # upstream's Trainer records the epoch in its manifest: a folder without either file lost them
            warnings.warn(
                f"{save_dir} records no epoch (no {checkpointing.PRECISION_STATE_FILE}, no epoch in a "
                f"{checkpointing.MANIFEST_FILE}): its weights and states are loaded, but the history, loss scale "
                f"and RNG state are not, and training starts again at epoch {self.start_epoch} of "
                f"{self.n_epochs}.", RuntimeWarning, stacklevel=2)
        if next_epoch is not None and next_epoch > self.start_epoch:
            self.start_epoch = next_epoch
            if self.verbose:
                print(f"Trainer resuming from epoch {next_epoch}")
