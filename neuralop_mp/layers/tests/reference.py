"""Independent float64 reference of a spectral convolution, and the half-precision error bound.

The reference indexes the spectrum by signed frequency with explicit index arrays
(no fftshift), so it checks the layer's shift/slice bookkeeping instead of
repeating it.
"""
import contextlib

import pytest
import torch

# "cuda" runs where a GPU is present and skips cleanly elsewhere (CI has none)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]

U = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: 2.0**-24}


def _signed_index(n_kept, size):
    """Spectrum positions of the signed frequencies -n_kept//2 .. n_kept - n_kept//2 - 1."""
    return (torch.arange(n_kept) - n_kept // 2) % size


def kept_index(spatial, kept, complex_data):
    """Index arrays (broadcastable, ``np.ix_``-style) of the kept modes in an unshifted spectrum."""
    order = len(spatial)
    idx = []
    for axis, (n, m) in enumerate(zip(spatial, kept)):
        last = axis == order - 1
        if (last and not complex_data) or order == 1:
            ix = torch.arange(m)
        else:
            ix = _signed_index(m, n)
        shape = [1] * order
        shape[axis] = m
        idx.append(ix.reshape(shape))
    return tuple(idx)


def reference_forward(x, weight, complex_data=False, separable=False, bias=None, out_spatial=None):
    """float64/complex128 spectral convolution with a dense weight ``(in, [out], *kept)``."""
    x = x.to(torch.complex128 if complex_data else torch.float64)
    weight = weight.to(torch.complex128)
    spatial = list(x.shape[2:])
    order = len(spatial)
    dims = list(range(-order, 0))
    kept = list(weight.shape[1 if separable else 2 :])
    fft = torch.fft.fftn if complex_data else torch.fft.rfftn
    spec = fft(x, dim=dims, norm="forward")
    idx = kept_index(spatial, kept, complex_data)
    x_kept = spec[(slice(None), slice(None)) + idx]
    letters = "xyz"[:order]
    eq = f"bi{letters},i{letters}->bi{letters}" if separable else f"bi{letters},io{letters}->bo{letters}"
    y_kept = torch.einsum(eq, x_kept, weight)
    out = torch.zeros(x.shape[0], y_kept.shape[1], *spec.shape[2:], dtype=torch.complex128)
    out[(slice(None), slice(None)) + idx] = y_kept
    s = out_spatial or spatial
    inverse = torch.fft.ifftn if complex_data else torch.fft.irfftn
    y = inverse(out, s=s, dim=dims, norm="forward")
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y, x_kept, weight, eq


def gamma(k, u):
    """Higham's gamma_k = k u / (1 - k u): bound of k successive relative roundings."""
    return k * u / (1 - k * u)


def half_relative_bound(x_kept, operands, eq, n_roundings, u, contraction_length):
    """Bound on the layer's relative L2 error when the Fourier product runs in a 16-bit type.

    Derivation (first order, deterministic; Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., section 3.1):

    - every term ``t`` of the full expansion of the einsum goes through
      ``k = n_roundings`` roundings to the 16-bit type (each operand once, each
      pairwise intermediate once, the result once), each of relative size ``<= u``;
      with the complex products done on (real, imag) parts, Cauchy-Schwarz gives
      ``|Re t_r| + |Im t_i| <= |x||w|`` so per real component the error is at most
      ``gamma_k * A`` with ``A = sum |t|`` (the contraction of absolute values), and
      ``|E| <= sqrt(2) gamma_k A`` per complex entry;
    - the fp32 accumulation over the contraction length ``n`` adds
      ``gamma_n(2^-24) * A``;
    - the inverse real FFT is linear, and by Parseval the relative L2 error in space
      is at most ``sqrt(2)`` times the relative error of the kept half-spectrum
      (the interior columns of an rfft count twice);
    - the fp32 FFTs add ~``log2(N) 2^-24``: covered by ``1e-5``.

    ``rho = ||A|| / ||Y||`` is computed from the actual data in float64; for
    incoherent random data it grows like ``sqrt(n)``. The bound is
    ``2 (gamma_k(u) + gamma_n(2^-24)) rho + 1e-5`` (float32 sums: on CUDA, inside
    :func:`float32_accumulation`).
    """
    exact = torch.einsum(eq, x_kept, *operands)
    absolute = torch.einsum(eq, x_kept.abs(), *[w.abs().to(torch.float64) for w in operands])
    rho = (absolute.norm() / exact.norm()).item()
    return 2 * (gamma(n_roundings, u) + gamma(contraction_length, U[torch.float32])) * rho + 1e-5


def half_fft_relative_term(x, weight, x_kept, y_kept, u, complex_data=False, norm="forward"):
    """Extra relative L2 error of a layer whose FFTs run in fp16 (cuFFT "half"), first order.

    - The input is rounded to fp16 (``u``) and transformed by a radix-2 FFT with
      fp16 arithmetic and twiddles: relative L2 error over the whole spectrum at most
      ``log2(N) eta`` with ``eta = u + gamma_4(u) (sqrt(2) + u)`` (Higham, 2nd ed.,
      Theorem 24.2), and the spectrum is rounded once more on output.
    - Kept modes carry at most that whole-spectrum error, ``eps ||X_full||``; each mode's
      weight matrix multiplies it by at most its largest singular value, so the
      product's error is ``<= max_k sigma(W_k) eps ||X_full||``, relative to
      ``||Y_kept||`` (both from the float64 data, ``X_full`` with ``y_kept``'s ``norm``: the
      ratio is the same for every norm only when both sides have it).
    - The inverse FFT in fp16 adds ``log2(N) eta + 2u`` relative to its input, and the
      half-spectrum-to-space step counts at most ``sqrt(2)`` (as in
      :func:`half_relative_bound`).
    """
    dims = list(range(2, x.ndim))
    n = 1
    for d in dims:
        n *= x.shape[d]
    log_n = torch.tensor(float(n)).log2().item()
    eta = u + gamma(4, u) * (2**0.5 + u)
    eps = u + log_n * eta + u
    spectrum = torch.fft.fftn(x.to(torch.complex128), dim=dims, norm=norm)
    per_mode = weight.to(torch.complex128).movedim((0, 1), (-2, -1))  # (*kept, in, out)
    sigma = torch.linalg.matrix_norm(per_mode, ord=2).max().item()
    amplification = sigma * spectrum.norm().item() / y_kept.norm().item()
    return 2**0.5 * (amplification * eps + log_n * eta + 2 * u)


@contextlib.contextmanager
def float32_accumulation():
    """Matmuls sum in float32 inside the block, as the bounds here assume.

    Under torch's defaults cuBLAS may add the partial sums of a split 16-bit matmul in
    the 16-bit type (``allow_{fp16,bf16}_reduced_precision_reduction``), an extra
    rounding per split that the bounds do not model; the CUDA checks switch it off.
    """
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction
    matmul.allow_fp16_reduced_precision_reduction = matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction = saved


def rel_err(y, ref):
    return ((y.to(ref.dtype) - ref).norm() / ref.norm()).item()


def finite(t):
    return bool(torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all())


def with_and_without_tiles(model, x, device):
    """``{None: run, "default": run}``: a bfloat16-autocast forward and backward of ``model`` on
    ``x`` without pointwise tiles and with the default ones, each run ``(bytes saved for
    backward, parameters excluded; output; parameter gradients)``."""
    from neuralop_mp.memory import SavedTensorBytes
    from neuralop_mp.models.pointwise_tiles import set_pointwise_tiles

    runs = {}
    for tiles in (None, "default"):
        set_pointwise_tiles(model, None) if tiles is None else set_pointwise_tiles(model)
        model.zero_grad()
        with SavedTensorBytes(exclude=[*model.parameters()]) as meter:
            with torch.autocast(device, dtype=torch.bfloat16):
                y = model(x)
        y.float().square().mean().backward()
        runs[tiles] = (meter.bytes, y.detach(), [p.grad.clone() for p in model.parameters()])
    return runs
