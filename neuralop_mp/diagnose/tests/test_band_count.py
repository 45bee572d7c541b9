"""More bands than the grid holds is refused by every caller (measure and calibrate_precision
capped it without a word; only the CLI refused, and only after generating the data); the default
keeps working on small grids, capped."""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.cli import main
from neuralop_mp.diagnose import calibrate_precision, measure
from neuralop_mp.diagnose.bands import band_edges


def _model():
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(2, 2), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)


def test_band_edges_refuses_more_bands_than_the_grid_holds_naming_the_cap():
    with pytest.raises(ValueError) as refused:
        band_edges([8, 8], 6)
    assert str(refused.value) == ("Invalid n_bands=6; allowed values: integers in [1, 5] (the 8x8 grid has "
                                  "frequencies |k| 0 to 4, one band each at most).")
    assert len(band_edges([8, 8], 5)) == 5
    from neuralop_mp.diagnose.bands import band_count

    assert band_count([4, 4]) == 3 and band_count([16, 16]) == 4  # the default, capped where the grid holds fewer


def test_measure_refuses_more_bands_than_the_measured_grid_holds():
    """The errors are measured at N (16x16 inputs restricted to 8x8): 5 bands at most."""
    with pytest.raises(ValueError, match=r"^Invalid n_bands=6; allowed values: integers in \[1, 5\] \(the 8x8 grid"):
        measure(_model(), torch.randn(2, 1, 16, 16), n_bands=6)
    assert len(measure(_model(), torch.randn(2, 1, 16, 16), n_bands=5)["bands"]) == 5


def test_the_default_bands_still_work_on_a_small_grid():
    x = torch.randn(2, 1, 8, 8)  # measured on 4x4: three bands
    assert len(measure(_model(), x)["bands"]) == 3
    assert calibrate_precision(_model(), x, apply=False)["fno_block_precision"] in ("full", "mixed")


def test_the_cli_refuses_before_generating_any_data(monkeypatch, capsys, tmp_path):
    import neuralop_mp.diagnose.cli as diagnose_cli

    def generated(*args, **kwargs):
        raise AssertionError("data generated before --n-bands was checked")

    monkeypatch.setattr(diagnose_cli, "fine_inputs", generated)
    status = main(["diagnose", "darcy", "--n-bands", "6", "--n-samples", "2", "--model.n_modes", "[4,4]",
                   "--model.hidden_channels", "4", "--model.n_layers", "1", "--data.train_resolution", "8",
                   "--out", str(tmp_path / "d")])
    assert status == 2
    assert capsys.readouterr().err == ("neuralop-mp diagnose: error: Invalid --n-bands=6; allowed values: integers "
                                       "in [1, 5] (the 8x8 grid has frequencies |k| 0 to 4, one band each at most).\n")


def test_an_explicit_default_is_not_capped():
    """As measure's docstring says: None is the default, capped (3 bands on a 4x4 grid); the number
    4 given is refused there like any number above the cap."""
    x = torch.randn(2, 1, 8, 8)  # measured on 4x4
    assert len(measure(_model(), x, n_bands=None)["bands"]) == 3
    with pytest.raises(ValueError, match=r"^Invalid n_bands=4; allowed values: integers in \[1, 3\]"):
        measure(_model(), x, n_bands=4)
