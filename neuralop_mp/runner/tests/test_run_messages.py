"""What ``neuralop-mp run`` says where it used to be silent or misleading: a precision beside a
schedule that does not start in it, update in backward beside float16 loss scaling, a Trainer
that refused to be created, an import that fails outside the script's folder, ``--mp.*`` flags
after ``--``. The same on upstream's real scripts: integration_tests/test_run_script_messages.py."""
import textwrap

import pytest

import neuralop_mp
from neuralop_mp.runner import activation, summary
from neuralop_mp.runner.cli import main, parse_args, run_script
from neuralop_mp.runner.report import ActivationReport

# a model through get_model, then a Trainer with the script's own keyword arguments (argv: key=value)
TRAINER_SCRIPT = textwrap.dedent(
    """
    import sys
    import neuralop
    from neuralop.training import IncrementalFNOTrainer, Trainer
    config = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 8, "n_layers": 1}, "patching": {"levels": 0}, "opt": {}}
    model = neuralop.get_model(config)
    kwargs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    kwargs = {key: (int(value) if value.isdigit() else value) for key, value in kwargs.items()}
    trainer_class = IncrementalFNOTrainer if sys.argv[1] == "incremental" else Trainer
    print("building the trainer")
    trainer = trainer_class(model=model, **kwargs)
    print("trainer built")
    """
)


@pytest.fixture
def trainer_script(tmp_path):
    path = tmp_path / "build_trainer.py"
    path.write_text(TRAINER_SCRIPT)
    return path


# ---------------------------------------------------------------- a precision beside a schedule

def test_a_precision_the_schedule_does_not_start_in_is_warned_before_the_script_and_in_the_summary(
        trainer_script, fake_parts, capsys):
    result = run_script(trainer_script, ["plain", "n_epochs=2"], precision="half", schedule="mixed:0.5,full:0.5")
    assert result.exit_status == 0, result.error
    out = capsys.readouterr().out
    warning = ("--mp.precision='half' is not what the run starts in: with --mp.schedule='mixed:0.5,full:0.5' each "
               "phase sets its own mode from the first epoch on (mixed then full), and no phase runs 'half'. To start "
               "in 'half', make it the first phase of --mp.schedule; to run 'half' throughout, leave --mp.schedule "
               "unset; to run the schedule as written, leave --mp.precision out.")
    assert result.report.notes == [warning]
    assert out.index(f"neuralop-mp run: WARNING: {warning}") < out.index("building the trainer")
    assert f"WARNING: {warning}" in out[out.index("neuralop-mp summary"):]


@pytest.mark.parametrize("precision, schedule", [("mixed", "mixed:0.5,full:0.5"), ("half", "half@1,full"),
                                                 (None, "paper"), ("half", None)])
def test_no_precision_warning_where_the_run_starts_in_the_mode_asked(precision, schedule, trainer_script,
                                                                     fake_parts, capsys):
    result = run_script(trainer_script, ["plain", "n_epochs=2"], precision=precision, schedule=schedule)
    assert result.exit_status == 0, result.error
    assert not any("is not what the run starts in" in note for note in result.report.notes)


def test_enable_names_the_keywords_in_its_warning(fake_parts):
    with pytest.warns(UserWarning, match="applied to nothing"):  # nothing built in the block
        with neuralop_mp.enabled(precision="full", schedule="half:0.5,mixed:0.5") as report:
            pass
    assert report.notes[0].startswith("precision='full' is not what the run starts in: with schedule="
                                      "'half:0.5,mixed:0.5' each phase sets its own mode from the first epoch on "
                                      "(half then mixed), and no phase runs 'full'.")


# ---------------------------------------------------------------- update in backward beside float16 scaling

