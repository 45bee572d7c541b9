"""Recompute of the Fourier path / FNO blocks: the same gradients as without recompute (CPU).

The CPU forward is deterministic, so the replayed forward produces the same values
and the gradients are compared bitwise (``torch.equal``).
"""
import copy

import pytest
import torch

from neuralop_mp import set_precision
from neuralop_mp.memory import SavedTensorBytes
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from neuralop_mp.models.recompute import recompute_mode, set_recompute


def _fno():
    return MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)


def _tfno():
    return MixedPrecisionTFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              rank=0.5)


def _uno():
    return MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                             uno_out_channels=[8, 8, 8], uno_n_modes=[[6, 6], [4, 4], [6, 6]],
                             uno_scalings=[[1.0, 1.0], [0.5, 0.5], [2.0, 2.0]], horizontal_skips_map={})


BUILDERS = {"fno": _fno, "tfno": _tfno, "uno": _uno}


def _gradients(model, x, y, autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    ((out.float() - y) ** 2).mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("recompute", ["fourier", "block"])
@pytest.mark.parametrize("precision, stabilizer, autocast", [
    ("full", None, False), ("mixed", "tanh", False), ("half", "tanh", True), ("mixed", None, True)])
def test_recompute_gives_the_same_gradients(arch, recompute, precision, stabilizer, autocast):
    torch.manual_seed(0)
    reference = BUILDERS[arch]()
    set_precision(reference, precision, half_dtype="bfloat16", stabilizer=stabilizer)
    model = copy.deepcopy(reference)
    set_recompute(model, recompute)
    assert recompute_mode(model) == recompute
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    expected = _gradients(reference, x, y, autocast)
    got = _gradients(model, x, y, autocast)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_a_precision_change_between_steps_is_replayed_as_set():
    """A schedule changes the layers' precision between epochs: each step's replay uses it."""
    torch.manual_seed(0)
    reference = _fno()
    model = copy.deepcopy(reference)
    set_recompute(model, "fourier")
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    for mode, stabilizer in (("half", "tanh"), ("mixed", None), ("full", None)):
        for m in (reference, model):
            set_precision(m, mode, half_dtype="bfloat16", stabilizer=stabilizer)
        expected, got = _gradients(reference, x, y, False), _gradients(model, x, y, False)
        assert all(torch.equal(expected[k], got[k]) for k in expected), mode


def test_recompute_saves_fewer_tensors_for_backward():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    saved = {}
    for mode in ("none", "fourier", "block"):
        model = set_recompute(_fno(), mode)
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            model(x).sum()
        saved[mode] = meter.bytes
    assert saved["block"] < saved["fourier"] < saved["none"], saved


def test_none_restores_the_ordinary_forward_and_bad_mode_is_named():
    model = set_recompute(_fno(), "block")
    set_recompute(model, "none")
    assert recompute_mode(model) == "none"
    assert all("forward" not in m.__dict__ for m in model.modules())
    with pytest.raises(ValueError, match=r"recompute='spectral'.*'none', 'fourier', 'block'"):
        set_recompute(model, "spectral")
    with pytest.raises(ValueError, match="SpectralConv"):
        set_recompute(torch.nn.Linear(2, 2), "fourier")


def test_a_deep_copy_or_pickle_keeps_working():
    model = set_recompute(_fno(), "fourier")
    clone = copy.deepcopy(model)
    assert recompute_mode(clone) == "fourier"
    assert all(m.forward.module is m for m in clone.modules() if "forward" in m.__dict__)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(clone(x), model(x))


def test_config_key_model_recompute_reaches_the_model():
    import neuralop_mp

    config = {"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1, "n_modes": [4, 4],
                        "hidden_channels": 4, "n_layers": 1, "recompute": "fourier"}}
    assert recompute_mode(neuralop_mp.get_model(config)) == "fourier"
    config["model"]["recompute"] = "everything"
    with pytest.raises(ValueError, match="recompute='everything'"):
        neuralop_mp.get_model(config)
