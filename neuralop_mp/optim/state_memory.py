"""Memory of a TensorGRaD optimizer: parameters, gradients and state by category, and the
state a parameter's moments will hold (which decides whether compressing it pays)."""
import math

import torch

from .adam_math import compute_dtype, real_dtype, storage_dtype

#: state keys of a basis tensor: ``<branch>_basis_<key>``, e.g. ``low_rank_basis_factor_0``
BASIS_INFIX = "_basis_"

_MOMENTS = ("exp_avg", "exp_avg_sq")
_INDEX_BYTES = 4  # sparse indices and the births of kept sparse moments are int32


def plain_state_bytes(shape, dtype, convention):
    """Bytes of the plain AdamW moments of a parameter of ``shape`` whose math runs in
    ``dtype`` (:func:`~neuralop_mp.optim.adam_math.compute_dtype`): ``exp_avg`` in ``dtype``;
    ``exp_avg_sq`` the same with ``convention="torch"``, one real number an entry with
    "neuralop"."""
    second = dtype if convention == "torch" else real_dtype(dtype)
    return math.prod(shape) * (dtype.itemsize + second.itemsize)


def compressed_state_bytes(shape, dtype, group, projector):
    """Bytes of the compressed state of a parameter of ``shape`` (math in ``dtype``) in
    ``group``, whose parts ``projector`` (:meth:`TensorGRaD.projector_for`) makes: each part's
    moments, Tucker factors, sparse indices and, with ``reset_sparse_moments=False``, the
    births of the sparse moments (kept from the first refresh that carries them over).
    The 0-d counters (a few bytes, as many as plain moments have) are left out.

    Raises ValueError where the group's settings do not fit ``shape`` (a rank tuple of
    another length, a structured ``sparse_mode`` beyond its modes)."""
    numbers = 2 if dtype.is_complex else 1  # real numbers an entry: moments and factors are real views
    storage = storage_dtype(group, dtype).itemsize
    second = numbers if group["adam_convention"] == "torch" else 1
    total = 0
    for part in projector.projectors:
        entries = math.prod(part.compressed_shape(shape))
        total += entries * (numbers + second) * storage
        if part.name == "low_rank":
            ranks = part.mode_ranks(shape)
            total += sum(shape[k] * ranks[k] for k in part.compressed_modes(shape)) * numbers * storage
        else:
            total += part.n_selected(shape) * _INDEX_BYTES
            if not group["reset_sparse_moments"]:
                total += entries * _INDEX_BYTES
    return total


def compression_saves_memory(param, group, projector):
    """Whether ``param``'s compressed state (:func:`compressed_state_bytes`) is smaller than
    the plain AdamW moments the group would keep for it (:func:`plain_state_bytes`).

    Not so for a weight with a long and a short mode at a high rank (a CP factor of 64 x 629
    keeps a 629 x 314 factor at the default rank) or for a rank 1.0 without a sparse part:
    such a weight gets plain moments."""
    shape, dtype = tuple(param.shape), compute_dtype(param)
    return (compressed_state_bytes(shape, dtype, group, projector)
            < plain_state_bytes(shape, dtype, group["adam_convention"]))


def state_memory_report(optimizer):
    """Bytes held by parameters, gradients and optimizer state, by category.

    Returns a dict with ``params``, ``grads`` (gradients present now),
    ``moments``, ``factors``, ``indices``, ``other`` (step counters, seeds,
    flags, the births of kept sparse entries), ``state`` (their sum),
    ``adamw_state`` (two full-size moments in the dtype the math runs in, fp32 /
    complex64, what AdamW keeps for fp32 weights), ``state_ratio = state / adamw_state``
    and ``kept_plain``: the number of parameters of compressing groups (``compress=True``,
    at least ``min_params`` entries, two modes longer than 1) that get plain AdamW moments
    because their compressed state would not be smaller
    (:func:`compression_saves_memory`).
    """
    report = dict.fromkeys(("params", "grads", "moments", "factors", "indices", "other"), 0)
    adamw = kept_plain = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            report["params"] += p.numel() * p.element_size()
            adamw += plain_state_bytes(p.shape, compute_dtype(p), "torch")
            if p.grad is not None:
                report["grads"] += p.grad.numel() * p.grad.element_size()
            state = optimizer.state.get(p, {})
            compressed = bool(state["compressed"]) if "compressed" in state else optimizer.routes_to_compression(
                p, group)
            kept_plain += not compressed and optimizer.eligible_for_compression(p, group)
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                nbytes = value.numel() * value.element_size()
                if key.endswith(_MOMENTS):
                    report["moments"] += nbytes
                elif BASIS_INFIX + "factor" in key:
                    report["factors"] += nbytes
                elif BASIS_INFIX in key:
                    report["indices"] += nbytes
                else:
                    report["other"] += nbytes
    report["state"] = report["moments"] + report["factors"] + report["indices"] + report["other"]
    report["adamw_state"] = adamw
    report["state_ratio"] = report["state"] / adamw if adamw else float("nan")
    report["kept_plain"] = kept_plain
    return report
