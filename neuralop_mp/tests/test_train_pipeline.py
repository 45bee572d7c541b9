"""Every config field reaches the object it configures (no silently ignored key).

Each test sets the fields of one section to non-default values, runs the pipeline
step that reads that section, and checks the value on the built object. A final
check per section asserts the test covered every field of the section, so a new
config field without a consumer fails here.
"""
import inspect
from pathlib import Path

import pytest
import torch
from neuralop.losses import H1Loss, LpLoss

from neuralop_mp.configs import (
    DataConfig,
    FNOConfig,
    OptimizationConfig,
    PatchingConfig,
    TrainConfig,
    UNOConfig,
    field_names,
    load_config,
)
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.run_setup import RunSetupError

# non-default values of every FNO/TFNO model field (small, so building is fast)
FNO_VALUES = {
    "model_arch": "tfno", "data_channels": 2, "out_channels": 3, "n_modes": [6, 4],
    "hidden_channels": 12, "n_layers": 2, "lifting_channel_ratio": 3.0,
    "projection_channel_ratio": 1.5, "positional_embedding": None, "norm": "group_norm",
    "use_channel_mlp": False, "channel_mlp_expansion": 0.25, "channel_mlp_dropout": 0.1,
    "channel_mlp_skip": "linear", "fno_skip": "identity", "domain_padding": 0.25,
    "factorization": "cp", "rank": 0.5, "fixed_rank_modes": True, "implementation": "reconstructed",
    "separable": True, "preactivation": True,
}
UNO_VALUES = {
    "model_arch": "uno", "data_channels": 2, "out_channels": 3, "hidden_channels": 12,
    "lifting_channels": 16, "projection_channels": 16, "positional_embedding": None, "n_layers": 2,
    "uno_out_channels": [12, 12], "uno_n_modes": [[4, 4], [4, 4]],
    "uno_scalings": [[1.0, 1.0], [1.0, 1.0]], "channel_mlp_dropout": 0.1,
    "channel_mlp_expansion": 0.25, "norm": "group_norm", "preactivation": True, "fno_skip": "identity",
    "horizontal_skip": "identity", "channel_mlp_skip": "linear", "separable": False,
    "factorization": "tucker", "rank": 0.5, "fixed_rank_modes": True, "implementation": "reconstructed",
    "domain_padding": 0.25,
}
PRECISION_VALUES = {"recompute": "block", "recompute_chunk_points": 1000, "fno_block_precision": "mixed", "half_dtype": "bfloat16",
                    "stabilizer": "tanh", "spectral_weight_dtype": "complex32", "autocast_scope": "fno_blocks"}


def with_section(section, values, **extra):
    overrides = {f"{section}.{k}": repr(v) if isinstance(v, list) else ("None" if v is None else str(v))
                 for k, v in values.items()}
    overrides.update(extra)
    return load_config("darcy", overrides)


@pytest.mark.parametrize("section_cls, values", [(FNOConfig, FNO_VALUES), (UNOConfig, UNO_VALUES)],
                         ids=["fno-tfno", "uno"])
def test_every_model_field_reaches_the_model(section_cls, values):
    from neuralop_mp import get_precision, get_spectral_weight_dtype

    extra = {"model": section_cls.__name__}
    config = with_section("model", {**values, **PRECISION_VALUES}, **extra)
    model = pipeline.build_model(config)
    recorded = model._init_kwargs
    for name, value in values.items():
        if name == "model_arch":
            # upstream's class, or the plugin's subclass of it that takes the precision keys
            from neuralop.models.base_model import BaseModel

            assert isinstance(model, BaseModel._models[value])
        elif name == "data_channels":
            assert recorded["in_channels"] == value
        else:
            assert recorded[name] == value, name
    assert get_precision(model) == ("mixed", "bfloat16", "tanh")
    assert get_spectral_weight_dtype(model) == "complex32"
    from neuralop_mp.models.recompute import recompute_mode

    assert model.precision_policy.autocast_scope == "fno_blocks"
    # set on the built model, not recorded
    assert recompute_mode(model) == PRECISION_VALUES["recompute"]
    slices = {m.__dict__["forward"].chunk_points for m in model.modules()
              if hasattr(m.__dict__.get("forward"), "chunk_points")}
    assert slices == {PRECISION_VALUES["recompute_chunk_points"]}
    recorded_keys = [key for key in PRECISION_VALUES if not key.startswith("recompute")]
    assert {key: recorded[key] for key in recorded_keys} == {
        key: PRECISION_VALUES[key] for key in recorded_keys}  # kept by checkpoints
    covered = set(values) | set(PRECISION_VALUES)
    assert covered == set(field_names(section_cls))


