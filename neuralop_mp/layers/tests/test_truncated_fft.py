"""Truncated real FFTs against the full-spectrum pipeline they replace (float64, autograd).

The reference is upstream's order of operations: ``rfftn``, ``fftshift`` over the
non-last axes, slice the centred block; and back: zero spectrum, write the block,
``ifftshift``, ``irfftn(s=out)``. Values and gradients (torch autograd through the
reference) must agree to 1e-10 relative in float64 on fresh random inputs.
"""
import json
import math
import zlib

import pytest
import torch

from neuralop_mp.layers import truncated_fft
from neuralop_mp.layers.truncated_fft import (kept_frequencies, set_last_axis_transform, truncated_irfftn,
                                              truncated_rfftn)

TOL = 1e-10


@pytest.fixture
def last_axis(request):
    """Run the test with the last-axis maps forced one way (both ways are exact transforms)."""
    previous = set_last_axis_transform(request.param)
    yield request.param
    set_last_axis_transform(previous)


def centred(size, kept):
    start = size // 2 - kept // 2
    return slice(start, start + kept)


def reference_block(x, dims, kept, norm):
    spectrum = torch.fft.rfftn(x, dim=dims, norm=norm)
    if len(dims) > 1:
        spectrum = torch.fft.fftshift(spectrum, dim=dims[:-1])
    slices = [slice(None)] * (x.ndim - len(dims))
    slices += [centred(spectrum.shape[d], k) for d, k in zip(dims[:-1], kept[:-1])] + [slice(None, kept[-1])]
    return spectrum[tuple(slices)]


