"""A file where a folder is to be written says so ("is a file, not a folder"), one rule
(:func:`~neuralop_mp.run_setup.file_in_the_way`) for every folder a command writes into: it said
"is not writable (File exists)" / "(Not a directory)", or of a checkpoint's ``save_dir`` under a file,
that the file "is not writable", which no permission would change."""
import pytest

from neuralop_mp.run_setup import RunSetupError, check_writable
from neuralop_mp.training.checkpointing import CheckpointError, check_save_dir


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    return path


def test_the_file_in_the_way_is_the_first_path_that_exists(tmp_path, afile):
    from neuralop_mp.run_setup import file_in_the_way

    assert file_in_the_way(afile) == afile
    assert file_in_the_way(afile / "a" / "b") == afile
    assert file_in_the_way(tmp_path / "new" / "run") is None
    assert file_in_the_way(tmp_path) is None


def test_a_file_given_as_the_folder_is_said_to_be_a_file(afile):
    with pytest.raises(RunSetupError) as raised:
        check_writable(afile)
    assert str(raised.value) == (f"Output folder {str(afile)!r} is a file, not a folder; choose another with "
                                 "--output_dir.")


def test_a_folder_under_a_file_names_the_file(afile):
    with pytest.raises(RunSetupError) as raised:
        check_writable(afile / "run", "--data.data_root", what="Data folder")
    assert str(raised.value) == (f"Data folder {str(afile / 'run')!r} cannot be created: {str(afile)!r} is a file, "
                                 "not a folder; choose another with --data.data_root.")


def test_a_checkpoint_folder_under_a_file_names_the_file(afile):
    with pytest.raises(CheckpointError) as raised:
        check_save_dir(afile / "ck")
    assert str(raised.value) == f"Cannot write checkpoints to {afile / 'ck'}: {afile} is a file, not a folder."


def test_train_with_a_file_as_output_dir_is_one_line(afile, capsys):
    from neuralop_mp import cli

    assert cli.main(["train", "darcy", "--output_dir", str(afile), "--opt.n_epochs", "1"]) == 2
    assert capsys.readouterr().err == (f"neuralop-mp train: error: Output folder {str(afile)!r} is a file, not a "
                                       "folder; choose another with --output_dir.\n")


def test_a_file_as_the_data_root_is_refused_before_the_run_folder_is_made(tmp_path, afile, capsys):
    """The refusal came at the data load, after the run folder (its command.json) was made."""
    from neuralop_mp.cli import main

    out = tmp_path / "run"
    assert main(["train", "darcy", "--opt.n_epochs", "1", "--threads", "1", "--data.data_root", str(afile),
                 "--output_dir", str(out)]) == 2
    # train's own option alone (it named data's --root beside it)
    assert capsys.readouterr().err == (f"neuralop-mp train: error: Data folder {str(afile)!r} is a file, not a "
                                       "folder; choose another with --data.data_root.\n")
    assert not out.exists()


def test_the_data_command_names_its_own_option(afile, capsys):
    from neuralop_mp.cli import main

    assert main(["data", "darcy", "--root", str(afile), "--res", "8", "--n-train", "2", "--n-test", "1",
                 "--quiet"]) == 2
    assert capsys.readouterr().err == (f"neuralop-mp data: error: Data folder {str(afile)!r} is a file, not a "
                                       "folder; choose another with --root.\n")


def test_the_data_cache_names_the_option_of_the_command_around_it(afile):
    """The generation's own check (a loader generating for train or eval, or a Python caller):
    the config key, unless a command named its own option around it; restored after the block."""
    from neuralop_mp.data.cache import data_root_option, generate_cached

    def refusal():
        with pytest.raises(RunSetupError) as raised:
            generate_cached(afile / "darcy_train_8.pt", {"generator": "test"}, 1, False,
                            lambda: pytest.fail("computed"))
        return str(raised.value)

    assert refusal().endswith("is a file, not a folder; choose another with --data.data_root.")
    with data_root_option("--root"):
        assert refusal().endswith("is a file, not a folder; choose another with --root.")
    assert refusal().endswith("choose another with --data.data_root.")


