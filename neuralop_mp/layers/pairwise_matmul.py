"""Each step of a pairwise plan as one batched matmul, its result laid out for the next step.

``torch.einsum`` evaluates a two-operand contraction as permute -> reshape -> bmm and
returns a permuted view of the bmm result. The reshape copies an operand whenever
its memory order does not keep each index group (batch, free, summed) together. In
a pairwise plan every step's result is the next step's operand, and einsum's
result order is rarely the one the next step needs: on CPU, a TFNO 64^2 Tucker
layer copied its 3.3 MB core-times-factor intermediate once in forward and again
in backward. With the steps below that layer's product, forward and backward, takes
0.75x the time of einsum steps at batch 1 and 0.93x at batch 32 (one thread,
docs/spectral_layer.md, "Layout of the pairwise steps").

Here a step chooses, among the orders inside its index groups and which operand
goes on the left of the matmul, the one that copies the fewest elements in forward
and backward together: an operand costs nothing when its memory order already is
the matrix order (a transposed matrix is read without a copy, but its gradient then
comes back transposed), and the result costs nothing when it comes out in an order
the consuming step can read without a copy. Where an operand must
be copied anyway (a Tucker core contracted along a middle index), the search
places that copy so that the result needs none. The decision depends only on
shapes, strides and the plan, so it is cached; the arithmetic is bmm's, the same
as einsum's up to the order of the sums inside a matmul.
"""
import functools
import itertools
from math import factorial, prod

import torch

# Beyond this many candidate layouts (orders inside groups x operand sides) a step
# keeps the subscripts' own order: the planner's steps have a few indices per group.
_MAX_CANDIDATES = 2048


@functools.lru_cache(maxsize=512)
def consumer_layouts(steps, path, output):
    """For each step of a plan, what the step consuming its result needs.

    Returns a tuple with one entry per step: ``("operand", batch, free, summed)``
    (frozensets of the consumer's index groups for this operand, with the result's
    indices) or ``("final", output)`` for the plan's result. Cached: every forward
    of a layer asks again for the same (cached) plan.
    """
    n_inputs = len(path) + 1
    current = list(range(n_inputs))  # what sits at each position: an input, or n_inputs + step
    consumers = {}
    for k, ((i, j), step) in enumerate(zip(path, steps)):
        sa, sb, so = _split(step)
        for pos, subs, other in ((i, sa, sb), (j, sb, sa)):
            if current[pos] >= n_inputs:
                consumers[current[pos] - n_inputs] = _operand_groups(subs, other, so)
        for p in sorted((i, j), reverse=True):
            current.pop(p)
        current.append(n_inputs + k)
    return tuple(consumers.get(k, ("final", output)) for k in range(len(steps)))


def _split(step):
    inputs, out = step.split("->")
    a, b = inputs.split(",")
    return a, b, out


def _operand_groups(subs, other, out):
    batch = frozenset(c for c in subs if c in other and c in out)
    summed = frozenset(c for c in subs if c in other and c not in out)
    free = frozenset(c for c in subs if c not in other)
    return ("operand", batch, free, summed)


def pair_matmul(step, a, b, wanted=None):
    """``torch.einsum(step, a, b)`` as one batched matmul, copying as little as possible.

    Parameters
    ----------
    step : str
        Two-operand einsum such as ``"acdfi,fgic->acdg"``.
    a, b : torch.Tensor
    wanted : tuple, optional
        What the consumer of the result needs (an entry of :func:`consumer_layouts`);
        None: the result's memory order is free.

    Returns
    -------
    torch.Tensor
        The einsum's value, with the indices in ``step``'s output order (a view whose
        memory order may differ). Falls back to ``torch.einsum`` for steps outside
        its scope (repeated or broadcast indices, indices of size > 1 summed within
        one operand).
    """
    sa, sb, so = _split(step)
    # a size-1 index summed inside one operand (a TT core's boundary rank) sums nothing
    sa, a = _drop_lone_units(sa, a, sb, so)
    sb, b = _drop_lone_units(sb, b, sa, so)
    sizes = _sizes(sa, a.shape, sb, b.shape)
    if sizes is None or any(c not in so and (c in sa) != (c in sb) for c in sa + sb):
        return torch.einsum(f"{sa},{sb}->{so}", a, b)
    layout = _layout(f"{sa},{sb}->{so}", tuple(a.shape), a.stride(), tuple(b.shape), b.stride(), wanted)
    batch, left, right, summed, swap = layout
    if swap:
        a, b, sa, sb = b, a, sb, sa
    nb, nl, nr, ns = (prod(sizes[c] for c in g) for g in (batch, left, right, summed))
    stack = () if nb == 1 else (nb,)
    lhs = a.permute([sa.index(c) for c in batch + left + summed]).reshape(*stack, nl, ns)
    rhs = b.permute([sb.index(c) for c in batch + summed + right]).reshape(*stack, ns, nr)
    if ns == 1:
        out = lhs * rhs
    elif lhs.is_complex():
        out = _ComplexMatmul.apply(lhs, rhs)
    else:
        out = torch.matmul(lhs, rhs)
    order = batch + left + right
    out = out.view([sizes[c] for c in order])
    return out.permute([order.index(c) for c in so])