OPT_VALUES = {
    "n_epochs": 7, "training_loss": "l2", "eval_interval": 2, "optimizer": "tensorgrad",
    "learning_rate": 0.02, "weight_decay": 0.001, "betas": [0.8, 0.95], "tensorgrad_rank": 0.5,
    "tensorgrad_sparse_ratio": 0.1, "tensorgrad_sparse_type": "topk", "tensorgrad_update_proj_gap": 7,
    "tensorgrad_scale": 0.5, "tensorgrad_state_dtype": "bfloat16", "tensorgrad_min_params": 10,
    "tensorgrad_adam_convention": "neuralop", "tensorgrad_nonfinite_grad": "skip",
    "scheduler": "StepLR", "step_size": 3, "gamma": 0.25, "scheduler_T_max": 11, "scheduler_patience": 4,
    "precision_schedule": "mixed:0.5,full:0.5", "loss_scaling": "dynamic", "max_consecutive_skips": 5,
    "update_in_backward": False,  # True is refused with the two values above: see the test below
}
SMALL_MODEL = {"model.hidden_channels": "8", "model.n_layers": "2", "model.n_modes": "[4,4]"}


def test_every_opt_field_reaches_optimizer_scheduler_losses_or_trainer():
    config = with_section("opt", OPT_VALUES, **SMALL_MODEL)
    model = pipeline.build_model(config)
    optimizer = pipeline.build_optimizer(model, config)
    assert type(optimizer).__name__ == "TensorGRaD"
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.02) and group["weight_decay"] == pytest.approx(0.001)
        assert tuple(group["betas"]) == pytest.approx((0.8, 0.95))
    compressed = [g for g in optimizer.param_groups if g.get("compress")]
    assert compressed
    group = compressed[0]
    assert group["rank"] == 0.5 and group["sparse_ratio"] == 0.1 and group["sparse_type"] == "topk"
    assert group["update_proj_gap"] == 7 and group["scale"] == 0.5 and group["state_dtype"] == "bfloat16"
    assert group["min_params"] == 10
    assert all(g["adam_convention"] == "neuralop" and g["nonfinite_grad"] == "skip" for g in optimizer.param_groups)

    scheduler = pipeline.build_scheduler(optimizer, config)
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert scheduler.step_size == 3 and scheduler.gamma == 0.25
    cosine = pipeline.build_scheduler(optimizer, load_config("darcy", {"opt.scheduler": "CosineAnnealingLR",
                                                                        "opt.scheduler_T_max": "11"}))
    assert cosine.T_max == 11
    plateau = pipeline.build_scheduler(optimizer, load_config("darcy", {
        "opt.scheduler": "ReduceLROnPlateau", "opt.scheduler_patience": "4", "opt.gamma": "0.25"}))
    assert plateau.patience == 4 and plateau.factor == 0.25

    training_loss, eval_losses = pipeline.build_losses(config, 2)
    assert isinstance(training_loss, LpLoss) and isinstance(eval_losses["h1"], H1Loss)

    schedule = pipeline.build_schedule(config)
    trainer = pipeline.build_trainer(config, model, None, schedule, progress=False)
    assert trainer.n_epochs == 7 and trainer.eval_interval == 2
    assert str(trainer.precision_schedule) == "mixed:0.5,full:0.5"
    assert trainer.loss_scaling == "dynamic" and trainer.max_consecutive_skips == 5
    assert set(OPT_VALUES) == set(field_names(OptimizationConfig))


