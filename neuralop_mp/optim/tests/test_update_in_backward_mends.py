"""Update in backward with lazy spectral-weight gradients: gradient hooks and double-backward
losses train bitwise as the ordinary step (CPU)."""
import pytest
import torch

from neuralop_mp.optim.factory import create_optimizer
from neuralop_mp.optim.tests.test_update_in_backward import (HALF_CONFIG, N_STEPS, _assert_same, _batches,
                                                             _count_lazy_steps, _half_model)
from neuralop_mp.optim.update_in_backward import enable_update_in_backward


def _spectral_weights(model):
    return [conv.weight.tensor for conv in model.fno_blocks.convs]


def _hooked_run(in_backward, register):
    """N_STEPS steps of the half recipe; ``register(weight, seen)`` sets a hook on the first
    spectral weight that appends what it sees to ``seen``. The lazy steps are counted."""
    model = _half_model()
    opt = create_optimizer(model, HALF_CONFIG)
    calls = _count_lazy_steps(opt)
    seen = []
    register(_spectral_weights(model)[0], seen)
    if in_backward:
        enable_update_in_backward(opt)
    for x, y in _batches(N_STEPS):
        opt.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return model, opt, seen, calls


def _tensor_hook(weight, seen):
    def halve(grad):
        seen.append(None if grad is None else grad.clone())
        return None if grad is None else grad * 0.5  # what is accumulated, hence stepped

    weight.register_hook(halve)


def _post_accumulate_hook(weight, seen):
    weight.register_post_accumulate_grad_hook(lambda p: seen.append(None if p.grad is None else p.grad.clone()))


@pytest.mark.parametrize("register", [_tensor_hook, _post_accumulate_hook], ids=["register_hook", "post_accumulate"])
def test_a_hooked_spectral_weight_gets_its_gradient_built(register):
    """A weight with a gradient hook of the user's is given its ordinary gradient: the hook
    sees it (and a tensor hook's result is what steps the weight), bitwise as the ordinary
    step; the weight without a hook is still stepped from slices."""
    ref_model, ref_opt, ref_seen, _ = _hooked_run(False, register)
    model, opt, seen, calls = _hooked_run(True, register)
    assert len(seen) == len(ref_seen) == N_STEPS
    assert all(g is not None for g in seen)
    for want, have in zip(ref_seen, seen):
        assert torch.equal(torch.view_as_real(want.to(torch.cfloat)), torch.view_as_real(have.to(torch.cfloat)))
    assert calls == ["LazyWeightGradient"] * N_STEPS  # the second spectral weight only
    _assert_same(ref_model, ref_opt, model, opt)


def _pino_run(in_backward, lazy=True):
    """N_STEPS steps of a loss with a gradient penalty (a backward through the spectral
    product's own backward), then one plain step; the lazy steps of each are counted."""
    model = _half_model()
    opt = create_optimizer(model, HALF_CONFIG)
    calls = _count_lazy_steps(opt)
    if in_backward:
        enable_update_in_backward(opt, lazy_gradients=lazy)
    counts = []
    for x, y in _batches(N_STEPS):
        x = x.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        gx, = torch.autograd.grad(out.sum(), x, create_graph=True)
        (((out - y) ** 2).mean() + 0.1 * gx.square().mean()).backward()
        opt.step()
        counts.append(len(calls))
    x, y = _batches(1)[0]
    opt.zero_grad(set_to_none=True)
    ((model(x) - y) ** 2).mean().backward()
    opt.step()
    counts.append(len(calls))
    return model, opt, counts


def test_a_double_backward_loss_trains_as_the_ordinary_step():
    """The weights get their ordinary gradients in a step whose loss differentiates through
    the product's backward; the next plain step is lazy again."""
    ref_model, ref_opt, _ = _pino_run(False)
    model, opt, counts = _pino_run(True)
    assert counts == [0] * N_STEPS + [2]
    _assert_same(ref_model, ref_opt, model, opt)
    eager_model, eager_opt, _ = _pino_run(True, lazy=False)
    _assert_same(eager_model, eager_opt, model, opt)
