"""Per-entry Adam bias corrections (kept sparse moments, ``reset_sparse_moments=False``):
``1 - beta**age`` in the math's dtype, without float64 temporaries."""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from neuralop_mp.optim.adam_math import adam_step, bias_corrections
from neuralop_mp.optim.tensorgrad import TensorGRaD

# float32 has a relative spacing of at most 2**-23 = 1.19e-7; log(beta), the product
# age * log(beta) and expm1 each round once, the sqrt halves its argument's error
FLOAT32_RTOL = 3e-7


class _Float64Outputs(TorchDispatchMode):
    """Counts, by operator, the float64 tensors the operators inside the block return."""

    def __init__(self):
        super().__init__()
        self.made = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64:
                self.made[str(func)] += 1
        return out


def _ages(seed):
    """Fresh random ages: the smallest ones exhaustively (1 among them, where
    ``1 - 0.999**1`` = 1e-3 cancels worst in a power), then up to ten million."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([torch.arange(1, 3000), torch.randint(3000, 10**7, (50_000,), generator=generator),
                      torch.tensor([10**7])]).to(torch.int32)


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.999, 0.9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_bias_corrections_match_float64_within_a_few_float32_units(betas, seed):
    ages = _ages(seed)
    kept = ages.clone()
    bias1, root_bias2 = bias_corrections(ages, *betas, torch.float32)
    assert bias1.dtype == root_bias2.dtype == torch.float32
    assert torch.equal(ages, kept)  # worked on a copy
    wide = ages.double()
    expected1, expected2 = 1 - betas[0] ** wide, (1 - betas[1] ** wide).sqrt()
    torch.testing.assert_close(bias1.double(), expected1, rtol=FLOAT32_RTOL, atol=0)
    torch.testing.assert_close(root_bias2.double(), expected2, rtol=FLOAT32_RTOL, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bias_corrections_for_16_bit_math_are_the_float64_values_rounded_once(dtype):
    """Moments of 16-bit gradients: the corrections in float32 rounded once to the 16-bit type,
    so within one unit in the last place of that type (2**-10 relative for float16, 2**-7 for
    bfloat16) of the float64 value; ages past 16-bit range (2048 is float16's last exact
    integer, 256 bfloat16's) included."""
    ages = _ages(4)
    bias1, root_bias2 = bias_corrections(ages, 0.9, 0.999, dtype)
    assert bias1.dtype == root_bias2.dtype == dtype
    ulp = torch.finfo(dtype).eps
    wide = ages.double()
    torch.testing.assert_close(bias1.double(), 1 - 0.9**wide, rtol=ulp, atol=0)
    torch.testing.assert_close(root_bias2.double(), (1 - 0.999**wide).sqrt(), rtol=ulp, atol=0)


def test_bias_corrections_in_float64_are_float64_accurate_and_beta_zero_is_one():
    ages = _ages(2)
    bias1, root_bias2 = bias_corrections(ages, 0.9, 0.999, torch.float64)
    wide = ages.double()
    torch.testing.assert_close(bias1, 1 - 0.9**wide, rtol=1e-14, atol=0)
    torch.testing.assert_close(root_bias2, (1 - 0.999**wide).sqrt(), rtol=1e-14, atol=0)
    bias1, root_bias2 = bias_corrections(ages, 0.0, 0.0, torch.float32)  # 0**age = 0 for age >= 1
    assert torch.equal(bias1, torch.ones_like(bias1)) and torch.equal(root_bias2, torch.ones_like(root_bias2))


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("convention", ["torch", "neuralop"])
def test_per_entry_adam_step_makes_no_float64_tensor_and_matches_a_float64_reference(complex_, convention):
    """The direction from the updated moments, against the same formula in float64 with
    ``1 - beta**age`` computed directly: they differ by the bias corrections' error and
    the last operations' roundings alone."""
    generator = torch.Generator().manual_seed(3)
    ages = _ages(3)[::7].contiguous()
    dtype = torch.complex64 if complex_ else torch.float32
    grad = torch.randn(ages.shape, generator=generator, dtype=dtype)
    real = torch.view_as_real(grad) if complex_ else grad
    exp_avg = torch.randn(real.shape, generator=generator)
    exp_avg_sq = torch.rand(real.shape if convention == "torch" or not complex_ else grad.shape, generator=generator)
    eps = 1e-8
    with _Float64Outputs() as recorded:
        direction = adam_step(exp_avg, exp_avg_sq, grad, ages, 0.9, 0.999, eps, True, convention)
    assert not recorded.made, f"float64 tensors made: {dict(recorded.made)}"
    m, v, age = exp_avg.double(), exp_avg_sq.double(), ages.double()
    bias1, root_bias2 = 1 - 0.9**age, (1 - 0.999**age).sqrt()
    if complex_:
        bias1, root_bias2 = bias1[:, None], root_bias2[:, None]
    if convention == "torch":
        expected = (m / bias1) / (v.sqrt() / root_bias2 + eps)
    else:
        denom = v.sqrt() + eps
        expected = m / (denom[:, None] if complex_ else denom) * (root_bias2 / bias1)
    torch.testing.assert_close(torch.view_as_real(direction) if complex_ else direction, expected.float(),
                               rtol=1e-6, atol=0)


def test_a_step_with_kept_sparse_moments_makes_no_float64_tensor():
    """A float32 weight's step after refreshes that gave its sparse entries different ages."""
    generator = torch.Generator().manual_seed(4)
    p = torch.nn.Parameter(torch.randn(16, 8, 6, generator=generator))
    opt = TensorGRaD([p], min_params=10, rank=None, sparse_ratio=0.25, update_proj_gap=3,
                     reset_sparse_moments=False)
    for _ in range(7):
        p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    assert opt.state[p]["sparse_birth"].unique().numel() > 1
    p.grad = torch.randn(p.shape, generator=generator)
    with _Float64Outputs() as recorded:
        opt.step()
    assert not recorded.made, f"float64 tensors made: {dict(recorded.made)}"


def _old_float64_corrections(ages, beta1, beta2):
    """The float64 corrections as first written (five float64 temporaries): the reference."""
    exponent = ages.to(torch.float64)
    return 1.0 - beta1**exponent, (1.0 - beta2**exponent).sqrt_()


class _NewFloat64Storage(TorchDispatchMode):
    """Counts the float64 tensors the operators inside the block make in new memory (an
    output that is none of the operator's inputs, ``out=`` included)."""

    def __init__(self):
        super().__init__()
        self.made = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        self.made += sum(1 for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)
                         and t.dtype == torch.float64 and t.data_ptr() not in inputs)
        return out


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.5), (0.5, 0.0), (0.99, 0.9999)])
@pytest.mark.parametrize("seed", [11, 12])
def test_float64_corrections_are_the_powers_bit_for_bit_in_two_float64_tensors(betas, seed):
    ages = _ages(seed)
    before = ages.clone()
    with _NewFloat64Storage() as recorded:
        bias1, root_bias2 = bias_corrections(ages, *betas, torch.float64)
    assert recorded.made == 2  # the two results, each worked on in place
    expected1, expected2 = _old_float64_corrections(ages, *betas)
    assert torch.equal(bias1, expected1) and torch.equal(root_bias2, expected2)
    float64_ages = ages.double()  # float64 ages are left unchanged too (no in-place work on them)
    bias_corrections(float64_ages, *betas, torch.float64)
    assert torch.equal(ages, before) and torch.equal(float64_ages, before.double())


