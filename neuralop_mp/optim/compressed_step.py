"""TensorGRaD's step of one compressed weight, with chunk-sized temporaries.

The step (refresh when due, projection, Adam in the compressed space, back-projection,
weight update) reads the gradient through
:class:`~neuralop_mp.optim.gradient_chunks.GradientChunks` and writes the weight a
block of rows (indices along axis 0) at a time. Besides the stored gradient, the
compressed parts (the Tucker core, the sparse values) and the optimizer state, it
allocates only tensors of a few :func:`~neuralop_mp.optim.gradient_chunks.chunk_bytes`:
no up-cast copy of the whole gradient, no residual copy, no full-size mode-product
intermediate and no full-size update.

When the gradient is the optimizer's to consume (update in backward), the sparse
residual is written into the gradient itself and the gradient is released as soon as
it is projected. The arithmetic is the same either way, so both paths give bitwise the
same weights and state.
"""
import math

import torch

from . import gradient_chunks, nonfinite
from .adam_math import (
    adam_step,
    as_complex_like,
    as_real,
    decoupled_update_,
    compute_dtype,
    flat_real,
    load_moment,
    rounding_generator,
    second_moment_shape,
    stochastic_round_chunks_,
    storage_dtype,
)
from .gradient_chunks import GradientChunks, ResidualChunks, rows_per_chunk, spans
from .seeds import WEIGHT_WRITE, draw_seed, rounding_seed
# BIRTH: the births of a part's moments (see _births)
from .state_checks import BASIS_INFIX, BIRTH, REFRESH_PENDING, RESIDUAL_REFRESH_PENDING

MOMENTS = ("exp_avg", "exp_avg_sq")


def read_basis(state, name, like):
    """The stored basis of part ``name`` in the math's dtype (complex for complex ``like``)."""
    prefix = name + BASIS_INFIX
    basis = {}
    for key, tensor in state.items():
        if key.startswith(prefix):
            if tensor.is_floating_point():
                tensor = tensor.to(torch.promote_types(tensor.dtype, torch.float32))
                tensor = as_complex_like(tensor, like)
            basis[key[len(prefix):]] = tensor
    return basis


def has_basis(state, name):
    """Whether part ``name`` has a basis: stored keys or, for a basis with none (a Tucker part
    at full rank in every mode: no factor, the identity), the moments made on the step that
    installed it. Not the stored basis's emptiness, which cannot tell such a basis from none."""
    prefix = name + BASIS_INFIX
    return f"{name}_exp_avg" in state or any(key.startswith(prefix) for key in state)


def _install_basis(projector, new, old, state, group, dtype, has_old):
    """Store a refreshed basis; reset or carry over the part's moments (kept as they are when a
    sparse part's index set is the old one)."""
    name = projector.name
    # the same index set again (every entry, at sparse_ratio=1.0; a top-k set that did not
    # change): each moment (and birth) is already its entry's and a reset would only forget
    # history, so a sparse part covering every entry is AdamW
    same = name == "sparse" and has_old and torch.equal(new["indices"], old["indices"])
    if has_old and f"{name}_exp_avg" in state:
        reset = group["reset_sparse_moments"] if name == "sparse" else group["reset_lowrank_moments"]
        # another set of factored modes (a converted upstream state keeps a factor for a
        # full-rank mode, which this class leaves unrotated): the moments' coordinates
        # were in the old basis and have no counterpart in the new one
        reset = reset or set(new) != set(old)
        if reset and same:
            pass  # nothing to reset; no births either (only carried-over moments have them)
        elif reset:
            for key in (*MOMENTS, "step"):
                del state[f"{name}_{key}"]
            state.pop(f"{name}_{BIRTH}", None)
        else:
            if name == "sparse":  # before the moments move: their shape is the old set's
                state[f"{name}_{BIRTH}"] = _births(projector, state, old, new, dtype.is_complex)
            for key in MOMENTS:
                state[f"{name}_{key}"] = projector.transfer_moment(state[f"{name}_{key}"], old, new)
    for key in [k for k in state if k.startswith(name + BASIS_INFIX)]:
        del state[key]
    storage = storage_dtype(group, dtype)
    for key, tensor in new.items():
        if tensor.is_floating_point() or tensor.is_complex():
            tensor = as_real(tensor).to(storage)
        state[f"{name}{BASIS_INFIX}{key}"] = tensor


