"""TensorGRaD's step on a gradient read in chunks: the same numbers as whole-tensor math
in float64, and temporaries bounded by the chunk budget."""
import math

import pytest
import torch

from neuralop_mp.optim import gradient_chunks, sparse_projector, tucker_chunks
from neuralop_mp.optim.gradient_chunks import GradientChunks
from neuralop_mp.optim.seeds import draw_seed
from neuralop_mp.optim.sparse_projector import SparseProjector, random_subset
from neuralop_mp.optim.tensorgrad import TensorGRaD
from neuralop_mp.optim.tucker_projector import TuckerProjector
from neuralop_mp.peak_memory import PeakTensorBytes

from .helpers import low_rank_tensor, random_tensor

SHAPE = (7, 6, 5, 4)
# bytes of one chunk: 1 index along axis 0 of SHAPE in complex64 is 960 bytes, so these
# give chunks of 1, 2 (which does not divide 7) and 7 indices along axis 0
BUDGETS = (500, 2000, 10**6)


def _orthonormal(d, r, seed):
    q, _ = torch.linalg.qr(random_tensor((d, r), True, seed))
    return q


def _contract64(x, factors, adjoint=True):
    for k, u in sorted(factors.items()):
        u = u.to(torch.complex128)
        if adjoint:
            x = torch.tensordot(x, u.conj(), dims=([k], [0])).movedim(-1, k)
        else:
            x = torch.tensordot(x, u, dims=([k], [1])).movedim(-1, k)
    return x


def _unfold(x, k):
    return x.movedim(k, 0).reshape(x.shape[k], -1)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("mode, contracted", [(0, ()), (2, (0, 3)), (0, (1, 2, 3)), (3, (0, 1, 2))])
def test_gram_of_contracted_unfolding_matches_float64(monkeypatch, budget, mode, contracted):
    """Gram matrix of ``unfold_mode(G x_j U_j^H)`` from chunks (a free mode to chunk along,
    or every other mode contracted) equals the float64 one within 1e-5 relative."""
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    grad = random_tensor(SHAPE, True, seed=11).to(torch.complex64)
    factors = {j: _orthonormal(SHAPE[j], SHAPE[j] - 1, 20 + j).to(torch.complex64) for j in contracted}
    got = tucker_chunks.gram(GradientChunks(grad, torch.complex64), mode, factors)
    partial = _unfold(_contract64(grad.to(torch.complex128), factors), mode)
    want = partial @ partial.conj().T
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("rank", [(5, 4, 3, 2), (7, 3, 5, 2)])  # all modes compressed; modes 0 and 2 at full rank
def test_projection_and_back_projection_match_float64(monkeypatch, budget, rank):
    """Core and back-projected rows from chunks equal the float64 multi-mode products
    within 1e-5 relative (rows spans that do and do not divide axis 0)."""
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    projector = TuckerProjector(rank=rank)
    grad = random_tensor(SHAPE, True, seed=12).to(torch.complex64)
    basis = {f"factor_{k}": _orthonormal(SHAPE[k], rank[k], 30 + k).to(torch.complex64)
             for k in projector.compressed_modes(SHAPE)}
    factors = {int(key.split("_")[1]): u for key, u in basis.items()}
    core = projector.project_chunks(GradientChunks(grad, torch.complex64), basis)
    want_core = _contract64(grad.to(torch.complex128), factors)
    assert (core - want_core).abs().max() <= 1e-5 * want_core.abs().max()

    step = gradient_chunks.rows_per_chunk(SHAPE, 0, 8)
    rows = [projector.back_project_rows(core, basis, a, b) for a, b in gradient_chunks.spans(SHAPE[0], step)]
    want_back = _contract64(core.to(torch.complex128), factors, adjoint=False)
    assert (torch.cat(rows) - want_back).abs().max() <= 1e-5 * want_back.abs().max()


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("budget", BUDGETS)
def test_refreshed_basis_spans_the_float64_subspace(monkeypatch, budget, warm):
    """On a Tucker-(5, 4, 3, 2) gradient plus 1% noise, the chunked refresh (cold HOSVD +
    one HOOI sweep, or a sweep warm-started from a perturbed basis) spans the same
    subspaces as float64 eigenvectors of the float64 Gram matrices: projectors
    ``U U^H`` within 1e-4 (the noise keeps a clear eigengap at the rank)."""
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    ranks = (5, 4, 3, 2)
    clean, true_factors = low_rank_tensor(SHAPE, ranks, seed=40)
    grad = (clean + 0.01 * random_tensor(SHAPE, True, seed=41)).to(torch.complex64)
    projector = TuckerProjector(rank=ranks, n_iter=1)
    previous = None
    if warm:
        previous = {f"factor_{k}": torch.linalg.qr(u + 0.1 * random_tensor(u.shape, True, 50 + k))[0].to(
            torch.complex64) for k, u in enumerate(true_factors)}
    basis = projector.compute_basis_chunks(GradientChunks(grad, torch.complex64), previous)
    # reference: float64 HOOI from the same start
    g64 = grad.to(torch.complex128)
    if warm:
        factors = {k: previous[f"factor_{k}"].to(torch.complex128) for k in range(4)}
    else:
        factors = {k: torch.linalg.eigh(_unfold(g64, k) @ _unfold(g64, k).conj().T)[1][:, -ranks[k]:]
                   for k in range(4)}
    for k in range(4):
        partial = _unfold(_contract64(g64, {j: u for j, u in factors.items() if j != k}), k)
        factors[k] = torch.linalg.eigh(partial @ partial.conj().T)[1][:, -ranks[k]:]
    for k in range(4):
        got = basis[f"factor_{k}"].to(torch.complex128)
        assert (got @ got.conj().T - factors[k] @ factors[k].conj().T).abs().max() < 1e-4


