"""The dense weight rebuilt from its factors, for the mode-batched product, and when that pays.

A factorized (CP, Tucker, TT) weight can take part in the spectral product in two
ways: its factors contracted with the input pairwise (:mod:`.contraction_planner`),
or first multiplied out to the dense weight, which then goes through the one real
matmul batched over modes of :mod:`.mode_matmul`. Where the pairwise order itself
multiplies the weight out (no cheaper order exists; with 64 channels and 32x32
modes: CP from batch 32, TT at rank 0.5 at every batch and at rank 0.1 from batch 8),
its last step is a complex einsum with the whole weight, which
torch runs on CPU as one small matmul per mode; the rebuild + mode-batched matmul
does the same multiply-adds, and saved no more for backward at the sizes timed (TT rank
0.5 below: 20.8 vs 29.4 MiB). Where the pairwise plan needs fewer multiply-adds
(Tucker weights, whose core is contracted with the input factor by factor), it was
faster in every case timed: the rebuild's large matmuls are not faster per
multiply-add by enough to make up for the extra ones.

The rule (:func:`rebuild_pays`) compares multiply-add counts only, so the choice is
the same on every run. Timed on one CPU thread (AVX2, 2026-12-03; one spectral layer,
64 channels, 32x32 modes, 64^2 input, forward + backward; rebuilt time over pairwise
time, "mixed" bfloat16 / "full"): Tucker rank 0.1, whose rebuild + dense product costs
5.2x / 2.6x / 1.35x / 1.03x the pairwise multiply-adds at batch 1 / 8 / 32 / 128:
6.9 / 2.8 / 1.6 / 1.1x in "mixed", 6.3 / 2.7 / 1.4 / 1.1x in "full". Equal counts:
TT rank 0.5 batch 1 0.87 / 0.89x; TT rank 0.1 batch 8 1.18 / 0.92x; CP rank 0.1
batch 32 1.01 / 1.05x. At equal counts the rebuilt path was faster or within the
run-to-run spread of the shared machine in all but one case, and it saved no more
for backward, so equal counts rebuild.
"""
from math import prod

import torch

from .complex_half import run_plan
from .contraction_planner import FLOPS_PER_COMPLEX_MAC, _index_sizes, _parse, plan_contraction
from .weight_contractions import rebuild_equation, spectral_equation


def rebuild_plan(kind, operand_shapes):
    """The :class:`~.contraction_planner.ContractionPlan` that rebuilds the dense
    (non-separable) weight ``(in, out, *modes)`` from complex64 operands of
    ``operand_shapes`` (CP weights and factors, Tucker core and factors, TT cores)."""
    n_modes = len(operand_shapes) if kind == "tt" else len(operand_shapes) - 1
    return plan_contraction(rebuild_equation(kind, n_modes), operand_shapes, 8)


def rebuild_dense_weight(kind, operands):
    """The dense complex64 weight ``(in, out, *modes)`` of a factorized weight whose
    einsum operands (:func:`~.weight_contractions.weight_operands`) are ``operands``.

    Evaluated pairwise in the planner's order, in complex64 (16-bit stored factors are
    widened first); autograd carries the weight's gradient back to the factors.
    """
    wide = [op if op.dtype == torch.complex64 else op.to(torch.complex64) for op in operands]
    plan = rebuild_plan(kind, [tuple(op.shape) for op in wide])
    return run_plan(plan, wide, real_form=False)


def rebuild_pays(kind, shapes, itemsize, peak_slack=1.0):
    """Whether to rebuild the dense weight instead of running the pairwise plan, and why.

    Parameters
    ----------
    kind : {"cp", "tucker", "tt"}
    shapes : tuple of tuple of int
        The kept spectrum ``(batch, in, *modes)``, then the weight operands.
    itemsize : int
        Bytes per complex element of the pairwise plan (8 or 4).
    peak_slack : float
        The pairwise plan's ``peak_slack`` (see :func:`~.contraction_planner.plan_contraction`).

    Returns
    -------
    (bool, str)
        True where rebuilding (the rebuild's multiply-adds plus the dense product's)
        costs no more multiply-adds than the pairwise plan; the counts, in words.
    """
    if kind not in ("cp", "tucker", "tt"):
        raise ValueError(f"Invalid kind={kind!r}; allowed values: 'cp', 'tucker', 'tt'.")
    x_shape, operand_shapes = shapes[0], shapes[1:]
    pairwise = plan_contraction(spectral_equation(kind, len(x_shape)), shapes, itemsize, peak_slack=peak_slack)
    rebuild = rebuild_plan(kind, operand_shapes)
    batch, n_in, *modes = x_shape
    n_out = _dense_shape(rebuild)[1]
    dense = batch * n_in * n_out * prod(modes)
    macs = lambda flops: flops / FLOPS_PER_COMPLEX_MAC / 1e6  # noqa: E731
    counts = (f"rebuild {macs(rebuild.flops):.3g} M + dense product {dense / 1e6:.3g} M complex multiply-adds, "
              f"pairwise plan {macs(pairwise.flops):.3g} M")
    if rebuild.flops + FLOPS_PER_COMPLEX_MAC * dense <= pairwise.flops:
        return True, (f"rebuilt dense, then one matmul batched over modes: no more multiply-adds than the pairwise "
                      f"plan ({counts})")
    return False, f"pairwise: fewer multiply-adds than rebuilding the dense weight ({counts})"


def _dense_shape(plan):
    """Shape of the dense weight a rebuild plan produces (its output indices' sizes)."""
    inputs, output = _parse(plan.equation)
    sizes = _index_sizes(inputs, plan.shapes)
    return tuple(sizes[c] for c in output)
