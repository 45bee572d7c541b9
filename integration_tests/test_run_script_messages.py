"""What ``neuralop-mp run`` says on upstream's real scripts where it used to be silent or
misleading (the runner's own logic: neuralop_mp/runner/tests/test_run_messages.py): a precision
the schedule does not start in, update in backward beside float16 loss scaling, a schedule the
script's epochs never finish, a script run from outside its folder, ``--mp.*`` flags after ``--``.
Each run is tiny (TINY_DARCY) or stops before training."""
import json

from integration_tests.test_run_scripts import TINY_DARCY, in_scripts, no_network  # noqa: F401 (fixtures)
from neuralop_mp.runner.cli import main


def _summary(out):
    return out[out.index("neuralop-mp summary"):]


def test_a_precision_the_schedule_never_runs_is_warned(in_scripts, darcy_root, no_network, capsys, tmp_path):
    report = tmp_path / "report.json"
    assert main(["train_darcy.py", "--mp.precision", "half", "--mp.schedule", "mixed:0.5,full:0.5",
                 "--mp.data-root", str(darcy_root), "--mp.report", str(report), "--",
                 *TINY_DARCY, "--opt.n_epochs", "2"]) == 0
    out = capsys.readouterr().out
    warned = ("WARNING: --mp.precision='half' is not what the run starts in: with --mp.schedule='mixed:0.5,full:0.5' "
              "each phase sets its own mode from the first epoch on (mixed then full), and no phase runs 'half'.")
    assert out.count(warned) == 2, out  # before the script, and in the summary
    assert out.index(warned) < out.index("Loading test db")
    (trainer,) = json.loads(report.read_text())["trainers"]
    assert [h["precision"] for h in trainer["history"]] == ["mixed", "full"]


def test_update_in_backward_beside_float16_scaling_is_refused_before_the_data_load(in_scripts, darcy_root, capsys):
    status = main(["train_darcy.py", "--mp.precision", "mixed", "--mp.half_dtype", "float16",
                   "--mp.update_in_backward", "true", "--mp.data-root", str(darcy_root), "--", *TINY_DARCY])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""  # nothing ran: no header, no data load, no summary
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("neuralop-mp run: error: --mp.update_in_backward true cannot be combined with loss "
                           "scaling: --mp.half_dtype float16 with --mp.precision mixed computes in float16")
    assert line.endswith("Add --mp.loss_scaling none, use --mp.half_dtype bfloat16, or leave "
                         "--mp.update_in_backward out.")


def test_a_schedule_the_scripts_epochs_never_finish_is_one_line_naming_both(in_scripts, darcy_root, no_network,
                                                                             capsys):
    assert main(["train_darcy.py", "--mp.schedule", "half@5,full", "--mp.data-root", str(darcy_root), "--",
                 *TINY_DARCY, "--opt.n_epochs", "2"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (line,) = [line for line in captured.err.splitlines() if line.startswith("neuralop-mp run: error:")]
    assert line.startswith("neuralop-mp run: error: train_darcy.py, line ")
    assert (": neuralop.Trainer (Trainer) refused to be created: --mp.schedule 'half@5,full' does not fit the "
            "script's n_epochs=2 (what it passes to Trainer): Precision schedule 'half@5,full' never reaches its last "
            "phase 'full' in a run of 2 epochs") in line
    summary = _summary(captured.out)
    assert ("WARNING: the script ended with exit status 1 after its neuralop.Trainer (Trainer) refused to be created "
            "(ValueError: --mp.schedule 'half@5,full' does not fit the script's n_epochs=2") in summary
    assert "had not created" not in summary


def test_a_script_run_from_outside_its_folder_is_told_to_cd_there(upstream_scripts, monkeypatch, capsys):
    monkeypatch.chdir(upstream_scripts.parent)
    assert main(["scripts/train_darcy.py"]) == 1
    captured = capsys.readouterr()
    assert "No module named 'config'" in captured.err
    assert _summary(captured.out).strip().splitlines()[-2] == (
        f"WARNING: train_darcy.py imports 'config' through '../' of the working directory, which reaches "
        f"{upstream_scripts.parent.resolve() / 'config'} only from inside scripts/: run it from its scripts/ folder "
        "(cd scripts).")


def test_mp_flags_after_the_separator_are_told_to_go_before_it(in_scripts, capsys):
    assert main(["train_darcy.py", "--", "--mp.precision", "mixed"]) == 1
    captured = capsys.readouterr()
    assert "Got key 'mp'" in captured.err  # zencfg's own refusal, which names neither the flag nor the fix
    assert _summary(captured.out).strip().splitlines()[-2] == (
        "WARNING: --mp.precision came after '--', so it went to the script, not to neuralop-mp run: the --mp.* flags "
        "go before '--' (neuralop-mp run SCRIPT.py --mp.precision mixed -- SCRIPT ARGS).")
