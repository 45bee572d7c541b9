"""Review mends of the contraction planner's input checks and of ``n_modes`` set at run time:
a wrong ``n_modes`` refused where it is set, ``contraction_plan`` refusing what forward refuses,
``plan_contraction``/``evaluate_path`` naming a bad argument, an equation with spaces that runs,
and the docs' numbers on the FLOP budget's cutoff."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.layers import contraction_planner
from neuralop_mp.layers.complex_half import run_plan
from neuralop_mp.layers.contraction_planner import evaluate_path, plan_contraction
from neuralop_mp.layers.pairwise_matmul import consumer_layouts
from neuralop_mp.layers.path_report import model_product_paths
from neuralop_mp.layers.product_paths import MODE_BATCHED, REBUILT, choose_product_path
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.peak_memory import PeakTensorBytes

DOCS = Path(__file__).resolve().parents[3] / "docs" / "spectral_layer.md"


# ----------------------------------------------------------------- n_modes at run time
@pytest.mark.parametrize("bad", [(8, 8, 8), (-2, 4), (8,), 8, (0, 4), (4.5, 4), (True, 4), "88", None])
def test_n_modes_set_at_run_time_follows_the_constructors_rule(bad):
    """One integer >= 1 per spatial axis: upstream's setter took any of these, and forward then
    zipped the sizes with the modes (a wrong output for (8, 8, 8), no mode on an axis for
    (-2, 4), a shape error naming no n_modes for (8,))."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8))
    x = torch.randn(2, 4, 16, 16)
    before = layer(x)
    stored = list(layer.n_modes)
    with pytest.raises(ValueError, match=re.escape(f"Invalid n_modes={bad!r}; allowed values: one integer >= 1 "
                                                   "per spatial dimension of this 2-D layer (2 integers).")):
        layer.n_modes = bad
    assert list(layer.n_modes) == stored  # nothing was set
    assert torch.equal(layer(x), before)


def test_n_modes_set_at_run_time_takes_numpy_integers_and_a_1d_int():
    layer = MixedPrecisionSpectralConv(2, 2, (8, 8))
    layer.n_modes = (np.int64(6), np.int64(6))
    assert layer.n_modes == [6, 4]  # as upstream stores them: the last halved, plus one
    line = MixedPrecisionSpectralConv(2, 2, 8)
    line.n_modes = 6
    assert line.n_modes == [4]
    assert line(torch.randn(1, 2, 16)).shape == (1, 2, 16)


def test_the_constructors_n_modes_message_claims_no_limit_on_the_dimensions():
    """It said "(1 to 3 dimensions)", which nothing enforces: a 4-D layer builds and runs."""
    with pytest.raises(ValueError, match=re.escape("Invalid n_modes=(0, 4); allowed values: one integer >= 1 per "
                                                   "spatial dimension.") + "$"):
        MixedPrecisionSpectralConv(2, 2, (0, 4))
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4, 4, 4))
    assert layer(torch.randn(1, 2, 6, 6, 6, 6)).shape == (1, 2, 6, 6, 6, 6)


def test_incremental_mode_growth_still_matches_upstream():
    """Upstream's incremental trainer (loss gap) grows ``n_modes`` by one up to ``max_n_modes``
    through the setter: every step still runs, as upstream's layer with the same weights does
    (at even counts: an odd count below the even max differs by design, _weight_mode_slices)."""
    from neuralop.models import FNO
    from neuralop.training.incremental import IncrementalFNOTrainer

    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=4,
                n_layers=1, conv_module=MixedPrecisionSpectralConv)
    trainer = IncrementalFNOTrainer(model, n_epochs=1, incremental_loss_gap=True)
    conv = model.fno_blocks.convs[0]
    reference = SpectralConv(4, 4, (4, 4), max_n_modes=(8, 8))
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 16, 16)
    seen = []
    for _ in range(6):
        trainer.loss_gap(1.0)  # equal losses: one more mode each time, until max_n_modes
        seen.append(conv.n_modes[0])
        y = conv(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
        if seen[-1] % 2 == 0:
            reference.n_modes = (seen[-1],) * 2
            assert torch.allclose(y, reference(x), rtol=1e-4, atol=1e-5)
    assert seen == [4, 5, 6, 7, 8, 8]


# ------------------------------------------------------------------ contraction_plan()
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 4, 16), (2, 4, 16, 16, 16), (2, 4, 0, 16)])
def test_contraction_plan_refuses_what_forward_refuses(shape):
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8))
    with pytest.raises(ValueError) as from_forward:
        layer(torch.zeros(shape))
    with pytest.raises(ValueError) as from_plan:
        layer.contraction_plan(shape)
    assert str(from_plan.value) == str(from_forward.value)