def test_update_in_backward_reaches_the_trainer_and_is_refused_with_dynamic_scaling_or_skips():
    config = with_section("opt", {"update_in_backward": "true", "loss_scaling": "none"}, **SMALL_MODEL)
    model = pipeline.build_model(config)
    trainer = pipeline.build_trainer(config, model, None, pipeline.build_schedule(config), progress=False)
    assert trainer.update_in_backward is True
    refused = {**OPT_VALUES, "update_in_backward": True}
    with pytest.raises(ValueError, match=r"opt.update_in_backward=True cannot be combined with "
                                         r"opt.loss_scaling='dynamic' .*; opt.tensorgrad_nonfinite_grad='skip'"):
        with_section("opt", refused, **SMALL_MODEL)


def test_update_in_backward_under_torchrun_is_refused_before_anything_is_written_or_loaded(monkeypatch, tmp_path):
    """One of several ranks: a one-line RunSetupError naming the key and the trainer's reason, before
    the process group is joined, command.json is written or the data are loaded (the trainer
    would refuse it after the data, leaving a run folder that cannot be resumed)."""
    from neuralop_mp.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "init_from_env", lambda *a, **k: pytest.fail("process group joined"))
    monkeypatch.setattr(pipeline, "build_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    config = load_config("darcy", {**TINY_RUN, "opt.update_in_backward": "true", "opt.loss_scaling": "none"})
    with pytest.raises(RunSetupError) as raised:
        pipeline.run_training(config, progress=False, output_dir=tmp_path / "run", log=lambda *a, **k: None,
                              command=("darcy", []))
    message = str(raised.value)
    assert message.startswith("opt.update_in_backward=True cannot run under torchrun (WORLD_SIZE=2): ")
    assert "DDP all-reduces gradients after the hooks run" in message and "\n" not in message
    assert not (tmp_path / "run").exists()


def test_under_torchrun_only_rank_0_builds_a_verbose_trainer(monkeypatch):
    from neuralop_mp.training import distributed

    config = load_config("darcy", {**SMALL_MODEL, "verbose": "true"})
    model = pipeline.build_model(config)
    verbose = {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        verbose[rank] = pipeline.build_trainer(config, model, None, pipeline.build_schedule(config),
                                               progress=False).verbose
    assert verbose == {0: True, 1: False}


@pytest.mark.parametrize("mode, autocast, stabilizer", [("full", False, None), ("mixed", True, None),
                                                        ("half", True, "auto")])
def test_constant_schedule_from_model_precision(mode, autocast, stabilizer):
    config = load_config("darcy", {"model.fno_block_precision": mode})
    (phase,) = list(pipeline.build_schedule(config))
    assert (phase.mode, phase.autocast, phase.stabilizer) == (mode, autocast, stabilizer)
    explicit = load_config("darcy", {"model.fno_block_precision": mode, "model.stabilizer": "tanh"})
    assert list(pipeline.build_schedule(explicit))[0].stabilizer == "tanh"


@pytest.mark.parametrize("loader_name, config_name", [("load_darcy", "darcy"),
                                                      ("load_navier_stokes", "navier_stokes"),
                                                      ("load_burgers", "burgers")])
def test_every_data_field_reaches_the_loader(monkeypatch, loader_name, config_name):
    import neuralop_mp.data as data_module

    calls = []

    def recorder(**kwargs):
        calls.append(kwargs)
        return "train", {"res": "test"}, "processor"

    monkeypatch.setattr(data_module, loader_name, recorder, raising=False)
    values = {"data_root": "/somewhere", "n_train": 17, "batch_size": 5, "train_resolution": 8,
              "n_tests": [3, 4], "test_resolutions": [8, 16], "test_batch_sizes": [2, 3],
              "generate": False, "seed": 9}
    if config_name != "burgers":  # Burgers data is always normalized (as upstream's)
        values.update(encode_input=True, encode_output=False)
    config = load_config(config_name, {f"data.{k}": str(v) for k, v in values.items()})
    assert pipeline.build_data(config, progress=False) == ("train", {"res": "test"}, "processor")
    assert calls == [{**values, "progress": False}]
    assert set(values) == set(field_names(type(config.data)))


@pytest.mark.parametrize("config_name", ["darcy", "navier_stokes", "burgers"])
def test_data_sections_match_their_real_loader_signature(config_name):
    import neuralop_mp.data as data_module

    config = load_config(config_name)
    loader = getattr(data_module, config.data.loader_name())
    params = inspect.signature(loader).parameters
    missing = [name for name in field_names(type(config.data)) if name not in params]
    assert not missing, f"{loader.__name__} does not take {missing}"


def test_patching_fields_reach_the_data_processor():
    config = load_config("darcy", {**SMALL_MODEL, "patching.levels": "1", "patching.padding": "0.25",
                                   "patching.stitching": "true"})
    model = pipeline.build_model(config)
    assert model._init_kwargs["in_channels"] == 2  # data_channels * (levels + 1)
    processor = pipeline.attach_patching(config, model, None)
    assert (processor.levels, processor.padding_fraction, processor.stitching) == (1, 0.25, True)
    assert set(field_names(PatchingConfig)) == {"levels", "padding", "stitching"}


def test_top_level_fields_reach_their_consumers(tmp_path):
    a = pipeline.build_model(load_config("darcy", {**SMALL_MODEL, "seed": "1"}))
    b = pipeline.build_model(load_config("darcy", {**SMALL_MODEL, "seed": "1"}))
    c = pipeline.build_model(load_config("darcy", {**SMALL_MODEL, "seed": "2"}))
    first = lambda m: next(m.parameters()).detach()  # noqa: E731
    assert torch.equal(first(a), first(b)) and not torch.equal(first(a), first(c))
    assert pipeline.resolve_device("cpu") == torch.device("cpu")
    assert pipeline.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")

    config = load_config("darcy", {**SMALL_MODEL, "verbose": "false", "name": "exp", "device": "cpu"})
    model = pipeline.build_model(config, pipeline.resolve_device(config.device))
    device = pipeline.resolve_device(config.device)
    trainer = pipeline.build_trainer(config, model, None, pipeline.build_schedule(config), device, progress=False)
    assert trainer.verbose is False and torch.device(trainer.device) == torch.device("cpu")
    assert pipeline.default_output_dir(config).name.startswith("exp-")
    # output_dir is exercised end to end in integration_tests/test_cli_train.py
    assert set(field_names(TrainConfig)) == {"name", "output_dir", "device", "seed", "verbose",
                                             "model", "opt", "data", "patching"}


def test_loader_that_does_not_take_a_field_is_an_error(monkeypatch):
    import neuralop_mp.data as data_module

    def narrow_loader(data_root=None, n_train=10):
        raise AssertionError("must not be called")

    config = load_config("darcy")  # loaded first: load_config refuses the fields too (test_config_file_fields.py)
    monkeypatch.setattr(data_module, "load_darcy", narrow_loader, raising=False)
    with pytest.raises(ValueError, match=r"Unknown fields .*data.batch_size.*no argument of neuralop_mp.data.load_darcy"):
        pipeline.build_data(config)


def test_tensor_bytes_counts_nested_state():
    state = {"a": {"exp_avg": torch.zeros(10), "step": torch.tensor(1.0)}, "b": [torch.zeros(3, dtype=torch.bfloat16)]}
    assert pipeline.tensor_bytes(state) == 10 * 4 + 4 + 3 * 2


def test_data_config_category_is_the_darcy_loader():
    assert DataConfig().loader_name() == "load_darcy"


@pytest.mark.parametrize("mode, message", [
    ("system", "cpu_allocator='system' cannot be restored in this process"),
    ("cached", "Invalid cpu_allocator='cached'; allowed values: 'keep', 'system'"),
])
def test_bad_cpu_allocator_is_a_setup_error_before_anything_is_written(monkeypatch, tmp_path, mode, message):
    from neuralop_mp import cpu_allocator
    from neuralop_mp.configs import load_config
    from neuralop_mp.run_setup import RunSetupError

    monkeypatch.setattr(cpu_allocator, "_state", {"mode": "keep", "detail": "kept"})  # "system" after "keep"
    monkeypatch.setattr(pipeline, "build_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(RunSetupError, match=message):
        pipeline.run_training(load_config("darcy"), progress=False, output_dir=tmp_path / "run",
                              log=lambda *a, **k: None, cpu_allocator=mode, command=("darcy", []))
    assert not (tmp_path / "run").exists()  # no half-made run folder


TINY_RUN = {"model.n_modes": "[4,4]", "model.hidden_channels": "4", "model.n_layers": "1",
            "data.test_resolutions": "[8]", "data.n_tests": "[4]", "data.test_batch_sizes": "[4]",
            "data.train_resolution": "8", "data.batch_size": "4", "data.n_train": "4", "verbose": "false"}


def _four_random_samples_as_data(monkeypatch, scale=1.0):
    """The pipeline's data: four random 8x8 samples (times ``scale``), one batch, for training and testing."""
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(0)
    samples = [{"x": scale * torch.randn(1, 8, 8, generator=generator),
                "y": scale * torch.randn(1, 8, 8, generator=generator)} for _ in range(4)]
    loaders = (DataLoader(samples, batch_size=4), {8: DataLoader(samples, batch_size=4)}, None)
    monkeypatch.setattr(pipeline, "build_data", lambda config, progress=True: loaders)


def test_a_resume_records_its_command_once_it_has_saved_an_epoch_so_ctrl_c_and_a_kill_leave_the_same(
        monkeypatch, tmp_path):
    """What command.json holds while the resumed run trains its first epoch is what a kill (no cleanup)
    leaves: the run's previous command, as Ctrl-C leaves it; the resumed command once an epoch is saved."""
    import json

    from neuralop_mp.run_folder import COMMAND_FILE
    from neuralop_mp.run_trainer import RunFolderTrainer

    _four_random_samples_as_data(monkeypatch)
    out, quiet = tmp_path / "run", (lambda *args, **kwargs: None)

    def train(n_epochs, resume=False):
        config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": str(n_epochs)})
        if not resume:
            return pipeline.run_training(config, progress=False, output_dir=out, log=quiet,
                                         command=("darcy", ["--opt.n_epochs", str(n_epochs)]))
        return pipeline.run_training(config, progress=False, output_dir=out, log=quiet, resume=True,
                                     command=("darcy", ["--opt.n_epochs", str(n_epochs)]))

    def overrides():
        return json.loads((out / COMMAND_FILE).read_text())["overrides"]

    train(1)
    assert overrides() == ["--opt.n_epochs", "1"]
    seen = []
    on_epoch_start = RunFolderTrainer.on_epoch_start

    def watching(self, epoch):
        seen.append((epoch, overrides()))
        if epoch == 1 and len(seen) == 1:
            raise KeyboardInterrupt  # Ctrl-C in the resumed run's first epoch
        on_epoch_start(self, epoch)

    monkeypatch.setattr(RunFolderTrainer, "on_epoch_start", watching)
    with pytest.raises(KeyboardInterrupt):
        train(3, resume=True)
    assert overrides() == ["--opt.n_epochs", "1"]
    result = train(3, resume=True)
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    # a kill while epoch 1 trains would leave the previous command; once epoch 1 is saved, the resumed one
    assert seen == [(1, ["--opt.n_epochs", "1"]), (1, ["--opt.n_epochs", "1"]), (2, ["--opt.n_epochs", "3"])]
    assert overrides() == ["--opt.n_epochs", "3"]
    # a finished run resumed with other overrides trains nothing and keeps its record: no epoch ran with them
    lines = []
    pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "3"}), progress=False,
                          output_dir=out, log=lines.append, resume=True,
                          command=("darcy", ["--opt.n_epochs", "3", "--verbose", "false"]))
    assert any("already finished all 3 epochs; nothing to train" in line for line in lines)
    assert any("keeps its final model" in line for line in lines)
    assert overrides() == ["--opt.n_epochs", "3"]


