"""Real FFTs that compute only the Fourier modes a spectral layer keeps.

A Fourier layer transforms its input, keeps a small block of modes and transforms
back. Upstream's layer computes the whole spectrum (``rfftn``), fftshifts it, slices
the block, then zero-fills a whole spectrum, writes the block, undoes the shift and
inverts it (``irfftn``). Of these, only the transform along the last axis (the
``rfft``, whose outputs are all needed before truncation) must touch every
frequency; along every other axis only the kept columns need transforming, and the
shifts, the zero fill and the slice copies are not needed at all: the kept block is
gathered straight from the unshifted spectrum.

:func:`truncated_rfftn` and :func:`truncated_irfftn` compute exactly the block and
the inverse of that pipeline (the same numbers up to floating-point rounding), in
the layer's order of modes (centred on the zero frequency along the shifted axes).
Both save no tensor for backward; their backward passes are the adjoint transforms,
again computed on the kept columns only.

At 256^2 with 32x32 modes this does the complex transforms on 16 of 129 columns; the
saving is measured by ``neuralop-mp bench spectral`` (docs/benchmarks.md).

Along the last axis, when the kept columns are few against its length (length at
least :data:`MATMUL_MIN_RATIO` times the kept count, e.g. 17 of 256 points), three of
the four last-axis maps can run on CPU as one real matrix product with the
``(length, 2 kept)`` block of the DFT matrix instead of an FFT of the whole axis: the
inverse transform and the forward transform's adjoint (both from the kept columns to
the whole axis, where the FFT first zero-fills every dropped column), and the inverse's
adjoint (from the whole axis to the kept columns). The same numbers up to float32
rounding. Which is faster depends on the CPU: one thread, batch 2, 64 channels, 256
rows, 17 of 256 columns kept, matmul against FFT:

- a 2-core AVX2 CPU: inverse 10.2 against 12.9 ms, forward transform's adjoint 10.6
  against 14.8 ms, inverse's adjoint 13.1 against 14.2 ms: the matmul wins;
- a 2-core AVX512-BF16 EPYC: 10.7 against 9.6 ms, 10.9 against 9.3 ms, 14.1 against
  7.8 ms: the FFT wins (an FNO step at 256^2 took 5% less time with FFTs only).

So by default (:func:`set_last_axis_transform`, "auto") each of the three maps is timed
both ways once per shape on the CPU it runs on (on at most :data:`TIMED_POINTS` points
of it: both costs grow with the rows alike) and the faster one is kept for that shape;
transforms of fewer than :data:`TIMED_MIN_POINTS` points are not worth a timing and are
FFTs (the same numbers on every run there), as is every transform under
``torch.use_deterministic_algorithms(True)``. The forward transform is always an FFT
(matmul 13.9 against FFT 8.1 ms on the AVX2 CPU). Other devices keep the FFT, as does a CPU
where :func:`~.product_paths.force_device_choices` forces another device's choices.

References
----------
.. [1] Li, Z. et al. "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021 (the truncated Fourier layer).
"""
import dataclasses
import functools
import math
import time
from typing import Optional, Tuple

import torch

from .product_paths import choice_device_type

# the adjoint of an FFT with one normalisation is the inverse FFT with the other
_ADJOINT_NORM = {"forward": "backward", "backward": "forward", "ortho": "ortho", None: "forward"}