def reference_inverse(z, dims, fft_sizes, out_sizes, norm):
    spectrum_shape = list(z.shape[:z.ndim - len(dims)]) + list(fft_sizes[:-1]) + [fft_sizes[-1] // 2 + 1]
    full = z.new_zeros(spectrum_shape)
    slices = [slice(None)] * (z.ndim - len(dims))
    slices += [centred(n, z.shape[d]) for d, n in zip(dims[:-1], fft_sizes[:-1])] + [slice(None, z.shape[dims[-1]])]
    full[tuple(slices)] = z
    if len(dims) > 1:
        full = torch.fft.ifftshift(full, dim=dims[:-1])
    return torch.fft.irfftn(full, s=out_sizes, dim=dims, norm=norm)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [  # spatial sizes, kept modes per axis (last: of the rfft columns), output sizes
    ((16,), (5,), (16,)),
    ((15,), (8,), (15,)),
    ((12, 10), (6, 4), (12, 10)),
    ((9, 11), (5, 6), (9, 11)),        # odd sizes, odd kept count
    ((8, 8), (8, 5), (8, 8)),          # every frequency kept along the shifted axis
    ((12, 10), (6, 4), (24, 20)),      # output grid twice as fine
    ((12, 10), (6, 4), (7, 6)),        # output grid coarser: modes trimmed away
    ((6, 8, 10), (4, 3, 4), (6, 8, 10)),
    # last axis at least 8x its kept columns: the DFT block as a matmul can run (MATMUL_MIN_RATIO)
    ((64,), (5,), (64,)),
    ((12, 48), (6, 4), (12, 48)),
    ((10, 40), (4, 5), (20, 80)),      # finer output grid
    ((9, 33), (5, 3), (9, 45)),        # odd lengths, output grid longer along the last axis only
]


@pytest.mark.parametrize("last_axis", ["fft", "matmul"], indirect=True)
@pytest.mark.parametrize("norm", ["backward", "forward", "ortho"])
@pytest.mark.parametrize("sizes,kept,out_sizes", CASES)
def test_block_and_inverse_match_the_full_spectrum_pipeline(sizes, kept, out_sizes, norm, last_axis):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((sizes, kept, norm)).encode()))
    dims = tuple(range(-len(sizes), 0))
    x = torch.randn(2, 3, *sizes, generator=gen, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    block, block_ref = truncated_rfftn(x, dims, kept, norm), reference_block(x_ref, dims, kept, norm)
    assert block.shape == block_ref.shape and rel(block, block_ref) < TOL
    weight = torch.randn(block.shape, generator=gen, dtype=torch.complex128)
    y = truncated_irfftn(block * weight, dims, sizes, out_sizes, norm)
    y_ref = reference_inverse(block_ref * weight, dims, sizes, out_sizes, norm)
    assert y.shape == y_ref.shape and rel(y, y_ref) < TOL
    probe = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (y * probe).sum().backward()
    (y_ref * probe).sum().backward()
    assert rel(x.grad, x_ref.grad) < TOL


def test_float32_agrees_with_float64_and_nothing_is_saved_for_backward():
    gen = torch.Generator().manual_seed(7)
    x64 = torch.randn(2, 4, 32, 32, generator=gen, dtype=torch.float64)
    x = x64.float().requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        block = truncated_rfftn(x, (-2, -1), (8, 5))
        y = truncated_irfftn(block, (-2, -1), (32, 32), (32, 32))
    assert not saved  # only shapes and index lists are kept
    assert rel(block, reference_block(x64, (-2, -1), (8, 5), "backward")) < 1e-6
    assert rel(y, reference_inverse(reference_block(x64, (-2, -1), (8, 5), "backward"), (-2, -1), (32, 32),
                                    (32, 32), "backward")) < 1e-6


@pytest.mark.parametrize("last_axis", ["fft", "matmul"], indirect=True)
def test_last_axis_both_ways_in_float32_agree_with_float64_fft(last_axis):
    """At the benchmark's 256 points with 17 kept columns the last-axis inverse and the
    adjoints run either way; in float32 both agree with the float64 FFT pipeline within
    1e-6 of the largest entry (sums of 256 float32 products: about 16 ulp), gradients too."""
    from neuralop_mp.layers.truncated_fft import _by_matmul

    real, z = torch.empty(4, 256), torch.empty(4, 17, dtype=torch.complex64)
    assert _by_matmul("inverse", -1, 256, 17, z, "forward") == (last_axis == "matmul")
    assert not _by_matmul("inverse", -1, 128, 17, z, "forward")  # fewer than 8 points per kept column
    assert not _by_matmul("irfft_adjoint", -2, 256, 17, real, "forward")  # not the last axis
    assert not _by_matmul("inverse", -1, 256, 17, z.to("meta"), "forward")  # CPU only: cuFFT stays
    gen = torch.Generator().manual_seed(11)
    x64 = torch.randn(1, 2, 16, 256, generator=gen, dtype=torch.float64, requires_grad=True)
    x = x64.detach().float().requires_grad_(True)
    block = truncated_rfftn(x, (-2, -1), (8, 17), "forward")
    ref = reference_block(x64, (-2, -1), (8, 17), "forward")
    assert rel(block, ref) < 1e-6
    y = truncated_irfftn(block, (-2, -1), (16, 256), (16, 256), "forward")
    y_ref = reference_inverse(ref, (-2, -1), (16, 256), (16, 256), "forward")
    assert rel(y, y_ref) < 1e-6
    probe = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (y * probe.float()).sum().backward()
    (y_ref * probe).sum().backward()
    assert rel(x.grad, x64.grad) < 1e-6


def test_auto_times_each_large_map_once_per_shape_and_keeps_the_faster(monkeypatch):
    timed = []
    verdict = {"inverse": (1.0, 2.0), "rfft_adjoint": (2.0, 1.0), "irfft_adjoint": (1.0, 2.0)}

    def fake_timing(way, rows, length, kept, norm, dtype, device):
        timed.append((way, rows, length, kept))
        return verdict[way]

    def choice_of(way, rows, device="cpu"):
        # the decision a forward or backward makes for ``rows`` rows of 256 points, 17 kept
        return truncated_fft._decision(way, rows, 256, 17, "backward", torch.complex64, torch.device(device))

    monkeypatch.setattr(truncated_fft, "_time_both_ways", fake_timing)
    monkeypatch.setattr(truncated_fft, "_timings", {})
    previous = set_last_axis_transform("auto")
    try:
        # 2 x 3 x 64 = 384 rows of 256 points: timed past 2^16 points, on 256 of the rows
        monkeypatch.setattr(truncated_fft, "TIMED_MIN_POINTS", 2 ** 16)
        monkeypatch.setattr(truncated_fft, "TIMED_POINTS", 2 ** 16)
        x = torch.randn(2, 3, 64, 256, requires_grad=True)
        for _ in range(2):
            block = truncated_rfftn(x, (-2, -1), (8, 17))
            truncated_irfftn(block, (-2, -1), (64, 256), (64, 256)).sum().backward()
        # each map timed once, on at most TIMED_POINTS points, and the result reused
        assert sorted(timed) == [("inverse", 256, 256, 17), ("irfft_adjoint", 256, 256, 17),
                                 ("rfft_adjoint", 256, 256, 17)]
        # the decisions follow the timings, map by map
        big_z = torch.empty(384, 17, dtype=torch.complex64)
        assert truncated_fft._by_matmul("inverse", -1, 256, 17, big_z, "backward")
        assert not truncated_fft._by_matmul("rfft_adjoint", -1, 256, 17, big_z, "backward")
        assert truncated_fft._by_matmul("irfft_adjoint", -1, 256, 17, torch.empty(384, 256), "backward")
        assert len(timed) == 3
        # the choice as recorded (a forward's own, or the decision itself), read from the timings kept
        _, ran = truncated_irfftn(block.detach(), (-2, -1), (64, 256), (64, 256), return_choice=True)
        assert str(ran).startswith("DFT-block matmul (timed for this shape")
        assert str(choice_of("rfft_adjoint", 384)).startswith("FFT (timed")
        assert len(timed) == 3
        assert str(choice_of("inverse", 100)) == "FFT (too small to time)"
        assert str(choice_of("inverse", 384, device="meta")) == "FFT"
        # a small transform is an FFT, never timed: the same numbers on every run
        small = torch.randn(1, 2, 8, 256, requires_grad=True)
        truncated_irfftn(truncated_rfftn(small, (-2, -1), (4, 17)), (-2, -1), (8, 256), (8, 256)).sum().backward()
        assert len(timed) == 3
        # deterministic algorithms: "auto" is the FFT, whatever was timed
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            assert not truncated_fft._by_matmul("inverse", -1, 256, 17, big_z, "backward")
            assert str(choice_of("inverse", 384)) == "FFT (deterministic algorithms)"
        finally:
            torch.use_deterministic_algorithms(deterministic)
    finally:
        set_last_axis_transform(previous)


def test_timing_runs_both_ways_and_leaves_the_global_random_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    seconds = [truncated_fft._time_both_ways(way, 64, 256, 17, "backward", dtype, torch.device("cpu"), rounds=1)
               for way, dtype in [("inverse", torch.complex64), ("rfft_adjoint", torch.complex64),
                                  ("irfft_adjoint", torch.float32)]]
    assert torch.equal(torch.rand(3), expected)
    assert all(len(pair) == 2 and all(0 < t < 10 for t in pair) for pair in seconds)


@pytest.mark.parametrize("bad", ["FFT", "dft", None, 1])
def test_a_bad_last_axis_transform_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"Invalid last-axis transform .*'auto', 'fft', 'matmul'"):
        set_last_axis_transform(bad)


