"""Recompute "fourier" with the tanh stabilizer keeps less than no recompute, and "block"
slices the lifting and projection only where the pointwise tiles would (CPU, bitwise)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from neuralop.models import FNO

from neuralop_mp import set_precision
from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO
from neuralop_mp.models.recompute import recompute_chunk_points, set_recompute


def _saved_and_gradients(model, x):
    with SavedTensorBytes(exclude=model.parameters()) as meter:
        out = model(x)
    out.square().mean().backward()
    return meter.bytes, out.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_fourier_recompute_with_tanh_keeps_less_than_none(precision):
    """The checkpoint replays the tanh with the spectral layer: it keeps the block's input,
    which tanh's backward reads too, instead of tanh's output beside it."""
    torch.manual_seed(0)
    base = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                             stabilizer="tanh")
    set_precision(base, precision, half_dtype="bfloat16", stabilizer="tanh")
    x = torch.randn(2, 1, 32, 32)
    none = _saved_and_gradients(copy.deepcopy(base), x)
    fourier = _saved_and_gradients(set_recompute(copy.deepcopy(base), "fourier"), x)
    assert fourier[0] < none[0]
    assert torch.equal(fourier[1], none[1])
    assert all(torch.equal(a, b) for a, b in zip(fourier[2], none[2]))


def test_fourier_recompute_with_tanh_and_a_hook_on_the_layer_runs_the_hook():
    """A hooked spectral layer is called as a module (its hook runs), replayed whole."""
    torch.manual_seed(0)
    base = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                             stabilizer="tanh")
    x = torch.randn(2, 1, 16, 16)
    none = _saved_and_gradients(copy.deepcopy(base), x)
    model = set_recompute(copy.deepcopy(base), "fourier")
    calls = []
    model.fno_blocks.convs[0].register_forward_hook(lambda *args: calls.append(1))
    hooked = _saved_and_gradients(model, x)
    assert calls  # the forward, and the replay
    assert torch.equal(hooked[1], none[1])
    assert all(torch.equal(a, b) for a, b in zip(hooked[2], none[2]))


def _softmax_over_rows(t):
    # not elementwise: each value depends on its whole row of grid points
    return F.softmax(t, dim=-1) * t.shape[-1]


def test_block_recompute_does_not_slice_a_channel_mlp_whose_activation_is_not_elementwise():
    torch.manual_seed(0)
    base = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
               non_linearity=_softmax_over_rows)
    x = torch.randn(2, 1, 16, 16)
    reference = _saved_and_gradients(copy.deepcopy(base), x)
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=64)  # 512 points: 8 slices if sliced
    got = _saved_and_gradients(model, x)
    assert torch.equal(got[1], reference[1])
    assert all(torch.equal(a, b) for a, b in zip(got[2], reference[2]))
    assert recompute_chunk_points(model) is None  # replayed whole, reported so
    with torch.no_grad():
        assert torch.equal(model(x), reference[1])


@pytest.mark.parametrize("activation", [F.mish, F.softplus, F.hardswish, F.selu, torch.nn.Mish()])
def test_block_recompute_still_slices_the_common_elementwise_activations(activation):
    # elementwise (each grid point alone): slicing keeps the memory saving, the same numbers up to
    # float32 rounding of the slices' matrix products
    torch.manual_seed(0)
    base = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
               non_linearity=activation)
    x = torch.randn(2, 1, 16, 16)
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=64)
    assert recompute_chunk_points(model) == 64
    torch.testing.assert_close(model(x), base(x), rtol=1e-5, atol=1e-6)
