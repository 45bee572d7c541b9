"""Argument handling of ``neuralop-mp run``: our flags before ``--``, the script's after."""
import pytest

from neuralop_mp.runner.cli import KNOWN_FLAGS, UsageError, main, parse_args


def test_flags_before_separator_are_ours_and_the_rest_goes_to_the_script():
    script, options, script_args = parse_args(
        ["train.py", "--mp.precision", "mixed", "--mp.half_dtype=bfloat16", "--mp.data-root", "/d",
         "--", "--opt.n_epochs", "3", "--mp.precision", "half"]
    )
    assert script == "train.py"
    assert options == {"precision": "mixed", "half_dtype": "bfloat16", "data_root": "/d"}
    # after '--' everything is the script's, even a flag spelled like ours
    assert script_args == ["--opt.n_epochs", "3", "--mp.precision", "half"]


def test_flags_may_come_before_the_script_and_without_separator():
    script, options, script_args = parse_args(["--mp.schedule", "half:0.25,mixed:0.5,full:0.25", "t.py"])
    assert (script, options, script_args) == ("t.py", {"schedule": "half:0.25,mixed:0.5,full:0.25"}, [])


@pytest.mark.parametrize("spelling", ["--mp.data-root", "--mp.data_root", "--mp-data-root"])
def test_dash_and_underscore_spellings_are_the_same_flag(spelling):
    assert parse_args(["t.py", spelling, "/x"])[1] == {"data_root": "/x"}


def test_tensorgrad_settings_are_converted_to_numbers():
    _, options, _ = parse_args(
        ["t.py", "--mp.optimizer", "tensorgrad", "--mp.tensorgrad_rank", "0.2", "--mp.tensorgrad_update_proj_gap=50"]
    )
    assert options == {"optimizer": "tensorgrad", "tensorgrad_rank": 0.2, "tensorgrad_update_proj_gap": 50}
    assert isinstance(options["tensorgrad_update_proj_gap"], int)
    with pytest.raises(UsageError, match=r"Invalid --mp.tensorgrad_rank='big'; expected a number"):
        parse_args(["t.py", "--mp.tensorgrad_rank", "big"])


@pytest.mark.parametrize("text, rank", [("8", 8), ("1", 1), ("1.0", 1.0), ("0.25", 0.25)])
def test_an_integer_tensorgrad_rank_is_a_rank_per_mode_and_a_float_a_fraction(text, rank):
    # as the configs read opt.tensorgrad_rank: 8 was made 8.0, which TensorGRaD refuses as a fraction > 1
    _, options, _ = parse_args(["t.py", "--mp.optimizer", "tensorgrad", "--mp.tensorgrad_rank", text])
    assert options["tensorgrad_rank"] == rank and type(options["tensorgrad_rank"]) is type(rank)


def test_unknown_flag_lists_every_known_flag():
    with pytest.raises(UsageError) as info:
        parse_args(["t.py", "--mp.precison", "mixed"])
    message = str(info.value)
    assert "'--mp.precison'" in message
    for flag in KNOWN_FLAGS:
        assert flag in message


@pytest.mark.parametrize(
    "argv, message",
    [
        (["t.py", "--mp.precision", "hlaf"], "Invalid --mp.precision='hlaf'; allowed values: 'full', 'mixed', 'half'."),
        (["t.py", "--mp.half_dtype", "fp8"], "Invalid --mp.half_dtype='fp8'; allowed values: 'auto', 'float16', 'bfloat16'."),
        (["t.py", "--mp.optimizer", "sgd"], "Invalid --mp.optimizer='sgd'; allowed values: 'adamw', 'tensorgrad', 'galore', 'sparse'."),
        (["t.py", "--mp.stabilizer", "clip"], "Invalid --mp.stabilizer='clip'; allowed values: 'none', 'off' (both: no stabilizer), 'tanh'."),
        (["t.py", "--mp.spectral_weight_dtype", "half"],
         "Invalid --mp.spectral_weight_dtype='half'; allowed values: 'complex64', 'complex32'."),
        (["t.py", "--mp.recompute", "spectral"],
         "Invalid --mp.recompute='spectral'; allowed values: 'none', 'fourier', 'block'."),
        (["t.py", "--mp.update_in_backward", "yes"],
         "Invalid --mp.update_in_backward='yes'; allowed values: True, False."),
    ],
)
def test_bad_values_get_the_check_choice_message(argv, message):
    with pytest.raises(ValueError) as info:
        parse_args(argv)
    assert str(info.value) == message


