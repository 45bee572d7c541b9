"""Pointwise work in tiles of grid points: the same outputs and gradients up to the order
of float32 sums, and upstream's forward wherever tiles would not be exact (CPU).

Small ``tile_points`` force many tiles on small grids. Outputs and gradients of the
tiled and of the untiled float32 model are each compared with the untiled model in
float64, on fresh random inputs, with a tolerance of 1e-4 relative to the largest
entry: the two differ only in how float32 sums are ordered (matrix kernels may sum a
point's channels in another order for a tile than for the whole grid; weight gradients
are summed tile by tile), about 1e-6 here, so a tile that dropped, doubled or
misplaced points (errors of order 1) fails.
"""
import copy
import pickle

import pytest
import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.models import FNO

from neuralop_mp import set_precision
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from neuralop_mp.models.pointwise_tiles import (DEFAULT_TILE_POINTS, _TiledPointwiseForward, _TiledPostactivation,
                                                _tiling, describe_pointwise_tiles, pointwise_tile_points,
                                                set_pointwise_tiles)
from neuralop_mp.models.recompute import set_recompute

RTOL = 1e-4


def _fno(**kwargs):
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=3, **kwargs)


def _tilers(model):
    return [t for m in model.modules() for t in m.__dict__.values()
            if isinstance(t, (_TiledPostactivation, _TiledPointwiseForward))]


def _grads(model, x, y):
    model.zero_grad(set_to_none=True)
    out = model(x)
    ((out - y) ** 2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _check_against_float64(tiled, untiled, x, y):
    out_tiled, g_tiled = _grads(tiled, x, y)
    out_plain, g_plain = _grads(untiled, x, y)
    reference = copy.deepcopy(untiled)
    for p in reference.parameters():  # Module.double() would drop the spectral weights' imaginary parts
        p.data = p.data.to(torch.complex128 if p.is_complex() else torch.float64)
    out_ref, g_ref = _grads(reference, x.double(), y.double())
    assert g_tiled.keys() == g_ref.keys() and g_tiled
    for name, ref in {"output": out_ref, **g_ref}.items():
        scale = ref.abs().max().item()
        assert scale > 0, name
        for got in (out_tiled, out_plain) if name == "output" else (g_tiled[name], g_plain[name]):
            err = (got.to(ref.dtype) - ref).abs().max().item()
            assert err <= RTOL * scale, (name, err, scale)


@pytest.mark.parametrize("tile_points, batch, expected_tiles", [
    (40, 3, 16),  # 256 points per sample > 40: one row of 16 (x 3 samples) per tile
    (600, 5, 3),  # whole samples: 2 per tile, 5 = 2 + 2 + 1
])
@pytest.mark.parametrize("precision, stabilizer", [("full", None), ("mixed", "tanh")])
def test_tiled_outputs_and_gradients_are_as_close_to_float64_as_untiled(tile_points, batch, expected_tiles, precision,
                                                                            stabilizer):
    torch.manual_seed(0)
    untiled = _fno(stabilizer=stabilizer)
    set_precision(untiled, precision, half_dtype="bfloat16")
    set_pointwise_tiles(untiled, None)
    tiled = set_pointwise_tiles(copy.deepcopy(untiled), tile_points)
    x, y = torch.randn(batch, 1, 16, 16), torch.randn(batch, 1, 16, 16)
    _check_against_float64(tiled, untiled, x, y)
    # the FNO blocks (one module for all layers), the lifting and the projection ran in tiles
    assert len(_tilers(tiled)) == 3 and {t.last_tiles for t in _tilers(tiled)} == {expected_tiles}
    assert describe_pointwise_tiles(tiled).endswith(f"up to {expected_tiles} tiles per layer")


@pytest.mark.parametrize("dim", [1, 3])
def test_tiles_in_1d_and_3d_and_in_tfno(dim):
    torch.manual_seed(1)
    untiled = MixedPrecisionTFNO(n_modes=(4,) * dim, in_channels=2, out_channels=1, hidden_channels=6, n_layers=2,
                                 rank=0.5)
    set_pointwise_tiles(untiled, None)
    tiled = set_pointwise_tiles(copy.deepcopy(untiled), 30)
    shape = (3, 2, *([40] if dim == 1 else [8, 8, 8]))
    x, y = torch.randn(shape), torch.randn(3, 1, *shape[2:])
    _check_against_float64(tiled, untiled, x, y)
    assert max(t.last_tiles for t in _tilers(tiled)) > 1


def test_plugin_models_tile_by_default_and_state_dict_keys_are_upstreams():
    model = _fno()
    assert pointwise_tile_points(model) == DEFAULT_TILE_POINTS
    upstream = FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=3)
    assert list(model.state_dict()) == list(upstream.state_dict())
    assert "(no forward yet" in describe_pointwise_tiles(model)
    model(torch.randn(2, 1, 16, 16))  # 512 points: one tile's worth
    assert "last forward: whole grid" in describe_pointwise_tiles(model)
    set_pointwise_tiles(model, None)
    assert pointwise_tile_points(model) is None and not _tilers(model)
    assert describe_pointwise_tiles(model).startswith("whole grid")


