"""Lifting/projection MLPs that recompute their hidden activation: upstream's numbers, less kept."""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from neuralop.layers.channel_mlp import ChannelMLP

from neuralop_mp.layers.tests.reference import DEVICES, with_and_without_tiles
from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.layers.product_paths import force_device_choices
from neuralop_mp.models.pointwise_tiles import recomputes_on, set_pointwise_tiles
from neuralop_mp.models.recomputed_activation import mlp_recomputing_activation, recomputes_activation


def _grads(mlp, x, forward, autocast):
    mlp.zero_grad()
    x = x.detach().clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        y = forward(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device=y.device, dtype=y.dtype)
    y.backward(g)
    return y, [x.grad] + [p.grad.clone() for p in mlp.parameters()]


# float16 autocast on a CPU runs emulated convolutions: bfloat16 covers the CPU
CASES = [("cpu", None), ("cpu", torch.bfloat16)] + [
    pytest.param(device.values[0], autocast, marks=device.marks) for device in DEVICES[1:]
    for autocast in (None, torch.bfloat16, torch.float16)]


@pytest.mark.parametrize("device, autocast", CASES)
@pytest.mark.parametrize("activation", [F.gelu, F.silu])
def test_output_and_every_gradient_equal_upstreams_bit_for_bit(device, autocast, activation):
    torch.manual_seed(0)
    mlp = ChannelMLP(8, 3, hidden_channels=16, n_layers=2, n_dim=2, non_linearity=activation).to(device)
    x = torch.randn(2, 8, 12, 10, device=device)
    y_up, g_up = _grads(mlp, x, mlp.forward, autocast)
    y, g = _grads(mlp, x, lambda t: mlp_recomputing_activation(mlp, t), autocast)
    assert y.dtype == y_up.dtype and y.shape == y_up.shape and torch.equal(y, y_up)
    for ours, theirs in zip(g, g_up):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
@pytest.mark.parametrize("in_channels", [8, 32])
def test_it_keeps_the_smaller_of_its_input_and_the_hidden_activations_input(in_channels, autocast):
    """8 input channels (narrower than the 16 hidden ones, as a lifting or projection):
    only the input is kept; 32: the input and the hidden activation's input. Never the
    activation's output, nor what fc2 keeps."""
    mlp = ChannelMLP(in_channels, 3, hidden_channels=16, n_layers=2, n_dim=2)
    x = torch.randn(2, in_channels, 32, 32, requires_grad=True)
    kept = {}
    for name, forward in (("upstream", mlp.forward), ("recomputed", lambda t: mlp_recomputing_activation(mlp, t))):
        with SavedTensorBytes(exclude=[x, *mlp.parameters()]) as meter, \
                torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
            forward(x)
        kept[name] = meter.bytes
    size = 2 if autocast else 4
    hidden = 2 * 16 * 32 * 32 * size  # one tensor of the hidden width
    # what fc1 keeps besides its float32 input: autocast's copies of that input and of its weight
    fc1_copies = (2 * in_channels * 32 * 32 + 16 * in_channels) * size if autocast else 0
    fc2_weight_copy = 3 * 16 * size if autocast else 0
    assert kept["upstream"] == fc1_copies + 2 * hidden + fc2_weight_copy
    assert kept["recomputed"] == (0 if in_channels < 16 else fc1_copies + hidden)


def test_past_the_chunk_budget_it_runs_in_slices_of_points(monkeypatch):
    """A hidden layer larger than the device's chunk budget (shrunk here) is computed, and
    recomputed, a slice of points at a time: upstream's output, the weights' gradients up
    to the order of float32 sums, and a forward whose peak holds one slice of the hidden
    tensors instead of the whole grid's."""
    from neuralop_mp import chunk_budget
    from neuralop_mp.peak_memory import PeakTensorBytes

    torch.manual_seed(0)
    mlp = ChannelMLP(4, 3, hidden_channels=16, n_layers=2, n_dim=2)
    x = torch.randn(2, 4, 32, 32)
    hidden = 2 * 16 * 32 * 32 * 4  # bytes of one float32 hidden tensor: 128 KiB
    runs = {}
    for budget in (hidden, hidden // 4):  # one call, then 4 slices
        monkeypatch.setattr(chunk_budget, "DEVICE_CHUNK_BYTES", budget)
        mlp.zero_grad()
        xi = x.clone().requires_grad_()
        with PeakTensorBytes() as meter:
            y = mlp_recomputing_activation(mlp, xi)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))  # as _grads
        runs[budget] = (meter.peak_bytes, y.detach(), [xi.grad] + [p.grad.clone() for p in mlp.parameters()])
    (whole_peak, y_whole, g_whole), (sliced_peak, y_sliced, g_sliced) = runs[hidden], runs[hidden // 4]
    y_up, g_up = _grads(mlp, x, mlp.forward, None)
    assert torch.equal(y_whole, y_up) and all(torch.equal(a, b) for a, b in zip(g_whole, g_up))
    # each point by the same operations; the weights' gradients summed per slice (float32 sums)
    assert torch.allclose(y_sliced, y_up, rtol=0, atol=1e-6)
    for ours, theirs in zip(g_sliced, g_up):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    # the hidden layer's input and output (2 x 128 KiB) alive at once, against a quarter of them;
    # the slices' outputs (24 KiB in all) are alive until they are joined
    out_bytes = y_up.numel() * 4
    assert whole_peak - sliced_peak >= 2 * hidden * 3 // 4 - out_bytes, (whole_peak, sliced_peak)


def test_second_derivatives_equal_upstreams():
    """create_graph=True through the recomputed part: the gradient of a gradient norm with
    respect to the weights equals upstream's (a PINO-style loss on input derivatives)."""
    torch.manual_seed(0)
    mlp = ChannelMLP(3, 2, hidden_channels=8, n_layers=2, n_dim=2)
    x = torch.randn(2, 3, 6, 5)
    results = []
    for forward in (mlp.forward, lambda t: mlp_recomputing_activation(mlp, t)):
        mlp.zero_grad()
        xi = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(forward(xi).square().sum(), xi, create_graph=True)
        gx.square().sum().backward()
        results.append([p.grad.clone() for p in mlp.parameters()])
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


def test_which_mlps_recompute_where():
    from neuralop_mp.models.pointwise_tiles import _TiledPointwiseForward

    two = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)
    assert recomputes_activation(two) and recomputes_on(two, "cuda") and not recomputes_on(two, "cpu")
    assert not recomputes_activation(ChannelMLP(8, 3, hidden_channels=16, n_layers=3))
    # what the tiles could not run either keeps upstream's forward (the tiled forward decides
    # it, once for both): dropout, or a hook that sees fc2's input; the GPU's choice forced on a CPU
    hooked = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)
    hooked.fcs[1].register_forward_hook(lambda *a: None)
    x = torch.randn(2, 8, 5, 5)
    for mlp, recomputes in [(two, True), (ChannelMLP(8, 3, hidden_channels=16, n_layers=2, dropout=0.1), False),
                            (hooked, False), (ChannelMLP(8, 3, hidden_channels=16, n_layers=3), False)]:
        tiled = _TiledPointwiseForward(mlp, 10)  # fewer points per tile than x has: tiles on a CPU
        with force_device_choices("cuda"):
            tiled(x)
        assert tiled.last_recomputed is recomputes and tiled.last_tiles == 1
        tiled(x)  # the choices are the CPU's again outside the block: tiles where they apply
        assert not tiled.last_recomputed and tiled.last_tiles == (1 if mlp is hooked or mlp.dropout else 5)