def test_memory_flags_are_parsed():
    _, options, _ = parse_args(["t.py", "--mp.recompute", "block", "--mp.update_in_backward", "True"])
    assert options == {"recompute": "block", "update_in_backward": True}


def test_recompute_chunk_points_flag_is_an_int_and_needs_block():
    _, options, _ = parse_args(["t.py", "--mp.recompute", "block", "--mp.recompute_chunk_points", "2048"])
    assert options == {"recompute": "block", "recompute_chunk_points": 2048}
    with pytest.raises(ValueError, match=r"--mp.recompute_chunk_points=2048 is used only with "
                                         r"--mp.recompute='block', not with --mp.recompute='fourier'"):
        parse_args(["t.py", "--mp.recompute", "fourier", "--mp.recompute_chunk_points", "2048"])
    # without --mp.recompute the script's own config may ask for block: checked once it is merged
    assert parse_args(["t.py", "--mp.recompute_chunk_points", "2048"])[1] == {"recompute_chunk_points": 2048}
    with pytest.raises(ValueError, match=r"--mp.recompute_chunk_points=0; allowed values: integers >= 1"):
        parse_args(["t.py", "--mp.recompute", "block", "--mp.recompute_chunk_points", "0"])
    with pytest.raises(ValueError, match=r"--mp.recompute_chunk_points='many'; expected an integer"):
        parse_args(["t.py", "--mp.recompute", "block", "--mp.recompute_chunk_points", "many"])