@pytest.mark.parametrize("sparse_type", ["randk", "topk", "structured", "structured_randk"])
@pytest.mark.parametrize("budget", BUDGETS[:2])
def test_sparse_chunks_equal_whole_tensor_results(monkeypatch, budget, sparse_type):
    """Chunked selection, gather, residual (read along every axis) and add-back equal the
    whole-tensor projector's bitwise (they move entries; only top-k/structured scores are
    computed, and they select the same set on random data)."""
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    projector = SparseProjector(0.2, sparse_type, mode=1)
    grad = random_tensor(SHAPE, True, seed=13).to(torch.complex64)
    source = GradientChunks(grad, torch.complex64)
    basis = projector.compute_basis_chunks(source, seed=5)
    assert torch.equal(basis["indices"], projector.compute_basis(grad, seed=5)["indices"])
    assert torch.equal(projector.project_chunks(source, basis), projector.project(grad, basis))
    residual = projector.residual(grad, basis)
    without = source.without(projector.remover(basis, SHAPE))
    for axis in range(len(SHAPE)):
        pieces = [piece for _, _, piece in without.chunks(axis)]
        assert len(pieces) > 1 or budget > 10**5
        assert torch.equal(torch.cat(pieces, dim=axis), residual), axis
    values = projector.project(random_tensor(SHAPE, True, seed=14).to(torch.complex64), basis)
    target = random_tensor(SHAPE, True, seed=15).to(torch.complex64)
    rows = [projector.add_back_rows_(target[a:b].clone(), values, basis, SHAPE, a)
            for a, b in gradient_chunks.spans(SHAPE[0], 3)]
    assert torch.equal(torch.cat(rows), target + projector.project_back(values, basis, SHAPE))


def test_random_subset_is_distinct_and_uniform():
    """Without a full permutation, each index is kept with probability k / n: over 3000
    draws of 4 of 12, every count is within 5 standard deviations (129) of 1000."""
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(3000):
        subset = random_subset(12, 4, generator)
        assert subset.numel() == 4 and subset.unique().numel() == 4 and 0 <= int(subset.min()) <= int(subset.max()) < 12
        counts[subset] += 1
    assert (counts - 1000).abs().max() < 5 * math.sqrt(3000 * (1 / 3) * (2 / 3))


def _step_weights(budget, monkeypatch, grads, **settings):
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", budget)
    torch.manual_seed(0)
    p = torch.nn.Parameter(random_tensor(SHAPE, True, seed=60).to(torch.complex64))
    opt = TensorGRaD([p], lr=0.1, min_params=10, update_proj_gap=2, eps=1e-3, **settings)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach().clone(), opt


