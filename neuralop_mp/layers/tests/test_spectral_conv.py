"""MixedPrecisionSpectralConv: correctness against float64, drop-in compatibility, precision switching."""
import io
import math
import warnings

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models import FNO

from neuralop_mp.layers.contraction_planner import plan_contraction
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.weight_contractions import spectral_equation, weight_kind, weight_operands
from neuralop_mp.layers.tests.reference import (
    DEVICES,
    U,
    finite,
    float32_accumulation,
    half_fft_relative_term,
    half_relative_bound,
    reference_forward,
    rel_err,
)
from neuralop_mp.memory import SavedTensorBytes

HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}
GEOMETRIES = [  # (n_modes, spatial size)
    ((6,), (16,)),
    ((6,), (15,)),
    ((6, 4), (12, 10)),
    ((6, 4), (11, 9)),
    ((4, 4, 4), (8, 7, 8)),
]


def _input(spatial, complex_data, batch=3, channels=4):
    dtype = torch.cfloat if complex_data else torch.float32
    return torch.randn(batch, channels, *spatial, dtype=dtype)


def _ref_weight(layer):
    return layer.weight.to_tensor().detach()


@pytest.mark.parametrize("n_modes,spatial", GEOMETRIES)
@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_full_matches_float64_reference(n_modes, spatial, complex_data, device):
    layer = MixedPrecisionSpectralConv(4, 5, n_modes, complex_data=complex_data)
    x = _input(spatial, complex_data)
    ref, *_ = reference_forward(x, _ref_weight(layer), complex_data, bias=layer.bias.detach())
    y = layer.to(device)(x.to(device))
    assert y.dtype == (torch.cfloat if complex_data else torch.float32)
    assert rel_err(y.cpu(), ref) <= 1e-5


@pytest.mark.parametrize("n_modes,spatial", GEOMETRIES)
@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("mode", ["mixed", "half"])
@pytest.mark.parametrize("half_dtype", ["bfloat16", "float16"])
# float16 on a CPU without fp16 units warns once (checked in test_mode_matmul); here it is expected
@pytest.mark.filterwarnings("ignore:half_dtype='float16' on a CPU")
@pytest.mark.parametrize("device", DEVICES)
def test_half_modes_within_derived_bound(n_modes, spatial, complex_data, mode, half_dtype, device):
    """Dense weight: k = 3 roundings (x, W, result); contraction length n = 2 * in_channels.

    See :func:`reference.half_relative_bound` for the derivation of the tolerance. On
    CUDA, "half" with float16 at power-of-2 sizes also runs both FFTs in fp16 (cuFFT):
    :func:`reference.half_fft_relative_term` adds their error.
    """
    layer = MixedPrecisionSpectralConv(
        4, 5, n_modes, complex_data=complex_data, bias=False, fno_block_precision=mode, half_dtype=half_dtype
    )
    half = HALF[half_dtype]
    x = _input(spatial, complex_data)
    ref, x_kept, w, eq = reference_forward(x, _ref_weight(layer), complex_data)
    bound = half_relative_bound(x_kept, [w], eq, 3, U[half], 2 * 4)
    with float32_accumulation():
        y = layer.to(device)(x.to(device))
    fft = layer.last_product_path["fft"]
    fp16_fft = device == "cuda" and mode == "half" and half_dtype == "float16" and all(
        n & (n - 1) == 0 for n in spatial)
    assert fft == ("float16 (cuFFT)" if fp16_fft else "float32")
    if fp16_fft:
        bound += half_fft_relative_term(x, w, x_kept, torch.einsum(eq, x_kept, w), U[half], complex_data)
    y = y.cpu()
    assert finite(y)
    err = rel_err(y, ref)
    assert err <= bound
    # the 16-bit path really ran: the error is far above fp32 rounding
    assert err > 1e-5


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("implementation", ["factorized", "reconstructed"])
@pytest.mark.parametrize("mode", ["full", "mixed"])
@pytest.mark.parametrize("device", DEVICES)
def test_factorized_equals_dense_with_reconstructed_weight(factorization, separable, implementation, mode, device):
    """Factorized layer vs dense layer holding the reconstructed weight, each against float64.

    "full": both within 1e-5 of the float64 reference. "mixed" (bf16): each within its
    derived bound; the factorized chain has k = operands + pairwise steps roundings.
    """
    kwargs = dict(separable=separable, bias=False, fno_block_precision=mode, half_dtype="bfloat16")
    fact = MixedPrecisionSpectralConv(6, 6, (6, 6), factorization=factorization, rank=0.5,
                                      implementation=implementation, **kwargs)
    dense = MixedPrecisionSpectralConv(6, 6, (6, 6), **kwargs)
    weight = _ref_weight(fact)
    with torch.no_grad():
        dense.weight.tensor.copy_(weight)
    x = _input((12, 10), False, channels=6)
    ref, x_kept, w, eq = reference_forward(x, weight, separable=separable)
    if mode == "full":
        assert rel_err(fact.to(device)(x.to(device)).cpu(), ref) <= 1e-5
        assert rel_err(dense.to(device)(x.to(device)).cpu(), ref) <= 1e-5
        return
    fact.to(device), dense.to(device)  # the plan (and so the count of roundings) is the device's
    # bound of the factorized layer: absolute values of its own chain of operands
    if implementation == "factorized":
        kind = weight_kind(fact.weight, implementation)
        chain = [op.detach().cpu().to(torch.complex128) for op in weight_operands(fact.weight, kind)]
        chain_eq = spectral_equation(kind, 4, separable)
        plan = fact.contraction_plan(x.shape)
        rounds = len(plan.shapes) + len(plan.steps)
    else:
        chain, chain_eq, rounds = [w], eq, 3
    fact_bound = half_relative_bound(x_kept, chain, chain_eq, rounds, U[torch.bfloat16],
                                     _summed_length(chain_eq, x_kept, chain))
    dense_bound = half_relative_bound(x_kept, [w], eq, 3, U[torch.bfloat16], _summed_length(eq, x_kept, [w]))
    for layer, bound in ((fact, fact_bound), (dense, dense_bound)):
        with float32_accumulation():
            y = layer.to(device)(x.to(device)).cpu()
        assert finite(y)
        assert rel_err(y, ref) <= bound


