"""TensorGRaD under bad input and faults: every hyperparameter, non-finite gradients
and updates, parameters without gradients, frozen mid-run or added later, and state
dicts that do not fit."""
import sys
import warnings

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.nonfinite import NonFiniteError
from neuralop_mp.optim.settings import TENSORGRAD_OPTIONS
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps

COMPLEX_SHAPE = (6, 5, 4, 3)

# option -> (out-of-range value or None when every value of the right type is allowed, wrong-type value)
BAD_VALUES = {
    "lr": (-1.0, "0.1"),
    "betas": ((0.9, 1.0), 0.9),
    "eps": (float("nan"), None),
    "weight_decay": (-0.1, [0.1]),
    "correct_bias": (None, 1),
    "adam_convention": ("pytorch", 1),
    "compress": (None, "yes"),
    "min_params": (-1, 10.5),
    "rank": (1.5, "full"),
    "rank_convention": ("cp", None),
    "sparse_ratio": (0.0, "5%"),
    "sparse_type": ("rand", 3),
    "sparse_mode": (-1, 0.5),
    "order": ("both", True),
    "update_proj_gap": (0, 1.5),
    "scale": (float("inf"), "2"),
    "sparse_scale": (-1.0, None),
    "lambda_sparse": (-0.5, "1"),
    "scale_by_mask_ratio": (None, 0),
    "warm_restart": (None, "no"),
    "tucker_n_iter_max": (-1, 2.0),
    "reset_sparse_moments": (None, "yes"),
    "reset_lowrank_moments": (None, 1.0),
    "state_dtype": ("float16", torch.bfloat16),
    "nonfinite_grad": ("ignore", False),
    "seed": (-3, "0"),
    "activation_checkpoint": (None, "off"),
}
CASES = [(name, kind, value) for name, (bad, wrong) in BAD_VALUES.items()
         for kind, value in (("range", bad), ("type", wrong)) if value is not None]


def _params():
    return [torch.nn.Parameter(random_tensor(COMPLEX_SHAPE, True, 1).to(torch.complex64)),
            torch.nn.Parameter(random_tensor((7, 9), False, 2).float())]


def _grads(n, offset=0):
    return [[random_tensor(COMPLEX_SHAPE, True, 10 + offset + s), random_tensor((7, 9), False, 50 + offset + s)]
            for s in range(n)]


def test_every_option_has_bad_values():
    assert set(BAD_VALUES) == {o.name for o in TENSORGRAD_OPTIONS}


@pytest.mark.parametrize("name, kind, value", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_hyperparameter_is_named_with_its_allowed_values(name, kind, value):
    option = next(o for o in TENSORGRAD_OPTIONS if o.name == name)
    error = ValueError if kind == "range" else TypeError
    with pytest.raises(error) as info:
        TensorGRaD(_params(), **{name: value})
    message = str(info.value)
    assert f"Invalid {name}" in message and (option.allowed in message or "allowed values" in message), message
    # the same check guards groups, also groups added later
    opt = TensorGRaD(_params()[:1])
    with pytest.raises(error, match=f"Invalid {name}"):
        opt.add_param_group({"params": _params()[1:], name: value})
    assert len(opt.param_groups) == 1


def _named_model():
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"spectral": torch.nn.ParameterList([torch.nn.Parameter(
        random_tensor(COMPLEX_SHAPE, True, 3).to(torch.complex64))]), "linear": torch.nn.Linear(4, 3)})


