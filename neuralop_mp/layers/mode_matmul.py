"""The dense spectral product as one real batched matmul over Fourier modes.

For a dense (non-separable) weight the Fourier-domain product is, for every kept
mode ``k``, a complex matrix product ``Y_k = X_k W_k`` with ``X_k`` of shape
``(batch, in)`` and ``W_k`` of shape ``(in, out)``. Evaluated with ``torch.einsum``
on complex tensors this runs, on CPU, as one small complex matmul per mode in a
Python-level loop inside torch (thousands of kernel calls per layer), and the
real-form pairwise product of :mod:`.complex_half` spends most of its time
permuting operands. Here the product is written once as a real matmul batched
over modes::

    [Xr | Xi] @ [[Wr, Wi], [-Wi, Wr]] = [Xr Wr - Xi Wi | Xr Wi + Xi Wr] = [Yr | Yi]

so the subtraction of the complex product happens inside the matmul's
accumulator. The backward pass uses the same block matrix transposed (it is the
block matrix of ``W^H``) for the input gradient, and one more batched matmul for
the weight gradient ``conj(X)^T G``.

In a 16-bit mode the operands are rounded to the 16-bit type (and so are the
result and the incoming gradient), then multiplied either in that type, where the
hardware has 16-bit matrix units, or in float32: a product of two 16-bit numbers
is exact in float32, so both give the numbers of a 16-bit matmul with float32
accumulation. Only the 16-bit spectrum is saved for backward; the block matrix is
rebuilt from the weight parameter, which is alive anyway, instead of being kept.

Every mode's product is independent, so the modes are processed in chunks
(:data:`MODE_CHUNK_BYTES` on a CPU; on a GPU, where each chunk is a dozen kernel
launches, one chunk up to :data:`~neuralop_mp.chunk_budget.DEVICE_CHUNK_BYTES` and chunks
of it beyond): the block matrix, the weight's complex64 widening and the
float32 weight gradient exist one chunk at a time, and the weight gradient is written
chunk by chunk straight into a tensor of the weight's dtype. The numbers are those
of the product over all modes at once.

With update in backward, an optimizer that reads gradients a slice at a time may take
the weight gradient as a :class:`~.lazy_weight_gradient.LazyWeightGradient` instead, and
step the weight during this backward: the whole weight gradient is then never built.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import torch

from ..chunk_budget import DEVICE_CHUNK_BYTES
from .lazy_weight_gradient import LazyWeightGradient, consumer_for, record_use
from .product_paths import choice_device_type

# Byte budget of each full-weight-shaped temporary of the product (the weight as a
# float32 (re, im) matrix, its complex64 widening, the float32 weight gradient): the
# modes are processed in chunks of at most this many bytes of such a temporary, so
# the product never holds a float32 or complex64 copy of a whole large weight
# (277 MB each for a 128-channel, 64x64-mode weight).
MODE_CHUNK_BYTES = 8 * 2**20
# Weights whose temporaries take at most this many bytes are one chunk. Timed on one
# CPU thread (2026-12-03): an FNO step with 64 channels and 32x17 modes (17 MB) took
# 5-15% longer in 8 MB chunks than in one; the product's forward + backward with 128
# channels and 64x33 modes took 3.3 s in one chunk, 1.1-1.4 s in 8 MB chunks.
SINGLE_CHUNK_BYTES = 32 * 2**20

# bytes one mode's weight takes in the widest temporary: a complex64 entry, or a
# float32 (re, im) pair
_BYTES_PER_WEIGHT_ENTRY = 8


def _modes_per_chunk(n_modes, n_in, n_out, chunk_bytes=None, device_type="cpu"):
    """Modes per chunk: as many as keep one temporary within ``chunk_bytes`` (at least
    one); by default, on a CPU all of them up to :data:`SINGLE_CHUNK_BYTES`, else
    :data:`MODE_CHUNK_BYTES` worth; elsewhere chunks of :data:`DEVICE_CHUNK_BYTES`."""
    per_mode = n_in * n_out * _BYTES_PER_WEIGHT_ENTRY
    if chunk_bytes is None:
        single, chunk_bytes = ((SINGLE_CHUNK_BYTES, MODE_CHUNK_BYTES) if device_type == "cpu"
                               else (DEVICE_CHUNK_BYTES, DEVICE_CHUNK_BYTES))
        if n_modes * per_mode <= single:
            return n_modes
    return max(1, min(n_modes, chunk_bytes // per_mode))


def _mode_ranges(n_modes, per_chunk):
    return [(start, min(start + per_chunk, n_modes)) for start in range(0, n_modes, per_chunk)]


def _weight_chunk(weight_2d, start, stop, n_in, half, compute_dtype):
    """Modes ``start:stop`` of the ``(in out, K)`` weight as a ``(stop - start, in, 2 out)``
    real matrix: each complex entry an interleaved (re, im) pair."""
    chunk = weight_2d[:, start:stop]
    if half is not None and torch.is_grad_enabled():
        # a backward that builds a graph (second derivatives): the int32 reinterpretation
        # below would cut autograd's graph, leaving the input gradient constant in the weight
        real = torch.view_as_real(chunk.t().contiguous())
        return real.to(half).to(compute_dtype).reshape(stop - start, n_in, -1)
    if half is None:
        if chunk.dtype == torch.complex32:
            chunk = chunk.to(torch.complex64)
        # the modes axis is innermost in the parameter and outermost in the matmul: a
        # transpose of the complex matrix as a whole (torch's tiled 2-D transpose) is
        # several times faster than permuting real planes
        real = torch.view_as_real(chunk.t().contiguous())
        return real.to(compute_dtype).reshape(stop - start, n_in, -1)
    # Rounded before the transpose, which then moves each (re, im) pair of 16-bit values as
    # one 4-byte word: half the bytes of transposing complex64, and one pass fewer than
    # transposing, rounding and widening (the weight is the largest operand at small batch).
    # A complex32 weight is rounded from its float16 pairs directly: the same values as
    # through complex64, since every float16 is exact in float32.
    words = torch.view_as_real(chunk).to(half).contiguous().view(torch.int32).squeeze(-1)
    # flattened before the reinterpretation: with one weight row (1 x 1 channels) torch calls the
    # (K, 1) transpose contiguous with a last stride of K, which a dtype view refuses
    return words.t().contiguous().reshape(-1).view(half).to(compute_dtype).reshape(stop - start, n_in, -1)


def _stacked_chunk(x_flat, start, stop, compute_dtype):
    """Modes ``start:stop`` of the ``(b, c, K, 2)`` real form as ``(stop - start, 2 b, c)``:
    real parts, then imaginary parts, on the batch axis."""
    b, c = x_flat.shape[:2]
    return x_flat[:, :, start:stop].permute(2, 3, 0, 1).reshape(stop - start, 2 * b, c).to(compute_dtype)


def _complex_from_planes(real, imag, out, start, stop, dtype):
    """Write ``(k, b, c)`` real and imaginary planes of modes ``start:stop`` into the
    ``(b, c, K, 2)`` float32 ``out``, each part rounded through ``dtype`` once."""
    out[:, :, start:stop, 0] = real.to(dtype).permute(1, 2, 0)
    out[:, :, start:stop, 1] = imag.to(dtype).permute(1, 2, 0)


class _DenseModeProduct(torch.autograd.Function):
    """Per mode ``Y = X W``, with ``M`` = W as a real ``(in, 2 out)`` matrix of (re, im) pairs
    and ``X' = [Xr; Xi]`` (real and imaginary parts stacked on the batch axis):
    ``P = X' M`` holds ``Xr Wr, Xr Wi, Xi Wr, Xi Wi``, so ``Yr = Xr Wr - Xi Wi`` and
    ``Yi = Xr Wi + Xi Wr`` cost one matmul. With ``H = [G; G']`` (``G`` the incoming
    gradient as (re, im) pairs, ``G'`` the pairs ``(Gi, -Gr)``): ``H M^T`` is
    ``G W^H`` (real parts, then imaginary parts) and ``X'^T H`` is ``conj(X)^T G``.
    Each is evaluated one chunk of modes at a time."""

    @staticmethod
    def forward(ctx, x_kept, saved, weight, half, compute_dtype, chunk_bytes):
        batch, n_in, *modes = x_kept.shape
        n_out = weight.shape[1]
        # the 16-bit (or, in full precision, float32) pairs of the spectrum are all that is
        # kept; the weight operands are parameters (views), alive anyway
        ctx.save_for_backward(saved, weight)
        ctx.config = (half, compute_dtype, chunk_bytes)
        ctx.use = record_use(weight, ctx.needs_input_grad[2])
        x_flat = saved.reshape(batch, n_in, -1, 2)
        # a view of a contiguous weight; a weight sliced to fewer modes is copied here
        weight_2d = weight.reshape(n_in * n_out, -1)
        n_modes = weight_2d.shape[1]
        out = None
        per_chunk = _modes_per_chunk(n_modes, n_in, n_out, chunk_bytes, choice_device_type(x_kept.device))
        for start, stop in _mode_ranges(n_modes, per_chunk):
            p = torch.bmm(_stacked_chunk(x_flat, start, stop, compute_dtype),
                          _weight_chunk(weight_2d, start, stop, n_in, half, compute_dtype))
            p = p.float().reshape(stop - start, 2 * batch, n_out, 2)
            if out is None:  # allocated once the first chunk's weight matrix is freed
                out = torch.empty(batch, n_out, n_modes, 2, dtype=torch.float32, device=x_kept.device)
            _complex_from_planes(p[:, :batch, :, 0] - p[:, batch:, :, 1], p[:, :batch, :, 1] + p[:, batch:, :, 0],
                                 out, start, stop, half or torch.float32)
        return torch.view_as_complex(out).reshape(batch, n_out, *modes)

    @staticmethod
    def backward(ctx, grad):
        saved, weight = ctx.saved_tensors
        half, compute_dtype, chunk_bytes = ctx.config
        batch, n_in, *modes = saved.shape[:-1]
        n_out = weight.shape[1]
        x_flat = saved.reshape(batch, n_in, -1, 2)
        weight_2d = weight.reshape(n_in * n_out, -1)
        n_modes = weight_2d.shape[1]
        g = torch.view_as_real(grad.contiguous())
        if half is not None:
            g = g.to(half)
        g = g.reshape(batch, n_out, n_modes, 2)
        grad_x = grad_w = None
        consumer = consumer_for(ctx.use) if ctx.needs_input_grad[2] else None
        if torch.is_grad_enabled():  # a backward that builds a graph: the lazy gradient carries none
            consumer = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty(batch, n_in, n_modes, 2, dtype=torch.float32, device=grad.device)
        if ctx.needs_input_grad[2] and consumer is None:
            # written chunk by chunk in the weight's dtype: no whole-weight float32 or
            # complex64 gradient exists
            grad_w = torch.empty(n_in * n_out, n_modes, dtype=weight.dtype, device=grad.device)
        per_chunk = _modes_per_chunk(n_modes, n_in, n_out, chunk_bytes, choice_device_type(grad.device))
        mode_ranges = _mode_ranges(n_modes, per_chunk)
        for start, stop in mode_ranges if grad_x is not None or grad_w is not None else []:
            gc = g[:, :, start:stop].to(compute_dtype).permute(2, 0, 1, 3)  # (k, b, out, 2)
            h = torch.cat((gc, torch.stack((gc[..., 1], -gc[..., 0]), dim=-1)), dim=1)
            h = h.reshape(stop - start, 2 * batch, 2 * n_out)
            if grad_x is not None:
                m = _weight_chunk(weight_2d, start, stop, n_in, half, compute_dtype)
                q = torch.bmm(h, m.transpose(1, 2)).float()
                _complex_from_planes(q[:, :batch], q[:, batch:], grad_x, start, stop, torch.float32)
            if grad_w is not None:
                r = torch.bmm(_stacked_chunk(x_flat, start, stop, compute_dtype).transpose(1, 2), h).float()
                grad_w[:, start:stop] = torch.view_as_complex(r.reshape(stop - start, n_in * n_out, 2)).t()
        if consumer is not None:  # it queues the weight's step for the end of backward
            consumer(LazyWeightGradient(x_flat, g, tuple(modes), weight.dtype, compute_dtype))
        if grad_x is not None:
            grad_x = torch.view_as_complex(grad_x).reshape(batch, n_in, *modes)
        if grad_w is not None:
            grad_w = grad_w.reshape(n_in, n_out, *modes)
        # ``saved`` gets none: its share of the input's gradient is in grad_x
        return grad_x, None, grad_w, None, None, None


def dense_mode_product(x_kept, weight, half=None, compute_dtype=torch.float32, chunk_bytes=None):
    """``einsum("bi...,io...->bo...", x_kept, weight)`` as one real matmul batched over modes.

    Parameters
    ----------
    x_kept : torch.Tensor
        Complex kept spectrum, ``(batch, in, *modes)``.
    weight : torch.Tensor
        Complex64 or complex32 dense weight ``(in, out, *modes)``, typically a view of
        the parameter: it is what is saved for backward, not a converted copy.
    half : torch.dtype, optional
        16-bit type the spectrum, the weight, the result and the incoming gradient
        are rounded to; None computes in full float32 precision.
    compute_dtype : torch.dtype, default float32
        Dtype of the matmuls: ``half`` where the hardware multiplies it natively,
        else float32 (the same numbers: products of 16-bit values are exact in fp32).
    chunk_bytes : int, optional
        Byte budget of each full-weight-shaped temporary (the weight as a float32 or
        complex64 matrix, the float32 weight gradient): modes are processed in chunks
        that keep each within it. By default weights whose temporaries fit in
        :data:`SINGLE_CHUNK_BYTES` are one chunk, larger ones chunks of
        :data:`MODE_CHUNK_BYTES` (on a GPU: :data:`DEVICE_CHUNK_BYTES` for both). The
        result does not depend on it.

    Returns
    -------
    torch.Tensor
        Complex64 ``(batch, out, *modes)``. Gradients: complex64 for the spectrum,
        the weight's dtype for the weight.
    """
    if x_kept.shape[1] != weight.shape[0] or x_kept.shape[2:] != weight.shape[2:]:
        raise ValueError(
            f"Shapes do not match: spectrum {tuple(x_kept.shape)}, weight {tuple(weight.shape)}; "
            "expected (batch, in, *modes) and (in, out, *modes)."
        )
    if chunk_bytes is not None and (isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int)):
        raise TypeError(f"chunk_bytes must be a positive int (bytes), got {chunk_bytes!r}.")
    if chunk_bytes is not None and chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be a positive int (bytes), got {chunk_bytes}.")
    # The (re, im) pairs the backward keeps, rounded here rather than inside the Function: a
    # backward that builds a graph then differentiates the weight gradient conj(X)^T G through
    # them back to ``x_kept`` (the cast keeps no tensor alive for its own backward).
    real = torch.view_as_real(x_kept)
    saved = (real.to(half) if half is not None else real).contiguous()
    return _DenseModeProduct.apply(x_kept, saved, weight, half, compute_dtype, chunk_bytes)