def _summed_length(eq, *operands):
    """Contraction length: product of the sizes of the indices summed over (x2 for real form)."""
    inputs, out = eq.split("->")
    sizes = {}
    tensors = [operands[0]] + list(operands[1])
    for subs, t in zip(inputs.split(","), tensors):
        sizes.update(zip(subs, t.shape))
    return 2 * math.prod(d for c, d in sizes.items() if c not in out)


@pytest.mark.parametrize("factorization", [None, "tucker", "cp", "tt"])
@pytest.mark.parametrize("separable", [False, True])
def test_full_equals_upstream_and_loads_its_state_dict(factorization, separable):
    torch.manual_seed(0)
    up = SpectralConv(6, 6, (8, 6), factorization=factorization, separable=separable,
                      implementation="factorized", rank=0.5)
    ours = MixedPrecisionSpectralConv(6, 6, (8, 6), factorization=factorization, separable=separable,
                                      implementation="factorized", rank=0.5)
    assert set(ours.state_dict()) == set(up.state_dict())
    ours.load_state_dict(up.state_dict(), strict=True)
    x = torch.randn(2, 6, 16, 12)
    assert rel_err(ours(x), up(x).double()) <= 1e-5


def test_upstream_fno_checkpoint_loads_into_fno_with_our_layer():
    torch.manual_seed(0)
    kwargs = dict(n_modes=(6, 6), in_channels=2, out_channels=1, hidden_channels=8, n_layers=2)
    up = FNO(**kwargs)
    buffer = io.BytesIO()
    torch.save(up.state_dict(), buffer)
    buffer.seek(0)
    ours = FNO(conv_module=MixedPrecisionSpectralConv, **kwargs)
    # upstream BaseModel checkpoints pickle their init kwargs (e.g. F.gelu): a trusted local file
    ours.load_state_dict(torch.load(buffer, weights_only=False), strict=True)
    x = torch.randn(2, 2, 16, 16)
    assert rel_err(ours(x), up(x).double()) <= 1e-5


