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

:func:`run_training` chains them, trains, evaluates the final model at every test
resolution and writes ``results.json`` and ``loss_curve.png``
(:mod:`neuralop_mp.train_report`). ``neuralop-mp train`` is a thin shell around it.
"""
import inspect
import time
from datetime import datetime
from pathlib import Path

import torch

from .precision_policy import PrecisionPolicy
from .vocabulary import none_if_null


def resolve_device(device):
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def section_kwargs(section):
    """The fields of a config section as a plain dict (no zencfg bookkeeping)."""
    from .configs.zencfg_compat import field_names

    return {name: getattr(section, name) for name in field_names(section)}


def build_data(config, *, progress=True):
    """Load (generating when missing) the dataset that ``config.data`` describes.

    Returns
    -------
    train_loader, test_loaders, data_processor
        ``test_loaders`` is a dict keyed by resolution.
    """
    from . import data as data_module

    loader_name = config.data.loader_name()
    loader = getattr(data_module, loader_name)
    kwargs = section_kwargs(config.data)
    params = inspect.signature(loader).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    not_taken = [] if takes_any else sorted(k for k in kwargs if k not in params)
    if not_taken:
        raise ValueError(
            f"config.data has fields {not_taken} that neuralop_mp.data.{loader_name} does not "
            f"take; its arguments are: {', '.join(params)}."
        )
    if "progress" in params or takes_any:
        kwargs["progress"] = progress
    return loader(**kwargs)


def build_model(config, device="cpu", policy=None):
    """Seed torch with ``config.seed`` and build ``config.model`` on ``device`` (with
    ``policy``, the parsed precision keys, when given)."""
    from .models.registry import get_model

    torch.manual_seed(config.seed)
    return get_model(config, precision_policy=policy).to(device)


def attach_patching(config, model, data_processor, device="cpu"):
    """Wrap the data processor in upstream's multi-grid patching when ``patching.levels > 0``."""
    if not config.patching.levels:
        return data_processor
    from neuralop.data.transforms.data_processors import MGPatchingDataProcessor

    return MGPatchingDataProcessor(
        model=model,
        levels=config.patching.levels,
        padding_fraction=config.patching.padding,
        stitching=config.patching.stitching,
        device=str(device),
        in_normalizer=getattr(data_processor, "in_normalizer", None),
        out_normalizer=getattr(data_processor, "out_normalizer", None),
    )


def build_optimizer(model, config):
    """The optimizer ``config.opt`` names (:func:`neuralop_mp.optim.factory.create_optimizer`)."""
    from .optim.factory import create_optimizer

    return create_optimizer(model, config.opt)


def build_scheduler(optimizer, config):
    """The learning-rate scheduler of ``config.opt`` (stepped once per epoch by the trainer)."""
    opt = config.opt
    name = str(opt.scheduler)
    lr_scheduler = torch.optim.lr_scheduler
    if name == "StepLR":
        return lr_scheduler.StepLR(optimizer, step_size=opt.step_size, gamma=opt.gamma)
    if name == "CosineAnnealingLR":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=opt.scheduler_T_max)
    if name == "ReduceLROnPlateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=opt.gamma, patience=opt.scheduler_patience, mode="min"
        )
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


def build_losses(config, n_dims):
    """``(training_loss, eval_losses)``: the loss ``opt.training_loss`` names; relative L2 and H1."""
    from neuralop.losses import H1Loss, LpLoss

    eval_losses = {"l2": LpLoss(d=n_dims, p=2), "h1": H1Loss(d=n_dims)}
    from .configs.validation import TRAINING_LOSSES
    from .vocabulary import check_choice

    check_choice("opt.training_loss", config.opt.training_loss, TRAINING_LOSSES)
    return eval_losses[config.opt.training_loss], eval_losses


def build_schedule(config, policy=None):
    """``opt.precision_schedule`` if set, else a constant schedule of ``model.fno_block_precision``.

    The constant schedule keeps that mode's defaults (autocast on for "mixed" and
    "half"; for "half", tanh with float16 and none with bfloat16, whose range needs no
    stabilizer) unless ``model.stabilizer`` is given explicitly.
    """
    from .configs.validation import validate_precision_schedule
    from .training.schedule import PrecisionSchedule

    schedule = validate_precision_schedule(config.opt.precision_schedule)
    if schedule is not None:
        return schedule
    policy = policy or PrecisionPolicy.from_config(config.model)
    phase_kwargs = {"stabilizer": policy.stabilizer} if policy.stabilizer is not None else {}
    return PrecisionSchedule.constant(policy.fno_block_precision, **phase_kwargs)


def build_trainer(config, model, data_processor, schedule, device="cpu", *, progress=True, policy=None):
    """:class:`~neuralop_mp.MixedPrecisionTrainer` running ``schedule`` for ``opt.n_epochs``."""
    from .training.trainer import MixedPrecisionTrainer

    opt = config.opt
    return MixedPrecisionTrainer(
        model=model,
        n_epochs=opt.n_epochs,
        device=device,
        data_processor=data_processor,
        eval_interval=opt.eval_interval,
        verbose=config.verbose,
        mixed_precision=any(phase.autocast for phase in schedule),
        precision_schedule=schedule,
        half_dtype=(policy or PrecisionPolicy.from_config(config.model)).half_dtype,
        loss_scaling=opt.loss_scaling,
        max_consecutive_skips=opt.max_consecutive_skips,
        progress=progress,
    )


