"""Non-finite gradients and updates in TensorGRaD: found before they reach the weights.

A NaN or inf gradient would otherwise flow into the moments and the weights, and on
a projector-refresh step make the eigen-decomposition fail with a message that
does not mention NaN. The group setting ``nonfinite_grad`` chooses what happens:
"raise" (default) raises :class:`NonFiniteError`; "skip" warns and leaves the
weights (and, for a gradient, all optimizer state) unchanged.
"""
import os
import warnings

import torch

from ..caller_frames import stacklevel_outside
from . import gradient_chunks
from .adam_math import as_real

_ADVICE = (
    "Check the loss and the data for NaN/inf, lower the learning rate, or construct TensorGRaD with "
    "nonfinite_grad='skip' to skip such steps with a warning."
)


class NonFiniteError(RuntimeError):
    """A gradient or an update holds NaN or inf."""


def describe(group, group_index, position, param):
    """``parameter 'fno_blocks.convs.0.weight' (group 1, shape (4, 4, 3, 2))``; the name
    is known when the optimizer was given ``model.named_parameters()``."""
    names = group.get("param_names")
    label = f"parameter {names[position]!r}" if names else f"parameter {position}"
    return f"{label} (group {group_index}, shape {tuple(param.shape)}, {param.dtype})"


# frames in these files are the optimizer's own (its modules, torch.optim's step wrappers, the
# no_grad decorator): a warning names the first frame outside them, the caller's step()
OPTIMIZER_CODE_FOLDERS = (os.path.dirname(__file__), os.path.dirname(torch.optim.__file__))
OPTIMIZER_CODE_FILES = (torch.utils._contextlib.__file__,)


def _handle(message, groups):
    if any(group["nonfinite_grad"] == "raise" for group in groups):
        raise NonFiniteError(f"{message}. {_ADVICE}")
    warnings.warn(f"TensorGRaD: {message}; skipped (nonfinite_grad='skip').", RuntimeWarning,
                  stacklevel=stacklevel_outside(OPTIMIZER_CODE_FOLDERS, OPTIMIZER_CODE_FILES))