class _ComplexMatmul(torch.autograd.Function):
    """``a @ b`` (2-D or batched 3-D) whose backward conjugates the cheaper side.

    The gradients are ``g @ b^H`` and ``a^H @ g``. torch's own backward conjugates
    ``b`` and ``a`` into copies, except for a contiguous matrix (not a batch) whose
    conjugate transpose BLAS reads directly; that copy also transposes, a strided
    pass. Each product can instead be taken as ``conj(conj(g) @ b^T)``: the
    conjugate of ``g`` is made once for both products, and the result is
    conjugated in place. Per product the side with fewer elements to touch wins:
    for a TFNO 64^2 Tucker step, ``conj(g)`` (20k elements) and an in-place pass over
    the 196k-element gradient against a copy of the weight intermediate's 415k, whose
    conjugate copy took 10% of the whole training step.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.matmul(a, b)

    @staticmethod
    def backward(ctx, g):  # differentiable ops only: second derivatives work as with einsum
        a, b = ctx.saved_tensors
        g_conj = []

        def conj_g():
            if not g_conj:
                g_conj.append(g.conj_physical())
            return g_conj[0]

        def conjugate_operand(operand, result_numel):
            # conj(operand), or conj(g) plus an in-place pass over the result?
            if operand.dim() == 2 and operand.is_contiguous():
                return True  # BLAS reads its conjugate transpose directly: free
            return operand.numel() <= g.numel() + result_numel

        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            if conjugate_operand(b, a.numel()):
                grad_a = torch.matmul(g, b.mT.conj())
            else:
                grad_a = torch.matmul(conj_g(), b.mT).conj_physical_()
        if ctx.needs_input_grad[1]:
            if conjugate_operand(a, b.numel()):
                grad_b = torch.matmul(a.mT.conj(), g)
            else:
                grad_b = torch.matmul(a.mT, conj_g()).conj_physical_()
        return grad_a, grad_b


def _drop_lone_units(subs, t, other, out):
    for k in reversed(range(len(subs))):
        if subs[k] not in other and subs[k] not in out and t.shape[k] == 1:
            t, subs = t.squeeze(k), subs[:k] + subs[k + 1:]
    return subs, t


def _sizes(sa, shape_a, sb, shape_b):
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb):
        return None
    sizes = dict(zip(sa, shape_a))
    for c, d in zip(sb, shape_b):
        if sizes.setdefault(c, d) != d:
            return None  # broadcast index: einsum handles it
    return sizes


@functools.lru_cache(maxsize=2048)
def _layout(step, shape_a, stride_a, shape_b, stride_b, wanted):
    """(batch, left free, right free, summed, swap): the group orders that copy the fewest
    elements, in forward and in backward."""
    sa, sb, so = _split(step)
    sizes = dict(zip(sa, shape_a)) | dict(zip(sb, shape_b))
    batch = [c for c in so if c in sa and c in sb]
    summed = [c for c in sa if c in sb and c not in so]
    free_a = [c for c in sa if c not in sb]
    free_b = [c for c in sb if c not in sa]
    groups = (batch, free_a, free_b, summed)
    if 2 * prod(factorial(len(g)) for g in groups) > _MAX_CANDIDATES:
        return tuple(batch), tuple(free_a), tuple(free_b), tuple(summed), False
    strides_a, strides_b = dict(zip(sa, stride_a)), dict(zip(sb, stride_b))
    numel_a, numel_b = prod(shape_a), prod(shape_b)
    numel_out = prod(sizes[c] for c in so)
    best = None
    for pb, pa, pf, ps in itertools.product(*(itertools.permutations(g) for g in groups)):
        for swap in (False, True):
            # the left operand is read as (batch, free, summed), the right one as (batch, summed, free)
            a_groups, b_groups = ([pb, ps, pa], [pb, pf, ps]) if swap else ([pb, pa, ps], [pb, ps, pf])
            left, right = (pf, pa) if swap else (pa, pf)
            cost = (_read_cost(sizes, strides_a, a_groups, numel_a)
                    + _read_cost(sizes, strides_b, b_groups, numel_b)
                    + _result_cost(sizes, pb + left + right, wanted, numel_out))
            if best is None or cost < best[0]:
                best = (cost, (pb, left, right, ps, swap))
    return best[1]


def _read_cost(sizes, strides, groups, numel):
    """Elements copied to read an operand as the (batch, rows, cols) matrix stack ``groups``.

    0: its memory order is exactly that. ``numel``: bmm reads it without a copy (each
    group one stride apart, rows or cols unit-strided), but its gradient comes back in
    the matrix order and is copied into the operand's layout in backward. ``2 numel``:
    copied in forward too.
    """
    merged = []
    for g in groups:
        dims = [c for c in g if sizes[c] != 1]
        for outer, inner in zip(dims, dims[1:]):
            if strides[outer] != strides[inner] * sizes[inner]:
                return 2 * numel
        merged.append(strides[dims[-1]] if dims else None)
    if not (merged[1] in (None, 1) or merged[2] in (None, 1)):
        return 2 * numel
    order = [c for g in groups for c in g if sizes[c] != 1]
    return 0 if order == sorted(order, key=lambda c: -strides[c]) else numel


def _result_cost(sizes, order, wanted, numel):
    """Elements copied because a contiguous result in ``order`` is not laid out as its
    consumer reads it (same scale as :func:`_read_cost`)."""
    if wanted is None:
        return 0
    order = [c for c in order if sizes[c] != 1]
    if wanted[0] == "final":
        return 0 if order == [c for c in wanted[1] if sizes[c] != 1] else 2 * numel
    _, batch, free, summed = wanted
    position = {c: k for k, c in enumerate(order)}
    for g in (batch, free, summed):
        ks = sorted(position[c] for c in g if c in position)
        if ks and ks[-1] - ks[0] != len(ks) - 1:
            return 2 * numel
    if order and order[-1] in batch:
        return 2 * numel
    # batch outermost: the consumer can read it in its own matrix order (see _read_cost)
    n_batch = sum(1 for c in order if c in batch)
    return 0 if all(c in batch for c in order[:n_batch]) else numel