def test_n_modes_changed_at_run_time_uses_centre_of_weight():
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8), max_n_modes=(8, 5), bias=False)
    up = SpectralConv(4, 4, (8, 8), max_n_modes=(8, 5), bias=False)
    up.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 16, 16)
    for n_modes in [(4, 4), (6, 8), (8, 8)]:
        layer.n_modes, up.n_modes = n_modes, n_modes
        kept_x, kept_y = n_modes[0], n_modes[1] // 2 + 1
        start = (8 - kept_x) // 2
        weight = _ref_weight(layer)[:, :, start : start + kept_x, :kept_y]
        ref, *_ = reference_forward(x, weight)
        assert layer(x).shape == x.shape
        assert rel_err(layer(x), ref) <= 1e-5
        assert rel_err(up(x), ref) <= 1e-5  # same semantics as upstream (even sizes)


@pytest.mark.parametrize("mode", ["full", "mixed"])
def test_resolution_scaling_and_output_shape(mode):
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 3, (6, 6), resolution_scaling_factor=2, fno_block_precision=mode)
    x = torch.randn(2, 3, 12, 12)
    y = layer(x)
    assert y.shape == (2, 3, 24, 24)
    ref, x_kept, w, eq = reference_forward(x, _ref_weight(layer), bias=layer.bias.detach(), out_spatial=[24, 24])
    tol = 1e-5 if mode == "full" else 0.05
    assert rel_err(y, ref) <= tol
    y = layer(x, output_shape=(10, 14))
    assert y.shape == (2, 3, 10, 14)
    assert layer.transform(x, output_shape=(10, 14)).shape == (2, 3, 10, 14)


