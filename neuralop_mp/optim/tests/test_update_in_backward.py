"""Update in backward gives bitwise the ordinary step's weights and optimizer state (CPU)."""
import io

import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.optim.factory import create_optimizer
from neuralop_mp.optim.update_in_backward import enable_update_in_backward
from neuralop_mp.tests.exact import equal_exactly

N_STEPS = 5


def _model():
    torch.manual_seed(0)
    return FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)


def _batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 1, 16, 16, generator=g),
             torch.randn(4, 1, 16, 16, generator=g)) for _ in range(n)]


OPT_CONFIGS = {
    "adamw": {"optimizer": "adamw", "learning_rate": 1e-2, "weight_decay": 1e-3},
    # gap 2: projector refreshes at steps 0, 2 and 4, i.e. inside the run and after the resume
    "tensorgrad": {"optimizer": "tensorgrad", "learning_rate": 1e-2, "weight_decay": 1e-3,
                   "tensorgrad_update_proj_gap": 2, "tensorgrad_min_params": 100},
}


def _train(model, optimizer, batches, in_backward):
    handle = enable_update_in_backward(optimizer) if in_backward else None
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        if in_backward:
            assert all(p.grad is None for p in model.parameters())  # freed during backward
        optimizer.step()
    if handle is not None:
        handle.remove()


def _assert_same(model_a, opt_a, model_b, opt_b):
    params_b = dict(model_b.named_parameters())
    for name, a in model_a.named_parameters():
        assert equal_exactly(a, params_b[name]), name
    state_a, state_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for index in state_a:
        assert state_a[index].keys() == state_b[index].keys()
        for key, value in state_a[index].items():
            assert equal_exactly(torch.as_tensor(value), torch.as_tensor(state_b[index][key])), (index, key)


def _fresh_run(name, batches, in_backward):
    """A new model and optimizer ``name`` trained on ``batches``."""
    model = _model()
    opt = create_optimizer(model, OPT_CONFIGS[name])
    _train(model, opt, batches, in_backward=in_backward)
    return model, opt


@pytest.mark.parametrize("name", sorted(OPT_CONFIGS))
def test_update_in_backward_is_bitwise_the_ordinary_step(name):
    batches = _batches(N_STEPS)
    ref_model, ref_opt = _fresh_run(name, batches, in_backward=False)
    model, opt = _fresh_run(name, batches, in_backward=True)
    if name == "tensorgrad":
        assert any(bool(s.get("compressed", False)) for s in opt.state.values())
    _assert_same(ref_model, ref_opt, model, opt)


@pytest.mark.parametrize("name", sorted(OPT_CONFIGS))
def test_update_in_backward_through_a_checkpoint_resume(name):
    batches = _batches(N_STEPS)
    ref_model, ref_opt = _fresh_run(name, batches, in_backward=False)
    model, opt = _fresh_run(name, batches[:3], in_backward=True)
    buffer = io.BytesIO()
    torch.save({"model": {k: v.detach() for k, v in model.named_parameters()}, "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = _model()
    resumed_model.load_state_dict(saved["model"], strict=False)
    resumed_opt = create_optimizer(resumed_model, OPT_CONFIGS[name])
    resumed_opt.load_state_dict(saved["opt"])
    _train(resumed_model, resumed_opt, batches[3:], in_backward=True)
    _assert_same(ref_model, ref_opt, resumed_model, resumed_opt)


def test_half_recipe_is_bitwise_the_ordinary_step(monkeypatch):
    """complex32 spectral weights, bf16 compressed states, mixed layer: in backward the sparse
    residual is written into the 16-bit gradient and the gradient is released once projected;
    both paths read it in chunks of 2000 bytes (one index along axis 0 of a spectral weight,
    so every refresh, projection and back-projection takes several) and round in chunks of
    1000 elements; the ordinary step does the same arithmetic, so the weights and state stay
    bitwise equal across two refreshes."""
    from neuralop_mp import MixedPrecisionSpectralConv, set_precision, set_spectral_weight_dtype
    from neuralop_mp.optim import adam_math, gradient_chunks, tensorgrad

    monkeypatch.setattr(adam_math, "ROUNDING_CHUNK", 1000)
    monkeypatch.setattr(tensorgrad, "ROUNDING_CHUNK", 1000)
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", 2000)

    def half_model():
        torch.manual_seed(0)
        model = FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                    conv_module=MixedPrecisionSpectralConv)
        set_precision(model, "mixed", half_dtype="bfloat16")
        set_spectral_weight_dtype(model, "complex32")
        return model

    config = dict(OPT_CONFIGS["tensorgrad"], tensorgrad_state_dtype="bfloat16")
    batches = _batches(N_STEPS)
    runs = []
    for in_backward in (False, True):
        model = half_model()
        before = [p.detach().clone() for p in model.parameters()]
        opt = create_optimizer(model, config)
        _train(model, opt, batches, in_backward=in_backward)
        runs.append((model, opt))
    half = [p for p in model.parameters() if p.dtype == torch.complex32]
    assert half and all(p.numel() * 2 > 1000 for p in half)  # several chunks each
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert opt.owns_gradients is False  # reset when the hooks were removed
    _assert_same(*runs[0], *runs[1])


def test_learning_rate_scheduler_is_read_by_each_hook():
    batches = _batches(4)
    results = []
    for in_backward in (False, True):
        model = _model()
        opt = create_optimizer(model, OPT_CONFIGS["tensorgrad"])
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        for batch in batches:
            _train(model, opt, [batch], in_backward)
            scheduler.step()
        results.append((model, opt))
    _assert_same(*results[0], *results[1])


@pytest.mark.parametrize("setting, value, words", [
    ("max_grad_norm", 1.0, "max_grad_norm=1.0"),
    ("loss_scaling", "dynamic", "loss_scaling='dynamic'"),
    ("grad_accumulation_steps", 4, "grad_accumulation_steps=4"),
    ("distributed", True, "distributed=True"),
])
def test_refused_combinations_name_both_settings(setting, value, words):
    opt = create_optimizer(_model(), OPT_CONFIGS["adamw"])
    with pytest.raises(ValueError, match="update_in_backward=True") as info:
        enable_update_in_backward(opt, **{setting: value})
    assert words in str(info.value)


def test_nonfinite_skip_is_refused():
    opt = create_optimizer(_model(), {**OPT_CONFIGS["tensorgrad"], "tensorgrad_nonfinite_grad": "skip"})
    with pytest.raises(ValueError, match=r"update_in_backward=True.*nonfinite_grad='skip'"):
        enable_update_in_backward(opt)


def test_stale_gradient_is_reported():
    model = _model()
    opt = create_optimizer(model, OPT_CONFIGS["adamw"])
    enable_update_in_backward(opt)
    x, y = _batches(1)[0]
    next(iter(model.parameters())).grad = torch.ones_like(next(iter(model.parameters())))
    with pytest.raises(RuntimeError, match="zero_grad"):
        ((model(x) - y) ** 2).mean().backward()
