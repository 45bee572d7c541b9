"""Tucker ranks clipped to the other modes' ranks: a matrix's core has no always-zero rows,
and states saved with the wider ranks of earlier versions still load and step as before."""
import torch

from neuralop_mp.optim import TensorGRaD, TuckerProjector
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps

MATRIX = (64, 32)  # ranks (16, 16); earlier versions: (32, 16)
WIDE = (16, 160)  # ranks (8, 8), compressed; earlier: (8, 80), whose factor kept it plain
SETTINGS = dict(lr=1e-2, min_params=10, update_proj_gap=2)


def _params():
    return [torch.nn.Parameter(random_tensor(MATRIX, False, 1).float()),
            torch.nn.Parameter(random_tensor(WIDE, False, 2).float())]


def _grads(n, offset=0):
    return [[random_tensor(MATRIX, False, 10 + offset + s).float(), random_tensor(WIDE, False, 50 + offset + s).float()]
            for s in range(n)]


def _earlier_ranks(monkeypatch):
    monkeypatch.setattr(TuckerProjector, "mode_ranks", lambda self, shape: self.unclipped_ranks(shape))


def test_a_new_state_keeps_the_clipped_ranks():
    params = _params()
    opt = TensorGRaD(params, **SETTINGS)
    run_steps(opt, params, _grads(1))
    matrix, wide = (opt.state[p] for p in params)
    assert tuple(matrix["low_rank_basis_factor_0"].shape) == (64, 16)
    assert tuple(matrix["low_rank_exp_avg"].shape) == (16, 16)
    assert bool(wide["compressed"]) and tuple(wide["low_rank_basis_factor_1"].shape) == (160, 8)


def test_a_state_of_the_earlier_ranks_loads_and_steps_as_it_did(monkeypatch, tmp_path):
    grads = _grads(6)
    _earlier_ranks(monkeypatch)
    params = _params()
    opt = TensorGRaD(params, **SETTINGS)
    run_steps(opt, params, grads)  # uninterrupted, refreshes at steps 0, 2 and 4
    resumed = _params()
    first = TensorGRaD(resumed, **SETTINGS)
    run_steps(first, resumed, grads[:3])
    torch.save({"weights": [p.detach() for p in resumed], "opt": first.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert tuple(saved["opt"]["state"][0]["low_rank_basis_factor_0"].shape) == (64, 32)
    assert not bool(saved["opt"]["state"][1]["compressed"])
    monkeypatch.undo()  # this version's ranks from here on

    resumed = [torch.nn.Parameter(w.clone()) for w in saved["weights"]]
    second = TensorGRaD(resumed, **SETTINGS)
    second.load_state_dict(saved["opt"])
    run_steps(second, resumed, grads[3:])  # across the refresh at step 4: the factors keep their widths
    matrix = second.state[resumed[0]]
    assert tuple(matrix["low_rank_basis_factor_0"].shape) == (64, 32)
    assert tuple(matrix["low_rank_exp_avg"].shape) == (32, 16)
    assert not bool(second.state[resumed[1]]["compressed"])
    for p, q in zip(params, resumed):
        assert torch.equal(p, q)
        for key, value in opt.state[p].items():
            assert torch.equal(second.state[q][key], value), key