def kept_frequencies(size, kept):
    """Frequency indices (in ``0..size-1``) of ``kept`` modes centred on zero, in the
    order an fftshifted axis lists them: ``-(kept // 2), ..., kept - kept // 2 - 1``."""
    return [(j - kept // 2) % size for j in range(kept)]


class _AxisModes:
    """The kept frequencies of one axis: as a tuple (decisions on the host, so a CUDA
    step never waits for the device) and as an index tensor (the gathers)."""

    def __init__(self, size, kept, device):
        self.freqs = tuple(kept_frequencies(size, kept))
        self.index = torch.tensor(self.freqs, device=device, dtype=torch.long)

    def scatter(self, z, dim, length, scale=1.0):
        """``z`` placed at these frequencies along ``dim`` of a zero tensor of ``length``;
        frequencies at or past ``length`` are dropped (the trimming ``ifft(n=length)`` does).
        Times ``scale``, on the new tensor in place: for a power of two, the numbers of
        scaling ``z`` first, without a copy of it."""
        index = self.index
        if max(self.freqs) >= length:
            inside = [j for j, f in enumerate(self.freqs) if f < length]
            z = z.index_select(dim, torch.tensor(inside, device=z.device, dtype=torch.long))
            index = torch.tensor([self.freqs[j] for j in inside], device=z.device, dtype=torch.long)
        shape = list(z.shape)
        shape[dim] = length
        placed = z.new_zeros(shape).index_copy_(dim, index, z)
        return placed.mul_(scale) if scale != 1 else placed

    def gather(self, g, dim):
        """``g`` at these frequencies along ``dim``; zero past ``g``'s end (modes the
        forward dropped when it trimmed the axis)."""
        return _gather_or_zero(g, dim, self.index, max(self.freqs) + 1)


@functools.lru_cache(maxsize=256)
def _axis_modes(size, kept, device):
    return _AxisModes(size, kept, device)


def _axes(sizes, kept, device):
    """Per non-last axis, its :class:`_AxisModes` (cached: the same few shapes recur every
    step, and building index tensors costs more than gathering at small sizes)."""
    return [_axis_modes(n, k, device) for n, k in zip(sizes[:-1], kept[:-1])]


def _gather_or_zero(g, dim, index, top):
    """``g.index_select(dim, index)``, reading zeros where an index (all below ``top``)
    is past ``g``'s end."""
    past = top - g.shape[dim]
    if past > 0:
        widths = [0, 0] * (-dim)
        widths[-1] = past
        g = torch.nn.functional.pad(g, widths)
    return g.index_select(dim, index)


# last-axis length / kept columns from which the DFT block as a matmul can beat the FFT
MATMUL_MIN_RATIO = 8
# transforms of fewer points (rows x length) are FFTs, untimed; larger ones are timed on at
# most TIMED_POINTS points of them (32 MiB of float32: past the caches, as the real one is)
TIMED_MIN_POINTS = 2 ** 20
TIMED_POINTS = 2 ** 23
LAST_AXIS_TRANSFORMS = ("auto", "fft", "matmul")
# per norm, for n points: (the factor rfft multiplies its sums by, the number irfft divides its
# sums by, the power of two that divides rfft down to "forward"'s range, from b = ceil(log2(n))),
# each written out: n times the factor is an ulp off the divisor for some n (49 * (1 / 49) ==
# 0.9999999999999999)
_NORM_SCALES = {"backward": (lambda n: 1.0, float, lambda b: b), None: (lambda n: 1.0, float, lambda b: b),
                "forward": (lambda n: 1.0 / n, lambda n: 1.0, lambda b: 0),
                "ortho": (lambda n: n ** -0.5, math.sqrt, lambda b: (b + 1) // 2)}
#: the ``fft_norm`` values of the spectral layer (torch.fft's; None is "backward")
FFT_NORMS = ("forward", "backward", "ortho", None)
_setting = {"transform": "auto"}
# (map, timed rows, length, kept, norm, dtype, device, threads) -> (matmul seconds, FFT seconds)
_timings = {}


def rfft_scale(norm, length):
    """The factor ``rfft(norm=norm)`` of ``length`` points multiplies its sums by: 1 ("backward",
    None), ``1 / length`` ("forward"), ``length ** -0.5`` ("ortho"). The inverse's is the other
    norm's (:data:`_ADJOINT_NORM`); what the inverse divides by is :func:`zero_frequency_scale`."""
    return _NORM_SCALES[norm][0](length)


def zero_frequency_scale(norm, points):
    """The zero-frequency coefficient whose inverse transform (``irfftn(norm=norm)`` onto
    ``points`` output points in all) is 1 at every point, i.e. the number the inverse divides its
    sums by: ``points`` ("backward", None), 1.0 ("forward"), ``math.sqrt(points)`` ("ortho").
    Exact, where ``points * rfft_scale(norm, points)`` is not always (0.9999999999999999 for 49
    points, "forward"). The spectral layer scales its bias by it to add the bias in the spectrum."""
    return _NORM_SCALES[norm][1](points)


def forward_norm_exponent(norm, points):
    """The ``k`` that brings ``rfftn(x, norm=norm)`` over ``points`` points (or ``fftn``) to the range
    of ``norm="forward"``: ``2**-k`` times it is at most ``max|x|`` in magnitude, and within a factor 2
    of the "forward" spectrum. ``ceil(log2(points))`` ("backward", None), ``ceil(log2(points) / 2)``
    ("ortho"), 0 ("forward"). A float16 spectral product scales its operand by ``2**-s`` and its
    result back by ``2**s``, ``s = max(0, k - spectral_conv.FLOAT16_HEADROOM_BITS)``: powers of
    two, exact outside float16's subnormals, so only where the numbers sit in float16's range changes
    (a "backward" spectrum sums the points: 65536 of them at 256^2 exceed float16's 65504)."""
    return _NORM_SCALES[norm][2]((points - 1).bit_length())  # ceil(log2(points)), in integers: exact


def set_last_axis_transform(transform):
    """How the last axis's inverse-direction maps are computed on CPU; returns the previous setting.

    Parameters
    ----------
    transform : {"auto", "fft", "matmul"}
        "auto" (default): timed both ways once per shape, the faster kept (small
        transforms: FFT); "fft": always an FFT; "matmul": the DFT-block matmul wherever
        it applies (last axis at least :data:`MATMUL_MIN_RATIO` times its kept columns).
        "fft" or "matmul" give the same numbers from run to run (on one machine and thread
        count: other CPUs' kernels round differently); so does "auto" under
        ``torch.use_deterministic_algorithms(True)``, where it means "fft".

    Raises
    ------
    ValueError
        On any other value (the message names it and the allowed ones).
    """
    if transform not in LAST_AXIS_TRANSFORMS:
        raise ValueError(f"Invalid last-axis transform {transform!r}; allowed values: "
                         f"{', '.join(repr(t) for t in LAST_AXIS_TRANSFORMS)}.")
    previous, _setting["transform"] = _setting["transform"], transform
    return previous


@dataclasses.dataclass(frozen=True)
class LastAxisChoice:
    """How a last-axis map runs, as decided: what a layer records of its forward's inverse
    transform and its report reads (``str()`` is the report's text).

    Attributes
    ----------
    by_matmul : bool
        The DFT-block matmul; otherwise an FFT.
    why : str or None
        "fixed" (:func:`set_last_axis_transform`), "deterministic algorithms", "too small to
        time", "timed" (an "auto" choice, timings in ``seconds``); None where the matmul does
        not apply (not on CPU, not the last axis, fewer than :data:`MATMUL_MIN_RATIO` points
        per kept column).
    seconds : (float, float) or None
        The (matmul, FFT) seconds of a "timed" choice.
    """

    by_matmul: bool
    why: Optional[str] = None
    seconds: Optional[Tuple[float, float]] = None

    def __str__(self):
        name = "DFT-block matmul" if self.by_matmul else "FFT"
        if self.why == "timed":
            matmul, fft = self.seconds
            return f"{name} (timed for this shape: matmul {1e3 * matmul:.2f} ms, FFT {1e3 * fft:.2f} ms)"
        return name if self.why is None else f"{name} ({self.why})"


def _by_matmul(way, dim, length, kept, t, norm):
    """Whether the last-axis map ``way`` ("inverse", "rfft_adjoint", "irfft_adjoint") of ``kept``
    columns and ``length`` points, applied to ``t``, runs as the DFT-block matmul. Only on
    CPU, along the last axis, with ``kept <= length / 8``: no Nyquist column, and every kept
    column but the zero frequency has a conjugate partner."""
    if dim != -1:
        return False
    rows = t.numel() // max(1, t.shape[-1])
    return _decision(way, rows, length, kept, norm, t.dtype, t.device).by_matmul


def _decision(way, rows, length, kept, norm, dtype, device):
    """The :class:`LastAxisChoice` for the last-axis map ``way`` of ``rows`` rows; an "auto"
    choice not yet timed for this shape is timed here. Off a CPU (or where
    :func:`~.product_paths.force_device_choices` forces another device type), an FFT."""
    if choice_device_type(device) != "cpu" or length < MATMUL_MIN_RATIO * kept:
        return LastAxisChoice(False)
    transform = _setting["transform"]
    if transform == "auto" and torch.are_deterministic_algorithms_enabled():
        # a timed choice may differ between runs, and so would the float32 rounding
        return LastAxisChoice(False, "deterministic algorithms")
    if transform != "auto":
        return LastAxisChoice(transform == "matmul", "fixed")
    if rows * length < TIMED_MIN_POINTS:
        return LastAxisChoice(False, "too small to time")
    key = _timing_key(way, rows, length, kept, norm, dtype, device)
    if key not in _timings:
        _timings[key] = _time_both_ways(*key[:-1])
    by_matmul, by_fft = _timings[key]
    return LastAxisChoice(by_matmul < by_fft, "timed", (by_matmul, by_fft))


def _inverse_choice(z, dims, out_sizes, norm):
    """The :class:`LastAxisChoice` of the last-axis inverse of the block ``z``, made once per
    transform before it runs, for the shape it has there (``out_sizes`` along the other axes)."""
    if dims[-1] != -1:
        return LastAxisChoice(False)
    rows = z.numel() // max(1, math.prod(z.shape[d] for d in dims)) * math.prod(out_sizes[:-1])
    return _decision("inverse", rows, out_sizes[-1], z.shape[-1], norm, z.dtype, z.device)


def _timing_key(way, rows, length, kept, norm, dtype, device):
    # the thread count too: matmul and FFT gain differently from more threads
    return (way, min(rows, max(1, TIMED_POINTS // length)), length, kept, norm, dtype, device,
            torch.get_num_threads())


def _time_both_ways(way, rows, length, kept, norm, dtype, device, rounds=3):
    """Seconds of the fastest of ``rounds`` interleaved runs of ``way`` as a matmul and as an
    FFT, on random data of ``rows`` rows (after one untimed run of each)."""
    complex_dtype = torch.complex64 if dtype in (torch.float32, torch.complex64) else torch.complex128
    real_dtype = torch.float32 if complex_dtype == torch.complex64 else torch.float64
    # a generator of its own: timing must not move the global random stream (a run that
    # times at another step than its uninterrupted twin would draw other dropout masks)
    gen = torch.Generator(device).manual_seed(0)
    if way == "irfft_adjoint":
        data = torch.randn(rows, length, dtype=real_dtype, device=device, generator=gen)
        ways = (lambda: _irfft_adjoint_by_matmul(data, kept, norm), lambda: _irfft_adjoint_by_fft(data, -1, kept, norm))
    else:
        data = torch.randn(rows, kept, dtype=complex_dtype, device=device, generator=gen)
        if way == "inverse":
            ways = (lambda: _irfft_by_matmul(data, length, norm),
                    lambda: torch.fft.irfft(data, n=length, dim=-1, norm=norm))
        else:
            # owned, as the layer's backward calls it (halving the scratch data changes no timing)
            ways = (lambda: _rfft_adjoint_by_matmul(data, length, norm),
                    lambda: _rfft_adjoint_by_fft(data, -1, length, norm, owned=True))
    best = [float("inf"), float("inf")]
    for round_ in range(rounds + 1):
        for i, run in enumerate(ways):
            start = time.perf_counter()
            run()
            if round_:
                best[i] = min(best[i], time.perf_counter() - start)
    return tuple(best)


@functools.lru_cache(maxsize=64)
def _dft_block(length, kept, norm, inverse, dtype, device):
    """Real form of the kept columns of the DFT along one axis.

    ``inverse=False``: ``(length, 2 kept)`` matrix ``A`` with ``x @ A`` the (re, im) pairs of
    ``rfft(x, norm=norm)[..., :kept]``. ``inverse=True``: ``(2 kept, length)`` matrix ``S``
    with ``view_as_real(z).flatten(-2) @ S == irfft(z, n=length, norm=norm)`` for ``z`` of
    ``kept`` columns (each column but the zero frequency counted twice, for its conjugate
    partner; the zero frequency's imaginary part is ignored, as irfft does).
    """
    n = torch.arange(length, dtype=torch.float64)
    k = torch.arange(kept, dtype=torch.float64)
    angle = 2 * torch.pi * torch.outer(k, n) / length  # (kept, length)
    if inverse:
        weight = torch.full((kept, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        scale = rfft_scale(_ADJOINT_NORM[norm], length)  # irfft's scale is rfft's with the other norm
        block = torch.stack((weight * torch.cos(angle), -weight * torch.sin(angle)), dim=1) * scale
        return block.reshape(2 * kept, length).to(dtype=dtype, device=device)
    block = torch.stack((torch.cos(angle), -torch.sin(angle)), dim=1) * rfft_scale(norm, length)
    return block.reshape(2 * kept, length).t().contiguous().to(dtype=dtype, device=device)


def _rfft_columns(x, dim, kept, norm):
    """``rfft(x, dim=dim, norm=norm)`` narrowed to its first ``kept`` columns: an FFT on
    every device (on CPU the DFT-block matmul was the slower here, see the module notes)."""
    return torch.fft.rfft(x, dim=dim, norm=norm).narrow(dim, 0, kept)


# The DFT-block matmuls run with CPU autocast off: a transform (or a backward) called inside
# autocast would otherwise multiply in bfloat16, where the FFT it stands for stays float32.


def _rfft_adjoint_by_matmul(g, length, norm):
    real = torch.view_as_real(g).flatten(-2)
    with torch.autocast("cpu", enabled=False):
        return real @ _dft_block(length, g.shape[-1], norm, False, real.dtype, real.device).t()


def _rfft_adjoint_by_fft(g, dim, length, norm, owned):
    # dL/dx = Re(F^H R^T g): irfft sums the columns that have a conjugate partner
    # twice, so those are halved first (the DC and, for even n, Nyquist column once)
    twice = min(g.shape[dim], (length + 1) // 2) - 1
    if twice > 0:
        g = g if owned else g.clone()
        g.narrow(dim, 1, twice).mul_(0.5)
    return torch.fft.irfft(g, n=length, dim=dim, norm=_ADJOINT_NORM[norm])


def _rfft_columns_adjoint(g, dim, length, norm, owned=True):
    """Adjoint of :func:`_rfft_columns` (real, ``length`` points along ``dim``); overwrites
    ``g`` if ``owned``, else copies it where it needs to."""
    if _by_matmul("rfft_adjoint", dim, length, g.shape[dim], g, norm):
        return _rfft_adjoint_by_matmul(g, length, norm)
    return _rfft_adjoint_by_fft(g, dim, length, norm, owned)


def _irfft_by_matmul(z, length, norm):
    real = torch.view_as_real(z).flatten(-2)
    with torch.autocast("cpu", enabled=False):
        return real @ _dft_block(length, z.shape[-1], norm, True, real.dtype, real.device)


def _irfft_columns(z, dim, length, norm, by_matmul):
    """``irfft(z, n=length, dim=dim, norm=norm)``, as the DFT-block matmul if ``by_matmul``."""
    if by_matmul:
        return _irfft_by_matmul(z, length, norm)
    return torch.fft.irfft(z, n=length, dim=dim, norm=norm)


def _irfft_adjoint_by_matmul(grad, columns, norm):
    with torch.autocast("cpu", enabled=False):
        pairs = grad @ _dft_block(grad.shape[-1], columns, norm, True, grad.dtype, grad.device).t()
    return torch.view_as_complex(pairs.unflatten(-1, (columns, 2)))


def _irfft_adjoint_by_fft(grad, dim, columns, norm):
    n = grad.shape[dim]
    g = torch.fft.rfft(grad, dim=dim, norm=_ADJOINT_NORM[norm])
    # irfft(n) reads only the first n//2+1 columns: gradient zero past them
    g = g.narrow(dim, 0, min(columns, g.shape[dim]))
    # the adjoint of the complex-to-real transform counts the columns with a
    # conjugate partner twice (torch's own irfft backward does the same)
    twice = min(g.shape[dim] - 1, n - (n // 2 + 1))
    if twice > 0:
        g.narrow(dim, 1, twice).mul_(2)
    if g.shape[dim] < columns:  # the forward trimmed these columns away
        g = _gather_or_zero(g, dim, torch.arange(columns, device=g.device), columns)
    return g


def _irfft_columns_adjoint(grad, dim, columns, norm):
    """Adjoint of :func:`_irfft_columns` for an input of ``columns`` columns along ``dim``."""
    if _by_matmul("irfft_adjoint", dim, grad.shape[dim], columns, grad, norm):
        return _irfft_adjoint_by_matmul(grad, columns, norm)
    return _irfft_adjoint_by_fft(grad, dim, columns, norm)


def _analysis(x, dims, kept, axes, norm, scale=1.0):
    """rfft along the last axis, keep its first ``kept[-1]`` columns, then transform and
    gather the kept frequencies along each other axis; the block times ``scale``."""
    z = _rfft_columns(x, dims[-1], kept[-1], norm)
    for dim, modes in zip(dims[:-1], axes):
        z = torch.fft.fft(z, dim=dim, norm=norm).index_select(dim, modes.index)
    if scale != 1:
        # the gathered block is new: scaled in place. Along the last axis alone it is a view
        # of the whole rfft, which its scaled copy lets go.
        z = z.mul_(scale) if len(dims) > 1 else z * scale
    return z


def _synthesis(z, dims, out_sizes, axes, norm, by_matmul, scale=1.0):
    """Scatter and inverse-transform along each non-last axis, then irfft along the last
    (``irfft(n=...)`` zero-pads the missing columns itself; the DFT-block matmul if ``by_matmul``),
    of ``scale`` times ``z``: applied to the first scattered tensor, which is new anyway."""
    for dim, modes, length in zip(dims[:-1], axes, out_sizes[:-1]):
        z = torch.fft.ifft(modes.scatter(z, dim, length, scale), dim=dim, norm=norm)
        scale = 1.0
    if scale != 1:  # along the last axis alone: no new tensor before the irfft
        z = z * scale
    return _irfft_columns(z, dims[-1], out_sizes[-1], norm, by_matmul)


class _TruncatedRFFTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dims, kept, axes, norm, scale):
        ctx.meta = (x.shape, x.dtype, dims, axes, norm, scale)
        return _analysis(x, dims, kept, axes, norm, scale)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, dims, axes, norm, scale = ctx.meta
        adjoint = _ADJOINT_NORM[norm]
        z = grad
        for dim, modes in zip(dims[:-1], axes):
            # the scale on the first scattered tensor: new anyway
            z = torch.fft.ifft(modes.scatter(z, dim, shape[dim], scale), dim=dim, norm=adjoint)
            scale = 1.0
        if scale != 1:  # along the last axis alone
            z = z * scale
        # the FFT adjoint scales some columns in place: autograd's own gradient is not ours to change
        return (_rfft_columns_adjoint(z, dims[-1], shape[dims[-1]], norm, owned=z is not grad).to(dtype),
                None, None, None, None, None)


class _TruncatedIRFFTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, dims, out_sizes, axes, norm, by_matmul, scale):
        ctx.meta = (z.shape, dims, out_sizes, axes, norm, scale)
        return _synthesis(z, dims, out_sizes, axes, norm, by_matmul, scale)

    @staticmethod
    def backward(ctx, grad):
        z_shape, dims, out_sizes, axes, norm, scale = ctx.meta
        adjoint = _ADJOINT_NORM[norm]
        g = _irfft_columns_adjoint(grad, dims[-1], z_shape[dims[-1]], norm)
        for dim, modes in zip(dims[:-1], axes):
            g = modes.gather(torch.fft.fft(g, dim=dim, norm=adjoint), dim)
        # g is new (a gather, or a view of the last axis's new transform): scaled in place
        return g.mul_(scale) if scale != 1 else g, None, None, None, None, None, None


def truncated_rfftn(x, dims, kept, norm="backward", *, scale=1.0):
    """The kept block of ``torch.fft.rfftn(x, dim=dims, norm=norm)``, modes centred, times ``scale``.

    Parameters
    ----------
    x : torch.Tensor
        Real input.
    dims : sequence of int
        Transformed axes, negative indices, in increasing order (the last one is the
        real-to-complex axis).
    kept : sequence of int
        Modes kept per axis: along the last axis its first ``kept[-1]`` frequencies,
        along each other axis ``kept`` frequencies centred on zero, in fftshifted order.
    norm : {"backward", "forward", "ortho"}
    scale : float, default 1.0
        Multiplies the block (and the gradient on its way back), on tensors the transform
        makes anyway: no block-sized copy for it, except that of a last-axis-only block,
        which lets the whole rfft go. A power of two (the spectral layer's float16
        headroom) gives exactly the numbers of ``scale * truncated_rfftn(x, ...)``.

    Returns
    -------
    torch.Tensor
        ``fftshift(rfftn(x), dims[:-1])`` restricted to the centred block: the same
        numbers up to floating-point rounding, computed on the kept columns only.
        Nothing is saved for backward.
    """
    dims, kept = tuple(dims), tuple(kept)
    sizes = [x.shape[d] for d in dims]
    axes = _axes(sizes, kept, x.device)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return _analysis(x, dims, kept, axes, norm, scale)
    return _TruncatedRFFTN.apply(x, dims, kept, axes, norm, scale)


def truncated_irfftn(z, dims, fft_sizes, out_sizes, norm="backward", *, scale=1.0, return_choice=False):
    """``irfftn`` of a spectrum that is zero outside the centred block ``scale * z``.

    Parameters
    ----------
    z : torch.Tensor
        The kept block, in the order :func:`truncated_rfftn` returns.
    dims : sequence of int
        Transformed axes, negative indices, in increasing order.
    fft_sizes : sequence of int
        Sizes of the full spectrum the block was taken from (the input's grid; the last
        one is the real signal length), which fix where each mode sits.
    out_sizes : sequence of int
        Output grid, as ``irfftn(..., s=out_sizes)``: a larger grid zero-pads, a smaller
        one trims each axis at its end, exactly like upstream's layer.
    norm : {"backward", "forward", "ortho"}
    scale : float, default 1.0
        Multiplies the block (and the gradient on its way back), on tensors the transform
        makes anyway: no block-sized copy for it, except along the last axis alone. A
        power of two gives exactly the numbers of ``truncated_irfftn(scale * z, ...)``.
    return_choice : bool, default False
        Also return how the last axis's inverse ran.

    Returns
    -------
    torch.Tensor
        The real output. Nothing is saved for backward.
    LastAxisChoice
        Only with ``return_choice``: the last axis's inverse as it ran (FFT or DFT-block
        matmul, and why), decided once for this call.
    """
    dims, out_sizes = tuple(dims), tuple(out_sizes)
    kept = [z.shape[d] for d in dims]
    axes = _axes(list(fft_sizes), kept, z.device)
    choice = _inverse_choice(z, dims, out_sizes, norm)
    if not torch.is_grad_enabled() or not z.requires_grad:
        y = _synthesis(z, dims, out_sizes, axes, norm, choice.by_matmul, scale)
    else:
        y = _TruncatedIRFFTN.apply(z, dims, out_sizes, axes, norm, choice.by_matmul, scale)
    return (y, choice) if return_choice else y
