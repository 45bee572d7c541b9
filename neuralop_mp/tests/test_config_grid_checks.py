"""Patching and UNO scalings that the run's grids cannot take are refused before any data loads,
by upstream's own rules (checked here against upstream's classes), and the configs upstream's
rules accept still load."""
import contextlib
import io

import pytest
import torch

from neuralop_mp.cli import main
from neuralop_mp.configs import load_config

pytestmark = pytest.mark.reliability

UNO = ["--model", "UNOConfig"]
SMALL_SCALINGS = ["--model.uno_scalings", "[[1,1],[0.5,0.5],[1,1],[1,1]]"]


# ---------------------------------------------------------------- UNO scalings

def test_uno_scalings_whose_product_is_not_one_are_refused_naming_the_product_and_the_grids():
    with pytest.raises(ValueError) as raised:
        load_config("darcy", [*UNO, *SMALL_SCALINGS])
    message = str(raised.value)
    assert message.startswith("Invalid model.uno_scalings=[[1.0, 1.0], [0.5, 0.5], [1.0, 1.0], [1.0, 1.0]]")
    assert "per dimension is [0.5, 0.5]" in message
    assert "8x8 for the 16x16 inputs of data.train_resolution=16" in message and "\n" not in message


@pytest.mark.parametrize("overrides", [
    [],  # the default: 1 x 0.5 x 2 x 1
    ["--model.uno_scalings", "[[1,1],[0.99,0.99],[1,1],[1,1]]"],  # rounds 16 and 32 back (upstream trains it)
    ["--model.uno_scalings", "[[2,1],[0.5,1],[1,1],[1,1]]"],
])
def test_uno_scalings_that_give_every_grid_back_are_accepted(overrides):
    assert load_config("darcy", [*UNO, *overrides]).model.uno_scalings


def test_a_product_that_rounds_back_at_some_resolutions_only_is_refused_at_the_others():
    scalings = ["--model.uno_scalings", "[[1,1],[0.99,0.99],[1,1],[1,1]]"]
    with pytest.raises(ValueError, match=r"63x63 for the 64x64 inputs of data.test_resolutions entry 64"):
        load_config("darcy", [*UNO, *scalings, "--data.test_resolutions", "[16,64]"])


def test_uno_on_the_patches_and_on_burgers_time_axis():
    # with patching the model sees 8x8 patches of the 16x16 grid (levels 1, no padding): 0.99 rounds 8 back
    load_config("darcy", [*UNO, "--model.uno_scalings", "[[1,1],[0.99,0.99],[1,1],[1,1]]", "--patching.levels", "1",
                          "--model.data_channels", "1"])
    # Burgers' time axis may have any size: only a product of 1 along it is safe
    with pytest.raises(ValueError, match=r"per dimension is \[0.99, 1.*the time axis: any size"):
        load_config("burgers", [*UNO, "--model.uno_scalings", "[[1,1],[0.99,1],[1,1],[1,1]]"])


@pytest.mark.parametrize("scalings", [[[1, 1], [0.5, 0.5], [1, 1]], [[1, 1], [0.99, 0.99], [1, 1]],
                                      [[0.75, 1], [4 / 3, 1], [1.02, 1]], [[1, 1], [1 / 3, 1 / 3], [3, 3]]])
@pytest.mark.parametrize("domain_padding", [None, 0.25])
def test_the_output_size_rule_is_upstreams_uno(scalings, domain_padding):
    from neuralop.models import UNO as UpstreamUNO

    from neuralop_mp.configs.grid_checks import uno_output_size, uno_scaling_product

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its skips
        model = UpstreamUNO(in_channels=1, out_channels=1, hidden_channels=2, lifting_channels=2,
                            projection_channels=2, n_layers=3, uno_out_channels=[2, 2, 2],
                            uno_n_modes=[[2, 2]] * 3, uno_scalings=scalings, domain_padding=domain_padding,
                            channel_mlp_skip="linear")
    product = uno_scaling_product(scalings, 2)
    for height, width in [(16, 16), (17, 24), (31, 9)]:
        out = model(torch.randn(1, 1, height, width))
        assert list(out.shape[-2:]) == [uno_output_size(height, product[0], domain_padding),
                                        uno_output_size(width, product[1], domain_padding)]


