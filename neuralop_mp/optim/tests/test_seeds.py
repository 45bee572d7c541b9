"""Seeds of TensorGRaD's random streams: any 64-bit group seed works, the seeds of small
ones are those of earlier versions, random-k draws of different parameters and refreshes
are independent, and a resumed run draws exactly as an uninterrupted one."""
import itertools

import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.seeds import ROUNDING_WRITES, draw_seed, rounding_seed, splitmix64, state_seed
from neuralop_mp.optim.tests.helpers import random_tensor, run_steps

COMPLEX_SHAPE = (6, 5, 4, 3)
HALF_SHAPE = (40, 30)
SETTINGS = dict(lr=1e-2, min_params=10, update_proj_gap=3, rank=0.5, sparse_ratio=0.1)


def _params():
    # a bf16 weight: its writes are stochastically rounded from streams named by the state seed
    return [torch.nn.Parameter(random_tensor(COMPLEX_SHAPE, True, 1).to(torch.complex64)),
            torch.nn.Parameter(random_tensor(HALF_SHAPE, False, 2).to(torch.bfloat16))]


def _grads(n, offset=0):
    return [[random_tensor(COMPLEX_SHAPE, True, 10 + offset + s), random_tensor(HALF_SHAPE, False, 50 + offset + s)]
            for s in range(n)]


def test_splitmix64_is_the_reference_generator():
    # the first outputs of SplitMix64 from state 0 (Vigna's splitmix64.c): output i mixes
    # state (i + 1) * gamma
    gamma = 0x9E3779B97F4A7C15
    assert [splitmix64(i * gamma % 2**64) for i in range(3)] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_state_seeds_of_small_seeds_are_those_of_earlier_versions():
    params = _params()
    opt = TensorGRaD(params, seed=123_456_789, **SETTINGS)
    run_steps(opt, params, _grads(1))
    assert [int(opt.state[p]["seed"]) for p in params] == [123_456_789 * 1_000_003 + 1, 123_456_789 * 1_000_003 + 2]


@pytest.mark.parametrize("seed", [2**40, 2**63 - 1, 2**64 - 1, 0xD1B54A32D192ED03])
def test_any_64_bit_seed_steps(seed):
    params = _params()
    opt = TensorGRaD(params, seed=seed, **SETTINGS)
    start = [p.detach().clone() for p in params]
    run_steps(opt, params, _grads(4))  # refreshes at steps 0 and 3
    for p, p0 in zip(params, start):
        assert torch.isfinite(p).all() and not torch.equal(p, p0)
    # the product wrapped into int64 (two's complement)
    wrapped = [(seed * 1_000_003 + ordinal + 2**63) % 2**64 - 2**63 for ordinal in (1, 2)]
    assert [int(opt.state[p]["seed"]) for p in params] == wrapped


def test_seeds_a_multiple_of_2_63_apart_draw_differently():
    # a fold into 63 bits would give them one stream
    draws = []
    for seed in (5, 5 + 2**63):
        params = _params()[:1]
        opt = TensorGRaD(params, seed=seed, **SETTINGS)
        run_steps(opt, params, [g[:1] for g in _grads(1)])
        draws.append(opt.state[params[0]]["sparse_basis_indices"])
    assert not torch.equal(*draws)
    assert len({state_seed(s, o) for s in (0, 1, 2**63, 2**64 - 1) for o in (1, 2)}) == 8


@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_seed_outside_64_bits_is_named_with_the_range(seed):
    with pytest.raises(ValueError, match=rf"Invalid seed={seed}; expected an int in \[0, 2\*\*64\)"):
        TensorGRaD(_params(), seed=seed)


def test_randk_index_sets_of_parameters_and_refreshes_are_distinct():
    """Three weights refreshed at every step: the 12 random-k index sets (77 of 1536
    entries each) are pairwise distinct. With ``state seed + step`` as the draw's seed,
    weight o at step s drew the set of weight o + 1 at step s - 1."""
    shape = (8, 8, 6, 4)
    weights = [torch.nn.Parameter(random_tensor(shape, True, 20 + i).to(torch.complex64)) for i in range(3)]
    opt = TensorGRaD(weights, update_proj_gap=1)  # default: 5% random-k, then the Tucker core
    draws = []
    for step in range(4):
        run_steps(opt, weights, [[random_tensor(shape, True, 100 + 3 * step + i) for i in range(3)]])
        draws += [opt.state[w]["sparse_basis_indices"].clone() for w in weights]
    assert all(d.numel() == 77 for d in draws)
    for (i, a), (j, b) in itertools.combinations(enumerate(draws), 2):
        assert not torch.equal(a, b), (i, j)