def test_forced_device_choices_nest_and_are_restored():
    """Inside ``force_device_choices("cuda")`` a CPU tensor gets a GPU's choices (the whole
    grid, upstream's 1x1 modules, recompute); a nested block, and one left by an exception,
    give the outer setting back."""
    from neuralop_mp.models.pointwise_tiles import _TiledPointwiseForward

    mlp = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)  # the tiler holds it weakly
    tiled = _TiledPointwiseForward(mlp, 10)
    x = torch.randn(2, 8, 5, 5)  # 50 points: 5 tiles of one row on a CPU

    def choices():
        tiled(x)
        return tiled.last_tiles, tiled.last_product_dtype, tiled.last_recomputed

    cpu, gpu = (5, torch.float32, False), (1, None, True)
    assert choices() == cpu
    with force_device_choices("cuda"):
        assert choices() == gpu
        with force_device_choices(torch.device("cpu")):
            assert choices() == cpu
        assert choices() == gpu
        with pytest.raises(ZeroDivisionError), force_device_choices("cpu"):
            1 / 0
        assert choices() == gpu
    assert choices() == cpu


@pytest.mark.parametrize("device", DEVICES)
def test_fno_lifting_and_projection_keep_less_and_train_the_same(device):
    """An FNO under bfloat16 autocast, pointwise tiles (recompute where they apply) against
    none: the same output and gradients bit for bit, and exactly the lifting's and the
    projection's hidden tensors and fc1 copies less kept. On a CPU the GPU's choices are
    forced (recompute, upstream's modules on the whole grid)."""
    from neuralop.models import FNO

    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(0)
    kwargs = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2)
    model = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs).to(device)
    x = torch.randn(2, 1, 64, 64, device=device)
    with force_device_choices("cuda") if device == "cpu" else contextlib.nullcontext():
        results = with_and_without_tiles(model, x, device)
    (before, y0, g0), (after, y1, g1) = results[None], results["default"]
    points, bf16 = 2 * 64 * 64, 2
    # both MLPs keep only their input (narrower than their 32 hidden channels): not their hidden
    # layer's input and output, nor autocast's bf16 copies of their weights; and each keeps its
    # float32 input (the lifting's 1 + 2 positional channels, the projection's 16: the last
    # block's output is float32, as its soft-gating skip is) instead of fc1's bf16 copy of it
    hidden = 2 * 2 * 32 * points * bf16
    weights = sum(fc.weight.numel() * bf16 for mlp in (model.lifting, model.projection) for fc in mlp.fcs)
    inputs = (3 + 16) * points * (bf16 - 4)
    assert before - after == hidden + weights + inputs
    assert torch.equal(y0, y1) and all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_the_summary_line_says_when_lifting_and_projection_recompute(monkeypatch):
    """Where it applies (a GPU; forced here on a CPU), the model's forward takes the
    recomputing MLPs, with upstream's numbers, and the pointwise-work line says so."""
    from neuralop.models import FNO

    from neuralop_mp.models import pointwise_tiles
    from neuralop_mp.models.pointwise_tiles import describe_pointwise_tiles

    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    x = torch.randn(2, 1, 16, 16)
    set_pointwise_tiles(model, None)
    y0 = model(x)
    set_pointwise_tiles(model)
    model(x)
    assert "recompute" not in describe_pointwise_tiles(model)  # a CPU: upstream's MLPs
    calls = []
    real = pointwise_tiles.mlp_recomputing_activation
    monkeypatch.setattr(pointwise_tiles, "mlp_recomputing_activation", lambda m, t: calls.append(m) or real(m, t))
    with force_device_choices("cuda"):
        y1 = model(x)
    assert calls == [model.lifting, model.projection] and torch.equal(y0, y1)
    assert "lifting and projection recompute their hidden activation in backward" in describe_pointwise_tiles(model)
