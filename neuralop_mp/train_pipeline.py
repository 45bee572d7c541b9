"""From a training config to a trained model and its results.

One function per step, each reading exactly one part of the config, so that every
config field reaches the object it configures and nothing is silently dropped:

========================  =====================================================
step                      config fields
========================  =====================================================
:func:`build_data`        ``data.*`` (keyword arguments of the dataset's loader)
:func:`build_model`       ``model.*``, ``patching.levels``, ``seed``, ``device``
:func:`build_optimizer`   ``opt.optimizer``, ``opt.learning_rate``, ``opt.tensorgrad_*``, ...
:func:`build_scheduler`   ``opt.scheduler``, ``opt.step_size``, ``opt.gamma``, ...
:func:`build_losses`      ``opt.training_loss``
:func:`build_schedule`    ``opt.precision_schedule`` (else ``model.fno_block_precision``)
:func:`build_trainer`     ``opt.n_epochs``, ``opt.eval_interval``, ``opt.loss_scaling``, ...
========================  =====================================================

The model, optimizer, schedule and trainer precision steps call
:mod:`neuralop_mp.build_steps`, the same functions ``neuralop-mp run`` builds with
when an upstream script calls ``get_model``, ``Trainer`` or ``neuralop.training.AdamW``.

:func:`run_training` chains them, trains, evaluates the final model at every test
resolution and writes ``results.json`` and ``loss_curve.png``
(:mod:`neuralop_mp.train_report`). ``neuralop-mp train`` is a thin shell around it.
"""
import contextlib
import inspect
import os
import time
import warnings
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path

import torch

from .layers.path_report import summarize_product_paths
from .models.pointwise_tiles import describe_pointwise_tiles
from .cpu_allocator import describe_cpu_allocator, set_cpu_allocator
from . import build_steps
from .run_setup import RunSetupError, check_update_in_backward_launch, check_writable
from .run_setup import resolve_device  # noqa: F401 (re-exported)
from .train_report import best_epoch, best_metric_key
from .vocabulary import none_if_null, resolve_autocast_scope
from .warning_lines import log_warning


def section_kwargs(section):
    """The fields of a config section as a plain dict (no zencfg bookkeeping)."""
    from .configs.zencfg_compat import field_names

    return {name: getattr(section, name) for name in field_names(section)}


def build_data(config, *, progress=True, reference=None):
    """Load (generating when missing) the dataset that ``config.data`` describes; ``reference``
    (``{name: generation record}``: the data a resumed run trained on,
    :func:`~neuralop_mp.run_folder.run_data_records`) is the loader's, where it takes one.

    Returns
    -------
    train_loader, test_loaders, data_processor
        ``test_loaders`` is a dict keyed by resolution.
    """
    from . import data as data_module
    from .configs.unknown_fields import check_data_fields

    loader = getattr(data_module, config.data.loader_name())
    check_data_fields(config.data, loader=loader)  # validation's check, for a config it did not see
    kwargs = section_kwargs(config.data)
    params = inspect.signature(loader).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "progress" in params or takes_any:
        kwargs["progress"] = progress
    if reference and ("reference" in params or takes_any):
        kwargs["reference"] = reference
    return loader(**kwargs)


def _refuse_a_file_as_data_root(data):
    """The data folder's check (:func:`~neuralop_mp.run_setup.check_writable`, "is a file, not a
    folder") where a file is in its way: before the run folder is made. Only then: a read-only data
    root holding the files a run needs is usable, and is checked where a file must be written."""
    from .data.cache import current_data_root_option, resolve_root
    from .run_setup import file_in_the_way

    root = getattr(data, "data_root", None)
    root = resolve_root(root)
    if file_in_the_way(root) is not None:  # named as the running command lets the user choose it
        check_writable(root, current_data_root_option(), what="Data folder")


def build_model(config, device="cpu", policy=None):
    """Seed torch with ``config.seed`` and build ``config.model`` on ``device`` (with
    ``policy``, the parsed precision keys; parsed from ``config.model`` when not given)."""
    torch.manual_seed(config.seed)
    policy = policy or build_steps.precision_policy(config)
    return build_steps.build_model(config, policy).to(device)


def attach_patching(config, model, data_processor, device="cpu"):
    """Wrap the data processor in upstream's multi-grid patching when ``patching.levels > 0``."""
    if not config.patching.levels:
        return data_processor
    from .data.patching import PatchingDataProcessor

    return PatchingDataProcessor(
        model=model,
        levels=config.patching.levels,
        padding_fraction=config.patching.padding,
        stitching=config.patching.stitching,
        device=str(device),
        in_normalizer=getattr(data_processor, "in_normalizer", None),
        out_normalizer=getattr(data_processor, "out_normalizer", None),
    )


def build_optimizer(model, config):
    """The optimizer ``config.opt`` names (:func:`neuralop_mp.build_steps.build_optimizer`)."""
    return build_steps.build_optimizer(model, config.opt)


# each learning-rate scheduler's torch arguments and the opt keys that set them, as upstream's scripts
# read them: the one table build_scheduler builds from, the unread-key warning reads and a resume checks
# the saved scheduler's attributes against
SCHEDULER_ARGUMENTS = {"StepLR": {"step_size": "step_size", "gamma": "gamma"},
                       "CosineAnnealingLR": {"T_max": "scheduler_T_max"},
                       "ReduceLROnPlateau": {"factor": "gamma", "patience": "scheduler_patience"}, "none": {}}
# the opt keys each scheduler reads
SCHEDULER_KEYS = {name: tuple(arguments.values()) for name, arguments in SCHEDULER_ARGUMENTS.items()}


def unread_scheduler_keys_warning(opt, given):
    """What to say of the scheduler keys among ``given`` (the ``opt`` field names a user set: on the
    command line or in a config file, not a config's own defaults) that ``opt.scheduler`` does not
    read, e.g. ``opt.gamma`` with ``CosineAnnealingLR``: accepted and checked, then unused. None
    when every one given is read (or the scheduler is unknown: its check says so)."""
    name = "none" if none_if_null(opt.scheduler) is None else str(opt.scheduler)
    read = SCHEDULER_KEYS.get(name)
    if read is None:
        return None
    every = dict.fromkeys(key for keys in SCHEDULER_KEYS.values() for key in keys)
    unread = [key for key in every if key in given and key not in read]
    if not unread:
        return None
    keys = " and ".join(f"opt.{key}" for key in unread)
    reads = f"it reads {', '.join(f'opt.{key}' for key in read)}" if read else "it reads no scheduler key"
    return (f"{keys} {'is' if len(unread) == 1 else 'are'} set but unused: opt.scheduler={opt.scheduler!r} does not "
            f"read {'it' if len(unread) == 1 else 'them'} ({reads}).")


