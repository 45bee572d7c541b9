"""1x1 convolutions as matrix products (one per sample, or batched), in float32 and under CPU autocast.

The bfloat16 product is checked against float64 products of the same bfloat16-rounded
operands, on fresh random inputs: the output and the input's gradient are rounded to
bfloat16 once (relative error at most 2^-8, bfloat16's unit roundoff, plus float32
accumulation, far below), the weight's gradient once per sample and once more after the
float32 sum over samples (at most 2^-7 of the sum of the per-sample magnitudes), the
bias's gradient once after a float32 sum. The float32 product is checked against the
float64 product of the same operands within 1e-6 of the largest entry (sums of a few
float32 products), and against the convolution it replaces, second derivatives included.
A dropped bias, a transposed weight or a sample read twice gives errors of order 1.

In the models, the tiles with bfloat16 products are compared with upstream's forward
under the same autocast, both against the float64 model: the products must be as close
to float64 as autocast's own convolutions, within twice their error plus 1% of the
largest entry. Measured here: 0.5-8% of the largest entry for both (bfloat16 through
three blocks); the products' weight gradients, rounded per sample and tile, were up to
1.6x autocast's; the outputs were the same. A wrong product gives errors of order 1.
(The float32 tiles are compared with float64 in test_pointwise_tiles.py.)
"""
import copy
import functools

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from neuralop_mp import set_precision
from neuralop_mp.layers.autocast_scope import set_autocast_scope
from neuralop_mp.models import pointwise_gemm
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO
from neuralop_mp.models.pointwise_gemm import is_pointwise_conv, pointwise_product, pointwise_product_dtype
from neuralop_mp.models.pointwise_tiles import describe_pointwise_tiles, set_pointwise_tiles

BF16_U = 2.0 ** -8


def _rounded64(t):
    return t.detach().to(torch.bfloat16).double()


