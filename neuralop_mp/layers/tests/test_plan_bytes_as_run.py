"""``layer.contraction_plan`` counts the bytes of the intermediates forward actually holds.

On CPU "mixed"/"half" multiply 16-bit-rounded operands as complex64 (8 bytes an element),
not as (real, imag) pairs of the 16-bit type (4): the plan must say 8 there, and 4 only
where the real-form 16-bit product runs (a GPU's choices, forced here on the CPU). The
measure: the largest tensor autograd saves in forward, which for these layers is the
plan's largest intermediate.
"""
import pytest
import torch

import neuralop_mp.layers.spectral_conv as spectral_conv
from neuralop_mp.layers.contraction_planner import plan_contraction
from neuralop_mp.layers.product_paths import FLOAT32_PAIRWISE_PEAK_SLACK, force_device_choices
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv


def _largest_saved_and_plan(layer, x, monkeypatch):
    """(bytes of the largest tensor saved for backward, not a parameter; the plan forward ran)."""
    ran = []
    for name in ("run_plan", "run_plan_rounded"):
        original = getattr(spectral_conv, name)
        monkeypatch.setattr(spectral_conv, name,
                            lambda plan, *args, _original=original, **kwargs: ran.append(plan)
                            or _original(plan, *args, **kwargs))
    parameters = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    assert len(ran) == 1, layer.last_product_path["kernel"]
    largest = max(t.untyped_storage().nbytes() for t in saved
                  if t is not x and t.untyped_storage().data_ptr() not in parameters)
    return largest, ran[0]


@pytest.mark.parametrize("factorization, separable", [("tucker", False), ("cp", False), ("tt", False),
                                                      ("cp", True), (None, True)])
@pytest.mark.parametrize("mode", ["full", "mixed", "half"])
def test_the_reported_plan_is_forwards_with_the_bytes_it_holds_on_cpu(factorization, separable, mode, monkeypatch):
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(16, 16, (16, 16), factorization=factorization, rank=0.1, separable=separable,
                                       implementation="factorized", fno_block_precision=mode, half_dtype="bfloat16")
    x = torch.randn(2, 16, 32, 32, requires_grad=True)
    largest, ran = _largest_saved_and_plan(layer, x, monkeypatch)
    plan = layer.contraction_plan(x.shape)
    assert plan is ran  # the same plan (cached per shape and bytes per element)
    assert plan.itemsize == 8  # complex64 steps, in every mode on CPU
    assert plan.peak_bytes == largest


@pytest.mark.parametrize("factorization", ["cp", None])
def test_a_real_form_16_bit_product_is_planned_at_4_bytes(factorization, monkeypatch):
    """A GPU's choices (forced on the CPU): a separable weight's plan runs as bfloat16
    (real, imag) pairs, 4 bytes an element, and the plan says so."""
    torch.manual_seed(0)
    layer = MixedPrecisionSpectralConv(16, 16, (16, 16), factorization=factorization, rank=0.1, separable=True,
                                       implementation="factorized", fno_block_precision="mixed",
                                       half_dtype="bfloat16")
    x = torch.randn(2, 16, 32, 32, requires_grad=True)
    with force_device_choices("cuda"):
        largest, ran = _largest_saved_and_plan(layer, x, monkeypatch)
        plan = layer.contraction_plan(x.shape)
    assert plan is ran and plan.itemsize == 4
    assert plan.peak_bytes == largest
    full = layer.contraction_plan(x.shape, mode="full")
    assert full.steps == plan.steps and full.peak_bytes == 2 * plan.peak_bytes


def test_the_bytes_per_element_do_not_change_the_order():
    """8 instead of 4 bytes an element scales every byte count: the same steps as before."""
    layer = MixedPrecisionSpectralConv(64, 64, (32, 32), factorization="tucker", rank=0.1,
                                       implementation="factorized", fno_block_precision="mixed",
                                       half_dtype="bfloat16")
    for batch in (1, 2, 32):
        plan = layer.contraction_plan((batch, 64, 64, 64))
        half_sized = plan_contraction(plan.equation, plan.shapes, 4, peak_slack=FLOAT32_PAIRWISE_PEAK_SLACK)
        assert plan.steps == half_sized.steps and plan.peak_bytes == 2 * half_sized.peak_bytes