@pytest.mark.parametrize("flags, cause", [
    (["--mp.precision", "mixed", "--mp.half_dtype", "float16"],
     "--mp.half_dtype float16 with --mp.precision mixed computes in float16"),
    (["--mp.schedule", "half:0.5,full:0.5", "--mp.half_dtype", "float16", "--mp.loss_scaling", "auto"],
     "--mp.half_dtype float16 with --mp.schedule half:0.5,full:0.5 computes in float16"),
    (["--mp.spectral_weight_dtype", "complex32"],
     "--mp.spectral_weight_dtype complex32 stores the spectral weights in float16's range"),
])
def test_update_in_backward_beside_float16_loss_scaling_is_refused_naming_the_flags(flags, cause, capsys):
    status = main(["train.py", *flags, "--mp.update_in_backward", "true", "--", "--opt.n_epochs", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"neuralop-mp run: error: --mp.update_in_backward true cannot be combined with loss "
                          f"scaling: {cause}, so the trainer's loss scaling 'auto' (its default) scales the loss"), err
    assert "Add --mp.loss_scaling none, " in err and "loss_scaling='none'" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [
    ["--mp.precision", "mixed", "--mp.half_dtype", "float16", "--mp.loss_scaling", "none"],
    ["--mp.precision", "mixed", "--mp.half_dtype", "bfloat16"],
    ["--mp.precision", "mixed", "--mp.half_dtype", "auto"],  # the device the script picks decides
    ["--mp.precision", "full", "--mp.half_dtype", "float16"],  # nothing in float16
    ["--mp.half_dtype", "float16"],  # the script's own config decides the mode
])
def test_update_in_backward_where_the_flags_do_not_tell_float16_scaling_is_left_to_the_trainer(flags):
    parse_args(["train.py", *flags, "--mp.update_in_backward", "true"])


def test_enable_refuses_it_naming_its_keywords():
    with pytest.raises(ValueError, match=r"^update_in_backward=True cannot be combined with loss scaling: "
                                         r"half_dtype='float16' with precision='half' computes in float16.* Add "
                                         r"loss_scaling='none', use half_dtype='bfloat16', or leave "
                                         r"update_in_backward out\.$"):
        neuralop_mp.enable(precision="half", half_dtype="float16", update_in_backward=True)
    assert not activation.is_enabled()


# ---------------------------------------------------------------- a Trainer that refused to be created

def test_a_schedule_the_scripts_epochs_never_finish_is_one_line_naming_both(trainer_script, fake_parts, capsys):
    result = run_script(trainer_script, ["plain", "n_epochs=2"], schedule="half@5,full")
    captured = capsys.readouterr()
    assert result.exit_status == 1
    assert captured.err.strip().splitlines() == [
        "neuralop-mp run: error: build_trainer.py, line 12: neuralop.Trainer (Trainer) refused to be created: "
        "--mp.schedule 'half@5,full' does not fit the script's n_epochs=2 (what it passes to Trainer): Precision "
        "schedule 'half@5,full' never reaches its last phase 'full' in a run of 2 epochs (the phase before it ends "
        "at epoch 5). Use more epochs, earlier end epochs, or shares such as 'half:0.5,full:0.5'."]
    summary_text = captured.out[captured.out.index("neuralop-mp summary"):]
    assert ("WARNING: the script ended with exit status 1 after its neuralop.Trainer (Trainer) refused to be created "
            "(ValueError: --mp.schedule 'half@5,full' does not fit the script's n_epochs=2") in summary_text
    assert "had not created" not in summary_text
    assert result.report.to_dict()["trainer_refusals"][0]["class"] == "Trainer"


def test_any_trainer_constructor_that_raises_is_told_as_a_refusal(trainer_script, fake_parts, capsys):
    # a keyword upstream's Trainer does not take (the script's own mistake)
    result = run_script(trainer_script, ["plain", "n_epochs=2", "no_such_argument=1"], precision="mixed")
    out = capsys.readouterr().out
    assert result.exit_status == 1 and isinstance(result.error, TypeError)
    assert ("the script ended with exit status 1 after its neuralop.Trainer (Trainer) refused to be created "
            "(TypeError: ") in out and "no_such_argument" in out
    # upstream's incremental trainer, whose own arguments are refused before the plain stand-in's constructor
    result = run_script(trainer_script, ["incremental", "n_epochs=2"], precision="mixed")
    out = capsys.readouterr().out
    assert result.exit_status == 1
    assert ("after its neuralop.Trainer (IncrementalFNOTrainer) refused to be created (ValueError: Invalid "
            "incremental_loss_gap=False with incremental_grad=False") in out, out


def test_a_refusal_the_script_catches_is_still_told(tmp_path, fake_parts, capsys):
    script = tmp_path / "catches.py"
    script.write_text(TRAINER_SCRIPT.replace("trainer = trainer_class(model=model, **kwargs)",
                                             "try:\n    trainer_class(model=model, **kwargs)\nexcept ValueError:\n"
                                             "    pass"))
    result = run_script(script, ["plain", "n_epochs=1"], schedule="half@5,full")
    out = capsys.readouterr().out
    assert result.exit_status == 0
    assert ("WARNING: the script's neuralop.Trainer (Trainer) refused to be created (ValueError: --mp.schedule "
            "'half@5,full' does not fit") in out
    assert "never created" not in out


