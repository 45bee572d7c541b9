"""The mode-batched dense product and the per-device choice of product path."""
import warnings

import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.layers import product_paths
from neuralop_mp.layers.mode_matmul import dense_mode_product
from neuralop_mp.layers.product_paths import (
    MODE_BATCHED,
    PAIRWISE,
    choose_product_path,
)
from neuralop_mp.layers.path_report import model_product_paths, summarize_product_paths
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.weight_storage import spectral_weight_parameters
from neuralop_mp.layers.tests.reference import U, gamma, rel_err

MODES = [(7,), (5, 4), (3, 4, 2)]


def _operands(modes, batch=3, n_in=6, n_out=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, *modes, dtype=torch.cdouble, generator=gen)
    w = torch.randn(n_in, n_out, *modes, dtype=torch.cdouble, generator=gen)
    return x, w


def _reference(x, w):
    letters = "xyz"[: x.ndim - 2]
    return torch.einsum(f"bi{letters},io{letters}->bo{letters}", x, w)


@pytest.mark.parametrize("modes", MODES)
def test_full_precision_matches_float64_with_gradients(modes):
    torch.manual_seed(0)
    x, w = _operands(modes)
    xs = x.to(torch.cfloat).requires_grad_()
    ws = w.to(torch.cfloat).requires_grad_()
    y = dense_mode_product(xs, ws)
    ref = _reference(x.requires_grad_(), w.requires_grad_())
    assert y.dtype == torch.cfloat and y.shape == ref.shape
    assert rel_err(y, ref) <= 1e-6
    g = torch.randn_like(ref)
    ga, gb = torch.autograd.grad(ref, (x, w), g)
    gxs, gws = torch.autograd.grad(y, (xs, ws), g.to(torch.cfloat))
    assert rel_err(gxs, ga) <= 1e-6
    assert rel_err(gws, gb) <= 1e-6


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_16_bit_rounding_within_bound_for_both_compute_dtypes(half):
    """Operands and result rounded to ``half`` (k = 3 roundings), fp32 accumulation over 2 * in.

    Per entry ``|Y - Y_ref| <= (sqrt(2) gamma_3(u) + gamma_12(2^-24)) sum |x||w|`` (see
    reference.half_relative_bound); the fp32 path and the native 16-bit matmul (emulated
    here) both obey it, and both really round (error far above fp32's).
    """
    x, w = _operands((5, 4), seed=1)
    ref = _reference(x, w)
    bound = (2**0.5 * gamma(3, U[half]) + gamma(12, U[torch.float32])) * _reference(x.abs(), w.abs())
    for compute in (torch.float32, half):
        y = dense_mode_product(x.to(torch.cfloat), w.to(torch.cfloat), half, compute)
        err = (y.cdouble() - ref).abs()
        assert (err <= bound).all()
        assert err.max() > 1e-5


