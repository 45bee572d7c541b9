"""Sparse projection of a gradient onto a fixed index set (the sparse branch of TensorGRaD).

A stateless helper like :class:`~neuralop_mp.optim.tucker_projector.TuckerProjector`:
the index set it selects is returned as tensors for ``optimizer.state[p]``. Indices
are int32 (half the bytes of torch's default int64; the sparse moments of a complex
entry take 16 bytes in fp32, so int64 indices would add 50%).
"""
import math
from numbers import Integral, Real

import torch

from ..vocabulary import check_choice

SPARSE_TYPES = ("randk", "randomk", "topk", "structured", "structured_randk")
_INT32_MAX = 2**31 - 1


def _check_ratio(sparse_ratio, key="sparse_ratio"):
    if isinstance(sparse_ratio, bool) or not isinstance(sparse_ratio, Real) or not 0.0 < sparse_ratio <= 1.0:
        raise ValueError(f"Invalid {key}={sparse_ratio!r}; expected a float in (0, 1].")
    return float(sparse_ratio)


class SparseProjector:
    """Keep a ``sparse_ratio`` fraction of a gradient's entries (or slices).

    Projection gathers the selected entries; back-projection scatters them into
    zeros of the original shape.

    Parameters
    ----------
    sparse_ratio : float, default 0.05
        Fraction in (0, 1] of the entries (unstructured) or of the slices along
        ``mode`` (structured) to keep; at least one is always kept.
    sparse_type : {"randk", "randomk", "topk", "structured", "structured_randk"}
        "topk": the entries of largest magnitude. "randk" (alias "randomk"):
        uniformly random entries drawn from a ``torch.Generator`` seeded with
        the ``seed`` given to :meth:`compute_basis`, so the set is reproducible.
        "structured": the whole slices along ``mode`` of largest Frobenius norm;
        "structured_randk": random slices.
    mode : int >= 0, default 0
        The mode whose slices are kept by the structured types.

    References
    ----------
    .. [1] S. Loeschcke et al., "TensorGRaD: Tensor Gradient Robust Decomposition
       for Memory-Efficient Neural Operator Training", arXiv:2501.02379, 2025.
    .. [2] S. U. Stich, J.-B. Cordonnier, M. Jaggi, "Sparsified SGD with memory",
       NeurIPS 2018 (top-k and random-k sparsification).
    """

    name = "sparse"

    def __init__(self, sparse_ratio=0.05, sparse_type="randk", *, mode=0):
        self.sparse_ratio = _check_ratio(sparse_ratio)
        self.sparse_type = check_choice("sparse_type", sparse_type, SPARSE_TYPES)
        if isinstance(mode, bool) or not isinstance(mode, Integral) or mode < 0:
            raise ValueError(f"Invalid sparse_mode={mode!r}; expected an int >= 0.")
        self.mode = int(mode)

    @property
    def structured(self):
        return self.sparse_type.startswith("structured")

    def _mode_of(self, shape):
        if self.mode >= len(shape):
            raise ValueError(f"Invalid sparse_mode={self.mode} for a tensor of shape {tuple(shape)}.")
        return self.mode

    def n_selected(self, shape):
        """How many entries (or slices) are kept for a tensor of ``shape``."""
        total = shape[self._mode_of(shape)] if self.structured else math.prod(shape)
        return max(1, min(total, math.ceil(self.sparse_ratio * total)))

    def kept_fraction(self, shape):
        """Fraction of the entries the index set covers (``k / total``)."""
        total = shape[self._mode_of(shape)] if self.structured else math.prod(shape)
        return self.n_selected(shape) / total

    def compute_basis(self, grad, previous=None, seed=0):
        """Select the index set for ``grad``: ``{"indices": int32 tensor, sorted}``.

        ``seed`` (an int) drives the random types; it is ignored by the others, as
        is ``previous`` (a new set does not depend on the old one).
        """
        if not self.structured and grad.numel() > _INT32_MAX:
            raise ValueError(f"Tensor of {grad.numel()} entries is too large for int32 sparse indices.")
        k = self.n_selected(grad.shape)
        if self.structured:
            mode = self._mode_of(grad.shape)
            total = grad.shape[mode]
            scores = _unfold_abs_sq(grad, mode).sum(1) if self.sparse_type == "structured" else None
        else:
            total = grad.numel()
            scores = grad.abs().reshape(-1) if self.sparse_type == "topk" else None
        if k == total:
            indices = torch.arange(total, device=grad.device)
        elif scores is not None:
            indices = torch.topk(scores, k, sorted=False).indices
        else:
            generator = torch.Generator(device=grad.device)
            generator.manual_seed(int(seed))
            indices = torch.randperm(total, generator=generator, device=grad.device)[:k]
        # sorted indices make gathers cache-friendly and let carry-over use searchsorted
        return {"indices": indices.sort().values.to(torch.int32)}

    def project(self, grad, basis):
        """The selected entries (flat, unstructured) or slices (structured)."""
        indices = basis["indices"]
        if self.structured:
            return grad.movedim(self._mode_of(grad.shape), 0)[indices].movedim(0, self._mode_of(grad.shape))
        return grad.reshape(-1)[indices]

    def residual(self, grad, basis, *, in_place=False):
        """``grad - project_back(project(grad))``: ``grad`` with the selected entries set to
        zero (x - x is exactly 0 for the finite gradients the optimizer accepts), built
        without the full-shape back-projection. ``in_place`` writes into ``grad``."""
        indices = basis["indices"]
        out = grad if in_place else grad.clone()
        if self.structured:
            out.movedim(self._mode_of(out.shape), 0)[indices] = 0
        elif out.is_contiguous():
            out.view(-1)[indices] = 0
        else:
            out = out.contiguous()
            out.view(-1)[indices] = 0
        return out

    def add_back_(self, target, values, basis):
        """``target += project_back(values)`` without the full-shape back-projection:
        ``values`` added at the selected positions of ``target`` (returned)."""
        indices = basis["indices"]
        if self.structured:
            mode = self._mode_of(target.shape)
            target.movedim(mode, 0)[indices] += values.movedim(mode, 0)
        elif target.is_contiguous():
            target.view(-1)[indices] += values
        else:  # a strided target (a low-rank back-projection ending on an inner mode)
            target[torch.unravel_index(indices.long(), target.shape)] += values
        return target

    def project_back(self, values, basis, shape):
        """Zeros of ``shape`` with the selected positions set to ``values``."""
        indices = basis["indices"]
        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        if self.structured:
            mode = self._mode_of(shape)
            out.movedim(mode, 0)[indices] = values.movedim(mode, 0)
        else:
            out.view(-1)[indices] = values
        return out

    def compressed_shape(self, shape):
        k = self.n_selected(shape)
        if self.structured:
            shape = list(shape)
            shape[self._mode_of(shape)] = k
            return tuple(shape)
        return (k,)

    def transfer_moment(self, moment, old_basis, new_basis):
        """Move a moment from the old index set to the new one.

        Entries selected both times keep their moment (moved to their new
        position); newly selected entries start from zero. The moment's leading
        axis (unstructured) or axis ``mode`` (structured) runs over the index set.
        """
        old, new = old_basis["indices"], new_basis["indices"]
        pos = torch.searchsorted(old, new).clamp_(max=old.numel() - 1)
        kept = old[pos] == new
        axis = self.mode if self.structured else 0
        moved = moment.movedim(axis, 0)
        out = torch.zeros((new.numel(),) + tuple(moved.shape[1:]), dtype=moment.dtype, device=moment.device)
        out[kept] = moved[pos[kept]]
        return out.movedim(0, axis)

    def __repr__(self):
        return f"SparseProjector(sparse_ratio={self.sparse_ratio}, sparse_type={self.sparse_type!r}, mode={self.mode})"


def _unfold_abs_sq(x, mode):
    x = x.movedim(mode, 0).reshape(x.shape[mode], -1)
    return x.real.square() + x.imag.square() if x.is_complex() else x.square()
