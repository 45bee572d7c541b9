"""A CPU stand-in for cuFFT's float16 transforms: the GPU's float16-FFT path, walked on a CPU.

Our spectral layer runs "half" with float16 through float16 FFTs only where cuFFT computes
them (CUDA, power-of-2 sizes: ``MixedPrecisionSpectralConv._fft_in_half``), and torch's CPU
FFTs take no 16-bit input. Within :func:`emulate_float16_cufft` a CPU run takes that path as
a GPU does (``last_product_path["fft"] == "float16 (cuFFT)"``): ``torch.fft``'s n-dimensional
transforms given float16 or complex32 compute, as torch runs cuFFT, the unnormalised sums
(here in float32) stored in the 16-bit type (inf past 65504), then fft_norm's factor applied
to that 16-bit result; a size that is not a power of two raises, as cuFFT does in half
precision (upstream's "half" at 768^2). Other dtypes are the real transforms. For tests and
the GPU campaign's dry run (:mod:`neuralop_mp.bench.gpu`); the float16 rounding is cuFFT's
storage, not its internal arithmetic (float32 here), so errors are a lower bound of a GPU's.
"""
import contextlib
import math
import types

import torch

from ..layers.spectral_conv import MixedPrecisionSpectralConv, _is_power_of_two

#: the ``torch.fft`` functions replaced (the ones the spectral layers, ours and upstream's, call)
TRANSFORMS = ("rfftn", "fftn", "irfftn", "ifftn")
_ON_GPU = types.SimpleNamespace(device=torch.device("cuda"))  # what the layer's rule reads of x


def _stand_in(name, exact):
    inverse = name.startswith("i")

    def transform(x, s=None, dim=None, norm=None):
        if x.dtype not in (torch.float16, torch.complex32):
            return exact(x, s=s, dim=dim, norm=norm)
        dims = range(x.ndim) if dim is None else [dim] if isinstance(dim, int) else dim
        sizes = list(s) if s is not None else [x.shape[d] for d in dims]
        if not all(_is_power_of_two(n) for n in sizes):
            raise RuntimeError(f"cuFFT (stand-in) computes float16 transforms of power-of-2 sizes only, got {sizes}")
        wide = x.to(torch.complex64 if x.is_complex() else torch.float32)
        raw = exact(wide, s=s, dim=dim, norm="forward" if inverse else "backward")  # unnormalised
        stored = raw.to(torch.complex32 if raw.is_complex() else torch.float16)
        points = math.prod(sizes)
        scale = {"ortho": points ** -0.5, "forward": 1.0 if inverse else 1 / points}.get(
            norm, 1 / points if inverse else 1.0)
        return stored if scale == 1 else (stored.to(raw.dtype) * scale).to(stored.dtype)

    return transform


def replacements():
    """``[(owner, attribute name, stand-in)]``: the ``torch.fft`` transforms and the layer's
    float16-FFT rule (asked as for an input on a GPU). For ``monkeypatch.setattr`` in tests;
    :func:`emulate_float16_cufft` applies them for a ``with`` block."""
    patches = [(torch.fft, name, _stand_in(name, getattr(torch.fft, name))) for name in TRANSFORMS]
    rule = MixedPrecisionSpectralConv._fft_in_half
    patches.append((MixedPrecisionSpectralConv, "_fft_in_half",
                    lambda self, mode, half, x, spatial, out: rule(self, mode, half, _ON_GPU, spatial, out)))
    return patches


@contextlib.contextmanager
def emulate_float16_cufft():
    """Within the ``with`` block, :func:`replacements` are in place (for the whole process);
    the originals are restored on exit, an exception's included."""
    patches = replacements()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