@pytest.mark.parametrize("channels", [(1, 1), (1, 3), (3, 1)])
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_16_bit_product_with_one_input_or_output_channel(half, channels):
    """One weight row (1 x 1 channels) is a layout torch calls contiguous with a last stride of
    K: the 16-bit weight's reinterpretation must still work, within the bound above."""
    n_in, n_out = channels
    x, w = _operands((5, 4), n_in=n_in, n_out=n_out, seed=2)
    ref = _reference(x, w)
    bound = (2**0.5 * gamma(3, U[half]) + gamma(12, U[torch.float32])) * _reference(x.abs(), w.abs())
    with torch.no_grad():
        y = dense_mode_product(x.to(torch.cfloat), w.to(torch.cfloat), half, torch.float32)
    assert ((y.cdouble() - ref).abs() <= bound).all()
    # and through the layer, with gradients: a one-channel FNO width in "mixed"
    layer = MixedPrecisionSpectralConv(1, 1, (4, 4), fno_block_precision="mixed", half_dtype=str(half)[6:])
    inputs = torch.randn(2, 1, 8, 8, requires_grad=True)
    layer(inputs).square().sum().backward()
    assert torch.isfinite(inputs.grad).all() and inputs.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_16_bit_weight_matrix_is_each_entry_rounded_once_in_modes_first_order(half):
    """The block matrix of the weight, built by rounding before a transpose of (re, im) words,
    holds exactly each weight entry rounded once to ``half``: entry (k, i, 2 o + c) is part c
    of W[i, o, k] (c = 0 real, 1 imaginary). Checked for a contiguous weight, a kept-modes
    slice of one (not contiguous) and a complex32 weight, and the product with the sliced
    weight against the float64 einsum within the 16-bit bound."""
    from neuralop_mp.layers.mode_matmul import _weight_chunk

    gen = torch.Generator().manual_seed(5)
    full = torch.randn(6, 5, 7, 9, dtype=torch.cdouble, generator=gen)
    for w in (full[..., :4], full[:, :, 1:6, 2:8], full[:, :, :3, :3].to(torch.complex32)):
        w_2d = (w.to(torch.cfloat) if w.dtype != torch.complex32 else w).reshape(30, -1)
        parts = torch.view_as_real(w.to(torch.cdouble))  # (in, out, *modes, 2)
        expected = parts.to(half).double().flatten(2, -2).permute(2, 0, 1, 3).reshape(-1, 6, 10)
        n_modes = w_2d.shape[1]
        # the whole modes axis, and a chunk from its middle
        for start, stop in ((0, n_modes), (1, n_modes - 1)):
            matrix = _weight_chunk(w_2d, start, stop, 6, half, torch.float32)
            assert matrix.dtype == torch.float32 and torch.equal(matrix.double(), expected[start:stop])
    x = torch.randn(2, 6, 5, 6, dtype=torch.cdouble, generator=gen)
    w = full[:, :, 1:6, 2:8]
    y = dense_mode_product(x.to(torch.cfloat), w.to(torch.cfloat), half)
    bound = (2**0.5 * gamma(3, U[half]) + gamma(12, U[torch.float32])) * _reference(x.abs(), w.abs())
    assert ((y.cdouble() - _reference(x, w)).abs() <= bound).all()


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex32_weight_gets_complex32_gradient():
    x, w = _operands((4, 3), seed=2)
    ws = w.to(torch.complex32).requires_grad_()
    xs = x.to(torch.cfloat).requires_grad_()
    y = dense_mode_product(xs, ws, torch.bfloat16)
    y.abs().sum().backward()
    assert ws.grad.dtype == torch.complex32 and xs.grad.dtype == torch.cfloat
    assert torch.isfinite(torch.view_as_real(ws.grad.to(torch.cfloat))).all()


def test_mismatched_shapes_are_rejected():
    x, w = _operands((4, 3))
    with pytest.raises(ValueError, match=r"\(3, 6, 4, 3\).*\(6, 5, 4, 2\)"):
        dense_mode_product(x.to(torch.cfloat), w[..., :2].to(torch.cfloat))


def test_path_rule_and_cache():
    native = product_paths.native_half_matmul(torch.bfloat16, "cpu")
    path = choose_product_path("dense", False, "mixed", torch.bfloat16, "cpu")
    assert path.kernel == MODE_BATCHED
    # on CPU always float32 products of 16-bit-rounded operands, with or without bf16 units
    assert path.compute_dtype == torch.float32
    assert ("bfloat16 units" if native else "no bfloat16 matrix units") in path.reason
    tucker = choose_product_path("tucker", False, "mixed", torch.bfloat16, "cpu")
    assert tucker.kernel == PAIRWISE and tucker.complex_product == "complex"
    assert choose_product_path("dense", True, "full", None, "cpu").kernel == PAIRWISE
    cuda = choose_product_path("dense", False, "half", torch.float16, "cuda")  # no device needed
    assert cuda.compute_dtype == torch.float16
    hits = product_paths._choose.cache_info().hits
    assert choose_product_path("dense", False, "mixed", torch.bfloat16, torch.device("cpu")) is path
    assert product_paths._choose.cache_info().hits == hits + 1


def test_float16_on_cpu_without_fp16_units_warns_once(monkeypatch):
    monkeypatch.setattr(product_paths, "native_half_matmul", lambda dtype, device: False)
    monkeypatch.setattr(product_paths, "_warned", set())
    product_paths._choose.cache_clear()  # choices made here must not outlive the patch
    layer = MixedPrecisionSpectralConv(4, 4, (4, 4), fno_block_precision="mixed", half_dtype="float16")
    x = torch.randn(2, 4, 8, 8)
    with pytest.warns(UserWarning, match="bfloat16.*exponent range"):
        layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # a second forward does not warn again
    product_paths._choose.cache_clear()