def _births(projector, state, old, new, complex_):
    """The births of the sparse entries' moments on the ``new`` index set: for each entry,
    the branch's step count when its moments started (int32, shaped like the part).

    An entry chosen again keeps its birth; a new one starts from zero moments now, so
    :func:`adam_directions_` bias-corrects it by its own age (``step - birth``), as a
    fresh Adam, not by the branch's count, which would make its first update about
    ``(1 - beta1) / sqrt(1 - beta2)`` (3x) too large. Without births (the first refresh
    that keeps moments, or a state saved before they existed) every entry counts as born
    when the branch's moments started (0): the correction such a state was stepped with.
    """
    now = int(state["sparse_step"])
    births = state.get(f"sparse_{BIRTH}")
    if births is None:
        moment = state["sparse_exp_avg"]  # as_real of the part: a trailing (re, im) axis if complex
        births = torch.zeros(moment.shape[:-1] if complex_ else moment.shape, dtype=torch.int32,
                             device=moment.device)
    # transfer_moment starts new entries at zero: shifted, zero is "born now"
    return projector.transfer_moment(births - now, old, new).add_(now)


def _gradient_memory(grad, dtype):
    """The contiguous ``grad``'s memory as a flat tensor of ``dtype``, or None."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if not grad.is_contiguous() or itemsize % grad.element_size():
        return None
    flat = grad.view(-1)
    ratio = itemsize // grad.element_size()
    return flat[:flat.numel() - flat.numel() % ratio].view(dtype)


def refresh_due(state, group):
    """Whether the step of a compressed parameter with ``state`` refreshes its bases: its step
    count is a multiple of ``update_proj_gap``, or a refresh is pending (:func:`project_parts`)."""
    return int(state["step"]) % group["update_proj_gap"] == 0 or bool(state.get(REFRESH_PENDING, False))


def project_parts(p, projector, group, state, grad_scale=None, owns_grad=False, grad=None, zero=None):
    """Refresh the bases when due and project the gradient ``grad`` (default ``p.grad``):
    ``(bases, {name: part})``.

    ``grad`` is read only through ``narrow`` (and, when owned, its memory), so it may be
    a lazily computed gradient. The second projector sees the residual of the first.
    ``owns_grad``: the sparse residual is written into ``grad``, and a last Tucker part's
    core over it once that part has moments (the caller must not read ``grad``
    afterwards; the core keeps its memory until dropped).

    A refresh is due every ``update_proj_gap`` steps, or pending (``state[REFRESH_PENDING]``)
    since a due one found an all-zero gradient: that one kept the bases (and, before any
    existed, returned ``({}, {})``: nothing to project), and the next nonzero gradient
    refreshes them. ``zero``: whether ``grad`` is all zero, where the caller read it with its
    other checks (:func:`~neuralop_mp.optim.nonfinite.gradient_flags`, one read for every
    parameter; :func:`~neuralop_mp.optim.nonfinite.single_gradient_flags`); None: read here
    when a refresh is due, one read back to the host. Either way by the one rule,
    :func:`~neuralop_mp.optim.nonfinite.all_zero` of ``grad`` as stored (before the up-cast
    and the unscaling by ``grad_scale``: a gradient that only underflows to zero once
    unscaled is nonzero, and refreshes).

    The second part's refresh follows the same rule for its own source, the residual: an
    all-zero residual of a nonzero gradient (a top-k part that took every nonzero entry, a
    sparse part covering every entry) keeps that part's basis (none yet: the part projects
    nothing this step) and waits (``state[RESIDUAL_REFRESH_PENDING]``) for the next nonzero
    residual, which refreshes that part alone; the first part's refresh is not delayed. The
    residual is tested (:func:`~neuralop_mp.optim.nonfinite.chunks_all_zero`, one pass and
    one read back) only where that refresh is due or waits.
    """
    grad = p.grad if grad is None else grad
    dtype = compute_dtype(p)
    step, seed = int(state["step"]), int(state["seed"])
    source = GradientChunks(grad, dtype, grad_scale)
    refresh = refresh_due(state, group)
    zero = refresh and (nonfinite.sliced_all_zero(grad) if zero is None else zero)
    if zero:
        # a zero gradient (torch.distributed.checkpoint's state initialisation, a frozen or
        # unused parameter whose gradient was zeroed, not dropped) has no directions: its
        # Gram matrix's eigenvectors would be coordinate axes, its top-k arbitrary entries,
        # kept until the next refresh. The basis stays; the first nonzero gradient refreshes it
        state[REFRESH_PENDING] = torch.tensor(True)
        if not has_basis(state, projector.projectors[0].name):
            return {}, {}  # no basis yet: nothing to project (the step only decays the weight)
        refresh = False
    elif refresh:
        state.pop(REFRESH_PENDING, None)
    bases, parts = {}, {}
    for i, part_projector in enumerate(projector.projectors):
        name = part_projector.name
        basis = read_basis(state, name, p)
        renew = refresh
        if i and (refresh or RESIDUAL_REFRESH_PENDING in state):
            # the residual is this part's gradient: from zeros its basis would be arbitrary
            # (coordinate axes, top-k of ties), kept until the next refresh. It waits, as above.
            # A sparse part keeping every entry leaves a zero residual at every step: known unread
            first = projector.projectors[0]
            covered = hasattr(first, "kept_fraction") and first.kept_fraction(tuple(p.shape), bases[first.name]) >= 1
            renew = not (zero or covered or nonfinite.chunks_all_zero(source))
            if renew:
                state.pop(RESIDUAL_REFRESH_PENDING, None)
            else:
                state[RESIDUAL_REFRESH_PENDING] = torch.tensor(True)
                if not has_basis(state, name):
                    break  # nothing to project onto: its moments start with the first nonzero residual
        if renew:
            # no basis yet (the first step, or every gradient so far was zero): a cold start
            new = part_projector.compute_basis_chunks(source, basis or None, seed=draw_seed(seed, step))
            _install_basis(part_projector, new, basis, state, group, dtype, bool(basis))
            basis = read_basis(state, name, p)
        bases[name] = basis
        last = i + 1 == len(projector.projectors)
        part = None
        if last and owns_grad and f"{name}_exp_avg" in state and hasattr(part_projector, "project_over_gradient"):
            # nothing reads the gradient after the last projection: its memory holds the core.
            # Only when the moments exist: new moments (as large as the core with bf16 states)
            # would be made next to the gradient's memory, instead of after it is freed
            buffer = _gradient_memory(grad, dtype)
            if buffer is not None:
                part = part_projector.project_over_gradient(source, basis, buffer)
        parts[name] = part = part if part is not None else part_projector.project_chunks(source, basis)
        if last:
            break
        if hasattr(part_projector, "remover"):  # sparse: the residual is the gradient less those entries
            if owns_grad and grad.is_contiguous():
                part_projector.residual(grad, basis, in_place=True)
            else:
                source = source.without(part_projector.remover(basis, source.shape))
        else:  # low rank: the residual is the gradient less the back-projected core
            source = ResidualChunks(
                source, lambda start, stop, pr=part_projector, c=part, b=basis: pr.back_project_rows(c, b, start, stop))
    return bases, parts


def adam_directions_(parts, group, state):
    """Step each part's moments and overwrite the part with its Adam direction, chunk
    by chunk: 16-bit moments are loaded into fp32 and written back (stochastically
    rounded) one chunk at a time, continuing one noise stream per moment."""
    step, seed = int(state["step"]), int(state["seed"])
    beta1, beta2 = group["betas"]
    convention = group["adam_convention"]
    for salt, (name, part) in enumerate(parts.items()):
        storage = storage_dtype(group, part.dtype)
        if f"{name}_exp_avg" not in state:
            state[f"{name}_exp_avg"] = torch.zeros(as_real(part).shape, dtype=storage, device=part.device)
            state[f"{name}_exp_avg_sq"] = torch.zeros(second_moment_shape(part, convention), dtype=storage,
                                                      device=part.device)
            state[f"{name}_step"] = torch.tensor(0.0)
        state[f"{name}_step"] += 1
        count = float(state[f"{name}_step"])
        births = state.get(f"{name}_{BIRTH}")  # entries of different ages: each its own count
        births = None if births is None else births.view(-1)
        stored = [state[f"{name}_{key}"].view(-1) for key in MOMENTS]
        # 16-bit moments are written back with stochastic rounding; wider ones (any dtype the
        # optimizer makes, a loaded state included: it is cast on load) are the math's own
        generators = [rounding_generator(rounding_seed(seed, step, 2 * salt + i), part.device)
                      if t.element_size() == 2 else None for i, t in enumerate(stored)]
        flat = part.view(-1)
        per_entry = [t.numel() // max(1, flat.numel()) for t in stored]
        real = as_real(part).dtype
        length = max(1, gradient_chunks.chunk_bytes(flat.device) // (4 * flat.element_size()))
        for start, stop in spans(flat.numel(), length):
            grad = flat[start:stop]
            moments = [load_moment(t[start * n:stop * n], real) for t, n in zip(stored, per_entry)]
            exp_avg = moments[0].view(as_real(grad).shape)
            exp_avg_sq = moments[1].view(second_moment_shape(grad, convention))
            ages = count if births is None else int(count) - births[start:stop]
            direction = adam_step(exp_avg, exp_avg_sq, grad, ages, beta1, beta2, group["eps"],
                                  group["correct_bias"], convention)
            for t, n, value, generator in zip(stored, per_entry, moments, generators):
                if generator is not None:
                    stochastic_round_chunks_(t[start * n:stop * n], value.reshape(-1), generator)
            flat[start:stop] = direction
    return parts


def _weight(name, projector, group, shape, basis):
    if name == "low_rank":
        return group["scale"]
    weight = group["sparse_scale"] * group["lambda_sparse"]
    if group["scale_by_mask_ratio"]:
        weight *= math.sqrt(1.0 / projector["sparse"].kept_fraction(shape, basis))
    return weight


def weigh_directions_(p, projector, bases, directions, group):
    """Multiply each part's direction, in place, by its weight: ``scale`` for the low-rank
    part, ``sparse_scale * lambda_sparse`` (times ``sqrt(numel / k)`` with
    ``scale_by_mask_ratio``) for the sparse one. Done before the finite check of the update,
    so the check sees what :func:`apply_update` adds (a finite direction times a large
    weight may overflow)."""
    shape = tuple(p.shape)
    for name, direction in directions.items():  # the step's own tensors: weighted in place
        weight = _weight(name, projector, group, shape, bases[name])
        if weight != 1.0:
            direction.mul_(weight)
    return directions


def apply_update(p, projector, bases, weighted, group, state):
    """Back-project the weighted directions (:func:`weigh_directions_`) a block of rows at a
    time and update those rows of ``p``.

    Each block is the low-rank rows plus the sparse entries in them; the decay and the
    update follow :func:`apply_rows`. With no directions (a first step whose gradient was
    zero, see :func:`project_parts`) the weight is only decayed.
    """
    shape = tuple(p.shape)
    dtype = next(iter(weighted.values())).dtype if weighted else compute_dtype(p)
    # step was already advanced: the pre-increment count names this step's noise stream
    seed = rounding_seed(state["seed"], int(state["step"]) - 1, WEIGHT_WRITE)
    generator = rounding_generator(seed, p.device) if compute_dtype(p) != p.dtype else None
    itemsize = torch.empty((), dtype=dtype).element_size()
    # the back-projection of a block makes about four block-sized intermediates (the last
    # mode product's result and its reordered copy are the largest), and it runs when the
    # step holds the most (the core, the sparse part and every moment): blocks of a quarter
    # chunk keep its temporaries about one chunk
    budget = gradient_chunks.chunk_bytes(p.device) // 4
    for start, stop in spans(shape[0], rows_per_chunk(shape, 0, itemsize, budget)):
        if "low_rank" in weighted:
            rows = projector["low_rank"].back_project_rows(weighted["low_rank"], bases["low_rank"], start, stop)
        else:
            rows = torch.zeros((stop - start,) + shape[1:], dtype=dtype, device=p.device)
        if "sparse" in weighted:
            projector["sparse"].add_back_rows_(rows, weighted["sparse"], bases["sparse"], shape, start)
        apply_rows(p.narrow(0, start, stop - start), rows, group, generator)


def apply_rows(target, change, group, generator=None):
    """``target <- target (1 - lr wd) - lr change`` ("torch" convention; "neuralop":
    ``(target - lr change)(1 - lr wd)``). A 16-bit ``target`` is updated in fp32 and
    written back with stochastic rounding, drawing from ``generator``."""
    if generator is None:
        decoupled_update_(target, change, group)
        return
    # contiguous whatever the weight's layout (a transposed or channels_last weight): read as one flat block
    wide = target.to(change.dtype, memory_format=torch.contiguous_format)
    decoupled_update_(wide, change, group)
    stored = flat_real(target)
    if stored is None:  # a strided weight: round into a contiguous block, then copy it in
        rounded = torch.empty(target.shape, dtype=target.dtype, device=target.device)
        stochastic_round_chunks_(flat_real(rounded), flat_real(wide), generator)
        target.copy_(rounded)
        return
    stochastic_round_chunks_(stored, flat_real(wide), generator)
