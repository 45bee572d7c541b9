"""A pointwise module recomputed a slice of grid points at a time: output, input gradient
and weight gradients within a float64-reference bound of the whole call's.

Each point's output goes through the same operations, but the matmul kernels may block
a slice of a few points differently from the whole grid (seen on this CPU with 12-point
slices of a 1D input), and the weight gradients are summed over the points slice by
slice: so the comparison is with a float64 run of the same module, not bitwise.
"""
import copy

import pytest
import torch
from neuralop.layers.channel_mlp import ChannelMLP

from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.models.pointwise_chunks import pointwise_in_chunks, split_points

FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


def _run(mlp, x, grad_out, chunk_points=None):
    x = x.detach().clone().requires_grad_(True)
    mlp.zero_grad(set_to_none=True)
    out = mlp(x) if chunk_points is None else pointwise_in_chunks(mlp, x, chunk_points)
    out.backward(grad_out)
    return out.detach(), x.grad, {name: p.grad.clone() for name, p in mlp.named_parameters()}


def assert_within_float64_bound(got, plain, reference):
    """Slicing changes only the order of float32 operations: the sliced result's distance
    to the float64 result must stay of the order of the unsliced one's: at most 4 times
    it, or one float32 unit roundoff of the largest entry when that is larger."""
    for name, ref in reference.items():
        ref = ref.double()
        allowed = max(4 * (plain[name].double() - ref).abs().max().item(),
                      FLOAT32_UNIT_ROUNDOFF * ref.abs().max().item())
        error = (got[name].double() - ref).abs().max().item()
        assert error <= allowed, (name, error, allowed)


# slices of rows, and (5, 4) with 25 points: whole samples, one per slice
@pytest.mark.parametrize("spatial, chunk_points", [((40,), 24), ((12, 10), 50), ((6, 5, 4), 19), ((5, 4), 25)])
def test_slices_match_the_whole_call_within_the_float64_bound(spatial, chunk_points):
    torch.manual_seed(0)
    mlp = ChannelMLP(in_channels=3, out_channels=2, hidden_channels=16, n_layers=2, n_dim=len(spatial))
    g = torch.Generator().manual_seed(1)
    x, grad_out = torch.randn(2, 3, *spatial, generator=g), torch.randn(2, 2, *spatial, generator=g)
    assert split_points(x.shape, chunk_points) is not None, "the case must cut the input into several slices"
    out, grad_x, grads = _run(mlp, x, grad_out)
    out_s, grad_x_s, grads_s = _run(mlp, x, grad_out, chunk_points)
    out64, grad_x64, reference = _run(copy.deepcopy(mlp).double(), x.double(), grad_out.double())
    assert_within_float64_bound({"output": out_s, "input grad": grad_x_s, **grads_s},
                                {"output": out, "input grad": grad_x, **grads},
                                {"output": out64, "input grad": grad_x64, **reference})


def test_only_the_input_is_kept_for_backward():
    torch.manual_seed(0)
    mlp = ChannelMLP(in_channels=4, out_channels=4, hidden_channels=32, n_layers=2)
    x = torch.randn(2, 4, 32, 32, requires_grad=True)
    with SavedTensorBytes(exclude=[x, *mlp.parameters()]) as sliced:
        pointwise_in_chunks(mlp, x, chunk_points=256)
    with SavedTensorBytes(exclude=[x, *mlp.parameters()]) as whole:
        mlp(x)
    assert sliced.bytes == 0  # the slices are views of x, which exists anyway
    assert whole.bytes >= 2 * 32 * 32 * 32 * 4  # the hidden layer before and after its activation


def test_without_grad_mode_it_runs_the_same_slices_unrecorded():
    mlp = ChannelMLP(in_channels=2, out_channels=2, hidden_channels=4)
    x = torch.randn(3, 2, 8, 8)
    calls = []
    mlp.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = pointwise_in_chunks(mlp, x, 64)  # one whole sample per slice
        assert not out.requires_grad
        expected = torch.cat([mlp(x[i:i + 1]) for i in range(3)])
    assert calls[:3] == [(1, 2, 8, 8)] * 3 and torch.equal(out, expected)
    with torch.no_grad():  # one slice's worth: the plain call
        assert torch.equal(pointwise_in_chunks(mlp, x, 3 * 64), mlp(x))


def test_bad_inputs_are_named():  # bad chunk_points: set_recompute's check (test_recompute_mends.py)
    with pytest.raises(ValueError, match=r"\(batch, channels, \*spatial\).*\(3, 4\)"):
        pointwise_in_chunks(torch.nn.Identity(), torch.randn(3, 4), 2)


def test_the_cut_refuses_an_input_without_spatial_dimensions_whatever_its_batch():
    """Recompute's sliced 1x1 layers cut before anything checked the input: a (batch, channels)
    input larger than the slice ended in an IndexError of split_points, not the message."""
    with pytest.raises(ValueError, match=r"needs \(batch, channels, \*spatial\) input, got shape \(100000, 4\)"):
        split_points((100000, 4), 1000)