def unread_patching_keys_warning(patching, given):
    """What to say of ``patching.padding`` / ``patching.stitching`` among ``given`` (the ``patching``
    field names a user set, as for :func:`unread_scheduler_keys_warning`) where ``patching.levels``
    is 0: patching is off and reads neither. A warning, not a refusal: ``--patching.levels 0`` is
    how a config that patches is run without it. None otherwise."""
    if patching.levels:
        return None
    unread = [key for key in ("padding", "stitching") if key in given]
    if not unread:
        return None
    keys = " and ".join(f"patching.{key}" for key in unread)
    return (f"{keys} {'is' if len(unread) == 1 else 'are'} set but unused: patching.levels=0 turns patching off "
            "(a level of 1 or more patches).")


def build_scheduler(optimizer, config):
    """The learning-rate scheduler of ``config.opt`` (stepped once per epoch by the trainer)."""
    opt = config.opt
    name = str(opt.scheduler)
    lr_scheduler = torch.optim.lr_scheduler
    arguments = {argument: getattr(opt, key) for argument, key in SCHEDULER_ARGUMENTS.get(name, {}).items()}
    if name in ("StepLR", "CosineAnnealingLR"):
        return getattr(lr_scheduler, name)(optimizer, **arguments)
    if name == "ReduceLROnPlateau":
        # torch's other schedulers record the configured rate in each group as "initial_lr", saved with the
        # optimizer while "lr" decays; ReduceLROnPlateau does not, and a resume could not tell a changed
        # opt.learning_rate (check_resume_settings) without it
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **arguments)
    if none_if_null(name) is None:
        return lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    from .configs.validation import SCHEDULERS
    from .vocabulary import check_choice

    check_choice("opt.scheduler", name, SCHEDULERS)
    raise AssertionError("unreachable")  # pragma: no cover


def data_dims(train_loader):
    """Number of spatial dimensions of the targets (2 for Darcy, 1 for 1D Burgers)."""
    sample = train_loader.dataset[0]
    return sample["y"].ndim - 1


def check_model_fits_data(config, train_loader):
    """Refuse a model section whose channels or dimensions differ from the data's, before the
    model is built: an ``out_channels`` larger than the targets' broadcasts in the loss and
    trains to a wrong result without an error; the others fail inside the first batch.
    (A built-in dataset's are known before its data load: :func:`check_model_fits_dataset`.)

    Raises
    ------
    ValueError
        Naming the key, its value and what the data's first training sample needs.
    """
    sample = train_loader.dataset[0]
    x, y = sample["x"], sample["y"]
    shapes = f"(a training sample has x of shape {tuple(x.shape)}, y of shape {tuple(y.shape)})"
    _check_model_layout(config, x.shape[0], y.shape[0], data_dims(train_loader), shapes)


def check_model_fits_dataset(config):
    """:func:`check_model_fits_data` for a built-in dataset (``config.data`` read by a loader of
    :data:`~neuralop_mp.data.loaders.SAMPLE_LAYOUT`), from the channels and dimensions its
    samples always have: before any file is read or generated. Another loader's data are
    checked once loaded.

    Raises
    ------
    ValueError
        Naming the key, its value and what the dataset's samples need.
    """
    from .data.loaders import SAMPLE_LAYOUT

    layout = SAMPLE_LAYOUT.get(config.data.loader_name())
    if layout is None:
        return
    dims = layout["dims"]
    shapes = (f"(its samples have {layout['data_channels']} input and {layout['out_channels']} output channel(s) "
              f"on a {dims}-D grid)")
    _check_model_layout(config, layout["data_channels"], layout["out_channels"], dims, shapes)


def _check_model_layout(config, in_channels, out_channels, dims, shapes):
    """The rule of :func:`check_model_fits_data`: ``model.data_channels`` and ``model.out_channels``
    are the data's channels, and ``model.n_modes`` (each ``uno_n_modes`` entry) one count per
    dimension; ``shapes`` says, in the message, what the data hold."""
    model = config.model
    for key, needed in (("data_channels", in_channels), ("out_channels", out_channels)):
        value = getattr(model, key, None)
        if value is not None and value != needed:
            raise ValueError(f"Invalid model.{key}={value}; the {config.name} data need {needed} {shapes}.")
    for key in ("n_modes", "uno_n_modes"):
        modes = getattr(model, key, None)
        if modes is None:
            continue
        lengths = {len(entry) for entry in modes} if key == "uno_n_modes" else {len(modes)}
        if lengths != {dims}:
            raise ValueError(f"Invalid model.{key}={list(modes)}; the {config.name} data are {dims}-dimensional: "
                             f"{'each entry needs' if key == 'uno_n_modes' else 'it needs'} {dims} mode counts, one "
                             f"per dimension {shapes}.")


def build_losses(config, n_dims):
    """``(training_loss, eval_losses)``: the loss ``opt.training_loss`` names; relative L2 and H1."""
    from neuralop.losses import H1Loss, LpLoss

    eval_losses = {"l2": LpLoss(d=n_dims, p=2), "h1": H1Loss(d=n_dims)}
    from .configs.validation import TRAINING_LOSSES
    from .vocabulary import check_choice

    check_choice("opt.training_loss", config.opt.training_loss, TRAINING_LOSSES)
    return eval_losses[config.opt.training_loss], eval_losses


def build_schedule(config, policy=None, autocast=None):
    """``opt.precision_schedule`` if set, else a constant schedule of ``model.fno_block_precision``
    (:func:`neuralop_mp.build_steps.precision_schedule`; ``autocast``: its phase's, default the mode's)."""
    return build_steps.precision_schedule(config.opt.precision_schedule,
                                          policy or build_steps.precision_policy(config), autocast=autocast)


def build_trainer(config, model, data_processor, schedule, device="cpu", *, progress=True, policy=None,
                  auto_precision=False, **run_kwargs):
    """The trainer running ``schedule`` for ``opt.n_epochs``.

    A :class:`~neuralop_mp.MixedPrecisionTrainer`; with ``run_kwargs`` (``run_dir``,
    ``best_metric``, ``log``) a :class:`~neuralop_mp.run_trainer.RunFolderTrainer`.
    ``auto_precision``: re-decide "auto" at each phase start of ``schedule``.
    ``config.verbose`` holds on rank 0 only (every rank but 0 of a process group is quiet).
    """
    from .run_trainer import RunFolderTrainer
    from .training import distributed
    from .training.trainer import MixedPrecisionTrainer

    opt = config.opt
    trainer_class = RunFolderTrainer if run_kwargs else MixedPrecisionTrainer
    return trainer_class(
        **run_kwargs,
        model=model,
        n_epochs=opt.n_epochs,
        device=device,
        data_processor=data_processor,
        eval_interval=opt.eval_interval,
        # under torchrun rank 0 alone prints (upstream's per-epoch and evaluation lines), as it alone logs
        verbose=config.verbose and distributed.rank() == 0,
        **build_steps.trainer_precision_kwargs(
            schedule, (policy or build_steps.precision_policy(config)).half_dtype, opt.loss_scaling),
        max_consecutive_skips=opt.max_consecutive_skips,
        **build_steps.trainer_memory_kwargs(getattr(opt, "update_in_backward", None)),
        progress=progress,
        use_distributed=distributed.is_distributed(),
        **({"auto_precision": True} if auto_precision else {}),
    )


