"""Recompute of the Fourier path / FNO blocks: the same gradients as without recompute (CPU).

The CPU forward is deterministic, so the replayed forward produces the same values
and the gradients are compared bitwise (``torch.equal``). When ``"block"`` cuts the
lifting and projection into slices of grid points, the reference is the same model
running those slices without recompute: recompute must then change nothing, bitwise;
that slicing itself stays within a float64-reference bound of the whole call is
tested in test_pointwise_chunks.py.
"""
import copy
import pickle

import pytest
import torch

from neuralop_mp import set_precision
from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from neuralop_mp.models.pointwise_chunks import split_points
from neuralop_mp.models.pointwise_tiles import _TiledPointwiseForward
from neuralop_mp.models.recompute import pointwise_targets, recompute_mode, set_recompute
from neuralop_mp.peak_memory import PeakTensorBytes


def _fno():
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)


def _tfno():
    return MixedPrecisionTFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              rank=0.5)


def _uno():
    return MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                             uno_out_channels=[8, 8, 8], uno_n_modes=[[6, 6], [4, 4], [6, 6]],
                             uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]], horizontal_skips_map={})


BUILDERS = {"fno": _fno, "tfno": _tfno, "uno": _uno}


def _gradients(model, x, y, autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    ((out.float() - y) ** 2).mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("recompute", ["fourier", "block"])
@pytest.mark.parametrize("precision, stabilizer, autocast", [
    ("full", None, False), ("mixed", "tanh", False), ("half", "tanh", True), ("mixed", None, True)])
def test_recompute_gives_the_same_gradients(arch, recompute, precision, stabilizer, autocast):
    torch.manual_seed(0)
    reference = BUILDERS[arch]()
    set_precision(reference, precision, half_dtype="bfloat16", stabilizer=stabilizer)
    model = copy.deepcopy(reference)
    set_recompute(model, recompute)
    assert recompute_mode(model) == recompute
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    expected = _gradients(reference, x, y, autocast)
    got = _gradients(model, x, y, autocast)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


# 96 grid points per slice: the 2 x 16 x 16 inputs below are cut into 6 slices of 3 rows
SLICE_POINTS = 96


def _sliced_without_recompute(model, chunk_points=SLICE_POINTS):
    """The lifting and projection in the pointwise tiles' slices (the plugin's own tiled
    forward, everything kept for backward), to compare recompute's slices with."""
    for module in pointwise_targets(model):
        module.forward = _TiledPointwiseForward(module, chunk_points)
    return model


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("precision, stabilizer, autocast", [
    ("full", None, False), ("mixed", "tanh", False), ("half", "tanh", True), ("mixed", None, True)])
def test_block_recompute_in_slices_gives_the_same_gradients(arch, precision, stabilizer, autocast):
    torch.manual_seed(0)
    plain = BUILDERS[arch]()
    set_precision(plain, precision, half_dtype="bfloat16", stabilizer=stabilizer)
    model = set_recompute(copy.deepcopy(plain), "block", chunk_points=SLICE_POINTS)
    reference = _sliced_without_recompute(copy.deepcopy(plain))
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    assert split_points(x.shape, SLICE_POINTS) == (2, 3)
    expected, got = _gradients(reference, x, y, autocast), _gradients(model, x, y, autocast)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("kwargs, shape", [
    ({"n_modes": (6, 6), "domain_padding": 0.25}, (2, 1, 16, 16)),  # the projection's input is a padded view
    ({"n_modes": (8,)}, (3, 1, 40)),  # 1D: slices of the only spatial dimension
    ({"n_modes": (6, 6), "complex_data": True}, (2, 1, 16, 16)),  # lifting/projection wrapped for complex data
], ids=["domain-padding", "1d", "complex-data"])
def test_block_recompute_in_slices_of_other_fno_forms(kwargs, shape):
    from neuralop.models import FNO

    torch.manual_seed(0)
    plain = FNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=2, **kwargs)
    model = set_recompute(copy.deepcopy(plain), "block", chunk_points=50)
    reference = _sliced_without_recompute(copy.deepcopy(plain), chunk_points=50)
    assert pointwise_targets(model)
    x = torch.randn(*shape, dtype=torch.complex64 if kwargs.get("complex_data") else torch.float32)
    grads = []
    for m in (reference, model):
        m(x).abs().square().mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])