@pytest.mark.parametrize("shape", [(2, 4, -16, 16), (2, 4, 16.0, 16), "2,4,16,16", (-1, 4, 16, 16)])
def test_contraction_plan_refuses_what_is_no_shape(shape):
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8))
    with pytest.raises(ValueError, match=re.escape(f"Invalid x_shape={shape!r}; allowed values: a sequence of "
                                                   "integers, (batch, 4, d, d) with every d >= 1.")):
        layer.contraction_plan(shape)


def test_contraction_plan_still_plans_a_good_shape():
    layer = MixedPrecisionSpectralConv(4, 4, (8, 8), factorization="tucker", implementation="factorized")
    plan = layer.contraction_plan(torch.Size([2, 4, 16, 16]))
    assert plan.shapes[0] == (2, 4, 8, 5)
    assert layer.contraction_plan((np.int64(2), 4, 16, 16)) is plan


# ------------------------------------------------------------------- plan_contraction
EQ, SHAPES = "bi,ij->bj", ((2, 3), (3, 4))


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("bi,ij", SHAPES), {}, ValueError, "Invalid equation='bi,ij': no '->'"),
    (("bi,ij->bj->b", SHAPES), {}, ValueError, "Invalid equation='bi,ij->bj->b': more than one '->'"),
    (("bi,ij->bk", SHAPES), {}, ValueError, "Invalid equation='bi,ij->bk': output index 'k' is in no operand"),
    (("bi,ij->bjj", SHAPES), {}, ValueError, "Invalid equation='bi,ij->bjj': output index 'j' appears 2 times"),
    (("b.,.j->bj", SHAPES), {}, ValueError, "Invalid equation='b.,.j->bj': '.' is no index"),
    (("bi->b", ((2, 3),)), {}, ValueError, "Invalid equation='bi->b': one operand"),
    ((None, SHAPES), {}, TypeError, "Invalid equation=None"),
    ((EQ, ((2, -3), (-3, 4))), {}, ValueError, "Invalid shapes=((2, -3), (-3, 4)): (2, -3) for operand 'bi'"),
    ((EQ, ((2.7, 3), (3, 4))), {}, ValueError, "Invalid shapes=((2.7, 3), (3, 4)): (2.7, 3) for operand 'bi'"),
    ((EQ, ((2, 3, 1), (3, 4))), {}, ValueError, "Invalid shapes=((2, 3, 1), (3, 4)): (2, 3, 1) for operand 'bi'"),
    ((EQ, ((2, 3),)), {}, ValueError, "Invalid shapes=((2, 3),): 1 shapes for 2 operands"),
    ((EQ, ((2, 3), (5, 4))), {}, ValueError, "Invalid shapes=((2, 3), (5, 4)): index 'i' has sizes 3 and 5"),
    ((EQ, 7), {}, TypeError, "Invalid shapes=7"),
    ((EQ, SHAPES), {"flop_budget": "2"}, TypeError, "Invalid flop_budget='2'; allowed values: None, or a finite"),
    ((EQ, SHAPES), {"itemsize": 0}, ValueError, "Invalid itemsize=0; allowed values: integers >= 1"),
    ((EQ, SHAPES), {"itemsize": -8}, ValueError, "Invalid itemsize=-8"),
    ((EQ, SHAPES), {"itemsize": 2.9}, TypeError, "Invalid itemsize=2.9"),
    ((EQ, SHAPES), {"peak_slack": True}, TypeError, "Invalid peak_slack=True; allowed values: finite numbers >= 1"),
])
def test_plan_contraction_names_the_bad_argument(args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        plan_contraction(*args, **kwargs)


def test_plan_contraction_takes_numpy_numbers_and_empty_axes():
    """A numpy real slack and numpy integer sizes are numbers (np.float32(1.1) was refused while
    True passed); a size 0 (an empty batch) plans as it runs."""
    plan = plan_contraction(EQ, ((np.int64(2), 3), (3, 4)), np.int64(4), flop_budget=np.float64(2),
                            peak_slack=np.float32(1.1))
    assert plan is plan_contraction(EQ, SHAPES, 4, peak_slack=float(np.float32(1.1)))
    assert (plan.shapes, plan.itemsize, plan.peak_bytes) == (SHAPES, 4, 2 * 4 * 4)
    assert plan_contraction(EQ, ((0, 3), (3, 4))).peak_bytes == 0


def test_an_equation_with_spaces_is_planned_and_runs():
    """The planner read "abc,bdc -> adc" without its spaces but stored it as given, and
    run_plan then failed with KeyError ' ' on the output it cut from it."""
    plan = plan_contraction("abc, bdc -> adc", ((2, 3, 4), (3, 5, 4)))
    assert plan.equation == "abc,bdc->adc"
    assert plan is plan_contraction("abc,bdc->adc", ((2, 3, 4), (3, 5, 4)))
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4, dtype=torch.complex64), torch.randn(3, 5, 4, dtype=torch.complex64)
    assert torch.allclose(run_plan(plan, [a, b], real_form=False), torch.einsum("abc,bdc->adc", a, b), atol=1e-5)
    assert evaluate_path(" ab ,bc->ac", ((2, 3), (3, 4)), [(0, 1)]).equation == "ab,bc->ac"


