"""Stochastic rounding near the top of the 16-bit range overflows exactly where a plain cast
does: a value the cast keeps finite (float16: below 65520) never becomes inf (it rounded up to
2**16 = inf with probability up to 1/2), and the rounding stays unbiased below the largest number."""
import math

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.adam_math import stochastic_round_

BITS = {torch.float16: 10, torch.bfloat16: 7}


def _top(dtype):
    """The largest finite number of ``dtype``, its spacing there, and the smallest magnitude a plain
    cast turns into inf (the largest plus half the spacing), in float64."""
    largest = torch.finfo(dtype).max
    spacing = 2.0 ** (math.frexp(largest)[1] - 1 - BITS[dtype])
    return largest, spacing, largest + spacing / 2


def _values_at_the_top(dtype, seed):
    """Fresh float32 values from 3 spacings below the largest number to past the overflow threshold,
    both signs, with the threshold and its float32 neighbours among them."""
    largest, spacing, overflow = _top(dtype)
    g = torch.Generator().manual_seed(seed)
    offsets = torch.rand(400, generator=g, dtype=torch.float64) * 4.0 - 3.0  # [-3, 1) spacings
    edges = torch.tensor([largest, overflow], dtype=torch.float32)
    edges = torch.cat([edges, torch.nextafter(edges, edges * 2), torch.nextafter(edges, edges * 0)])
    x = torch.cat([(largest + offsets * spacing).float(), edges])
    signs = torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0)
    return x * signs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rounding_overflows_exactly_where_a_plain_cast_does_and_is_unbiased_below_the_largest(dtype):
    largest, spacing, overflow = _top(dtype)
    x = _values_at_the_top(dtype, seed=11)
    cast = x.to(dtype)
    assert bool(cast.isinf().any()) and bool((x.double().abs() > largest).logical_and(~cast.isinf()).any())
    n_draws = 300
    draws = torch.empty(n_draws, x.numel(), dtype=dtype)
    for s in range(n_draws):
        stochastic_round_(draws[s], x, seed=s)
    wide = draws.double()
    # inf exactly where the cast is inf (every draw), with the value's sign
    assert torch.equal(draws.isinf(), cast.isinf().expand_as(draws))
    assert torch.equal(wide[:, cast.isinf()], cast.double()[cast.isinf()].expand(n_draws, -1))
    finite, xd = ~cast.isinf(), x.double()
    # above the largest number but below the threshold: the largest number, always
    saturated = finite & (xd.abs() > largest)
    assert torch.equal(wide[:, saturated], (torch.sign(xd[saturated]) * largest).expand(n_draws, -1))
    # at or below it: one of the two neighbours, the mean x up to sampling noise (float64 reference)
    inside = finite & (xd.abs() <= largest)
    lower = torch.floor(xd[inside] / spacing) * spacing
    picked = wide[:, inside]
    assert bool(((picked == lower) | (picked == lower + spacing)).all())
    z = (picked.mean(0) - xd[inside]) / spacing * n_draws**0.5 / 0.5
    assert z.abs().max() < 5.5  # ~400 samples of |N(0,1)| at most: beyond 5.5 has probability < 1e-5


@pytest.mark.parametrize("compress", [False, True], ids=["adamw", "compressed"])
def test_a_complex32_weight_at_the_top_of_float16_stays_finite_through_the_optimizer(compress):
    """The audit's case: complex32 weights at 65504 and near it, an update that takes them above
    65504 but below 65520, where round-to-nearest keeps 65504: the step wrote inf into about 10% of
    them, no error, no warning. The reference runs the same optimizer on complex128 weights."""
    largest, spacing, overflow = _top(torch.float16)
    g = torch.Generator().manual_seed(5)
    shape = (8, 8, 6, 4)
    parts = largest - spacing * torch.randint(0, 2, (2,) + shape, generator=g).double()
    parts *= torch.where(torch.rand(parts.shape, generator=g) < 0.5, -1.0, 1.0).double()
    start = torch.complex(parts[0], parts[1])
    grad = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))
    weight = torch.nn.Parameter(start.to(torch.complex32))
    reference = torch.nn.Parameter(start.clone())
    settings = dict(lr=12.0 if not compress else 1.0, compress=compress, min_params=0, seed=3)
    optimizers = [TensorGRaD([weight], **settings), TensorGRaD([reference], **settings)]
    weight.grad, reference.grad = grad.to(torch.complex32), grad.to(torch.complex32).to(torch.complex128)
    for optimizer in optimizers:
        optimizer.step()
    assert bool(optimizers[0].state[weight]["compressed"]) == compress
    ref = torch.view_as_real(reference.detach())
    # the case: entries the update takes above the largest number, none to the threshold
    assert bool((ref.abs() > largest + 1).any()) and float(ref.abs().max()) < overflow - 0.5
    got = torch.view_as_real(weight.detach()).double()
    assert bool(got.isfinite().all())
    assert float(got.abs().max()) <= largest
    # each entry one of the two neighbours of the float64 result (the largest number above it)
    lower = torch.floor(ref / spacing) * spacing
    assert bool(((got == lower) | (got == (lower + spacing).clamp(-largest, largest))).all())
