import torch
from neuralop.layers.skip_connections import SoftGating
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.layers.soft_gating import HalfSafeSoftGating, adopt_half_safe_soft_gating
from neuralop_mp.layers.tests.reference import U
from neuralop_mp.memory import SavedTensorBytes


def _fno(conv_module=neuralop_mp.MixedPrecisionSpectralConv):
    torch.manual_seed(0)
    return FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16, n_layers=2,
               conv_module=conv_module)


def test_set_precision_swaps_soft_gating_keeping_state_and_fp32_outputs():
    model = _fno()
    x = torch.randn(2, 1, 16, 16)
    keys = list(model.state_dict())
    n_gates = sum(type(m) is SoftGating for m in model.modules())
    assert n_gates > 0
    before = model(x)
    neuralop_mp.set_precision(model, "full")
    assert sum(type(m) is SoftGating for m in model.modules()) == 0
    assert sum(isinstance(m, HalfSafeSoftGating) for m in model.modules()) == n_gates
    assert list(model.state_dict()) == keys
    assert torch.equal(model(x), before)  # the cast is a no-op in fp32


def test_gate_follows_input_dtype_and_gradient_stays_fp32():
    torch.manual_seed(0)
    gate = SoftGating(4, n_dim=1, bias=True)
    with torch.no_grad():
        gate.weight.uniform_(0.5, 1.5)
        gate.bias.uniform_(-1, 1)
    assert adopt_half_safe_soft_gating(gate) == 1
    x = torch.randn(3, 4, 5)
    y = gate(x.bfloat16())
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert gate.weight.grad.dtype == torch.float32
    # d/dw sum(w * x + b) = sum over batch and space of the bfloat16 input (the reference takes
    # that same rounded x); the bfloat16 weight's gradient is that sum rounded once to bfloat16:
    # within u = 2^-8 of it, relative (measured 3.8e-3 worst over 200 seeds)
    ref = x.bfloat16().double().sum(dim=(0, 2)).reshape(gate.weight.shape)
    assert ((gate.weight.grad.double() - ref).abs() <= U[torch.bfloat16] * ref.abs()).all()


def test_half_safe_gating_reduces_saved_bytes_under_autocast():
    """Upstream's fp32 gate promotes the block's activations to fp32 under autocast."""
    x = torch.randn(2, 1, 32, 32)

    def saved(model):
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(x).float().sum()
        return meter.bytes

    model = _fno()
    neuralop_mp.set_precision(model, "mixed", half_dtype="bfloat16")
    with_fix = saved(model)
    for m in model.modules():  # undo the swap to measure upstream's gate
        if type(m) is HalfSafeSoftGating:
            m.__class__ = SoftGating
    assert saved(model) > 1.15 * with_fix