def test_a_repeated_plan_skips_the_checks_and_a_bad_call_is_refused_every_time(monkeypatch):
    """Forward asks for its plan once per layer per step: the checks (twice the look-up's cost)
    run on the first call only. A refused call is never stored, and values that equal a stored
    valid call's (True == 1, 1.0 == 1, a tensor changed in place) are still refused."""
    checked = []
    real = contraction_planner._checked_arguments
    monkeypatch.setattr(contraction_planner, "_checked_arguments", lambda *a: checked.append(a) or real(*a))
    shapes = [torch.Size([1, 7]), torch.Size([7, 13])]  # as forward passes them
    plan = plan_contraction(EQ, shapes, 1, flop_budget=1, peak_slack=1)
    assert len(checked) == 1
    for _ in range(3):
        assert plan_contraction(EQ, shapes, 1, flop_budget=1, peak_slack=1) is plan
        assert plan_contraction(EQ, ((1, 7), (7, 13)), 1, flop_budget=1, peak_slack=1) is plan
    assert len(checked) == 1
    assert plan_contraction(EQ, iter(shapes), 1, flop_budget=1, peak_slack=1) is plan  # read once
    slack = torch.tensor(1.0)
    assert plan_contraction(EQ, shapes, 1, flop_budget=1, peak_slack=slack) is plan  # planned, not stored
    slack.fill_(0.5)
    bad = [({"shapes": ((True, 7), (7, 13))}, ValueError, "Invalid shapes=((True, 7), (7, 13))"),
           ({"shapes": ((1.0, 7), (7, 13))}, ValueError, "Invalid shapes=((1.0, 7), (7, 13))"),
           ({"itemsize": True}, TypeError, "Invalid itemsize=True"),
           ({"itemsize": 1.0}, TypeError, "Invalid itemsize=1.0"),
           ({"flop_budget": True}, TypeError, "Invalid flop_budget=True"),
           ({"peak_slack": True}, TypeError, "Invalid peak_slack=True"),
           ({"peak_slack": slack}, ValueError, "Invalid peak_slack=tensor(0.5000)"),
           ({"shapes": ((1, 7), (7, -13))}, ValueError, "Invalid shapes=((1, 7), (7, -13))")]
    for change, error, message in bad:
        arguments = {"shapes": shapes, "itemsize": 1, "flop_budget": 1, "peak_slack": 1, **change}
        for _ in range(2):  # refused each time
            with pytest.raises(error, match=re.escape(message)):
                plan_contraction(EQ, **arguments)


