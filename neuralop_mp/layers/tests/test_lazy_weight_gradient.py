"""The dense mode product's lazy weight gradient: its slices are the ordinary gradient's
numbers, and it is handed over only when the whole gradient is the product's own."""
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from neuralop_mp.layers.lazy_weight_gradient import consume_weight_gradients
from neuralop_mp.layers.mode_matmul import dense_mode_product

SHAPE = (5, 6, 4, 3)  # (in, out, modes): 12 modes
# 2 modes per chunk of the ordinary backward (5 * 6 entries of 8 bytes a mode)
CHUNK_BYTES = 2 * 5 * 6 * 8
# (axis, start, length) along every axis: whole, first, inner and last pieces
SLICES = [(0, 0, 5), (0, 0, 1), (0, 1, 3), (0, 4, 1), (1, 0, 6), (1, 2, 3), (1, 5, 1),
          (2, 0, 4), (2, 1, 2), (2, 3, 1), (3, 0, 3), (3, 1, 1), (3, 1, 2), (-1, 2, 1)]


def _operands(seed, weight_dtype, batch=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, SHAPE[0], *SHAPE[2:], dtype=torch.cfloat, generator=gen)
    w = torch.randn(SHAPE, dtype=torch.cfloat, generator=gen).to(weight_dtype)
    g = torch.randn(batch, SHAPE[1], *SHAPE[2:], dtype=torch.cfloat, generator=gen)
    return x, torch.nn.Parameter(w), g


def _ordinary_gradient(x, w, g, half):
    w.grad = None
    dense_mode_product(x, w[:], half, chunk_bytes=CHUNK_BYTES).backward(g)
    grad, w.grad = w.grad, None
    return grad


def _lazy_gradient(x, w, g, half, forward=None):
    taken = []
    handle = consume_weight_gradients(w, taken.append, lambda: True)
    try:
        forward = forward or (lambda: dense_mode_product(x, w[:], half, chunk_bytes=CHUNK_BYTES))
        forward().backward(g)
    finally:
        handle.remove()
    return taken


CASES = [(torch.complex64, None), (torch.complex64, torch.bfloat16), (torch.complex32, torch.bfloat16),
         (torch.complex32, torch.float16)]


@pytest.mark.parametrize("weight_dtype, half", CASES)
def test_every_slice_is_bitwise_the_ordinary_gradient(weight_dtype, half):
    """Both ways of computing a slice (the CPU one restricted to the slice's rows, columns
    or modes; the other devices' one from whole mode chunks, run here on CPU) give the
    ordinary backward's numbers exactly, in the weight's dtype, and the product gives the
    parameter no gradient of its own."""
    x, w, g = _operands(0, weight_dtype)
    expected = _ordinary_gradient(x, w, g, half)
    taken = _lazy_gradient(x, w, g, half)
    assert len(taken) == 1 and w.grad is None
    lazy = taken[0]
    assert lazy.shape == w.shape and lazy.dtype == w.dtype and lazy.device == w.device
    for axis, start, length in SLICES:
        piece = lazy.narrow(axis, start, length)
        assert piece.dtype == weight_dtype
        assert torch.equal(torch.view_as_real(piece.to(torch.cfloat)),
                           torch.view_as_real(expected.narrow(axis, start, length).to(torch.cfloat))), (axis, start)


@pytest.mark.parametrize("weight_dtype, half", CASES)
def test_slices_match_a_float64_reference(weight_dtype, half):
    """Against ``conj(X)^T G`` in float64 from the spectrum and gradient rounded to ``half``
    (what the product keeps): the only errors are float32 sums of 2 * batch exact products
    (relative ~1e-7) and the final rounding to the weight's dtype (complex32: 2^-11 of an
    entry). Tolerance: 1e-6 (complex64) or 2^-10 (complex32) of the largest entry."""
    x, w, g = _operands(1, weight_dtype, batch=3)
    lazy = _lazy_gradient(x, w, g, half)[0]

    def rounded(z):
        return z if half is None else torch.view_as_complex(torch.view_as_real(z).to(half).float())

    reference = torch.einsum("bi...,bo...->io...", rounded(x).conj().to(torch.cdouble), rounded(g).to(torch.cdouble))
    tolerance = (1e-6 if weight_dtype == torch.complex64 else 2.0 ** -10) * reference.abs().max().item()
    for axis, start, length in SLICES:
        piece = lazy.narrow(axis, start, length).to(torch.cdouble)
        error = (piece - reference.narrow(axis, start, length)).abs().max().item()
        assert error <= tolerance, (axis, start, error, tolerance)


