"""16-bit weights (complex32 spectral weights): stochastic rounding, fp32 update math,
deferred loss-scale division, memory accounting and exact resume."""
import io
import secrets

import numpy as np
import pytest
import torch

from neuralop_mp.optim import TensorGRaD, create_optimizer
from neuralop_mp.optim import adam_math
from neuralop_mp.optim.adam_math import stochastic_round_
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps
from neuralop_mp.tests.exact import equal_exactly
from neuralop_mp.training.loss_scaling import ComplexGradScaler

SHAPE = (8, 6, 5, 4)


def _representable(z):
    """``z`` rounded to complex32, held in complex64."""
    return z.to(torch.complex32).to(torch.complex64)


def _values_across_magnitudes(n, seed, dtype):
    """Fresh random values from far below the smallest normal number to near the top of the range."""
    g = torch.Generator().manual_seed(seed)
    top = 4 if dtype == torch.float16 else 30
    return torch.randn(n, generator=g) * torch.logspace(-9, top, n)


@pytest.mark.parametrize("chunk", [None, 256], ids=["one-chunk", "chunks-of-256"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_rounding_picks_a_neighbour_and_is_unbiased(dtype, chunk, monkeypatch):
    if chunk is not None:  # the noise of each chunk continues the write's stream: still unbiased
        monkeypatch.setattr(adam_math, "ROUNDING_CHUNK", chunk)
    seed = secrets.randbelow(2**31)  # fresh inputs each run, without touching torch's global RNG
    x = _values_across_magnitudes(2000, seed=seed, dtype=dtype)
    nearest = x.to(dtype)
    towards = torch.where(x.double() > nearest.double(), torch.inf, -torch.inf).to(dtype)
    other = torch.nextafter(nearest, towards)  # the neighbour on the other side of x
    n_draws = 300
    draws = torch.empty(n_draws, x.numel(), dtype=dtype)
    for s in range(n_draws):
        stochastic_round_(draws[s], x, seed=s)
    assert bool(((draws == nearest) | (draws == other)).all()), f"input seed {seed}"
    # unbiased: the mean of the draws is x up to sampling noise, in units of the spacing
    spacing = (other.double() - nearest.double()).abs()
    z = (draws.double().mean(0) - x.double()) / spacing * n_draws**0.5 / 0.5
    inexact = nearest.double() != x.double()
    assert z[inexact].abs().max() < 5.5, f"input seed {seed}"  # 2000 samples of |N(0,1)|: max beyond 5.5 has probability < 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_rounding_never_moves_a_representable_value(dtype):
    # every 16-bit number in [1, 2) and [-2, -1), where a value is 2**10 (fp16) spacings
    # from zero: floor(x / spacing + noise) in float32 rounded noise within 2**-14 of 1 up
    # to 1 and moved such values a spacing (31 of these 614400 float16 draws did)
    step = 2.0 ** -(10 if dtype == torch.float16 else 7)
    exact = torch.arange(1, 2, step, dtype=torch.float64)
    x = torch.cat([exact, -exact]).to(dtype)
    out = torch.empty(300, x.numel(), dtype=dtype)
    for s in range(out.shape[0]):
        stochastic_round_(out[s], x.float(), seed=s)
    assert torch.equal(out, x.expand_as(out))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_rounding_keeps_nan_and_inf(dtype):
    # 0x7FFFFFFF (the NaN CUDA arithmetic produces) plus noise carried into the sign bit and
    # truncated to -0.0 in bfloat16; 0x7F800001 truncated to inf
    nans = torch.tensor([0x7FFFFFFF, 0x7F800001, -1, 0x7FC00000], dtype=torch.int32).view(torch.float32)
    x = torch.cat([nans, torch.tensor([float("inf"), -float("inf")])])
    out = torch.empty(64, x.numel(), dtype=dtype)
    for s in range(out.shape[0]):
        stochastic_round_(out[s], x, seed=s)
    assert out[:, :4].isnan().all()
    assert (out[:, 4] == float("inf")).all() and (out[:, 5] == -float("inf")).all()


def test_stochastic_rounding_keeps_representable_values_and_writes_complex32():
    z = random_tensor((50, 40), True, seed=3, dtype=torch.float32).to(torch.complex32)
    out = torch.empty_like(z)
    stochastic_round_(out, z.to(torch.complex64), seed=1)
    assert equal_exactly(out, z)
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        stochastic_round_(torch.empty(3), torch.ones(3), seed=0)


@pytest.mark.parametrize("compress", [True, False])
def test_complex32_weights_follow_the_complex64_trajectory(compress):
    """Same gradients, 20 steps across a refresh: the complex32 run stays within a few
    fp16 spacings (2^-10 relative) of the complex64 run, while moving far more than that.

    The gradients are complex32-representable, so both runs see the same ones (a Tucker
    basis computed from differently rounded gradients would send the runs apart, which
    says nothing about storage). Each step's stochastic rounding errs by < 1 spacing
    with zero mean: after 20 steps the error is a random walk of std < 2.3 spacings.
    """
    start = _representable(random_tensor(SHAPE, True, 7, torch.float32))
    grads = [[_representable(random_tensor(SHAPE, True, 100 + s, torch.float32))] for s in range(20)]
    runs = {}
    for dtype in (torch.complex64, torch.complex32):
        weight = torch.nn.Parameter(start.to(dtype, copy=True))
        opt = TensorGRaD([weight], lr=1e-2, weight_decay=0.1, compress=compress, min_params=10, rank=0.5,
                         update_proj_gap=7)
        run_steps(opt, [weight], grads)
        assert weight.dtype == dtype
        runs[dtype] = weight.detach().to(torch.complex64)
    scale = runs[torch.complex64].abs().max()
    assert (runs[torch.complex32] - runs[torch.complex64]).abs().max() < 8 * 2.0**-10 * scale
    assert (runs[torch.complex64] - start).abs().max() > 4 * 8 * 2.0**-10 * scale


def test_updates_below_half_a_spacing_accumulate():
    """lr 1e-4 on weights of 1.0 (fp16 spacing 2^-10): each step moves a weight by a
    tenth of a spacing, which round-to-nearest would drop every time."""
    assert torch.tensor(1.0 - 1e-4).to(torch.float16) == 1.0  # the premise
    weight = torch.nn.Parameter(torch.ones(64, 64, dtype=torch.complex32))
    opt = TensorGRaD([weight], lr=1e-4, eps=1e-8, compress=False)
    for _ in range(200):
        weight.grad = torch.ones(64, 64, dtype=torch.complex32)  # Adam direction 1 in the real part
        opt.step()
    drift = 1.0 - torch.view_as_real(weight.detach())[..., 0].double().mean()
    assert abs(drift - 200 * 1e-4) < 1e-3


def test_grad_scale_divides_after_the_upcast():
    """fp16 gradients of 1e-8 underflow to zero; scaled by 2^16 they are representable, and
    step(grad_scale=2^16) then matches an fp32-gradient step, where dividing in place would not."""
    true = random_tensor(SHAPE, True, 11, torch.float32) * 1e-8
    scale = 2.0**16
    assert (torch.view_as_real(true.to(torch.complex32)) == 0).float().mean() > 0.9  # the premise
    # small weights: their fp16 spacing (~1e-6) is far below the step (~1e-2)
    start = _representable(1e-3 * random_tensor(SHAPE, True, 12, torch.float32))
    hyper = dict(lr=1e-2, eps=1e-12, compress=False)  # eps far below the gradients
    reference = torch.nn.Parameter(start.clone())
    reference.grad = true.clone()
    TensorGRaD([reference], **hyper).step()

    weight = torch.nn.Parameter(start.to(torch.complex32))
    weight.grad = (true * scale).to(torch.complex32)
    scaled_grad = weight.grad.clone()
    TensorGRaD([weight], **hyper).step(grad_scale=scale)
    assert equal_exactly(weight.grad, scaled_grad)  # p.grad untouched
    moved = (reference.detach() - start).abs().max()
    assert (weight.detach().to(torch.complex64) - reference.detach()).abs().max() < 0.05 * moved

    # fp32 weights: dividing by a power of two is exact, so scaled == unscaled bitwise
    a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    a.grad, b.grad = true.clone(), true * scale
    TensorGRaD([a], **hyper).step()
    TensorGRaD([b], **hyper).step(grad_scale=scale)
    assert equal_exactly(a, b)
    with pytest.raises(ValueError, match=r"grad_scale=0\.0"):
        TensorGRaD([a]).step(grad_scale=0.0)


@pytest.mark.parametrize("bad", [True, np.bool_(True), torch.tensor(True), float("nan"), float("inf"), -2.0, "2"])
def test_grad_scale_that_is_not_a_finite_positive_number_is_refused(bad):
    # True would have divided the gradients by 1.0: a flag passed where the scale belongs
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"^Invalid grad_scale=.*; allowed values: finite numbers > 0\.$"):
        TensorGRaD([weight]).step(grad_scale=bad)
    assert equal_exactly(weight, torch.ones(3))  # refused before any update


def test_grad_scale_given_as_a_numpy_or_tensor_number_is_taken():
    start, grad = random_tensor((7,), False, 21, torch.float32), random_tensor((7,), False, 22, torch.float32)
    results = []
    for scale in (3.0, np.float32(3.0), torch.tensor(3.0)):
        weight = torch.nn.Parameter(start.clone())
        weight.grad = grad * 3.0
        TensorGRaD([weight], lr=1e-2, compress=False).step(grad_scale=scale)
        results.append(weight.detach())
    assert not equal_exactly(results[0], start)
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-6, atol=0.0)


