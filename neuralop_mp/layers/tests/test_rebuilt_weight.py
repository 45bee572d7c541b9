"""The factorized weight rebuilt dense for the mode-batched product, and the rule that picks it."""
import pytest
import torch

from neuralop_mp.layers import product_paths
from neuralop_mp.layers.path_report import model_product_paths
from neuralop_mp.layers.product_paths import PAIRWISE, REBUILT, choose_product_path
from neuralop_mp.layers.rebuilt_weight import rebuild_dense_weight, rebuild_pays
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.tests.reference import U, finite, half_relative_bound, reference_forward, rel_err
from neuralop_mp.layers.weight_contractions import rebuild_equation, weight_operands
from neuralop_mp.memory import SavedTensorBytes

KINDS = ["tucker", "cp", "tt"]


def _layer(kind, mode="full", channels=6, n_modes=(6, 6), rank=0.5, seed=0):
    torch.manual_seed(seed)
    layer = MixedPrecisionSpectralConv(channels, channels, n_modes, factorization=kind, rank=rank,
                                       implementation="factorized", bias=False)
    layer.fno_block_precision, layer.half_dtype = mode, "bfloat16"
    return layer


def _float64_reference(layer, kind, x, g):
    """float64 output of the layer and gradients of <y, g> w.r.t. its weight operands."""
    operands = weight_operands(layer.weight, kind)
    wide = [op.detach().to(torch.complex128).requires_grad_() for op in operands]
    n_modes = len(operands) if kind == "tt" else len(operands) - 1
    dense = torch.einsum(rebuild_equation(kind, n_modes), *wide)
    y, x_kept, w, eq = reference_forward(x, dense)
    grads = torch.autograd.grad((y * g.double()).sum(), wide)
    return y.detach(), grads, x_kept, w.detach(), eq, operands


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["full", "mixed"])
def test_rebuilt_path_matches_float64_values_and_factor_gradients(kind, mode):
    """Batch 8 of a 6-channel, 6x6-mode layer: the rule picks the rebuilt weight for all
    three kinds. "full": output and the gradients reaching the CP/Tucker/TT factors within
    2e-6 of float64 (float32 rounding; measured 1.7e-7 (output) and 2.0e-7 - 2.8e-7
    (gradients) over kinds and seeds 0-2). "mixed" bfloat16: the output within the
    derived bound of a dense weight (k = 3 roundings: spectrum, rebuilt weight, result;
    the rebuild itself runs in float32); the factor gradients within 1e-2: each entry of
    the dense weight's gradient is a float32 sum of products of two bfloat16-rounded
    values (spectrum and incoming gradient, unit roundoff 2^-9 each), carried to the
    factors in float32; measured 2.5e-3 - 3.1e-3 over kinds and seeds 0-2 (an unrounded
    or wrong gradient gives ~1e-7 or O(1)).
    """
    layer = _layer(kind, mode)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 6, 12, 10, generator=gen)
    g = torch.randn(8, 6, 12, 10, generator=gen)
    ref, ref_grads, x_kept, w, eq, operands = _float64_reference(layer, kind, x, g)
    y = layer(x)
    assert layer.last_product_path["kernel"] == REBUILT
    grads = torch.autograd.grad((y * g).sum(), operands)
    assert finite(y) and all(finite(gr) for gr in grads)
    if mode == "full":
        assert rel_err(y, ref) <= 2e-6
        assert max(rel_err(a, b) for a, b in zip(grads, ref_grads)) <= 2e-6
        return
    bound = half_relative_bound(x_kept, [w], eq, 3, U[torch.bfloat16], 2 * 6)
    err = rel_err(y, ref)
    assert 1e-5 < err <= bound  # really rounded to bfloat16, within the bound
    assert 1e-5 < max(rel_err(a, b) for a, b in zip(grads, ref_grads)) <= 1e-2


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("kind", KINDS)
def test_rebuilt_weight_equals_the_factorized_tensor(kind):
    layer = _layer(kind, rank=0.4, seed=2)
    operands = weight_operands(layer.weight, kind)
    rebuilt = rebuild_dense_weight(kind, operands)
    expected = layer.weight.to_tensor().detach().to(torch.complex128)
    assert rebuilt.dtype == torch.complex64 and rebuilt.shape == expected.shape
    assert rel_err(rebuilt.detach(), expected) <= 1e-6
    half_stored = rebuild_dense_weight(kind, [op.detach().to(torch.complex32) for op in operands])
    assert half_stored.dtype == torch.complex64 and rel_err(half_stored, expected) <= 2e-3


# Tucker core and factors of TFNO(hidden_channels=64, n_modes=(32, 32)), rank 0.1
TFNO_TUCKER = ((36, 36, 18, 10), (64, 36), (64, 36), (32, 18), (17, 10))