# Each command that generates data names how its own user chooses another data root.

def _data_folder_refusal(afile, option):
    return (f"Data folder {str(afile / 'd')!r} cannot be created: {str(afile)!r} is a file, not a folder; "
            f"choose another with {option}.")


@pytest.mark.parametrize("name", ["schedule", "scope"])
def test_a_benchmark_names_the_environment_variable_in_one_line(name, afile, tmp_path, monkeypatch, capsys):
    """bench has no data-root option: it said --data.data_root, in a traceback."""
    from neuralop_mp.cli import main

    monkeypatch.setenv("NEURALOP_MP_DATA", str(afile / "d"))
    with pytest.raises(SystemExit) as stopped:
        main(["bench", name, "--quick", "--threads", "1", "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    # the line before it says which data the benchmark was about to read (bench.cli.announce_data)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"neuralop-mp bench {name}: ") and " data: " in lines[0]
    assert lines[-1] == (f"neuralop-mp bench {name}: error: "
                         + _data_folder_refusal(afile, "the NEURALOP_MP_DATA environment variable"))


def test_the_optimizer_benchmarks_accuracy_data_names_the_environment_variable(afile, monkeypatch, capsys):
    """Its accuracy rows read $NEURALOP_MP_DATA itself (a temporary folder without it); they come
    after the memory rows, so the run is cut to them here."""
    from neuralop_mp.bench import optimizer

    monkeypatch.setenv("NEURALOP_MP_DATA", str(afile / "d"))
    monkeypatch.setattr(optimizer, "_run", lambda args, argv: optimizer.darcy_accuracy([]))
    with pytest.raises(SystemExit) as stopped:
        optimizer.main(["--quick"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ("neuralop-mp bench optimizer: error: "
                                       + _data_folder_refusal(afile, "the NEURALOP_MP_DATA environment variable")
                                       + "\n")


def test_the_auto_benchmark_refuses_a_data_root_in_one_line(afile, tmp_path, monkeypatch, capsys):
    from neuralop_mp.cli import main

    monkeypatch.setenv("NEURALOP_MP_DATA", str(afile / "d"))
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "auto", "--quick", "--datasets", "darcy", "--recipes", "full", "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralop-mp bench auto: error: Data folder {str(afile / 'd')!r}") and err.count("\n") == 1
    assert err.endswith("choose another with the NEURALOP_MP_DATA environment variable.\n")


def test_diagnose_takes_the_data_root_it_names_with_a_checkpoint(afile, tmp_path, monkeypatch, capsys):
    """It named --data.data_root, then refused it: "config overrides ... do not apply to a checkpoint"."""
    import torch

    from neuralop_mp import MixedPrecisionFNO
    from neuralop_mp.cli import main

    torch.manual_seed(0)
    MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                      fno_block_precision="mixed", half_dtype="bfloat16").save_checkpoint(tmp_path / "ckpt", "model")
    command = ["diagnose", str(tmp_path / "ckpt" / "model"), "--resolution", "8", "--n-samples", "2",
               "--n-bands", "2", "--out", str(tmp_path / "out")]
    monkeypatch.setenv("NEURALOP_MP_DATA", str(afile / "d"))
    assert main(command) == 2
    assert capsys.readouterr().err == ("neuralop-mp diagnose: error: "
                                       + _data_folder_refusal(afile, "--data.data_root") + "\n")
    assert main([*command, "--data.data_root", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "darcy_test_16.pt").is_file()


def test_diagnose_keeps_the_data_root_with_another_dataset(afile, tmp_path, capsys):
    """--data dropped the config's data root: the data were generated in the default one, silently."""
    from neuralop_mp.cli import main

    assert main(["diagnose", "darcy", "--data", "darcy", "--data.data_root", str(afile / "d"), "--resolution", "8",
                 "--n-samples", "2", "--n-bands", "2", "--model.hidden_channels", "4", "--model.n_layers", "1",
                 "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == ("neuralop-mp diagnose: error: "
                                       + _data_folder_refusal(afile, "--data.data_root") + "\n")