@pytest.mark.parametrize("order", ["sparse_first", "lowrank_first"])
def test_optimizer_steps_in_small_chunks_match_one_chunk(monkeypatch, order):
    """Three steps (refreshes at 0 and 2) with 2000-byte chunks give the weights of the
    same steps with one chunk per tensor within 1e-5 relative to the total change
    (low-rank-plus-noise gradients keep the bases well defined)."""
    grads = [(low_rank_tensor(SHAPE, (5, 4, 4, 3), seed=70 + i)[0]
              + 0.01 * random_tensor(SHAPE, True, seed=80 + i)).to(torch.complex64) for i in range(3)]
    start = random_tensor(SHAPE, True, seed=60).to(torch.complex64)
    small, _ = _step_weights(2000, monkeypatch, grads, order=order, sparse_type="topk")
    whole, _ = _step_weights(10**9, monkeypatch, grads, order=order, sparse_type="topk")
    assert (small - whole).norm() <= 1e-5 * (whole - start).norm()


def test_one_step_matches_float64_tensorgrad(monkeypatch):
    """The first step (refresh, projection, Adam, back-projection) with 500-byte chunks
    equals TensorGRaD's first step written out in float64 with whole tensors: the change
    of the weights within 1e-4 relative (norm)."""
    ranks = (5, 4, 4, 3)
    grad = (low_rank_tensor(SHAPE, ranks, seed=90)[0] + 0.01 * random_tensor(SHAPE, True, seed=91))
    start = random_tensor(SHAPE, True, seed=60).to(torch.complex64)
    got, opt = _step_weights(500, monkeypatch, [grad.to(torch.complex64)], rank=ranks, scale=2.0)
    # float64 reference: random-k entries, Tucker (HOSVD + one HOOI sweep) of the residual,
    # first Adam step g / (|g| + eps) per real number, scale on the low-rank part
    state = opt.state[opt.param_groups[0]["params"][0]]
    g64 = grad.to(torch.complex64).to(torch.complex128)
    sparse = SparseProjector(0.05, "randk")
    basis = sparse.compute_basis(g64, seed=draw_seed(int(state["seed"]), 0))  # the draw of step 0
    assert torch.equal(state["sparse_basis_indices"], basis["indices"])  # the same random-k draw
    residual = g64.clone().reshape(-1)
    residual[basis["indices"].long()] = 0
    residual = residual.reshape(SHAPE)
    def leading(unfolding, rank):
        # the eigenvectors' phases fixed as documented: each one's largest-magnitude entry real, > 0
        vectors = torch.linalg.eigh(unfolding @ unfolding.conj().T)[1][:, -rank:]
        pivot = vectors[vectors.abs().argmax(0), torch.arange(rank)]
        return vectors * pivot.conj() / pivot.abs()

    factors = {k: leading(_unfold(residual, k), ranks[k]) for k in range(4)}
    for k in range(4):
        factors[k] = leading(_unfold(_contract64(residual, {j: u for j, u in factors.items() if j != k}), k), ranks[k])

    def first_adam(x):
        real = torch.view_as_real(x)
        return torch.view_as_complex(real / (real.abs() + 1e-3))

    core_dir = first_adam(_contract64(residual, factors))
    update = 2.0 * _contract64(core_dir, factors, adjoint=False)
    update.reshape(-1)[basis["indices"].long()] += first_adam(g64.reshape(-1)[basis["indices"].long()])
    want = start.to(torch.complex128) - 0.1 * update
    assert (got.to(torch.complex128) - want).norm() <= 1e-4 * (want - start.to(torch.complex128)).norm()


def test_step_temporaries_are_bounded_by_chunks(monkeypatch):
    """A first step (refresh included) of a complex32 weight of 147k entries, with 64 KB
    chunks: the bytes allocated beyond the optimizer state it creates stay below the
    compressed parts plus 8 chunks, less than one complex64 copy of the gradient."""
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", 1 << 16)
    monkeypatch.setattr(sparse_projector, "PERMUTATION_MAX_NUMEL", 0)
    shape = (32, 32, 16, 9)
    p = torch.nn.Parameter(random_tensor(shape, True, seed=1, dtype=torch.float32).to(torch.complex32))
    p.grad = random_tensor(shape, True, seed=2, dtype=torch.float32).to(torch.complex32)
    opt = TensorGRaD([p], lr=1e-3, state_dtype="bfloat16")
    with PeakTensorBytes(alive=[p, p.grad]) as meter:
        opt.step()
    state = sum(t.numel() * t.element_size() for t in opt.state[p].values())
    core = math.prod(TuckerProjector(0.25).compressed_shape(shape)) * 8
    k = SparseProjector(0.05).n_selected(shape)
    bound = core + k * (8 + 8 + 8) + 8 * (1 << 16)  # core, sparse values + int64 draws, chunks
    full_upcast = math.prod(shape) * 8
    assert bound < full_upcast
    assert meter.peak_bytes - meter.baseline_bytes - state <= bound
    before = random_tensor(shape, True, seed=1, dtype=torch.float32).to(torch.complex32)
    assert not torch.equal(torch.view_as_real(p.detach()), torch.view_as_real(before))  # the step did update


