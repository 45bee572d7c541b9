"""One rule for "this gradient is all zero" (a refresh of compressed bases keeps them then):
the gradient as stored, before the up-cast and the loss unscaling, in ``step()`` and in
``step_parameter`` alike; ``step_parameter`` reads it with its finite check, in one pass."""
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.compressed_step import project_parts
from neuralop_mp.optim.tests.helpers import random_tensor

SHAPE = (12, 10, 6, 4)


def _optimizer(gap=1):
    p = torch.nn.Parameter(random_tensor(SHAPE, False, 0, torch.float32))
    opt = TensorGRaD([p], lr=1e-2, min_params=10, update_proj_gap=gap, sparse_ratio=None)
    p.grad = random_tensor(SHAPE, False, 1, torch.float32)
    opt.step()  # bases and moments
    return opt, p


def test_a_gradient_that_underflows_only_once_unscaled_is_nonzero_for_project_parts():
    """step() tests the raw (still scaled) gradient; project_parts, asked without a flag, tested
    it after unscaling: 1e-30 / 1e30 underflows in fp32, and a due refresh was held back."""
    opt, p = _optimizer()
    group, state = opt.param_groups[0], opt.state[p]
    p.grad = torch.full(SHAPE, 1e-30)
    assert torch.all(p.grad * (1.0 / 1e30) == 0)  # unscaled, nothing is left
    project_parts(p, opt.projector_for(group), group, state, grad_scale=1e30)
    assert "refresh_pending" not in state  # refreshed, as step(grad_scale=1e30) decides
    zero = torch.zeros(SHAPE)
    p.grad = zero
    project_parts(p, opt.projector_for(group), group, state, grad_scale=1e30)
    assert bool(state["refresh_pending"])  # a stored zero gradient still waits


def _narrowed_rows(monkeypatch, target):
    """Rows read from ``target`` through ``narrow`` (how a lazy gradient is computed)."""
    rows = []
    real = torch.Tensor.narrow

    def narrow(self, dim, start, length):
        if self is target:
            rows.append(length)
        return real(self, dim, start, length)

    monkeypatch.setattr(torch.Tensor, "narrow", narrow)
    return rows


def test_step_parameter_reads_the_zero_flag_with_its_finite_check(monkeypatch):
    """On a refresh step step_parameter reads the gradient once for both flags (one pass more
    than step(), whose flags read the whole tensor): it read it a second time for the zero test,
    which for a lazy gradient computes it again."""
    grad = random_tensor(SHAPE, False, 2, torch.float32)
    opt_step, p_step = _optimizer()
    opt_param, p_param = _optimizer()
    rows = _narrowed_rows(monkeypatch, grad)
    p_step.grad = grad
    opt_step.step()
    by_step = sum(rows)
    rows.clear()
    opt_param.step_parameter(p_param, grad)
    assert sum(rows) == by_step + SHAPE[0]
    assert torch.equal(p_step, p_param)
    assert all(torch.equal(value, opt_param.state[p_param][key]) for key, value in opt_step.state[p_step].items())


def test_step_parameter_keeps_the_bases_on_a_zero_gradient_as_step_does():
    opt_step, p_step = _optimizer()
    opt_param, p_param = _optimizer()
    p_step.grad = torch.zeros(SHAPE)
    opt_step.step()
    opt_param.step_parameter(p_param, torch.zeros(SHAPE))
    for opt, p in ((opt_step, p_step), (opt_param, p_param)):
        assert bool(opt.state[p]["refresh_pending"])
    assert torch.equal(p_step, p_param)
