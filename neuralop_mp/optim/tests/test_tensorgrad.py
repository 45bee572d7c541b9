import io
import math

import pytest
import torch

from neuralop_mp.layers.tests.reference import DEVICES
from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import force_compression, low_rank_tensor, random_tensor, run_steps

COMPLEX_SHAPE = (6, 5, 4, 3)  # (in, out, kx, ky) of a 2D spectral weight
REAL_SHAPE = (7, 9)
HYPER = dict(lr=1e-2, eps=1e-6, weight_decay=0.1)


def _params(dtype_c=torch.complex64, dtype_r=torch.float32):
    return [
        torch.nn.Parameter(random_tensor(COMPLEX_SHAPE, True, 99).to(dtype_c)),
        torch.nn.Parameter(random_tensor(REAL_SHAPE, False, 98).to(dtype_r)),
    ]


def _grads(n_steps, offset=0):
    return [
        [random_tensor(COMPLEX_SHAPE, True, offset + s), random_tensor(REAL_SHAPE, False, 1000 + offset + s)]
        for s in range(n_steps)
    ]


def _adamw_float64_reference(grads):
    params = _params(torch.complex128, torch.float64)
    run_steps(torch.optim.AdamW(params, **HYPER), params, grads)
    return params


def _assert_close_to(params, reference, rtol):
    for p, ref in zip(params, reference):
        err = ((p.detach().to(ref.dtype) - ref).abs().max() / ref.abs().max()).item()
        assert err < rtol, err


