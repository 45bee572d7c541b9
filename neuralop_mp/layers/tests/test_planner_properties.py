"""Property tests (hypothesis) of the contraction planner: for random shapes, ranks,
factorizations and orders, the planned pairwise contraction equals ``torch.einsum`` of
the whole equation, in complex128 and in the real-form (real, imag) arithmetic with
both complex products, run in float64 (tolerance 1e-10 relative: float64 rounding of
a few hundred terms)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tltorch.factorized_tensors.core import FactorizedTensor

from neuralop_mp.layers.complex_half import run_plan, to_real_form
from neuralop_mp.layers.contraction_planner import plan_contraction
from neuralop_mp.layers.weight_contractions import spectral_equation, weight_operands

pytestmark = pytest.mark.reliability


@st.composite
def contractions(draw):
    kind = draw(st.sampled_from(["dense", "cp", "tucker", "tt"]))
    separable = draw(st.booleans())
    order = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 5))
    out_channels = channels if separable else draw(st.integers(1, 5))
    modes = tuple(draw(st.lists(st.integers(1, 5), min_size=order, max_size=order)))
    batch = draw(st.integers(1, 3))
    rank = draw(st.floats(0.2, 1.0))
    seed = draw(st.integers(0, 2**16))
    return kind, separable, channels, out_channels, modes, batch, rank, seed


def operands_for(kind, separable, channels, out_channels, modes, batch, rank, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = (channels, *modes) if separable else (channels, out_channels, *modes)
    if kind == "dense":
        weights = [torch.randn(*shape, dtype=torch.cdouble, generator=gen)]
    else:
        factorized = FactorizedTensor.new(shape, rank=rank, factorization=kind, dtype=torch.cdouble)
        weights = [torch.randn(t.shape, dtype=torch.cdouble, generator=gen) for t in weight_operands(factorized, kind)]
    x = torch.randn(batch, channels, *modes, dtype=torch.cdouble, generator=gen)
    return x, weights


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(contractions())
def test_planned_contraction_equals_einsum(case):
    kind, separable, channels, out_channels, modes, batch, rank, seed = case
    x, weights = operands_for(*case)
    equation = spectral_equation(kind, x.ndim, separable)
    expected = torch.einsum(equation, x, *weights)
    for itemsize in (4, 8):
        plan = plan_contraction(equation, [x.shape] + [w.shape for w in weights], itemsize)
        assert len(plan.path) == len(weights)  # one pairwise step per weight operand
        assert relative(run_plan(plan, [x] + weights, real_form=False), expected) <= 1e-10


@settings(max_examples=25, deadline=None, derandomize=True)
@given(contractions(), st.sampled_from(["block", "gauss"]))
def test_real_form_arithmetic_equals_complex_einsum(case, method):
    kind, separable, *_ = case
    x, weights = operands_for(*case)
    equation = spectral_equation(kind, x.ndim, separable)
    expected = torch.einsum(equation, x, *weights)
    plan = plan_contraction(equation, [x.shape] + [w.shape for w in weights], 4)
    real = [to_real_form(t, torch.float64) for t in [x] + weights]
    out = run_plan(plan, real, real_form=True, method=method, compute_dtype=torch.float64)
    assert out.dtype == torch.float64
    assert relative(torch.view_as_complex(out.contiguous()), expected) <= 1e-10
