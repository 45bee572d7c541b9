"""Block recompute and hooks on the lifting and projection: a hook sees what it sees without
recompute, and the numbers are those of the model without recompute.

``"block"`` recomputes the lifting and projection a slice of grid points at a time. A hook on
one of their layers would see each slice instead of the whole grid, and a hook that changes
its layer's output by something that depends on more than one point would change it slice by
slice: such a call is replayed whole instead, decided at every call (a hook may be put after
``set_recompute``). The hooks below add to their layer's output or input its mean over the
grid points, so a sliced call gives errors of order 0.01-1 where replaying whole gives
float32 rounding only.

Outputs and gradients of the float32 model with and without recompute are each compared with
the model without recompute in float64 (the same hooks), on fresh random inputs, with a
tolerance of 1e-4 relative to the largest entry (float32 rounding is about 1e-6 here).
"""
import copy

import pytest
import torch
from neuralop.models import FNO
from torch.nn.modules import module as torch_module

from neuralop_mp.models import pointwise_chunks, recompute
from neuralop_mp.models.recompute import recompute_chunk_points, set_recompute

RTOL = 1e-4
CHUNK_POINTS = 64  # 2 x 16 x 16 grid points: slices of 2 rows across the batch, 8 of them
SLICES = 8


class _SlicesRun:
    """Counts, per module, the slices of grid points recompute's "block" ran a lifting or
    projection in: its checkpointed calls in :mod:`~neuralop_mp.models.pointwise_chunks` (made in
    the forward only; a call replayed whole is one checkpoint of recompute's own, none here)."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = pointwise_chunks.checkpoint

        def counted(function, *args, **kwargs):
            self.calls.append(function.args[0])  # functools.partial(forward, module)
            return real(function, *args, **kwargs)

        monkeypatch.setattr(pointwise_chunks, "checkpoint", counted)

    def of(self, modules):
        """The slices each of ``modules`` ran in since the last call, in order; then forgets them."""
        counts = [sum(called is module for called in self.calls) for module in modules]
        self.calls.clear()
        return counts


def _fno():
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)


def _float64(model):
    reference = copy.deepcopy(model)
    for p in reference.parameters():  # Module.double() would drop the spectral weights' imaginary parts
        p.data = p.data.to(torch.complex128 if p.is_complex() else torch.float64)
    return reference


def _plus_mean_over_points(t):
    # not pointwise: every value depends on the mean over all grid points of its channel
    return t + t.mean(dim=tuple(range(2, t.ndim)), keepdim=True)


def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    out = model(x)
    ((out - y) ** 2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_close_to_float64(runs, reference):
    out_ref, g_ref = reference
    for out, grads in runs:
        assert grads.keys() == g_ref.keys()
        for name, ref in {"output": out_ref, **g_ref}.items():
            got = out if name == "output" else grads[name]
            scale = ref.abs().max().item()
            err = (got.to(ref.dtype) - ref).abs().max().item()
            assert err <= RTOL * scale, (name, err, scale)


class _Recorder:
    """A forward hook that keeps (a copy of) what its layer returned and adds to that its mean
    over the grid points."""

    def __init__(self):
        self.outputs = []

    def __call__(self, module, args, output):
        self.outputs.append(output.detach().clone())
        return _plus_mean_over_points(output)


def _hooked_step(model, layer, x, y):
    recorder = _Recorder()
    handle = layer(model).register_forward_hook(recorder)
    model.zero_grad(set_to_none=True)
    out = model(x)
    forward_calls = len(recorder.outputs)
    ((out - y) ** 2).mean().backward()
    handle.remove()
    return (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}), recorder.outputs, forward_calls


LAYERS = {"lifting.fcs[0]": lambda m: m.lifting.fcs[0], "lifting.fcs[1]": lambda m: m.lifting.fcs[1],
          "projection.fcs[0]": lambda m: m.projection.fcs[0], "projection.fcs[1]": lambda m: m.projection.fcs[1]}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_forward_hook_on_a_layer_of_the_lifting_or_projection_sees_and_changes_the_whole_grid(layer):
    """The hook, put after set_recompute, adds to its layer's output its mean over the grid:
    outputs and gradients are those without recompute (float64 reference), and the hook saw
    one call in the forward, with the tensor it sees without recompute (a replay in backward
    may call it again, with the whole tensor too)."""
    layer = LAYERS[layer]
    base = _fno()
    x, y = _inputs()
    plain, plain_seen, plain_calls = _hooked_step(copy.deepcopy(base), layer, x, y)
    reference, _, _ = _hooked_step(_float64(base), layer, x.double(), y.double())
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=CHUNK_POINTS)
    recomputed, seen, calls = _hooked_step(model, layer, x, y)
    _assert_close_to_float64([recomputed, plain], reference)
    assert plain_calls == calls == 1
    assert all(t.shape == plain_seen[0].shape for t in seen)
    torch.testing.assert_close(seen[0], plain_seen[0], rtol=RTOL, atol=RTOL * plain_seen[0].abs().max().item())


def test_hooks_put_after_a_sliced_call_are_seen_and_slicing_resumes_once_removed(monkeypatch):
    """Decided at every call: sliced without hooks, whole while a forward pre-hook (adding to
    its layer's input its mean over the grid) and a full backward hook sit on layers of the
    lifting and projection, or while a global forward hook is registered, and sliced again once
    they are removed; the numbers are those without recompute, the backward hook sees the
    whole gradient once, as without recompute."""
    base = _fno()
    x, y = _inputs()
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=CHUNK_POINTS)
    mlps, slices = [model.lifting, model.projection], _SlicesRun(monkeypatch)
    _step(model, x, y)
    assert slices.of(mlps) == [SLICES, SLICES]

    def put_hooks(m, gradients):
        return [m.lifting.fcs[1].register_forward_pre_hook(lambda mod, args: (_plus_mean_over_points(args[0]),)),
                m.projection.fcs[0].register_full_backward_hook(
                    lambda mod, grad_in, grad_out: gradients.append(grad_out[0].detach().clone()))]

    plain_gradients, gradients = [], []
    put_hooks(base, plain_gradients)
    reference = _step(_float64(base), x.double(), y.double())  # the copy's hooks are base's
    plain_gradients.clear()
    plain = _step(base, x, y)
    handles = put_hooks(model, gradients)
    recomputed = _step(model, x, y)
    assert slices.of(mlps) == [0, 0]  # replayed whole
    _assert_close_to_float64([recomputed, plain], reference)
    assert len(gradients) == len(plain_gradients) == 1
    torch.testing.assert_close(gradients[0], plain_gradients[0], rtol=RTOL,
                               atol=RTOL * plain_gradients[0].abs().max().item())
    for handle in handles:
        handle.remove()
    _step(model, x, y)
    assert slices.of(mlps) == [SLICES, SLICES]
    handle = torch_module.register_module_forward_hook(lambda mod, args, out: None)
    try:
        _step(model, x, y)
        assert slices.of(mlps) == [0, 0]
    finally:
        handle.remove()
    assert recompute_chunk_points(model) == CHUNK_POINTS  # the setting, whatever a call did


@pytest.mark.parametrize("name", ["lifting", "projection"])
def test_hooks_on_the_lifting_or_projection_itself_run_once_around_the_sliced_call(name, monkeypatch):
    """A hook on the module itself is outside the slices: the call stays sliced, the forward
    hook (adding to the output its mean over the grid) runs once with the whole output, not
    again in the replay, the full backward hook once with the whole gradient; the numbers are
    those without recompute."""
    base = _fno()
    x, y = _inputs()
    x.requires_grad_()  # the lifting's backward hook then has an input gradient to see, as usual

    def put_hooks(m, seen):
        module = getattr(m, name)
        module.register_forward_hook(lambda mod, args, out: (seen.append(("forward", out.shape)),
                                                              _plus_mean_over_points(out))[1])
        module.register_full_backward_hook(lambda mod, grad_in, grad_out: seen.append(("backward", grad_out[0].shape)))

    plain_seen, seen = [], []
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=CHUNK_POINTS)
    put_hooks(base, plain_seen)
    reference = _step(_float64(base), x.double(), y.double())  # the copy's hooks are base's
    plain_seen.clear()
    plain = _step(base, x, y)
    put_hooks(model, seen)
    slices = _SlicesRun(monkeypatch)
    recomputed = _step(model, x, y)
    assert slices.of([getattr(model, name)]) == [SLICES]
    _assert_close_to_float64([recomputed, plain], reference)
    assert seen == plain_seen and len(seen) == 2


class _CountedScale(torch.nn.Module):
    """A stateful parametrization: each read of the weight counts one and scales it by
    1 + 0.1 * reads, as spectral_norm's power iteration steps at each read in training."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def forward(self, weight):
        self.reads += 1
        return weight * (1 + 0.1 * self.reads)


@pytest.mark.parametrize("memory_mode", ["block recompute", "tiles"])
def test_a_parametrized_layer_of_the_lifting_is_read_once_per_call_not_once_per_slice(memory_mode):
    """A parametrized weight (torch.nn.utils.parametrize) is computed at each read: in slices (or
    tiles) a stateful one would be stepped once per slice and each slice would see another weight.
    Such a lifting runs whole: one read in the forward, and the output of the model without slices
    (float32 rounding: 1e-4 of the largest entry)."""
    from torch.nn.utils import parametrize

    from neuralop_mp.models.pointwise_tiles import set_pointwise_tiles

    x, _ = _inputs()
    outputs, reads = [], []
    for sliced in (False, True):
        model = _fno()
        set_pointwise_tiles(model, None)
        if sliced:
            model = (set_recompute(model, "block", chunk_points=CHUNK_POINTS) if memory_mode == "block recompute"
                     else set_pointwise_tiles(model, CHUNK_POINTS))
        scale = _CountedScale()
        parametrize.register_parametrization(model.lifting.fcs[0], "weight", scale)
        scale.reads = 0  # registering reads the weight once, to check the parametrization
        with torch.no_grad():
            outputs.append(model(x))
        reads.append(scale.reads)
    assert reads == [1, 1]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=RTOL, atol=RTOL * outputs[0].abs().max().item())


def test_a_sliced_call_decides_its_slices_once(monkeypatch):
    """Each call of the sliced lifting and projection computes its cut once (it was computed for
    the 1x1 products' rule, then again for the slices): two cuts per forward, and each module still
    runs in its SLICES slices, with the model's output without recompute (float32 rounding)."""
    cuts, real = [], pointwise_chunks.split_points

    def counted(shape, points):
        cuts.append(tuple(shape))
        return real(shape, points)

    base = _fno()
    x, _ = _inputs()
    model = set_recompute(copy.deepcopy(base), "block", chunk_points=CHUNK_POINTS)
    slices = _SlicesRun(monkeypatch)
    for module in (recompute, pointwise_chunks):  # each module's own name for it
        monkeypatch.setattr(module, "split_points", counted)
    out = model(x)
    assert len(cuts) == 2 and slices.of([model.lifting, model.projection]) == [SLICES, SLICES]
    with torch.no_grad():
        expected = base(x)
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=RTOL * expected.abs().max().item())
