"""run_script runs a file as ``python SCRIPT.py`` would, with the plugin on, and restores everything."""
import json
import os
import sys
import textwrap

import neuralop
import pytest

from neuralop_mp.runner import activation
from neuralop_mp.runner.cli import main, run_script

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import neuralop
    from helper_module_for_probe import VALUE   # a module beside the script
    record = {
        "name": __name__,
        "argv": sys.argv,
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "helper": VALUE,
        "get_model_module": neuralop.get_model.__module__,
        "trainer_bases": [c.__name__ for c in neuralop.Trainer.__mro__[1:3]],
    }
    with open(sys.argv[1], "w") as f:
        json.dump(record, f)
    print("probe says hello")
    if len(sys.argv) > 2:
        if sys.argv[2] == "raise":
            raise ZeroDivisionError("script failed")
        if sys.argv[2] == "interrupt":  # what Ctrl-C raises in the script
            raise KeyboardInterrupt
        sys.exit(int(sys.argv[2]))
    """
)


@pytest.fixture
def probe(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE)
    (folder / "helper_module_for_probe.py").write_text("VALUE = 42\n")
    return folder / "probe.py", tmp_path / "record.json"


def test_script_runs_as_main_with_its_argv_path_and_the_plugin_on(probe, fake_parts, capsys):
    script, record_file = probe
    argv_before, path_before, cwd = sys.argv[:], sys.path[:], os.getcwd()
    result = run_script(script, [str(record_file)], precision="mixed")
    record = json.loads(record_file.read_text())
    assert result.exit_status == 0 and result.error is None
    assert record["name"] == "__main__"
    assert record["argv"] == [str(script), str(record_file)]
    assert record["path0"] == str(script.parent.resolve())
    assert record["cwd"] == cwd
    assert record["helper"] == 42
    assert record["get_model_module"] == "neuralop_mp.runner.intercept"
    assert record["trainer_bases"] == ["FakeMixedPrecisionTrainer", "Trainer"]
    # everything restored
    assert (sys.argv, sys.path, os.getcwd()) == (argv_before, path_before, cwd)
    assert "helper_module_for_probe" not in sys.modules
    assert neuralop.get_model.__module__ == "neuralop.models.base_model"
    assert not activation.is_enabled()
    out = capsys.readouterr().out
    # our header first, the script's own output, then our summary with its end check
    assert out.index("neuralop-mp run: intercepting") < out.index("probe says hello") < out.index("neuralop-mp summary")
    assert "WARNING: the script never calls get_model" in out.split("probe says hello")[0]
    assert "WARNING: no model was built through neuralop.get_model: the requested precision was NOT applied" in out


def test_exit_status_and_failures_are_reported_and_everything_restored(probe, fake_parts, capsys):
    script, record_file = probe
    path_before = sys.path[:]
    assert run_script(script, [str(record_file), "3"]).exit_status == 3
    failed = run_script(script, [str(record_file), "raise"])
    assert failed.exit_status == 1 and isinstance(failed.error, ZeroDivisionError)
    assert "ZeroDivisionError: script failed" in capsys.readouterr().err
    assert sys.path == path_before and not activation.is_enabled()
    assert neuralop.Trainer.__module__ == "neuralop.training.trainer"


def test_main_passes_arguments_after_the_separator_and_writes_the_report(probe, fake_parts, tmp_path):
    script, record_file = probe
    report_file = tmp_path / "report.json"
    status = main([str(script), "--mp.precision", "half", "--mp.report", str(report_file), "--", str(record_file)])
    assert status == 0
    assert json.loads(record_file.read_text())["argv"] == [str(script), str(record_file)]
    report = json.loads(report_file.read_text())
    assert report["options"]["precision"] == "half"
    assert report["models"] == [] and report["elapsed_s"] > 0


def test_bad_option_value_stops_before_the_script_runs(probe, fake_parts, capsys):
    script, record_file = probe
    assert main([str(script), "--mp.schedule", "half:0.5,full:0.7", "--", str(record_file)]) == 2
    assert "sum to" in capsys.readouterr().err
    assert not record_file.exists()


def test_direct_model_construction_is_announced_before_the_script_runs(tmp_path, fake_parts, capsys):
    script = tmp_path / "direct.py"
    script.write_text(
        "from neuralop.models import FNO\n"
        "from neuralop import Trainer\n"
        "model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)\n"
        "print('built directly')\n"
    )
    assert run_script(script, [], precision="mixed").exit_status == 0
    head = capsys.readouterr().out.split("built directly")[0]
    assert "builds its model directly (FNO(...))" in head
    assert "requested precision will NOT be applied" in head
    assert "never creates neuralop.Trainer" in head


def test_a_stabilizer_beside_a_schedule_is_warned_about_before_the_script_starts(probe, fake_parts, capsys):
    script, record_file = probe
    # "half", the schedule's first mode: no warning of the precision beside it
    result = run_script(script, [str(record_file)], precision="half", stabilizer="tanh", half_dtype="float16",
                        schedule="half:0.5,mixed")
    assert result.exit_status == 0
    out = capsys.readouterr().out
    warning = ("neuralop-mp run: WARNING: --mp.stabilizer='tanh' is not applied: with --mp.schedule='half:0.5,mixed:0.5' "
               "each phase runs with its own stabilizer ('half:0.5': tanh; 'mixed:0.5': none). To run a phase with "
               "tanh, write '/tanh' after it in --mp.schedule, e.g. 'mixed/tanh'")
    assert warning in out and out.index(warning) < out.index("probe says hello"), out
    # the summary repeats it, in the same words (one message: the activation's note, named as the flags)
    summary = out[out.index("neuralop-mp summary"):]
    assert warning.replace("neuralop-mp run: ", "") in summary, summary
    assert result.report.notes == [warning.split("WARNING: ")[1] + "; to use --mp.stabilizer for the whole run, "
                                   "leave --mp.schedule unset."]


def test_a_bad_option_is_refused_as_its_flag_before_anything_is_printed_or_run(probe, fake_parts, capsys):
    script, record_file = probe
    with pytest.raises(ValueError, match=r"^Invalid --mp.schedule='half:2': Invalid phase share=2.0"):
        run_script(script, [str(record_file)], precision="mixed", schedule="half:2")
    with pytest.raises(ValueError, match=r"^--mp.update_in_backward=True cannot be combined with "
                                         r"--mp.tensorgrad_nonfinite_grad='skip'"):
        run_script(script, [str(record_file)], optimizer="tensorgrad", update_in_backward=True,
                   tensorgrad_nonfinite_grad="skip")
    with pytest.raises(TypeError, match="precison"):  # a keyword enable() does not take
        run_script(script, [str(record_file)], precison="mixed")
    assert capsys.readouterr().out == "" and not record_file.exists()
    assert not activation.is_enabled()


def test_ctrl_c_ends_the_script_with_the_summary_the_report_and_status_130(probe, fake_parts, tmp_path, capsys):
    script, record_file = probe
    report_file = tmp_path / "report.json"
    status = main([str(script), "--mp.precision", "mixed", "--mp.report", str(report_file), "--",
                   str(record_file), "interrupt"])
    assert status == 130
    captured = capsys.readouterr()
    summary = captured.out[captured.out.index("neuralop-mp summary"):]
    assert "script interrupted (Ctrl-C), exit status 130: what it finished before is below" in summary
    assert "WARNING: the script was interrupted before it built a model through neuralop.get_model" in summary
    assert "Traceback" not in captured.err and "KeyboardInterrupt" not in captured.err
    report = json.loads(report_file.read_text())
    assert (report["exit_status"], report["error"], report["interrupted"]) == (130, None, True)
    assert not activation.is_enabled()


def test_the_report_records_how_the_script_ended(probe, fake_parts, tmp_path, capsys):
    script, record_file = probe
    ends = {}
    for name, args in {"ok": [], "exit": ["3"], "raise": ["raise"]}.items():
        report_file = tmp_path / f"{name}.json"
        main([str(script), "--mp.report", str(report_file), "--", str(record_file), *args])
        report = json.loads(report_file.read_text())
        ends[name] = (report["exit_status"], report["error"], report["interrupted"])
    assert ends == {"ok": (0, None, False), "exit": (3, None, False),
                    "raise": (1, "ZeroDivisionError('script failed')", False)}


def test_a_script_that_stops_before_building_a_model_is_not_told_its_precision_was_not_applied(probe, fake_parts,
                                                                                                capsys):
    script, record_file = probe
    assert run_script(script, [str(record_file), "2"], precision="mixed").exit_status == 2
    summary = capsys.readouterr().out.split("neuralop-mp summary")[1]
    assert "script exit status: 2" in summary
    assert ("WARNING: the script ended with exit status 2 before it built a model through neuralop.get_model: "
            "nothing ran with the plugin.") in summary
    assert "NOT applied" not in summary and "never created neuralop.Trainer" not in summary


@pytest.mark.parametrize("where", ["missing folder", "a folder", "a file as its folder", "read-only folder"])
def test_an_unwritable_report_path_is_a_usage_error_before_the_script_starts(probe, fake_parts, tmp_path, capsys,
                                                                             where):
    script, record_file = probe
    if where == "missing folder":
        report, expected = tmp_path / "nonexistent" / "dir" / "r.json", "No such file or directory"
    elif where == "a folder":
        report, expected = tmp_path, f"--mp.report {str(tmp_path)!r} is a folder; give a file name"
    elif where == "a file as its folder":
        (tmp_path / "file").write_text("")
        report, expected = tmp_path / "file" / "r.json", "is a file, not a folder"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        if os.access(locked, os.W_OK):  # root writes anywhere
            pytest.skip("running as root: a read-only folder is still writable")
        report, expected = locked / "r.json", "Permission denied"
    assert main([str(script), "--mp.report", str(report), "--", str(record_file)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("neuralop-mp run: error: ") and expected in captured.err, captured.err
    assert "Traceback" not in captured.err and "--mp.report" in captured.err
    assert captured.out == "" and not record_file.exists()  # nothing ran


def test_a_report_that_becomes_unwritable_during_the_run_is_one_message(tmp_path, fake_parts, capsys):
    # the script removes the report's folder: the check before it passed, the write after it fails
    script = tmp_path / "remove_folder.py"
    script.write_text("import shutil, sys\nshutil.rmtree(sys.argv[1])\n")
    folder = tmp_path / "reports"
    folder.mkdir()
    report = folder / "r.json"
    assert main([str(script), "--mp.report", str(report), "--", str(folder)]) == 1
    captured = capsys.readouterr()
    assert f"neuralop-mp run: error: the report could not be written to {str(report)!r}" in captured.err
    assert "Traceback" not in captured.err
    assert "neuralop-mp summary" in captured.out  # the summary came first, as always


@pytest.mark.parametrize("rank_env, rank", [("1", 1), ("0", 0), (None, 0), ("x", 0)])
def test_the_rank_outlives_a_process_group_the_script_ended(monkeypatch, rank_env, rank):
    """Upstream's train_navier_stokes.py destroys its process group before it returns: every rank
    then read as 0, and each printed the summary and wrote the report to one path."""
    import torch.distributed as dist

    from neuralop_mp.training.distributed import launch_rank

    assert not dist.is_initialized()  # no group now: the ended one's
    if rank_env is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank_env)
    assert launch_rank() == rank


def test_under_torchrun_only_rank_0_prints_the_summary_and_writes_the_report(probe, fake_parts, tmp_path, monkeypatch,
                                                                            capsys):
    from neuralop_mp.runner import cli

    script, record_file = probe
    for rank in (1, 0):
        monkeypatch.setattr(cli, "launch_rank", lambda rank=rank: rank)
        report_file = tmp_path / f"rank{rank}.json"
        assert main([str(script), "--mp.report", str(report_file), "--", str(record_file)]) == 0
        out = capsys.readouterr().out
        assert "probe says hello" in out  # every rank runs the script
        assert ("neuralop-mp summary" in out) == (rank == 0) and report_file.exists() == (rank == 0)


def test_under_torchrun_only_rank_0_prints_the_start_header_and_warnings(probe, fake_parts, monkeypatch, capsys):
    """Every rank runs the script; the header and the start warnings (the probe never calls get_model)
    are printed once, by rank 0, as the summary is."""
    from neuralop_mp.runner import cli

    script, record_file = probe
    for rank in (1, 0):
        monkeypatch.setattr(cli, "launch_rank", lambda rank=rank: rank)
        assert run_script(script, [str(record_file)], precision="mixed").exit_status == 0
        before_script = capsys.readouterr().out.split("probe says hello")[0]
        assert ("neuralop-mp run: intercepting" in before_script) == (rank == 0)
        assert ("with the plugin enabled (precision=mixed)" in before_script) == (rank == 0)
        assert ("WARNING: the script never calls get_model" in before_script) == (rank == 0)


def test_two_scripts_of_two_folders_import_their_own_config(tmp_path, fake_parts):
    """Upstream's scripts import ``config`` through ``sys.path.insert(0, "../")``: a script run after
    another, from another folder, imports its own folder's ``config``, not the first one's (the
    import system keeps one finder per sys.path string, which pointed at the first folder)."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "../")
        import config
        with open(sys.argv[1], "w") as f:
            f.write(config.NAME)
        """
    )
    seen = []
    for name in ("first", "second"):
        (tmp_path / name / "scripts").mkdir(parents=True)
        (tmp_path / name / "config").mkdir()
        (tmp_path / name / "config" / "__init__.py").write_text(f"NAME = {name!r}\n")
        (tmp_path / name / "scripts" / "train_x.py").write_text(script)
        record = tmp_path / f"{name}.txt"
        cwd = os.getcwd()
        os.chdir(tmp_path / name / "scripts")  # as upstream's scripts run: from their folder
        try:
            assert run_script("train_x.py", [str(record)]).exit_status == 0
        finally:
            os.chdir(cwd)
        seen.append(record.read_text())
        assert "config" not in sys.modules
    assert seen == ["first", "second"]