def test_odd_sizes_fix_upstream_shift():
    """Identity weights must reproduce the input; upstream's double fftshift fails on odd sizes."""
    for complex_data in (False, True):
        layer = MixedPrecisionSpectralConv(2, 2, (7, 7), bias=False, complex_data=complex_data)
        with torch.no_grad():
            layer.weight.tensor.zero_()
            layer.weight.tensor[0, 0] = layer.weight.tensor[1, 1] = 1
        x = _input((7, 7), complex_data, batch=1, channels=2)
        assert (layer(x) - x).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_autocast_dtype_in_and_out(mode, seed):
    torch.manual_seed(seed)
    layer = MixedPrecisionSpectralConv(4, 4, (6, 6), fno_block_precision=mode)
    x = torch.randn(2, 4, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    # outside autocast a half input is cast to fp32 at the boundary: full == full of the cast input
    y_half_in = layer(x.bfloat16())
    assert y_half_in.dtype == torch.float32
    assert rel_err(y_half_in, layer(x.bfloat16().float()).double()) <= 1e-6
    # autocast changes only the boundary casts, never the layer's own precision: bitwise the
    # autocast-free run of the same (cast) input, rounded to bfloat16 at the end
    assert torch.equal(y, layer(x.bfloat16().float()).bfloat16())


@pytest.mark.parametrize("complex_data", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_under_autocast_computes_in_float32(complex_data, seed):
    """"full" ignores autocast's 16-bit dtype: its product runs in float32 all the same.

    Real data: the output is the float32 layer's output rounded to bfloat16, bitwise.
    Complex data keeps its dtype under autocast: the output is the float32 output itself, bitwise.
    """
    torch.manual_seed(seed)
    layer = MixedPrecisionSpectralConv(4, 4, (6, 6), complex_data=complex_data)
    x = _input((12, 12), complex_data, batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y_float32 = layer(x)
    assert y.dtype == (torch.complex64 if complex_data else torch.bfloat16)
    assert torch.equal(y, y_float32.to(y.dtype))
    ref, *_ = reference_forward(x, _ref_weight(layer), complex_data, bias=layer.bias.detach())
    assert rel_err(y_float32, ref) <= 1e-5


@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_gradients_every_mode_stay_fp32(mode, factorization):
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=factorization,
                                       implementation="factorized", fno_block_precision=mode)
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    layer(x).square().mean().backward()
    grads = [p.grad for p in layer.parameters()] + [x.grad]
    assert all(g is not None and finite(g) for g in grads)
    assert all(g.dtype in (torch.float32, torch.complex64) for g in grads)
    assert all(p.dtype in (torch.float32, torch.complex64) for p in layer.parameters())
    if mode != "full":  # same direction as the full-precision gradient
        full = MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=factorization, implementation="factorized")
        full.load_state_dict(layer.state_dict())
        x2 = x.detach().clone().requires_grad_()
        full(x2).square().mean().backward()
        cos = torch.nn.functional.cosine_similarity(x.grad.flatten(), x2.grad.flatten(), dim=0)
        assert cos > 0.99


def test_invalid_settings_are_rejected_with_allowed_values():
    with pytest.raises(ValueError, match=r"fno_block_precision='hlaf'.*'full', 'mixed', 'half'"):
        MixedPrecisionSpectralConv(2, 2, (4,), fno_block_precision="hlaf")
    with pytest.raises(ValueError, match=r"half_dtype='fp8'.*'bfloat16'"):
        MixedPrecisionSpectralConv(2, 2, (4,), half_dtype="fp8")
    with pytest.raises(ValueError, match=r"stabilizer='relu'.*'tanh'"):
        MixedPrecisionSpectralConv(2, 2, (4,), stabilizer="relu")
    layer = MixedPrecisionSpectralConv(2, 2, (4,))
    layer.fno_block_precision = "mixd"  # upstream would silently run in full precision
    with pytest.raises(ValueError, match="mixd"):
        layer(torch.randn(1, 2, 8))


def test_tanh_stabilizer_prevents_fp16_overflow():
    """Inputs scaled to 1e4: the fp16 product overflows (65504) without tanh, never with it
    (up to 1e5). On 256 points the "backward" spectrum is within the product's headroom of
    2**FLOAT16_HEADROOM_BITS over "forward"'s scale, so it is not scaled down."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(32, 32, (8, 8), fno_block_precision="half", half_dtype="float16",
                                       init_std=1.0, bias=False, fft_norm="backward")
    x = 1e4 * torch.randn(2, 32, 16, 16)
    assert not finite(layer(x))
    layer.stabilizer = "tanh"
    for scale in (1.0, 1e2, 1e4, 1e5):
        y = layer(scale * torch.randn(2, 32, 16, 16))
        assert finite(y)


def test_layer_saves_only_16bit_spectra_for_backward():
    layer = MixedPrecisionSpectralConv(8, 8, (8, 8), fno_block_precision="mixed")
    up = SpectralConv(8, 8, (8, 8))
    x0 = torch.randn(4, 8, 32, 32, requires_grad=True)
    with SavedTensorBytes(exclude=up.parameters()) as upstream_meter:
        up(x0 * 1.0)  # an activation, as inside a network: upstream's rfftn keeps it alive
    with SavedTensorBytes(exclude=layer.parameters()) as meter:
        layer(x0 * 1.0)
    kept = 4 * 8 * 8 * 5  # batch * channels * kept modes
    # only the 16-bit kept spectrum (4 bytes per complex): no full-resolution tensor, no
    # index of the kept modes (the truncated transforms keep positions on the host), and no
    # 16-bit copy of the weight (re-cast from the parameter in backward)
    assert meter.bytes == 4 * kept
    assert meter.bytes < upstream_meter.bytes


def test_contraction_plan_is_exposed_and_cached():
    layer = MixedPrecisionSpectralConv(16, 16, (8, 8), factorization="tucker", rank=0.3, implementation="factorized")
    plan = layer.contraction_plan((4, 16, 32, 32))
    assert plan is layer.contraction_plan((4, 16, 32, 32))
    assert len(plan.steps) == 5 and plan.peak_bytes > 0 and plan.flops > 0
    half_plan = layer.contraction_plan((4, 16, 32, 32), mode="mixed")
    # on CPU "mixed" multiplies 16-bit-rounded operands as complex64: the same bytes as "full"
    assert half_plan.steps == plan.steps and half_plan.peak_bytes == plan.peak_bytes
    assert math.prod(plan.shapes[0]) == 4 * 16 * 8 * 5


@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_backward_completes_the_weight_gradient_before_the_input_gradient(precision):
    """Backward runs the later-recorded operations first: the weight is sliced after the
    forward FFT, so its gradient is accumulated (and, with update in backward, applied and
    freed) before the FFT's backward builds the full-resolution gradient of the input."""
    torch.manual_seed(0)
    conv = MixedPrecisionSpectralConv(4, 4, n_modes=(6, 6))
    conv.fno_block_precision = precision
    order = []
    (weight,) = [p for name, p in conv.named_parameters() if name.startswith("weight")]
    weight.register_post_accumulate_grad_hook(lambda p: order.append("weight"))
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    x.register_hook(lambda g: order.append("input"))
    conv(x).square().sum().backward()
    assert order == ["weight", "input"]


def test_contraction_plan_reports_the_plan_forward_runs_on_cpu():
    """TFNO-sized Tucker layer at batch 1 on CPU, "mixed" bfloat16: the reported plan is
    the one forward evaluates (float32 pairwise products: the fewest FLOPs within 10% of
    the smallest peak), and forward matches the float64 reference of the same layer."""
    torch.manual_seed(3)
    layer = MixedPrecisionSpectralConv(64, 64, (32, 32), factorization="tucker", rank=0.1,
                                       implementation="factorized")
    layer.fno_block_precision, layer.half_dtype = "mixed", "bfloat16"
    x = torch.randn(1, 64, 64, 64)
    plan = layer.contraction_plan(x.shape)
    peak_first = plan_contraction(plan.equation, plan.shapes, plan.itemsize)
    assert plan.flops < 0.9 * peak_first.flops
    assert plan.peak_bytes <= 1.1 * peak_first.peak_bytes
    # full precision on CPU multiplies in complex64 too: the same trade, at 8 bytes per element
    full = layer.contraction_plan(x.shape, mode="full")
    assert full.steps == plan.steps and full.itemsize == 8
    from neuralop_mp.layers import spectral_conv as sc

    seen = []
    original = sc.plan_contraction
    sc.plan_contraction = lambda *a, **k: seen.append(original(*a, **k)) or seen[-1]
    try:
        with torch.no_grad():
            y = layer(x)
    finally:
        sc.plan_contraction = original
    assert seen == [plan]
    ref, *_ = reference_forward(x, _ref_weight(layer), bias=layer.bias.detach())
    # six operands and the result rounded to bfloat16 (unit roundoff 2^-9 = 2e-3 each):
    # measured 4.3e-3 (seeds 3-5); a wrong plan or operand order gives O(1)
    assert rel_err(y, ref) < 8e-3


@pytest.mark.parametrize("order, modes, factorization, separable, complex_data", [
    (1, (5,), None, False, False), (2, (7, 5), "tucker", False, False), (3, (4, 6, 5), "cp", False, False),
    (2, (6, 6), None, True, False), (2, (5, 7), "tt", False, True)])
def test_kept_modes_are_the_shape_of_the_kept_weight(order, modes, factorization, separable, complex_data):
    """The per-forward mode count (arithmetic) equals the shape of the weight slice the
    product uses, for grids smaller and larger than the modes, before and after the
    modes are reduced."""
    import itertools

    layer = MixedPrecisionSpectralConv(3, 3 if separable else 4, n_modes=modes, factorization=factorization,
                                       separable=separable, complex_data=complex_data,
                                       implementation="factorized" if factorization else "reconstructed")
    first = 1 if separable else 2
    for reduce in (False, True):
        if reduce:
            layer.n_modes = tuple(max(2, m - 2) for m in modes)
        for sizes in itertools.product(*[[3, 8, 17]] * order):
            slices = layer._weight_mode_slices(layer._fft_size(list(sizes)))
            with torch.no_grad():
                assert layer._kept_modes(slices) == list(layer._kept_weight(slices).shape[first:])


@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_a_forward_keeping_every_mode_does_not_index_the_weight(factorization, monkeypatch):
    """Indexing a tltorch tensor builds a new one (0.4 ms a forward for a Tucker weight):
    with every mode kept the layer uses its weight as it is; fewer kept modes still slice."""
    layer = MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=factorization, rank=0.5)
    x = torch.randn(2, 4, 12, 12)
    expected = layer(x)
    cls = type(layer.weight)
    original = cls.__getitem__
    calls = []
    monkeypatch.setattr(cls, "__getitem__", lambda self, index: calls.append(index) or original(self, index))
    assert torch.equal(layer(x), expected) and calls == []
    layer.n_modes = (4, 4)  # fewer modes at run time: the centre of the weight, sliced
    layer(x)
    assert len(calls) == 1


