"""Pairwise contraction order that minimises the largest intermediate, then FLOPs.

The Fourier-domain product of a spectral layer is one einsum over the input
spectrum and the weight operands (one dense tensor, or the core/factors of a
CP, Tucker or TT factorization). Evaluated pairwise, the order decides how large
the intermediate tensors get. opt_einsum's "optimal" path minimises FLOPs; for
TFNO shapes it often reconstructs a large part of the weight first, or carries
the batch dimension through a wide intermediate. In half precision the
intermediates, not the FLOPs, are what we want to keep small, so this planner
minimises the largest intermediate (in bytes) first and FLOPs second.

Algorithm: dynamic programming over subsets of operands, keeping for every subset
the Pareto front of (largest intermediate, FLOPs) over its contraction trees
(exact; the chains have at most ~9 operands, so the 3^n split enumeration is
cheap). From the front of the whole contraction we take the smallest peak among
the trees within a FLOP budget (default 2x the FLOP-optimal count), ties broken by
FLOPs: a pure peak-first order would, e.g., rebuild a CP weight in full to save 6%
of memory at 8x the FLOPs. Plans are cached per (equation, shapes, bytes per
element, budget, peak slack).

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (section on contraction order).
.. [2] Pfeifer, R. N. C., Haegeman, J., Verstraete, F. "Faster identification of
   optimal contraction sequences for tensor networks", Phys. Rev. E 90 (2014).
"""
from dataclasses import dataclass
from functools import lru_cache
from math import prod

from ..vocabulary import check_int_at_least, check_real, is_integer

# real floating point operations per complex multiply-add (4 mul + 4 add)
FLOPS_PER_COMPLEX_MAC = 8
# largest FLOP count accepted for a smaller peak, relative to the FLOP-optimal tree
DEFAULT_FLOP_BUDGET = 2.0


@dataclass(frozen=True)
class ContractionPlan:
    """A pairwise evaluation order of an einsum and what it costs.

    Attributes
    ----------
    equation : str
        The full einsum without whitespace, e.g. ``"bixy,ioxy->boxy"`` (the steps
        are read from it).
    shapes : tuple of tuple of int
        Operand shapes the plan was made for.
    path : tuple of (int, int)
        opt_einsum-style path: at each step contract the operands at these two
        positions of the current operand list, append the result at its end.
    steps : tuple of str
        The two-operand einsum of each step.
    peak_bytes : int
        Bytes of the largest intermediate (the final output included).
    intermediate_bytes : int
        Bytes of all intermediates together (what autograd keeps for backward).
    flops : int
        Real floating point operations (complex multiply-add = 8).
    itemsize : int
        Bytes per complex element the byte counts assume (8: complex64,
        4: (real, imag) pairs in a 16-bit type).
    """

    equation: str
    shapes: tuple
    path: tuple
    steps: tuple
    peak_bytes: int
    intermediate_bytes: int
    flops: int
    itemsize: int

    @property
    def order(self):
        """The pairwise steps, as einsum strings (alias of ``steps``)."""
        return self.steps


_EQUATION_RULE = ("an explicit einsum: operands' indices (letters) separated by ',', then '->' and the "
                  "output's indices, each in some operand and at most once, e.g. 'bixy,ioxy->boxy'")


def _parse(equation):
    """``(inputs, output)`` of an equation :func:`_normalised_equation` accepted."""
    inputs, output = equation.split("->")
    return inputs.split(","), output


@lru_cache(maxsize=512)
def _normalised_equation(equation):
    """``equation`` without whitespace (as einsum reads it; the plan's steps are cut from it),
    or a ValueError naming what is wrong with it."""
    text = "".join(equation.split())
    parts = text.split("->")
    why = None
    if len(parts) != 2:
        why = "no '->'" if len(parts) == 1 else "more than one '->'"
    else:
        inputs, output = _parse(text)
        bad = [c for c in "".join(inputs) + output if not (c.isascii() and c.isalpha())]
        if bad:
            why = f"{bad[0]!r} is no index"
        elif len(inputs) < 2:
            why = "one operand (a plan needs at least two)"
        else:
            missing = [c for c in output if c not in "".join(inputs)]
            repeated = [c for c in output if output.count(c) > 1]
            if missing:
                why = f"output index {missing[0]!r} is in no operand"
            elif repeated:
                why = f"output index {repeated[0]!r} appears {output.count(repeated[0])} times"
    if why:
        raise ValueError(f"Invalid equation={equation!r}: {why}; allowed values: {_EQUATION_RULE}.")
    return text