@pytest.mark.parametrize(
    "settings",
    [
        dict(rank=1.0, sparse_ratio=None, scale=1.0),  # full Tucker factors, low-rank update not scaled
        dict(rank=None, sparse_ratio=1.0, reset_sparse_moments=False),  # every entry, moments carried
        dict(rank=None, sparse_ratio=1.0, sparse_type="topk", update_proj_gap=1000),
        dict(rank=1.0, sparse_ratio=None, order="lowrank_first", state_dtype="float32", scale=1.0),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_full_rank_or_full_support_reduces_to_adamw(settings, device, monkeypatch):
    # a full support saves no memory, so it is routed to plain moments unless forced
    force_compression(monkeypatch)
    grads = _grads(30)
    reference = _adamw_float64_reference(grads)
    params = [torch.nn.Parameter(p.detach().to(device)) for p in _params()]
    opt = TensorGRaD(params, **HYPER, **{"min_params": 10, "update_proj_gap": 7, **settings})
    run_steps(opt, params, grads)
    assert all(bool(opt.state[p]["compressed"]) for p in params)
    # fp32 arithmetic against a float64 AdamW over 30 steps across 4 refreshes
    _assert_close_to([p.cpu() for p in params], reference, rtol=2e-6)


def test_zero_residual_second_part_equals_first_alone():
    # gradients supported on exactly k entries: top-k selects them and the
    # Tucker part of the (exactly zero) residual contributes nothing: its refresh waits for a
    # nonzero residual, so it never gets a basis (from zeros one would be arbitrary)
    k = 18
    mask = torch.zeros(COMPLEX_SHAPE[0] * COMPLEX_SHAPE[1] * COMPLEX_SHAPE[2] * COMPLEX_SHAPE[3], dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=torch.Generator().manual_seed(0))[:k]] = True
    mask = mask.reshape(COMPLEX_SHAPE)
    grads = [[g[0] * mask, g[1]] for g in _grads(20)]
    common = dict(sparse_type="topk", sparse_ratio=k / mask.numel(), min_params=10, update_proj_gap=6, **HYPER)
    alone, composite = _params(), _params()

    def groups(params):  # the real weight is plain AdamW in both runs
        return [{"params": params[:1]}, {"params": params[1:], "compress": False}]

    run_steps(TensorGRaD(groups(alone), rank=None, **common), alone, grads)
    opt = TensorGRaD(groups(composite), rank=0.5, **common)
    run_steps(opt, composite, grads)
    state = opt.state[composite[0]]
    assert "low_rank_exp_avg" not in state and bool(state["residual_refresh_pending"])
    for a, b in zip(alone, composite):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def _lockstep(state_dtype, tmp_path, device="cpu"):
    model_a = [torch.nn.Parameter(p.detach().to(device)) for p in _params()]
    settings = dict(min_params=10, update_proj_gap=7, rank=0.5, sparse_ratio=0.1, state_dtype=state_dtype,
                    reset_sparse_moments=False, **HYPER)
    opt_a = TensorGRaD(model_a, **settings)
    run_steps(opt_a, model_a, _grads(20))
    path = tmp_path / "opt.pt"
    torch.save(opt_a.state_dict(), path)
    model_b = [torch.nn.Parameter(p.detach().clone()) for p in model_a]
    opt_b = TensorGRaD(model_b, **settings)
    opt_b.load_state_dict(torch.load(path, weights_only=True))
    return model_a, opt_a, model_b, opt_b


@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_lockstep_is_bit_identical_across_a_refresh(state_dtype, tmp_path, device):
    model_a, opt_a, model_b, opt_b = _lockstep(state_dtype, tmp_path, device)
    for key, value in opt_a.state[model_a[0]].items():
        loaded = opt_b.state[model_b[0]][key]
        # the scalar counters stay on the CPU (as the optimizer makes them); tensors on the param's device
        expected = torch.device("cpu") if value.dim() == 0 else model_a[0].device
        assert loaded.device == value.device == expected, (key, loaded.device, value.device)
        assert loaded.dtype == value.dtype and torch.equal(loaded, value), key
    more = _grads(20, offset=500)  # steps 20..39 cross the refreshes at 21, 28 and 35
    run_steps(opt_a, model_a, more)
    run_steps(opt_b, model_b, more)
    for a, b in zip(model_a, model_b):
        assert torch.equal(a, b)


def test_bfloat16_state_survives_load_state_dict(tmp_path):
    model_a, opt_a, model_b, opt_b = _lockstep("bfloat16", tmp_path)
    state = opt_b.state[model_b[0]]
    assert state["sparse_exp_avg_sq"].dtype == torch.bfloat16
    assert state["low_rank_exp_avg"].dtype == torch.bfloat16
    assert any(k.startswith("low_rank_basis_factor") and v.dtype == torch.bfloat16 for k, v in state.items())
    assert state["sparse_basis_indices"].dtype == torch.int32
    assert opt_b.state[model_b[1]]["low_rank_exp_avg_sq"].dtype == torch.bfloat16  # real weight


def test_load_state_dict_hooks_see_the_state_as_torch_optimizers_do():
    """A pre-hook gets the state dict being loaded (every parameter's state) and the one it
    returns is loaded; a post-hook runs once the state is in place, each tensor with its
    saved dtype (bf16 moments and factors, int32 indices, int64 seed, real moments of a
    complex weight) and values."""
    settings = dict(min_params=10, update_proj_gap=7, rank=0.5, sparse_ratio=0.1, state_dtype="bfloat16", **HYPER)
    params = _params()
    opt = TensorGRaD(params, **settings)
    run_steps(opt, params, _grads(3))
    saved = opt.state_dict()
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    loader = TensorGRaD(fresh, **settings)
    seen = {}

    def pre_hook(optimizer, state_dict):
        seen["pre"] = {index: sorted(value) for index, value in state_dict["state"].items()}
        return {**state_dict, "param_groups": [dict(g, lr=0.5) for g in state_dict["param_groups"]]}

    def post_hook(optimizer):
        seen["post"] = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in fresh]
        seen["lr"] = optimizer.param_groups[0]["lr"]

    loader.register_load_state_dict_pre_hook(pre_hook)
    loader.register_load_state_dict_post_hook(post_hook)
    loader.load_state_dict(saved)
    assert seen["pre"] == {index: sorted(value) for index, value in saved["state"].items()} and len(seen["pre"]) == 2
    assert seen["lr"] == 0.5 == loader.param_groups[0]["lr"]  # the pre-hook's state dict was loaded
    for index, state in enumerate(seen["post"]):
        assert sorted(state) == sorted(saved["state"][index])
        for key, value in saved["state"][index].items():
            assert state[key].dtype == value.dtype and torch.equal(state[key], value), (index, key)
    assert seen["post"][0]["low_rank_exp_avg"].dtype == torch.bfloat16  # complex weight, real bf16 moment
    assert seen["post"][0]["sparse_basis_indices"].dtype == torch.int32
    assert seen["post"][1]["low_rank_exp_avg_sq"].dtype == torch.bfloat16  # real fp32 weight