@pytest.mark.parametrize("steps_before", [0, 2])  # step 0 refreshes the projectors, step 2 does not
def test_nan_gradient_raises_naming_the_parameter_and_changes_nothing(steps_before):
    model = _named_model()
    opt = TensorGRaD(model.named_parameters(), min_params=10, update_proj_gap=4)
    params = list(model.parameters())
    for _ in range(steps_before):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    before = [p.detach().clone() for p in params]
    state_before = {k: v.clone() for k, v in opt.state[params[0]].items()}
    for p in params:
        p.grad = torch.randn_like(p)
    params[0].grad[1, 2, 0, 0] = complex(float("nan"), 0.0)
    with pytest.raises(NonFiniteError, match=r"non-finite gradient .* 'spectral\.0' \(group 0, shape \(6, 5, 4, 3\)"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    for key, value in state_before.items():
        assert torch.equal(opt.state[params[0]][key], value), key


def _host_reads(monkeypatch):
    """A list that records every read of finite-check flags back to the host: the shape of
    each ``.cpu()`` copy, and "bool" for a flag read one at a time (on a GPU each read waits
    for the device)."""
    from neuralop_mp.optim import nonfinite

    reads, flags = [], []
    real_all_finite, real_cpu, real_bool = nonfinite.all_finite, torch.Tensor.cpu, torch.Tensor.__bool__
    monkeypatch.setattr(nonfinite, "all_finite", lambda t: flags.append(real_all_finite(t)) or flags[-1])
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: reads.append(tuple(self.shape)) or real_cpu(self))

    def counted_bool(self):
        if any(self is flag for flag in flags):
            reads.append("bool")
        return real_bool(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", counted_bool)
    return reads


def test_the_gradient_check_reads_its_flags_back_once_per_device(monkeypatch):
    """Every gradient is checked, and the flags come back to the host in one copy per
    device (on a GPU each copy waits for the device): one here, whichever is bad."""
    from neuralop_mp.optim import nonfinite

    model = _named_model()
    opt = TensorGRaD(model.named_parameters(), min_params=10)
    params = list(model.parameters())
    copies = _host_reads(monkeypatch)
    names = [name for name, _ in model.named_parameters()]
    for bad in (None, 0, len(params) - 1):
        for p in params:
            p.grad = torch.randn_like(p)
        copies.clear()
        if bad is None:
            assert nonfinite.gradients_are_finite(opt)
        else:
            params[bad].grad.view(-1)[0] = float("inf")
            with pytest.raises(NonFiniteError, match=f"'{names[bad]}'"):
                nonfinite.gradients_are_finite(opt)
        assert copies == [(len(params),)]


def test_nonfinite_gradient_skips_with_a_warning_when_configured():
    params = _params()
    opt = TensorGRaD(params, min_params=10, nonfinite_grad="skip")
    run_steps(opt, params, _grads(2))
    before = [p.detach().clone() for p in params]
    grads = _grads(1, offset=5)[0]
    grads[1][0, 0] = float("inf")
    with pytest.warns(RuntimeWarning, match=r"non-finite gradient .*parameter 1 .*skipped"):
        run_steps(opt, params, [grads])
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert int(opt.state[params[0]]["step"]) == 2
    run_steps(opt, params, _grads(1, offset=9))  # training goes on with finite gradients
    assert int(opt.state[params[0]]["step"]) == 3


def test_skip_warnings_point_at_the_callers_step():
    """A skipped gradient and a skipped update (checked one call deeper in the optimizer)
    both warn at the line that called ``step()``, not inside the optimizer."""
    compressed = torch.nn.Parameter(random_tensor((8, 6, 5), True, 4).to(torch.complex64))
    dense = torch.nn.Parameter(torch.randn(5, 4))
    opt = TensorGRaD([{"params": [compressed]}, {"params": [dense], "compress": False}], min_params=10,
                     nonfinite_grad="skip")
    compressed.grad = torch.randn_like(compressed)
    dense.grad = torch.randn_like(dense)
    dense.grad[0, 0] = float("nan")
    with warnings.catch_warnings(record=True) as gradient_warning:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        opt.step()
    opt = TensorGRaD([dense], eps=0.0, compress=False, nonfinite_grad="skip")
    dense.grad = torch.zeros_like(dense)  # 0 / 0: a non-finite update from a finite gradient
    with warnings.catch_warnings(record=True) as update_warning:
        warnings.simplefilter("always")
        opt.step()
    update_line = sys._getframe().f_lineno - 1
    for caught, at in ((gradient_warning, line), (update_warning, update_line)):
        assert [str(w.message)[:40] for w in caught] == [str(caught[0].message)[:40]], caught
        assert (caught[0].filename, caught[0].lineno) == (__file__, at), (caught[0].filename, caught[0].lineno)
    assert "gradient" in str(gradient_warning[0].message) and "update" in str(update_warning[0].message)


def test_nonfinite_update_never_reaches_the_weights():
    # eps=0 with an all-zero gradient: m / sqrt(v) = 0 / 0
    weight = torch.nn.Parameter(torch.randn(5, 4))
    opt = TensorGRaD([weight], eps=0.0, compress=False)
    weight.grad = torch.zeros_like(weight)
    before = weight.detach().clone()
    with pytest.raises(NonFiniteError, match=r"non-finite update .*parameter 0 .*eps=0\.0"):
        opt.step()
    assert torch.equal(weight, before)
    with pytest.raises(ValueError, match=r"Invalid lr=inf"):
        TensorGRaD([weight], lr=float("inf"))


def test_a_compressed_update_is_read_back_once_and_its_bad_parts_named(monkeypatch):
    """A compressed step's sparse and low-rank directions are checked together: their flags
    come back to the host in one copy (on a GPU each read waits for the device), and a
    non-finite update names the parts it is in; the weight is left unchanged."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(random_tensor((8, 6, 5), True, 4).to(torch.complex64))
    reads = _host_reads(monkeypatch)
    opt = TensorGRaD([weight], min_params=10, rank=0.5)
    assert opt.routes_to_compression(weight, opt.param_groups[0])
    weight.grad = torch.randn_like(weight)
    opt.step()
    # the gradient check (one parameter, finite and, as this first step refreshes the bases,
    # all zero) and the update check (its two parts): a copy each
    assert reads == [(2,), (2,)], reads
    # finite weights too large for float32 times the (about unit) first Adam directions: both
    # weighted parts overflow. (A first zero gradient, with eps=0 once 0 / 0 here, projects
    # nothing now: test_optim_contract_mends.py)
    opt = TensorGRaD([weight], min_params=10, rank=0.5, scale=1e39, sparse_scale=1e39)
    weight.grad = torch.randn_like(weight)
    before = weight.detach().clone()
    with pytest.raises(NonFiniteError, match=r"non-finite update \(NaN or inf\) in its sparse part \(weighted by "
                       r"sparse_scale=1e\+39, lambda_sparse=1.0\) and low-rank part \(weighted by scale=1e\+39\)"):
        opt.step()
    assert torch.equal(weight, before)


def test_uncompressed_updates_are_checked_together_and_a_bad_one_is_named(monkeypatch):
    """Six dense parameters: their updates come back as one flag read (the gradient check
    is another); with eps=0 and a zero gradient on one of them, the other five are
    stepped, that one is named and left unchanged."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(6)]
    reads = _host_reads(monkeypatch)
    opt = TensorGRaD(params, compress=False, eps=0.0)
    for p in params:
        p.grad = torch.randn_like(p)
    params[3].grad = torch.zeros_like(params[3])  # m / sqrt(v) = 0 / 0
    before = [p.detach().clone() for p in params]
    with pytest.raises(NonFiniteError, match=r"non-finite update \(NaN or inf\) for parameter 3 .*not changed"):
        opt.step()
    assert reads == [(6,), (6,)], reads
    assert torch.equal(params[3], before[3])
    assert all(not torch.equal(p, b) for i, (p, b) in enumerate(zip(params, before)) if i != 3)
    # a chunk's worth at a time: 100 bytes are reached by the third 48-byte update, so two reads
    from neuralop_mp.optim import gradient_chunks
    monkeypatch.setattr(gradient_chunks, "chunk_bytes", lambda device=None: 100)
    opt = TensorGRaD(params, compress=False)
    for p in params:
        p.grad = torch.randn_like(p)
    reads.clear()
    opt.step()
    assert reads == [(6,), (3,), (3,)], reads


def test_a_step_of_the_gpu_campaigns_fno_reads_flags_back_once_per_run_of_dense_parameters(monkeypatch):
    """The TensorGRaD row of the GPU campaign (FNO, 64 channels, 32x32 modes): one read for
    the gradients, one per compressed weight, and one per run of uncompressed parameters
    between them: 6 (docs/tensorgrad.md; this counter gave 84 on the code before, one or
    two reads per parameter)."""
    from neuralop_mp.bench.gpu import VARIANTS, _step, build

    variant = next(v for v in VARIANTS if v.optimizer == "tensorgrad")
    torch.manual_seed(0)
    model, opt = build("FNO", 64, variant, 32, torch.device("cpu"))
    x = torch.randn(1, 1, 32, 32)
    _step(model, opt, x, variant, "cpu")  # states and projectors made
    compressed = [bool(opt.state[p]["compressed"]) for g in opt.param_groups for p in g["params"]]
    runs = sum(1 for i, c in enumerate(compressed) if not c and (i + 1 == len(compressed) or compressed[i + 1]))
    reads = _host_reads(monkeypatch)
    _step(model, opt, x, variant, "cpu")
    assert "bool" not in reads and len(reads) == 1 + sum(compressed) + runs, reads
    assert len(reads) == 6  # the number docs/tensorgrad.md gives


def test_an_error_partway_through_a_step_still_steps_the_parameters_before_it():
    """Dense updates wait for a shared check; an error at a later parameter (here its
    state no longer fits it) must not leave the earlier ones with moved moments and
    unchanged weights: they are stepped, as when each was applied at once."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    opt = TensorGRaD(params, compress=False)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    params[2].data = torch.randn(5, 3)
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError):
        opt.step()
    assert [int(opt.state[p]["step"]) for p in params] == [2, 2, 1]
    assert [not torch.equal(p, b) for p, b in zip(params, before)] == [True, True, False]


def test_params_without_grad_frozen_mid_run_and_added_later():
    params = _params()
    late = torch.nn.Parameter(random_tensor((8, 6, 5), True, 4).to(torch.complex64))
    opt = TensorGRaD(params, min_params=10, update_proj_gap=3)
    params[1].requires_grad_(False)  # never has a gradient
    for step in range(6):
        if step == 3:  # freeze the spectral weight, add a new group
            params[0].requires_grad_(False)
            frozen, frozen_state = params[0].detach().clone(), int(opt.state[params[0]]["step"])
            # group 0 named neither tensorgrad nor compress: beside a tensorgrad group it would be
            # upstream's AdamW, but it has stepped compressed and keeps that, with a warning
            with pytest.warns(UserWarning, match=r"param group 0 .* has already stepped with compress=True, "
                                                 r"adam_convention='torch' and keeps them"):
                opt.add_param_group({"params": [late], "tensorgrad": True, "rank": 0.5})
        for p in [*params, late]:
            p.grad = torch.randn_like(p) if p.requires_grad else None
        opt.step()
    assert params[1] not in opt.state
    assert torch.equal(params[0], frozen) and int(opt.state[params[0]]["step"]) == frozen_state == 3
    late_state = opt.state[late]
    assert int(late_state["step"]) == 3 and bool(late_state["compressed"])
    assert opt.param_groups[-1]["adam_convention"] == "neuralop"  # upstream's group, upstream's meaning
    assert opt.param_groups[-1]["update_proj_gap"] == 3  # but the constructor's explicit keywords win
    assert (opt.param_groups[0]["compress"], opt.param_groups[0]["adam_convention"]) == (True, "torch")
    params[0].requires_grad_(True)  # unfrozen: continues from its kept state
    params[0].grad = torch.randn_like(params[0])
    opt.step()
    assert int(opt.state[params[0]]["step"]) == 4 and torch.isfinite(params[0]).all()


def _trained(params, **settings):
    opt = TensorGRaD(params, min_params=10, **settings)
    run_steps(opt, params, [[g.to(p.dtype) for g, p in zip(grads, params)] for grads in _grads(3)])
    return opt


def test_state_of_another_model_size_fails_in_load_state_dict():
    saved = _trained(_params()).state_dict()
    other = [torch.nn.Parameter(random_tensor((6, 5, 4, 4), True, 1).to(torch.complex64)), _params()[1]]
    opt = TensorGRaD(other, min_params=10)
    with pytest.raises(ValueError, match=r"Parameter 0 of param group 0 \(shape \(6, 5, 4, 4\)\): state "
                                         r"'sparse_basis_indices' has shape \(18,\), expected \(24,\)"):
        opt.load_state_dict(saved)
    assert not opt.state  # nothing was loaded


def test_state_of_another_optimizer_fails_in_load_state_dict():
    params = _params()
    adamw = torch.optim.AdamW(params)
    run_steps(adamw, params, _grads(2))
    opt = TensorGRaD(params, min_params=10)
    with pytest.raises(ValueError, match=r"state keys \['exp_avg', 'exp_avg_sq', 'step'\] are not TensorGRaD's.*"
                                         r"saved by another optimizer"):
        opt.load_state_dict(adamw.state_dict())


def test_state_dict_with_other_group_layout_fails_clearly():
    saved = _trained(_params()).state_dict()
    params = _params()
    with pytest.raises(ValueError, match=r"has 1 param group\(s\); this TensorGRaD has 2"):
        TensorGRaD([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"Param group 0 of the state dict has 2 parameters; this TensorGRaD's has 1"):
        TensorGRaD(params[:1]).load_state_dict(saved)


def test_state_saved_with_other_settings_loads_with_its_own_settings():
    # torch's rule: a loaded state dict brings its hyperparameters; moments fit them
    params = _params()
    saved = _trained(params, rank=0.5, sparse_ratio=None, adam_convention="neuralop").state_dict()
    opt = TensorGRaD([torch.nn.Parameter(p.detach().clone()) for p in params], min_params=10)
    opt.load_state_dict(saved)
    group = opt.param_groups[0]
    assert (group["rank"], group["sparse_ratio"], group["adam_convention"]) == (0.5, None, "neuralop")
    # a saved group whose moments do not fit its own settings is refused
    saved["param_groups"][0]["rank"] = 0.25
    with pytest.raises(ValueError, match=r"'low_rank_exp_avg' has shape"):
        opt.load_state_dict(saved)


def test_state_saved_under_the_earlier_branch_name_still_loads():
    params = _params()
    opt = _trained(params)
    saved = opt.state_dict()
    saved["state"][0] = {k.replace("low_rank_", "lowrank_"): v for k, v in saved["state"][0].items()}
    restored = TensorGRaD([torch.nn.Parameter(p.detach().clone()) for p in params], min_params=10)
    restored.load_state_dict(saved)
    for key, value in opt.state[params[0]].items():
        assert torch.equal(restored.state[restored.param_groups[0]["params"][0]][key], value), key