@pytest.mark.parametrize("half_dtype", ["bfloat16", "float16"])
def test_no_full_grid_copy_of_the_input_is_alive_at_the_forward_peak(half_dtype):
    """The peak of a 16-bit layer's forward is its inverse FFT. Alive there: the padded
    spectrum and the float32 output, and no copy of the input. The float32 widening
    for the FFT (and, with ``forward_after_tanh``, the block's tanh output) is freed
    once the FFT has read it. On the H200 at 64 channels, 1024^2, batch 4 those were
    1 and 0.5 GiB of the forward's peak (docs/benchmarks.md). Bit for bit the numbers
    of ``layer(torch.tanh(x))``; a tanh output held by the caller shows at the peak."""
    from neuralop_mp.peak_memory import PeakTensorBytes

    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(16, 16, n_modes=(8, 8), fno_block_precision="mixed", half_dtype=half_dtype)
    x = torch.randn(2, 16, 32, 32, dtype=getattr(torch, half_dtype)).requires_grad_()
    grid = tuple(x.shape)
    peaks, outputs = {}, {}
    calls = {"forward_after_tanh": lambda: layer.forward_after_tanh(x), "plain": lambda: layer(x),
             "tanh held by the caller": lambda: layer(torch.tanh(x))}
    for name, call in calls.items():
        with PeakTensorBytes(alive=[x, list(layer.parameters())], describe=True) as meter:
            y = call()
        peaks[name] = [(op, shape, dtype) for _, op, shape, dtype in meter.peak_tensors if shape == grid]
        outputs[name] = (y, torch.autograd.grad(y.square().sum(), [x, *layer.parameters()]))
    inverse_output = ("aten._fft_c2r.default", grid, "float32")
    assert peaks["forward_after_tanh"] == [inverse_output], peaks
    assert peaks["plain"] == [inverse_output], peaks
    assert ("aten.tanh.default", grid, half_dtype) in peaks["tanh held by the caller"], peaks
    (y0, g0), (y1, g1) = outputs["forward_after_tanh"], outputs["tanh held by the caller"]
    assert torch.equal(y0, y1) and all(torch.equal(a, b) for a, b in zip(g0, g1))


