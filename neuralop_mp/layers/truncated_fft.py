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

References
----------
.. [1] Li, Z. et al. "Fourier Neural Operator for Parametric Partial Differential
   Equations", ICLR 2021 (the truncated Fourier layer).
"""
import functools

import torch

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

    def scatter(self, z, dim, length):
        """``z`` placed at these frequencies along ``dim`` of a zero tensor of ``length``;
        frequencies at or past ``length`` are dropped (the trimming ``ifft(n=length)`` does)."""
        index = self.index
        if max(self.freqs) >= length:
            inside = [j for j, f in enumerate(self.freqs) if f < length]
            z = z.index_select(dim, torch.tensor(inside, device=z.device, dtype=torch.long))
            index = torch.tensor([self.freqs[j] for j in inside], device=z.device, dtype=torch.long)
        shape = list(z.shape)
        shape[dim] = length
        return z.new_zeros(shape).index_copy_(dim, index, z)

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


def _analysis(x, dims, kept, axes, norm):
    """rfft along the last axis, keep its first ``kept[-1]`` columns, then transform and
    gather the kept frequencies along each other axis."""
    z = torch.fft.rfft(x, dim=dims[-1], norm=norm).narrow(dims[-1], 0, kept[-1])
    for dim, modes in zip(dims[:-1], axes):
        z = torch.fft.fft(z, dim=dim, norm=norm).index_select(dim, modes.index)
    return z


def _synthesis(z, dims, out_sizes, axes, norm):
    """Scatter and inverse-transform along each non-last axis, then irfft along the last
    (``irfft(n=...)`` zero-pads the missing columns itself)."""
    for dim, modes, length in zip(dims[:-1], axes, out_sizes[:-1]):
        z = torch.fft.ifft(modes.scatter(z, dim, length), dim=dim, norm=norm)
    return torch.fft.irfft(z, n=out_sizes[-1], dim=dims[-1], norm=norm)


class _TruncatedRFFTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dims, kept, axes, norm):
        ctx.meta = (x.shape, x.dtype, dims, axes, norm)
        return _analysis(x, dims, kept, axes, norm)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, dims, axes, norm = ctx.meta
        adjoint = _ADJOINT_NORM[norm]
        z = grad
        for dim, modes in zip(dims[:-1], axes):
            z = torch.fft.ifft(modes.scatter(z, dim, shape[dim]), dim=dim, norm=adjoint)
        # dL/dx = Re(F^H R^T g): irfft sums the columns that have a conjugate partner
        # twice, so those are halved first (the DC and, for even n, Nyquist column once)
        n = shape[dims[-1]]
        twice = min(z.shape[dims[-1]], (n + 1) // 2) - 1
        z = z.clone() if z is grad else z
        if twice > 0:
            z.narrow(dims[-1], 1, twice).mul_(0.5)
        return torch.fft.irfft(z, n=n, dim=dims[-1], norm=adjoint).to(dtype), None, None, None, None


class _TruncatedIRFFTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, dims, out_sizes, axes, norm):
        ctx.meta = (z.shape, dims, out_sizes, axes, norm)
        return _synthesis(z, dims, out_sizes, axes, norm)

    @staticmethod
    def backward(ctx, grad):
        z_shape, dims, out_sizes, axes, norm = ctx.meta
        adjoint = _ADJOINT_NORM[norm]
        n = out_sizes[-1]
        columns = z_shape[dims[-1]]
        g = torch.fft.rfft(grad, dim=dims[-1], norm=adjoint)
        # irfft(n) reads only the first n//2+1 columns: gradient zero past them
        g = g.narrow(dims[-1], 0, min(columns, g.shape[dims[-1]]))
        # the adjoint of the complex-to-real transform counts the columns with a
        # conjugate partner twice (torch's own irfft backward does the same)
        twice = min(g.shape[dims[-1]] - 1, n - (n // 2 + 1))
        if twice > 0:
            g.narrow(dims[-1], 1, twice).mul_(2)
        if g.shape[dims[-1]] < columns:  # the forward trimmed these columns away
            g = _gather_or_zero(g, dims[-1], torch.arange(columns, device=g.device), columns)
        for dim, modes in zip(dims[:-1], axes):
            g = modes.gather(torch.fft.fft(g, dim=dim, norm=adjoint), dim)
        return g, None, None, None, None


def truncated_rfftn(x, dims, kept, norm="backward"):
    """The kept block of ``torch.fft.rfftn(x, dim=dims, norm=norm)``, modes centred.

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
        return _analysis(x, dims, kept, axes, norm)
    return _TruncatedRFFTN.apply(x, dims, kept, axes, norm)


def truncated_irfftn(z, dims, fft_sizes, out_sizes, norm="backward"):
    """``irfftn`` of a spectrum that is zero outside the centred block ``z``.

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

    Returns
    -------
    torch.Tensor
        The real output. Nothing is saved for backward.
    """
    dims, out_sizes = tuple(dims), tuple(out_sizes)
    kept = [z.shape[d] for d in dims]
    axes = _axes(list(fft_sizes), kept, z.device)
    if not torch.is_grad_enabled() or not z.requires_grad:
        return _synthesis(z, dims, out_sizes, axes, norm)
    return _TruncatedIRFFTN.apply(z, dims, out_sizes, axes, norm)
