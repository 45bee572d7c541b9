"""Both Adam conventions of TensorGRaD against the optimizers that define them.

"torch" against ``torch.optim.AdamW``, "neuralop" against upstream neuraloperator
2.0.0's ``neuralop.training.AdamW`` (the TensorGRaD authors' update), each run in
float64 on fresh random complex and real parameters.
"""
import pytest
import torch
from neuralop.training import AdamW as UpstreamAdamW

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import force_compression, random_tensor, run_steps

COMPLEX_SHAPE = (5, 4, 3, 2)
REAL_SHAPE = (6, 7)
HYPER = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
REFERENCES = {"torch": torch.optim.AdamW, "neuralop": UpstreamAdamW}


def _params(dtype_c, dtype_r):
    return [torch.nn.Parameter(random_tensor(COMPLEX_SHAPE, True, 11).to(dtype_c)),
            torch.nn.Parameter(random_tensor(REAL_SHAPE, False, 12).to(dtype_r))]


def _grads(n_steps, magnitude):
    # magnitude ~ eps makes the placement of eps matter, ~1 the complex normalisation
    return [[magnitude * random_tensor(COMPLEX_SHAPE, True, 100 + s), magnitude * random_tensor(REAL_SHAPE, False, 200 + s)]
            for s in range(n_steps)]


def _reference(convention, grads):
    params = _params(torch.complex128, torch.float64)
    run_steps(REFERENCES[convention](params, **HYPER), params, grads)
    return params


def _relative_error(params, reference):
    return max(((p.detach().to(r.dtype) - r).abs().max() / r.abs().max()).item() for p, r in zip(params, reference))


@pytest.mark.parametrize("magnitude", [1.0, 1e-6])
@pytest.mark.parametrize("convention", ["torch", "neuralop"])
def test_uncompressed_ten_steps_equal_the_reference(convention, magnitude):
    grads = _grads(10, magnitude)
    reference = _reference(convention, grads)
    for dtypes, tolerance in (((torch.complex128, torch.float64), 1e-12), ((torch.complex64, torch.float32), 1e-6)):
        params = _params(*dtypes)
        run_steps(TensorGRaD(params, compress=False, adam_convention=convention, **HYPER), params, grads)
        assert _relative_error(params, reference) < tolerance, (dtypes, _relative_error(params, reference))
    # the comparison can tell the conventions apart: the other one is far off
    other = "neuralop" if convention == "torch" else "torch"
    params = _params(torch.complex128, torch.float64)
    run_steps(TensorGRaD(params, compress=False, adam_convention=other, **HYPER), params, grads)
    assert _relative_error(params, reference) > 1e-4


def test_neuralop_convention_without_bias_correction_equals_upstream():
    grads = _grads(10, 1e-3)
    reference = _params(torch.complex128, torch.float64)
    run_steps(UpstreamAdamW(reference, correct_bias=False, **HYPER), reference, grads)
    params = _params(torch.complex128, torch.float64)
    run_steps(TensorGRaD(params, compress=False, adam_convention="neuralop", correct_bias=False, **HYPER),
              params, grads)
    assert _relative_error(params, reference) < 1e-12


@pytest.mark.parametrize("convention", ["torch", "neuralop"])
@pytest.mark.parametrize("settings", [dict(rank=1.0, sparse_ratio=None, scale=1.0),  # scale multiplies low-rank updates
                                      dict(rank=None, sparse_ratio=1.0, reset_sparse_moments=False)])
def test_full_rank_or_full_support_path_equals_uncompressed(convention, settings, monkeypatch):
    force_compression(monkeypatch)  # a full support saves no memory: routed plain unless forced
    grads = _grads(10, 1.0)
    plain = _params(torch.complex64, torch.float32)
    run_steps(TensorGRaD(plain, compress=False, adam_convention=convention, **HYPER), plain, grads)
    compressed = _params(torch.complex64, torch.float32)
    opt = TensorGRaD(compressed, adam_convention=convention, min_params=10, update_proj_gap=4, **settings, **HYPER)
    run_steps(opt, compressed, grads)
    assert all(bool(opt.state[p]["compressed"]) for p in compressed)
    for a, b in zip(compressed, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_neuralop_convention_keeps_one_second_moment_per_complex_entry():
    params = _params(torch.complex64, torch.float32)
    opt = TensorGRaD(params, adam_convention="neuralop", rank=0.5, sparse_ratio=0.1, min_params=10, **HYPER)
    run_steps(opt, params, _grads(2, 1.0))
    state = opt.state[params[0]]
    assert state["low_rank_exp_avg"].shape[-1] == 2  # (re, im) of the core
    assert state["low_rank_exp_avg_sq"].shape == state["low_rank_exp_avg"].shape[:-1]
    assert state["sparse_exp_avg_sq"].shape == state["sparse_exp_avg"].shape[:-1]