def default_output_dir(config, now=None):
    """``./runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.name}-{stamp}"


#: times :func:`output_dir_for` makes again the folder of a default run folder removed under its claim
_CLAIM_RETRIES = 3


def output_dir_for(config, output_dir=None, *, claim=True, now=None, created=None):
    """The run folder of a run, as an absolute path (printed and recorded, it must be found from
    any folder): ``output_dir``, else ``config.output_dir``, else :func:`default_output_dir`.

    A default folder is claimed for this run (``claim``): created now, and where another run took
    that name already (two runs started in the same second) the first free one of ``NAME-2``,
    ``NAME-3``, ...; a creation that fails when the name exists is what makes the claim atomic.
    ``claim=False`` (a process that writes nothing, a resume) only names it. ``created`` (a list):
    the claimed folder and the folders above it that the claim created (``runs/``), innermost first,
    are appended to it, for a run refused or stopped before it saved anything to give them back.
    A ``runs/`` that another run gave back (removed, empty) between its check and the claim is
    made again, up to :data:`_CLAIM_RETRIES` times.

    Raises
    ------
    RunSetupError
        When the folder of the default one cannot be written (:func:`check_writable`), or
        ``config.name``, which names it, is not one folder name (:func:`check_run_name`).
    """
    explicit = output_dir or config.output_dir
    if explicit:
        return Path(os.path.expanduser(str(explicit))).absolute()
    check_run_name(config.name)
    base = default_output_dir(config, now).absolute()
    if not claim:
        return base
    parents = _missing_folders(base.parent)  # made by check_writable: given back with the run's folder
    check_writable(base.parent)
    suffix, made_again = 1, 0
    while True:
        folder = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        try:
            folder.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        except FileNotFoundError:  # another run gave back the empty runs/ since: made again, for this run too
            made_again += 1
            if made_again > _CLAIM_RETRIES:
                raise RunSetupError(f"Output folder {str(base.parent)!r} was removed {made_again} times while a "
                                    "run folder was claimed in it; give the run a folder with --output_dir.") from None
            # innermost first, each once: the folders missing now are this run's to give back as well
            parents = sorted({*parents, *_missing_folders(base.parent)}, key=lambda path: len(path.parts),
                             reverse=True)
            check_writable(base.parent)
            continue
        if created is not None:
            created.extend([folder, *parents])
        return folder


def check_run_name(name):
    """Refuse a ``name`` that cannot name the default run folder ``runs/<name>-<timestamp>``: empty
    (``runs/-<timestamp>``) or holding a path separator (``../../x`` wrote outside ``runs/``).

    Raises
    ------
    RunSetupError
        Naming the value and what is allowed.
    """
    text = str(name)
    if not text.strip() or any(sep and sep in text for sep in (os.sep, os.altsep, "/")):
        raise RunSetupError(f"Invalid name {text!r}; allowed values: one folder name, not empty and without "
                            f"'/', as it names the default run folder runs/<name>-<timestamp> (--output_dir DIR "
                            "chooses any folder).")


def check_new_run_folder(out):
    """Refuse a new run (not a resume) into ``out`` when it holds a run already
    (:func:`~neuralop_mp.run_folder.run_files`): its files would be replaced one by one and the
    rest (a ``best_model_*`` the new run does not write) left beside the new run's.

    Raises
    ------
    RunSetupError
        Naming the folder, what it holds, and the two ways on: resume it, or another folder.
    """
    from .run_folder import run_files

    found = run_files(out)
    if found:
        raise RunSetupError(
            f"Output folder {str(out)!r} already holds a run ({', '.join(found)}); a new run would overwrite "
            f"it and leave its other files beside the new ones. Continue that run with --resume {out}, or "
            "give the new run another folder with --output_dir.")


def tensor_bytes(obj):
    """Bytes of every tensor in a (nested) dict / list / tuple, e.g. optimizer state."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def parameter_counts(model):
    """``{"n_params": entries, "n_real_params": real numbers}`` of ``model``'s parameters: a complex
    entry is one entry and two real numbers, as upstream's ``count_model_params`` (which its
    scripts print) counts it."""
    from neuralop.utils import count_model_params

    return {"n_params": sum(p.numel() for p in model.parameters()), "n_real_params": count_model_params(model)}


def memory_figures(model, optimizer, history):
    """Parameter bytes, optimizer state bytes and the largest activation and peak figures of the history."""
    figures = {
        "params_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        **parameter_counts(model),
        "optimizer_state_bytes": tensor_bytes(list(optimizer.state.values())),
    }
    for key in ("saved_bytes", "step_peak_bytes", "cuda_peak_bytes"):
        values = [h[key] for h in history if h.get(key) is not None]
        figures[key] = max(values) if values else None
    return figures


def evaluate_final(trainer, test_loaders, eval_losses):
    """Relative L2 and H1 of the trained model on every test loader: ``{"16_l2": ..., ...}``.

    Reuses the trainer's evaluation of the last epoch when it ran (same model, same
    precision), and evaluates otherwise.
    """
    history = getattr(trainer, "history", None)
    keys = [f"{res}_{name}" for res in test_loaders for name in eval_losses]
    if history and all(key in history[-1] for key in keys):
        return {key: float(history[-1][key]) for key in keys}
    return evaluate_loaders(trainer, test_loaders, eval_losses)


def evaluate_loaders(trainer, test_loaders, eval_losses):
    """``{"RES_LOSS": value}``: one evaluation of every test loader by ``trainer``."""
    metrics = {}
    for resolution, loader in test_loaders.items():
        errors = trainer.evaluate(eval_losses, loader, log_prefix=str(resolution))
        metrics.update({k: float(v) for k, v in errors.items()})
    return metrics


def check_best_metric_resolution(data):
    """``--save_best`` compares the test L2 at ``data.train_resolution``: refuse, before any
    data is loaded, a config that does not test at that resolution."""
    resolutions = list(getattr(data, "test_resolutions", None) or [])
    if data.train_resolution not in resolutions:
        raise RunSetupError(
            f"--save_best keeps the model with the lowest test L2 at data.train_resolution={data.train_resolution}, "
            f"but data.test_resolutions={resolutions} does not test there; add {data.train_resolution} to "
            "data.test_resolutions or train without --save_best.")


