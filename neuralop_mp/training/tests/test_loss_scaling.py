"""ComplexGradScaler: unscaling and inf/NaN detection for complex gradients, skipping, scale updates."""
import io
import math

import numpy as np
import pytest
import torch

from neuralop_mp.training.loss_scaling import ComplexGradScaler


def complex_problem(seed=0):
    """A complex and a real parameter, an optimizer, and a loss with a known float64 gradient."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.cfloat, generator=gen))
    b = torch.nn.Parameter(torch.randn(3, generator=gen))
    x = torch.randn(4, 5, dtype=torch.cfloat, generator=gen)
    optimizer = torch.optim.AdamW([w, b], lr=1e-2)

    def loss_fn(w_, b_, x_):
        return ((x_ @ w_).abs() ** 2).sum() + (b_ ** 3).sum()

    return w, b, x, optimizer, loss_fn


def test_torch_gradscaler_rejects_complex_grads():
    """What we found (torch 2.13, CPU): torch.amp.GradScaler still cannot unscale complex
    gradients (PyTorch issue 58228), which is why ComplexGradScaler exists. If this test
    starts failing, torch has fixed it: check that it also finds an inf in an imaginary
    part before switching to it."""
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(loss_fn(w, b, x)).backward()
    with pytest.raises(NotImplementedError, match="ComplexFloat"):
        scaler.unscale_(optimizer)


def test_unscale_matches_float64_reference_for_complex_and_real_grads():
    w, b, x, optimizer, loss_fn = complex_problem()
    w64 = w.detach().to(torch.cdouble).requires_grad_()
    b64 = b.detach().double().requires_grad_()
    loss_fn(w64, b64, x.to(torch.cdouble)).backward()

    scaler = ComplexGradScaler(init_scale=2.0**12)
    scaler.scale(loss_fn(w, b, x)).backward()
    assert not scaler.unscale_(optimizer)
    # scaling by a power of two is exact, so only float32 rounding of the backward remains
    torch.testing.assert_close(w.grad.to(torch.cdouble), w64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [complex(float("inf"), 0.0), complex(0.0, float("inf")),
                                 complex(0.0, float("nan")), complex(float("nan"), 1.0)])
def test_non_finite_complex_grad_skips_step_and_backs_off(bad):
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = ComplexGradScaler(init_scale=2.0**10)
    # one good step first, so the optimizer has state to protect
    scaler.scale(loss_fn(w, b, x)).backward()
    assert scaler.step(optimizer) and scaler.skipped_steps == 0
    scaler.update()
    weights = (w.detach().clone(), b.detach().clone())
    state = {k: v.clone() for k, v in optimizer.state[w].items()}

    optimizer.zero_grad()
    scaler.scale(loss_fn(w, b, x)).backward()
    w.grad[2, 1] = bad  # only one entry of one complex gradient is bad
    assert scaler.step(optimizer) is False
    scaler.update()
    assert torch.equal(w.detach(), weights[0]) and torch.equal(b.detach(), weights[1])
    assert all(torch.equal(optimizer.state[w][k], v) for k, v in state.items())
    assert (scaler.skipped_steps, scaler.consecutive_skips, scaler.last_step_skipped) == (1, 1, True)
    assert scaler.get_scale() == 2.0**9


def test_guard_still_skips_when_scaling_is_disabled():
    """bf16 / fp32 need no scaling, but a NaN gradient must still not reach the weights."""
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = ComplexGradScaler(enabled=False)
    loss = loss_fn(w, b, x)
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    loss.backward()
    b.grad[0] = float("nan")
    before = b.detach().clone()
    assert scaler.step(optimizer) is False
    scaler.update()
    assert torch.equal(b.detach(), before) and scaler.get_scale() == 1.0 and scaler.skipped_steps == 1


def test_skip_step_without_backward_counts_a_skip():
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = ComplexGradScaler(init_scale=8.0)
    scaler.skip_step()  # e.g. the loss itself was inf: no backward was run
    assert scaler.step(optimizer) is False
    scaler.update()
    # a non-finite loss is no sign of a scale too large (the scale multiplies only backward): kept
    assert scaler.skipped_steps == 1 and scaler.get_scale() == 8.0 and not optimizer.state


def test_scale_grows_after_growth_interval_finite_steps_and_counter_resets():
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = ComplexGradScaler(init_scale=4.0, growth_interval=3)
    scales = []
    for step in range(7):
        optimizer.zero_grad()
        scaler.scale(loss_fn(w, b, x)).backward()
        if step == 4:
            w.grad[0, 0] = complex(float("inf"), 0.0)
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
    # grows after 3 finite steps, halves on the inf at step 4, tracker restarts
    assert scales == [4.0, 4.0, 8.0, 8.0, 4.0, 4.0, 4.0]
    assert scaler.consecutive_skips == 0 and scaler.skipped_steps == 1 and scaler.total_steps == 7


def test_fp16_autocast_gradients_underflow_without_scaling_and_survive_with_it():
    """Why fp16 needs loss scaling: a gradient of 1e-9 is below fp16's smallest subnormal
    (6e-8), so the fp16 backward of an autocast matmul flushes it to zero."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=gen)
    reference = None
    grads = {}
    for scaled in (False, True):
        layer = torch.nn.Linear(8, 4)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(4, 8, generator=torch.Generator().manual_seed(2)))
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.0)
        scaler = ComplexGradScaler(init_scale=2.0**16, enabled=scaled)
        with torch.autocast("cpu", dtype=torch.float16):
            out = layer(x)
        assert out.dtype == torch.float16
        loss = (out.float() * 1e-9).sum()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads[scaled] = layer.weight.grad.clone()
        reference = 1e-9 * x.double().sum(0).expand(4, 8)
    assert torch.count_nonzero(grads[False]) == 0
    # fp16 unit roundoff 2^-11 on the inputs of the fp16 matmul, summed over 16 rows
    torch.testing.assert_close(grads[True].double(), reference, rtol=1e-2, atol=1e-11)