def test_draw_seeds_of_nearby_parameters_and_steps_do_not_collide():
    seeds = [state_seed(0, ordinal) for ordinal in range(1, 65)]
    draws = {draw_seed(seed, step) for seed in seeds for step in range(0, 2000, 5)}
    assert len(draws) == 64 * 400 and all(0 <= d < 2**63 for d in draws)


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_resume_across_a_refresh_is_bitwise_an_uninterrupted_run(seed, tmp_path):
    grads = _grads(8)
    params = _params()
    opt = TensorGRaD(params, seed=seed, **SETTINGS)
    run_steps(opt, params, grads)  # refreshes at steps 0, 3 and 6
    resumed = _params()
    first = TensorGRaD(resumed, seed=seed, **SETTINGS)
    run_steps(first, resumed, grads[:4])
    torch.save({"weights": [p.detach() for p in resumed], "opt": first.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = [torch.nn.Parameter(w.clone()) for w in saved["weights"]]
    second = TensorGRaD(resumed, seed=seed, **SETTINGS)
    second.load_state_dict(saved["opt"])
    run_steps(second, resumed, grads[4:])
    for p, q in zip(params, resumed):
        assert p.dtype == q.dtype and torch.equal(p, q)
        for key, value in opt.state[p].items():
            assert second.state[q][key].dtype == value.dtype and torch.equal(second.state[q][key], value), key


# seeds whose state seeds differ only above bit 32 of the old linear rounding seed: the CPU
# generator keeps the low 32 bits of its seed, so they shared every rounding stream
ALIASED_SEEDS = (0, 2**29, 2**32)


def _half_run(seed, **settings):
    """Three steps of a complex32 weight (compressed: its write is rounded) and a bf16 one
    too small to compress (plain AdamW: its write is rounded too); the rounded tensors."""
    big = torch.nn.Parameter(random_tensor((8, 8, 6, 5), True, 3).to(torch.complex64).to(torch.complex32))
    small = torch.nn.Parameter(random_tensor((4, 3), False, 4).to(torch.bfloat16))
    opt = TensorGRaD([big, small], lr=1e-4, sparse_ratio=None, seed=seed, **settings)
    run_steps(opt, [big, small], [[random_tensor(big.shape, True, 30 + s), random_tensor(small.shape, False, 40 + s)]
                                  for s in range(3)])
    assert bool(opt.state[big]["compressed"]) and not bool(opt.state[small]["compressed"])
    return [torch.view_as_real(big.detach()).float(), small.detach().float()] + [
        t.float() for key, t in sorted(opt.state[big].items()) if key.endswith(("exp_avg", "exp_avg_sq"))]


@pytest.mark.parametrize("seed", ALIASED_SEEDS[1:])
def test_rounding_streams_of_seeds_2_29_and_2_32_apart_differ(seed):
    base, other = _half_run(0, state_dtype="bfloat16"), _half_run(seed, state_dtype="bfloat16")
    # the compressed weight's write, the dense weight's write and the bf16 moments' writes
    assert len(base) == len(other) >= 4
    for i, (a, b) in enumerate(zip(base, other)):
        assert not torch.equal(a, b), i


def test_the_same_seed_rounds_the_same():
    for a, b in zip(_half_run(2**29, state_dtype="bfloat16"), _half_run(2**29, state_dtype="bfloat16")):
        assert torch.equal(a, b)


def test_rounding_seeds_differ_in_their_low_32_bits():
    # torch's CPU generator keeps only the low 32 bits: they alone must tell the streams apart
    seeds = [state_seed(g, o) for g in ALIASED_SEEDS + (1, 2**63, 2**64 - 1) for o in (1, 2)]
    low = {rounding_seed(s, step, w) % 2**32 for s in seeds for step in range(50) for w in range(ROUNDING_WRITES)}
    assert len(low) == len(seeds) * 50 * ROUNDING_WRITES
    assert all(0 <= rounding_seed(s, 0, w) < 2**62 for s in seeds for w in range(ROUNDING_WRITES))
    with pytest.raises(ValueError, match=r"Invalid rounding write=8; expected an int in \[0, 8\)"):
        rounding_seed(0, 0, ROUNDING_WRITES)