def test_kept_frequencies_are_centred_in_fftshift_order():
    assert kept_frequencies(8, 4) == [6, 7, 0, 1]
    assert kept_frequencies(9, 5) == [7, 8, 0, 1, 2]
    assert kept_frequencies(4, 4) == [2, 3, 0, 1]  # fftshift of 4: -2, -1, 0, 1
    assert torch.fft.fftshift(torch.arange(8))[centred(8, 4)].tolist() == kept_frequencies(8, 4)


def test_the_incoming_gradient_of_a_1d_transform_is_left_as_it_was():
    """1-D, few points per kept column (the FFT adjoint, which halves some columns in place):
    autograd's gradient is copied before, so a gradient reused for two backward calls
    gives the same input gradient twice, and equals the full transform's."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 20, dtype=torch.float64, requires_grad=True)
    block = truncated_rfftn(x, (-1,), (7,))
    g = torch.randn_like(block)
    before = g.clone()
    first, = torch.autograd.grad(block, x, g, retain_graph=True)
    second, = torch.autograd.grad(block, x, g)
    assert torch.equal(g, before) and torch.equal(first, second)
    reference, = torch.autograd.grad(torch.fft.rfft(x, dim=-1)[..., :7], x, g)
    torch.testing.assert_close(first, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("last_axis", ["fft", "matmul"], indirect=True)
def test_transforms_and_backward_inside_autocast_stay_in_float32(last_axis):
    """A caller (or upstream's loop, for backward) may run these inside autocast: the
    DFT-block matmuls must not run in bfloat16 then (the same numbers as outside it)."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 2, 16, 256, generator=gen, requires_grad=True)
    probe = torch.randn(1, 2, 16, 256, generator=gen)
    results = []
    for inside in (False, True):
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=inside):
            y = truncated_irfftn(truncated_rfftn(x, (-2, -1), (8, 17)), (-2, -1), (16, 256), (16, 256))
            (y * probe).sum().backward()
        results.append((y.detach(), x.grad.clone()))
    assert all(b.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("norm", [None, "backward", "forward", "ortho"])
def test_rfft_scale_is_torchs_scale_of_each_norm(norm):
    """rfft of a unit impulse is its scale at every frequency; irfft divides by ``n`` times it
    (the layer's bias at the zero frequency relies on both)."""
    n = 12
    impulse = torch.zeros(n, dtype=torch.float64)
    impulse[0] = 1.0
    spectrum = torch.fft.rfft(impulse, norm=norm)
    assert torch.allclose(spectrum, torch.full_like(spectrum, truncated_fft.rfft_scale(norm, n)), rtol=1e-15)
    constant = torch.fft.irfft(torch.tensor([1.0], dtype=torch.complex128), n=n, norm=norm)
    assert torch.allclose(constant * n * truncated_fft.rfft_scale(norm, n), torch.ones(n, dtype=torch.float64))


@pytest.mark.parametrize("norm", [None, "backward", "forward", "ortho"])
def test_zero_frequency_scale_is_exactly_what_irfft_divides_by(norm):
    """Exactly the point count, 1.0 or its square root (no product that is an ulp off: 49 times
    1/49 is not 1.0), and the zero frequency that irfft turns into 1 at every point."""
    for points in range(1, 2000):
        expected = {"forward": 1.0, "ortho": math.sqrt(points)}.get(norm, points)
        assert truncated_fft.zero_frequency_scale(norm, points) == expected, points
    for points in (12, 49, 26):
        coefficient = torch.tensor([truncated_fft.zero_frequency_scale(norm, points)], dtype=torch.complex128)
        constant = torch.fft.irfft(coefficient, n=points, norm=norm)
        assert torch.allclose(constant, torch.ones(points, dtype=torch.float64), rtol=1e-15, atol=0)


# (setting, fake (matmul, FFT) seconds of an "auto" timing, deterministic algorithms,
#  the record expected, the summary's last-axis text or None where it names none)
FORCED = [
    ("matmul", None, False, (True, "fixed"), "DFT-block matmul (fixed)"),
    ("fft", None, False, (False, "fixed"), None),
    ("auto", (0.001, 0.002), False, (True, "timed"),
     "DFT-block matmul (timed for this shape: matmul 1.00 ms, FFT 2.00 ms)"),
    ("auto", (0.002, 0.001), False, (False, "timed"), None),
    ("auto", (0.001, 0.002), True, (False, "deterministic algorithms"), None),
]


@pytest.mark.parametrize("setting, seconds, deterministic, record, text", FORCED)
def test_the_report_reads_the_last_axis_choice_the_forward_made(monkeypatch, setting, seconds, deterministic, record,
                                                                  text):
    """Each layer records how its inverse's last axis ran, decided once per forward (no second
    derivation for the report); the record is what ran (the DFT-block matmul called or not)
    and the summary names it only where it is the matmul, with the forward's reason. The rows
    are plain values: the text of the choice and whether it was the matmul, JSON-serialisable."""
    from neuralop.models import FNO

    from neuralop_mp.layers.path_report import model_product_paths, summarize_product_paths
    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    monkeypatch.setattr(truncated_fft, "_timings", {})
    monkeypatch.setattr(truncated_fft, "TIMED_MIN_POINTS", 1)  # time even this small shape
    monkeypatch.setattr(truncated_fft, "_time_both_ways", lambda *key: seconds)
    inverse_decisions, matmul_inverses = [], []
    decide, by_matmul = truncated_fft._decision, truncated_fft._irfft_by_matmul
    monkeypatch.setattr(truncated_fft, "_decision", lambda way, *a, **k: (
        inverse_decisions.append(1) if way == "inverse" else None) or decide(way, *a, **k))
    monkeypatch.setattr(truncated_fft, "_irfft_by_matmul", lambda *a: matmul_inverses.append(1) or by_matmul(*a))
    torch.manual_seed(0)
    # 64 points along the last axis, 5 kept columns: the matmul applies (at least 8 points per column)
    model = FNO(n_modes=(4, 8), in_channels=1, out_channels=1, hidden_channels=4, n_layers=2,
                conv_module=MixedPrecisionSpectralConv)
    previous, was_deterministic = set_last_axis_transform(setting), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        with torch.no_grad():
            model(torch.randn(2, 1, 16, 64))
    finally:
        set_last_axis_transform(previous)
        torch.use_deterministic_algorithms(was_deterministic)
    assert len(inverse_decisions) == 2  # one per layer and forward
    rows = model_product_paths(model)
    choice = truncated_fft.LastAxisChoice(*record, seconds if record[1] == "timed" else None)
    assert [(row["last_axis_by_matmul"], row["last_axis"]) for row in rows] == [(record[0], str(choice))] * 2
    assert json.loads(json.dumps(rows)) == [{**row, "input_shape": list(row["input_shape"])} for row in rows]
    assert len(matmul_inverses) == (2 if record[0] else 0)
    (line,) = summarize_product_paths(model)
    if text is None:
        assert "last axis" not in line
    else:
        assert f", last axis of the inverse: {text} (" in line
        assert rows[0]["last_axis"] == text


def test_the_inverse_of_the_whole_spectrum_is_recorded_as_an_fft():
    """Complex data takes the whole spectrum (no truncated transform): its record is an FFT,
    even with the matmul forced, and the summary names no last axis."""
    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    layer = MixedPrecisionSpectralConv(2, 2, (4, 8), complex_data=True)
    previous = set_last_axis_transform("matmul")
    try:
        layer(torch.randn(1, 2, 16, 64, dtype=torch.complex64))
    finally:
        set_last_axis_transform(previous)
    record = layer.last_product_path
    assert record["last_axis"] == "FFT" and record["last_axis_by_matmul"] is False
    json.dumps(record)


def test_truncated_irfftn_returns_the_choice_it_used():
    z = torch.randn(2, 3, 8, 5, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    previous = set_last_axis_transform("matmul")
    try:
        y, choice = truncated_irfftn(z, (-2, -1), (8, 64), (8, 64), return_choice=True)
        assert choice == truncated_fft.LastAxisChoice(True, "fixed") and str(choice) == "DFT-block matmul (fixed)"
        # fewer than 8 points per kept column: an FFT whatever the setting, and no reason to give
        _, short = truncated_irfftn(z, (-2, -1), (8, 32), (8, 32), return_choice=True)
        assert short == truncated_fft.LastAxisChoice(False) and str(short) == "FFT"
    finally:
        set_last_axis_transform(previous)
    assert rel(y, reference_inverse(z.to(torch.complex128), (-2, -1), (8, 64), (8, 64), "backward")) < 1e-6