@pytest.mark.parametrize("grad_offset", [0, 100, 200])
def test_bfloat16_state_tracks_float32_state(grad_offset):
    """The moments are kept in the dtype asked for; bfloat16 ones change the run, a little."""
    runs = {}
    for dtype in ("float32", "bfloat16"):
        params = _params()
        opt = TensorGRaD(params, min_params=10, rank=0.5, state_dtype=dtype, **HYPER)
        run_steps(opt, params, _grads(40, grad_offset))
        # the compared complex weight is compressed in both runs (the real 7 x 9 one only with
        # bfloat16 state: in float32 its compressed state would outweigh plain AdamW's)
        state = opt.state[params[0]]
        assert bool(state["compressed"])
        for moment in ("low_rank_exp_avg", "low_rank_exp_avg_sq", "sparse_exp_avg", "sparse_exp_avg_sq"):
            assert state[moment].dtype == getattr(torch, dtype), (moment, state[moment].dtype)
        runs[dtype] = params[0].detach()
    assert not torch.equal(runs["bfloat16"], runs["float32"])  # the bfloat16 state was really used
    start = _params()[0].detach()
    change = (runs["float32"] - start).norm()
    # measured ratio 1.45e-2, 5.6e-3, 5.8e-3 for grad_offset 0, 100, 200: the bound is 2x the worst
    assert (runs["bfloat16"] - runs["float32"]).norm() < 0.03 * change


def test_refresh_happens_exactly_at_the_gap():
    params = _params()[:1]
    opt = TensorGRaD(params, min_params=10, update_proj_gap=4, rank=0.5, sparse_ratio=0.1, **HYPER)
    previous = None
    for step, grads in enumerate(_grads(13)):
        run_steps(opt, params, [grads[:1]])
        state = opt.state[params[0]]
        current = (state["sparse_basis_indices"].clone(), state["low_rank_basis_factor_0"].clone())
        if previous is not None:
            changed = not torch.equal(current[0], previous[0]) or not torch.equal(current[1], previous[1])
            assert changed == (step % 4 == 0), step
        previous = current
        # the sparse branch restarts its moments and bias-correction counter with each new index set
        assert int(state["sparse_step"]) == step % 4 + 1
        assert int(state["low_rank_step"]) == step + 1


def test_weight_decay_applies_to_compressed_params_and_grad_is_untouched():
    params = _params()
    opt = TensorGRaD(params, min_params=10, **HYPER)
    start = [p.detach().clone() for p in params]
    for _ in range(5):
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    assert bool(opt.state[params[0]]["compressed"])
    for p, p0 in zip(params, start):
        torch.testing.assert_close(p.detach(), p0 * (1 - HYPER["lr"] * HYPER["weight_decay"]) ** 5)
    grad = random_tensor(COMPLEX_SHAPE, True, 5).to(torch.complex64)
    params[0].grad = grad.clone()
    opt.step()
    assert torch.equal(params[0].grad, grad)