def _checked_arguments(equation, shapes, itemsize):
    """The normalised equation, the shapes as tuples of ints and the itemsize as an int, or
    an error naming the argument, its value and the allowed values (plan_contraction,
    evaluate_path and flop_optimal_plan take the same three)."""
    if not isinstance(equation, str):
        raise TypeError(f"Invalid equation={equation!r}; allowed values: {_EQUATION_RULE}.")
    equation = _normalised_equation(equation)
    inputs, _ = _parse(equation)
    allowed = f"one shape (a sequence of integers >= 0) per operand of {equation!r}, as many entries as its indices"
    try:
        given = [tuple(s) for s in shapes]
    except TypeError:  # not a sequence of sequences
        raise TypeError(f"Invalid shapes={shapes!r}; allowed values: {allowed}.") from None
    if len(given) != len(inputs):
        raise ValueError(f"Invalid shapes={shapes!r}: {len(given)} shapes for {len(inputs)} operands; "
                         f"allowed values: {allowed}.")
    for subs, shape in zip(inputs, given):
        if len(subs) != len(shape) or not all(is_integer(d) and d >= 0 for d in shape):
            raise ValueError(f"Invalid shapes={shapes!r}: {shape} for operand {subs!r}; allowed values: {allowed}.")
    shapes = tuple(tuple(int(d) for d in s) for s in given)
    return equation, shapes, check_int_at_least("itemsize", itemsize, 1, unit="bytes per complex element")


def _index_sizes(inputs, shapes):
    sizes = {}
    for subs, shape in zip(inputs, shapes):
        if len(subs) != len(shape):
            raise ValueError(f"Operand {subs!r} has {len(shape)} dimensions, expected {len(subs)}.")
        for c, d in zip(subs, shape):
            if sizes.setdefault(c, d) != d and d != 1 and sizes[c] != 1:
                raise ValueError(f"Invalid shapes={shapes!r}: index {c!r} has sizes {sizes[c]} and {d}; allowed "
                                 "values: one size per index (or 1, broadcast).")
            sizes[c] = max(sizes[c], d)
    return sizes


class _Problem:
    """Index bookkeeping for subsets of operands (bitmasks)."""

    def __init__(self, inputs, output, sizes):
        self.inputs, self.output, self.sizes = inputs, output, sizes
        self.n = len(inputs)
        self.full = (1 << self.n) - 1
        self._kept = {}

    def indices(self, mask):
        """Indices present in the operands of ``mask``, in first-appearance order."""
        seen = []
        for k in range(self.n):
            if mask >> k & 1:
                seen.extend(c for c in self.inputs[k] if c not in seen)
        return seen

    def kept(self, mask):
        """Subscripts of the intermediate made of ``mask``: indices still needed outside it."""
        if mask not in self._kept:
            if mask == self.full:
                self._kept[mask] = self.output
            elif mask & (mask - 1) == 0:  # a single input operand
                self._kept[mask] = self.inputs[mask.bit_length() - 1]
            else:
                outside = set(self.output)
                for k in range(self.n):
                    if not mask >> k & 1:
                        outside.update(self.inputs[k])
                self._kept[mask] = "".join(c for c in self.indices(mask) if c in outside)
        return self._kept[mask]

    def numel(self, mask):
        return prod(self.sizes[c] for c in self.kept(mask))

    def pair_flops(self, a, b):
        union = set(self.kept(a)) | set(self.kept(b))
        return FLOPS_PER_COMPLEX_MAC * prod(self.sizes[c] for c in union)

    def splits(self, mask):
        """Unordered splits of ``mask`` into two non-empty parts."""
        low = mask & -mask
        sub = (mask - 1) & mask
        while sub:
            if sub & low:
                yield sub, mask ^ sub
            sub = (sub - 1) & mask


def _pareto(points):
    """Keep the (peak, flops, tree) points no other point beats in both costs."""
    points.sort(key=lambda p: (p[0], p[1]))
    front, best_flops = [], float("inf")
    for p in points:
        if p[1] < best_flops:
            front.append(p)
            best_flops = p[1]
    return front


def _pareto_trees(problem):
    """Pareto front of (largest intermediate numel, flops, tree) over all contraction trees.

    A tree is a leaf mask or ``(left_tree, right_tree, mask)``.
    """
    masks = sorted(range(1, problem.full + 1), key=lambda m: bin(m).count("1"))
    front = {}
    for m in masks:
        if m & (m - 1) == 0:
            front[m] = [(0, 0, m)]
            continue
        size, points = problem.numel(m), []
        for a, b in problem.splits(m):
            cost = problem.pair_flops(a, b)
            for pa, fa, ta in front[a]:
                for pb, fb, tb in front[b]:
                    points.append((max(size, pa, pb), fa + fb + cost, (ta, tb, m)))
        front[m] = _pareto(points)
    return front[problem.full]