def test_a_resumed_command_that_cannot_be_written_is_written_after_the_next_saved_epoch(monkeypatch, tmp_path,
                                                                                       capsys):
    """A full disk at the first saved epoch of a resume warns and does not end the run; the
    next saved epoch records the command, so the checkpoint never outlives a stale record."""
    import json

    from neuralop_mp import run_folder
    from neuralop_mp.run_folder import COMMAND_FILE
    from neuralop_mp.warning_lines import warnings_as_lines

    from .test_warning_lines import shown_by_python

    _four_random_samples_as_data(monkeypatch)
    out, quiet = tmp_path / "run", (lambda *args, **kwargs: None)
    pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"}), progress=False, output_dir=out,
                          log=quiet, command=("darcy", ["--opt.n_epochs", "1"]))
    write_command, calls = run_folder.write_command, []

    def disk_full_once(*args, **kwargs):
        calls.append(json.loads((out / COMMAND_FILE).read_text())["overrides"])
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return write_command(*args, **kwargs)

    monkeypatch.setattr(run_folder, "write_command", disk_full_once)
    # a UserWarning, which `neuralop-mp train` shows as one warning line (its warnings_as_lines)
    with shown_by_python(), warnings_as_lines():
        pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "3"}), progress=False,
                              output_dir=out, log=quiet, resume=True, command=("darcy", ["--opt.n_epochs", "3"]))
    said = [line for line in capsys.readouterr().err.splitlines()
            if "Could not record the resumed run's command" in line]
    assert len(said) == 1 and said[0].startswith("[neuralop-mp] WARNING: ") and "No space left" in said[0]
    assert calls == [["--opt.n_epochs", "1"], ["--opt.n_epochs", "1"]]  # after epochs 1 and 2
    assert json.loads((out / COMMAND_FILE).read_text())["overrides"] == ["--opt.n_epochs", "3"]


