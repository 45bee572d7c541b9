"""``neuralop-mp eval``: the test errors of a saved model, as ``neuralop-mp train`` reports them.

The model comes from a ``save_checkpoint`` folder (a run folder of ``neuralop-mp
train``, or upstream's own ``FNO(...).save_checkpoint(folder, name)``). The data and
the evaluation settings come from the run's config (its ``command.json``), else from
a built-in config (``darcy`` by default), with any ``--key value`` override on top.
A run folder's ``data_processor.pt`` (the normalizers its training fitted) encodes the test
inputs and decodes the predictions: only the test files are read, with the physics of the
run's data (viscosity, final time, ...: a test file generated takes it, one of other physics is
refused); a run folder of an earlier version, without it, fits them on the training data
again, as its training did. A checkpoint folder that ``MixedPrecisionTrainer`` wrote (``save_every`` /
``save_best`` of a script under ``neuralop-mp run``) is evaluated with the data processor its
training used, which its ``precision_state.pt`` records for the trainer's own save (an upstream
script may train on raw data where the ``darcy`` config encodes them; a ``--data.encode_*`` given
that it does not do is refused), and its errors are compared with the ones that training recorded
at its last epoch (:func:`recorded_metrics_text`).
Overrides of the run's own config that would change what the model was trained on or how
its data are encoded (:data:`TRAINED_DATA_KEYS`) are refused.
A run's final model is evaluated in the precision its run finished in, its best model
in that of its best epoch, unless ``precision`` names another mode (the run's ``model.stabilizer``
kept where it applied to the whole run: :func:`_given_precision_schedule`; ``precision`` of the
mode that epoch ran in evaluates as it ran: :func:`_ran_in`); with the same data,
device and thread count, the errors are bitwise the ones ``train`` reported for that
epoch. A model saved elsewhere is evaluated in the precision, stabilizer and half type
its file records. A model with upstream's layers runs in full precision, with the stabilizer
its blocks apply (a run trained with ``--model.stabilizer tanh`` in full precision: tanh). A
run's final model that a ``--resume`` trained past and stopped before its final save is
refused, as a run stopped before its final save is
(:func:`~neuralop_mp.run_folder.check_final_model_current`).
"""
import math
import time
import warnings
from typing import NamedTuple

from .run_folder import (DATA_PROCESSOR_FILE, data_processor_from_state, find_checkpoint, load_data_processor,
                         load_model_and_precision, read_command, run_data_records)
from .training.checkpointing import PRECISION_STATE_FILE, STATE_DICT_SUFFIX
from .vocabulary import check_each_once

# the data keys of a run's config that fix the model's training data or their encoding: an
# evaluation of the run with another value would encode its inputs and decode its outputs
# unlike the training did (n_train: the samples the normalizers were fitted on), and a resume
# would fit other normalizers and go on training on other data (`neuralop-mp train --resume`
# refuses them too: :func:`changed_trained_data`)
TRAINED_DATA_KEYS = ("train_resolution", "encode_input", "encode_output", "n_train")

# eval's error and the one a checkpoint's training recorded may differ by this factor, either way,
# without a warning: eval's test set is the config's (other samples, usually more: the mean of a
# few rel. L2 errors moves by tens of percent from one draw to another), its precision may be
# another; another normalizer, or other data, is off by far more (upstream's train_darcy.py model
# decoded with the darcy config's normalizer: 0.66 for 32.4)
RECORDED_METRIC_FACTOR = 1.5

# the data section's encoding keys: a checkpoint that records its training's data processor encodes
# as the training did, and refuses one given that it does not encode so (:func:`_check_given_encoding`)
ENCODING_KEYS = ("encode_input", "encode_output")


class TrainingRecord(NamedTuple):
    """What a trainer's checkpoint folder records of its training (:func:`training_record`)."""

    processor: dict = None  # its data processor (run_folder.data_processor_state), or None
    last_epoch: dict = None  # the history entry of its last epoch, or None
    unreadable: str = None  # why a record that is there cannot be read, or None