def test_ordinary_gradient_when_the_product_is_not_the_whole_gradient():
    """Used twice in one forward, sliced to fewer modes, or holding a gradient already:
    nothing is handed over and the parameter gets the ordinary gradient."""
    x, w, g = _operands(2, torch.complex64)
    twice = _lazy_gradient(x, w, g, None, lambda: dense_mode_product(x, w[:], None) + dense_mode_product(x, w[:], None))
    assert twice == [] and torch.equal(w.grad, 2 * _ordinary_gradient(x, w, g, None))

    w.grad = None
    sliced = _lazy_gradient(x[..., :2], w, g[..., :2], None, lambda: dense_mode_product(x[..., :2], w[..., :2], None))
    assert sliced == [] and w.grad is not None and torch.equal(w.grad[..., 2:], torch.zeros_like(w.grad[..., 2:]))

    w.grad = torch.zeros_like(w)
    assert _lazy_gradient(x, w, g, None) == [] and torch.equal(w.grad, _ordinary_gradient(x, w, g, None))


def test_a_recomputed_forward_still_hands_the_gradient_over():
    """Under non-reentrant activation checkpointing the forward runs again inside backward;
    that second run is no second use of the weight."""
    x, w, g = _operands(3, torch.complex32)
    expected = _ordinary_gradient(x, w, g, torch.bfloat16)
    taken = _lazy_gradient(x, w, g, torch.bfloat16, lambda: checkpoint(
        lambda a: dense_mode_product(a, w[:], torch.bfloat16, chunk_bytes=CHUNK_BYTES), x.requires_grad_(),
        use_reentrant=False))
    assert len(taken) == 1 and w.grad is None
    assert torch.equal(torch.view_as_real(taken[0].narrow(0, 1, 2).to(torch.cfloat)),
                       torch.view_as_real(expected[1:3].to(torch.cfloat)))


def test_declined_or_removed_consumer_gets_nothing():
    x, w, g = _operands(4, torch.complex64)
    taken = []
    handle = consume_weight_gradients(w, taken.append, lambda: False)
    dense_mode_product(x, w[:], None).backward(g)
    assert taken == [] and w.grad is not None
    handle.remove()
    w.grad = None
    consume_weight_gradients(w, taken.append, lambda: True).remove()
    dense_mode_product(x, w[:], None).backward(g)
    assert taken == [] and w.grad is not None


@pytest.mark.parametrize("axis, start, length", [(4, 0, 1), (0, 4, 2), (1, -1, 1)])
def test_out_of_range_slices_are_refused(axis, start, length):
    x, w, g = _operands(5, torch.complex64)
    lazy = _lazy_gradient(x, w, g, None)[0]
    with pytest.raises(IndexError, match=f"{axis}"):
        lazy.narrow(axis, start, length)


def test_a_backward_that_does_not_accumulate_into_the_weight_hands_nothing_over():
    """``torch.autograd.grad`` with respect to the input only (e.g. a gradient penalty)
    accumulates no weight gradient in the ordinary path: nothing is handed over either."""
    x, w, g = _operands(6, torch.complex64)
    x.requires_grad_()
    taken = []
    handle = consume_weight_gradients(w, taken.append, lambda: True)
    (grad_x,) = torch.autograd.grad(dense_mode_product(x, w[:], None), x, g)
    handle.remove()
    assert taken == [] and w.grad is None and grad_x.shape == x.shape


def test_the_parameter_itself_not_only_a_view_of_it_hands_the_gradient_over():
    """The product may be given the parameter directly (no view in between): its
    AccumulateGrad node is found all the same, and the gradient is the ordinary one."""
    x, w, g = _operands(5, torch.complex64)
    expected = _ordinary_gradient(x, w, g, torch.bfloat16)
    taken = _lazy_gradient(x, w, g, torch.bfloat16,
                           forward=lambda: dense_mode_product(x, w, torch.bfloat16, chunk_bytes=CHUNK_BYTES))
    assert len(taken) == 1 and w.grad is None
    assert torch.equal(taken[0].narrow(0, 0, w.shape[0]), expected)