def default_output_dir(config, now=None):
    """``./runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.name}-{stamp}"


def tensor_bytes(obj):
    """Bytes of every tensor in a (nested) dict / list / tuple, e.g. optimizer state."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def memory_figures(model, optimizer, history):
    """Parameter bytes, optimizer state bytes and the activation figure of the history."""
    figures = {
        "params_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "n_params": sum(p.numel() for p in model.parameters()),
        "optimizer_state_bytes": tensor_bytes(list(optimizer.state.values())),
    }
    for key in ("saved_bytes", "cuda_peak_bytes"):
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
    metrics = {}
    for resolution, loader in test_loaders.items():
        errors = trainer.evaluate(eval_losses, loader, log_prefix=str(resolution))
        metrics.update({k: float(v) for k, v in errors.items()})
    return metrics


def run_training(config, *, progress=True, output_dir=None, write=True, log=print):
    """Train and evaluate the experiment ``config`` describes; write its results.

    Parameters
    ----------
    config : TrainConfig
        A validated config (:func:`neuralop_mp.configs.load_config`).
    progress : bool
        Progress bars for data generation and training epochs.
    output_dir : str or Path, optional
        Overrides ``config.output_dir``; default ``./runs/<name>-<timestamp>``.
    write : bool
        Write ``results.json`` and ``loss_curve.png`` into the output folder.
    log : callable
        Receives the pipeline's progress messages (``print`` by default).

    Returns
    -------
    dict
        ``config`` (nested dict), ``metrics`` (final test errors per resolution),
        ``history`` (the trainer's per-epoch records), ``memory``, ``precision``
        (final mode and the schedule's phases), ``seconds_per_epoch``,
        ``wall_time_s``, ``train_resolution``, ``output_dir`` and ``files``.
    """
    from .configs import config_to_dict, validate_config
    from .train_report import phase_ranges, write_outputs

    validate_config(config)
    start = time.perf_counter()
    device = resolve_device(config.device)

    log(f"[neuralop-mp] {config.name}: loading data ({type(config.data).__name__})")
    train_loader, test_loaders, data_processor = build_data(config, progress=progress)
    # the precision keys are parsed once; model, schedule and trainer share the policy
    policy = PrecisionPolicy.from_config(config.model)
    model = build_model(config, device, policy)
    data_processor = attach_patching(config, model, data_processor, device)
    auto_decision = None
    if policy.fno_block_precision == "auto":  # decided from the first batches, then trained as chosen
        from .diagnose.auto import calibrate_from_loader

        auto_decision = calibrate_from_loader(model, train_loader, data_processor)
        policy = policy.replace(fno_block_precision=auto_decision["fno_block_precision"])
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    training_loss, eval_losses = build_losses(config, data_dims(train_loader))
    schedule = build_schedule(config, policy)
    trainer = build_trainer(config, model, data_processor, schedule, device, progress=progress, policy=policy)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"[neuralop-mp] {type(model).__name__} with {n_params:,} parameters, "
        f"{len(train_loader.dataset)} training samples at {config.data.train_resolution}, "
        f"precision schedule {schedule}, optimizer {type(optimizer).__name__}, on {device}"
    )

    train_start = time.perf_counter()
    trainer.train(
        train_loader=train_loader,
        test_loaders=test_loaders,
        optimizer=optimizer,
        scheduler=scheduler,
        regularizer=False,
        training_loss=training_loss,
        eval_losses=eval_losses,
    )
    train_time = time.perf_counter() - train_start
    half_dtype = policy.half_torch_dtype(device)
    history = list(getattr(trainer, "history", []))
    metrics = evaluate_final(trainer, test_loaders, eval_losses)
    epoch_times = [h["epoch_time"] for h in history if h.get("epoch_time") is not None]

    result = {
        "config_name": config.name,
        "config": config_to_dict(config),
        "device": str(device),
        "model": type(model).__name__,
        "train_resolution": config.data.train_resolution,
        "test_resolutions": list(test_loaders),
        "metrics": metrics,
        "seconds_per_epoch": (sum(epoch_times) / len(epoch_times)) if epoch_times else train_time / config.opt.n_epochs,
        "train_time_s": train_time,
        "precision": {
            "schedule": str(schedule),
            "phases": phase_ranges(schedule, config.opt.n_epochs, half_dtype),
            "final_mode": history[-1].get("precision") if history else policy.fno_block_precision,
            "half_dtype": f"{policy.half_dtype} ({str(half_dtype).replace('torch.', '')})",
            "spectral_weight_dtype": policy.spectral_weight_dtype,
            "auto_decision": auto_decision,
        },
        "skipped_steps": sum(int(h.get("skipped_steps") or 0) for h in history),
        "memory": memory_figures(model, optimizer, history),
        "history": history,
        "wall_time_s": time.perf_counter() - start,
    }
    result["output_dir"] = None
    result["files"] = {}
    if write:
        out = Path(output_dir or config.output_dir or default_output_dir(config))
        result["output_dir"] = str(out)
        result["files"] = write_outputs(result, out)
    result["model_object"] = model
    return result
