"""The float16 product's power-of-two headroom scaling (``fft_norm`` "backward"/"ortho") rides on
tensors the truncated transforms and the bias make anyway: the same numbers as multiplying the
kept spectrum by ``2**-shift`` before the product and its result by ``2**shift`` after, without
those two block-sized copies (nor their gradients' copies in backward)."""
import collections
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from neuralop_mp.layers import spectral_conv as sc
from neuralop_mp.layers.spectral_conv import FLOAT16_HEADROOM_BITS, MixedPrecisionSpectralConv
from neuralop_mp.layers.truncated_fft import (forward_norm_exponent, set_last_axis_transform, truncated_irfftn,
                                              truncated_rfftn)

# float16 on a CPU is what these tests check: its products are float32 on float16-rounded values
pytestmark = pytest.mark.filterwarnings("ignore:half_dtype='float16' on a CPU without float16 matrix units")


@pytest.fixture
def last_axis(request):
    previous = set_last_axis_transform(request.param)
    yield request.param
    set_last_axis_transform(previous)


class _AllocatedBytes(TorchDispatchMode):
    """Bytes of every storage the operators inside the block return (each counted once; the
    tensors are kept alive so that no address is reused and miscounted)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0
        self._tensors = []
        self._seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = (storage.data_ptr(), storage.nbytes())
                if key not in self._seen:
                    self._seen.add(key)
                    self.bytes += storage.nbytes()
                    self._tensors.append(tensor)
        return out


# (spatial, kept): one, two and three transformed axes
GRIDS = [((64,), (9,)), ((16, 12), (6, 5)), ((8, 6, 10), (4, 3, 4))]


@pytest.mark.parametrize("last_axis", ["fft", "matmul"], indirect=True)
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("spatial, kept", GRIDS)
@pytest.mark.parametrize("exponent", [-3, 5])
def test_truncated_transforms_scale_exactly_as_a_multiplication(spatial, kept, norm, exponent, last_axis):
    """``scale`` (a power of two) gives bit for bit the numbers and gradients of multiplying the
    block: before the inverse, after the forward transform."""
    scale = 2.0**exponent
    dims = tuple(range(-len(spatial), 0))
    generator = torch.Generator().manual_seed(len(spatial))
    x = torch.randn(2, 3, *spatial, generator=generator)
    upstream = torch.randn(2, 3, *kept, generator=generator, dtype=torch.complex64)
    results = []
    for folded in (True, False):
        leaf = x.clone().requires_grad_()
        block = (truncated_rfftn(leaf, dims, kept, norm, scale=scale) if folded
                 else truncated_rfftn(leaf, dims, kept, norm) * scale)
        block.backward(upstream)
        results.append((block.detach(), leaf.grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))

    z = torch.randn(2, 3, *kept, generator=generator, dtype=torch.complex64)
    g = torch.randn(2, 3, *spatial, generator=generator)
    results = []
    for folded in (True, False):
        leaf = z.clone().requires_grad_()
        y = (truncated_irfftn(leaf, dims, spatial, spatial, norm, scale=scale) if folded
             else truncated_irfftn(leaf * scale, dims, spatial, spatial, norm))
        y.backward(g)
        results.append((y.detach(), leaf.grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))
    with torch.no_grad():  # the paths without autograd take the scale too
        assert torch.equal(truncated_rfftn(x, dims, kept, norm, scale=scale), truncated_rfftn(x, dims, kept, norm) * scale)
        assert torch.equal(truncated_irfftn(z, dims, spatial, spatial, norm, scale=scale),
                           truncated_irfftn(z * scale, dims, spatial, spatial, norm))


def _shift(norm, spatial):
    return max(0, forward_norm_exponent(norm, math.prod(spatial)) - FLOAT16_HEADROOM_BITS)


def _multiplied_scaling(monkeypatch):
    """Make the layer scale as a plain multiplication: the kept spectrum times ``2**-shift``, the
    product's result times ``2**shift`` before the bias's copy and the inverse."""
    rfftn, irfftn = sc.truncated_rfftn, sc.truncated_irfftn
    plus_bias = MixedPrecisionSpectralConv._plus_bias_at_zero_frequency
    monkeypatch.setattr(sc, "truncated_rfftn",
                        lambda x, dims, kept, norm, scale=1.0: rfftn(x, dims, kept, norm) * scale)
    monkeypatch.setattr(sc, "truncated_irfftn",
                        lambda z, *args, scale=1.0, **kwargs: irfftn(z * scale, *args, **kwargs))
    monkeypatch.setattr(MixedPrecisionSpectralConv, "_plus_bias_at_zero_frequency",
                        lambda self, z, out_spatial, scale=1.0: plus_bias(self, z * scale, out_spatial))


def _run(layer, x, upstream, output_shape=None):
    x = x.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = layer(x, output_shape=output_shape)
    y.backward(upstream)
    return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]


# (spatial, n_modes, norm): each with a positive shift; complex data (the whole spectrum
# transformed, then sliced) on the small grids
CASES = [((32, 32), (8, 8), "backward"), ((512, 256), (8, 8), "ortho"), ((1024,), (12,), "backward"),
         ((2**17,), (12,), "ortho"), ((8, 8, 16), (4, 4, 4), "backward")]
CASES = [case + (complex_data,) for case in CASES for complex_data in (False, True)
         if not complex_data or math.prod(case[0]) <= 2**12]


@pytest.mark.parametrize("spatial, n_modes, norm, complex_data", CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_float16_headroom_gives_the_numbers_of_multiplying_the_spectrum(spatial, n_modes, norm, complex_data, bias,
                                                                        factorization, monkeypatch):
    assert _shift(norm, spatial) > 0
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(2, 3, n_modes, fno_block_precision="mixed", half_dtype="float16",
                                       stabilizer="tanh", fft_norm=norm, bias=bias, factorization=factorization,
                                       implementation="factorized" if factorization else "reconstructed",
                                       complex_data=complex_data)
    dtype = torch.complex64 if complex_data else torch.float32
    generator = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(2, 2, *spatial, generator=generator, dtype=dtype)
    upstream = torch.randn(2, 3, *spatial, generator=generator, dtype=dtype)
    folded = _run(layer, x, upstream)
    with monkeypatch.context() as patch:
        _multiplied_scaling(patch)
        multiplied = _run(layer, x, upstream)
    assert len(folded) == len(multiplied) and all(torch.isfinite(t).all() for t in folded)
    for a, b in zip(folded, multiplied):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bias", [False, True])
def test_float16_headroom_makes_no_block_sized_tensor(bias):
    """Bytes allocated by a forward and a backward with fft_norm="backward" (whose float16 product
    takes the spectrum 2**2 down, 32x32 grid) are those of fft_norm="forward" (no scaling): the
    scaling makes no tensor. With the bias in the spectrum the backward keeps one block-sized
    gradient: the bias's copy is the scaled product, whose gradient is the scaled incoming one."""
    spatial = (32, 32)
    previous = set_last_axis_transform("fft")  # the same transforms, hence allocations, in both runs
    try:
        counts = collections.defaultdict(dict)
        for norm in ("forward", "backward"):
            torch.manual_seed(0)
            layer = MixedPrecisionSpectralConv(4, 4, (8, 8), fno_block_precision="mixed", half_dtype="float16",
                                               fft_norm=norm, bias=bias)
            x = torch.randn(2, 4, *spatial).requires_grad_()
            with _AllocatedBytes() as forward:
                y = layer(x)
            upstream = torch.randn_like(y)
            with _AllocatedBytes() as backward:
                y.backward(upstream)
            counts[norm] = (forward.bytes, backward.bytes)
    finally:
        set_last_axis_transform(previous)
    assert _shift("backward", spatial) > 0 and _shift("forward", spatial) == 0
    block = 2 * 4 * 8 * 5 * 8  # batch x channels x kept modes, complex64
    assert counts["backward"][0] == counts["forward"][0]
    assert counts["backward"][1] == counts["forward"][1] + (block if bias else 0)