def test_complex_grad_scaler_hands_the_scale_to_tensorgrad():
    weight = torch.nn.Parameter(random_tensor(SHAPE, True, 1, torch.float32).to(torch.complex32))
    opt = TensorGRaD([weight], min_params=10)
    handed = []
    step = opt.step
    opt.step = lambda *args, **kwargs: (handed.append(kwargs.get("grad_scale")), step(*args, **kwargs))[1]
    scaler = ComplexGradScaler(init_scale=2.0**10)
    weight.grad = random_tensor(SHAPE, True, 2, torch.float32).to(torch.complex32)
    grad = weight.grad.clone()
    assert scaler.step(opt) is True
    assert handed == [2.0**10]  # the optimizer divides, after its up-cast
    assert equal_exactly(weight.grad, grad)  # not divided in place
    scaler.update()
    weight.grad[0, 0, 0, 0] = complex(0.0, float("inf"))  # an inf hiding in an imaginary part
    before = weight.detach().clone()
    assert scaler.step(opt) is False and scaler.skipped_steps == 1 and handed == [2.0**10]
    assert equal_exactly(weight, before)
    scaler.update()
    assert scaler.get_scale() == 2.0**9


def test_gradients_the_scaler_found_finite_are_not_checked_again(monkeypatch):
    """The scaler checks every gradient before it steps; TensorGRaD's own check (a pass over
    all gradients and a read back to the host) runs only when no caller made it, or when
    a closure makes new gradients."""
    from neuralop_mp.optim import nonfinite

    checks = []
    check = nonfinite.gradient_flags
    monkeypatch.setattr(nonfinite, "gradient_flags", lambda *a: checks.append(1) or check(*a))
    weight = torch.nn.Parameter(random_tensor(SHAPE, True, 1, torch.float32))
    opt = TensorGRaD([weight], min_params=10)
    weight.grad = random_tensor(SHAPE, True, 2, torch.float32)
    assert ComplexGradScaler(init_scale=2.0**4).step(opt) is True and checks == []
    assert ComplexGradScaler(enabled=False).step(opt) is True and checks == []  # bf16/fp32: checked too
    opt.step()
    assert checks == [1]
    opt.step(lambda: torch.zeros(()), gradients_checked=True)
    assert checks == [1, 1]


