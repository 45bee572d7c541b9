"""Lifting/projection MLPs that recompute their hidden activation: upstream's numbers, less kept."""
import pytest
import torch
import torch.nn.functional as F
from neuralop.layers.channel_mlp import ChannelMLP

from neuralop_mp.layers.tests.reference import DEVICES
from neuralop_mp.memory import SavedTensorBytes
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


def test_it_keeps_the_hidden_activations_input_but_not_its_output():
    mlp = ChannelMLP(8, 3, hidden_channels=16, n_layers=2, n_dim=2)
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    kept = {}
    for name, forward in (("upstream", mlp.forward), ("recomputed", lambda t: mlp_recomputing_activation(mlp, t))):
        with SavedTensorBytes(exclude=[x, *mlp.parameters()]) as meter:
            forward(x)
        kept[name] = meter.bytes
    hidden = 2 * 16 * 32 * 32 * 4  # one float32 tensor of the hidden width
    assert kept["upstream"] - kept["recomputed"] == hidden and kept["recomputed"] >= hidden


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
    two = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)
    assert recomputes_activation(two) and recomputes_on(two, "cuda") and not recomputes_on(two, "cpu")
    assert not recomputes_activation(ChannelMLP(8, 3, hidden_channels=16, n_layers=3))
    assert not recomputes_on(ChannelMLP(8, 3, hidden_channels=16, n_layers=2, dropout=0.1), "cuda")
    hooked = ChannelMLP(8, 3, hidden_channels=16, n_layers=2)
    hooked.fcs[1].register_forward_hook(lambda *a: None)  # a hook sees fc2's input: upstream's path
    assert not recomputes_on(hooked, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fno_lifting_and_projection_keep_less_and_train_the_same():
    from neuralop.models import FNO

    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(0)
    kwargs = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2)
    model = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs).cuda()
    x = torch.randn(2, 1, 64, 64, device="cuda")
    results = {}
    for tiles in (None, "default"):
        set_pointwise_tiles(model, None) if tiles is None else set_pointwise_tiles(model)
        model.zero_grad()
        with SavedTensorBytes(exclude=[*model.parameters()]) as meter:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = model(x)
        y.float().square().mean().backward()
        results[tiles] = (meter.bytes, y.detach(), [p.grad.clone() for p in model.parameters()])
    (before, y0, g0), (after, y1, g1) = results[None], results["default"]
    # the lifting's and the projection's hidden activations (2 x 32 channels of bf16) are not kept,
    # nor autocast's bf16 copies of their second layers' weights (made again by the recompute)
    weight_copies = sum(2 * mlp.fcs[1].weight.numel() for mlp in (model.lifting, model.projection))
    assert before - after == 2 * (2 * 32 * 64 * 64 * 2) + weight_copies
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
    monkeypatch.setattr(pointwise_tiles, "recomputes_on", lambda mlp, device_type: True)
    monkeypatch.setattr(pointwise_tiles, "mlp_recomputing_activation", lambda m, t: calls.append(m) or real(m, t))
    y1 = model(x)
    assert calls == [model.lifting, model.projection] and torch.equal(y0, y1)
    assert "lifting and projection recompute their hidden activation in backward" in describe_pointwise_tiles(model)
