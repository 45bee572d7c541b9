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
        total = self.n_candidates(shape)
        # the tolerance keeps a product like 0.07 * 100 = 7.000000000000001 at 7
        return min(total, max(1, math.ceil(self.sparse_ratio * total - 1e-9)))

    def n_candidates(self, shape):
        """How many entries (or slices along ``mode``) an index set chooses from."""
        return shape[self._mode_of(shape)] if self.structured else math.prod(shape)

    def kept_fraction(self, shape, basis=None):
        """Fraction of the entries the index set covers (``k / total``); with ``basis``,
        that of its indices (a loaded set may hold another count than :meth:`n_selected`)."""
        count = self.n_selected(shape) if basis is None else basis["indices"].numel()
        return count / self.n_candidates(shape)

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
            indices = _random_indices(total, k, seed, grad.device)
        # sorted indices make gathers cache-friendly and let carry-over use searchsorted
        return {"indices": indices.sort().values.to(torch.int32)}

    # -------------------------------------------- the same on a gradient read in chunks
    def compute_basis_chunks(self, source, previous=None, seed=0):
        """:meth:`compute_basis` of the gradient ``source`` reads in chunks along axis 0
        (:class:`~neuralop_mp.optim.gradient_chunks.GradientChunks`): top-k merges each
        chunk's own top-k, slice scores are summed chunk by chunk, random-k reads nothing."""
        shape = source.shape
        if not self.structured and math.prod(shape) > _INT32_MAX:
            raise ValueError(f"Tensor of {math.prod(shape)} entries is too large for int32 sparse indices.")
        k = self.n_selected(shape)
        total = shape[self._mode_of(shape)] if self.structured else math.prod(shape)
        if k == total:
            indices = torch.arange(total, device=source.device)
        elif self.sparse_type == "topk":
            values = torch.empty(0, device=source.device)
            indices = torch.empty(0, dtype=torch.int64, device=source.device)
            for start, _, piece in source.chunks(0):
                magnitude = piece.abs().reshape(-1)
                best = torch.topk(magnitude, min(k, magnitude.numel()), sorted=False)
                values = torch.cat([values.to(magnitude.dtype), best.values])
                indices = torch.cat([indices, best.indices + start * (magnitude.numel() // piece.shape[0])])
                keep = torch.topk(values, min(k, values.numel()), sorted=False).indices
                values, indices = values[keep], indices[keep]
        elif self.sparse_type == "structured":
            mode = self._mode_of(shape)
            scores = None
            for start, stop, piece in source.chunks(0):
                part = _unfold_abs_sq(piece, mode).sum(1)
                if mode == 0:
                    scores = part if scores is None else torch.cat([scores, part])
                else:
                    scores = part if scores is None else scores.add_(part)
            indices = torch.topk(scores, k, sorted=False).indices
        else:
            indices = _random_indices(total, k, seed, source.device)
        return {"indices": indices.sort().values.to(torch.int32)}

    def project_chunks(self, source, basis):
        """:meth:`project` of the gradient ``source`` reads in chunks along axis 0."""
        indices, shape = basis["indices"], source.shape
        if self.structured:
            mode = self._mode_of(shape)
            out_shape = self.compressed_shape(shape, indices.numel())
            values = torch.empty(out_shape, dtype=source.dtype, device=source.device)
            for start, stop, piece in source.chunks(0):
                if mode == 0:
                    lo, hi = _range_of(indices, start, stop, extent=shape[0])
                    values[lo:hi] = piece[indices[lo:hi].long() - start]
                else:
                    values[start:stop] = piece.index_select(mode, indices.long())
            return values
        values = torch.empty(indices.numel(), dtype=source.dtype, device=source.device)
        for start, stop, piece in source.chunks(0):
            row = piece.numel() // piece.shape[0]
            lo, hi = _range_of(indices, start * row, stop * row, extent=shape[0] * row)
            values[lo:hi] = piece.reshape(-1)[indices[lo:hi].long() - start * row]
        return values

    def remover(self, basis, shape):
        """``removed(piece, axis, start)``: sets to zero, in place, the selected entries of
        ``piece``, the indices ``start ...`` along ``axis`` of a tensor of ``shape`` (for
        :class:`~neuralop_mp.optim.gradient_chunks.GradientChunks`: chunks of the residual)."""
        indices, shape = basis["indices"], tuple(shape)

        if self.structured:
            mode = self._mode_of(shape)

            def removed(piece, axis, start):
                if axis == mode:
                    lo, hi = _range_of(indices, start, start + piece.shape[axis], extent=shape[mode])
                    piece.index_fill_(mode, indices[lo:hi].long() - start, 0)
                else:
                    piece.index_fill_(mode, indices.long(), 0)
            return removed

        def removed(piece, axis, start):
            stride = math.prod(shape[axis + 1:])
            if axis == 0:  # a chunk along axis 0 is a range of flat positions
                lo, hi = _range_of(indices, start * stride, (start + piece.shape[0]) * stride,
                                   extent=math.prod(shape))
                piece.view(-1)[indices[lo:hi].long() - start * stride] = 0
                return
            flat = indices.long()
            along = flat // stride % shape[axis]
            inside = (along >= start) & (along < start + piece.shape[axis])
            flat, along = flat[inside], along[inside]
            outer, inner = flat // (stride * shape[axis]), flat % stride
            local = (outer * piece.shape[axis] + (along - start)) * stride + inner
            piece.view(-1)[local] = 0
        return removed

    def add_back_rows_(self, rows, values, basis, shape, start):
        """``rows += project_back(values)[start:start + len(rows)]`` (along axis 0), in place."""
        indices = basis["indices"]
        stop = start + rows.shape[0]
        if self.structured:
            mode = self._mode_of(shape)
            if mode == 0:
                lo, hi = _range_of(indices, start, stop, extent=shape[0])
                rows[indices[lo:hi].long() - start] += values[lo:hi]
            else:
                rows.index_add_(mode, indices.long(), values[start:stop])
            return rows
        row = rows.numel() // max(1, rows.shape[0])
        lo, hi = _range_of(indices, start * row, stop * row, extent=math.prod(shape))
        rows.view(-1)[indices[lo:hi].long() - start * row] += values[lo:hi]
        return rows

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

    def compressed_shape(self, shape, count=None):
        """Shape of the projection; ``count``: the index set's length (default :meth:`n_selected`)."""
        k = self.n_selected(shape) if count is None else count
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
        Returns a contiguous tensor: the optimizer steps stored moments (and births)
        through flat views, written in place.
        """
        old, new = old_basis["indices"], new_basis["indices"]
        pos = torch.searchsorted(old, new).clamp_(max=old.numel() - 1)
        kept = old[pos] == new
        axis = self.mode if self.structured else 0
        moved = moment.movedim(axis, 0)
        out = torch.zeros((new.numel(),) + tuple(moved.shape[1:]), dtype=moment.dtype, device=moment.device)
        out[kept] = moved[pos[kept]]
        # moved back to a mode other than 0 the strides are permuted: stored as they are,
        # a flat view of them would fail, and a reshaped copy would take no in-place writes
        return out.movedim(0, axis).contiguous()

    def __repr__(self):
        return f"SparseProjector(sparse_ratio={self.sparse_ratio}, sparse_type={self.sparse_type!r}, mode={self.mode})"


#: above this many entries random-k draws its index set without a permutation of all of
#: them (an int64 permutation of a 34.6M-entry weight would be 277 MB)
PERMUTATION_MAX_NUMEL = 1 << 22


def _random_indices(total, k, seed, device):
    """``k`` distinct indices drawn uniformly at random from ``range(total)`` (unsorted)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    if total <= PERMUTATION_MAX_NUMEL or 2 * k > total:
        return torch.randperm(total, generator=generator, device=device)[:k]
    return random_subset(total, k, generator)


def random_subset(total, k, generator):
    """``k`` distinct indices uniform over ``range(total)``, in O(k) memory (``2 k <= total``).

    Draws candidates with replacement until ``k`` distinct ones are found, then keeps a
    uniformly random ``k`` of them. Every step treats all indices alike, so every
    ``k``-subset is equally likely, as with a prefix of a random permutation.
    """
    chosen = torch.empty(0, dtype=torch.int64, device=generator.device)
    while chosen.numel() < k:
        missing = k - chosen.numel()
        draws = torch.randint(0, total, (missing + missing // 8 + 16,), generator=generator, device=generator.device)
        chosen = torch.unique(torch.cat([chosen, draws]))
    keep = torch.randperm(chosen.numel(), generator=generator, device=generator.device)[:k]
    return chosen[keep]


def _range_of(sorted_indices, low, high, *, extent):
    """Positions ``lo:hi`` of the sorted indices (values in ``[0, extent)``) with values in
    ``[low, high)``. A range covering ``[0, extent)`` is all of them, known without the
    search, whose bounds Python must read (on a GPU, a synchronisation)."""
    if low <= 0 and high >= extent:
        return 0, sorted_indices.numel()
    bounds = torch.searchsorted(sorted_indices, torch.tensor([low, high], dtype=sorted_indices.dtype,
                                                             device=sorted_indices.device))
    return int(bounds[0]), int(bounds[1])


def _unfold_abs_sq(x, mode):
    x = x.movedim(mode, 0).reshape(x.shape[mode], -1)
    return x.real.square() + x.imag.square() if x.is_complex() else x.square()