def training_record(folder, name):
    """The :class:`TrainingRecord` of the weights ``name`` in ``folder``: what the folder's
    ``precision_state.pt``, which ``MixedPrecisionTrainer.checkpoint`` writes with its own save,
    records (:func:`~neuralop_mp.models.checkpoints.trainer_record`). Empty for a folder without
    one (a model saved by upstream's ``save_checkpoint``), for other weights than the trainer's
    save (a user's own ``model`` beside its ``best_model``: another model's record), and for one
    that cannot be read, which ``unreadable`` then says (the weights load without it: eval goes on
    as for a model saved elsewhere, with nothing to compare, and warns)."""
    from .models.checkpoints import trainer_record
    from .training.checkpointing import CheckpointError

    try:
        found = trainer_record(folder, name)
    except CheckpointError as error:  # damaged: nothing to use, which eval says
        return TrainingRecord(unreadable=str(error))
    state = found[1] if found is not None else None
    if not isinstance(state, dict):
        return TrainingRecord()
    history = state.get("history")
    last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else None
    processor = state.get("data_processor")
    return TrainingRecord(processor if isinstance(processor, dict) else None, last)


def recorded_metrics_text(metrics, last_epoch, processor_recorded, encoding_flags=True):
    """One line saying which of eval's ``metrics`` differ from the same keys of the checkpoint's
    recorded ``last_epoch`` (its history entry) by more than :data:`RECORDED_METRIC_FACTOR`
    either way, with both numbers and the likely causes; None where none does (or nothing
    comparable was recorded). ``processor_recorded``: eval used the training's own data processor,
    so another normalizer is not the cause. ``encoding_flags``: the config's data section has the
    :data:`ENCODING_KEYS` (Burgers' has none: only another config encodes otherwise)."""
    if not last_epoch:
        return None
    off = []
    for key, value in metrics.items():
        recorded = last_epoch.get(key)
        if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
            continue
        if not (math.isfinite(value) and math.isfinite(recorded)) or recorded <= 0 or value <= 0:
            continue  # inf/NaN are said by themselves; a zero error has no ratio
        if max(value / recorded, recorded / value) > RECORDED_METRIC_FACTOR:
            off.append(f"{key} {value:.4g} (recorded {recorded:.4g})")
    if not off:
        return None
    other_data = "other test data (--data.data_root, --data.n_tests)"
    if processor_recorded:
        causes = "other test data than the training's (--data.data_root, --data.n_tests) or another precision"
    elif encoding_flags:
        causes = ("the training encoded its data otherwise than this config (upstream's scripts train on raw data: "
                  "try --data.encode_output false --data.encode_input false, or the training's config with "
                  f"--config), or {other_data}")
    else:
        causes = ("the training encoded its data otherwise than this config (try its config with --config), "
                  f"or {other_data}")
    return (f"the test errors differ from the ones the checkpoint's training recorded at its last epoch "
            f"(epoch {last_epoch.get('epoch')}) by more than {RECORDED_METRIC_FACTOR}x: {', '.join(off)}; "
            f"likely causes: {causes}.")


class ConfigSource(NamedTuple):
    """What an evaluation's config starts from (:func:`config_source`)."""

    spec: object  # a config's name or path.py[:Class] (as command.json records it), or the config it names
    overrides: list
    run: bool  # the run's own recorded config: its model runs in the precision the run trained in
    flags: dict = None  # the run's recorded flags (threads, ...) with its own config, else None


def config_source(folder, spec=None):
    """``(spec, overrides, run, flags)`` an evaluation's config starts from: the run's recorded
    ones (``run`` True, and its recorded flags) when ``folder`` has a ``command.json`` and no
    ``spec`` is given, else ``spec`` (default ``darcy``) without overrides."""
    recorded = read_command(folder) if spec is None else None
    if recorded is not None:
        return ConfigSource(recorded["config"], list(recorded["overrides"]), True, dict(recorded.get("flags") or {}))
    return ConfigSource(spec or "darcy", [], False)


def _grid_sizes(resolutions):
    """``--res`` values as grid sizes (integers >= 2), else a ValueError naming them."""
    try:
        sizes = [int(r) for r in resolutions]
    except ValueError:
        raise ValueError(f"Invalid --res {' '.join(map(str, resolutions))}: give integer grid sizes, "
                         "e.g. --res 16 32.") from None
    bad = [r for r in sizes if r < 2]
    if bad:
        raise ValueError(f"Invalid --res {bad}: resolutions are grid sizes >= 2.")
    # the config's check (validate_data) would name data.test_resolutions: --res is named here
    return check_each_once(f"--res {' '.join(map(str, sizes))}", sizes)


