"""Switching a built model's precision: set, read, restore, stabilizer placement, validation."""
import pytest
import torch
from neuralop.layers.fno_block import FNOBlocks
from neuralop.models import FNO, TFNO
from torch.overrides import TorchFunctionMode

import neuralop_mp
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.precision_switch import get_precision, precision, restore_precision, set_precision
from neuralop_mp.vocabulary import normalize_half_dtype, normalize_stabilizer, resolve_half_dtype


def _fno(cls=FNO, n_layers=3):
    return cls(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=n_layers,
               conv_module=MixedPrecisionSpectralConv)


class _CountTanh(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.tanh, torch.Tensor.tanh):
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _flags(model):
    return {(type(m).__name__, m.__dict__["fno_block_precision"]) for m in model.modules()
            if "fno_block_precision" in m.__dict__}


@pytest.mark.parametrize("cls", [FNO, TFNO])
def test_set_precision_keeps_every_copy_in_sync(cls):
    model = _fno(cls)
    set_precision(model, "mixed", half_dtype="bfloat16", stabilizer="tanh")
    assert _flags(model) == {(cls.__name__, "mixed"), ("FNOBlocks", "mixed"), ("MixedPrecisionSpectralConv", "mixed")}
    assert get_precision(model) == ("mixed", "bfloat16", "tanh")
    blocks = [m for m in model.modules() if isinstance(m, FNOBlocks)]
    assert all(b.stabilizer == "tanh" for b in blocks)
    assert all(c.stabilizer is None for b in blocks for c in b.convs)  # the block applies it
    assert all(c.half_dtype == "bfloat16" for b in blocks for c in b.convs)


def test_snapshot_and_context_manager_restore_exactly():
    model = _fno()
    x = torch.randn(2, 1, 16, 16)
    full = model(x)
    snapshot = set_precision(model, "half", half_dtype="float16", stabilizer="tanh")
    assert not torch.equal(model(x), full)
    restore_precision(snapshot)
    assert get_precision(model) == ("full", "auto", None)
    assert torch.equal(model(x), full)
    with pytest.raises(RuntimeError, match="boom"):
        with precision(model, "mixed", stabilizer="tanh"):
            assert get_precision(model) == ("mixed", "auto", "tanh")
            raise RuntimeError("boom")
    assert get_precision(model) == ("full", "auto", None)
    assert torch.equal(model(x), full)


def test_stabilizer_applied_once_per_forward_fft():
    model = _fno(n_layers=3)
    set_precision(model, "mixed", stabilizer="tanh")
    with _CountTanh() as counter:
        model(torch.randn(1, 1, 16, 16))
    assert counter.calls == 3  # one forward FFT per layer, FNO's nonlinearity is gelu
    layer = MixedPrecisionSpectralConv(2, 2, (4, 4))
    set_precision(layer, "mixed", stabilizer="tanh")  # a bare layer applies it itself
    assert layer.stabilizer == "tanh"
    with _CountTanh() as counter:
        layer(torch.randn(1, 2, 8, 8))
    assert counter.calls == 1
    set_precision(model, "full", stabilizer=None)
    with _CountTanh() as counter:
        model(torch.randn(1, 1, 16, 16))
    assert counter.calls == 0


def test_bad_values_are_rejected_naming_the_allowed_ones():
    model = _fno()
    with pytest.raises(ValueError, match=r"fno_block_precision='hlaf'; allowed values: 'full', 'mixed', 'half'"):
        set_precision(model, "hlaf")
    with pytest.raises(ValueError, match=r"half_dtype='fp8'.*'auto', 'float16', 'bfloat16'"):
        set_precision(model, "mixed", half_dtype="fp8")
    with pytest.raises(ValueError, match=r"stabilizer='clip'.*None, 'off', 'tanh'"):
        set_precision(model, "mixed", stabilizer="clip")
    assert get_precision(model) == ("full", "auto", None)  # nothing changed by the failed calls
    upstream = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4)
    with pytest.raises(ValueError, match="no MixedPrecisionSpectralConv"):
        set_precision(upstream, "mixed")
    with pytest.raises(ValueError, match="no MixedPrecisionSpectralConv"):
        get_precision(upstream)


def test_get_precision_detects_disagreeing_layers():
    model = _fno()
    model.fno_blocks.convs[1].fno_block_precision = "mixed"
    with pytest.raises(ValueError, match="different precisions"):
        get_precision(model)


def test_half_dtype_and_stabilizer_normalisation():
    assert resolve_half_dtype("auto", "cpu") == torch.bfloat16
    assert resolve_half_dtype("auto", "cuda") == torch.float16
    assert resolve_half_dtype(torch.float16, "cpu") == torch.float16
    assert normalize_half_dtype(torch.bfloat16) == "bfloat16"
    assert normalize_half_dtype(None) == "auto"
    for spelling in ("None", "none", "", None):
        assert normalize_stabilizer(spelling) is None
    with pytest.raises(ValueError, match="float64"):
        normalize_half_dtype(torch.float64)


def test_public_names_resolve():
    assert neuralop_mp.set_precision is set_precision
    assert neuralop_mp.MixedPrecisionSpectralConv is MixedPrecisionSpectralConv


def test_apply_precision_policy_changes_only_what_differs(monkeypatch):
    import neuralop_mp.layers.precision_switch as switch
    from neuralop_mp import PrecisionPolicy

    model = _fno()
    calls = []
    real = switch.set_precision
    monkeypatch.setattr(switch, "set_precision", lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    previous = switch.apply_precision_policy(model, PrecisionPolicy("mixed", "bfloat16", "tanh", "complex32"))
    # upstream's FNO class never had a scope set: plain autocast ("model")
    assert previous == PrecisionPolicy(autocast_scope="model") and len(calls) == 1
    assert switch.get_precision_policy(model) == PrecisionPolicy("mixed", "bfloat16", "tanh", "complex32")
    assert {p.dtype for p in model.fno_blocks.convs.parameters() if p.is_complex()} == {torch.complex32}
    switch.apply_precision_policy(model, PrecisionPolicy("mixed", "bfloat16", "tanh", "complex32"))
    assert len(calls) == 1  # already there: nothing set again
    # a mode string (or a dict of some fields) changes those and keeps the model's others: it reset them to the
    # defaults, turning complex32 weights back into complex64 under a live optimizer without a word
    switch.apply_precision_policy(model, "full")
    assert switch.get_precision_policy(model) == PrecisionPolicy("full", "bfloat16", "tanh", "complex32") and len(calls) == 2
    assert {p.dtype for p in model.fno_blocks.convs.parameters() if p.is_complex()} == {torch.complex32}
    switch.apply_precision_policy(model, {"spectral_weight_dtype": "complex64", "stabilizer": None})
    assert switch.get_precision_policy(model) == PrecisionPolicy("full", "bfloat16", None, "complex64")
    switch.apply_precision_policy(model, PrecisionPolicy())  # a whole policy: every field, as before
    assert switch.get_precision_policy(model) == PrecisionPolicy()