@pytest.mark.parametrize("args, error, message", [
    (("bi,ij", SHAPES), ValueError, "Invalid equation='bi,ij': no '->'"),
    ((None, SHAPES), TypeError, "Invalid equation=None"),
    (("bi,ij->bk", SHAPES), ValueError, "Invalid equation='bi,ij->bk': output index 'k' is in no operand"),
    ((EQ, ((2, 3),)), ValueError, "Invalid shapes=((2, 3),): 1 shapes for 2 operands"),
    ((EQ, ((2, 3), (5, 4))), ValueError, "Invalid shapes=((2, 3), (5, 4)): index 'i' has sizes 3 and 5"),
    ((EQ, SHAPES, 0), ValueError, "Invalid itemsize=0"),
])
def test_flop_optimal_plan_checks_its_arguments_before_opt_einsum(monkeypatch, args, error, message):
    """opt_einsum read 'bi,ij' as implicit, failed with KeyError 4 on None, and named neither
    argument nor rule on a wrong count or mismatched sizes."""
    import opt_einsum

    def not_reached(*args, **kwargs):
        raise AssertionError("opt_einsum was asked before the checks")

    monkeypatch.setattr(opt_einsum, "contract_path", not_reached)
    with pytest.raises(error, match=re.escape(message)):
        contraction_planner.flop_optimal_plan(*args)


def test_flop_optimal_plan_still_plans_a_spaced_equation():
    plan = contraction_planner.flop_optimal_plan("ab, bc ,cd->ad", SHAPES3)
    assert plan.equation == EQ3
    assert plan == contraction_planner.flop_optimal_plan(EQ3, SHAPES3)


# ------------------------------------------------------------------------ evaluate_path
EQ3, SHAPES3 = "ab,bc,cd->ad", ((2, 3), (3, 4), (4, 5))


