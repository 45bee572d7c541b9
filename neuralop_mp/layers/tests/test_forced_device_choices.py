"""``force_device_choices``: one switch for every choice the plugin makes from a tensor's device
(the spectral product's path, the truncated inverse's last axis, the pointwise work), so that a
GPU's choices can be counted on a CPU."""
import pytest
import torch
from neuralop.layers.channel_mlp import ChannelMLP

from neuralop_mp.layers import product_paths
from neuralop_mp.layers.product_paths import force_device_choices
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.truncated_fft import set_last_axis_transform
from neuralop_mp.models.pointwise_tiles import _TiledPointwiseForward


@pytest.fixture
def last_axis_by_matmul():
    """The DFT-block matmul wherever it applies: a CPU's choice that a GPU never makes."""
    previous = set_last_axis_transform("matmul")
    yield
    set_last_axis_transform(previous)


@pytest.mark.usefixtures("last_axis_by_matmul")
def test_forced_choices_reach_the_spectral_layer_and_the_pointwise_work_and_are_restored():
    torch.manual_seed(0)
    layers = [MixedPrecisionSpectralConv(8, 8, (8, 8), fno_block_precision="mixed", half_dtype="bfloat16",
                                         factorization=factorization,
                                         implementation="factorized" if factorization else "reconstructed")
              for factorization in (None, "tucker")]
    x = torch.randn(1, 8, 16, 64)  # 64 points along the last axis, 5 kept: the matmul applies on a CPU
    mlp = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)  # the tiler holds it weakly
    tiled = _TiledPointwiseForward(mlp, 10)
    pointwise_x = torch.randn(2, 8, 5, 5)  # 50 points: 5 tiles of one row on a CPU

    def choices():
        spectral = []
        for layer in layers:
            layer(x)
            record = layer.last_product_path
            spectral.append((record["kernel"], record["compute_dtype"], record["last_axis_by_matmul"]))
        tiled(pointwise_x)
        return spectral, (tiled.last_tiles, tiled.last_product_dtype, tiled.last_recomputed)

    cpu = ([(product_paths.MODE_BATCHED, "float32", True), (product_paths.PAIRWISE, "float32", True)],
           (5, torch.float32, False))
    # a GPU's: 16-bit matrix products, TFNO's rebuilt dense weight, FFTs; the whole grid, upstream's
    # 1x1 modules, the lifting and projection recomputed
    gpu = ([(product_paths.MODE_BATCHED, "bfloat16", False), (product_paths.REBUILT, "bfloat16", False)],
           (1, None, True))
    assert choices() == cpu
    with force_device_choices("cuda"):
        assert choices() == gpu
        with force_device_choices(torch.device("cpu")):  # blocks nest
            assert choices() == cpu
        assert choices() == gpu
    assert choices() == cpu
    with pytest.raises(ZeroDivisionError), force_device_choices("cuda"):
        assert choices() == gpu
        1 / 0
    assert choices() == cpu


def test_a_forced_product_path_is_what_the_device_would_choose():
    """The forced path is the device's own choice (not a second rule): the same record as asking
    for the device outright."""
    shapes = [(1, 8, 8, 5), (3, 3, 3, 3), (8, 3), (8, 3), (8, 3), (5, 3)]  # spectrum, Tucker core, factors
    for kind in ("dense", "tucker"):
        with force_device_choices("cuda"):
            forced = product_paths.choose_product_path(kind, False, "mixed", torch.bfloat16, "cpu", shapes)
        assert forced == product_paths.choose_product_path(kind, False, "mixed", torch.bfloat16, "cuda", shapes)
        assert forced != product_paths.choose_product_path(kind, False, "mixed", torch.bfloat16, "cpu", shapes)


def test_the_dense_products_mode_chunks_follow_the_forced_device(monkeypatch):
    """The mode-batched product's chunks are sized by the device's budget (a CPU takes small
    products whole): forced "cuda", forward and backward size them as on a GPU."""
    from neuralop_mp.layers import mode_matmul

    asked = []
    original = mode_matmul._modes_per_chunk
    monkeypatch.setattr(mode_matmul, "_modes_per_chunk",
                        lambda *args: asked.append(args[-1]) or original(*args))
    layer = MixedPrecisionSpectralConv(8, 8, (8, 8), fno_block_precision="mixed", half_dtype="bfloat16")
    x = torch.randn(1, 8, 16, 16, requires_grad=True)
    layer(x).sum().backward()
    with force_device_choices("cuda"):
        layer(x).sum().backward()
    assert layer.last_product_path["kernel"] == product_paths.MODE_BATCHED
    assert asked == ["cpu", "cpu", "cuda", "cuda"]