class _DiesMidWrite:
    """A text file whose first write stores half the text, then fails as a full disk would."""

    def __init__(self, file):
        self._file = file

    def write(self, text):
        self._file.write(text[: len(text) // 2])
        self._file.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def test_a_write_of_command_json_that_fails_midway_leaves_the_previous_record_whole(monkeypatch, tmp_path):
    """A resume rewrites command.json mid-run: a write cut short (a kill, a full disk) must leave
    the previous record, which --resume reads, not a truncated file (and no temporary file)."""
    import builtins
    import io

    from neuralop_mp.run_folder import COMMAND_FILE, read_command, write_command

    write_command(tmp_path, "darcy", ["--opt.n_epochs", "1"], save_best=True)
    before = (tmp_path / COMMAND_FILE).read_bytes()
    real_open = builtins.open

    def dying_open(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        # a file of tmp_path by name, or by descriptor (a temporary file opened with os.fdopen)
        ours = isinstance(file, int) or Path(file).parent == tmp_path
        return _DiesMidWrite(opened) if "w" in mode and ours else opened

    with monkeypatch.context() as patch:  # open(), and io.open (pathlib's, os.fdopen's): whichever writes the file
        patch.setattr(builtins, "open", dying_open)
        patch.setattr(io, "open", dying_open)
        with pytest.raises(OSError, match="No space left on device"):
            write_command(tmp_path, "darcy", ["--opt.n_epochs", "3"], save_best=True)
    assert (tmp_path / COMMAND_FILE).read_bytes() == before
    assert read_command(tmp_path)["overrides"] == ["--opt.n_epochs", "1"]
    assert [p.name for p in tmp_path.iterdir()] == [COMMAND_FILE]
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "3"], save_best=True)  # and the next write succeeds
    assert read_command(tmp_path) == {"config": "darcy", "overrides": ["--opt.n_epochs", "3"],
                                      "flags": {"save_best": True}}


def test_a_resume_that_only_adds_epochs_does_not_warn_that_phase_boundaries_move(monkeypatch, tmp_path):
    """No schedule (one phase): 1 -> 3 epochs moves no epoch to another phase."""
    import warnings

    _four_random_samples_as_data(monkeypatch)
    out, quiet = tmp_path / "run", (lambda *args, **kwargs: None)
    pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"}), progress=False, output_dir=out,
                          log=quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "3"}), progress=False,
                              output_dir=out, log=quiet, resume=True)
    assert not [w for w in caught if "phase boundaries move" in str(w.message)]