def eval_config(source, overrides=(), resolutions=None):
    """The config of an evaluation, loaded once: ``source``'s (:func:`config_source`: the run's
    own, else a given or the default config), then ``overrides``, then ``resolutions`` as the
    test resolutions: one the config tests keeps its own test set's size and batch size (so the
    errors there are the ones the run reported), another takes those of its first test set."""
    from .configs import load_config, resolve_config
    from .configs.validation import validate_config

    spec = resolve_config(source.spec)  # once: a .py config file runs (its side effects too) once
    args = [*source.overrides, *overrides]
    run_config = load_config(spec, source.overrides, validate=False) if source.run and overrides else None
    config = load_config(spec, args, validate=False)
    if run_config is not None:
        _check_trained_data(run_config.data, config.data)
    if not resolutions:
        return validate_config(config)
    resolutions = _grid_sizes(resolutions)
    data = config.data
    tested = dict(zip(data.test_resolutions, zip(data.n_tests, data.test_batch_sizes)))
    sets = [tested.get(res, (data.n_tests[0], data.test_batch_sizes[0])) for res in resolutions]
    data.n_tests = [n for n, _ in sets]
    data.test_batch_sizes = [batch_size for _, batch_size in sets]
    data.test_resolutions = resolutions
    return validate_config(config)


def given_encoding(overrides):
    """The :data:`ENCODING_KEYS` of the data section that an evaluation's own ``overrides`` give."""
    from .configs.loading import parse_overrides

    keys = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides), lenient=True)
    return tuple(key for key in ENCODING_KEYS if f"data.{key}" in keys)


def _check_given_encoding(config, given, processor, where):
    """Refuse, in one line, a ``--data.encode_input`` / ``--data.encode_output`` given to the
    evaluation (``given``: :func:`given_encoding`) of a checkpoint whose ``processor`` (its
    training's, recorded in ``where``) does not encode that side so: eval encodes as the training
    did, and would ignore it."""
    does = {"encode_input": processor.in_normalizer is not None,
            "encode_output": processor.out_normalizer is not None}
    off = [key for key in given if bool(getattr(config.data, key)) != does[key]]
    if off:
        listed = ", ".join(f"--data.{key} {str(getattr(config.data, key)).lower()} (the training's: "
                           f"{str(does[key]).lower()})" for key in off)
        raise ValueError(f"{listed}: eval of a checkpoint that records its training's data processor ({where}) "
                         "encodes as the training did; drop the override.")


def changed_trained_data(run_data, data):
    """``{"data.KEY": (given, the run's)}`` of the :data:`TRAINED_DATA_KEYS` that the data section
    ``data`` sets otherwise than the run's ``run_data``: what changes the data a run's model was
    trained on or their encoding. The rule of ``eval``'s refusal (:func:`_check_trained_data`)
    and of ``train --resume``'s.

    Another data section class (``--data NavierStokesDatasetConfig`` for a Darcy run: another
    dataset) is ``{"data": (its name, the run's)}`` alone: the keys it has otherwise follow from it.
    """
    given, run = type(data).__name__, type(run_data).__name__
    if given != run:
        return {"data": (given, run)}
    return {f"data.{key}": (getattr(data, key, None), getattr(run_data, key)) for key in TRAINED_DATA_KEYS
            if hasattr(run_data, key) and getattr(data, key, None) != getattr(run_data, key)}


def _check_trained_data(run_data, data):
    """Refuse, naming the key, the value given and the run's, an override of the run's config
    that changes what its model was trained on or how its data are encoded
    (:func:`changed_trained_data`)."""
    changed = changed_trained_data(run_data, data)
    if changed:
        listed = "; ".join(f"--{key} {value} (the run's: {run})" for key, (value, run) in changed.items())
        raise ValueError(f"{listed}: eval of a run keeps the data its model was trained on and their encoding; "
                         f"drop the override, or give --config CONFIG to evaluate with another config's data.")