@pytest.mark.parametrize("variant", [
    {}, {"fno_skip": None}, {"fno_skip": "identity"}, {"fno_skip": "soft-gating"}, {"channel_mlp_skip": None},
    {"channel_mlp_skip": "linear"}, {"use_channel_mlp": False}, {"non_linearity": torch.relu},
    {"stabilizer": "tanh"}])
def test_tiles_on_upstream_models_of_every_pointwise_form(variant):
    torch.manual_seed(2)
    untiled = FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=3, **variant)
    tiled = set_pointwise_tiles(copy.deepcopy(untiled), 40)
    _check_against_float64(tiled, untiled, torch.randn(2, 1, 12, 12), torch.randn(2, 1, 12, 12))
    assert tiled.fno_blocks.__dict__["forward_with_postactivation"].last_tiles > 1


def test_what_is_not_pointwise_keeps_upstreams_forward():
    kwargs = dict(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    # norms act across grid points; dropout draws one random mask per call
    for model in (FNO(norm="group_norm", **kwargs), FNO(preactivation=True, **kwargs),
                  FNO(channel_mlp_dropout=0.1, **kwargs)):
        set_pointwise_tiles(model, 16)
        assert not any(isinstance(t, _TiledPostactivation) for t in _tilers(model))

    class OwnTail(FNOBlocks):  # a subclass's own forward is never bypassed
        def forward_with_postactivation(self, x, index=0, output_shape=None):
            return super().forward_with_postactivation(x, index, output_shape) * 2

    model = FNO(**kwargs)
    model.fno_blocks.__class__ = OwnTail
    set_pointwise_tiles(model, 16)
    assert "forward_with_postactivation" not in model.fno_blocks.__dict__


def test_a_hook_sees_the_whole_grid_once():
    torch.manual_seed(5)
    model = set_pointwise_tiles(_fno(), 40)
    x = torch.randn(2, 1, 16, 16)
    seen = []
    handle = model.fno_blocks.channel_mlp[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    lifting_seen = []
    model.lifting.fcs[0].register_forward_pre_hook(lambda m, args: lifting_seen.append(args[0].shape))
    model(x)
    assert seen == [(2, 8, 16, 16)] and len(lifting_seen) == 1  # upstream's forward, not 16 tiles
    assert model.lifting.__dict__["forward"].last_tiles == 1
    # the other layers of the block, whose modules carry no hook, ran in tiles
    assert model.fno_blocks.__dict__["forward_with_postactivation"].last_tiles > 1
    handle.remove()


@pytest.mark.parametrize("tile_points", [40, DEFAULT_TILE_POINTS])  # tiles; the whole grid (a GPU's path)
def test_a_hooked_spectral_layer_in_a_tanh_block_sees_tanh_of_the_block_input(tile_points):
    """With the tanh stabilizer our layer applies the block's tanh itself (its output is
    freed sooner); a hook on the layer must still see upstream's input, ``tanh(x)``, and
    the numbers stay those of the unhooked call, tiled and on the whole grid."""
    torch.manual_seed(5)
    model = set_pointwise_tiles(_fno(stabilizer="tanh"), tile_points)
    x = torch.randn(2, 1, 16, 16)
    expected = model(x)
    conv = model.fno_blocks.convs[0]
    seen = []
    handle = conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    out = model(x)
    handle.remove()
    assert len(seen) == 1 and torch.equal(out, expected)
    assert float(seen[0].abs().max()) <= 1.0  # tanh's range: the hook saw tanh(x), not x
    block_input = model.lifting(model.positional_embedding(x))
    assert torch.equal(seen[0], torch.tanh(block_input))
    # a subclass with a forward of its own is called as upstream's block calls it, with tanh(x)
    inputs = []

    class OwnForward(type(conv)):
        def forward(self, x, output_shape=None):
            inputs.append(x.detach().clone())
            return super().forward(x, output_shape)

    conv.__class__ = OwnForward
    assert torch.equal(model(x), expected) and torch.equal(inputs[0], seen[0])


@pytest.mark.parametrize("tile_points", [40, DEFAULT_TILE_POINTS])
def test_backward_hooks_and_a_replaced_forward_on_a_tanh_blocks_spectral_layer_still_run(tile_points):
    """Where the block's tanh would move into our layer, the layer's call is bypassed, so
    that happens only where nothing would notice: backward hooks (on the layer or global)
    and a forward replaced on the instance still run, with the same numbers."""
    torch.manual_seed(5)
    model = set_pointwise_tiles(_fno(stabilizer="tanh"), tile_points)
    x = torch.randn(2, 1, 16, 16, requires_grad=True)  # every module's input needs a gradient (global hook)
    expected = model(x)
    conv = model.fno_blocks.convs[1]
    calls = []
    handles = [conv.register_full_backward_hook(lambda m, gi, go: calls.append("backward")),
               conv.register_full_backward_pre_hook(lambda m, go: calls.append("backward pre")),
               torch.nn.modules.module.register_module_full_backward_hook(
                   lambda m, gi, go: calls.append("global") if m is conv else None)]
    out = model(x)
    out.square().mean().backward()
    for handle in handles:
        handle.remove()
    assert torch.equal(out, expected) and sorted(calls) == ["backward", "backward pre", "global"], calls
    original = conv.forward
    conv.forward = lambda *args, **kwargs: calls.append("instance forward") or original(*args, **kwargs)
    assert torch.equal(model(x), expected) and calls[-1] == "instance forward"


def test_a_backward_hook_sees_the_whole_grid_once():
    """A full backward hook on a module the tiles would call once per tile: upstream's
    forward runs, so the hook fires once, on the whole grid's gradient."""
    torch.manual_seed(5)
    model = set_pointwise_tiles(_fno(), 40)
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    seen = []
    handle = model.fno_blocks.channel_mlp[0].register_full_backward_hook(lambda m, gi, go: seen.append(go[0].shape))
    model(x).sum().backward()
    handle.remove()
    assert seen == [(2, 8, 16, 16)]
    # the later blocks, whose modules carry no hook, ran in tiles
    assert model.fno_blocks.__dict__["forward_with_postactivation"].last_tiles > 1


@pytest.mark.parametrize("hook", ["forward", "backward"])
def test_a_hooked_activation_module_is_called_on_the_whole_grid_as_upstream(hook):
    """The block's activation as a module (``nn.GELU()``, shared by its layers, the lifting and
    the projection) is one of the modules the tiles call once per tile: with a hook on it,
    the tiled call falls back to upstream's forward, so the hook sees what it sees upstream
    (the same calls and shapes) and a hook that depends on the whole tensor gives upstream's
    output; only the last layer, which applies no activation, still tiles. Unhooked, the
    module activation tiles. Outputs and input gradients compared with upstream's FNO, same
    weights, tolerance 1e-5 relative to the largest entry (float32 sums in another order)."""
    kwargs = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=3)
    torch.manual_seed(0)
    up = FNO(**kwargs, non_linearity=torch.nn.GELU())
    calls = []

    class RecordingGELU(torch.nn.GELU):  # records the shape of every call, hooked or not
        def forward(self, t):
            calls.append(tuple(t.shape))
            return super().forward(t)

    ours = FNO(**kwargs, non_linearity=RecordingGELU(), conv_module=MixedPrecisionSpectralConv)
    ours.load_state_dict(up.state_dict())
    set_pointwise_tiles(ours, 64)  # 2 x 16 x 16 points: 8 tiles
    tiler = ours.fno_blocks.__dict__["forward_with_postactivation"]
    x = torch.randn(2, 1, 16, 16)

    def run(model, seen):
        act = model.fno_blocks.non_linearity
        if hook == "forward":  # rescales by the whole tensor's maximum: a tile's would differ
            handle = act.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape))
                                               or out / out.abs().amax())
        else:
            handle = act.register_full_backward_hook(lambda m, gi, go: seen.append(tuple(go[0].shape)))
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.backward(torch.ones_like(out))
        handle.remove()
        return out.detach(), xi.grad

    seen_up, seen_ours = [], []
    out_up, grad_up = run(up, seen_up)
    out_ours, grad_ours = run(ours, seen_ours)
    assert seen_ours == seen_up and (2, 4, 16, 16) in seen_up
    assert (2, 4, 2, 16) not in calls  # no tile reached the hooked activation
    assert tiler.last_tiles > 1  # the last layer calls no activation: it tiled
    for got, ref in ((out_ours, out_up), (grad_ours, grad_up)):
        assert ref.abs().max() > 0
        assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
    calls.clear()
    assert (ours(x) - up(x)).abs().max() <= 1e-5 * up(x).abs().max()  # unhooked: same numbers, in tiles
    assert calls.count((2, 4, 2, 16)) == 2 * 2 * 8  # layers 0 and 1, two activations each, 8 tiles