def test_a_float64_weight_with_kept_sparse_moments_steps_as_with_the_old_corrections(monkeypatch):
    """Steps of a float64 weight whose sparse entries have different ages: weights and state
    bit for bit those of the old float64 corrections, on fresh random gradients."""
    import neuralop_mp.optim.adam_math as adam_math

    def run():
        generator = torch.Generator().manual_seed(21)
        p = torch.nn.Parameter(torch.randn(16, 8, 6, generator=generator, dtype=torch.float64))
        opt = TensorGRaD([p], min_params=10, rank=None, sparse_ratio=0.25, update_proj_gap=3,
                         reset_sparse_moments=False)
        for _ in range(10):
            p.grad = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            opt.step()
        assert opt.state[p]["sparse_birth"].unique().numel() > 1
        return p.detach().clone(), {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[p].items()}

    weights, state = run()
    new = adam_math.bias_corrections
    monkeypatch.setattr(adam_math, "bias_corrections", lambda ages, beta1, beta2, dtype, device=None: (
        _old_float64_corrections(ages.to(device), beta1, beta2) if dtype == torch.float64
        else new(ages, beta1, beta2, dtype, device)))
    old_weights, old_state = run()
    assert torch.equal(weights, old_weights)
    assert state.keys() == old_state.keys()
    for key, value in state.items():
        assert torch.equal(value, old_state[key]) if isinstance(value, torch.Tensor) else value == old_state[key], key