@pytest.mark.parametrize("recompute, chunk_points", [("fourier", None), ("block", SLICE_POINTS)])
def test_a_precision_change_between_steps_is_replayed_as_set(recompute, chunk_points):
    """A schedule changes the layers' precision between epochs: each step's replay uses it."""
    torch.manual_seed(0)
    reference = _fno()
    model = set_recompute(copy.deepcopy(reference), recompute, chunk_points=chunk_points)
    if recompute == "block":
        _sliced_without_recompute(reference, chunk_points)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    for mode, stabilizer, autocast in (("half", "tanh", True), ("mixed", None, True), ("full", None, False)):
        for m in (reference, model):
            set_precision(m, mode, half_dtype="bfloat16", stabilizer=stabilizer)
        expected, got = _gradients(reference, x, y, autocast), _gradients(model, x, y, autocast)
        assert all(torch.equal(expected[k], got[k]) for k in expected), mode


def test_block_slices_cast_each_1x1_weight_once_per_call_and_replay_with_those_casts(monkeypatch):
    """Under "block" recompute with bfloat16 products, the lifting's and projection's 1x1
    weights and biases are cast once per call for all 6 slices, and the slices' replays in
    backward reuse those casts (no cast in backward); output and gradients are bit for bit
    those of casting again in every slice and every replay."""
    from neuralop_mp.layers.autocast_scope import set_autocast_scope
    from neuralop_mp.models import pointwise_gemm, recompute

    from .test_pointwise_gemm import _ParameterCasts

    # forced on, so that the products run on any CPU (they are only slow without bf16 units)
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: True)
    torch.manual_seed(0)
    model = _fno()
    set_precision(model, "mixed", half_dtype="bfloat16")
    set_autocast_scope(model, "model")  # the lifting and projection under autocast too
    set_recompute(model, "block", chunk_points=SLICE_POINTS)
    parameters = [p for mlp in pointwise_targets(model) for fc in mlp.fcs for p in (fc.weight, fc.bias)]
    assert len(parameters) == 8
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    dim, size = split_points(x.shape, SLICE_POINTS)
    slices = len(x.split(size, dim))  # the lifting's and the projection's inputs have x's grid
    assert slices == 6

    def step():
        model.zero_grad(set_to_none=True)
        with _ParameterCasts(parameters) as forward_casts, torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        with _ParameterCasts(parameters) as backward_casts:
            ((out.float() - y) ** 2).mean().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return out.detach(), grads, (forward_casts.count, backward_casts.count)

    out, grads, casts = step()
    assert casts == (len(parameters), 0)
    real = recompute.mlp_piece_forward
    monkeypatch.setattr(recompute, "mlp_piece_forward",
                        lambda mlp, x, tiling, sliceable=None, casts=None: real(mlp, x, tiling, sliceable))
    out_per_slice, grads_per_slice, casts_per_slice = step()
    assert casts_per_slice == (slices * len(parameters), slices * len(parameters))
    assert out.dtype == torch.bfloat16 and torch.equal(out, out_per_slice)
    assert grads.keys() == grads_per_slice.keys() and len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        assert torch.equal(grad, grads_per_slice[name]), name


def test_block_slices_exactly_the_channel_mlps_outside_the_fno_blocks():
    """The rule, for every architecture: the ChannelMLPs outside FNOBlocks (lifting and
    projection of FNO, TFNO and UNO) are sliced; the blocks' own channel MLPs are replayed
    with their block, and UNO's horizontal skips (1x1 convolutions, saving only their
    input) are left as they are."""
    for arch, build in BUILDERS.items():
        model = build()
        names = {id(m): n for n, m in model.named_modules()}
        assert sorted(names[id(m)] for m in pointwise_targets(model)) == ["lifting", "projection"], arch
        set_recompute(model, "block")
        recomputed = sorted(n for n, m in model.named_modules() if "forward" in m.__dict__)
        blocks = ["fno_blocks"] if arch != "uno" else [f"fno_blocks.{i}" for i in range(3)]
        assert recomputed == sorted(blocks + ["lifting", "projection"]), arch
    uno = _uno()
    uno_with_skips = MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                                       uno_out_channels=[8, 8, 8], uno_n_modes=[[6, 6], [4, 4], [6, 6]],
                                       uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]],
                                       horizontal_skips_map={2: 0}, channel_mlp_skip="linear")
    assert len(uno_with_skips.horizontal_skips) == 1 and len(uno.horizontal_skips) == 0
    set_recompute(uno_with_skips, "block")
    assert all("forward" not in m.__dict__ for m in uno_with_skips.horizontal_skips.modules())