# ---------------------------------------------------------------- patching

def test_patching_levels_a_resolution_cannot_take_are_refused_with_the_allowed_levels_and_resolutions():
    with pytest.raises(ValueError) as raised:
        load_config("darcy", ["--patching.levels", "2"])
    message = str(raised.value)
    assert message.startswith("Invalid patching.levels=2 for data.train_resolution=16 (patching.padding=0.0)")
    assert "Allowed at resolution 16: patching.levels 0, 1;" in message
    assert "with patching.levels=2: resolutions such as 32, 36, 40." in message
    from neuralop_mp.configs.grid_checks import patching_works

    for resolution in (32, 36, 40):
        assert patching_works(resolution, 2, 0.0, False)


@pytest.mark.parametrize("overrides, message", [
    (["--patching.levels", "1", "--data.train_resolution", "17", "--data.test_resolutions", "[17]",
      "--data.n_tests", "[4]", "--data.test_batch_sizes", "[4]"],
     r"data.train_resolution=17 .*a 17-point axis does not split into 2\*\*levels=2 equal patches.* 18, 20, 22"),
    (["--patching.levels", "2", "--data.train_resolution", "32", "--data.test_resolutions", "[32,16]"],
     r"Invalid patching.levels=2 for data.test_resolutions entry 16 "),
    (["--patching.levels", "1", "--patching.padding", "2.0"],
     r"patching.padding=2.0\): its 8x8 patches padded by round\(16 x 2.0\) = 32 points per side do not fit the grid.*"
     r"Allowed at resolution 16: patching.levels 0, or a lower patching.padding\.$"),
])
def test_each_resolution_and_the_padding_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("darcy", overrides)


def test_patching_with_burgers_1d_inputs_is_refused():
    with pytest.raises(ValueError, match=r"Invalid patching.levels=1 with the burgers data; allowed values: 0\."):
        load_config("burgers", ["--patching.levels", "1"])


@pytest.mark.parametrize("overrides", [
    ["--patching.levels", "1"],
    ["--patching.levels", "1", "--patching.stitching", "true", "--patching.padding", "0.25"],
    ["--patching.levels", "2", "--data.train_resolution", "32", "--data.test_resolutions", "[32,64]"],
])
def test_patching_that_works_is_accepted(overrides):
    assert load_config("darcy", overrides).patching.levels >= 1


class _LevelZero(torch.nn.Module):
    def forward(self, x, **kwargs):
        return x[:, :1]


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("padding", [0.0, 0.25])
@pytest.mark.parametrize("stitching", [False, True])
def test_the_patching_rule_is_where_upstreams_processor_fails(levels, padding, stitching):
    """Every grid from 4 to 40: the check accepts exactly those on which upstream's processor
    runs a batch through, in training and in evaluation."""
    from neuralop.data.transforms.data_processors import MGPatchingDataProcessor

    from neuralop_mp.configs.grid_checks import patching_works

    with contextlib.redirect_stdout(io.StringIO()):
        processor = MGPatchingDataProcessor(_LevelZero(), levels=levels, padding_fraction=padding,
                                            stitching=stitching)
    for resolution in range(4, 41):
        runs = True
        try:
            for training in (True, False):
                processor.train(training)
                x = torch.randn(2, 1, resolution, resolution)
                sample = processor.preprocess({"x": x, "y": x.clone()})
                out, sample = processor.postprocess(processor.model(sample["x"]), sample)
                assert out.shape == sample["y"].shape
        except (AssertionError, RuntimeError, ValueError, IndexError):
            runs = False
        assert patching_works(resolution, levels, padding, stitching) == runs, resolution


# ---------------------------------------------------------------- the CLI, before the data

@pytest.mark.parametrize("overrides, key", [(["--patching.levels", "2"], "patching.levels=2"),
                                           ([*UNO, *SMALL_SCALINGS], "model.uno_scalings=")])
def test_train_refuses_in_one_line_before_touching_the_data(overrides, key, tmp_path, capsys):
    root, out = tmp_path / "never", tmp_path / "run"
    assert main(["train", "darcy", "--data.data_root", str(root), "--output_dir", str(out), *overrides]) == 2
    err = capsys.readouterr().err
    assert f"neuralop-mp train: error: Invalid {key}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not root.exists() and not out.exists()