def _test_loaders(data, progress, folder):
    """The test sets of the data section ``data`` alone (:func:`~neuralop_mp.data.loaders.load_test_sets`),
    with the physics of the data the run in ``folder`` trained on (:func:`~neuralop_mp.run_folder.run_data_records`).
    The config check admits the built-in loaders only, each with files of its own."""
    from .data.loaders import load_test_sets

    return load_test_sets(data.loader_name(), data.data_root, data.n_tests, data.test_batch_sizes,
                          data.test_resolutions, data.generate, progress, data.seed,
                          reference=run_data_records(folder, data))


def _run_schedule(config, saved_precision):
    """The schedule the run trained with. Under ``fno_block_precision="auto"`` the
    configured mode is only the cheapest allowed: the run's last phase is taken in the
    mode the run decided, which the checkpoint records."""
    from . import build_steps
    from .train_pipeline import build_schedule
    from .training.schedule import PrecisionSchedule

    policy = build_steps.precision_policy(config)
    if policy.fno_block_precision != "auto":
        return build_schedule(config, policy)
    decided = saved_precision["mode"]
    schedule = build_steps.parse_precision_schedule(config.opt.precision_schedule)
    if schedule is None:  # decided once before training: a constant schedule of that mode
        return build_schedule(config, policy.replace(fno_block_precision=decided))
    last = schedule[-1]
    return PrecisionSchedule.constant(decided, autocast=last.autocast, stabilizer=last.stabilizer)


def _ran_in(as_run, precision, config):
    """Whether ``precision`` (``--precision``) is the mode the model ran in: the mode of its phase
    in ``as_run`` (``(schedule, epoch)``: a run's, as :func:`_run_schedule` and :func:`_model_epoch`
    give them; a model saved elsewhere, the constant precision its file records). Then the model is
    evaluated as it ran, with that phase's autocast and stabilizer (a schedule's ``mixed/tanh`` last
    phase keeps its tanh; an upstream FNO holding tanh, ``--precision full``, keeps it), not the
    mode's defaults: "evaluate in this mode" of a model that ran in it is as it ran."""
    schedule, epoch = as_run
    return schedule.phase_for_epoch(epoch, config.opt.n_epochs).mode == precision


def _given_precision_schedule(config, policy, precision, run):
    """The constant schedule of ``--precision``: the mode's defaults, but for the run's own config
    without ``opt.precision_schedule``, whose recorded stabilizer request (``policy``'s) applied
    to the whole run and still does: "off" (a typed ``--model.stabilizer none``) runs none, "tanh"
    runs tanh, in any mode; unset keeps the mode's default (tanh for float16 "half"). Under a
    schedule the request ran in no phase (a phase's own ``/tanh`` is kept where ``precision`` is
    that phase's mode: :func:`_ran_in`); another config's says nothing of the model."""
    from . import build_steps
    from .training.schedule import PrecisionSchedule

    if run and build_steps.parse_precision_schedule(config.opt.precision_schedule) is None:
        return build_steps.precision_schedule(None, policy.replace(fno_block_precision=precision))
    return PrecisionSchedule.constant(precision)


def _model_epoch(folder, name, config):
    """The epoch whose precision a run's model is evaluated in: the run's last epoch for its
    final model; for its best model, the best epoch, from ``results.json``, else (a run
    stopped before writing it, or a resume stopped before rewriting it:
    :func:`~neuralop_mp.run_folder.results_behind`) the lowest test L2 at the training
    resolution in the history of its ``checkpoint/``, else the last epoch."""
    from .run_folder import BEST_MODEL, CHECKPOINT_DIR, read_results, results_behind
    from .train_report import best_epoch, best_metric_key
    from .training.checkpointing import PRECISION_STATE_FILE, load_weights_only

    last = config.opt.n_epochs - 1
    if name != BEST_MODEL:
        return last
    results = read_results(folder) or {}
    best = results.get("best") if results_behind(folder, results) is None else None
    if best is None:
        try:
            history = load_weights_only(folder / CHECKPOINT_DIR / PRECISION_STATE_FILE)["history"]
        except Exception:  # no readable training state: the last epoch, as for the final model
            return last
        best = best_epoch(history, best_metric_key(config.data.train_resolution))
    return min(int(best["epoch"]), last) if best else last