def checkpoint_to_resume(out, checkpoint_dir):
    """The checkpoint folder ``--resume`` of the run folder ``out`` continues from:
    ``checkpoint_dir``, or ``{checkpoint_dir}.old`` (with a warning) where a crash came
    between the two renames of a save
    (:func:`~neuralop_mp.training.checkpointing.resolve_checkpoint_dir`).

    Raises
    ------
    RunSetupError
        When there is neither (no epoch saved yet, or no run folder written).
    CheckpointError
        When it lacks ``precision_state.pt``, which every checkpoint of this pipeline holds:
        without the epoch it records, the trainer would train every epoch again from the
        loaded weights (a folder of upstream's ``Trainer``, which resumes from its
        manifest's epoch, is never a run folder's checkpoint).
    """
    from .run_folder import CHECKPOINT_DIR, COMMAND_FILE
    from .training.checkpointing import (MANIFEST_FILE, PRECISION_STATE_FILE, CheckpointError,
                                         resolve_checkpoint_dir)

    folder = None
    if checkpoint_dir is not None:  # None: no run folder written (write=False)
        try:
            folder = resolve_checkpoint_dir(checkpoint_dir)
        except CheckpointError:  # neither the folder nor its .old
            pass
    if folder is None:
        # the command.json of a run stopped before its first epoch (in a folder the user made: one the
        # run created is removed) is no run: the same command, without --resume, starts it in this folder
        again = (f" The run recorded in its {COMMAND_FILE} stopped before its first epoch: run its command again "
                 "without --resume (a new run may use this folder, which holds no run)."
                 if (Path(out) / COMMAND_FILE).is_file() else "")
        raise RunSetupError(f"Nothing to resume in {out}: it has no {CHECKPOINT_DIR}/ folder "
                            f"(a run writes one after its first epoch).{again}")
    missing = [name for name in (PRECISION_STATE_FILE, MANIFEST_FILE) if not (folder / name).is_file()]
    if PRECISION_STATE_FILE in missing:
        listed = " and ".join(str(folder / name) for name in missing)
        raise CheckpointError(
            f"Cannot resume {folder}: {listed} {'is' if len(missing) == 1 else 'are'} missing. Every checkpoint of "
            f"neuralop-mp train holds {PRECISION_STATE_FILE} (the epoch to continue from, the history, loss scale "
            "and RNG state); without it the run would train every epoch again from epoch 0. Restore the file, or "
            "start a new run.")
    return folder


def resumed_auto_decision(model, decision, resume_dir, train_loader, data_processor, config, policy, device, log):
    """The plain "auto" decision (no precision schedule) of a run resumed from ``resume_dir``.

    ``decision`` is the calibration of the model as built (untrained, seeded), as every start of
    the run makes it: with the conditions the saved epochs ran under, that is the run's own decision,
    kept (the resume trains as an uninterrupted run would). Where a condition of the measurement
    changed (the half type, or the stabilizer the decided mode runs with: the last saved epoch's
    ``half_dtype`` and ``stabilizer``), or the decision is not the mode the saved epochs ran in
    (other data shards, another device), the weights the run resumes are measured instead, as a
    schedule's phase re-check does (:mod:`~neuralop_mp.training.auto_phases`), and a warning says
    so. Such a decision records ``recheck_reason``, ``measured_on`` and ``resumed_from`` (the
    saved epochs' mode, half type, stabilizer and autocast) for ``results.json``.
    """
    import copy

    from .diagnose.auto import agree_across_ranks, calibrate_from_loader
    from .layers.layer_precision import set_fixed_precision
    from .models.mixed_precision_models import set_n_modes
    from .training.auto_phases import changed_conditions
    from .training.checkpointing import PRECISION_STATE_FILE, load_training_files, load_weights_only
    from .vocabulary import dtype_name

    history = (load_weights_only(Path(resume_dir) / PRECISION_STATE_FILE) or {}).get("history") or []
    saved = history[-1] if history else None
    if not isinstance(saved, dict) or "precision" not in saved:  # nothing recorded to compare with
        return decision
    half = policy.half_torch_dtype(device)
    # the stabilizer the saved epochs' mode runs with under this run's settings, as the trainer records it
    stabilizer = build_schedule(config, policy.replace(fno_block_precision=saved["precision"]))[0].stabilizer_for(half)
    changed = changed_conditions({"half_dtype": saved.get("half_dtype"), "stabilizer": saved.get("stabilizer")},
                                 {"half_dtype": dtype_name(half), "stabilizer": stabilizer})
    if changed is None and decision["fno_block_precision"] == saved["precision"]:
        return decision
    if changed is None:
        changed = (f"the model as built decides {decision['fno_block_precision']!r}, and the saved epochs ran "
                   f"{saved['precision']!r} (other data shards or another device?)")
    # measured on a copy holding the saved weights and modes: the trainer loads them into the run's model
    resumed = copy.deepcopy(model)
    _, state = load_training_files(resume_dir, resumed)
    if isinstance(state, dict) and state.get("n_modes") is not None:
        set_n_modes(resumed, state["n_modes"], f"{PRECISION_STATE_FILE}'s n_modes")
    decision = agree_across_ranks(model, calibrate_from_loader(resumed, train_loader, data_processor), apply=False)
    set_fixed_precision(model, decision["fno_block_precision"])
    epoch = saved.get("epoch")
    decision = {**decision, "recheck_reason": changed,
                "measured_on": f"the weights saved after epoch {epoch} in {resume_dir}",
                "resumed_from": {key: saved.get(key) for key in ("epoch", "precision", "half_dtype", "stabilizer",
                                                                 "autocast")}}
    model.precision_decision = decision
    log_warning(log, f"fno_block_precision='auto' re-checked on the weights saved after epoch {epoch}: {changed}; "
                     f"decided {decision['fno_block_precision']!r} (the saved epochs ran {saved['precision']!r}).")
    return decision


def _setup_error(step, error):
    """A bad input found while setting the run up, as a one-line :class:`RunSetupError`."""
    if isinstance(error, RunSetupError):
        return error
    return RunSetupError(f"{step}: {error}")


