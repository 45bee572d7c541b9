"""A contraction plan's reported costs against hand counts (docs/spectral_layer.md, the
ContractionPlan attributes): ``flops`` is 8 real operations per complex multiply-add, summed over
the steps, each step's multiply-adds the product of the sizes of every index it touches (a
broadcast index at its full size); ``intermediate_bytes`` is the bytes of every step's result
together, the final output included; ``peak_bytes`` the largest of them."""
import random
from math import prod

import pytest

from neuralop_mp.layers.contraction_planner import plan_contraction


def _hand_counts(plan, sizes):
    """(flops, intermediate_bytes, peak_bytes) of the plan's own steps, counted by hand."""
    flops, total, peak = 0, 0, 0
    for step in plan.steps:
        inputs, output = step.split("->")
        touched = set(inputs.replace(",", ""))
        flops += 8 * prod(sizes[c] for c in touched)
        nbytes = plan.itemsize * prod(sizes[c] for c in output)
        total, peak = total + nbytes, max(peak, nbytes)
    return flops, total, peak


@pytest.mark.parametrize("itemsize", [8, 4])
def test_a_chain_of_three_matrices(itemsize):
    plan = plan_contraction("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], itemsize=itemsize)
    # (ab,bc)->ac first: 24 + 40 multiply-adds; the other order takes 60 + 30 and a larger peak
    assert plan.steps == ("ab,bc->ac", "ac,cd->ad")
    assert plan.flops == 8 * (2 * 3 * 4 + 2 * 4 * 5) == 512
    assert plan.intermediate_bytes == itemsize * (2 * 4 + 2 * 5)
    assert plan.peak_bytes == itemsize * 2 * 5


@pytest.mark.parametrize("shapes", [[(2, 3), (1, 4)], [(2, 1), (3, 4)]])
def test_a_broadcast_index_counts_at_its_full_size(shapes):
    # b has size 3 in one operand and 1 (broadcast) in the other, whichever comes first
    plan = plan_contraction("ab,bc->ac", shapes)
    assert plan.flops == 8 * 2 * 3 * 4
    assert plan.intermediate_bytes == plan.peak_bytes == 8 * 2 * 4


@pytest.mark.parametrize("seed", range(6))
def test_random_chains_report_their_steps_hand_counts(seed):
    rng = random.Random(seed)
    letters = "abcdef"[:rng.randint(3, 6)]  # a chain of len(letters) - 1 matrices
    sizes = {c: rng.randint(2, 7) for c in letters}
    operands = [letters[k:k + 2] for k in range(len(letters) - 1)]
    shapes = [[sizes[c] for c in subs] for subs in operands]
    broadcast = rng.randrange(len(operands))  # one operand broadcast along one of its indices
    shapes[broadcast][rng.randrange(2)] = 1
    # an index's size: its largest in any operand (1 where no operand has more, e.g. a chain end)
    sizes = {c: max(d for subs, shape in zip(operands, shapes) for e, d in zip(subs, shape) if e == c)
             for c in letters}
    itemsize = rng.choice([4, 8])
    plan = plan_contraction(",".join(operands) + f"->{letters[0]}{letters[-1]}", shapes, itemsize=itemsize)
    assert len(plan.steps) == len(operands) - 1
    assert (plan.flops, plan.intermediate_bytes, plan.peak_bytes) == _hand_counts(plan, sizes)