def _choose(front, flop_budget, peak_slack=1.0):
    """Smallest peak among trees within ``flop_budget`` x the fewest FLOPs; ties: fewer FLOPs.

    With ``peak_slack`` > 1: the fewest FLOPs among those trees whose peak is at most
    ``peak_slack`` x that smallest peak (ties: smaller peak).
    """
    min_flops = min(f for _, f, _ in front)
    limit = float("inf") if flop_budget is None else flop_budget * min_flops
    admissible = [p for p in front if p[1] <= limit]
    min_peak = min(p[0] for p in admissible)
    return min((p for p in admissible if p[0] <= peak_slack * min_peak), key=lambda p: (p[1], p[0]))[2]


def _plan_from_tree(problem, equation, shapes, itemsize, tree):
    order = []

    def visit(t):
        if isinstance(t, int):
            return t
        a, b = visit(t[0]), visit(t[1])
        order.append((a, b, t[2]))
        return t[2]

    visit(tree)
    return _plan_from_steps(problem, equation, shapes, itemsize, order)


def _plan_from_steps(problem, equation, shapes, itemsize, order):
    current = [1 << k for k in range(problem.n)]
    path, steps, peak, total, flops = [], [], 0, 0, 0
    for a, b, m in order:
        i, j = current.index(a), current.index(b)
        path.append((i, j))
        for k in sorted((i, j), reverse=True):
            current.pop(k)
        current.append(m)
        steps.append(f"{problem.kept(a)},{problem.kept(b)}->{problem.kept(m)}")
        nbytes = problem.numel(m) * itemsize
        peak, total = max(peak, nbytes), total + nbytes
        flops += problem.pair_flops(a, b)
    return ContractionPlan(
        equation, tuple(map(tuple, shapes)), tuple(path), tuple(steps), peak, total, flops, itemsize
    )


@lru_cache(maxsize=512)
def _plan_cached(equation, shapes, itemsize, flop_budget, peak_slack):
    # the arguments as _checked_plan checked them: equation normalised, shapes tuples of ints
    inputs, output = _parse(equation)
    problem = _Problem(inputs, output, _index_sizes(inputs, shapes))
    tree = _choose(_pareto_trees(problem), flop_budget, peak_slack)
    return _plan_from_tree(problem, equation, shapes, itemsize, tree)


def _checked_plan(equation, shapes, itemsize, flop_budget, peak_slack):
    """:func:`plan_contraction` of arguments checked and normalised first (so that a spaced and an
    unspaced equation, or numpy and Python numbers, share one plan)."""
    equation, shapes, itemsize = _checked_arguments(equation, shapes, itemsize)
    if flop_budget is not None:
        flop_budget = check_real("flop_budget", flop_budget, low=1, allowed="None, or a finite number >= 1")
    peak_slack = check_real("peak_slack", peak_slack, low=1)
    return _plan_cached(equation, shapes, itemsize, flop_budget, peak_slack)


_PLAIN_REALS = (int, float)


def _plain_key(equation, shapes, itemsize, flop_budget, peak_slack):
    """The arguments as a cache key where all are plain Python values (a str, ints, floats, None),
    else None. Only those: as keys, True and 2.0 equal 1 and 2, and a tensor equals itself
    after an in-place change, so such a value could be found under a valid call's entry."""
    if (type(equation) is not str or type(itemsize) is not int or type(peak_slack) not in _PLAIN_REALS
            or flop_budget is not None and type(flop_budget) not in _PLAIN_REALS):
        return None
    # sequences only, outside and in (torch.Size is a tuple): an iterator is read once, by the checks
    if not isinstance(shapes, (list, tuple)) or not all(isinstance(shape, (list, tuple)) for shape in shapes):
        return None
    shapes = tuple(map(tuple, shapes))
    if not all(type(d) is int for shape in shapes for d in shape):
        return None
    return equation, shapes, itemsize, flop_budget, peak_slack


# plain arguments as given -> their plan; forward asks once per layer per step
_PLANS_AS_GIVEN = {}
_PLANS_AS_GIVEN_MAX = 512