@pytest.mark.parametrize("path, message", [
    ([(0, 1)], "Invalid path=[(0, 1)]: 1 step(s); allowed values: 2 steps"),
    ([(0, 1), (0, 1), (0, 1)], "3 step(s)"),
    ([(0, 0), (0, 1)], "step 0 (0, 0) (positions 0..2 at that step)"),
    ([(0, 5), (0, 1)], "step 0 (0, 5)"),
    ([(0, 1), (0, 2)], "step 1 (0, 2) (positions 0..1 at that step)"),
    ([(0, -1), (0, 1)], "step 0 (0, -1)"),
    ([(0, 1, 2), (0, 1)], "step 0 (0, 1, 2)"),
    ([(0, 1.0), (0, 1)], "step 0 (0, 1.0)"),
    (5, "Invalid path=5"),
])
def test_evaluate_path_refuses_a_path_that_is_no_pairwise_contraction(path, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate_path(EQ3, SHAPES3, path)


def test_evaluate_path_still_evaluates_a_good_path():
    plan = evaluate_path(EQ3, SHAPES3, [(1, 2), (0, 1)])
    assert plan.steps == ("bc,cd->bd", "ab,bd->ad")
    assert plan.path == ((1, 2), (0, 1))


# ---------------------------------------------------------------------------- cosmetic
def test_consumer_layouts_has_one_cache_and_the_module_doc_names_the_whole_cache_key():
    assert hasattr(consumer_layouts, "cache_info")
    assert not hasattr(consumer_layouts.__wrapped__, "cache_info")  # no second cache inside
    assert "budget, peak slack)" in " ".join(contraction_planner.__doc__.split())


# -------------------------------------------------------------- docs: the budget's cutoff
def _cp_layer(implementation="factorized"):
    return MixedPrecisionSpectralConv(64, 64, (32, 32), factorization="cp", rank=0.1, implementation=implementation,
                                      fno_block_precision="mixed", half_dtype="bfloat16")


def _layer_peaks_mib(layer, batch):
    """The layer's measured peak (live tensor bytes, MiB, input not counted): forward without
    gradients, and forward and backward (the input's gradient included)."""
    torch.manual_seed(0)
    x = torch.randn(batch, 64, 64, 64)
    with torch.no_grad(), PeakTensorBytes() as forward:
        layer(x)
    kernel = model_product_paths(layer)[0]["kernel"]
    x.requires_grad_()
    with PeakTensorBytes() as step:
        layer(x).square().mean().backward()
    layer.zero_grad(set_to_none=True)
    return f"{forward.peak_bytes / 2**20:.1f}", f"{step.peak_bytes / 2**20:.1f}", kernel


# measures the docs' budget figures again (seconds): the end-to-end tier
@pytest.mark.slow
def test_budget_cutoff_numbers_in_the_docs():
    """docs/spectral_layer.md: the hard 2x budget makes the CP layer's plan peak 41.8 MiB at batch
    8, 83.6 MiB at batch 16, 19.7 MiB at batch 32; the 19.7 MiB order's FLOP ratio crosses 2
    between 16 and 32. At batch 32 forward rebuilds the dense weight instead of running the plan,
    so the paragraph gives the layer's measured peaks too (forward: 68.9, 118.2, 116.0 MiB;
    forward and backward: 141.6, 231.6, 213.2 MiB). Re-measured here; the paragraph must give
    these numbers."""
    layer = _cp_layer()
    mib, ratio, kernel, forward, step, ran = {}, {}, {}, {}, {}, {}
    for batch in (8, 16, 32):
        plan = layer.contraction_plan((batch, 64, 64, 64))
        fewest = plan_contraction(plan.equation, plan.shapes, plan.itemsize, flop_budget=1.0)
        smallest = plan_contraction(plan.equation, plan.shapes, plan.itemsize, flop_budget=None, peak_slack=1.1)
        mib[batch] = f"{plan.peak_bytes / 2**20:.1f}"
        ratio[batch] = f"{smallest.flops / fewest.flops:.2f}"
        assert smallest.peak_bytes / 2**20 == pytest.approx(19.7, abs=0.05)
        kernel[batch] = choose_product_path("cp", False, "mixed", torch.bfloat16, "cpu", shapes=plan.shapes).kernel
        forward[batch], step[batch], ran[batch] = _layer_peaks_mib(layer, batch)
    assert mib == {8: "41.8", 16: "83.6", 32: "19.7"}
    assert float(ratio[16]) > 2 > float(ratio[32])
    assert kernel[32] == REBUILT and kernel[16] != REBUILT
    assert ran == kernel  # what model_product_paths reports is the path the rule chose
    # the whole layer at batch 32 still takes less than at 16, as the paragraph says
    assert float(forward[32]) < float(forward[16]) and float(step[32]) < float(step[16])
    dense = _cp_layer("reconstructed").contraction_plan((16, 64, 64, 64))
    assert dense.shapes[1] == (64, 64, 32, 17)  # 17 MiB in complex64
    assert choose_product_path("dense", False, "mixed", torch.bfloat16, "cpu").kernel == MODE_BATCHED

    text = " ".join(DOCS.read_text().split())
    paragraph = text[text.index("The 2x FLOP budget is a hard cutoff"):]
    paragraph = paragraph[:paragraph.index("test_budget_cutoff_numbers_in_the_docs")]
    for batch in (8, 16, 32):
        assert f"{mib[batch]} MiB at batch {batch}" in paragraph, batch
    assert f"{ratio[8]}x the fewest FLOPs at batch 8, {ratio[16]}x at batch 16" in paragraph
    assert f"{ratio[32]}x at batch 32" in paragraph
    assert (f"peaks at {forward[8]} MiB at batch 8, {forward[16]} MiB at batch 16 and {forward[32]} MiB at batch 32"
            in paragraph)
    assert f"at {step[8]}, {step[16]} and {step[32]} MiB" in paragraph
    # the advice: measure the layer, and read a plan's peak only where the layer runs the plan
    assert "PeakTensorBytes" in paragraph and "model_product_paths(model)" in paragraph
    assert "Before choosing a batch size, compare `layer.contraction_plan" not in paragraph


def test_shapes_given_as_iterators_inside_a_list_are_planned():
    """The fast path's key read inner iterators before the checks did: a valid call was refused."""
    plan = plan_contraction("ab,bc->ac", [iter((2, 3)), iter((3, 4))])
    assert plan.shapes == ((2, 3), (3, 4))