@pytest.mark.parametrize("norm", ["forward", "backward", "ortho"])
@pytest.mark.parametrize("spatial, modes, output_shape", [
    ((12, 10), 6, None), ((12, 10), 6, (20, 24)), ((12, 10), 6, (7, 6)),
    ((12, 11), 5, None), ((9, 10), 7, (10, 9)),  # odd kept counts along the shifted axis
    ((16,), 6, None), ((6, 8, 10), 5, None)])
def test_the_bias_added_at_the_zero_frequency_is_the_bias_added_at_every_point(norm, spatial, modes, output_shape,
                                                                               monkeypatch):
    """Our layer adds its bias to the zero-frequency coefficient before the inverse transform
    (no full-grid addition or sum): the output is the bias-free layer's plus ``bias``, and the
    bias's gradient the incoming gradient summed over batch and grid, within 1e-6 (float32
    rounding) of the float64 sums, for every norm and output grid. A bias scaled for the
    wrong norm or grid is off by factors like 120 or 1/120."""
    torch.manual_seed(3)
    order = len(spatial)
    layer = MixedPrecisionSpectralConv(3, 4, (modes,) * order, fft_norm=norm)
    folded = []
    fold = MixedPrecisionSpectralConv._plus_bias_at_zero_frequency
    monkeypatch.setattr(MixedPrecisionSpectralConv, "_plus_bias_at_zero_frequency",
                        lambda self, *a: folded.append(1) or fold(self, *a))
    with torch.no_grad():
        layer.bias.copy_(torch.randn_like(layer.bias))
    x = torch.randn(2, 3, *spatial, requires_grad=True)
    y = layer(x, output_shape=output_shape)
    probe = torch.randn(y.shape)
    (y * probe).sum().backward()
    grad_bias, grad_x = layer.bias.grad.clone(), x.grad.clone()
    assert folded == [1]  # the bias went into the spectrum, not onto the grid
    bias = layer.bias
    layer.bias = None  # the same layer without its bias: the sum done the plain way
    try:
        x.grad = None
        y0 = layer(x, output_shape=output_shape)
        (y0 * probe).sum().backward()
    finally:
        layer.bias = bias
    expected = y0.double() + bias.detach().double()
    assert rel_err(y, expected) <= 1e-6
    expected_bias_grad = probe.double().sum([0] + list(range(2, 2 + order))).reshape(grad_bias.shape)
    assert (grad_bias.double() - expected_bias_grad).abs().max() <= 1e-6 * probe.abs().sum().item() / 4
    assert rel_err(grad_x, x.grad) <= 1e-6


