"""Pairwise steps as one matmul laid out for the next step: values, gradients, copies."""
from math import prod

import pytest
import torch
from torch.profiler import profile

from neuralop_mp.layers.complex_half import run_plan
from neuralop_mp.layers.contraction_planner import plan_contraction
from neuralop_mp.layers.pairwise_matmul import _MAX_CANDIDATES, _layout, consumer_layouts, pair_matmul
from neuralop_mp.layers.tests.reference import DEVICES

# a TFNO layer's Tucker product at 64^2, batch 1 (32x17 kept modes, ranks from tltorch)
TUCKER_EQUATION = "abcd,fghi,bf,eg,ch,di->aecd"
TUCKER_SHAPES = [(1, 64, 32, 17), (36, 36, 18, 10), (64, 36), (64, 36), (32, 18), (17, 10)]

STEPS = [
    ("abcd,bf->acdf", (2, 6, 5, 3), (6, 4)),  # input times a factor
    ("acdf,di->acdfi", (2, 5, 3, 4), (3, 7)),  # outer product along a shared index (nothing summed)
    ("fghi,ch->fgic", (4, 5, 6, 3), (7, 6)),  # core times a factor along a middle index
    ("acdfi,fgic->acdg", (2, 7, 3, 4, 3), (4, 5, 3, 7)),  # batched over c, summed over f and i
    ("abcd,becd->aecd", (3, 6, 5, 4), (6, 7, 5, 4)),  # dense spectral weight
    ("abc,bc->abc", (2, 3, 4), (3, 4)),  # separable (elementwise)
    ("fbg,geh->beh", (1, 6, 3), (3, 5, 2)),  # TT core with a size-1 boundary rank, dropped
]


def _wanted_choices(step):
    out = step.split("->")[1]
    return [None, ("final", out), ("final", out[::-1])]


