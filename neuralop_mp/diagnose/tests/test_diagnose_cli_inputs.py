"""``neuralop-mp diagnose``: bad inputs fail before any work in one line naming the option; an odd
fine grid (Burgers) is measured as "auto" measures it; the printed train flags reproduce the
recommendation through ``neuralop-mp train``'s own parser."""
import itertools
import json
import shlex

import pytest
import torch

from neuralop_mp.cli import main
from neuralop_mp.diagnose import cli as diagnose_cli

OVERRIDES = ["--model.hidden_channels", "4", "--model.n_layers", "1", "--model.n_modes", "[4, 4]"]
TINY = ["--n-samples", "2", "--n-bands", "2", *OVERRIDES]


def _error_lines(err):
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if "error:" in line]


@pytest.mark.parametrize("below", ["afile/sub", "afile"])
def test_an_out_folder_that_cannot_be_written_fails_before_the_measurement(tmp_path, capsys, no_work, below):
    (tmp_path / "afile").write_text("a file in the way")
    with pytest.raises(SystemExit) as exit_status:  # argparse's usage error, when --out is parsed
        main(["diagnose", "darcy", "--out", str(tmp_path / below)] + TINY)
    assert exit_status.value.code == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("neuralop-mp diagnose: error: argument --out: ") and str(tmp_path / "afile") in line
    assert "choose another with --out" in line


def test_the_default_out_folder_is_checked_before_the_measurement_too(tmp_path, capsys, no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "diagnose").write_text("a file where diagnose/<name> would go")
    assert main(["diagnose", "darcy"] + TINY) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "'diagnose/darcy' cannot be created" in line and "choose another with --out" in line