def test_model_report_lists_every_layer_and_its_path():
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                conv_module=MixedPrecisionSpectralConv)
    assert [r["kernel"] for r in model_product_paths(model)] == [None, None]
    assert summarize_product_paths(model) == []
    for conv in model.fno_blocks.convs:
        conv.fno_block_precision, conv.half_dtype = "mixed", "bfloat16"
    model(torch.randn(2, 1, 16, 16))
    rows = model_product_paths(model)
    assert len(rows) == 2
    assert all(r["kernel"] == MODE_BATCHED and r["mode"] == "mixed" and r["fft"] == "float32" for r in rows)
    assert rows[0]["input_shape"] == (2, 8, 16, 16)
    (line,) = summarize_product_paths(model)
    assert line.startswith("mixed: mode-batched matmul")


def test_autocast_pays_only_with_16_bit_matrix_units(monkeypatch):
    assert product_paths.autocast_pays(torch.float16, "cuda")  # no device needed: a CUDA property
    monkeypatch.setattr(product_paths, "native_half_matmul", lambda dtype, device: False)
    assert not product_paths.autocast_pays(torch.bfloat16, "cpu")
    monkeypatch.setattr(product_paths, "native_half_matmul", lambda dtype, device: dtype == torch.bfloat16)
    assert product_paths.autocast_pays(torch.bfloat16, "cpu")
    assert not product_paths.autocast_pays(torch.float16, "cpu")


def _product_and_grads(x, w, half, chunk_bytes, seed=5):
    xs, ws = x.detach().requires_grad_(), w.detach().requires_grad_()
    y = dense_mode_product(xs, ws, half, chunk_bytes=chunk_bytes)
    g = torch.randn(y.shape, dtype=torch.cfloat, generator=torch.Generator().manual_seed(seed))
    gx, gw = torch.autograd.grad(y, (xs, ws), g)
    return y, gx, gw


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("weight_dtype", [torch.complex64, torch.complex32])
@pytest.mark.parametrize("half", [None, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("modes", [(5, 4), (3, 4, 2)])
def test_chunks_of_modes_give_the_numbers_of_one_chunk_bitwise(weight_dtype, half, modes):
    """Each mode's product is independent, so any split of the K modes gives bitwise the
    product, spectrum gradient and weight gradient of one chunk: chunks of 1 mode, of
    3 modes (dividing neither K = 20 nor K = 24) and of 4 modes (dividing both)."""
    x, w = _operands(modes, seed=3)
    x, w = x.to(torch.cfloat), w.to(weight_dtype)
    per_mode = w.shape[0] * w.shape[1] * 8
    whole = _product_and_grads(x, w, half, chunk_bytes=10**9)
    assert whole[2].dtype == weight_dtype
    for modes_per_chunk in (1, 3, 4):
        # a budget one byte short of the next mode: the chunk length rounds down
        chunked = _product_and_grads(x, w, half, chunk_bytes=(modes_per_chunk + 1) * per_mode - 1)
        for a, b in zip(chunked, whole):
            assert a.dtype == b.dtype and torch.equal(torch.view_as_real(a), torch.view_as_real(b))


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_chunked_product_holds_no_whole_weight_sized_temporary():
    """Peak of live tensor bytes of forward + backward with a complex32 weight
    (in = out = 32, 12 x 12 modes: 590 KB). In one chunk the weight is widened to
    complex64 and laid out as a float32 matrix (1.2 MB each), and its gradient passes
    through float32 and complex64 copies; in chunks of a 64 KB budget only the
    complex32 gradient itself (590 KB) is weight-sized. The bound (the gradient, six
    chunk budgets, ten copies of the 2-sample spectrum) separates the two."""
    from neuralop_mp.peak_memory import PeakTensorBytes

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 32, 12, 12, dtype=torch.cfloat, generator=gen)
    w = torch.randn(32, 32, 12, 12, dtype=torch.cfloat, generator=gen).to(torch.complex32)
    g = torch.randn(2, 32, 12, 12, dtype=torch.cfloat, generator=gen)
    weight_bytes = w.numel() * w.element_size()
    chunk_bytes = 64 * 2**10
    bound = weight_bytes + 6 * chunk_bytes + 10 * x.numel() * x.element_size()

    def peak(budget):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        with PeakTensorBytes(alive=[xs, ws, g]) as meter:
            dense_mode_product(xs, ws, torch.bfloat16, chunk_bytes=budget).backward(g)
        return meter.peak_bytes - meter.baseline_bytes

    assert peak(chunk_bytes) <= bound < peak(10**9)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), (2.5e7, TypeError), ("32MB", TypeError)])