def _encoding_text(processor):
    """What ``processor`` encodes, in words: "inputs normalized, raw outputs", ... (None: nothing)."""
    return _encoding_words(getattr(processor, "in_normalizer", None) is not None,
                           getattr(processor, "out_normalizer", None) is not None)


def _encoding_words(inputs, outputs):
    """"inputs normalized, raw outputs", ...: whether the ``inputs`` and the ``outputs`` are normalized."""
    sides = {"inputs": bool(inputs), "outputs": bool(outputs)}
    encoded = [side for side, on in sides.items() if on]
    raw = [side for side, on in sides.items() if not on]
    return ", ".join(([f"{' and '.join(encoded)} normalized"] if encoded else [])
                     + ([f"raw {' and '.join(raw)}"] if raw else []))


def _sets_encoding(data):
    """Whether the data section ``data`` has the :data:`ENCODING_KEYS` (Burgers' has none: its
    loader always normalizes inputs and outputs, as upstream's Burgers dataset)."""
    return all(hasattr(data, key) for key in ENCODING_KEYS)


def _config_encoding_text(data, processor, folder, name):
    """The log line of an evaluation that encodes its data as the config's data section ``data``
    says, not the run's own: the model ``name`` in ``folder`` records no data processor of its
    training (upstream's Trainer and ``save_checkpoint`` write none), or a run folder is evaluated
    with another config. Says what the config's ``processor`` (the one its loader built) encodes
    and how to change it: the two flags that set it (upstream's scripts train on raw data) where
    the section has them, else the training's config."""
    if (folder / DATA_PROCESSOR_FILE).is_file():  # a run folder evaluated with another config (--config)
        why = f"the run's own {DATA_PROCESSOR_FILE} goes with the run's own config, not with --config"
    else:
        why = (f"{folder / name}_* records no data processor of its training (upstream's Trainer and "
               "save_checkpoint write none)")
    if _sets_encoding(data):
        raw = " ".join(f"--data.{key} false" for key in ENCODING_KEYS)
        how = ("give its encoding with --data.encode_input / --data.encode_output (upstream's scripts train on raw "
               f"data: {raw}), or its config with --config.")
    else:  # no flag sets it
        how = (f"give its config with --config ({type(data).__name__} has no "
               f"{' / '.join(ENCODING_KEYS)}: its loader always encodes so).")
    return (f"data encoding: the config's ({_encoding_text(processor)}): {why}; if the training encoded "
            f"otherwise, {how}")


def non_finite_metrics_text(trainer, keys):
    """Why the test metrics ``keys`` an evaluation with ``trainer`` computed are inf/NaN, and what
    to try, in one line: a saved model's weights are checked first (training keeps the trainer's
    finite), then the trainer's own advice
    (:meth:`~neuralop_mp.training.trainer.MixedPrecisionTrainer.non_finite_metrics_cause`)."""
    from .optim.nonfinite import finite_flags

    params = list(trainer.model.named_parameters())
    flags = finite_flags([p.detach() for _, p in params])  # one read back per device
    bad = [name for (name, _), ok in zip(params, flags) if not ok]
    listed = ", ".join(keys)
    if bad:
        more = f" and {len(bad) - 3} more (of {len(params)})" if len(bad) > 3 else ""
        return (f"test metrics {listed} are inf/NaN: the model's weights {bad[:3]}{more} hold inf/NaN; "
                "evaluate a model saved before they did.")
    return (f"test metrics {listed} are inf/NaN although the weights are finite: "
            + trainer.non_finite_metrics_cause("it", "--precision full"))