def run_training(config, *, progress=True, output_dir=None, write=True, log=print, resume=False,
                 save_best=False, threads=None, command=None, cpu_allocator=None, command_flags=None,
                 threads_reason=None):
    """Train and evaluate the experiment ``config`` describes; write its results.

    Parameters
    ----------
    config : TrainConfig
        A validated config (:func:`neuralop_mp.configs.load_config`).
    progress : bool
        Progress bars for data generation and training epochs.
    output_dir : str or Path, optional
        Overrides ``config.output_dir``; default ``./runs/<name>-<timestamp>``, claimed for this
        run (``-2``, ``-3``, ... where another run took that name: :func:`output_dir_for`).
        Recorded and returned as an absolute path. A new run (not ``resume``) refuses a
        folder that holds a run already (:func:`check_new_run_folder`). A default folder is
        given back when the run raises (Ctrl-C included) before it saved any of itself
        (:func:`~neuralop_mp.run_folder.release_run_folder`), and so is a folder a new run
        was given that did not exist (with the parents it created for it): a run refused
        at its data leaves no folder holding only its ``command.json``. A folder that
        existed before is never removed.
    write : bool
        Write the run folder: ``results.json``, ``loss_curve.png``, the final model
        (upstream's ``save_checkpoint`` format, :mod:`neuralop_mp.run_folder`), the data
        normalizers fitted on the training data (``data_processor.pt``, written before the
        first epoch) and the per-epoch training state in ``checkpoint/``.
    log : callable
        Receives the pipeline's progress messages (``print`` by default).
    resume : bool
        Continue the run in the output folder from its ``checkpoint/`` (the epoch after
        the last one saved; ``checkpoint.old`` where a crash came between the two renames
        of a save, :func:`checkpoint_to_resume`); the result is bitwise the one of an
        uninterrupted run on CPU. A run that had no epoch left trains nothing and says so
        through ``log``; where its ``results.json`` and final model are its last epoch's
        (:func:`current_results`) it writes nothing and returns the recorded results.
    save_best : bool
        Also write ``best_model_*``: the model with the lowest test L2 at the training
        resolution over the evaluated epochs.
    threads : int, optional
        torch's intra-op CPU threads for this run (default: left as they are).
    threads_reason : str, optional
        Why this count, said in the log line that gives it (the CLI's: ``--threads`` given,
        auto, or the count the run recorded).
    cpu_allocator : {"keep", "system"}, optional
        On a CPU device, how the process obtains memory
        (:func:`neuralop_mp.cpu_allocator.set_cpu_allocator`; ``"keep"``: freed memory
        stays in the process for the next step); default: left as it is. It acts on
        the whole process and lasts until it exits.
    command : tuple, optional
        ``(config spec, overrides)`` the run was started with, recorded in the run
        folder's ``command.json`` for ``--resume`` and ``neuralop-mp eval``. With
        ``resume``: the run's overrides merged with the ones given to the resume,
        recorded once the resumed run has saved an epoch (a run stopped before that, by
        an error, Ctrl-C or a kill, keeps its previous record).
    command_flags : dict, optional
        Run flags recorded next to ``command`` (the CLI's ``threads``, the count used, and
        ``cpu_allocator``), which ``--resume`` reuses unless given again.

    Returns
    -------
    dict
        ``config`` (nested dict), ``metrics`` (final test errors per resolution),
        ``history`` (the trainer's per-epoch records), ``memory``, ``precision``
        (final mode, the schedule's phases and what each ran as on this device),
        ``seconds_per_epoch``, ``wall_time_s``, ``train_resolution``, ``output_dir``,
        ``files``, ``data_files`` (each data file read, its samples and its generation record
        with the physics: :func:`~neuralop_mp.data.loaders.describe_files`; None for a loader
        that does not say them), ``threads`` and ``cpu_allocator`` (CPU runs).

    Raises
    ------
    RunSetupError
        Before any data is loaded or generated, for an unavailable device, an
        unwritable output folder, a new run into a folder that holds a run, ``save_best``
        without a test at the training resolution, a model whose channels or dimensions a
        built-in dataset's samples do not have (:func:`check_model_fits_dataset`), ``opt.update_in_backward`` under
        torchrun with several ranks or with "auto" loss scaling of a float16 run (both before
        anything is written: :func:`~neuralop_mp.configs.validation.check_update_in_backward_scaling`) or a
        ``resume`` without a checkpoint folder; while
        loading data, for missing files that are not to be generated (with the command
        that generates them); when the model is built, for an argument its constructor
        refuses (a ValueError or TypeError, as one line); when the checkpoint is read,
        before anything is loaded or trained, for a ``resume`` whose optimizer or
        scheduler settings differ from the checkpoint's (:func:`check_resume_settings`).
    CheckpointError
        For a ``resume`` from a checkpoint folder without ``precision_state.pt``, before any
        data is loaded (:func:`checkpoint_to_resume`), or one refused when it is read
        (naming the file).
    CheckpointWriteError
        An ``OSError`` naming the file (and a full disk, with its free space:
        :func:`~neuralop_mp.training.checkpointing.write_error`), for a checkpoint or another file
        of the run folder (model files, ``results.json``, ``loss_curve.png``, ``data_processor.pt``)
        that could not be written; the previous one is kept. Its subclass
        :class:`~neuralop_mp.run_folder.RunFolderRemoved` at the first save after the run folder
        was removed (:func:`~neuralop_mp.run_folder.check_run_folder_present`).
    """
    from .run_folder import give_back_claimed

    claimed = []  # the folders this call created for its run folder (a default one claimed), innermost first
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released when the run ends
            return _run_training(config, claimed, held, progress=progress, output_dir=output_dir, write=write,
                                 log=log, resume=resume, save_best=save_best, threads=threads, command=command,
                                 cpu_allocator=cpu_allocator, command_flags=command_flags,
                                 threads_reason=threads_reason)
    except BaseException as error:  # Ctrl-C included: a run stopped before saving any of itself leaves no folder
        released = give_back_claimed(claimed)
        # the caller's messages then tell a folder this run gave back from one removed under it
        error.run_folder_released = released
        raise