@pytest.mark.parametrize("key, value, saved", [
    ("opt.learning_rate", "0.01", "0.005"), ("opt.weight_decay", "0.001", "0.0001"), ("opt.gamma", "0.25", "0.5"),
    ("opt.step_size", "2", "4"),
])
def test_a_resume_that_changes_an_optimizer_or_scheduler_setting_is_refused_by_key(monkeypatch, tmp_path, key,
                                                                                   value, saved):
    """The saved optimizer and scheduler states would replace the new setting: refused, nothing trained."""
    from neuralop_mp.run_setup import RunSetupError

    _four_random_samples_as_data(monkeypatch)
    out, quiet = tmp_path / "run", (lambda *args, **kwargs: None)
    pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "1"}), progress=False, output_dir=out,
                          log=quiet)
    config = load_config("darcy", {**TINY_RUN, "opt.n_epochs": "2", key: value})
    with pytest.raises(RunSetupError, match=rf"{key}={value} given, {saved} saved"):
        pipeline.run_training(config, progress=False, output_dir=out, log=quiet, resume=True)
    resumed = pipeline.run_training(load_config("darcy", {**TINY_RUN, "opt.n_epochs": "2"}), progress=False,
                                    output_dir=out, log=quiet, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]


def test_save_best_needs_a_test_at_the_training_resolution_before_any_data_is_loaded(monkeypatch, tmp_path):
    from neuralop_mp.run_setup import RunSetupError

    monkeypatch.setattr(pipeline, "build_data", lambda *a, **k: pytest.fail("data loaded"))
    config = load_config("darcy", {**TINY_RUN, "data.train_resolution": "16"})
    with pytest.raises(RunSetupError, match=r"data.train_resolution=16.*data.test_resolutions=\[8\]"):
        pipeline.run_training(config, progress=False, output_dir=tmp_path / "run", save_best=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides, message", [
    # one more output channel than the targets: broadcast in the loss, trained to a wrong result without an error
    # a built-in dataset's layout is known before its load (the message of data checked once loaded:
    # test_lifecycle_mends.py)
    ({"model.out_channels": "2"}, "Invalid model.out_channels=2; the darcy data need 1 (its samples have 1 input "
                                  "and 1 output channel(s) on a 2-D grid)."),
    ({"model.data_channels": "3"}, "Invalid model.data_channels=3; the darcy data need 1 "),
    ({"model.n_modes": "[4,4,4]"}, "Invalid model.n_modes=[4, 4, 4]; the darcy data are 2-dimensional: it needs 2 "
                                   "mode counts, one per dimension "),
    ({"model": "UNOConfig", "model.uno_n_modes": "[[4],[4],[4],[4]]"},
     "Invalid model.uno_n_modes=[[4], [4], [4], [4]]; the darcy data are 2-dimensional: each entry needs 2 "),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_it_is_built(monkeypatch, tmp_path, overrides, message):
    _four_random_samples_as_data(monkeypatch)
    built = []
    monkeypatch.setattr(pipeline, "build_model", lambda *args, **kwargs: built.append(args) or 1 / 0)

    def tiny(**overrides):
        base = dict(TINY_RUN)
        if overrides.get("model") == "UNOConfig":  # its modes are uno_n_modes, one entry per layer
            base.pop("model.n_modes")
            base["model.n_layers"] = "4"
        return load_config("darcy", {**base, **overrides})

    with pytest.raises(RunSetupError) as raised:
        pipeline.run_training(tiny(**overrides), progress=False, output_dir=tmp_path / "run", log=lambda *a, **k: None)
    assert str(raised.value).startswith(message), str(raised.value)
    assert not built
    # the data's own shapes pass, for each architecture
    for arch in ({}, {"model": "TFNOConfig"}, {"model": "UNOConfig"}):
        pipeline.check_model_fits_data(tiny(**arch), pipeline.build_data(None)[0])


def test_parameters_are_counted_as_entries_and_as_upstreams_real_numbers():
    """The summary's count was entries (a complex weight entry once), upstream's scripts print
    count_model_params (twice): the same model read as two sizes. Both are given, named."""
    from neuralop.utils import count_model_params

    from neuralop_mp.run_records import parameters_text
    from neuralop_mp.training.tests.tiny import tiny_fno

    model = tiny_fno()
    counts = pipeline.parameter_counts(model)
    complex_entries = sum(p.numel() for p in model.parameters() if p.is_complex())
    assert complex_entries > 0
    assert counts == {"n_params": sum(p.numel() for p in model.parameters()),
                      "n_real_params": counts["n_params"] + complex_entries}
    assert counts["n_real_params"] == count_model_params(model)
    assert parameters_text(counts) == (f"{counts['n_params']:,} ({counts['n_real_params']:,} real numbers, "
                                       "upstream's count_model_params)")
    assert parameters_text({"n_params": 1234}) == "1,234"  # a run recorded before n_real_params


def test_patching_with_an_output_normalizer_alone_gives_the_loss_the_true_targets():
    """The built-in Darcy encodes the output only: upstream's patching processor decoded targets it had
    not encoded, so the loss and the test errors saw ``y * std + mean`` (an untrained model scored 0.009)."""
    from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

    config = load_config("darcy", {**SMALL_MODEL, "patching.levels": "1", "patching.padding": "0.25",
                                   "patching.stitching": "true"})
    model = pipeline.build_model(config)
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(4, 1, 16, 16, generator=generator)
    normalizer = UnitGaussianNormalizer(mean=torch.full((1, 1, 1), 5.0), std=torch.full((1, 1, 1), 0.1), dim=[0, 2, 3])
    base = type("Processor", (), {"in_normalizer": None, "out_normalizer": normalizer})()
    processor = pipeline.attach_patching(config, model, base)
    x = torch.randn(4, 1, 16, 16, generator=generator)
    for training in (True, False):
        processor.train(training)
        sample = processor.preprocess({"x": x, "y": y.clone()})
        assert sample["y"].mean() < -40  # encoded: (y - 5) / 0.1
        _, sample = processor.postprocess(model(sample["x"]), sample)
        assert torch.allclose(sample["y"], y, atol=1e-4)  # the loss compares with the true targets
    import pickle

    assert type(pickle.loads(pickle.dumps(processor))) is type(processor)  # a class of a module, not a local one