def run_evaluation(path, *, spec=None, overrides=(), resolutions=None, precision=None, progress=False,
                   log=print):
    """Evaluate the model checkpoint at ``path`` on every test resolution.

    Parameters
    ----------
    path : str, Path or FoundCheckpoint
        A run folder, a folder with one ``NAME_state_dict.pt``, or that file; or the
        :class:`~neuralop_mp.run_folder.FoundCheckpoint` :func:`~neuralop_mp.run_folder.find_checkpoint`
        found for one.
    spec : str, optional
        Config to take data and settings from instead of the run's own (a built-in
        name or ``path.py[:Class]``).
    overrides : list of str
        ``--key value`` config overrides (``--data.data_root DIR``, ``--device cpu``, ...).
    resolutions : list of int, optional
        Test resolutions (default: the config's).
    precision : {"full", "mixed", "half"}, optional
        Evaluate in this precision instead of the one the model was trained in (the
        run's last epoch for its final model, its best epoch for ``best_model``), with
        the mode's defaults; a run trained without a precision schedule keeps its
        ``model.stabilizer`` ("off": none, "tanh": tanh, in any mode). The mode that
        epoch ran in evaluates the run's model as it ran (its phase's autocast and
        stabilizer: a schedule's last phase ``mixed/tanh`` with "mixed" keeps tanh).

    Returns
    -------
    dict
        ``checkpoint``, ``model``, ``device``, ``train_resolution``,
        ``test_resolutions``, ``n_test_samples`` (``{resolution: samples}``), ``metrics``
        (``{"16_l2": ..., "16_h1": ...}``), ``precision`` (mode, autocast, stabilizer, half
        dtype, what it ran as) and ``wall_time_s``.

    Raises
    ------
    CheckpointError
        For a model file (or its metadata) that cannot be loaded, naming it.
    """
    found = find_checkpoint(path)  # found (a run's final model: checked current) once, here
    # command.json read once, for the config and for whether it is the run's own
    source = config_source(found.folder, spec)
    return evaluate_with_config(found, source, eval_config(source, overrides, resolutions), precision=precision,
                                progress=progress, log=log, encoding_given=given_encoding(overrides))