def test_state_dict_round_trip_is_weights_only_loadable():
    scaler = ComplexGradScaler(init_scale=2.0**7, growth_interval=5, backoff_factor=0.25)
    param = torch.nn.Parameter(torch.zeros(1))
    param.grad = torch.full((1,), math.inf)  # a gradient overflow backs the scale off (a skip_step would not)
    scaler.step(torch.optim.SGD([param], lr=0.1))
    scaler.update()
    buffer = io.BytesIO()
    torch.save(scaler.state_dict(), buffer)
    buffer.seek(0)
    restored = ComplexGradScaler()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == scaler.state_dict()
    assert restored.get_scale() == 2.0**7 * 0.25 and restored.skipped_steps == 1
    with pytest.raises(KeyError, match="missing"):
        restored.load_state_dict({"scale": 1.0})


@pytest.mark.parametrize("kwargs, message", [
    ({"init_scale": 0.0}, "init_scale=0.0"),
    ({"growth_factor": 1.0}, "growth_factor=1.0"),
    ({"backoff_factor": 1.5}, "backoff_factor=1.5"),
    ({"growth_interval": 0}, "growth_interval=0"),
])
def test_invalid_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ComplexGradScaler(**kwargs)



def test_numpy_and_0d_tensor_settings_are_taken_as_plain_floats():
    # np.float32 is no Python float: it used to be refused as "Invalid init_scale=1024.0"
    scaler = ComplexGradScaler(init_scale=np.float32(1024), growth_factor=np.float64(4.0),
                               backoff_factor=torch.tensor(0.25), min_scale=np.int64(2))
    assert (scaler.get_scale(), scaler.growth_factor, scaler.backoff_factor, scaler.min_scale) == (1024, 4, 0.25, 2)
    # plain numbers: the state still loads with weights_only=True
    assert all(type(v) is float for v in (scaler.get_scale(), scaler.init_scale, scaler.growth_factor,
                                          scaler.backoff_factor, scaler.min_scale))
    buffer = io.BytesIO()
    torch.save(scaler.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == scaler.state_dict()


@pytest.mark.parametrize("kwargs", [{"init_scale": np.True_}, {"init_scale": torch.tensor(True)},
                                    {"growth_factor": np.float32("nan")}, {"backoff_factor": torch.tensor([0.5])},
                                    {"min_scale": "1"}])
def test_bools_nonfinite_and_non_scalar_settings_are_refused_by_name(kwargs):
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=rf"Invalid {key}="):
        ComplexGradScaler(**kwargs)