def test_a_channel_mlp_with_dropout_is_recomputed_whole():
    """Slices would draw a different dropout mask from the whole call's: such a module is
    replayed whole (checkpoint restores the random state), so outputs and gradients are
    the run without recompute's, bitwise."""
    from neuralop.layers.channel_mlp import ChannelMLP

    torch.manual_seed(0)
    plain = _fno()
    plain.projection = ChannelMLP(in_channels=8, out_channels=1, hidden_channels=16, dropout=0.5)
    # 512 points per slice: the lifting in one piece too, so all gradients compare bitwise
    model = set_recompute(copy.deepcopy(plain), "block", chunk_points=2 * 16 * 16)
    x, y = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    torch.manual_seed(7)
    expected = _gradients(plain, x, y, False)
    torch.manual_seed(7)
    got = _gradients(model, x, y, False)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_recompute_saves_fewer_tensors_for_backward():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    saved = {}
    for mode in ("none", "fourier", "block"):
        model = set_recompute(_fno(), mode)
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            model(x).sum()
        saved[mode] = meter.bytes
    assert saved["block"] < saved["fourier"] < saved["none"], saved


def test_block_keeps_only_the_inputs_of_blocks_lifting_and_projection():
    torch.manual_seed(0)
    model = set_recompute(_fno(), "block", chunk_points=SLICE_POINTS)
    x = torch.randn(2, 1, 16, 16)
    with SavedTensorBytes(exclude=model.parameters()) as meter:
        model(x).sum()
    hidden_input = 2 * 8 * 16 * 16 * 4  # one (2, 8, 16, 16) float32 tensor
    lifting_input = 2 * 3 * 16 * 16 * 4  # x and its 2 positional-embedding channels
    # inputs of the 2 blocks and of the projection, the lifting's input
    assert meter.bytes == 3 * hidden_input + lifting_input


def test_slices_lower_the_peak_of_a_training_step():
    """With lifting and projection 64 channels wide (8 x the hidden width), their hidden
    tensors are the model's widest: sliced, they are never alive at full resolution,
    also not while they are replayed in backward."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    peaks = {}
    for chunk_points in (2 * 32 * 32, 256):  # one slice (a whole checkpoint), 8 slices
        model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                                  lifting_channel_ratio=8, projection_channel_ratio=8)
        set_recompute(model, "block", chunk_points=chunk_points)
        with PeakTensorBytes(alive=[list(model.parameters()), x]) as meter:
            model(x).square().mean().backward()
        peaks[chunk_points] = meter.peak_bytes
    full_hidden = 2 * 64 * 32 * 32 * 4  # one (2, 64, 32, 32) float32 tensor
    assert peaks[256] <= peaks[2 * 32 * 32] - full_hidden, peaks


def test_none_restores_the_ordinary_forward_and_bad_mode_is_named():
    model = set_recompute(_fno(), "block")
    set_recompute(model, "none")
    assert recompute_mode(model) == "none"
    # what is left is the plugin model's own tiling of the lifting and projection (pointwise_tiles)
    forwards = [m.__dict__["forward"] for m in model.modules() if "forward" in m.__dict__]
    assert all(isinstance(f, _TiledPointwiseForward) for f in forwards)
    assert {id(m) for m in model.modules() if "forward" in m.__dict__} == {id(model.lifting), id(model.projection)}
    with pytest.raises(ValueError, match=r"Invalid mode='spectral'.*'none', 'fourier', 'block'"):
        set_recompute(model, "spectral")
    with pytest.raises(ValueError, match="SpectralConv"):
        set_recompute(torch.nn.Linear(2, 2), "fourier")
    with pytest.raises(ValueError, match=r"chunk_points=-1; allowed values: integers >= 1"):
        set_recompute(model, "block", chunk_points=-1)


@pytest.mark.parametrize("mode", ["fourier", "block"])
def test_a_deep_copy_or_pickle_keeps_working(mode):
    model = set_recompute(_fno(), mode, chunk_points=SLICE_POINTS if mode == "block" else None)
    x = torch.randn(2, 1, 16, 16)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert recompute_mode(clone) == mode
        assert all(m.forward.module is m for m in clone.modules() if "forward" in m.__dict__)
        assert torch.equal(clone(x), model(x))


def test_config_key_model_recompute_reaches_the_model():
    import neuralop_mp

    config = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 4, "n_layers": 1, "recompute": "fourier"}}
    assert recompute_mode(neuralop_mp.get_model(config)) == "fourier"
    config["model"]["recompute"] = "everything"
    with pytest.raises(ValueError, match="recompute='everything'"):
        neuralop_mp.get_model(config)