def test_projection_temporaries_stay_below_two_pieces(monkeypatch):
    """The Tucker projection of a complex32 gradient read 3 indices of axis 0 at a time
    (rank 0.25 "core", every mode compressed) holds, besides the core, less than two
    pieces' bytes at once: each piece is freed after its first mode product and before
    the next piece is read, and the innermost mode is contracted first (no reordered copy
    of a piece). Contracting the modes in ascending order while keeping each piece and
    the last chunk's products alive held 3.3 pieces. The core matches float64 within 1e-5."""
    shape = (12, 32, 16, 9)
    piece = 3 * math.prod(shape[1:]) * 8  # 3 indices in complex64
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", piece)
    grad = random_tensor(shape, True, seed=3, dtype=torch.float32).to(torch.complex32)
    projector = TuckerProjector(0.25)
    ranks = projector.mode_ranks(shape)
    assert projector.compressed_modes(shape) == [0, 1, 2, 3]
    basis = {f"factor_{k}": _orthonormal(d, r, 40 + k).to(torch.complex64)
             for k, (d, r) in enumerate(zip(shape, ranks))}
    with PeakTensorBytes(alive=[grad, list(basis.values())]) as meter:
        core = projector.project_chunks(GradientChunks(grad, torch.complex64), basis)
    temporaries = meter.peak_bytes - meter.baseline_bytes - core.numel() * core.element_size()
    assert 0 < temporaries < 2 * piece
    want = _contract64(grad.to(torch.complex128), {k: basis[f"factor_{k}"] for k in range(4)})
    assert (core - want).abs().max() <= 1e-5 * want.abs().max()


def test_core_written_over_the_gradient_is_bitwise_the_core(monkeypatch):
    """With update in backward the last Tucker projection writes the core over the
    gradient it reads: bitwise the core :func:`tucker_chunks.project` allocates (same
    additions, same order), in the gradient's memory, with temporaries below two pieces
    and at most one column block (one piece) above project()'s own besides its core."""
    shape = (12, 32, 16, 9)
    piece = 3 * math.prod(shape[1:]) * 8
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", piece)
    grad = random_tensor(shape, True, seed=4, dtype=torch.float32).to(torch.complex32)
    projector = TuckerProjector(0.25)
    basis = {f"factor_{k}": _orthonormal(d, r, 50 + k).to(torch.complex64)
             for k, (d, r) in enumerate(zip(shape, projector.mode_ranks(shape)))}
    with PeakTensorBytes(alive=[grad, list(basis.values())]) as allocating:
        want = projector.project_chunks(GradientChunks(grad, torch.complex64), basis)
    consumed = grad.clone()
    buffer = consumed.view(-1).view(torch.complex64)
    with PeakTensorBytes(alive=[consumed, list(basis.values())]) as meter:
        core = projector.project_over_gradient(GradientChunks(consumed, torch.complex64), basis, buffer)
    assert torch.equal(core, want)
    assert core.untyped_storage().data_ptr() == consumed.untyped_storage().data_ptr()
    over = meter.peak_bytes - meter.baseline_bytes
    # at most one column block (<= one piece) above what project() needs besides its core
    assert 0 < over <= allocating.peak_bytes - allocating.baseline_bytes - core.numel() * 8 + piece
    assert over < 2 * piece
    # mode 0 at full rank: the core is not written over the gradient
    full_rank_0 = TuckerProjector((12, 20, 10, 6))
    basis0 = {f"factor_{k}": basis[f"factor_{k}"][:, :r] for k, r in zip((1, 2, 3), (20, 10, 6))}
    assert full_rank_0.project_over_gradient(GradientChunks(grad, torch.complex64), basis0, buffer) is None