def test_a_refusal_is_recorded_once_and_its_exception_dropped_at_the_end():
    report = ActivationReport({})
    error = ValueError("bad\nsecond line")
    report.record_trainer_refusal("Trainer", error)
    report.record_trainer_refusal("IncrementalFNOTrainer", error)  # the same exception, met again outside
    assert report.trainer_refusals == [{"class": "Trainer", "error": "ValueError: bad"}]
    assert report.refused_trainer(error) == report.trainer_refusals[0]
    assert report.refused_trainer(ValueError("bad")) is None
    report.finish()
    assert report.refused_trainer(error) is None and report.trainer_refusals


# ---------------------------------------------------------------- why a script stopped before its model

def _upstream_like(tmp_path):
    """tmp/scripts/train.py importing `config` as upstream's scripts do (through "../" of the working directory)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "__init__.py").write_text("NAME = 'found'\n")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "train.py"
    script.write_text("import sys\nsys.path.insert(0, '../')\nfrom config import NAME\nprint('config', NAME)\n")
    return script


def test_a_script_run_from_outside_its_folder_is_told_to_run_from_it(tmp_path, fake_parts, monkeypatch, capsys):
    script = _upstream_like(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["scripts/train.py"]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-2] == (
        f"WARNING: train.py imports 'config' through '../' of the working directory, which reaches "
        f"{tmp_path.resolve() / 'config'} only from inside scripts/: run it from its scripts/ folder (cd scripts).")
    monkeypatch.chdir(script.parent)  # from inside: it runs
    assert main(["train.py"]) == 0
    assert "config found" in capsys.readouterr().out


def test_the_folder_hint_is_only_for_a_module_beside_the_scripts_folder(tmp_path):
    script = _upstream_like(tmp_path)
    missing = ModuleNotFoundError("No module named 'config'", name="config")
    assert summary.script_folder_cause(missing, script, cwd=tmp_path) is not None
    assert summary.script_folder_cause(missing, script, cwd=script.parent) is None  # run from inside: another cause
    other = ModuleNotFoundError("No module named 'wandb'", name="wandb")
    assert summary.script_folder_cause(other, script, cwd=tmp_path) is None
    assert summary.script_folder_cause(ImportError("x"), script, cwd=tmp_path) is None
    assert summary.script_folder_cause(None, script, cwd=tmp_path) is None
    far = tmp_path / "a" / "b"
    far.mkdir(parents=True)
    assert "(cd ../../scripts)" in summary.script_folder_cause(missing, script, cwd=far)


def test_mp_flags_after_the_separator_are_told_to_go_before_it(fake_parts, tmp_path, capsys):
    script = tmp_path / "refuses.py"
    script.write_text("import sys\nif any(a.startswith('--mp') for a in sys.argv[1:]):\n"
                      "    raise ValueError(\"Got key 'mp' that is not a valid field\")\n")
    assert main([str(script), "--", "--mp.precision", "mixed", "--mp-schedule=paper"]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-2] == (
        "WARNING: --mp.precision, --mp-schedule came after '--', so they went to the script, not to neuralop-mp run: "
        "the --mp.* flags go before '--' (neuralop-mp run SCRIPT.py --mp.precision mixed -- SCRIPT ARGS).")
    # a script that accepts them (its own flags), or fails after its model: no such line
    script.write_text("print('fine')\n")
    assert main([str(script), "--", "--mp.precision", "mixed"]) == 0
    assert "came after '--'" not in capsys.readouterr().out
    assert summary.flags_after_separator_cause(["--opt.n_epochs", "2", "--mpx"]) is None


def test_an_error_inside_upstreams_constructor_keeps_its_traceback_and_the_summary_names_it(
        tmp_path, fake_parts, capsys):
    # not one of our argument checks: upstream's Trainer fails on device=None; its traceback is the
    # evidence, and the model built directly (not through get_model) still gets the trainer's error named
    script = tmp_path / "direct.py"
    script.write_text(textwrap.dedent("""
        from neuralop.models import FNO
        from neuralop.training import Trainer
        model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
        Trainer(model=model, n_epochs=1, device=None)
        """))
    result = run_script(script, [], half_dtype="bfloat16")
    captured = capsys.readouterr()
    assert result.exit_status == 1 and isinstance(result.error, TypeError)
    assert "Traceback (most recent call last)" in captured.err and "refused to be created" not in captured.err
    assert ("before it built a model through neuralop.get_model (its neuralop.Trainer (Trainer) raised TypeError "
            "while being created: argument of type 'NoneType' is not iterable; its traceback above shows where)"
            ) in captured.out, captured.out
    assert "refused" not in captured.out
