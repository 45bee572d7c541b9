"""Each command's data-root errors name its own option: `data` --root, `train` --data.data_root."""
import pytest

from neuralop_mp.cli import main
from neuralop_mp.data.cache import generate_cached
from neuralop_mp.run_setup import RunSetupError


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("")
    return path


def test_data_names_root_alone(afile, capsys):
    assert main(["data", "darcy", "--root", str(afile), "--res", "8", "--n-train", "2", "--n-test", "1",
                 "--quiet"]) == 2
    assert capsys.readouterr().err == (f"neuralop-mp data: error: Data folder {str(afile)!r} is a file, not a "
                                       "folder; choose another with --root.\n")


def test_train_names_data_data_root_alone(tmp_path, afile, capsys):
    assert main(["train", "darcy", "--opt.n_epochs", "1", "--threads", "1", "--data.data_root", str(afile),
                 "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"neuralop-mp train: error: Data folder {str(afile)!r} is a file, not a "
                                       "folder; choose another with --data.data_root.\n")


def _refusal(path):
    with pytest.raises(RunSetupError) as raised:
        generate_cached(path, {"generator": "test"}, 1, False, lambda: pytest.fail("computed"))
    return str(raised.value)


def test_the_cache_names_the_callers_option_and_train_and_evals_outside_a_command(afile):
    """The generation's own check (a loader generating for train or eval, or a Python caller):
    the config key, unless a command named its own option around it; restored after the block."""
    from neuralop_mp.data.cache import data_root_option

    path = afile / "darcy_train_8.pt"
    assert _refusal(path).endswith("is a file, not a folder; choose another with --data.data_root.")
    with data_root_option("--root"):
        assert _refusal(path).endswith("is a file, not a folder; choose another with --root.")
    assert _refusal(path).endswith("choose another with --data.data_root.")
