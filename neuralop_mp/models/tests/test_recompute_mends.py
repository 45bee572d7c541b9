"""Recompute mends: running statistics updated once per step; chunk_points only with "block" (CPU)."""
import copy

import pytest
import torch

from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionUNO
from neuralop_mp.models.pointwise_chunks import DEFAULT_CHUNK_POINTS
from neuralop_mp.models.recompute import recompute_chunk_points, recompute_mode, set_recompute

N_STEPS = 3


def _fno2d():
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                             norm="batch_norm"), (4, 1, 16, 16)


def _fno3d():
    return MixedPrecisionFNO(n_modes=(4, 4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=2,
                             norm="batch_norm"), (2, 1, 8, 8, 8)


def _uno():
    return MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                             uno_out_channels=[8, 8, 8], uno_n_modes=[[6, 6], [4, 4], [6, 6]],
                             uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]], horizontal_skips_map={},
                             norm="batch_norm"), (4, 1, 16, 16)


BUILDERS = {"fno2d": _fno2d, "fno3d": _fno3d, "uno": _uno}


def _train(model, shape):
    """N_STEPS SGD steps in training mode; the gradients of every step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    gradients = []
    model.train()
    for _ in range(N_STEPS):
        x, y = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        optimizer.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
        optimizer.step()
    return gradients


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("mode", ["fourier", "block"])
def test_recompute_updates_batch_norm_statistics_once_per_step(arch, mode):
    """The replayed training-mode forward must not update the running statistics again:
    buffers, weights, every step's gradients and the eval output equal those without
    recompute, bitwise."""
    torch.manual_seed(0)
    reference, shape = BUILDERS[arch]()
    model = set_recompute(copy.deepcopy(reference), mode)
    assert recompute_mode(model) == mode
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.track_running_stats for m in norms)
    expected, got = _train(reference, shape), _train(model, shape)
    for step, (want, have) in enumerate(zip(expected, got)):
        assert want.keys() == have.keys()
        for name in want:
            assert torch.equal(want[name], have[name]), (step, name)
    buffers = dict(model.named_buffers())
    assert any(name.endswith("num_batches_tracked") for name in buffers)
    for name, buffer in reference.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
        if name.endswith("num_batches_tracked"):
            assert buffers[name].item() == N_STEPS, name
    for name, param in reference.named_parameters():
        assert torch.equal(param, dict(model.named_parameters())[name]), name
    reference.eval(), model.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(reference(x), model(x))


@pytest.mark.parametrize("mode", ["none", "fourier"])
def test_chunk_points_is_refused_with_a_mode_other_than_block(mode):
    model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    with pytest.raises(ValueError, match=rf"chunk_points=4096 is used only with mode='block', not with "
                                         rf"mode='{mode}'; set mode='block' or leave chunk_points unset"):
        set_recompute(model, mode, chunk_points=4096)
    assert recompute_mode(set_recompute(model, mode, chunk_points=None)) == mode  # None: not given


@pytest.mark.parametrize("bad, error, message", [(0, ValueError, r"chunk_points=0; allowed values: integers >= 1"),
                                                  (1.5, TypeError, r"chunk_points=1.5"),
                                                  (True, TypeError, r"chunk_points=True")])
def test_a_bad_chunk_points_is_named(bad, error, message):
    model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    with pytest.raises(error, match=message):
        set_recompute(model, "block", chunk_points=bad)


def test_block_without_chunk_points_slices_at_the_default():
    model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    assert recompute_chunk_points(set_recompute(model, "block")) == DEFAULT_CHUNK_POINTS
    assert recompute_chunk_points(set_recompute(model, "block", chunk_points=None)) == DEFAULT_CHUNK_POINTS
    assert recompute_chunk_points(set_recompute(model, "block", chunk_points=64)) == 64