@pytest.mark.parametrize("batch", [1, 2, 32])
@pytest.mark.parametrize("itemsize, slack", [(4, 1.1), (8, 1.0)])
def test_rule_keeps_the_pairwise_plan_for_tfno_tucker(batch, itemsize, slack):
    """The benchmark's TFNO layer: rebuilding costs 87.3 M complex multiply-adds plus 2.2 M per
    batch item, the pairwise plan 17.2 M (batch 1) to 117 M (batch 32): pairwise, as timed
    (the rebuilt path took 6.9x / 1.6x the time at batch 1 / 32, module docstring)."""
    pays, why = rebuild_pays("tucker", ((batch, 64, 32, 17),) + TFNO_TUCKER, itemsize, slack)
    assert not pays
    assert why.startswith("pairwise") and "rebuild 87.3 M" in why


def test_rule_rebuilds_where_the_pairwise_plan_multiplies_the_weight_out():
    """TT rank 0.5 (64 channels, 32x17 modes), batch 1: the pairwise order rebuilds the weight
    anyway (296 M complex multiply-adds vs 294 M + 2.2 M), so the mode-batched matmul takes its
    last step (timed 0.87x / 0.89x of the pairwise path, mixed / full)."""
    layer = MixedPrecisionSpectralConv(64, 64, (32, 32), factorization="tt", rank=0.5, implementation="factorized")
    shapes = ((1, 64, 32, 17),) + tuple(tuple(op.shape) for op in weight_operands(layer.weight, "tt"))
    pays, why = rebuild_pays("tt", shapes, 4, 1.1)
    assert pays and why.startswith("rebuilt dense")
    with pytest.raises(ValueError, match="'cp', 'tucker', 'tt'"):
        rebuild_pays("dense", shapes, 4)


def test_choice_is_per_shape_cached_and_reported():
    """Same Tucker layer: batch 1 keeps the pairwise plan, batch 8 rebuilds; each choice is
    made once per shape (the same object on the next call) and the report gives its reason."""
    layer = _layer("tucker", "mixed")
    model = torch.nn.Sequential(layer)
    kinds = {}
    for batch in (1, 8):
        x = torch.randn(batch, 6, 12, 10)
        with torch.no_grad():
            layer(x)
        (row,) = model_product_paths(model)
        kinds[batch] = row["kernel"]
        assert row["input_shape"] == (batch, 6, 12, 10)
        assert "M complex multiply-adds" in row["reason"]
        shapes = [(batch, 6, 6, 4)] + [op.shape for op in weight_operands(layer.weight, "tucker")]
        first = choose_product_path("tucker", False, "mixed", torch.bfloat16, "cpu", shapes=shapes)
        assert choose_product_path("tucker", False, "mixed", torch.bfloat16, "cpu", shapes=shapes) is first
        assert first.kernel == row["kernel"] and first.reason == row["reason"]
    assert kinds == {1: PAIRWISE, 8: REBUILT}


@pytest.mark.parametrize("kind", KINDS)
def test_on_a_gpu_factorized_weights_are_rebuilt_and_separable_ones_stay_pairwise(kind):
    """No GPU needed: the choice depends on the device type only (kernel launches, not
    multiply-adds, bound the product there), for every precision and shape."""
    for mode, half in (("full", None), ("mixed", torch.bfloat16), ("half", torch.float16)):
        path = choose_product_path(kind, False, mode, half, "cuda", shapes=[(4, 64, 32, 17)])
        assert path.kernel == REBUILT and "on a GPU" in path.reason
        assert choose_product_path(kind, False, mode, half, "cuda") is path  # cached, shapes or not
        assert choose_product_path(kind, True, mode, half, "cuda").kernel == PAIRWISE
    # on a CPU the multiply-add rule still decides: a Tucker weight at batch 1 stays pairwise
    assert choose_product_path(kind, False, "mixed", torch.bfloat16, "cpu").kernel == PAIRWISE


def test_rebuilt_path_saves_no_more_than_the_pairwise_plan(monkeypatch):
    """Where the rule rebuilds at the benchmark's layer size (TT rank 0.5, 64 channels,
    32x32 modes, 64^2, batch 1, an input that needs its gradient), the bytes saved for
    backward are at most those of the pairwise plan forced on the same layer (measured
    20.8 vs 29.4 MiB). (At toy sizes the rebuilt weight, saved for backward, can outweigh
    the pairwise plan's small intermediates.)"""
    layer = _layer("tt", "mixed", channels=64, n_modes=(32, 32))
    x = torch.randn(1, 64, 64, 64, requires_grad=True)  # as inside a model
    saved = {}
    for force_pairwise in (False, True):
        if force_pairwise:
            monkeypatch.setattr(product_paths, "rebuild_pays", lambda *a: (False, "forced"))
            product_paths._choose_for_shapes.cache_clear()
        with SavedTensorBytes(exclude=layer.parameters()) as meter:
            layer(x)
        saved[layer.last_product_path["kernel"]] = meter.bytes
    product_paths._choose_for_shapes.cache_clear()
    assert saved.keys() == {REBUILT, PAIRWISE}
    assert saved[REBUILT] <= saved[PAIRWISE]