def test_consumed_gradient_holds_the_core(monkeypatch):
    """Projecting a gradient the optimizer owns (update in backward) allocates no core: a
    second step's projection (moments there, no refresh) peaks at least the core's bytes,
    less one column block (a piece), below the projection that leaves the gradient
    intact, and gives bitwise the same parts."""
    from neuralop_mp.optim.compressed_step import project_parts

    shape = (12, 32, 16, 9)
    piece = math.prod(shape[1:]) * 8  # one index of axis 0 in complex64
    monkeypatch.setattr(gradient_chunks, "CHUNK_BYTES", piece)
    # a core row (20 x 10 x 6 in complex64) fits behind a gradient row read (32 x 16 x 9 in complex32)
    rank = (11, 20, 10, 6)
    p = torch.nn.Parameter(random_tensor(shape, True, seed=5, dtype=torch.float32).to(torch.complex32))
    opt = TensorGRaD([p], lr=1e-3, state_dtype="bfloat16", rank=rank)
    p.grad = random_tensor(shape, True, seed=6, dtype=torch.float32).to(torch.complex32)
    opt.step()  # the first step: bases and moments
    group, state = opt.param_groups[0], opt.state[p]
    grad = random_tensor(shape, True, seed=7, dtype=torch.float32).to(torch.complex32)
    peaks, parts = {}, {}
    for owns in (False, True):
        p.grad = grad.clone()
        with PeakTensorBytes(alive=[p, p.grad, state]) as meter:
            _, parts[owns] = project_parts(p, opt.projector_for(group), group, state, owns_grad=owns)
        peaks[owns] = meter.peak_bytes
    core = math.prod(rank) * 8
    assert core > 2 * piece
    assert peaks[True] <= peaks[False] - core + piece
    assert parts[True].keys() == parts[False].keys()
    assert all(torch.equal(parts[True][k], parts[False][k]) for k in parts[True])


def test_chunk_budget_is_per_device():
    """8 MiB chunks on a CPU; on a GPU, where each chunk is kernel launches, 256 MiB ones
    (and as many more elements per stochastic-rounding chunk)."""
    from neuralop_mp.chunk_budget import DEVICE_CHUNK_BYTES
    from neuralop_mp.optim.adam_math import ROUNDING_CHUNK, rounding_chunk

    assert gradient_chunks.chunk_bytes() == gradient_chunks.chunk_bytes("cpu") == gradient_chunks.CHUNK_BYTES
    assert gradient_chunks.chunk_bytes(torch.device("cuda", 0)) == DEVICE_CHUNK_BYTES
    shape = (64, 64, 32, 17)  # an FNO spectral weight: 272 KiB per index along axis 0 in complex64
    assert gradient_chunks.rows_per_chunk(shape, 0, 8) == 30  # three chunks
    assert gradient_chunks.rows_per_chunk(shape, 0, 8, device="cuda") >= 64  # one chunk
    assert rounding_chunk("cpu") == ROUNDING_CHUNK
    assert rounding_chunk("cuda") == ROUNDING_CHUNK * (DEVICE_CHUNK_BYTES // gradient_chunks.CHUNK_BYTES)


@pytest.mark.parametrize("sparse_type", ["randk", "topk"])
def test_a_step_read_in_one_chunk_looks_up_no_index_ranges(monkeypatch, sparse_type):
    """Index ranges of the sparse part are searched (on a GPU, a synchronisation each) only
    where the gradient is read in several chunks; one chunk takes all indices without it."""
    searches = []
    real_search = torch.searchsorted
    monkeypatch.setattr(sparse_projector.torch, "searchsorted",
                        lambda *a, **k: searches.append(1) or real_search(*a, **k))
    # low-rank plus noise, as above: well-defined bases, so both runs take the same steps
    grads = [(low_rank_tensor(SHAPE, (5, 4, 4, 3), seed=90 + i)[0]
              + 0.01 * random_tensor(SHAPE, True, seed=95 + i)).to(torch.complex64) for i in range(3)]
    start = random_tensor(SHAPE, True, seed=60).to(torch.complex64)
    whole, _ = _step_weights(10**9, monkeypatch, grads, sparse_type=sparse_type, sparse_ratio=0.2, rank=0.5)
    assert searches == []
    chunked, _ = _step_weights(2000, monkeypatch, grads, sparse_type=sparse_type, sparse_ratio=0.2, rank=0.5)
    assert searches  # several chunks: the ranges are looked up
    assert (chunked - whole).norm() <= 1e-5 * (whole - start).norm()
