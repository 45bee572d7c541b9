"""Complex products on (real, imag) pairs in 16-bit types: values, gradients, saved tensors."""
import pytest
import torch

from neuralop_mp.layers.complex_half import (
    complex_einsum_pair,
    compute_dtype_for,
    native_half_matmul,
    _native_half_matmul,
    to_real_form,
)
from neuralop_mp.layers.tests.reference import U, gamma

CASES = [
    ("abcd,becd->aecd", (3, 16, 5, 4), (16, 7, 5, 4)),  # dense spectral weight
    ("fbg,geh->beh", (1, 6, 3), (3, 5, 2)),  # TT core with a lone size-1 boundary rank
    ("abc,bc->abc", (2, 3, 4), (3, 4)),  # separable (Hadamard)
]


def _complex(t):
    t = t.double()
    return torch.complex(t[..., 0], t[..., 1])


@pytest.mark.parametrize("equation,shape_a,shape_b", CASES)
@pytest.mark.parametrize("method", ["block", "gauss", "complex"])
def test_exact_in_float64_with_gradients(equation, shape_a, shape_b, method):
    torch.manual_seed(0)
    a = torch.randn(*shape_a, dtype=torch.cdouble, requires_grad=True)
    b = torch.randn(*shape_b, dtype=torch.cdouble, requires_grad=True)
    ref = torch.einsum(equation, a, b)
    ra = to_real_form(a.detach(), torch.float64).requires_grad_()
    rb = to_real_form(b.detach(), torch.float64).requires_grad_()
    out = complex_einsum_pair(equation, ra, rb, method=method, compute_dtype=torch.float64)
    assert torch.allclose(_complex(out), ref, atol=1e-12)
    g = torch.randn_like(ref)
    ga, gb = torch.autograd.grad(ref, (a, b), g)
    gra, grb = torch.autograd.grad(out, (ra, rb), torch.view_as_real(g))
    assert torch.allclose(_complex(gra), ga, atol=1e-12)
    assert torch.allclose(_complex(grb), gb, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method,compute", [("block", "native"), ("block", "float32"), ("gauss", "native"),
                                            ("gauss", "float32"), ("complex", "float32")])
def test_componentwise_error_bound_in_16_bit(dtype, method, compute):
    """|C - C_ref| <= sqrt(2) gamma_k(u) sum|a||b| + gamma_n(2^-24) sum|a||b| per entry.

    block and complex: k = 3 roundings (a, b, result). gauss: the sums Ar + Ai, Br + Bi, Bi - Br are
    rounded too and bounded by sqrt(2)|.|, so k = 4 and the absolute terms grow by 2.
    n = 2 * 16 (real-form contraction length).
    """
    equation, sa, sb = CASES[0]
    a = torch.randn(*sa, dtype=torch.cdouble)
    b = torch.randn(*sb, dtype=torch.cdouble)
    compute_dtype = dtype if compute == "native" else torch.float32
    out = complex_einsum_pair(equation, to_real_form(a, dtype), to_real_form(b, dtype), method=method,
                              compute_dtype=compute_dtype)
    assert out.dtype == dtype
    absolute = torch.einsum(equation, a.abs(), b.abs())
    k, growth = (4, 2) if method == "gauss" else (3, 1)
    bound = (2**0.5 * gamma(k, U[dtype]) * growth + gamma(32, U[torch.float32])) * absolute
    err = (_complex(out) - torch.einsum(equation, a, b)).abs()
    assert (err <= bound).all()
    assert err.max() > 1e-6  # really rounded to 16 bits


def test_only_16bit_operands_are_saved_for_backward():
    saved = []
    a = to_real_form(torch.randn(4, 8, 3, dtype=torch.cfloat), torch.bfloat16).requires_grad_()
    b = to_real_form(torch.randn(8, 5, 3, dtype=torch.cfloat), torch.bfloat16).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        complex_einsum_pair("bix,iox->box", a, b, compute_dtype=torch.float32)
    assert [t.dtype for t in saved] == [torch.bfloat16, torch.bfloat16]
    assert [t.shape for t in saved] == [a.shape, b.shape]


def test_second_derivatives_through_a_recast_source_match_the_saved_copy():
    # a source re-cast in backward must give the second derivatives that saving the 16-bit copy
    # gives: the input gradient a backward with create_graph builds depends on both operands
    torch.manual_seed(3)
    a = torch.randn(3, 4, dtype=torch.cfloat, requires_grad=True)
    b = torch.randn(4, 5, dtype=torch.cfloat, requires_grad=True)
    grads = []
    for use_sources in (False, True):
        a.grad = b.grad = None
        ar, br = to_real_form(a, torch.bfloat16), to_real_form(b, torch.bfloat16)
        sources = dict(a_source=a, b_source=b) if use_sources else {}
        y = complex_einsum_pair("ij,jk->ik", ar, br, compute_dtype=torch.float32, **sources)
        (g,) = torch.autograd.grad(y.float().square().sum(), ar, create_graph=True)
        g.float().square().sum().backward()
        grads.append((a.grad.clone(), b.grad.clone()))
    for with_copy, with_source in zip(*grads):
        # the same terms, summed in another order by autograd: apart by bfloat16 rounding only
        assert ((with_copy - with_source).abs() <= 4 * U[torch.bfloat16] * with_copy.abs().max()).all()
    assert grads[0][1].abs().max() > 0


def test_compute_dtype_rule_and_bad_method():
    # CUDA multiplies 16-bit natively (no probe needed: the device need not exist here);
    # other non-CPU devices are never assumed to; CPU follows its probe, asked once.
    assert compute_dtype_for(torch.float16, "cuda") == torch.float16
    assert compute_dtype_for(torch.bfloat16, "meta") == torch.float32
    native = native_half_matmul(torch.bfloat16, "cpu")
    assert compute_dtype_for(torch.bfloat16, "cpu") == (torch.bfloat16 if native else torch.float32)
    hits = _native_half_matmul.cache_info().hits
    native_half_matmul(torch.bfloat16, torch.device("cpu"))
    assert _native_half_matmul.cache_info().hits == hits + 1
    a = to_real_form(torch.randn(2, 2, dtype=torch.cfloat), torch.bfloat16)
    with pytest.raises(ValueError, match=r"complex_product='karatsuba'.*'block', 'gauss'"):
        complex_einsum_pair("ij,jk->ik", a, a, method="karatsuba")