@pytest.mark.parametrize("norm, out_spatial, scale", [
    ("forward", (7, 7), 1.0), ("backward", (7, 7), 49.0), (None, (7, 7), 49.0),
    ("ortho", (2, 13), math.sqrt(26)), ("ortho", (7, 7), 7.0)])
def test_the_bias_scale_at_the_zero_frequency_is_exact_in_float64(norm, out_spatial, scale):
    """The zero frequency gets ``bias`` times exactly 1 ("forward"), the point count
    ("backward") or its square root ("ortho"), as the layer had it before the scale came from
    ``rfft_scale``: ``49 * (1 / 49)`` is 0.9999999999999999, and ``26 * 26 ** -0.5`` is an ulp
    off ``sqrt(26)``, visible on a float64 bias."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(3, 4, (4, 4), fft_norm=norm).double()
    assert layer.bias.dtype == torch.float64
    out_kept = torch.zeros(1, 4, 4, 3, dtype=torch.complex128)
    with torch.no_grad():
        layer.bias.copy_(torch.randn_like(layer.bias))
        folded = layer._plus_bias_at_zero_frequency(out_kept, out_spatial)
    assert torch.equal(folded[:, :, 2, 0].real, layer.bias.reshape(1, 4) * scale)
    folded[:, :, 2, 0] = 0  # nowhere else
    assert not folded.any()


@pytest.mark.parametrize("n_modes, max_n_modes, size", [
    ((12, 12), (8, 8), 32),   # beyond max along the shifted axis: upstream's slice is empty
    ((17, 17), (16, 16), 32),  # one past max, as an incremental schedule overshooting would be
    ((8, 22), (8, 8), 32),    # beyond max along the last axis only
    ((22,), (8,), 32),
    ((12, 12), (8, 8), 6),    # beyond max, but the grid has fewer modes than max
])
def test_n_modes_beyond_max_n_modes_gives_upstreams_output(n_modes, max_n_modes, size):
    torch.manual_seed(0)
    upstream = SpectralConv(3, 3, n_modes, max_n_modes=max_n_modes)
    ours = MixedPrecisionSpectralConv(3, 3, n_modes, max_n_modes=max_n_modes)
    ours.load_state_dict(upstream.state_dict())
    x = torch.randn(2, 3, *([size] * len(n_modes)))
    expected = upstream(x)
    for mode, tol in (("full", 1e-6), ("mixed", 2e-2)):
        ours.fno_block_precision = mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ours(x)
        assert got.shape == expected.shape
        assert ((got - expected).norm() / expected.norm()).item() <= tol, mode