# a few samples: one product per sample; more than PER_SAMPLE_BATCH: one batched product
BATCHES = [3, pointwise_gemm.PER_SAMPLE_BATCH + 4]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("batch", BATCHES)
def test_product_is_the_rounded_operands_product_rounded_once(bias, strided, batch):
    torch.manual_seed(0)
    conv = nn.Conv1d(5, 7, 1, bias=bias)
    wide = torch.randn(batch, 5, 90)
    x = (wide[:, :, 20:57] if strided else wide[:, :, :37].contiguous()).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pointwise_product(x, conv, torch.bfloat16)
    assert y.dtype == torch.bfloat16 and y.shape == (batch, 7, 37)
    w64 = _rounded64(conv.weight.squeeze(-1))
    ref = torch.einsum("oi,bin->bon", w64, _rounded64(x))
    if bias:
        ref = ref + _rounded64(conv.bias)[:, None]
    scale = ref.abs().max().item()
    assert ((y.double() - ref).abs() <= BF16_U * ref.abs() + 1e-6 * scale).all()

    g = torch.randn(batch, 7, 37)
    y.backward(g.to(torch.bfloat16))
    g64 = _rounded64(g)
    ref_x = torch.einsum("oi,bon->bin", w64, g64)
    assert x.grad.dtype == torch.float32
    assert ((x.grad.double() - ref_x).abs() <= BF16_U * ref_x.abs() + 1e-6 * ref_x.abs().max()).all()
    per_sample = torch.einsum("bon,bin->boi", g64, _rounded64(x))
    ref_w = per_sample.sum(0)
    err_w = (conv.weight.grad.squeeze(-1).double() - ref_w).abs()
    assert conv.weight.grad.dtype == torch.float32
    assert (err_w <= 2 * BF16_U * per_sample.abs().sum(0) + 1e-6 * ref_w.abs().max()).all()
    if bias:
        ref_b = g64.sum((0, 2))
        assert ((conv.bias.grad.double() - ref_b).abs() <= BF16_U * ref_b.abs() + 1e-5 * ref_b.abs().max()).all()


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("batch", BATCHES)
def test_float32_product_is_the_convolution_first_and_second_derivatives_too(strided, batch):
    torch.manual_seed(4)
    conv = nn.Conv1d(6, 5, 1)
    wide = torch.randn(batch, 6, 80)
    x = (wide[:, :, 10:41] if strided else wide[:, :, :31].contiguous()).requires_grad_()
    ref = torch.einsum("oi,bin->bon", conv.weight.squeeze(-1).double(), x.double()) + conv.bias.double()[:, None]
    results = []
    for run in (lambda t: pointwise_product(t, conv, torch.float32), conv):
        conv.zero_grad(set_to_none=True)
        y = run(x)
        # gradient penalties: the gradients of the input, the weight and the bias, differentiated again
        grads = torch.autograd.grad(y.square().sum(), (x, conv.weight, conv.bias), create_graph=True)
        (y.sum() + sum(g.square().sum() for g in grads)).backward()
        results.append([y.detach(), conv.weight.grad.clone(), conv.bias.grad.clone()])
    assert (results[0][0].double() - ref).abs().max() <= 1e-6 * ref.abs().max()
    for ours, theirs in zip(*results):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.float32
        assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_product_agrees_with_autocasts_convolution():
    torch.manual_seed(1)
    conv = nn.Conv1d(16, 12, 1)
    x = torch.randn(2, 16, 300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = pointwise_product(x, conv, torch.bfloat16), conv(x)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    # both round the same float32 sums once: at most one bfloat16 unit apart
    assert ((ours.float() - theirs.float()).abs() <= 2 * BF16_U * theirs.float().abs() + 1e-6).all()


def test_a_backward_inside_autocast_keeps_float32_products_in_float32():
    torch.manual_seed(6)
    conv = nn.Conv1d(4, 3, 1)
    x = torch.randn(2, 4, 50, requires_grad=True)
    grads = []
    for inside in (False, True):
        conv.zero_grad(set_to_none=True)
        x.grad = None
        y = pointwise_product(x, conv, torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=inside):
            y.square().sum().backward()
        grads.append((x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(*grads))


def test_only_plain_kernel_size_one_convolutions_are_products():
    assert is_pointwise_conv(nn.Conv1d(4, 4, 1))
    assert not is_pointwise_conv(nn.Conv1d(4, 4, 3))
    assert not is_pointwise_conv(nn.Conv1d(4, 4, 1, stride=2))
    assert not is_pointwise_conv(nn.Conv1d(4, 4, 1, padding=1))
    assert not is_pointwise_conv(nn.Conv1d(4, 4, 1, groups=2))
    assert not is_pointwise_conv(nn.Conv2d(4, 4, 1))

    class MyConv(nn.Conv1d):
        pass

    assert not is_pointwise_conv(MyConv(4, 4, 1))
    replaced = nn.Conv1d(4, 4, 1)
    replaced.forward = lambda x: x
    assert not is_pointwise_conv(replaced)


def test_products_in_float32_and_inside_cpu_autocast_with_native_16_bit_matmul(monkeypatch):
    x = torch.randn(2, 3, 4)
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: True)
    assert pointwise_product_dtype(x) == torch.float32  # no autocast
    assert pointwise_product_dtype(x.double()) is None and pointwise_product_dtype(x.bfloat16()) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pointwise_product_dtype(x) == torch.bfloat16
        assert pointwise_product_dtype(x.bfloat16()) == torch.bfloat16  # a block's 16-bit input
        assert pointwise_product_dtype(x.double()) is None  # autocast leaves float64 alone
        assert pointwise_product_dtype(torch.empty(2, 3, 4, device="meta")) is None
    assert pointwise_product_dtype(torch.empty(2, 3, 4, device="meta")) is None
    assert pointwise_product_dtype(torch.randn(3, 4)) is None  # no batch axis: the modules take it
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pointwise_product_dtype(x) is None  # emulated 16-bit products: the modules


def _fno():
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=3)


