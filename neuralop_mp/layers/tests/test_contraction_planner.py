"""Contraction planner: exact results, optimality, and the memory gap to opt_einsum's FLOP-optimal path."""
import itertools

import pytest
import torch
from tltorch.factorized_tensors.core import FactorizedTensor

from neuralop_mp.layers.complex_half import run_plan
from neuralop_mp.layers.contraction_planner import evaluate_path, flop_optimal_plan, plan_contraction
from neuralop_mp.layers.weight_contractions import spectral_equation, weight_operands


def _tfno_shapes(factorization, batch, hidden=64, modes=(32, 17), rank=0.1, separable=False):
    shape = (hidden, *modes) if separable else (hidden, hidden, *modes)
    weight = FactorizedTensor.new(shape, rank=rank, factorization=factorization, dtype=torch.cfloat)
    eq = spectral_equation(factorization, 4, separable)
    return eq, [(batch, hidden, *modes)] + [tuple(op.shape) for op in weight_operands(weight, factorization)]


def _all_paths(n):
    """Every pairwise path over n operands (opt_einsum convention)."""
    if n == 1:
        yield []
        return
    for i, j in itertools.combinations(range(n), 2):
        for rest in _all_paths(n - 1):
            yield [(i, j)] + rest


@pytest.mark.parametrize("kind", ["dense", "cp", "tucker", "tt"])
@pytest.mark.parametrize("separable", [False, True])
def test_plan_evaluates_to_the_einsum(kind, separable):
    torch.manual_seed(0)
    shape = (5, 4, 3) if separable else (5, 5, 4, 3)
    eq = spectral_equation(kind, 4, separable)
    if kind == "dense":
        operands = [torch.randn(*shape, dtype=torch.cdouble)]
    else:
        w = FactorizedTensor.new(shape, rank=0.7, factorization=kind, dtype=torch.cdouble)
        w.normal_(0, 1)
        operands = [t.detach() for t in weight_operands(w, kind)]
    x = torch.randn(2, 5, 4, 3, dtype=torch.cdouble)
    plan = plan_contraction(eq, [x.shape] + [t.shape for t in operands])
    expected = torch.einsum(eq, x, *operands)
    assert torch.allclose(run_plan(plan, [x] + operands, real_form=False), expected, rtol=1e-12, atol=1e-12)


def test_plan_is_optimal_by_brute_force():
    """Over all 2700 pairwise orders of a 2D Tucker contraction: no order has a smaller
    peak within the FLOP budget, and none with the same peak has fewer FLOPs."""
    eq, shapes = _tfno_shapes("tucker", batch=8, hidden=16, modes=(8, 5), rank=0.5)
    ours = plan_contraction(eq, shapes, itemsize=4)
    plans = [evaluate_path(eq, shapes, p, itemsize=4) for p in _all_paths(len(shapes))]
    min_flops = min(p.flops for p in plans)
    admissible = [p for p in plans if p.flops <= 2 * min_flops]
    best = min(admissible, key=lambda p: (p.peak_bytes, p.flops))
    assert (ours.peak_bytes, ours.flops) == (best.peak_bytes, best.flops)
    unconstrained = plan_contraction(eq, shapes, itemsize=4, flop_budget=None)
    assert unconstrained.peak_bytes == min(p.peak_bytes for p in plans)


def test_peak_slack_takes_fewest_flops_within_the_slack_by_brute_force():
    """Over all pairwise orders of a 2D Tucker contraction at batch 1: with peak_slack s,
    the plan has the fewest FLOPs among the orders within the FLOP budget whose peak is
    at most s x the smallest such peak; slack 1.0 is the peak-first plan."""
    eq, shapes = _tfno_shapes("tucker", batch=1, hidden=16, modes=(8, 5), rank=0.5)
    plans = [evaluate_path(eq, shapes, p, itemsize=4) for p in _all_paths(len(shapes))]
    admissible = [p for p in plans if p.flops <= 2 * min(q.flops for q in plans)]
    min_peak = min(p.peak_bytes for p in admissible)
    for slack in (1.0, 1.1, 1.5, 3.0):
        ours = plan_contraction(eq, shapes, itemsize=4, peak_slack=slack)
        within = [p for p in admissible if p.peak_bytes <= slack * min_peak]
        best = min(within, key=lambda p: (p.flops, p.peak_bytes))
        assert (ours.peak_bytes, ours.flops) == (best.peak_bytes, best.flops), slack
    assert plan_contraction(eq, shapes, itemsize=4, peak_slack=1.0) is plan_contraction(eq, shapes, itemsize=4)
    for bad in (0.9, "1.1", None):
        with pytest.raises(ValueError, match="peak_slack"):
            plan_contraction(eq, shapes, 4, peak_slack=bad)


def test_peak_slack_on_tfno_batch1_trades_5_percent_peak_for_12_percent_fewer_flops():
    """The CPU float32 setting (1.1) on TFNO 64^2 batch 1 (64 channels, 32x17 modes,
    Tucker rank 0.1): opt_einsum's FLOP count, a peak within 10% of the smallest."""
    eq, shapes = _tfno_shapes("tucker", batch=1)
    peak_first = plan_contraction(eq, shapes, itemsize=4)
    slack = plan_contraction(eq, shapes, itemsize=4, peak_slack=1.1)
    assert slack.flops == flop_optimal_plan(eq, shapes, itemsize=4).flops
    assert slack.flops <= 0.9 * peak_first.flops
    assert peak_first.peak_bytes < slack.peak_bytes <= 1.1 * peak_first.peak_bytes


@pytest.mark.parametrize("factorization", ["tucker", "cp", "tt"])
@pytest.mark.parametrize("batch", [4, 32])
def test_peak_never_above_opt_einsum_and_flops_within_budget(factorization, batch):
    eq, shapes = _tfno_shapes(factorization, batch)
    ours = plan_contraction(eq, shapes, itemsize=4)
    flop_optimal = flop_optimal_plan(eq, shapes, itemsize=4)
    assert ours.peak_bytes <= flop_optimal.peak_bytes
    assert ours.flops <= 2 * flop_optimal.flops


def test_memory_difference_on_tfno_cp_shapes():
    """TFNO-CP, 64 channels, 32x32 modes, rank 0.1, batch 32: half the largest intermediate."""
    eq, shapes = _tfno_shapes("cp", batch=32)
    ours = plan_contraction(eq, shapes, itemsize=4)
    flop_optimal = flop_optimal_plan(eq, shapes, itemsize=4)
    print(f"peak: ours {ours.peak_bytes / 2**20:.1f} MiB, opt_einsum {flop_optimal.peak_bytes / 2**20:.1f} MiB; "
          f"GFLOP: ours {ours.flops / 1e9:.2f}, opt_einsum {flop_optimal.flops / 1e9:.2f}")
    assert ours.peak_bytes <= 0.55 * flop_optimal.peak_bytes


def test_plans_are_cached_and_bad_budget_rejected():
    eq, shapes = _tfno_shapes("tucker", batch=4)
    assert plan_contraction(eq, shapes, 4) is plan_contraction(eq, [list(s) for s in shapes], 4)
    with pytest.raises(ValueError, match="flop_budget=0.5"):
        plan_contraction(eq, shapes, 4, flop_budget=0.5)
    with pytest.raises(ValueError, match="operands"):
        plan_contraction(eq, shapes[:2], 4)