def test_a_block_changed_after_tiles_were_set_is_checked_again():
    model = set_pointwise_tiles(_fno(), 40)
    x = torch.randn(2, 1, 16, 16)
    model(x)
    assert model.fno_blocks.__dict__["forward_with_postactivation"].last_tiles > 1
    model.fno_blocks.non_linearity = lambda t: torch.softmax(t, dim=-1)  # acts across grid points
    model(x)
    assert model.fno_blocks.__dict__["forward_with_postactivation"].last_tiles == 1


def test_resampling_blocks_run_upstreams_forward():
    torch.manual_seed(3)
    untiled = MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                                uno_out_channels=[8, 8, 8], uno_n_modes=[[6, 6], [4, 4], [6, 6]],
                                uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]], horizontal_skips_map={})
    set_pointwise_tiles(untiled, None)
    tiled = set_pointwise_tiles(copy.deepcopy(untiled), 40)
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    _check_against_float64(tiled, untiled, x, y)
    block_tiles = [t.last_tiles for t in _tilers(tiled) if isinstance(t, _TiledPostactivation)]
    assert block_tiles and max(block_tiles) == 1  # every UNO block passes an output shape
    # an FNO asked for another output shape: its last layer resamples (upstream's forward), the others tile
    fno = set_pointwise_tiles(_fno(), 40)
    plain = set_pointwise_tiles(copy.deepcopy(fno), None)
    x = torch.randn(2, 1, 16, 16)
    out = fno(x, output_shape=(20, 20))
    expected = plain(x, output_shape=(20, 20))
    assert out.shape == (2, 1, 20, 20) and (out - expected).abs().max() <= RTOL * expected.abs().max()
    assert fno.fno_blocks.__dict__["forward_with_postactivation"].last_tiles == 1
    assert fno.lifting.__dict__["forward"].last_tiles > 1