def _run(model, x, y, autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    ((out.float() - y) ** 2).mean().backward()
    return out.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _convolutions(model, x):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    return sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")


@pytest.mark.parametrize("tile_points", [40, None])
def test_tiled_model_under_autocast_is_as_close_to_float64_as_autocasts_convolutions(monkeypatch, tile_points):
    upstream_forward = _autocast_products_fno(monkeypatch, None, seed=2)
    products = set_pointwise_tiles(copy.deepcopy(upstream_forward), tile_points or 10**6)
    x, y = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    out_p, g_p = _run(products, x, y, autocast=True)
    out_u, g_u = _run(upstream_forward, x, y, autocast=True)
    # against autocast's own convolutions directly: the output within a bfloat16 unit of each
    # entry (equal on the EPYC), the gradients within 3% of each one's largest entry (the bf16
    # input gradients and per-sample weight sums differ by rounding: at most 1.5% over seeds
    # 2-4 and both tilings there, twice that allowed)
    assert ((out_p - out_u).abs() <= 2.0**-7 * out_u.abs()).all()
    for name, grad in g_u.items():
        assert (g_p[name] - grad).abs().max() <= 0.03 * grad.abs().max(), name
    reference = copy.deepcopy(upstream_forward)
    set_precision(reference, "full")
    for p in reference.parameters():
        p.data = p.data.to(torch.complex128 if p.is_complex() else torch.float64)
    out_r, g_r = _run(reference, x.double(), y.double(), autocast=False)
    assert g_p.keys() == g_u.keys() == g_r.keys() and g_p
    for name, ref in {"output": out_r, **g_r}.items():
        got_p, got_u = (out_p, out_u) if name == "output" else (g_p[name], g_u[name])
        scale = ref.abs().max().item()
        err_p = (got_p.to(ref.dtype) - ref).abs().max().item()
        err_u = (got_u.to(ref.dtype) - ref).abs().max().item()
        assert err_p <= 2 * err_u + 0.01 * scale, (name, err_p, err_u, scale)
    # the blocks, the lifting and the projection ran as products: no convolution at all
    assert _convolutions(products, x) == 0 and _convolutions(upstream_forward, x) > 0
    assert "1x1 convolutions as bfloat16 matrix products" in describe_pointwise_tiles(products)


class _ParameterCasts(TorchDispatchMode):
    """Counts the copies in another dtype (``aten._to_copy``) read from the storage of
    ``parameters``: autocast's casts and explicit ``.to()`` alike."""

    def __init__(self, parameters):
        super().__init__()
        self.storages = {p.untyped_storage().data_ptr() for p in parameters}
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and args[0].untyped_storage().data_ptr() in self.storages:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _autocast_products_fno(monkeypatch, tile_points, seed=5):
    """A mixed bfloat16 FNO autocast over the whole model, in tiles of ``tile_points`` (None:
    upstream's forward); the products forced on, so that they run on any CPU (they are only
    slow without bfloat16 units)."""
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: True)
    torch.manual_seed(seed)
    model = _fno()
    set_precision(model, "mixed", half_dtype="bfloat16")
    set_autocast_scope(model, "model")
    return set_pointwise_tiles(model, tile_points)


def test_each_1x1_weight_and_bias_is_cast_once_per_forward_not_per_tile(monkeypatch):
    """13 1x1 layers (3 blocks of a skip and a two-layer MLP, the lifting's and projection's
    two): each weight and bias cast to bfloat16 once per forward, as autocast's convolutions
    cast them, though every block and MLP runs 16 tiles (casting per tile: 16 times as many)."""
    model = _autocast_products_fno(monkeypatch, 40)
    convs = [m for m in model.modules() if is_pointwise_conv(m)]
    parameters = [p for conv in convs for p in (conv.weight, conv.bias) if p is not None]
    assert len(convs) == 13
    x = torch.randn(2, 1, 16, 16)
    for _ in range(2):  # and again in the next forward
        with _ParameterCasts(parameters) as casts, torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        assert casts.count == len(parameters)
        assert {t.last_tiles for t in (model.fno_blocks.forward_with_postactivation, model.lifting.forward)} == {16}
        assert "bfloat16 matrix products" in describe_pointwise_tiles(model)
        out.float().square().mean().backward()
    # the same model without the products: autocast's convolutions cast each once too
    set_pointwise_tiles(model, None)
    with _ParameterCasts(parameters) as casts, torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert casts.count == len(parameters)


def _product_with_autograd_casts(x, conv, dtype, casts=None, shared=False):
    """An independent reference for :func:`pointwise_product` under autocast, as the products
    were before the casts were shared: every tile casts the weight and the bias with autograd
    (the cast's backward takes the tile's gradient, rounded to ``dtype``, to the float32
    parameter, where autograd sums the tiles in float32) and multiplies with torch's own
    batched product (its backward sums the samples' weight products in float32 and rounds the
    tile's sum once). ``shared``: one autograd cast per call instead, so the tiles' gradients
    are summed in ``dtype`` at the cast: the regression the reference must tell apart."""
    operands = casts.get(conv) if shared and casts is not None else None
    if operands is None:
        operands = (conv.weight.squeeze(-1).to(dtype), None if conv.bias is None else conv.bias.to(dtype))
        if shared and casts is not None:
            casts[conv] = operands
    weight, bias = operands
    with torch.autocast("cpu", enabled=False):
        batched, x = weight.expand(x.shape[0], -1, -1), x.to(dtype)
        return torch.bmm(batched, x) if bias is None else torch.baddbmm(bias[None, :, None], batched, x)