def test_invalid_chunk_budget_is_rejected(bad, error):
    x, w = _operands((4, 3))
    with pytest.raises(error, match=f"chunk_bytes must be a positive int.*{bad!r}"[:60].replace("(", r"\(")):
        dense_mode_product(x.to(torch.cfloat), w.to(torch.cfloat), chunk_bytes=bad)


def test_default_chunks_small_weights_whole_large_ones_by_budget():
    from neuralop_mp.layers.mode_matmul import MODE_CHUNK_BYTES, SINGLE_CHUNK_BYTES, _modes_per_chunk

    # 64 channels, 32x17 modes: 17 MB of complex64, one chunk
    assert _modes_per_chunk(32 * 17, 64, 64) == 32 * 17
    # 128 channels, 64x33 modes: 277 MB, chunks of MODE_CHUNK_BYTES (128 KB a mode)
    assert SINGLE_CHUNK_BYTES < 64 * 33 * 128 * 128 * 8
    assert _modes_per_chunk(64 * 33, 128, 128) == MODE_CHUNK_BYTES // (128 * 128 * 8)
    assert _modes_per_chunk(64 * 33, 128, 128, chunk_bytes=1) == 1


def test_on_a_gpu_weights_up_to_the_device_budget_are_one_chunk():
    from neuralop_mp.chunk_budget import DEVICE_CHUNK_BYTES
    from neuralop_mp.layers.mode_matmul import MODE_CHUNK_BYTES, _modes_per_chunk

    # 128 channels, 32x17 modes (71 MB): 9 chunks on a CPU, one on a GPU
    assert _modes_per_chunk(32 * 17, 128, 128) == MODE_CHUNK_BYTES // (128 * 128 * 8) < 32 * 17
    assert _modes_per_chunk(32 * 17, 128, 128, device_type="cuda") == 32 * 17
    # 256 channels, 64x33 modes (1.1 GB): chunks of the device budget
    assert _modes_per_chunk(64 * 33, 256, 256, device_type="cuda") == DEVICE_CHUNK_BYTES // (256 * 256 * 8)
    assert _modes_per_chunk(64 * 33, 256, 256, chunk_bytes=1, device_type="cuda") == 1


def test_layer_uses_the_module_chunk_budget(monkeypatch):
    """The spectral layer's dense product follows ``SINGLE_CHUNK_BYTES`` and
    ``MODE_CHUNK_BYTES``: a budget of one mode per chunk changes nothing in its output
    and gradients (bitwise), in "mixed"."""
    from neuralop_mp.layers import mode_matmul

    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(6, 5, (6, 6), fno_block_precision="mixed", half_dtype="bfloat16")
    x = torch.randn(2, 6, 12, 12, requires_grad=True)
    (weight,) = spectral_weight_parameters(layer)

    def run():
        y = layer(x)
        grads = torch.autograd.grad(y.square().sum(), (x, weight))
        return (y, *grads)

    whole = run()
    calls = []
    original = mode_matmul._modes_per_chunk
    monkeypatch.setattr(mode_matmul, "SINGLE_CHUNK_BYTES", 0)
    monkeypatch.setattr(mode_matmul, "MODE_CHUNK_BYTES", 6 * 5 * 8)
    monkeypatch.setattr(mode_matmul, "_modes_per_chunk", lambda *a: calls.append(original(*a)) or original(*a))
    chunked = run()
    assert calls and set(calls) == {1}
    for a, b in zip(chunked, whole):
        assert torch.equal(a, b)
