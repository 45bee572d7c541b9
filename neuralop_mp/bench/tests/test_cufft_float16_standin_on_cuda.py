"""The CPU stand-in for cuFFT's float16 transforms (neuralop_mp/bench/cufft_float16_standin.py),
which the GPU campaign's dry run and the CPU tests of the float16-FFT path rely on, checked
against cuFFT itself: the same 16-bit results to float16 accuracy, inf where cuFFT overflows,
and a refusal of sizes that are not powers of two. CUDA only (the campaign runs it: ``-k cuda``)."""
import pytest
import torch

from neuralop_mp.bench.cufft_float16_standin import _stand_in

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DIMS = (-2, -1)


def _as_real(z):
    return torch.view_as_real(z.to(torch.complex64)) if z.is_complex() else z.float()


def _close(ours, cufft):
    """Within a few float16 spacings of the larger results (cuFFT's own arithmetic may round more
    than the stand-in's float32 sums, so not bitwise)."""
    assert ours.dtype == cufft.dtype and ours.shape == cufft.shape
    a, b = _as_real(ours), _as_real(cufft)
    assert torch.allclose(a, b, rtol=2 ** -8, atol=float(b.abs().max()) * 2 ** -8), float((a - b).abs().max())


@pytest.mark.parametrize("norm", [None, "backward", "ortho", "forward"])
def test_cuda_the_stand_in_gives_cuffts_float16_transforms(norm):
    x = torch.randn(2, 3, 16, 8, generator=torch.Generator().manual_seed(0)).half()
    spectrum = torch.fft.rfftn(x.cuda(), dim=DIMS, norm=norm).cpu()
    ours = _stand_in("rfftn", torch.fft.rfftn)(x, dim=DIMS, norm=norm)
    _close(ours, spectrum)
    back = torch.fft.irfftn(spectrum.cuda(), s=(16, 8), dim=DIMS, norm=norm).cpu()
    _close(_stand_in("irfftn", torch.fft.irfftn)(spectrum, s=(16, 8), dim=DIMS, norm=norm), back)
    z = torch.complex(torch.randn(2, 16, 16), torch.randn(2, 16, 16)).to(torch.complex32)
    _close(_stand_in("fftn", torch.fft.fftn)(z, dim=DIMS, norm=norm), torch.fft.fftn(z.cuda(), dim=DIMS, norm=norm).cpu())


def test_cuda_the_stand_in_overflows_where_cufft_does():
    x = torch.full((1, 1, 16, 16), 300.0, dtype=torch.float16)  # the zero frequency's sum: 76800 > 65504
    cufft = torch.fft.rfftn(x.cuda(), dim=DIMS).cpu()
    ours = _stand_in("rfftn", torch.fft.rfftn)(x, dim=DIMS)
    assert torch.equal(torch.isinf(_as_real(ours)), torch.isinf(_as_real(cufft)))
    assert torch.isinf(_as_real(cufft)).any()


def test_cuda_both_refuse_a_float16_size_that_is_not_a_power_of_two():
    x = torch.randn(1, 1, 12, 8).half()
    with pytest.raises(RuntimeError):
        torch.fft.rfftn(x.cuda(), dim=DIMS)
    with pytest.raises(RuntimeError, match="power-of-2"):
        _stand_in("rfftn", torch.fft.rfftn)(x, dim=DIMS)
