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

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import torch



def _modes_first(z):
    """Complex ``(p, q, *modes)`` -> contiguous ``(K, p, q)``: one blocked 2-D transpose.

    The parameter's modes axis is innermost; a matmul batched over modes needs it
    outermost. Transposing the complex matrix ``(p q, K)`` as a whole uses torch's
    tiled 2-D transpose, several times faster than permuting real planes.
    """
    p, q = z.shape[:2]
    return z.reshape(p * q, -1).t().contiguous().reshape(-1, p, q)


def _weight_matrix(weight, half, compute_dtype):
    """``(K, in, 2 out)`` real matrix: each complex weight entry as an interleaved (re, im) pair."""
    weight = weight.to(torch.complex64) if weight.dtype == torch.complex32 else weight
    n_in, n_out = weight.shape[:2]
    if half is None:
        return torch.view_as_real(_modes_first(weight)).to(compute_dtype).reshape(-1, n_in, 2 * n_out)
    # Rounded before the transpose, which then moves each (re, im) pair of 16-bit values as
    # one 4-byte word: half the bytes of transposing complex64, and one pass fewer than
    # transposing, rounding and widening (the weight is the largest operand at small batch).
    pairs = torch.view_as_real(weight).to(half).contiguous().view(torch.int32)
    words = pairs.reshape(n_in * n_out, -1).t().contiguous()
    return words.view(half).to(compute_dtype).reshape(-1, n_in, 2 * n_out)


def _stack_pairs(x_real, compute_dtype):
    """``(b, c, *modes, 2)`` real form -> ``(K, 2 b, c)``: real parts, then imaginary parts."""
    b, c = x_real.shape[:2]
    return x_real.reshape(b, c, -1, 2).permute(2, 3, 0, 1).reshape(-1, 2 * b, c).to(compute_dtype)


def _to_complex(real, imag, shape, dtype):
    """``(K, b, c)`` planes -> complex64 ``(b, c, *modes)``, each part rounded through ``dtype`` once."""
    pairs = torch.stack((real, imag), dim=-1).to(dtype).permute(1, 2, 0, 3).float().contiguous()
    return torch.view_as_complex(pairs).reshape(shape)


class _DenseModeProduct(torch.autograd.Function):
    """Per mode ``Y = X W``, with ``M`` = W as a real ``(in, 2 out)`` matrix of (re, im) pairs
    and ``X' = [Xr; Xi]`` (real and imaginary parts stacked on the batch axis):
    ``P = X' M`` holds ``Xr Wr, Xr Wi, Xi Wr, Xi Wi``, so ``Yr = Xr Wr - Xi Wi`` and
    ``Yi = Xr Wi + Xi Wr`` cost one matmul. With ``H = [G; G']`` (``G`` the incoming
    gradient as (re, im) pairs, ``G'`` the pairs ``(Gi, -Gr)``): ``H M^T`` is
    ``G W^H`` (real parts, then imaginary parts) and ``X'^T H`` is ``conj(X)^T G``."""

    @staticmethod
    def forward(ctx, x_kept, weight, half, compute_dtype):
        batch, n_in, *modes = x_kept.shape
        real = torch.view_as_real(x_kept)
        # the 16-bit (or, in full precision, complex64) spectrum is all that is kept;
        # the weight operands are parameters (views), alive anyway
        saved = real.to(half).contiguous() if half is not None else real.contiguous()
        ctx.save_for_backward(saved, weight)
        ctx.config = (half, compute_dtype)
        n_out = weight.shape[1]
        p = torch.bmm(_stack_pairs(saved, compute_dtype), _weight_matrix(weight, half, compute_dtype))
        p = p.float().reshape(-1, 2 * batch, n_out, 2)
        y_real = p[:, :batch, :, 0] - p[:, batch:, :, 1]
        y_imag = p[:, :batch, :, 1] + p[:, batch:, :, 0]
        return _to_complex(y_real, y_imag, (batch, n_out, *modes), half or torch.float32)

    @staticmethod
    def backward(ctx, grad):
        saved, weight = ctx.saved_tensors
        half, compute_dtype = ctx.config
        batch, n_in, *modes = saved.shape[:-1]
        n_out = weight.shape[1]
        g = torch.view_as_real(grad.contiguous())
        if half is not None:
            g = g.to(half)
        g = g.to(compute_dtype).reshape(batch, n_out, -1, 2).permute(2, 0, 1, 3)  # (K, b, out, 2)
        h = torch.cat((g, torch.stack((g[..., 1], -g[..., 0]), dim=-1)), dim=1).reshape(-1, 2 * batch, 2 * n_out)
        grad_x = None
        if ctx.needs_input_grad[0]:
            q = torch.bmm(h, _weight_matrix(weight, half, compute_dtype).transpose(1, 2)).float()
            grad_x = _to_complex(q[:, :batch], q[:, batch:], (batch, n_in, *modes), torch.float32)
        grad_w = None
        if ctx.needs_input_grad[1]:
            r = torch.bmm(_stack_pairs(saved, compute_dtype).transpose(1, 2), h).float()  # (K, in, 2 out)
            grad_w = torch.view_as_complex(r.reshape(-1, n_in * n_out, 2))
            grad_w = grad_w.t().contiguous().reshape(n_in, n_out, *modes).to(weight.dtype)
        return grad_x, grad_w, None, None


def dense_mode_product(x_kept, weight, half=None, compute_dtype=torch.float32):
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
    return _DenseModeProduct.apply(x_kept, weight, half, compute_dtype)