def test_unscale_twice_in_one_step_is_an_error():
    w, b, x, optimizer, loss_fn = complex_problem()
    scaler = ComplexGradScaler()
    scaler.scale(loss_fn(w, b, x)).backward()
    scaler.unscale_(optimizer)
    with pytest.raises(RuntimeError, match="already called"):
        scaler.unscale_(optimizer)


@pytest.mark.parametrize("as_keyword", [False, True])
def test_a_closure_is_refused_while_scaling_and_is_the_optimizers_own_step_when_disabled(as_keyword):
    """A closure computes the gradients again, unscaled, after the finite check: with scaling on,
    TensorGRaD (given ``grad_scale``) divided them by the scale, a 2^16 times smaller step without
    a word. Refused as torch's GradScaler refuses it; disabled, the step equals the optimizer's."""
    from neuralop_mp import TensorGRaD

    def problem():
        gen = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.randn(8, 8, 6, 4, dtype=torch.cfloat, generator=gen))
        optimizer = TensorGRaD([w], lr=1e-2)

        def closure():
            optimizer.zero_grad()
            loss = (w.abs() ** 2).sum() * 1e-3
            loss.backward()
            return loss
        return w, optimizer, closure

    def step(scaler, optimizer, closure):
        return scaler.step(optimizer, closure=closure) if as_keyword else scaler.step(optimizer, closure)

    w, optimizer, closure = problem()
    before = w.detach().clone()
    scaler = ComplexGradScaler()
    scaler.scale((w.abs() ** 2).sum()).backward()
    with pytest.raises(ValueError, match=r"Invalid closure=.* with loss scaling enabled.*scaler\.step\(optimizer\)"):
        step(scaler, optimizer, closure)
    assert torch.equal(w.detach(), before) and scaler.total_steps == 0

    reference_w, reference, reference_closure = problem()
    reference.step(reference_closure)
    w, optimizer, closure = problem()
    scaler = ComplexGradScaler(enabled=False)
    assert step(scaler, optimizer, closure) is True
    scaler.update()
    assert torch.equal(w.detach(), reference_w.detach()) and not torch.equal(w.detach(), before)
    assert (scaler.total_steps, scaler.skipped_steps) == (1, 0)
    # disabled, a step marked as skipped stays skipped, closure or not
    w, optimizer, closure = problem()
    scaler.skip_step()
    assert step(scaler, optimizer, closure) is False
    assert torch.equal(w.detach(), before) and scaler.skipped_steps == 1


def test_a_first_positional_argument_that_is_no_closure_is_passed_on():
    """Only a callable is taken for a closure: another optimizer's ``step(lr_scale)`` is stepped."""
    w = torch.nn.Parameter(torch.ones(3))

    class ScaledSGD(torch.optim.SGD):
        def step(self, lr_scale=1.0):
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.add_(p.grad, alpha=-group["lr"] * lr_scale)

    optimizer = ScaledSGD([w], lr=0.1)
    scaler = ComplexGradScaler(init_scale=4.0)
    scaler.scale(w.sum()).backward()
    assert scaler.step(optimizer, 0.5) is True
    assert torch.allclose(w.detach(), torch.full((3,), 0.95))
