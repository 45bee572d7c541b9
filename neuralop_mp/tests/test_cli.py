"""``neuralop-mp``: command dispatch, help, config errors, and the train wiring (no training here)."""
import importlib
import json
import math
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from neuralop_mp import cli
from neuralop_mp.train_report import format_summary, to_jsonable, write_outputs


def test_console_script_points_at_console_main():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "neuralop-mp"]
    assert script.value == "neuralop_mp.cli:console_main"


def test_top_level_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "data", "run"):
        assert f"  {command} " in out
    assert cli.main([]) == 2  # no command: usage and a usage-error exit code


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "'trian'" in err and "train, eval, data, run" in err and "Did you mean: train?" in err


@pytest.mark.parametrize("config_name, class_name", [("darcy", "DarcyConfig"),
                                                     ("navier_stokes", "NavierStokesConfig")])
def test_train_help_shows_every_config_field(capsys, config_name, class_name):
    assert cli.main(["train", config_name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Fields of {class_name}" in out
    for key in ("--model.fno_block_precision 'full'", "--model.half_dtype 'auto'", "--model.stabilizer None",
                "--opt.optimizer 'adamw'", "--opt.precision_schedule None", "--data.test_resolutions",
                "--output_dir None", "--model {FNOConfig, TFNOConfig, UNOConfig}",
                "--data {DarcyDatasetConfig, NavierStokesDatasetConfig, BurgersDatasetConfig}"):
        assert key in out


def test_train_help_reflects_overrides_given_before_it(capsys):
    # the values given, not the defaults (12 epochs, UNO's [32, 64, 64, 32]), as "current values" says
    assert cli.main(["train", "darcy", "--opt.n_epochs", "3", "--model", "UNOConfig", "--model.uno_out_channels",
                     "[16,32,32,16]", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  --opt.n_epochs 3\n" in out and "  --model.uno_out_channels [16, 32, 32, 16]\n" in out, out
    # a value that does not load: the help still comes, with the default there
    assert cli.main(["train", "darcy", "--opt.n_epochs", "abc", "--help"]) == 0
    assert "  --opt.n_epochs 12\n" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragments", [
    (["--model.fno_block_precision", "hlaf"], ["model.fno_block_precision='hlaf'", "'full', 'mixed', 'half'"]),
    (["--opt.optimzer", "tensorgrad"], ["--opt.optimzer", "--opt.optimizer"]),
    (["--opt.precision_schedule", "half:2"], ["opt.precision_schedule"]),
    (["--opt.n_epochs"], ["Missing value for option --opt.n_epochs"]),
    (["--opt.n_epochs", "abc"], ["opt.n_epochs='abc'", "an integer"]),
])
def test_train_config_errors_exit_2_with_the_message(capsys, args, fragments):
    assert cli.main(["train", "darcy", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp train: error:")
    assert err.count("\n") == 1, err  # one line: no traceback, no validator's report
    for fragment in fragments:
        assert fragment in err


def test_train_unknown_config_name(capsys):
    assert cli.main(["train", "navier-stoke"]) == 2
    assert "Did you mean: navier_stokes" in capsys.readouterr().err


@pytest.mark.parametrize("command, module", [("data", "neuralop_mp.data.cli"), ("run", "neuralop_mp.runner.cli")])
def test_data_and_run_hand_their_arguments_on(monkeypatch, command, module):
    calls = []
    fake = types.ModuleType(module)
    fake.main = lambda argv: calls.append(list(argv)) or 7
    monkeypatch.setitem(sys.modules, module, fake)
    monkeypatch.setattr(importlib.import_module(module.rpartition(".")[0]), "cli", fake, raising=False)
    args = ["x.py", "--mp.precision", "mixed", "--", "--epochs", "2"]
    assert cli.main([command, *args]) == 7
    assert calls == [args]


def fake_result(tmp_path=None):
    history = [
        {"epoch": e, "precision": "mixed", "train_loss": 1.0 / (e + 1), "16_l2": 0.5 / (e + 1),
         "16_h1": 0.7 / (e + 1), "saved_bytes": 1000 + e, "skipped_steps": 0}
        for e in range(3)
    ]
    return {
        "config_name": "darcy", "config": {"name": "darcy"}, "device": "cpu", "model": "FNO",
        "train_resolution": 16, "test_resolutions": [16, 32],
        "metrics": {"16_l2": 0.0612, "16_h1": 0.1234, "32_l2": 0.0899, "32_h1": float("nan")},
        "seconds_per_epoch": 1.25, "train_time_s": 3.75,
        "precision": {"schedule": "mixed", "half_dtype": "auto", "final_mode": "mixed",
                      "phases": [{"mode": "mixed", "start_epoch": 0, "end_epoch": 3, "autocast": True,
                                  "stabilizer": None}]},
        "skipped_steps": 0,
        "memory": {"n_params": 1234, "params_bytes": 4936, "optimizer_state_bytes": 9872,
                   "saved_bytes": 1002, "cuda_peak_bytes": None},
        "history": history, "wall_time_s": 5.0, "output_dir": None, "files": {},
    }


def test_train_runs_the_pipeline_with_the_overridden_config_and_prints_the_summary(monkeypatch, capsys):
    import neuralop_mp.train_pipeline as pipeline

    seen = {}

    def fake_run(config, **kwargs):
        seen.update(config=config, **kwargs)
        return fake_result()

    monkeypatch.setattr(pipeline, "run_training", fake_run)
    assert cli.main(["train", "darcy", "--model.fno_block_precision", "mixed", "--threads", "3",
                     "--opt.n_epochs", "3", "--save_best"]) == 0
    assert seen["progress"] is True and seen["threads"] == 3 and seen["save_best"] is True
    assert seen["resume"] is False and seen["cpu_allocator"] == "keep"  # the default
    # the run folder records the config and overrides, without the run options
    assert seen["command"] == ("darcy", ["--model.fno_block_precision", "mixed", "--opt.n_epochs", "3"])
    assert seen["config"].model.fno_block_precision == "mixed" and seen["config"].opt.n_epochs == 3
    out = capsys.readouterr().out
    assert "test rel. L2 @ 16 (train)" in out and "0.0612" in out
    assert "test rel. L2 @ 32 (2x)" in out and "0.0899" in out


def test_train_passes_cpu_allocator_system_through(monkeypatch):
    import neuralop_mp.train_pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "run_training", lambda config, **kwargs: seen.update(kwargs) or fake_result())
    assert cli.main(["train", "darcy", "--cpu-allocator", "system"]) == 0
    assert seen["cpu_allocator"] == "system"


def test_summary_table_has_every_reported_quantity():
    table = format_summary({**fake_result(), "cpu_allocator": "freed memory kept in the process"})
    assert "| CPU memory" in table and "freed memory kept in the process" in table
    for fragment in ("test rel. L2 @ 16 (train)", "test H1 @ 16 (train)", "test rel. L2 @ 32 (2x)",
                     "test H1 @ 32 (2x)", "| nan", "seconds / epoch", "1.25", "precision (final)",
                     "mixed+autocast [epochs 0-2]", "skipped steps", "1,234, 4.82 KiB",
                     "optimizer state", "9.64 KiB", "saved activations / step", "1002 B"):
        assert fragment in table, fragment


def test_results_json_and_loss_curve_are_written(tmp_path):
    files = write_outputs(fake_result(), tmp_path / "run")
    data = json.loads(Path(files["results"]).read_text())
    assert data["metrics"]["16_l2"] == pytest.approx(0.0612)
    assert data["metrics"]["32_h1"] == "nan"  # JSON has no NaN: kept readable as a string
    assert len(data["history"]) == 3 and data["files"] == files
    assert Path(files["loss_curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_to_jsonable_handles_tensors_and_infinities():
    import torch

    assert to_jsonable({"a": torch.tensor([1.5, 2.0]), 3: math.inf, "p": Path("/x")}) == \
        {"a": [1.5, 2.0], "3": "inf", "p": "/x"}


@pytest.mark.parametrize("args, fragments", [
    (["--resum", "runs/x"], ["Unknown option --resum.", "Did you mean: --resume"]),
    (["--save-best"], ["Unknown option --save-best.", "--save_best"]),
    (["--thread", "2"], ["Did you mean: --threads"]),
    (["--threads", "0"], ["Invalid --threads '0'", "auto or an integer >= 1"]),
    (["--threads", "many"], ["Invalid --threads 'many'"]),
    (["--threads"], ["Missing value for option --threads"]),
    (["--cpu-allocator", "cache"], ["Invalid --cpu-allocator='cache'", "'keep', 'system'"]),
    (["--modle.n_layers", "2"], ["Did you mean: --model.n_layers"]),
    # an option where a value was due: the unknown option is said before the missing value
    (["--output_dir", "--save_bset"], ["Unknown option --save_bset.", "Did you mean: --save_best"]),
    # `neuralop-mp run`'s flags name the config key they set, not a close spelling of another setting
    (["--mp.schedule", "paper"], ["Unknown option --mp.schedule.", "Did you mean: --opt.precision_schedule?"]),
    (["--mp.precision", "mixed"], ["Did you mean: --model.fno_block_precision?"]),
    (["--mp.tensorgrad_rank", "0.5"], ["Did you mean: --opt.tensorgrad_rank?"]),
])
def test_train_run_options_misspelled_or_bad_exit_2_naming_the_allowed_ones(capsys, args, fragments):
    assert cli.main(["train", "darcy", *args]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert f"Nothing to resume in {tmp_path}: it has no command.json" in capsys.readouterr().err


def test_pop_flags_reads_switches_values_and_lists():
    flags, rest = cli._pop_flags(["--res", "16", "32", "--x.y", "1", "--precision=mixed", "--save_best"],
                                 {**cli.EVAL_FLAGS, "--save_best": None})
    assert flags == {"--res": ["16", "32"], "--precision": "mixed", "--save_best": True}
    assert rest == ["--x.y", "1"]


@pytest.mark.parametrize("args, fragments", [
    (["nowhere/run"], ["No model checkpoint at nowhere/run"]),
    (["{ckpt}", "--precision", "hlaf"], ["--precision='hlaf'", "'full', 'mixed', 'half'"]),
    (["{ckpt}", "--res", "16", "x"], ["Invalid --res 16 x"]),
    (["{ckpt}", "--ress", "16"], ["Unknown option --ress.", "Did you mean: --res"]),
])
def test_eval_bad_input_exits_2_with_the_message(tmp_path, capsys, args, fragments):
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    args = [a.replace("{ckpt}", str(tmp_path)) for a in args]
    assert cli.main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp eval: error:")
    for fragment in fragments:
        assert fragment in err, err


def test_train_help_lists_the_run_options(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--save_best", "--resume RUN_DIR", "--threads N|auto", "--cpu-allocator keep|system"):
        assert option in out


def test_eval_help(capsys):
    assert cli.main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "CHECKPOINT_OR_RUN_DIR" in out and "--res RES" in out and "--precision" in out
    assert cli.main(["eval"]) == 2  # no checkpoint: usage and a usage-error exit code


def test_resume_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, capsys):
    from neuralop_mp.run_folder import write_command

    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2"])
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Nothing to resume in {tmp_path}: it has no checkpoint/ folder" in err


def test_resume_refuses_another_config(tmp_path, capsys):
    from neuralop_mp.run_folder import write_command

    write_command(tmp_path, "darcy", [])
    assert cli.main(["train", "burgers", "--resume", str(tmp_path)]) == 2
    assert "continues a run of config 'darcy'; leave out the config 'burgers'" in capsys.readouterr().err


# ---------------------------------------------------------------- review fixes (no training here)
def _fake_training(monkeypatch):
    """Replace the pipeline by a recorder; returns the dict of what it was called with."""
    import neuralop_mp.train_pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "run_training", lambda config, **kwargs: seen.update(config=config, **kwargs)
                        or fake_result())
    return seen


@pytest.mark.parametrize("arg", ["--save_best=false", "--save_best=true", "--save_best="])
def test_a_switch_given_a_value_is_refused(monkeypatch, capsys, arg):
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "darcy", arg]) == 2
    err = capsys.readouterr().err
    assert f"--save_best is a switch and takes no value (got {arg!r})" in err, err
    assert not seen  # nothing ran


def test_options_of_a_selected_section_class_are_known_to_train_and_eval(monkeypatch, tmp_path, capsys):
    """docs/configs.md's `--model UNOConfig --model.uno_out_channels ...`: the keys are those of UNOConfig."""
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "darcy", "--model", "UNOConfig", "--model.uno_out_channels", "[16,32,32,16]"]) == 0
    assert seen["config"].model.uno_out_channels == [16, 32, 32, 16]
    assert seen["command"][1][:4] == ["--model", "UNOConfig", "--model.uno_out_channels", "[16,32,32,16]"]
    assert cli.main(["train", "darcy", "--model=UNOConfig", "--model.uno_out_channel", "[16]"]) == 2
    assert "Did you mean: --model.uno_out_channels" in capsys.readouterr().err
    # a command line that does not parse (a list after --res): the selection is read all the same
    assert cli.main(["train", "darcy", "--model", "UNOConfig", "--model.uno_out_channels", "[16]", "--res", "16",
                     "32"]) == 2
    err = capsys.readouterr().err
    assert "Unknown option --res." in err and "uno_out_channels" not in err, err
    # eval of a UNO run: the run's recorded selection makes the UNO keys known
    import neuralop_mp.evaluate as evaluate
    from neuralop_mp.run_folder import write_command

    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    write_command(tmp_path, "darcy", ["--model", "UNOConfig", "--model.uno_out_channels", "[16,32,32,16]"])

    def fake_evaluation(path, source, config, **kwargs):  # the overrides are applied in config
        raise ValueError(f"evaluated {type(config.model).__name__} with {config.model.uno_out_channels}")

    monkeypatch.setattr(evaluate, "evaluate_with_config", fake_evaluation)
    # the run's recorded model keys apply (the model comes from the checkpoint: eval refuses --model.* given to it)
    assert cli.main(["eval", str(tmp_path), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown option" not in err and "evaluated UNOConfig with [16, 32, 32, 16]" in err, err
    assert cli.main(["eval", str(tmp_path), "--threads", "1", "--model.uno_out_channels", "[16]"]) == 2
    assert "--model.uno_out_channels cannot be given to eval" in capsys.readouterr().err


def test_command_json_gets_absolute_paths_for_a_config_file_and_data_root(monkeypatch, tmp_path):
    folder = tmp_path / "configs_here"
    folder.mkdir()
    (folder / "my_config.py").write_text(
        "from neuralop_mp.configs import DarcyConfig, DarcyDatasetConfig\n\n"
        "class Tiny(DarcyConfig):\n"
        "    data: DarcyDatasetConfig = DarcyDatasetConfig(data_root='its_data')\n")
    monkeypatch.chdir(folder)
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "my_config.py:Tiny", "--output_dir", "run", "--opt.n_epochs", "2"]) == 0
    spec, overrides = seen["command"]
    assert spec == f"{folder}/my_config.py:Tiny"
    recorded = dict(zip(overrides[::2], overrides[1::2]))
    # the config file's own relative data_root is recorded too, resolved
    assert recorded == {"--output_dir": str(folder / "run"), "--opt.n_epochs": "2",
                        "--data.data_root": str(folder / "its_data")}
    assert cli.main(["train", "my_config.py:Tiny", "--data.data_root=../data"]) == 0
    assert seen["command"][1] == ["--data.data_root", str(tmp_path / "data")]
    assert seen["config"].data.data_root == "../data"  # the run itself reads it as typed, from here


def test_resume_records_the_overrides_it_adds_later_values_winning(monkeypatch, tmp_path):
    from neuralop_mp.run_folder import write_command

    run = tmp_path / "run"
    run.mkdir()
    write_command(run, "darcy", ["--opt.n_epochs", "2", "--verbose", "false", "--output_dir", "run"],
                  save_best=True, threads="1", cpu_allocator="keep")
    seen = _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--resume", "run", "--opt.n_epochs=4", "--opt.precision_schedule", "full@2,mixed"]) == 0
    assert seen["resume"] is True and seen["save_best"] is True and seen["threads"] == 1
    assert seen["config"].opt.n_epochs == 4
    assert seen["command"] == ("darcy", ["--opt.n_epochs", "4", "--verbose", "false", "--output_dir", str(run),
                                         "--opt.precision_schedule", "full@2,mixed"])


def test_train_reads_a_config_file_once(monkeypatch, tmp_path):
    """The option check uses the config that `train` loads: the file runs once (its prints, once)."""
    runs = tmp_path / "runs.txt"
    (tmp_path / "counted.py").write_text(
        f"open({str(runs)!r}, 'a').write('run\\n')\n"
        "from neuralop_mp.configs import DarcyConfig\n\nclass Counted(DarcyConfig):\n    name: str = 'counted'\n")
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", f"{tmp_path}/counted.py:Counted", "--model", "UNOConfig", "--opt.n_epochs", "2"]) == 0
    assert seen["config"].name == "counted" and seen["config"].opt.n_epochs == 2
    assert runs.read_text().count("run") == 1


def test_a_builtin_name_is_recorded_as_a_name_even_beside_a_file_of_that_name(monkeypatch, tmp_path):
    """command.json's config is what resolve_config reads: a built-in name first, then a file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "darcy").mkdir()  # a folder called like a built-in config
    (tmp_path / "mine.py").write_text("from neuralop_mp.configs import DarcyConfig\n\n"
                                      "class Mine(DarcyConfig):\n    name: str = 'mine'\n")
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "Darcy"]) == 0
    assert seen["command"][0] == "Darcy" and seen["config"].name == "darcy"
    assert cli.main(["train", "mine.py:Mine"]) == 0
    assert seen["command"][0] == f"{tmp_path}/mine.py:Mine" and seen["config"].name == "mine"


def test_eval_builds_its_config_once_and_evaluates_with_it(monkeypatch, tmp_path, capsys):
    """`eval` builds the run's config once (a config file's class, its recorded section selection
    applied, then --res), not a default one and then the selected one: one load_config call, whose
    config is evaluated with (the option check builds nothing while the config loads)."""
    import neuralop_mp.configs as configs
    import neuralop_mp.evaluate as evaluate
    from neuralop_mp.run_folder import write_command

    from neuralop_mp.tests.test_eval_and_best import write_counted_config

    built = write_counted_config(tmp_path)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    write_command(tmp_path, f"{tmp_path}/counted.py:Counted", ["--model", "UNOConfig", "--model.uno_out_channels",
                                                                      "[16,32,32,16]"])
    loads, load_config = [], configs.load_config
    monkeypatch.setattr(configs, "load_config",
                        lambda *args, **kwargs: loads.append(args) or load_config(*args, **kwargs))
    given = {}
    monkeypatch.setattr(evaluate, "evaluate_with_config", lambda path, source, config, **kwargs: given.update(
        config=config) or (_ for _ in ()).throw(ValueError("stop")))
    assert cli.main(["eval", str(tmp_path), "--threads", "1", "--res", "16", "32"]) == 2
    assert "neuralop-mp eval: error: stop" in capsys.readouterr().err  # the options were all known
    assert built.read_text() == "built\n" and len(loads) == 1
    config = given["config"]
    assert type(config).__name__ == "Counted" and config.model.uno_out_channels == [16, 32, 32, 16]
    assert config.data.test_resolutions == [16, 32] and len(config.data.n_tests) == 2
    assert cli.main(["eval", str(tmp_path), "--threads", "1", "--data.n_test", "[16]"]) == 2
    assert "Did you mean: --data.n_tests" in capsys.readouterr().err


def test_lenient_overrides_read_what_a_bad_command_line_holds():
    """The option check's reading of a command line that load_config refuses: stray tokens
    skipped, a last option without a value left out; the strict reading refuses both."""
    from neuralop_mp.configs.loading import parse_overrides

    args = ["--model", "UNOConfig", "--res", "16", "32", "--opt.n_epochs=2", "--data.n_train"]
    assert parse_overrides(args, lenient=True) == {"model": "UNOConfig", "res": "16", "opt.n_epochs": "2"}
    with pytest.raises(ValueError, match="got '32'"):
        parse_overrides(args)
    with pytest.raises(ValueError, match="Missing value for option --data.n_train"):
        parse_overrides(args[5:])


@pytest.mark.parametrize("args, option, follower", [
    # before, --model was read as the value of --opt.n_epochs: the selection lost, UNOConfig a stray
    (["--opt.n_epochs", "--model", "UNOConfig", "--model.uno_out_channels", "[4,4,4,4]"], "--opt.n_epochs",
     "--model"),
    (["--data.batch_size", "--model=UNOConfig", "--model.uno_out_channels", "[4,4,4,4]"], "--data.batch_size",
     "--model=UNOConfig"),
    (["--model", "UNOConfig", "--model.norm", "--model.uno_out_channels", "[4]"], "--model.norm",
     "--model.uno_out_channels"),
    # before, a config that loaded: name='--opt.n_epochs=3' and n_epochs left at its default
    (["--name", "--opt.n_epochs=3"], "--name", "--opt.n_epochs=3"),
])
def test_an_option_followed_by_an_option_is_said_to_lack_its_value(monkeypatch, capsys, args, option, follower):
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "darcy", *args]) == 2
    err = capsys.readouterr().err
    assert f"train: error: Missing value for option {option} (it is followed by the option {follower};" in err, err
    assert not seen  # nothing ran


def test_odd_command_lines_an_option_last_and_negative_values(monkeypatch, capsys):
    seen = _fake_training(monkeypatch)
    # the last option without a value: the selection before it still counts (no unknown option)
    assert cli.main(["train", "darcy", "--model", "UNOConfig", "--model.uno_out_channels", "[4,4,4,4]",
                     "--opt.n_epochs"]) == 2
    assert "train: error: Missing value for option --opt.n_epochs." in capsys.readouterr().err
    # one dash is a value, not an option: a negative number is read (and checked) as one
    assert cli.main(["train", "darcy", "--opt.n_epochs", "-1"]) == 2
    assert "Invalid opt.n_epochs=-1; it must be > 0." in capsys.readouterr().err
    assert cli.main(["train", "darcy", "--opt.weight_decay", "-1e-4"]) == 2
    assert "Invalid opt.weight_decay=-0.0001" in capsys.readouterr().err
    assert cli.main(["train", "darcy", "--data.seed", "-7"]) == 2  # numpy's generators take no negative seed
    assert "Invalid data.seed=-7; it must be >= 0." in capsys.readouterr().err
    assert not seen
    assert cli.main(["train", "darcy", "--seed", "-1", "--data.seed", "7", "--name=--x"]) == 0
    config = seen["config"]
    assert (config.seed, config.data.seed, config.name) == (-1, 7, "--x")


def test_eval_refuses_a_config_class_missing_from_its_file_as_train_does(monkeypatch, tmp_path, capsys):
    """``path.py:Missing`` (a class the file does not define): the same usage error naming the file for
    ``eval --config`` as for ``train``, where eval ended in an AttributeError traceback."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")  # found, never loaded: the config fails first
    (tmp_path / "mine.py").write_text("from neuralop_mp.configs import DarcyConfig\n\n"
                                      "class Mine(DarcyConfig):\n    name: str = 'mine'\n")
    spec = f"{tmp_path}/mine.py:Missing"
    assert cli.main(["train", spec]) == 2
    train_err = capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path), "--config", spec]) == 2
    eval_err = capsys.readouterr().err
    assert train_err.startswith("neuralop-mp train: error: ") and "'Missing'" in train_err, train_err
    assert "mine.py" in train_err and "Traceback" not in eval_err
    assert eval_err == train_err.replace("neuralop-mp train: ", "neuralop-mp eval: ")
    assert not seen