def test_stabilizer_none_spellings():
    # typed, a spelling of None asks for no stabilizer: "off", not the mode's default
    assert parse_args(["t.py", "--mp.stabilizer", "None"])[1] == {"stabilizer": "off"}
    assert parse_args(["t.py", "--mp.stabilizer", "tanh"])[1] == {"stabilizer": "tanh"}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["t.py", "--opt.n_epochs", "3"], "Unexpected argument '--opt.n_epochs' before '--'"),
        (["t.py", "other.py"], "Unexpected argument 'other.py' before '--'"),
        (["t.py", "--mp.precision"], "--mp.precision needs a value"),
        (["t.py", "--mp.precision", "--mp.half_dtype", "bfloat16"], "--mp.precision needs a value"),
        (["--mp.precision", "mixed"], "No script given"),
    ],
)
def test_malformed_command_lines(argv, fragment):
    with pytest.raises(UsageError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        parse_args(argv)


def test_main_reports_usage_errors_with_status_2(capsys):
    assert main(["t.py", "--mp.nope", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp run: error: Unknown flag '--mp.nope'")
    assert main(["missing_script.py"]) == 2
    assert "Script 'missing_script.py' not found" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "usage: neuralop-mp run SCRIPT.py" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mp.loss_scaling", "dynamc"], "Invalid --mp.loss_scaling='dynamc'; allowed values: 'auto', 'dynamic', 'none'."),
        (["--mp.tensorgrad_rank", "0"], "Invalid --mp.tensorgrad_rank=0; expected a float in (0, 1]"),
        (["--mp.tensorgrad_sparse_ratio", "2"], "Invalid --mp.tensorgrad_sparse_ratio=2.0; expected a float in (0, 1]"),
        (["--mp.tensorgrad_update_proj_gap", "0"], "Invalid --mp.tensorgrad_update_proj_gap=0; expected an int >= 1."),
        (["--mp.tensorgrad_min_params", "-1"], "Invalid --mp.tensorgrad_min_params=-1; expected an int >= 0."),
        (["--mp.tensorgrad_scale", "-1"], "Invalid --mp.tensorgrad_scale=-1.0; expected a finite number >= 0.0."),
        (["--mp.schedule", "half:2"], "Invalid --mp.schedule='half:2': "),
        (["--mp.precision", "mixed", "--mp.update_in_backward", "true", "--mp.loss_scaling", "dynamic"],
         "--mp.update_in_backward=True cannot be combined with --mp.loss_scaling='dynamic' (an overflow found "
         "in a late layer cannot undo the updates already made to earlier ones; train in bfloat16 or float32, or "
         "set --mp.loss_scaling none)."),
        (["--mp.optimizer", "galore", "--mp.tensorgrad_nonfinite_grad", "skip", "--mp.update_in_backward", "true"],
         "--mp.update_in_backward=True cannot be combined with --mp.tensorgrad_nonfinite_grad='skip'"),
    ],
)
def test_every_value_is_checked_by_the_librarys_own_check_before_the_script_starts(tmp_path, capsys, argv, message):
    script = tmp_path / "script.py"
    script.write_text(f"open({str(tmp_path / 'started')!r}, 'w').close()\n")
    with pytest.raises(ValueError) as info:
        parse_args([str(script), *argv])
    assert str(info.value).startswith(message), str(info.value)
    assert main([str(script), *argv]) == 2
    assert capsys.readouterr().err.startswith(f"neuralop-mp run: error: {message}")
    assert not (tmp_path / "started").exists()


def test_valid_combinations_still_pass():
    _, options, _ = parse_args(["t.py", "--mp.loss_scaling", "dynamic", "--mp.optimizer", "tensorgrad",
                                "--mp.tensorgrad_rank", "0.5", "--mp.update_in_backward", "false",
                                "--mp.schedule", "half:0.25,mixed"])
    assert options == {"loss_scaling": "dynamic", "optimizer": "tensorgrad", "tensorgrad_rank": 0.5,
                       "update_in_backward": False, "schedule": "half:0.25,mixed"}
    # "auto" scales only with float16, which the device decides: left to the trainer
    assert parse_args(["t.py", "--mp.update_in_backward", "true", "--mp.loss_scaling", "auto", "--mp.optimizer",
                       "adamw"])[1]["update_in_backward"] is True


@pytest.mark.parametrize("argv, message", [
    # AdamW reads no TensorGRaD setting: it was accepted and ignored
    (["--mp.optimizer", "adamw", "--mp.tensorgrad_rank", "0.5"],
     "Invalid --mp.tensorgrad_rank=0.5 with --mp.optimizer='adamw': AdamW reads no TensorGRaD setting"),
    (["--mp.optimizer", "adamw", "--mp.tensorgrad_nonfinite_grad", "skip"],
     "Invalid --mp.tensorgrad_nonfinite_grad='skip' with --mp.optimizer='adamw'"),
    (["--mp.optimizer", "galore", "--mp.tensorgrad_sparse_ratio", "0.1"],
     "Invalid --mp.tensorgrad_sparse_ratio=0.1 with --mp.optimizer='galore': that kind does not read it"),
])
def test_a_tensorgrad_setting_the_optimizer_does_not_read_is_refused(argv, message):
    with pytest.raises(UsageError) as info:
        parse_args(["t.py", *argv])
    assert str(info.value).startswith(message), info.value


def test_update_in_backward_is_refused_at_start_in_one_of_several_torchrun_ranks(tmp_path, capsys, monkeypatch):
    script = tmp_path / "script.py"
    script.write_text(f"open({str(tmp_path / 'started')!r}, 'w').close()\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = [str(script), "--mp.update_in_backward", "true"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralop-mp run: error: --mp.update_in_backward=True cannot run under torchrun "
                          "(WORLD_SIZE=2): update_in_backward=True cannot be combined with distributed=True (DDP ")
    assert "Traceback" not in err and not (tmp_path / "started").exists()
    with pytest.raises(ValueError, match=r"^--mp.update_in_backward=True cannot run under torchrun"):
        parse_args(argv)
    assert parse_args([str(script), "--mp.update_in_backward", "false"])[1] == {"update_in_backward": False}
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one rank: no DDP, nothing to refuse
    assert parse_args(argv)[1] == {"update_in_backward": True}


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_or_blank_data_root_is_refused_naming_the_flag(value, tmp_path, capsys):
    """--mp.data-root "" (an unset shell variable), or enable(data_root=""), was read as no data
    root at all, or, with the offline patches on, as the current folder; refused as the data
    command's --root is, before the script runs."""
    import neuralop_mp

    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('the script ran')\n")
    assert main([str(script), "--mp.data-root", value]) == 2
    assert f"--mp.data_root is {value!r} ({'empty' if not value else 'blank'}): allowed is a folder's path" in \
        capsys.readouterr().err
    for offline in (True, False):
        with pytest.raises(ValueError, match=rf"^data_root is {value!r} \((empty|blank)\): allowed is a folder's path"):
            neuralop_mp.enable(data_root=value, offline=offline)


def test_a_data_root_under_the_home_folder_that_is_a_file_is_refused(tmp_path, monkeypatch):
    """"~/data" was checked unexpanded (a folder "~" in the current one never exists), so a file at
    ~/data passed the is-it-a-file check the loaders then met."""
    import neuralop_mp

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ValueError, match=r"^Invalid data_root='~/data': a file; give the folder"):
        neuralop_mp.enable(data_root="~/data")