def test_an_unknown_option_is_called_unknown_with_close_matches(tmp_path, capsys, no_work):
    # alone it used to be "Missing value for option --bogus."
    assert main(["diagnose", "darcy", "--bogus", "--out", str(tmp_path)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "Unknown option --bogus." in line and "Missing value" not in line
    assert "--n-samples" in line and "config keys" in line  # what it may be instead
    assert main(["diagnose", "darcy", "--model.hidden_chanels", "3", "--out", str(tmp_path)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "Unknown option --model.hidden_chanels. Did you mean: --model.hidden_channels?" in line
    assert main(["diagnose", "darcy", "--recipe-table", "--bogus", "--out", str(tmp_path)]) == 2
    assert "Unknown option --bogus." in capsys.readouterr().err


@pytest.mark.parametrize("value", ["16,abc", "0", "16,", ""])
def test_bad_recipe_table_resolutions_name_the_option(tmp_path, capsys, no_work, value):
    with pytest.raises(SystemExit) as exit_status:
        main(["diagnose", "darcy", "--recipe-table", "--resolutions", value, "--out", str(tmp_path)])
    assert exit_status.value.code == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert line == (f"neuralop-mp diagnose: error: argument --resolutions: invalid value {value!r}; "
                    "allowed values: comma-separated integers >= 1, e.g. 64,128")


class Captured(Exception):
    """Raised in place of the training run, carrying its config."""


def _train_config(flags, tmp_path, monkeypatch):
    """The config ``neuralop-mp train`` builds from ``flags`` (its own parser: unknown options fail)."""
    import neuralop_mp.train_pipeline as pipeline

    def capture(config, **kwargs):
        raise Captured(config)

    monkeypatch.setattr(pipeline, "run_training", capture)
    with pytest.raises(Captured) as captured:
        main(["train", *flags, "--output_dir", str(tmp_path / "run")])
    return captured.value.args[0]


def _runs_as(config):
    """(mode, half_dtype, stabilizer, autocast) every epoch of a run of ``config`` runs in."""
    from neuralop_mp import build_steps

    policy = build_steps.precision_policy(config)
    [phase] = build_steps.precision_schedule(config.opt.precision_schedule, policy)  # one phase: throughout
    dtype = None if phase.mode == "full" else policy.half_dtype
    return phase.mode, dtype, phase.stabilizer_for(getattr(torch, dtype) if dtype else None), phase.autocast


RECOMMENDATIONS = [  # every "model" entry recommend() can give: full never with autocast
    {"fno_block_precision": "full", "half_dtype": None, "stabilizer": stabilizer, "autocast": False}
    for stabilizer in (None, "tanh")
] + [
    {"fno_block_precision": mode, "half_dtype": dtype, "stabilizer": stabilizer, "autocast": autocast}
    for mode, dtype, stabilizer, autocast in itertools.product(
        ("mixed", "half"), ("float16", "bfloat16"), (None, "tanh"), (False, True))
]


# what the config or the overrides passed on may set before the printed flags
CONFLICTING = ["--opt.precision_schedule", "full:0.5,mixed:0.5", "--model.stabilizer", "tanh",
               "--model.fno_block_precision", "half", "--model.half_dtype", "float16"]


@pytest.mark.parametrize("model", RECOMMENDATIONS, ids=lambda m: "-".join(map(str, m.values())))
def test_train_flags_run_the_recommendation_through_trains_parser(model, tmp_path, monkeypatch):
    """Also after a schedule of the overrides: a recommendation equal to its mode's defaults
    used to leave it (no schedule flag), and the run followed that schedule."""
    from neuralop_mp.build_steps import stabilizer_schedule_warning
    from neuralop_mp.diagnose.recommend import train_flags

    flags = train_flags(model)
    assert "--model.autocast" not in flags and not any("=" in f for f in flags)
    schedule = dict(zip(flags[::2], flags[1::2])).get("--opt.precision_schedule")
    for before in ([], CONFLICTING):
        config = _train_config(["darcy", *before, *flags], tmp_path, monkeypatch)
        assert config.opt.precision_schedule == schedule, before  # the flags' one phase, whatever came before
        assert _runs_as(config) == tuple(model.values())
        # no warning that a stabilizer beside the schedule is not applied
        assert stabilizer_schedule_warning(config.model.stabilizer, config.opt.precision_schedule) is None


def test_diagnose_burgers_drops_the_odd_time_level_says_so_and_prints_train_flags(tmp_path, capsys, monkeypatch):
    """Burgers has 17 time levels at every resolution: diagnose used to refuse it ("x_fine's spatial
    sizes (17, 16) must be even"), where `train burgers --model.fno_block_precision auto` runs."""
    out = tmp_path / "out"
    assert main(["diagnose", "burgers", "--resolution", "8", "--out", str(out)] + TINY) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    diagnosis, recommendation = result["diagnosis"], result["recommendation"]
    assert diagnosis["fine_resolution"] == [16, 16] and diagnosis["resolution"] == [8, 8]
    dropped = [n for n in diagnosis["notes"] if "last point was dropped" in n]
    assert dropped == ["the fine grid 17x16 has an odd size: its last point was dropped (16x16), so that every "
                       "other point is the coarse grid"]
    assert f"note: {dropped[0]}" in printed
    # the flags printed run the recommendation through `neuralop-mp train`'s own parser
    [line] = [line for line in printed.splitlines() if line.startswith("Train with: neuralop-mp train ")]
    tokens = shlex.split(line.removeprefix("Train with: neuralop-mp train "))
    # the config, the resolution measured (burgers trains at 32), its overrides
    assert tokens == ["burgers", "--data.train_resolution", "8", *OVERRIDES, *recommendation["train_flags"]]
    config = _train_config(tokens, tmp_path, monkeypatch)
    assert config.name == "burgers" and config.model.hidden_channels == 4 and config.data.train_resolution == 8
    assert _runs_as(config) == tuple(recommendation["model"].values())


def test_an_even_grid_is_kept_as_it_is():
    from neuralop_mp.diagnose.measure import even_grid

    x = diagnose_cli.fine_inputs("load_darcy", {}, 4, 2)
    assert even_grid(x) == (x, None) and tuple(x.shape[2:]) == (8, 8)