def test_memory_report_of_complex32_weights():
    weight = torch.nn.Parameter(random_tensor((32, 32, 8, 5), True, 0, torch.float32).to(torch.complex32))
    opt = TensorGRaD([weight])
    weight.grad = torch.randn(weight.shape, dtype=torch.complex64).to(torch.complex32)
    opt.step()
    report = opt.memory_report()
    assert report["params"] == report["grads"] == weight.numel() * 4
    assert report["adamw_state"] == weight.numel() * 16  # two complex64 moments
    assert 0.3 < report["state_ratio"] < 0.42


def test_complex32_lockstep_resume_is_bit_identical():
    def make():
        weight = torch.nn.Parameter(random_tensor(SHAPE, True, 5, torch.float32).to(torch.complex32))
        return weight, TensorGRaD([weight], min_params=10, update_proj_gap=7, state_dtype="bfloat16")

    grads = [[random_tensor(SHAPE, True, 300 + s)] for s in range(20)]
    weight_a, opt_a = make()
    run_steps(opt_a, [weight_a], grads[:5])
    buffer = io.BytesIO()
    torch.save({"weight": weight_a.detach(), "opt": opt_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    weight_b, opt_b = make()
    with torch.no_grad():
        weight_b.copy_(saved["weight"])
    opt_b.load_state_dict(saved["opt"])
    run_steps(opt_a, [weight_a], grads[5:])
    run_steps(opt_b, [weight_b], grads[5:])
    assert equal_exactly(weight_a, weight_b)


def test_factory_adamw_keeps_float32_moments_for_complex32_weights():
    """torch's AdamW would keep complex32 moments (squared gradients underflow in fp16): the
    factory's "adamw" runs the same update in TensorGRaD(compress=False) with torch's eps."""
    model = torch.nn.Linear(3, 3)
    model.spectral = torch.nn.Parameter(random_tensor(SHAPE, True, 4, torch.float32).to(torch.complex32))
    opt = create_optimizer(model, {"optimizer": "adamw", "learning_rate": 1e-2})
    assert isinstance(opt, TensorGRaD)
    assert all(not g["compress"] for g in opt.param_groups) and opt.param_groups[0]["eps"] == 1e-8
    plain = create_optimizer(torch.nn.Linear(3, 3), {"optimizer": "adamw"})
    assert type(plain) is torch.optim.AdamW
    # same numbers as torch's AdamW on complex64 weights, up to fp16 storage
    reference = torch.nn.Parameter(model.spectral.detach().to(torch.complex64))
    torch_opt = torch.optim.AdamW([reference], lr=1e-2, weight_decay=0.0)
    for s in range(5):
        grad = random_tensor(SHAPE, True, 50 + s, torch.float32)
        reference.grad = grad.clone()
        model.spectral.grad = grad.to(torch.complex32)
        model.weight.grad, model.bias.grad = torch.zeros_like(model.weight), torch.zeros_like(model.bias)
        torch_opt.step()
        opt.step()
    err = (model.spectral.detach().to(torch.complex64) - reference.detach()).abs().max()
    assert err < 4 * 2.0**-10 * reference.detach().abs().max()


@pytest.mark.parametrize("layout", ["transposed", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_strided_16_bit_compressed_weight_steps_as_its_contiguous_copy(dtype, layout):
    """A compressed 16-bit weight stored with strides (a transposed leaf, a channels_last conv
    weight) is updated in place, keeping its layout, as a contiguous copy of it is, bit for bit
    (the same update and rounding stream; the contiguous path's numerics are checked above)."""
    g = torch.Generator().manual_seed(secrets.randbelow(2**31))
    if layout == "transposed":
        base = torch.randn(48, 64, generator=g).to(dtype).t()
    else:
        base = torch.randn(32, 24, 3, 3, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    assert not base.is_contiguous()
    grads = [torch.randn(base.shape, generator=g).to(dtype) for _ in range(3)]
    weights = {}
    for name, start in (("strided", base), ("contiguous", base.contiguous())):
        w = torch.nn.Parameter(start.clone(memory_format=torch.preserve_format))
        opt = TensorGRaD([w], lr=1e-2, min_params=1, seed=3)
        for grad in grads:
            w.grad = grad
            opt.step()
        assert opt.state[w]["step"] == len(grads) and "low_rank_exp_avg" in opt.state[w]  # compressed
        weights[name] = w.detach()
    assert weights["strided"].stride() == base.stride()
    assert torch.equal(weights["strided"], weights["contiguous"])
    assert (weights["strided"] != base).float().mean() > 0.5  # most entries moved