def _everywhere(tensor, test):
    """0-d bool tensor: ``test`` (a piece -> 0-d bool reduction) holds for every piece of
    ``tensor`` (its real view), a quarter of
    :func:`~neuralop_mp.optim.gradient_chunks.chunk_bytes` at a time, so the check of a large
    gradient allocates no full-size mask."""
    real = as_real(tensor)
    # isfinite makes a float copy (abs) and three bool masks of its input: a quarter chunk
    # keeps them below one chunk, as this check runs when the step holds the most
    step = max(1, gradient_chunks.chunk_bytes(real.device) // (4 * max(1, real.element_size())))
    if not real.is_contiguous() or real.numel() <= step:  # one piece: two kernels, not a running flag's five
        return test(real)
    flat = real.view(-1)
    flag = torch.ones((), dtype=torch.bool, device=flat.device)
    for start in range(0, flat.numel(), step):
        flag &= test(flat[start:start + step])
    return flag


def all_finite(tensor):
    """0-d bool tensor: every entry of ``tensor`` is finite (checked in chunks, :func:`_everywhere`)."""
    return _everywhere(tensor, lambda piece: torch.isfinite(piece).all())


def all_zero(tensor):
    """0-d bool tensor: every entry of ``tensor`` is zero (checked in chunks, :func:`_everywhere`).

    The one rule of "a gradient is all zero" (a refresh of compressed bases keeps them, see
    ``compressed_step.project_parts``): applied to the gradient as stored, before any up-cast
    or loss unscaling, by :meth:`~neuralop_mp.optim.tensorgrad.TensorGRaD.step` and
    ``step_parameter`` alike. A scaled gradient whose entries only underflow to zero once
    unscaled is therefore "nonzero" in both paths (its refresh runs on what is left)."""
    return _everywhere(tensor, lambda piece: piece.eq(0).all())


def host_flags(flags):
    """0-d bool tensors ``flags`` as Python bools: stacked on their device and copied to the host
    once per device (on a GPU every copy waits for the device, so a copy per flag would wait
    each time)."""
    by_device = {}
    for i, flag in enumerate(flags):
        by_device.setdefault(flag.device, []).append(i)
    values = [True] * len(flags)
    for indices in by_device.values():
        for i, value in zip(indices, torch.stack([flags[i] for i in indices]).cpu().tolist()):
            values[i] = value
    return values


def norms_finite(tensors):
    """Whether every entry of ``tensors`` is finite, in one fused 2-norm per device and dtype and
    one read back per device: a norm (of a complex tensor's real view: both parts) is finite only
    where every entry is. False may also mean a norm that overflowed from finite entries (above
    about 1e19 in float32; 16-bit types are summed in float32): the caller then checks each tensor
    (:func:`finite_flags`, :func:`all_tensors_finite`). Much cheaper than one reduction per tensor
    where there are many small ones (a model's weights or gradients on a CPU)."""
    groups = {}
    for tensor in tensors:
        if tensor.is_sparse:  # no fused norm: the per-tensor check decides
            return False
        if tensor.numel():
            groups.setdefault((tensor.device, tensor.dtype), []).append(as_real(tensor.detach()))
    flags = []
    for group in groups.values():
        wide = torch.float32 if group[0].dtype in (torch.float16, torch.bfloat16) else None
        flags.append(torch.stack(torch._foreach_norm(group, 2, dtype=wide)).isfinite().all())
    return all(host_flags(flags))


def all_tensors_finite(tensors):
    """Whether every entry of ``tensors`` is finite, exactly: :func:`norms_finite`, and where that
    says no, the per-tensor check (a non-finite entry, or a norm overflowed from finite ones)."""
    tensors = list(tensors)
    return norms_finite(tensors) or all(finite_flags(tensors))


def finite_flags(tensors):
    """Whether each tensor is finite, as Python bools: one reduction per tensor and one copy
    to the host per device (:func:`host_flags`)."""
    return host_flags([all_finite(tensor) for tensor in tensors])


def zero_flags(params):
    """``{param: whether its gradient is all zero}`` for ``params``, one copy to the host per
    device: what a refresh of compressed bases asks (a zero gradient has no directions)."""
    return dict(zip(params, host_flags([all_zero(p.grad) for p in params])))


def gradient_flags(optimizer, zero_tested=()):
    """``(finite, zero)``: whether every gradient is finite (otherwise raise, or warn and
    return False: see module doc), and ``{param: whether its gradient is all zero}`` for the
    parameters ``zero_tested`` (those whose step refreshes a compressed basis). Both are read
    back together, one copy to the host per device."""
    entries = [
        (group, group_index, position, p)
        for group_index, group in enumerate(optimizer.param_groups)
        for position, p in enumerate(group["params"])
        if p.grad is not None and not p.grad.is_sparse
    ]
    flags = host_flags([all_finite(p.grad) for *_, p in entries] + [all_zero(p.grad) for p in zero_tested])
    ok, zero = flags[:len(entries)], dict(zip(zero_tested, flags[len(entries):]))
    if all(ok):
        return True, zero
    bad = [entry for entry, good in zip(entries, ok) if not good]
    where = ", ".join(describe(*entry) for entry in bad)
    _handle(f"non-finite gradient (NaN or inf) in {where}; no parameter or optimizer state was changed",
            [entry[0] for entry in bad])
    return False, zero


def gradients_are_finite(optimizer):
    """True when every gradient is finite; otherwise raise or warn (see module doc)."""
    return gradient_flags(optimizer)[0]


def _by_slices(grad, tests):
    """0-d bool tensors, one per test of ``tests`` (:func:`all_finite`, :func:`all_zero`): the
    test holds for all of ``grad``. ``grad`` is read a chunk along axis 0 at a time through
    ``narrow``, once for all the tests, so it may be computed lazily (each read computes it)."""
    step = gradient_chunks.rows_per_chunk(tuple(grad.shape), 0, torch.empty((), dtype=grad.dtype).element_size(),
                                          device=grad.device)
    flags = [torch.ones((), dtype=torch.bool, device=grad.device) for _ in tests]
    for start, stop in gradient_chunks.spans(grad.shape[0], step):
        piece = grad.narrow(0, start, stop - start)
        for flag, test in zip(flags, tests):
            flag &= test(piece)
    return flags


def sliced_all_zero(grad):
    """Whether every entry of ``grad`` (read through ``narrow``, see :func:`_by_slices`) is zero,
    by the rule of :func:`all_zero`: one read back to the host."""
    return bool(_by_slices(grad, [all_zero])[0])


def chunks_all_zero(source):
    """Whether every entry of ``source`` is zero, by the rule of :func:`all_zero`: ``source``
    is read a chunk along axis 0 at a time (``source.chunks(0)``: a
    :class:`~neuralop_mp.optim.gradient_chunks.GradientChunks` or ``ResidualChunks``, e.g. the
    residual a second compressed part's basis is computed from, in the math's dtype), with
    one read back to the host."""
    flag = torch.ones((), dtype=torch.bool, device=source.device)
    for _, _, piece in source.chunks(0):
        flag &= all_zero(piece)
    return bool(flag)


def single_gradient_flags(grad, group, group_index, position, param, zero_tested=False):
    """``(finite, zero)`` for the one gradient ``grad`` (read through ``narrow``, so it may be
    computed lazily: :func:`_by_slices`): whether it is finite (otherwise raise, or warn and
    return False: see module doc), and with ``zero_tested`` (its step refreshes a compressed
    basis) whether it is all zero (:func:`all_zero`), else None. Both come back in one read."""
    flags = host_flags(_by_slices(grad, [all_finite, all_zero] if zero_tested else [all_finite]))
    zero = flags[1] if zero_tested else None
    if flags[0]:
        return True, zero
    _handle(f"non-finite gradient (NaN or inf) in {describe(group, group_index, position, param)}; "
            "no parameter or optimizer state was changed", [group])
    return False, zero


def _bad_update(where, group, groups, changed):
    _handle(f"non-finite update (NaN or inf){where} from finite gradients (lr={group['lr']!r}, "
            f"eps={group['eps']!r}); {changed} not changed", groups)


def part_weight_words(name, group):
    """The settings that weigh part ``name``'s direction in a compressed update, in words:
    ``scale=4.0`` (low rank); ``sparse_scale=1.0, lambda_sparse=1.0`` (sparse, and
    ``scale_by_mask_ratio=True`` when set). A large one can make a finite direction's
    update overflow."""
    if name == "low_rank":
        return f"scale={group['scale']!r}"
    words = f"sparse_scale={group['sparse_scale']!r}, lambda_sparse={group['lambda_sparse']!r}"
    return words + (", scale_by_mask_ratio=True" if group["scale_by_mask_ratio"] else "")


def update_is_finite(parts, group, group_index, position, param):
    """True when every part of a compressed update (``{name: weighted direction}``, its
    sparse and low-rank parts) is finite, read back in one copy; otherwise raise or warn,
    naming the bad parts and the settings that weighed them, before the weight changes."""
    ok = finite_flags(list(parts.values()))
    if all(ok):
        return True
    bad = [f"{name.replace('_', '-')} part (weighted by {part_weight_words(name, group)})"
           for name, good in zip(parts, ok) if not good]
    _bad_update(f" in its {' and '.join(bad)} for {describe(group, group_index, position, param)}", group,
                [group], "the parameter was")
    return False


def apply_finite_updates(pending, apply):
    """Check the updates of ``pending`` (``(update, group, group_index, position, param,
    state)`` tuples) with one read back to the host per device, apply the finite ones in
    order with ``apply(param, update, group, state)``, then raise or warn once for the
    others, whose parameters stay unchanged. Empties ``pending``; if ``apply`` raises,
    the updates not yet applied are left in it.

    One read for many parameters: a step of an FNO has dozens of small dense parameters."""
    if not pending:
        return
    flags = finite_flags([entry[0] for entry in pending])
    entries = pending[:]
    pending.clear()
    bad = []
    for i, (entry, ok) in enumerate(zip(entries, flags)):
        update, group, _, _, param, state = entry
        if not ok:
            bad.append(entry)
            continue
        try:
            apply(param, update, group, state)
        except BaseException:
            pending.extend(entries[i + 1:])  # not applied yet: left for the caller, never applied twice
            raise
    if bad:
        where = ", ".join(describe(group, index, position, param) for _, group, index, position, param, _ in bad)
        _bad_update(f" for {where}", bad[0][1], [entry[1] for entry in bad],
                    "that parameter was" if len(bad) == 1 else "those parameters were")
