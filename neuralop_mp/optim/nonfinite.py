"""Non-finite gradients and updates in TensorGRaD: found before they reach the weights.

A NaN or inf gradient would otherwise flow into the moments and the weights, and on
a projector-refresh step make the eigen-decomposition fail with a message that
does not mention NaN. The group setting ``nonfinite_grad`` chooses what happens:
"raise" (default) raises :class:`NonFiniteError`; "skip" warns and leaves the
weights (and, for a gradient, all optimizer state) unchanged.
"""
import warnings

import torch

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


def _handle(message, groups):
    if any(group["nonfinite_grad"] == "raise" for group in groups):
        raise NonFiniteError(f"{message}. {_ADVICE}")
    warnings.warn(f"TensorGRaD: {message}; skipped (nonfinite_grad='skip').", RuntimeWarning, stacklevel=4)


def all_finite(tensor):
    """0-d bool tensor: every entry of ``tensor`` is finite. Checked a quarter of
    :func:`~neuralop_mp.optim.gradient_chunks.chunk_bytes` at a time, so the check of a
    large gradient allocates no full-size mask."""
    real = as_real(tensor)
    if not real.is_contiguous():
        return torch.isfinite(real).all()
    flat = real.view(-1)
    # isfinite makes a float copy (abs) and three bool masks of its input: a quarter chunk
    # keeps them below one chunk, as this check runs when the step holds the most
    step = max(1, gradient_chunks.chunk_bytes(flat.device) // (4 * max(1, flat.element_size())))
    if flat.numel() <= step:  # one piece: two kernels, not a running flag's five
        return torch.isfinite(flat).all()
    flag = torch.ones((), dtype=torch.bool, device=flat.device)
    for start in range(0, flat.numel(), step):
        flag &= torch.isfinite(flat[start:start + step]).all()
    return flag


def gradients_are_finite(optimizer):
    """True when every gradient is finite; otherwise raise or warn (see module doc)."""
    entries = [
        (group, group_index, position, p)
        for group_index, group in enumerate(optimizer.param_groups)
        for position, p in enumerate(group["params"])
        if p.grad is not None and not p.grad.is_sparse
    ]
    if not entries:
        return True
    # one reduction per parameter, stacked on its device, then one copy to the host (one
    # synchronisation) per device: a copy per parameter would wait on the GPU each time
    by_device = {}
    for i, (*_, p) in enumerate(entries):
        by_device.setdefault(p.grad.device, []).append(i)
    ok = [True] * len(entries)
    for indices in by_device.values():
        flags = torch.stack([all_finite(entries[i][3].grad) for i in indices]).cpu().tolist()
        for i, flag in zip(indices, flags):
            ok[i] = flag
    if all(ok):
        return True
    bad = [entry for entry, good in zip(entries, ok) if not good]
    where = ", ".join(describe(*entry) for entry in bad)
    _handle(f"non-finite gradient (NaN or inf) in {where}; no parameter or optimizer state was changed",
            [entry[0] for entry in bad])
    return False


def gradient_is_finite(grad, group, group_index, position, param):
    """True when the one gradient ``grad`` is finite; otherwise raise or warn. ``grad`` is
    read a chunk along axis 0 at a time through ``narrow``, so it may be computed lazily."""
    step = gradient_chunks.rows_per_chunk(tuple(grad.shape), 0, torch.empty((), dtype=grad.dtype).element_size(),
                                          device=grad.device)
    flag = torch.ones((), dtype=torch.bool, device=grad.device)
    for start, stop in gradient_chunks.spans(grad.shape[0], step):
        flag &= all_finite(grad.narrow(0, start, stop - start))
    if bool(flag):
        return True
    _handle(f"non-finite gradient (NaN or inf) in {describe(group, group_index, position, param)}; "
            "no parameter or optimizer state was changed", [group])
    return False


def update_is_finite(update, group, group_index, position, param):
    """True when ``update`` is finite; otherwise raise or warn, before the weight changes.

    ``update`` is one tensor, or a dict of named parts (a compressed step's sparse and
    low-rank directions): their flags are stacked and read back in one copy, since on a
    GPU each read waits for the device."""
    parts = update if isinstance(update, dict) else {None: update}
    if len(parts) == 1:
        ok = [bool(all_finite(next(iter(parts.values()))))]
    else:
        ok = torch.stack([all_finite(part) for part in parts.values()]).cpu().tolist()
    if all(ok):
        return True
    bad = [name.replace("_", "-") for name, good in zip(parts, ok) if not good and name is not None]
    where = f" in its {' and '.join(bad)} part{'s' if len(bad) > 1 else ''}" if bad else ""
    _handle(
        f"non-finite update (NaN or inf){where} for {describe(group, group_index, position, param)} from finite "
        f"gradients (lr={group['lr']!r}, eps={group['eps']!r}); the parameter was not changed",
        [group],
    )
    return False


def apply_finite_updates(pending, apply):
    """Check the updates of ``pending`` (``(update, group, group_index, position, param,
    state)`` tuples on one device) with one read back to the host, apply the finite ones
    in order with ``apply(param, update, group, state)``, then raise or warn once for the
    others, whose parameters stay unchanged. Empties ``pending``.

    One read for many parameters: on a GPU each read waits for the device, and a step
    of an FNO has dozens of small dense parameters."""
    if not pending:
        return
    flags = torch.stack([all_finite(entry[0]) for entry in pending]).cpu().tolist()
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
        group = bad[0][1]
        _handle(f"non-finite update (NaN or inf) for {where} from finite gradients (lr={group['lr']!r}, "
                f"eps={group['eps']!r}); {'that parameter was' if len(bad) == 1 else 'those parameters were'} "
                "not changed", [entry[1] for entry in bad])
