"""Second derivatives (backward with create_graph=True, then backward again) of the mixed-precision
models against upstream's float32 models with the same weights."""
import warnings

import pytest
import torch
from neuralop.models import FNO, TFNO

import neuralop_mp as nm

BF16_U = 2.0**-8
# relative (norm) error of a second-order gradient in "mixed": each of the forward, the first
# backward and the second backward rounds its spectral operands and products to bfloat16 once, in
# a few layers; the results stay within 1.5 units here, a missing term is off by order one
MIXED_TOL = 8 * BF16_U
FULL_TOL = 1e-5  # float32 rounding only

MODELS = [
    pytest.param(FNO, nm.MixedPrecisionFNO, {}, id="fno-dense"),
    pytest.param(TFNO, nm.MixedPrecisionTFNO, dict(rank=0.5), id="tfno-pairwise"),
    pytest.param(TFNO, nm.MixedPrecisionTFNO, dict(rank=0.5, implementation="reconstructed"), id="tfno-rebuilt"),
]


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _input_gradient_penalty(model, x):
    # the loss is on the input gradient: its derivative in the weights needs d(grad_x)/dW
    x = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(model(x).square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    return x


def _weight_gradient_penalty(model, x):
    # the loss is on the weights' gradients: it needs d(grad_W)/dx, also through earlier layers
    x = x.clone().requires_grad_()
    params = list(model.parameters())
    grads = torch.autograd.grad(model(x).square().sum(), params, create_graph=True)
    sum(g.abs().square().sum() for g in grads).backward()
    return x


@pytest.mark.parametrize("penalty", [_input_gradient_penalty, _weight_gradient_penalty])
@pytest.mark.parametrize("upstream_cls, ours_cls, extra", MODELS)
def test_second_derivatives_match_upstream(upstream_cls, ours_cls, extra, penalty):
    torch.manual_seed(0)
    kw = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2, **extra)
    upstream, ours = upstream_cls(**kw), ours_cls(**kw)
    ours.load_state_dict(upstream.state_dict())
    x = torch.randn(2, 1, 32, 32)
    x_ref = penalty(upstream, x)
    expected = {name: p.grad for name, p in upstream.named_parameters()}
    for mode, tol in (("full", FULL_TOL), ("mixed", MIXED_TOL)):
        ours.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nm.set_precision(ours, mode)
            x_ours = penalty(ours, x)
        assert _rel(x_ours.grad, x_ref.grad) <= tol, mode
        for name, p in ours.named_parameters():
            assert p.grad is not None, (mode, name)
            assert _rel(p.grad, expected[name]) <= tol, (mode, name, _rel(p.grad, expected[name]))