# per-sample products (16 tiles of a row of 3 samples) and batched ones (3 tiles of 9 whole
# samples: more than PER_SAMPLE_BATCH; 12 samples in tiles of 300 points were 12 tiles of one)
@pytest.mark.parametrize("tile_points, batch", [(40, 3), (9 * 256, 27)])
def test_casting_once_per_call_gives_the_numbers_of_casting_per_tile(monkeypatch, tile_points, batch):
    """Output and every gradient (float32 parameters) bit for bit those of the same tiles with
    the 1x1 weights and biases cast again for every tile, and those of an independent
    reference (autograd casts per tile, torch's batched products): each tile's weight gradient
    is still rounded to bfloat16 alone and summed over the tiles in float32. The reference with
    one autograd cast per call (the tiles summed in bfloat16) differs: the comparison sees it."""
    model = _autocast_products_fno(monkeypatch, tile_points)
    x, y = torch.randn(batch, 1, 16, 16), torch.randn(batch, 1, 16, 16)
    out, grads = _run(model, x, y, autocast=True)
    assert model.fno_blocks.forward_with_postactivation.last_tiles > 2
    assert grads.keys() and len(grads) == len(list(model.parameters()))
    real = pointwise_gemm.pointwise_product
    references = {"cast per tile": lambda t, conv, dtype, casts=None: real(t, conv, dtype),
                  "autograd casts per tile": _product_with_autograd_casts}
    for name, product in references.items():
        monkeypatch.setattr(pointwise_gemm, "pointwise_product", product)
        out_ref, grads_ref = _run(model, x, y, autocast=True)
        assert torch.equal(out, out_ref), name
        assert grads.keys() == grads_ref.keys(), name
        for key, grad in grads.items():
            assert grad.dtype == model.get_parameter(key).dtype and torch.equal(grad, grads_ref[key]), (name, key)
    monkeypatch.setattr(pointwise_gemm, "pointwise_product",
                        functools.partial(_product_with_autograd_casts, shared=True))
    _, grads_shared = _run(model, x, y, autocast=True)
    assert any(not torch.equal(grad, grads_shared[key]) for key, grad in grads.items())


def test_autocast_scope_decides_where_products_run(monkeypatch):
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: True)
    model = set_pointwise_tiles(_fno(), 40)
    x = torch.randn(2, 1, 16, 16)
    tilers = {name: getattr(getattr(model, name), "forward") for name in ("lifting", "projection")}
    tilers["fno_blocks"] = model.fno_blocks.forward_with_postactivation
    bf16, f32 = torch.bfloat16, torch.float32
    # where the scope keeps a layer in float32, its products are float32 ones
    for scope, expected in [("model", {"lifting": bf16, "projection": bf16, "fno_blocks": bf16}),
                            ("fno_blocks", {"lifting": f32, "projection": f32, "fno_blocks": bf16}),
                            ("spectral", {"lifting": f32, "projection": f32, "fno_blocks": f32})]:
        set_autocast_scope(model, scope)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
        assert {name: t.last_product_dtype for name, t in tilers.items()} == expected, scope
    model(x)  # outside autocast: float32 products
    assert {t.last_product_dtype for t in tilers.values()} == {f32}
    model(torch.randn(1, 1, 4, 4))  # a whole grid (one tile's worth): upstream's float32 modules
    assert {t.last_product_dtype for t in tilers.values()} == {None}


def test_a_hooked_layer_in_a_block_keeps_autocasts_convolutions(monkeypatch):
    """A hook on a 1x1 layer the products would bypass: the block runs upstream's forward,
    so the hook runs and the layer is a convolution (as without the products)."""
    monkeypatch.setattr(pointwise_gemm, "native_half_matmul", lambda dtype, device: True)
    model = set_pointwise_tiles(_fno(), 40)
    set_autocast_scope(model, "model")
    x = torch.randn(2, 1, 16, 16)
    assert _convolutions(model, x) == 0
    seen = []
    handle = model.fno_blocks.channel_mlp[0].fcs[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        # the hooked first layer's block call ran upstream's forward: convolutions, hook once per call
        assert _convolutions(model, x) > 0 and seen == [torch.Size([2, 8, 256])]
    finally:
        handle.remove()