@pytest.mark.parametrize("shape", [(8, 6, 12), (8, 6, 6, 4), (6, 5, 4, 4, 3), (40, 30)])
def test_compressed_training_of_1d_2d_3d_complex_and_real_weights(shape):
    complex_ = len(shape) > 2
    # a target inside a rank-(d/2) Tucker subspace: the low-rank part can reach it
    exact, _ = low_rank_tensor(shape, tuple(-(-d // 2) for d in shape), complex_, seed=1)
    target = exact.to(torch.complex64 if complex_ else torch.float32)
    weight = torch.nn.Parameter(torch.zeros_like(target))
    opt = TensorGRaD([weight], lr=0.05, rank=0.5, rank_convention="mode", sparse_ratio=0.05, update_proj_gap=10,
                     min_params=100)
    for _ in range(150):
        opt.zero_grad()
        loss = (weight - target).abs().square().sum()
        loss.backward()
        opt.step()
    state = opt.state[weight]
    assert bool(state["compressed"])
    # half of each mode; a matrix's (20, 15) is clipped to (15, 15): the rank of any 40 x 15 core
    expected_core = ((15, 15) if shape == (40, 30) else tuple(-(-d // 2) for d in shape)) + ((2,) if complex_ else ())
    assert tuple(state["low_rank_exp_avg"].shape) == expected_core
    # starts at relative error 1; measured 0.06-0.11 here (AdamW: 0.0)
    assert (weight - target).norm() < 0.2 * target.norm()


def test_small_params_and_opted_out_groups_get_plain_adamw():
    big, small, opted_out = _params()[0], torch.nn.Parameter(torch.randn(5)), _params()[0]
    opt = TensorGRaD([{"params": [big, small]}, {"params": [opted_out], "compress": False}], min_params=10)
    for p in (big, small, opted_out):
        p.grad = torch.randn_like(p)
    opt.step()
    assert [bool(opt.state[p]["compressed"]) for p in (big, small, opted_out)] == [True, False, False]
    assert opt.state[small]["exp_avg"].shape == small.shape


def test_upstream_style_groups_keep_upstream_meaning():
    regular, spectral = _params()[1], _params()[0]
    groups = [{"params": [regular]}, {"params": [spectral], "tensorgrad": True, "rank": 0.5}]
    opt = TensorGRaD(groups, lr=1e-3)  # upstream compresses every weight of a tensorgrad group
    plain, compressed = opt.param_groups
    assert plain["compress"] is False
    assert compressed["compress"] is True and compressed["sparse_ratio"] is None
    assert (compressed["order"], compressed["rank_convention"], compressed["update_proj_gap"]) == (
        "lowrank_first", "params", 50)
    regular.grad, spectral.grad = torch.randn_like(regular), torch.randn_like(spectral)
    opt.step()
    assert "low_rank_exp_avg" in opt.state[spectral] and "sparse_exp_avg" not in opt.state[spectral]


def _upstream_adamw_float64(start, grads, **hyper):
    from neuralop.training import AdamW as UpstreamAdamW

    reference = torch.nn.Parameter(start.detach().clone())
    run_steps(UpstreamAdamW([reference], **hyper), [reference], [[g] for g in grads])
    return reference


def _relative(p, reference):
    return ((p.detach() - reference).abs().max() / reference.abs().max()).item()


def test_plain_group_beside_upstream_groups_is_upstream_adamw_however_it_joins():
    """A group naming neither tensorgrad nor compress, beside a tensorgrad group, gets
    the same settings whether both go to the constructor, it is added later, or the
    tensorgrad group is added later (before any step), and steps as upstream's AdamW:
    float64, within 1e-12 relative of neuralop.training.AdamW."""
    grads = _grads(5)
    start_plain, start_spectral = _params(torch.complex128, torch.float64)
    settings, weights = [], []
    for joins in ("constructor", "plain_added", "tensorgrad_added"):
        plain = torch.nn.Parameter(start_plain.detach().clone())
        spectral = torch.nn.Parameter(start_spectral.detach().clone())
        plain_group, upstream_group = {"params": [plain]}, {"params": [spectral], "tensorgrad": True, "rank": 0.5}
        if joins == "constructor":
            opt = TensorGRaD([plain_group, upstream_group], **HYPER)
        elif joins == "plain_added":
            opt = TensorGRaD([upstream_group], **HYPER)
            opt.add_param_group(plain_group)
        else:
            opt = TensorGRaD([plain_group], **HYPER)
            opt.add_param_group(upstream_group)
        group = next(g for g in opt.param_groups if g["params"][0] is plain)
        assert (group["compress"], group["adam_convention"]) == (False, "neuralop"), joins
        run_steps(opt, [plain, spectral], grads)
        assert not bool(opt.state[plain]["compressed"]) and bool(opt.state[spectral]["compressed"])
        settings.append({k: v for k, v in group.items() if k != "params"})
        weights.append(plain.detach().clone())
    assert settings[1] == settings[0] == settings[2]
    assert torch.equal(weights[1], weights[0]) and torch.equal(weights[2], weights[0])
    reference = _upstream_adamw_float64(start_plain, [g[0] for g in grads], **HYPER)
    assert _relative(weights[0], reference) < 1e-12


def test_explicit_constructor_keywords_win_over_upstream_group_defaults():
    """Keywords the caller passed win over upstream's defaults of tensorgrad groups and of
    the plain groups beside them (also at their default value, also for groups added
    later and in a copy of the optimizer); a group's own keys win over them, keywords
    left out keep upstream's meaning."""
    import copy

    start_plain, start_spectral = _params(torch.complex128, torch.float64)
    plain, spectral = torch.nn.Parameter(start_plain.detach().clone()), torch.nn.Parameter(start_spectral.detach())
    # update_proj_gap=100 is also the constructor's default: passed, it replaces upstream's 50
    passed = dict(adam_convention="torch", update_proj_gap=100, tucker_n_iter_max=2, scale=3.0,
                  order="sparse_first", sparse_ratio=0.1, min_params=10)
    opt = TensorGRaD([{"params": [plain]}, {"params": [spectral], "tensorgrad": True, "scale": 2.0}],
                     **HYPER, **passed)
    plain_group, upstream_group = opt.param_groups
    assert {k: upstream_group[k] for k in passed} == {**passed, "scale": 2.0}
    assert upstream_group["rank_convention"] == "params"  # not passed: upstream's
    assert (plain_group["compress"], plain_group["adam_convention"]) == (False, "torch")
    for later in (opt, copy.deepcopy(opt)):
        extra = torch.nn.Parameter(random_tensor(REAL_SHAPE, False, 7))
        later.add_param_group({"params": [extra], "tensorgrad": True})
        assert {k: later.param_groups[-1][k] for k in passed} == passed
    # the plain group steps with the asked convention: torch's AdamW, float64, within 1e-12
    grads = _grads(5)
    run_steps(opt, [plain, spectral], grads)
    reference = torch.nn.Parameter(start_plain.detach().clone())
    run_steps(torch.optim.AdamW([reference], **HYPER), [reference], [[g[0]] for g in grads])
    assert _relative(plain, reference) < 1e-12
    # the default (neuralop) convention would be far from it: the comparison can tell
    assert _relative(_upstream_adamw_float64(start_plain, [g[0] for g in grads], **HYPER), reference) > 1e-4


def test_memory_report_counts_compressed_state():
    weight = torch.nn.Parameter(random_tensor((32, 32, 8, 5), True, 0).to(torch.complex64))
    bias = torch.nn.Parameter(torch.randn(32))
    opt = TensorGRaD([weight, bias])  # defaults: 5% random-k, then a core of ~25% of the entries
    weight.grad, bias.grad = torch.randn_like(weight), torch.randn_like(bias)
    opt.step()
    report = opt.memory_report()
    assert report["params"] == weight.numel() * 8 + 32 * 4 == report["grads"]
    assert report["adamw_state"] == 2 * report["params"]
    k = -(-5 * weight.numel() // 100)
    assert report["indices"] == 4 * k
    core = (23, 23, 6, 4)  # round(0.25 ** (1/4) * d)
    sparse_moments, core_moments = 2 * k * 8, 2 * math.prod(core) * 8
    assert report["moments"] == sparse_moments + core_moments + 2 * 32 * 4
    assert report["factors"] == sum(d * r * 8 for d, r in zip((32, 32, 8, 5), core))
    assert report["state"] == sum(report[c] for c in ("moments", "factors", "indices", "other"))
    # small modes round the core up to 31% here; the benchmark checks FNO-sized weights
    assert 0.3 < report["state_ratio"] < 0.42


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1.0), r"lr=-1\.0"),
        (dict(betas=(0.9, 1.0)), r"betas\[1\]=1\.0"),
        (dict(eps=-1e-8), r"eps=-1e-08"),
        (dict(weight_decay=-0.1), r"weight_decay=-0\.1"),
        (dict(rank=1.5), r"rank=1\.5"),
        (dict(rank=(4, 0)), r"rank=\(4, 0\)"),
        (dict(sparse_ratio=0.0), r"sparse_ratio=0\.0"),
        (dict(update_proj_gap=0), r"update_proj_gap=0"),
        (dict(sparse_type="rand"), r"sparse_type='rand'; allowed values: 'randk'"),
        (dict(order="both"), r"order='both'; allowed values: 'sparse_first', 'lowrank_first'"),
        (dict(state_dtype="float16"), r"state_dtype='float16'; allowed values: 'float32', 'bfloat16'"),
        (dict(rank_convention="cp"), r"rank_convention='cp'"),
        (dict(min_params=-1), r"min_params=-1"),
        (dict(rank=None, sparse_ratio=None), r"rank=None with sparse_ratio=None"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorGRaD(_params(), **kwargs)


def test_bad_group_setting_is_named():
    with pytest.raises(ValueError, match=r"sparse_ratio=2"):
        TensorGRaD([{"params": _params(), "sparse_ratio": 2}])
    with pytest.raises(TypeError, match=r"reset_sparse_moments='yes'"):
        TensorGRaD(_params(), reset_sparse_moments="yes")


def test_bfloat16_params_are_updated_in_float32():
    weight = torch.nn.Parameter(random_tensor((40, 30), False, 2).to(torch.bfloat16))
    opt = TensorGRaD([weight], min_params=10, rank=0.25)  # 0.5 would keep more than AdamW: plain moments
    weight.grad = torch.randn_like(weight)
    before = weight.detach().clone()
    opt.step()
    assert weight.dtype == torch.bfloat16 and not torch.equal(weight, before)
    assert opt.state[weight]["low_rank_exp_avg"].dtype == torch.float32


def test_state_dict_loads_with_weights_only_from_bytes():
    params = _params()
    opt = TensorGRaD(params, min_params=10, sparse_type="structured", sparse_mode=1)
    run_steps(opt, params, _grads(3))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["param_groups"][0]["sparse_type"] == "structured"
    assert loaded["state"][0]["sparse_basis_indices"].dtype == torch.int32