def test_an_error_raised_inside_a_config_file_names_its_line(monkeypatch, tmp_path, capsys):
    """A bug in the user's config file is reported in one line (no traceback), with the file and
    line it was raised at; the plugin's own errors (an unknown option) name no frame of ours."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "buggy.py").write_text("import json\nfrom neuralop_mp.configs import DarcyConfig\n\n\n"
                                       "def helper():\n    return json.loads('not json')\n\n\n"
                                       "class Buggy(DarcyConfig):\n    name: str = 'buggy'\n\n\nX = helper()\n")
    assert cli.main(["train", f"{tmp_path}/buggy.py:Buggy"]) == 2
    err = capsys.readouterr().err
    # raised inside the standard library's json, named at the user's line that called it
    assert "Expecting value" in err and f"(raised at {tmp_path}/buggy.py:6)" in err, err
    assert cli.main(["train", "darcy", "--opt.n_epochs", "abc"]) == 2
    assert "raised at" not in capsys.readouterr().err
    assert not seen


_HEAD = "from neuralop_mp.configs import DarcyConfig\n\n\nclass Mine(DarcyConfig):\n    name: str = 'mine'\n"


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("tail, fragment", [
    ([], "ZeroDivisionError"),  # the file's own error: no key of it can be checked
    (["--opt.n_epochs", "abc"], "opt.n_epochs='abc'"),  # a bad value: the option check runs too
    (["--opt.n_epocs", "3"], "Unknown option --opt.n_epocs"),
])
def test_a_config_file_runs_once_when_the_config_does_not_load(monkeypatch, tmp_path, capsys, command, tail,
                                                                 fragment):
    """The build and the option check that follows a failed build share one resolution of the
    config: the file's code (and any side effect of it) ran twice on every error path."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")  # found, never loaded: the config fails first
    runs = tmp_path / "runs.txt"
    body = "" if tail else "X = 1 / 0\n"
    (tmp_path / "counted.py").write_text(f"open({str(runs)!r}, 'a').write('run\\n')\n" + _HEAD + body)
    spec = f"{tmp_path}/counted.py:Mine"
    argv = ["train", spec] if command == "train" else ["eval", str(tmp_path), "--config", spec]
    assert cli.main([*argv, *tail]) == 2
    assert fragment in capsys.readouterr().err
    assert runs.read_text() == "run\n"
    assert not seen


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("source, line, fragment", [
    (_HEAD + "\n\nimport os\nX = os.path.no_such_thing\n", 9, "has no attribute 'no_such_thing'"),
    ("import not_a_module_xyz\n" + _HEAD, 1, "No module named 'not_a_module_xyz'"),
    # a config class's attribute: under zencfg 1.0 raised inside zencfg's own __getattr__
    (_HEAD + "X = DarcyConfig.no_such_field\n", 6, "no_such_field"),
    # any Python error of the file's code, named by its type
    (_HEAD + "X = undefined_name\n", 6, "NameError: name 'undefined_name' is not defined"),
    (_HEAD + "X = DarcyConfg\n", 6, "Did you mean: 'DarcyConfig'?"),  # Python's hint, as a traceback shows it
    (_HEAD + "X = {}['k']\n", 6, "KeyError: 'k'"),
    # a SyntaxError its code raises (not one of the file itself): its message names no line of the file
    (_HEAD + "X = eval('1 +')\n", 6, "SyntaxError: "),
    # raised inside the standard library's importlib, named at the user's line that called it
    (_HEAD + "\n\nimport importlib\nimportlib.import_module('not_a_module_xyz')\n", 9,
     "No module named 'not_a_module_xyz'"),
    ("from neuralop_mp.configs import DarcyConfig, NoSuchConfig\n", 1, "cannot import name 'NoSuchConfig'"),
    # in the config class itself, while our load_config builds it
    (_HEAD + "\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n"
     "        self.extra = self.no_such_field\n", 9, "has no attribute 'no_such_field'"),
])
def test_an_attribute_or_import_error_of_a_config_file_is_a_usage_error_naming_its_line(
        monkeypatch, tmp_path, capsys, command, source, line, fragment):
    """A bad attribute or a missing module in the user's config file: exit 2, one line naming
    the file and line, no traceback (an AttributeError or ImportError of our own code raises)."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "mine.py").write_text(source)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")  # found, never loaded: the config fails first
    spec = f"{tmp_path}/mine.py:Mine"
    assert cli.main(["train", spec] if command == "train" else ["eval", str(tmp_path), "--config", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp {command}: error: ") and fragment in err, err
    assert f"(raised at {tmp_path}/mine.py:{line})" in err and "Traceback" not in err, err
    assert not seen


@pytest.mark.parametrize("helper_source, fragment", [
    ("import os\n\n\n\nX = os.no_attr_here\n", "AttributeError: module 'os' has no attribute 'no_attr_here'"),
    ("\n\n\n\nraise ValueError('helper value problem')\n", "helper value problem"),
])
def test_an_error_in_a_module_beside_the_config_file_names_both_lines(monkeypatch, tmp_path, capsys, helper_source,
                                                                      fragment):
    """A config file importing a helper module of the user's (next to it) that raises: the helper's
    line first, then the config file's line that imported it."""
    seen = _fake_training(monkeypatch)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_helper_mod.py").write_text(helper_source)
    (tmp_path / "mine.py").write_text(_HEAD + "\nimport my_helper_mod\n")
    monkeypatch.delitem(sys.modules, "my_helper_mod", raising=False)
    assert cli.main(["train", f"{tmp_path}/mine.py:Mine"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and f"(raised at {tmp_path}/my_helper_mod.py:5, from {tmp_path}/mine.py:7)" in err, err
    assert not seen


def test_a_library_under_the_config_files_folder_is_not_named_as_the_users_module(monkeypatch, tmp_path, capsys):
    """A library installed inside the project folder (a local site-packages on the import path)
    that raises for the config file: only the config file's line is named, not the library's."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "some_lib_mod.py").write_text("def build():\n    raise ValueError('bad value')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "some_lib_mod", raising=False)
    (tmp_path / "mine.py").write_text(_HEAD + "\nimport some_lib_mod\nX = some_lib_mod.build()\n")
    assert cli.main(["train", f"{tmp_path}/mine.py:Mine"]) == 2
    err = capsys.readouterr().err
    assert f"bad value (raised at {tmp_path}/mine.py:8)" in err, err
    assert not seen


@pytest.mark.parametrize("source, fragment", [
    # dir() of the object raises: Python gives no hint; nor do we, and we do not fail
    (_HEAD + "class W:\n    def __dir__(self):\n        raise RuntimeError('no dir')\n\n\nX = W().missing\n",
     "'W' object has no attribute 'missing'"),
    (_HEAD + "globals()[1] = 2\nX = undefined_thing\n", "name 'undefined_thing' is not defined"),
])
def test_the_did_you_mean_hint_never_fails_the_error_message(monkeypatch, tmp_path, capsys, source, fragment):
    seen = _fake_training(monkeypatch)
    (tmp_path / "mine.py").write_text(source)
    assert cli.main(["train", f"{tmp_path}/mine.py:Mine"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Did you mean" not in err and "Traceback" not in err, err
    assert not seen


def test_our_own_code_below_the_config_files_folder_is_not_named_as_the_users_module():
    """A config file at the top of a checkout of the plugin (the docs' example puts it there): a
    frame of the plugin's own code under its folder is no helper module of the user's. Frames
    built with those file names (no file is written)."""
    from neuralop_mp.configs import loading

    checkout = Path(loading.__file__).resolve().parent.parent
    config, ours = checkout / "mine_config_not_written.py", Path(loading.__file__).resolve().parent / "validation.py"
    inner = {}
    exec(compile("def check():\n    raise ValueError('Invalid opt.n_epochs=-1')\n", str(ours), "exec"), inner)
    try:
        exec(compile("\n\ncheck()\n", str(config), "exec"), {"check": inner["check"]})
    except ValueError as error:
        assert loading.raised_in_file(error, config).lineno == 3
        assert loading.raised_beside(error, config) is None
    else:
        raise AssertionError("the compiled config did not raise")


def test_a_folder_named_as_the_config_is_refused_as_a_folder(monkeypatch, tmp_path, capsys):
    seen = _fake_training(monkeypatch)
    assert cli.main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Invalid config file {tmp_path}: it is a folder" in err, err
    assert not seen


def _innermost_own_frame(error):
    """The innermost frame of the traceback outside the standard library and installed packages."""
    import sysconfig
    import traceback

    stdlib = sysconfig.get_paths()["stdlib"]
    return next(frame for frame in reversed(traceback.extract_tb(error.__traceback__))
                if not frame.filename.startswith(("<", stdlib)) and "site-packages" not in frame.filename)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_attribute_error_of_our_own_config_code_raises_with_its_traceback(monkeypatch, tmp_path, command):
    """A bug in the plugin's config loading (here: its ``copy`` module without ``deepcopy``) is no
    config error of the user's: it raises with its traceback instead of one line without a place."""
    from neuralop_mp.configs import loading

    seen = _fake_training(monkeypatch)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    monkeypatch.setattr(loading, "copy", types.SimpleNamespace())
    with pytest.raises(AttributeError, match="deepcopy") as raised:
        cli.main(["train", "darcy"] if command == "train" else ["eval", str(tmp_path), "--config", "darcy"])
    frame = _innermost_own_frame(raised.value)
    assert frame.filename == loading.__file__ and frame.name == "select_sections"
    assert not seen


def test_an_import_error_of_our_own_code_in_the_config_step_raises_with_its_traceback(monkeypatch):
    """An import of ours that fails while ``train`` sets its config up (here: a name gone from
    run_folder, which command.json's overrides are written with) is a bug of ours: it raises
    instead of being reported as a config error."""
    from neuralop_mp import run_folder

    seen = _fake_training(monkeypatch)
    monkeypatch.delattr(run_folder, "override_tokens")
    with pytest.raises(ImportError, match="override_tokens") as raised:
        cli.main(["train", "darcy"])
    assert Path(_innermost_own_frame(raised.value).filename).parent == Path(cli.__file__).parent
    assert not seen


@pytest.mark.parametrize("folder", ["site-packages", "dist-packages", "anywhere"])
def test_our_bug_inside_a_library_is_not_taken_for_a_users_config_error(monkeypatch, tmp_path, folder):
    """Our config code calling a library that raises AttributeError (a stand-in for ``copy`` loaded
    from a folder of that name: Debian's dist-packages, a PYTHONPATH entry, an editable install):
    no frame of the user's config file is in the traceback, so it raises with its traceback,
    wherever the library lives (it was a one-line usage error naming the library's line outside
    site-packages)."""
    import importlib.util

    from neuralop_mp.configs import loading

    seen = _fake_training(monkeypatch)
    (tmp_path / folder).mkdir()
    stand_in = tmp_path / folder / "stand_in_copy.py"
    stand_in.write_text("def deepcopy(value):\n    return value.no_such_method()\n")
    module_spec = importlib.util.spec_from_file_location("stand_in_copy", stand_in)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    monkeypatch.setattr(loading, "copy", module)
    with pytest.raises(AttributeError, match="no_such_method"):
        cli.main(["train", "darcy"])
    assert not seen


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_config_file_that_is_no_python_file_or_does_not_parse_is_a_usage_error(monkeypatch, tmp_path, capsys,
                                                                                   command):
    """A config path without ``.py`` is refused by name (zencfg's ImportError, raised in its own code,
    was a traceback); a SyntaxError in a config file is reported in one line naming its line."""
    seen = _fake_training(monkeypatch)
    (tmp_path / "model_state_dict.pt").write_bytes(b"")
    (tmp_path / "mine.cfg").write_text(_HEAD)
    (tmp_path / "broken.py").write_text(_HEAD + "\nX = (1,\n")

    def run(spec):
        return cli.main(["train", spec] if command == "train" else ["eval", str(tmp_path), "--config", spec])

    assert run(f"{tmp_path}/mine.cfg") == 2
    err = capsys.readouterr().err
    assert "mine.cfg" in err and "Python file (.py)" in err and "Traceback" not in err, err
    assert run(f"{tmp_path}/broken.py:Mine") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp {command}: error: ") and "broken.py, line 7" in err, err
    assert not seen


def test_an_override_value_starting_with_dashes_is_recorded_as_one_token_that_reads_back(monkeypatch):
    """``--name=--exp``: command.json holds ``--name=--exp``, not the pair ``--name --exp``, which
    parse_overrides reads as --name missing its value (so eval and --resume of the run failed)."""
    from neuralop_mp.configs import parse_overrides

    seen = _fake_training(monkeypatch)
    assert cli.main(["train", "darcy", "--name=--exp", "--opt.n_epochs", "2", "--data.data_root=-data"]) == 0
    recorded = seen["command"][1]
    assert recorded[:4] == ["--name=--exp", "--opt.n_epochs", "2", "--data.data_root"]  # others as pairs
    assert parse_overrides(recorded)["name"] == "--exp"
    assert parse_overrides(recorded)["data.data_root"].endswith("/-data")


def test_a_record_read_back_joins_an_older_pair_whose_value_starts_with_dashes(tmp_path):
    """Records written before the one-token form hold ``--name --exp``: read back, it is
    ``--name=--exp``; a value after it that starts with ``--`` is still that key's, not an option."""
    from neuralop_mp.configs import parse_overrides
    from neuralop_mp.run_folder import read_command, write_command

    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--name", "--exp", "--data.data_root", "--d",
                                      "--model.n_layers=3", "--verbose", "false"])
    overrides = read_command(tmp_path)["overrides"]
    assert overrides == ["--opt.n_epochs", "2", "--name=--exp", "--data.data_root=--d", "--model.n_layers=3",
                         "--verbose", "false"]
    assert parse_overrides(overrides) == {"opt.n_epochs": "2", "name": "--exp", "data.data_root": "--d",
                                          "model.n_layers": "3", "verbose": "false"}
    write_command(tmp_path, "darcy", overrides)  # the new form reads back unchanged
    assert read_command(tmp_path)["overrides"] == overrides


@pytest.mark.parametrize("resumed", [False, True])
def test_ctrl_c_names_the_command_that_continues_the_run_with_what_a_resume_was_given(monkeypatch, tmp_path,
                                                                                     capsys, resumed):
    """A resume records its new overrides only once it saves an epoch: interrupted before, the printed
    command repeats them (it dropped them, and continued with the old n_epochs)."""
    import neuralop_mp.train_pipeline as pipeline
    from neuralop_mp.run_folder import write_command
    from neuralop_mp.training import checkpointing
    from neuralop_mp.training.tests.tiny import tiny_fno

    out = tmp_path / "run"
    checkpointing.save_training_files(out / "checkpoint", "model", tiny_fno(), epoch=2)
    write_command(out, "darcy", ["--opt.n_epochs", "3", "--output_dir", str(out)])

    def interrupted(config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_training", interrupted)
    argv = ["--resume", str(out), "--opt.n_epochs", "40", "--threads", "1"] if resumed else [
        "darcy", "--opt.n_epochs", "3", "--output_dir", str(out)]
    assert cli.main(["train", *argv]) == 130
    again = " --opt.n_epochs 40 --threads 1" if resumed else ""
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"neuralop-mp train: interrupted; {out / 'checkpoint'} holds epoch 2, the last saved. "
        f"Continue with: neuralop-mp train --resume {out}{again}")