def evaluate_with_config(path, source, config, *, precision=None, progress=False, log=print, encoding_given=()):
    """:func:`run_evaluation` with the config already built: ``source`` as :func:`config_source`
    read it for ``path``'s folder (whether the config is the run's own, whose model then runs in
    the precision the run trained in) and ``config`` as :func:`eval_config` built it from
    ``source`` (``neuralop-mp eval`` builds it to check its options). ``path`` as for
    :func:`run_evaluation`: a :class:`~neuralop_mp.run_folder.FoundCheckpoint` the caller found is
    neither looked up nor checked again. ``encoding_given``: the encoding keys the evaluation's own
    overrides give (:func:`given_encoding`), refused where a recorded data processor encodes otherwise."""
    from . import build_steps
    from .vocabulary import check_choice, dtype_name, PRECISION_MODES, resolve_half_dtype
    from .run_setup import resolve_device
    from .train_pipeline import attach_patching, build_data, build_losses, build_trainer, data_dims
    from .train_report import precision_as_run
    from .training.schedule import PrecisionSchedule, SkippedPhaseWarning
    from .warning_lines import log_warning

    start = time.perf_counter()
    found = find_checkpoint(path)  # a run's final model, the folder or the file named: current
    folder, name = found
    checkpoint = folder / f"{name}{STATE_DICT_SUFFIX}"
    if precision is not None:
        precision = check_choice("--precision", precision, PRECISION_MODES)
    device = resolve_device(config.device)
    model, saved_precision = load_model_and_precision(found, mixed_precision_layer=precision not in (None, "full"))
    model = model.to(device)
    log(f"[neuralop-mp] {type(model).__name__} from {folder / name}_*: loading data ({type(config.data).__name__})")
    # a trainer's checkpoint folder (not a run's): the processor its training used, and the errors it recorded
    record = TrainingRecord() if source.run else training_record(folder, name)
    if record.unreadable:
        log_warning(log, f"{record.unreadable.rstrip('.')}: the data processor and test errors its training recorded "
                         "are not used; the data are encoded as the config says and the errors are not compared.")
    saved_processor = None
    if source.run and (folder / DATA_PROCESSOR_FILE).is_file():  # the run's normalizers: no training data
        saved_processor = load_data_processor(folder)
    elif record.processor is not None:
        saved_processor = data_processor_from_state(record.processor, folder / PRECISION_STATE_FILE)
        _check_given_encoding(config, encoding_given, saved_processor, folder / PRECISION_STATE_FILE)
        unused = "; the config's data.encode_input/encode_output are not used" if _sets_encoding(config.data) else ""
        log(f"[neuralop-mp] data encoding: the training's own ({_encoding_text(saved_processor)}, as "
            f"{PRECISION_STATE_FILE} records it{unused})")
    # the config's encoding, said (as its loader built it) with how to change it
    say_config_encoding = saved_processor is None and not source.run and not record.unreadable
    test_loaders = _test_loaders(config.data, progress, folder) if saved_processor is not None else None
    if test_loaders is None:  # a run of an earlier version, or another config: fitted again, as training did
        sample_loader, test_loaders, data_processor = build_data(config, progress=progress)
        if say_config_encoding:
            log(f"[neuralop-mp] {_config_encoding_text(config.data, data_processor, folder, name)}")
    else:  # a test set's samples have the training samples' dimensions
        data_processor, sample_loader = saved_processor, next(iter(test_loaders.values()))
    data_processor = attach_patching(config, model, data_processor, device)
    if data_processor is not None:
        data_processor = data_processor.to(device)
    _, eval_losses = build_losses(config, data_dims(sample_loader))

    policy = build_steps.precision_policy(config)
    # how the model ran: a run's, the schedule and epoch of its run (its last epoch, or its best); a
    # model saved elsewhere, the precision its file records (stabilizer and half type; upstream's
    # layers: full, with the stabilizer their blocks hold), without autocast
    if source.run:
        as_run = _run_schedule(config, saved_precision), _model_epoch(folder, name, config)
    else:
        as_run = PrecisionSchedule.constant(saved_precision["mode"], autocast=False,
                                            stabilizer=saved_precision.get("stabilizer")), 0
        if saved_precision.get("half_dtype") is not None:
            policy = policy.replace(half_dtype=saved_precision["half_dtype"])
    if precision is not None and not _ran_in(as_run, precision, config):
        schedule, epoch = _given_precision_schedule(config, policy, precision, source.run), 0
    else:  # as it ran: --precision of that mode too (a run's: bitwise train's errors)
        schedule, epoch = as_run
    half_dtype = resolve_half_dtype(policy.half_dtype, device)
    with warnings.catch_warnings():  # the run's schedule, as train warned of it: nothing is trained here
        warnings.simplefilter("ignore", SkippedPhaseWarning)
        trainer = build_trainer(config, model, data_processor, schedule, device, progress=False, policy=policy)
    trainer.on_epoch_start(epoch)
    # the samples each error is the mean over: a resolution the run tested, its own count
    n_test_samples = {resolution: len(loader.dataset) for resolution, loader in test_loaders.items()}
    log("[neuralop-mp] test samples: " + ", ".join(f"{n} at {res}" for res, n in n_test_samples.items()))
    metrics = {}
    for resolution, loader in test_loaders.items():
        errors = trainer.evaluate(eval_losses, loader, log_prefix=str(resolution))
        metrics.update({k: float(v) for k, v in errors.items()})
    non_finite = [key for key, value in metrics.items() if not math.isfinite(value)]
    if non_finite:  # once, after every resolution: the table then shows them as inf and nan
        log_warning(log, non_finite_metrics_text(trainer, non_finite))  # on stderr, as train's
    mismatch = recorded_metrics_text(metrics, record.last_epoch, record.processor is not None,
                                     encoding_flags=_sets_encoding(config.data))
    if mismatch:  # once, naming every error that is off
        log_warning(log, mismatch)

    mode = trainer.phase.mode if trainer.phase is not None else "full"
    return {
        "checkpoint": str(checkpoint),
        "model": type(model).__name__,
        "device": str(device),
        "train_resolution": config.data.train_resolution,
        "test_resolutions": list(test_loaders),
        "n_test_samples": n_test_samples,
        "metrics": metrics,
        "precision": {
            "mode": mode,
            "autocast": bool(trainer.autocast_enabled),
            "stabilizer": trainer.phase.stabilizer_for(half_dtype) if trainer.phase is not None else None,
            "half_dtype": dtype_name(half_dtype),
            "ran_as": precision_as_run(mode, half_dtype, device,
                                       [config.data.train_resolution, *test_loaders]),
        },
        "wall_time_s": time.perf_counter() - start,
    }