def _missing_folders(folder):
    """``folder`` and its parents that do not exist, innermost first: those a ``mkdir(parents=True)``
    of it creates."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _run_training(config, claimed, held, *, progress, output_dir, write, log, resume, save_best, threads, command,
                  cpu_allocator, command_flags, threads_reason=None):
    """:func:`run_training`, appending to ``claimed`` the folders it creates for a new run's folder (a
    default one claimed, or a given one that did not exist and its missing parents) and entering the run
    folder's lock into ``held`` (an ``ExitStack``)."""
    from .configs import config_to_dict
    from .configs.validation import check_update_in_backward_scaling, validated_precision_policy
    from .run_folder import (CHECKPOINT_DIR, COMMAND_FILE, FINAL_MODEL, RESULTS_FILE, check_run_folder_present,
                             run_data_records, run_folder_lock, save_data_processor, save_model, write_command)
    from .run_records import parameters_text, phase_ranges
    from .train_report import no_best_model_reason, precision_as_run, write_outputs
    from .training import distributed
    from .training.checkpointing import BEST_MODEL_NAME, STATE_DICT_SUFFIX

    # the precision keys are parsed once, while validating; model, schedule and trainer share the policy
    policy = validated_precision_policy(config)
    start = time.perf_counter()
    device = resolve_device(config.device)
    if distributed.launched_by_torchrun():  # one rank of several: DDP, a shard of the data, rank 0 writes
        # refused before the process group, any file or data: the trainer would refuse it after loading
        memory_kwargs = build_steps.trainer_memory_kwargs(getattr(config.opt, "update_in_backward", None))
        check_update_in_backward_launch(memory_kwargs.get("update_in_backward", False), "opt.update_in_backward")
        device = distributed.init_from_env(distributed.backend_for(device))
    try:  # a float16 half type on the device it trains on: refused before the data, as the trainer would after
        check_update_in_backward_scaling(config, policy, device)
    except ValueError as error:
        raise RunSetupError(str(error)) from None
    is_writer = distributed.rank() == 0
    allocator = None
    if device.type == "cpu" and cpu_allocator is not None:  # before anything is written
        try:
            allocator = set_cpu_allocator(cpu_allocator)
        except ValueError as error:  # an unknown mode, or "system" after "keep" in this process
            raise RunSetupError(str(error)) from None
    if not is_writer:
        progress, log = False, (lambda *args, **kwargs: None)
    if save_best:  # before a default folder is claimed: a refused run leaves none
        check_best_metric_resolution(config.data)
    try:  # a built-in dataset's channels and dimensions: known before anything is generated
        check_model_fits_dataset(config)
    except ValueError as error:
        raise RunSetupError(str(error)) from None
    _refuse_a_file_as_data_root(config.data)  # before the run folder is made: no empty folder left behind
    # every rank reads the same run folder (resume); only rank 0 writes into it, and claims a default one
    claim = write and is_writer and not resume
    # a default folder, created now for this run, with the folders above it it needed (runs/)
    out = output_dir_for(config, output_dir, claim=claim, created=claimed) if write else None
    if write and is_writer and (not resume or out.is_dir()):  # a resume's missing folder: refused below
        if claim and not claimed:  # a folder given, made now for this run: given back as a claimed one
            claimed.extend(_missing_folders(out))
        check_writable(out)  # created if new: the lock file is in it
        # one run at a time writes the folder: a second (resume or new) is refused before it reads or writes
        held.enter_context(run_folder_lock(out))
    checkpoint_dir = out / CHECKPOINT_DIR if write else None
    # the folder a resume reads: checkpoint/, or checkpoint.old after a crash between a save's renames
    resume_dir = checkpoint_to_resume(out, checkpoint_dir if write else None) if resume else None
    if write and is_writer:
        if not resume:
            check_new_run_folder(out)
        if command is not None and not resume:
            write_command(out, *command, save_best=bool(save_best), **(command_flags or {}))
    # a resumed run records its command (the run's overrides and the ones given now) once it saves an epoch
    record_resume = write and is_writer and resume and command is not None
    if threads is not None:
        torch.set_num_threads(int(threads))
    if device.type == "cpu":
        why = f"{threads_reason}; " if threads_reason else ""
        log(f"[neuralop-mp] {torch.get_num_threads()} CPU thread(s) for torch ({why}--threads to change)")
        if allocator is not None:
            log(f"[neuralop-mp] CPU memory: {allocator} (--cpu-allocator to change)")

    stabilizer_warning = build_steps.stabilizer_schedule_warning(
        policy.stabilizer, config.opt.precision_schedule, policy.half_torch_dtype(device))
    if stabilizer_warning:
        log_warning(log, stabilizer_warning)
    # "full" is model.fno_block_precision's default: beside a schedule it asks nothing the phases overrule
    precision_warning = build_steps.precision_schedule_warning(
        None if policy.fno_block_precision == "full" else policy.fno_block_precision, config.opt.precision_schedule)
    if precision_warning:
        log_warning(log, precision_warning)
    def note_stabilizer_off(policy):
        # model.stabilizer "off" (a typed --model.stabilizer none) in float16 "half": what it risks, once
        note = build_steps.stabilizer_off_note(policy, config.opt.precision_schedule, policy.half_torch_dtype(device))
        if note:
            log(f"[neuralop-mp] note: stabilizer {note}")
        return note

    stabilizer_note = note_stabilizer_off(policy)
    log(f"[neuralop-mp] {config.name}: loading data ({type(config.data).__name__})")
    # a resume trains on the data the run trained on: its files as results.json records them (the
    # user's own, or generated with this physics) must be the files there now
    reference = (run_data_records(out, config.data, recorded_only=True)
                 if resume and out is not None and out.is_dir() else None)
    try:
        train_loader, test_loaders, data_processor = build_data(
            config, progress=progress, **({"reference": reference} if reference else {}))
    except (FileNotFoundError, FileExistsError, ValueError) as error:  # FileExistsError: another run's file
        raise _setup_error("data", error) from error
    except OSError as error:  # `neuralop-mp data`'s line, worded after what failed: a data file that could
        # not be read (naming it), else a lock file of the data root that cannot be opened
        from .data.cache import data_os_error, resolve_root
        from .training.checkpointing import CheckpointWriteError

        if isinstance(error, CheckpointWriteError):  # a data file not saved (a full disk): the CLI says it
            raise
        root = resolve_root(getattr(config.data, "data_root", None))
        raise _setup_error("data", data_os_error(root, error)) from error
    try:
        check_model_fits_data(config, train_loader)
    except ValueError as error:
        raise RunSetupError(str(error)) from None
    # the normalizers fitted on the training data, before any epoch: `eval` of the run (a stopped
    # one's included) and a user's inference encode and decode with them, without the training data
    if write and is_writer:  # every save of the run checks its folder is still there (a run_folder rule)
        check_run_folder_present(out)
    processor_file = save_data_processor(data_processor, out) if write and is_writer else None
    # the files the load read, with the physics they record (a loader of ours says them)
    data_files = getattr(train_loader, "data_files", None)
    train_loader = distributed.shard_loader(train_loader, seed=config.seed)
    try:  # a model argument the validation could not see (a user's section): one line, as a data error
        model = build_model(config, device, policy)
    except (ValueError, TypeError) as error:
        raise _setup_error("model", error) from error
    data_processor = attach_patching(config, model, data_processor, device)
    auto_decision = None
    # "auto" with a schedule: the trainer re-decides at each phase start (training/auto_phases.py);
    # without one: decided here from the first batches, then trained as chosen
    auto_phases = policy.fno_block_precision == "auto" and \
        build_steps.parse_precision_schedule(config.opt.precision_schedule) is not None
    if policy.fno_block_precision == "auto":
        if not auto_phases:
            from .diagnose.auto import agree_across_ranks, calibrate_from_loader

            # under torchrun each rank measured its own shard: all run the most precise choice
            auto_decision = agree_across_ranks(model, calibrate_from_loader(model, train_loader, data_processor))
            if resume_dir is not None:  # the run's decision, or (a condition changed) its weights measured
                auto_decision = resumed_auto_decision(model, auto_decision, resume_dir, train_loader, data_processor,
                                                      config, policy, device, log)
        policy = policy.replace(fno_block_precision=auto_decision["fno_block_precision"] if auto_decision
                                else "full")  # the model's mode until the first phase is decided
        if auto_decision is not None and stabilizer_note is None:  # the calibration may choose float16 "half"
            stabilizer_note = note_stabilizer_off(policy)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    training_loss, eval_losses = build_losses(config, data_dims(train_loader))
    schedule = build_schedule(config, policy)
    if auto_decision is not None:  # autocast only where the calibration accepts it too
        from .diagnose.auto import decide_autocast

        auto_decision = decide_autocast(auto_decision, schedule[0].autocast,
                                        resolve_autocast_scope(policy.autocast_scope, device.type))
        if schedule[0].autocast and not auto_decision["autocast"]:
            schedule = build_schedule(config, policy, autocast=False)
    best_metric = best_metric_key(config.data.train_resolution) if save_best else None
    trainer = build_trainer(config, model, data_processor, schedule, device, progress=progress, policy=policy,
                            run_dir=out if is_writer else None, best_metric=best_metric,
                            log=_progress_log(log, progress), auto_precision=auto_phases)
    if resume:  # on the states the trainer's resume reads, before it loads them: a refused resume trains
        # nothing and keeps its previous command.json (recorded only once an epoch is saved)
        trainer.check_resume_states = partial(check_resume_settings, optimizer, scheduler)
        # a run with no epoch left: a line of the run's log, not the trainer's Python warning
        # (the epochs the checkpoint holds, which a resume with a smaller --opt.n_epochs does not change)
        trainer.on_finished_run = lambda folder: log(
            f"[neuralop-mp] {folder} already finished all {trainer.start_epoch} epochs; nothing to train "
            f"(resume with --opt.n_epochs N, N > {trainer.start_epoch}, to train more)")
    log(
        f"[neuralop-mp] {type(model).__name__} with {parameters_text(parameter_counts(model))} parameters, "
        f"{len(train_loader.dataset)} training samples at {config.data.train_resolution}, "
        f"precision schedule {schedule}, optimizer {type(optimizer).__name__}, on {device}, "
        f"{config.opt.n_epochs} epochs" + (f", resuming from {resume_dir}" if resume else "")
    )

    train_start = time.perf_counter()
    with _resume_command(trainer, out, command, record_resume, save_best=bool(save_best), **(command_flags or {})):
        trainer.train(
            train_loader=train_loader,
            test_loaders=test_loaders,
            optimizer=optimizer,
            scheduler=scheduler,
            regularizer=False,
            training_loss=training_loss,
            eval_losses=eval_losses,
            save_every=1 if write else None,
            save_dir=checkpoint_dir or "./ckpt",
            resume_from_dir=resume_dir,
        )
        # a finished run resumed whose outputs are those of its last epoch: nothing was trained with this
        # resume's config, so nothing of the run is rewritten (an override of the weights' storage, say,
        # would round the saved model and stand in command.json for epochs it never trained)
        kept = current_results(out, trainer.history) if write and trainer.resumed_finished_run else None
        if kept is not None:
            trainer.on_checkpoint = None  # the run keeps its record: _resume_command writes none
    if kept is not None:
        log(f"[neuralop-mp] {out} keeps its final model, {RESULTS_FILE} and {COMMAND_FILE} as they are: "
            "no epoch was trained with this resume's settings")
        # no model_object: the one built here carries this resume's settings, not the saved model's
        return {**kept, "output_dir": str(out)}
    train_time = time.perf_counter() - train_start
    half_dtype = policy.half_torch_dtype(device)
    history = list(getattr(trainer, "history", []))
    metrics = evaluate_final(trainer, test_loaders, eval_losses)
    epoch_times = [h["epoch_time"] for h in history if h.get("epoch_time") is not None]
    phases = phase_ranges(history)
    sizes = [config.data.train_resolution, *test_loaders]
    for phase in phases:  # a span a resume ran in another half type says what that one computed
        phase_half = getattr(torch, phase["half_dtype"]) if phase.get("half_dtype") else half_dtype
        phase["ran_as"] = precision_as_run(phase["mode"], phase_half, device, sizes)
    if trainer.resumed_finished_run:  # nothing trained nor evaluated (the metrics are the history's): the
        # reports below describe the last forward, so one evaluation of every test loader runs, as the last epoch's
        evaluate_loaders(trainer, test_loaders, eval_losses)
    forward_reports = {"product_paths": summarize_product_paths(model),
                       "pointwise_work": describe_pointwise_tiles(model)}

    result = {
        "config_name": config.name,
        "config": config_to_dict(config),
        "device": str(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "cpu_allocator": describe_cpu_allocator() if device.type == "cpu" else None,
        "world_size": distributed.world_size(),
        "model": type(model).__name__,
        "train_resolution": config.data.train_resolution,
        "test_resolutions": list(test_loaders),
        "data_files": data_files,
        "metrics": metrics,
        "seconds_per_epoch": (sum(epoch_times) / len(epoch_times)) if epoch_times else train_time / config.opt.n_epochs,
        "train_time_s": train_time,
        "precision": {
            "schedule": str(schedule),
            "phases": phases,
            "final_mode": history[-1].get("precision") if history else policy.fno_block_precision,
            "half_dtype": f"{policy.half_dtype} ({str(half_dtype).replace('torch.', '')})",
            "spectral_weight_dtype": policy.spectral_weight_dtype,
            # where autocast phases rounded activations to 16 bits ("auto" resolved on this device)
            "autocast_scope": (f"{policy.autocast_scope} "
                               f"({resolve_autocast_scope(policy.autocast_scope, device.type)})"),
            # the kernel each spectral layer chose on this device in the last forward (evaluation)
            "product_paths": forward_reports["product_paths"],
            "auto_decision": auto_decision,
            # "auto" under a schedule: each phase's re-check, of this process and of those the run resumed
            # from (the history's; a check is recorded in the epoch it was made)
            "auto_rechecks": [h["auto_check"] for h in history if h.get("auto_check")] if auto_phases else None,
            "stabilizer_note": stabilizer_note,
        },
        # the pointwise work in tiles of grid points on CPU (neuralop_mp.models.pointwise_tiles)
        "pointwise_work": forward_reports["pointwise_work"],
        "skipped_steps": sum(int(h.get("skipped_steps") or 0) for h in history),
        "memory": memory_figures(model, optimizer, history),
        "history": history,
        "best": best_epoch(history, best_metric),
        "wall_time_s": time.perf_counter() - start,
    }
    result["output_dir"] = None
    result["files"] = {}
    if write and is_writer:
        result["output_dir"] = str(out)
        check_run_folder_present(out)
        model_files = save_model(model, out, FINAL_MODEL)
        best_file = out / f"{BEST_MODEL_NAME}{STATE_DICT_SUFFIX}"
        if save_best and not best_file.is_file():  # no finite epoch, or --save_best given first at a resume
            reason = no_best_model_reason(best_metric, result["best"], name_epoch=True)
            log(f"[neuralop-mp] no best model file: {reason}")
        result["files"] = write_outputs(result, out, extra_files={
            "model": model_files["state_dict"], "checkpoint": str(checkpoint_dir),
            **({"data_processor": str(processor_file)} if processor_file else {}),
            **({"best_model": str(best_file)} if save_best and best_file.is_file() else {})})
    result["model_object"] = model
    return result


def current_results(out, history):
    """The ``results.json`` of the run folder ``out`` where it records the epochs of ``history`` (the
    checkpoint's, as a resume loaded it) and the final model file is there, else None (missing,
    unreadable, or of an earlier end of the run: a resume stopped after its last save, before its
    final one). What a finished run resumed keeps rather than writes again: its final save follows
    the final model's, so both are of the run's last epoch. The epochs are read as
    :func:`~neuralop_mp.run_folder.results_behind` reads them
    (:func:`~neuralop_mp.run_folder.recorded_epochs`)."""
    from .run_folder import FINAL_MODEL, read_results, recorded_epochs
    from .training.checkpointing import STATE_DICT_SUFFIX

    try:
        results = read_results(out)
    except (OSError, ValueError):  # damaged: written again
        return None
    if not history or not (Path(out) / f"{FINAL_MODEL}{STATE_DICT_SUFFIX}").is_file():
        return None
    return results if recorded_epochs(results) == [h.get("epoch") for h in history] else None


# the optimizer's parameter-group settings and the scheduler's attributes that config keys set:
# loading a checkpoint replaces them with the saved ones (torch's load_state_dict)
_SCHEDULER_SETTINGS = {argument: f"opt.{key}" for arguments in SCHEDULER_ARGUMENTS.values()
                       for argument, key in arguments.items()}


def _optimizer_settings():
    from .optim.factory import TENSORGRAD_FIELDS

    # initial_lr: the configured rate, kept while "lr" decays (build_scheduler sets it for ReduceLROnPlateau;
    # an optimizer.pt saved before it did lacks it, and resumes with the rate unchecked, as it always did)
    return {"initial_lr": "opt.learning_rate", "weight_decay": "opt.weight_decay", "betas": "opt.betas",
            **{name: f"opt.tensorgrad_{name}" for name in TENSORGRAD_FIELDS}}


def check_resume_settings(optimizer, scheduler, states, checkpoint_dir):
    """Refuse a resume whose optimizer or scheduler settings differ from the checkpoint's.

    Resuming loads the saved optimizer and scheduler states, which bring back the
    settings the run was saved with (learning rate, weight decay, step size, ...): an
    override given with ``--resume`` would be ignored while ``command.json`` and
    ``results.json`` recorded it. :func:`run_training` has the trainer's resume call it
    on the states it read (``check_states`` of
    :func:`~neuralop_mp.training.checkpointing.load_training_files`), before it loads
    them: each file is read once, and one that cannot be read is refused there, by name.

    Parameters
    ----------
    optimizer, scheduler
        Built from this run's config, nothing loaded into them yet.
    states : dict
        The saved states by role (``"optimizer"``, ``"scheduler"``; a role the resume
        does not load is absent), their class and parameter layout already checked.
    checkpoint_dir : str or Path
        The folder they were read from, for the message.

    Raises
    ------
    RunSetupError
        Naming each config key with the value given and the value saved.
    """
    from .training.resume import changed_settings, given_and_saved

    folder = Path(checkpoint_dir)
    group_keys = _optimizer_settings()  # of as many groups as this run's (checkpointing.check_optimizer_state)
    changed = {}
    for group, setting, new, saved in changed_settings(optimizer, scheduler, states, group_keys, _SCHEDULER_SETTINGS):
        key = _SCHEDULER_SETTINGS[setting] if group is None else group_keys[setting]
        changed.setdefault(key, (new, saved))
    if changed:
        raise RunSetupError(
            f"Cannot resume {folder} with other optimizer or scheduler settings than it was saved with "
            f"({given_and_saved(changed)}): "
            "the saved optimizer and scheduler states would replace them. Resume with the saved values, or start "
            "a new run.")


@contextmanager
def _resume_command(trainer, out, command, record, **flags):
    """While a resumed run trains, its ``command.json`` comes to record ``command`` (the run's
    overrides merged with the ones the resume gave), so a later ``eval`` or ``--resume``
    rebuilds the config the run now trains with.

    It holds from the first epoch the resumed run saves (or from when training ends, for a
    run that had no epoch left and whose outputs are written again; a caller that keeps them
    unsets ``trainer.on_checkpoint`` in the block): until then nothing was trained with the new overrides (the
    checkpoint may not even fit them), and a run stopped before, by an error, Ctrl-C or a
    kill alike, keeps the record it had. Right before ``trainer`` saves that epoch, the
    record is written as pending from it (:func:`~neuralop_mp.run_folder.write_pending_command`),
    and right after, alone: whenever a kill comes (the save's rename included),
    :func:`~neuralop_mp.run_folder.read_command` gives the command of the epoch the checkpoint
    holds, never the run's earlier overrides beside an epoch the resume trained.
    A write that fails is said in a ``UserWarning`` (under ``neuralop-mp train`` one warning line,
    :mod:`neuralop_mp.warning_lines`) and tried again.
    """
    from .run_folder import write_command, write_pending_command

    if not record:
        yield
        return
    def on_checkpoint(save_dir):  # the trainer saves its state only after an epoch it trained
        try:
            write_command(out, *command, **flags)
        except OSError as err:  # a full disk must not end the run: tried again at the next epoch and at the end
            text = (f"Could not record the resumed run's command in {out}: {err}; trying again after "
                    "the next saved epoch and when training ends.")
            warnings.warn(text, UserWarning, stacklevel=2)
            return
        trainer.on_checkpoint = None  # recorded once

    pending_from = {"epoch": None, "written": False}

    def before_checkpoint(save_dir):
        if trainer.on_checkpoint is not None and not pending_from["written"]:  # the command is not recorded yet
            if pending_from["epoch"] is None:  # the first epoch this run saves (the trainer's, as the manifest's)
                pending_from["epoch"] = trainer.epoch
            try:
                write_pending_command(out, *command, pending_from["epoch"], **flags)
                pending_from["written"] = True
            except OSError:  # a full disk: on_checkpoint's write after the save warns; both tried again
                pass

    trainer.on_checkpoint, trainer.before_checkpoint = on_checkpoint, before_checkpoint
    try:
        yield
    finally:
        pending, trainer.on_checkpoint = trainer.on_checkpoint is not None, None
        trainer.before_checkpoint = None
    # a finished run resumed whose outputs are missing or stale (written now, from this config), or a
    # write that failed after every saved epoch: this one raises, so the run does not end with a stale record
    if pending:
        write_command(out, *command, **flags)


def _progress_log(log, progress):
    """Messages printed while a tqdm bar runs go through ``tqdm.write`` so the bar stays intact."""
    if not progress or log is not print:
        return log
    from .progress_bars import write_line

    return write_line