def plan_contraction(equation, shapes, itemsize=8, flop_budget=DEFAULT_FLOP_BUDGET, peak_slack=1.0):
    """Pairwise order of ``equation`` minimising the largest intermediate, then FLOPs.

    Parameters
    ----------
    equation : str
        Explicit einsum (with ``->``) of at least two operands; indices are letters,
        each output index in some operand and at most once. Whitespace is ignored (the
        plan holds the equation without it).
    shapes : sequence of sequence of int
        Operand shapes: one per operand, one integer >= 0 per index.
    itemsize : int, default 8
        Bytes per complex element, >= 1 (8 for complex64, 4 for a 16-bit real/imag pair).
    flop_budget : float or None, default 2.0
        Only trees with at most ``flop_budget`` times the fewest possible FLOPs are
        considered; ``None`` minimises the peak whatever the FLOPs. Without a budget a
        CP weight is typically rebuilt in full to save a few percent of memory at
        ~8x the FLOPs.
    peak_slack : float, default 1.0
        Largest intermediate accepted for fewer FLOPs, relative to the smallest
        peak within the budget: among the trees within it, the fewest FLOPs win.
        1.0 minimises the peak. Where the intermediates are small against the
        rest of a step (CPU, batch 1), a few percent of memory can buy ~10% fewer
        multiply-adds (TFNO 64^2 batch 1: 4.6% larger peak, 12% fewer).

    Returns
    -------
    ContractionPlan
        Cached per (equation, shapes, itemsize, flop_budget, peak_slack).

    Raises
    ------
    TypeError, ValueError
        Naming the argument, its value and the allowed values.
    """
    # The checks cost several times the look-up (about 10 us against 2), so plain arguments
    # seen before skip them. A refused call is never stored: it is checked, and refused, every time.
    key = _plain_key(equation, shapes, itemsize, flop_budget, peak_slack)
    plan = None if key is None else _PLANS_AS_GIVEN.get(key)
    if plan is None:
        plan = _checked_plan(equation, shapes, itemsize, flop_budget, peak_slack)
        if key is not None:
            if len(_PLANS_AS_GIVEN) >= _PLANS_AS_GIVEN_MAX:
                _PLANS_AS_GIVEN.clear()  # the plans stay in _plan_cached's own cache
            _PLANS_AS_GIVEN[key] = plan
    return plan


def _checked_path(path, n):
    """``path`` as a tuple of ``(i, j)`` int pairs if it contracts ``n`` operands to one: ``n - 1``
    steps, each two different positions of the operand list at that step (``n - k`` long at
    step ``k``, counted from 0); else a ValueError naming the path and the step."""
    allowed = (f"{n - 1} steps (one per pairwise contraction of the {n} operands), each two different "
               "positions in the current operand list (n - k entries at step k, from 0)")
    try:
        steps = [tuple(pair) for pair in path]
    except TypeError:
        raise ValueError(f"Invalid path={path!r}; allowed values: {allowed}.") from None
    if len(steps) != n - 1:
        raise ValueError(f"Invalid path={path!r}: {len(steps)} step(s); allowed values: {allowed}.")
    for k, pair in enumerate(steps):
        if not (len(pair) == 2 and all(is_integer(i) and 0 <= i < n - k for i in pair) and pair[0] != pair[1]):
            raise ValueError(f"Invalid path={path!r}: step {k} {pair!r} (positions 0..{n - k - 1} at that step); "
                             f"allowed values: {allowed}.")
    return tuple((int(i), int(j)) for i, j in steps)


def _checked_problem(equation, shapes, itemsize):
    """The checked arguments (:func:`_checked_arguments`) and their :class:`_Problem`, whose index
    sizes are checked to agree across the operands."""
    equation, shapes, itemsize = _checked_arguments(equation, shapes, itemsize)
    inputs, output = _parse(equation)
    return equation, shapes, itemsize, _Problem(inputs, output, _index_sizes(inputs, shapes))


def evaluate_path(equation, shapes, path, itemsize=8):
    """The :class:`ContractionPlan` of a given opt_einsum-style ``path`` (for comparisons).

    ``equation``, ``shapes`` and ``itemsize`` as :func:`plan_contraction` takes them;
    ``path`` holds ``len(shapes) - 1`` steps of two different in-range positions.
    """
    equation, shapes, itemsize, problem = _checked_problem(equation, shapes, itemsize)
    current = [1 << k for k in range(problem.n)]
    order = []
    for i, j in _checked_path(path, problem.n):
        a, b = current[i], current[j]
        for k in sorted((i, j), reverse=True):
            current.pop(k)
        current.append(a | b)
        order.append((a, b, a | b))
    return _plan_from_steps(problem, equation, shapes, itemsize, order)


def flop_optimal_plan(equation, shapes, itemsize=8):
    """opt_einsum's FLOP-optimal path for the same contraction, with our cost accounting.

    The arguments as :func:`plan_contraction` takes them, checked before opt_einsum sees them
    (it reads an equation without '->' as implicit, and names neither argument nor rule).
    """
    import opt_einsum

    equation, shapes, itemsize, _ = _checked_problem(equation, shapes, itemsize)
    path, _ = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize="optimal")
    return evaluate_path(equation, shapes, path, itemsize)
