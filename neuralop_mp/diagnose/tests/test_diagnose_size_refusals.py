"""``neuralop-mp diagnose`` refuses a resolution below its dataset's smallest grid naming ``--resolution``
and the dataset's rule (it said "Invalid train_resolution=1; allowed values: integers >= 2.", a bound
wrong for Darcy, or "Invalid Darcy resolution=2", neither the option typed), before any data are
generated; and a model whose dimension is not the data's is said as such (it said "x_fine has shape
...", an argument the command's user never named)."""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main
from neuralop_mp.diagnose import cli as diagnose_cli
from neuralop_mp.diagnose.measure import measure

SMALL = ["--n-samples", "2", "--model.hidden_channels", "4", "--model.n_layers", "1"]


def _error_line(err):
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if "error:" in line]
    return line.removeprefix("neuralop-mp diagnose: error: ")


@pytest.mark.parametrize("args, expected", [
    (["darcy", "--resolution", "1"], "Invalid --resolution=1; allowed values for the darcy data: integers >= 4"),
    (["darcy", "--resolution", "2"], "Invalid --resolution=2; allowed values for the darcy data: integers >= 4"),
    (["darcy", "--resolution", "0"], "Invalid --resolution=0; allowed values for the darcy data: integers >= 4"),
    (["darcy", "--data", "navier_stokes", "--resolution", "4"],
     "Invalid --resolution=4; allowed values for the navier_stokes data: powers of 2 >= 8"),
    (["burgers", "--resolution", "4"], "Invalid --resolution=4; allowed values for the burgers data: integers >= 8"),
    (["darcy", "--data.train_resolution", "2"],
     "Invalid data.train_resolution=2; allowed values for the darcy data: integers >= 4"),
], ids=["darcy-1", "darcy-2", "darcy-0", "ns-4", "burgers-4", "config-2"])
def test_a_resolution_below_the_datasets_smallest_grid_names_the_option(tmp_path, capsys, no_work, args, expected):
    assert main(["diagnose", *args, *SMALL, "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(expected), line
    assert not (tmp_path / "out").exists()


def test_the_smallest_grid_itself_is_measured(tmp_path, capsys):
    """Darcy's smallest grid, 4 (its inputs at 8), is taken as before."""
    assert main(["diagnose", "darcy", "--resolution", "4", "--n-bands", "2", "--model.n_modes", "[2, 2]", *SMALL,
                 "--out", str(tmp_path / "out")]) == 0
    assert "at 4x4" in capsys.readouterr().out


def test_a_3d_model_on_2d_data_is_said_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(diagnose_cli, "fine_inputs", lambda *args, **kwargs: torch.randn(2, 1, 16, 16))
    assert main(["diagnose", "darcy", "--model.n_modes", "[4, 4, 4]", "--data.train_resolution", "8", *SMALL,
                 "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "x_fine" not in line
    assert line.startswith("MixedPrecisionFNO is 3-D (model.n_modes has 3 entries) and the data are 2-D "
                           "(inputs of shape (2, 1, 16, 16)"), line
    assert line.endswith("allowed: a model whose model.n_modes has 2 entries for these data.")


def test_measure_says_the_dimensions_of_the_model_and_the_data():
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4,), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    with pytest.raises(ValueError, match=r"^MixedPrecisionFNO is 1-D \(model.n_modes has 1 entry\) and the data "
                                         r"are 2-D .* a model whose model.n_modes has 2 entries"):
        measure(model, torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"^The inputs have shape \(5,\), not \(batch, channels\) \+ spatial axes"):
        measure(model, torch.randn(5))