def test_saved_bytes_equal_and_recompute_composes():
    torch.manual_seed(4)
    untiled = set_pointwise_tiles(_fno(), None)
    tiled = set_pointwise_tiles(copy.deepcopy(untiled), 40)
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    saved = []
    for model in (untiled, tiled):
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            out = model(x)
        saved.append(meter.bytes)
        del out
    assert saved[1] == saved[0]
    # "block" recompute replays the tiled blocks under checkpoint, and its slices of the lifting and
    # projection of the same size are the same pieces as the tiles: the same gradients, bitwise
    _, expected = _grads(tiled, x, y)
    set_recompute(tiled, "block", chunk_points=40)
    _, got = _grads(tiled, x, y)
    assert expected.keys() == got.keys() and all(torch.equal(expected[n], got[n]) for n in expected)
    # its chunked replay held the lifting; recompute "none" gives the tiled forward back
    assert not isinstance(tiled.lifting.__dict__.get("forward"), _TiledPointwiseForward)
    set_recompute(tiled, "none")
    assert isinstance(tiled.lifting.__dict__.get("forward"), _TiledPointwiseForward)
    assert pointwise_tile_points(tiled) == 40


def test_copies_and_pickles_tile_with_their_own_modules():
    model = set_pointwise_tiles(_fno(), 40)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        block = clone.fno_blocks
        tiler = block.__dict__["forward_with_postactivation"]
        assert tiler.block is block and tiler.tile_points == 40
        assert clone.lifting.__dict__["forward"].module is clone.lifting
        x = torch.randn(2, 1, 16, 16)
        assert torch.equal(clone(x), model(x))


def test_tiles_only_on_cpu_and_only_past_one_tile():
    assert _tiling(torch.empty(4, 8, 64, 64, device="meta"), 16) is None
    assert _tiling(torch.empty(2, 8, 8, 8), 128) is None  # exactly one tile's worth
    assert _tiling(torch.empty(3, 8, 8, 8), 128) == (0, 2)
    assert _tiling(torch.empty(2, 8, 16, 8), 64) == (2, 4)
    assert _tiling(torch.empty(2, 8, 16, 8), 8) == (2, 1)  # never less than a row


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), ("8", TypeError), (2.5, TypeError),
                                        (True, TypeError)])
def test_bad_tile_points_are_refused_by_name(bad, error):
    with pytest.raises(error, match="tile_points"):
        set_pointwise_tiles(_fno(), bad)