@pytest.mark.parametrize("step,shape_a,shape_b", STEPS)
@pytest.mark.parametrize("transpose_inputs", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_values_and_gradients_equal_einsum_in_float64(step, shape_a, shape_b, transpose_inputs, device):
    """On CUDA too: the backward's choice between conjugating an operand and conjugating
    the gradient (pair_matmul's conjugate_operand) runs on cuBLAS there."""
    torch.manual_seed(0)
    for wanted in _wanted_choices(step):
        a = torch.randn(*shape_a, dtype=torch.complex128, device=device)
        b = torch.randn(*shape_b, dtype=torch.complex128, device=device)
        if transpose_inputs:  # same values, reversed memory order
            a = a.permute(*reversed(range(a.ndim))).contiguous().permute(*reversed(range(a.ndim)))
            b = b.permute(*reversed(range(b.ndim))).contiguous().permute(*reversed(range(b.ndim)))
        a.requires_grad_(), b.requires_grad_()
        ref = torch.einsum(step, a, b)
        out = pair_matmul(step, a, b, wanted)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        g = torch.randn_like(ref)
        for got, want in zip(torch.autograd.grad(out, (a, b), g), torch.autograd.grad(ref, (a, b), g)):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_complex64_within_float32_rounding_of_a_float64_reference():
    torch.manual_seed(0)
    step, shape_a, shape_b = STEPS[3]
    a = torch.randn(*shape_a, dtype=torch.complex128)
    b = torch.randn(*shape_b, dtype=torch.complex128)
    ref = torch.einsum(step, a, b)
    out = pair_matmul(step, a.to(torch.complex64), b.to(torch.complex64)).to(torch.complex128)
    # 12 summed terms, each rounded once in float32: a few units of 2^-24 of sum |a||b|
    bound = torch.einsum(step, a.abs(), b.abs()) * 12 * 2.0 ** -23
    assert ((out - ref).abs() <= bound).all()


@pytest.mark.parametrize("step,shape_a,shape_b", [
    ("ab,b->ab", (3, 4), (1,)),  # broadcast index (size 1 against 4)
    ("abc,cd->ad", (3, 4, 5), (5, 2)),  # b summed inside one operand
    ("aab,bc->ac", (3, 3, 4), (4, 2)),  # repeated index (a diagonal)
])
def test_outside_its_scope_it_is_einsum(step, shape_a, shape_b):
    torch.manual_seed(0)
    a = torch.randn(*shape_a, dtype=torch.complex128)
    b = torch.randn(*shape_b, dtype=torch.complex128)
    torch.testing.assert_close(pair_matmul(step, a, b), torch.einsum(step, a, b), rtol=0, atol=1e-12)


def test_more_layouts_than_the_search_cap_keeps_the_subscript_order_and_the_values():
    torch.manual_seed(0)
    step = "abcdefgx,abcdefgy->xy"  # 7 summed indices: 7! orders of the summed group alone
    assert 2 * 5040 > _MAX_CANDIDATES
    a = torch.randn(2, 1, 2, 1, 2, 1, 2, 3, dtype=torch.complex128)
    b = torch.randn(2, 1, 2, 1, 2, 1, 2, 4, dtype=torch.complex128)
    torch.testing.assert_close(pair_matmul(step, a, b), torch.einsum(step, a, b), rtol=0, atol=1e-12)
    # no search: the groups in the subscripts' own order, the operands on their own sides
    assert _layout(step, a.shape, a.stride(), b.shape, b.stride(), None) == (
        (), ("x",), ("y",), tuple("abcdefg"), False)


def test_a_lone_size_one_index_is_dropped_not_handed_to_einsum(monkeypatch):
    """A TT plan's first step sums a boundary rank of size 1 inside one core."""
    torch.manual_seed(0)
    import neuralop_mp.layers.pairwise_matmul as pm

    a = torch.randn(1, 6, 3, dtype=torch.complex128)
    b = torch.randn(3, 5, 2, dtype=torch.complex128)
    ref = torch.einsum("fbg,geh->beh", a, b)
    monkeypatch.setattr(pm.torch, "einsum", None)  # a fallback to einsum would fail
    torch.testing.assert_close(pair_matmul("fbg,geh->beh", a, b), ref, rtol=0, atol=1e-12)


def test_consumer_layouts_name_each_results_reader():
    plan = plan_contraction(TUCKER_EQUATION, TUCKER_SHAPES, 8, peak_slack=1.1)
    assert plan.steps == ("abcd,bf->acdf", "acdf,di->acdfi", "fghi,ch->fgic", "acdfi,fgic->acdg", "acdg,eg->aecd")
    wanted = consumer_layouts(plan.steps, plan.path, "aecd")
    # the core-times-factor result "fgic" is read by "acdfi,fgic->acdg": batch c, free g, summed f and i
    assert wanted[2] == ("operand", frozenset("c"), frozenset("g"), frozenset("fi"))
    assert wanted[1] == ("operand", frozenset("c"), frozenset("ad"), frozenset("fi"))
    assert wanted[4] == ("final", "aecd")


# copies, and passes that conjugate (out of place or in place)
_MOVES = ("aten::copy_", "aten::_conj_physical", "aten::conj_physical_")


def _copied_elements(fn):
    """Elements of each copy or conjugating pass that ``fn`` runs (torch's profiler)."""
    with profile(record_shapes=True) as prof:
        fn()
    return [prod(e.input_shapes[0]) for e in prof.events() if e.name in _MOVES and e.input_shapes]


def test_tucker_plan_copies_no_intermediate_in_forward_and_less_than_einsum_overall(monkeypatch):
    plan = plan_contraction(TUCKER_EQUATION, TUCKER_SHAPES, 8, peak_slack=1.1)
    operands = [torch.randn(*s, dtype=torch.complex64, requires_grad=True) for s in TUCKER_SHAPES]
    grad = torch.randn(1, 64, 32, 17, dtype=torch.complex64)
    core, wide = prod(TUCKER_SHAPES[1]), 36 * 36 * 10 * 32  # "fgic": the largest intermediate

    with torch.no_grad():
        forward = _copied_elements(lambda: run_plan(plan, operands, real_form=False))
    # the core must be regrouped once (its contracted index is in the middle); the 414k-element
    # "fgic" intermediate is written in the order its reader needs, so it is never copied
    assert max(forward) <= core < wide
    for op in operands:  # both runs accumulate into existing gradients
        op.grad = torch.zeros_like(op)
    ours = sum(_copied_elements(lambda: run_plan(plan, operands, real_form=False).backward(grad)))

    import neuralop_mp.layers.complex_half as complex_half
    monkeypatch.setattr(complex_half, "pair_matmul", lambda step, a, b, wanted=None: torch.einsum(step, a, b))
    with torch.no_grad():
        assert max(_copied_elements(lambda: run_plan(plan, operands, real_form=False))) >= wide
    theirs = sum(_copied_elements(lambda: run_plan(plan, operands, real_form=False).backward(grad)))
    assert ours < 0.6 * theirs  # measured: 0.46 (0.92 M against 1.99 M elements)


def test_second_derivatives_match_einsum():
    """Full precision keeps double backward (e.g. gradient penalties) working."""
    step, shape_a, shape_b = STEPS[3]
    a = torch.randn(*shape_a, dtype=torch.complex128, requires_grad=True)
    b = torch.randn(*shape_b, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, y: pair_matmul(step, x, y), (a, b))
