"""Robust (sparse + low-rank) decomposition of a gradient by two projectors in sequence."""
from ..vocabulary import check_choice
from .sparse_projector import SparseProjector
from .tucker_projector import TuckerProjector

ORDERS = ("sparse_first", "lowrank_first")


class CompositeProjector:
    """Apply a first projector to the gradient and a second one to the residual.

    With ``G`` the gradient, ``P1`` / ``P2`` the projections and ``B1`` / ``B2``
    the back-projections, the parts are ``c1 = P1(G)`` and
    ``c2 = P2(G - B1(c1))``, so ``G ~ B1(c1) + B2(c2)``: a sparse plus a low-rank
    tensor. The paper's best variant, the default here, takes a 5% random-k
    sparse part first and a Tucker part of the residual whose core keeps 25% of
    the entries:
    the sparse part absorbs the few large "outlier" entries a low-rank model
    fits poorly. ``second=None, default_second=False`` gives a single projector
    (GaLore-style low-rank only, or sparse only) behind the same interface.

    Stateless: bases are dicts of tensors keyed by the projector's ``name``
    ("sparse", "low_rank"), stored by the optimizer in its state. The optimizer
    reads the projectors and their order from it (``projectors``, ``names``) and
    computes the same decomposition in row chunks of the gradient
    (:func:`neuralop_mp.optim.compressed_step.project_parts`); the whole-tensor
    methods here (:meth:`compute_bases`, :meth:`project`, :meth:`project_back`,
    :meth:`reconstruct`) are that decomposition written plainly, for analysis and as
    the tests' reference.

    Parameters
    ----------
    first : SparseProjector or TuckerProjector, optional
        Default ``SparseProjector(0.05, "randk")``.
    second : SparseProjector, TuckerProjector or None, optional
        Must differ in kind from ``first``. None: the other kind's default
        (``TuckerProjector(0.25)`` after a sparse ``first``,
        ``SparseProjector(0.05, "randk")`` after a Tucker one), or no second part
        with ``default_second=False``.
    default_second : bool, optional
        Whether ``second=None`` means the default second part (True) or none.

    References
    ----------
    .. [1] S. Loeschcke et al., "TensorGRaD: Tensor Gradient Robust Decomposition
       for Memory-Efficient Neural Operator Training", arXiv:2501.02379, 2025.
    .. [2] E. J. Candes, X. Li, Y. Ma, J. Wright, "Robust principal component
       analysis?", J. ACM 58(3), 2011 (sparse + low-rank decomposition).
    """

    def __init__(self, first=None, second=None, *, default_second=True):
        if first is None:
            first = SparseProjector(0.05, "randk")
        if second is None and default_second:
            second = TuckerProjector(0.25) if isinstance(first, SparseProjector) else SparseProjector(0.05, "randk")
        self.projectors = [first] if second is None else [first, second]
        names = [p.name for p in self.projectors]
        if len(set(names)) != len(names):
            raise ValueError(f"CompositeProjector needs projectors of different kinds, got {names}.")

    @classmethod
    def from_settings(cls, rank, sparse_ratio, *, order="sparse_first", sparse_type="randk", sparse_mode=0,
                      rank_convention="core", n_iter=1, warm_start=True):
        """Build from optimizer settings; ``rank=None`` or ``sparse_ratio=None`` drops that branch."""
        check_choice("order", order, ORDERS)
        lowrank = None if rank is None else TuckerProjector(
            rank, rank_convention=rank_convention, n_iter=n_iter, warm_start=warm_start)
        sparse = None if sparse_ratio is None else SparseProjector(sparse_ratio, sparse_type, mode=sparse_mode)
        parts = [sparse, lowrank] if order == "sparse_first" else [lowrank, sparse]
        parts = [p for p in parts if p is not None]
        if not parts:
            raise ValueError("Invalid rank=None with sparse_ratio=None: a compressed group needs at least one of them.")
        return cls(*parts, default_second=False) if len(parts) == 2 else cls(parts[0], None, default_second=False)

    @property
    def names(self):
        return [p.name for p in self.projectors]

    @staticmethod
    def _residual(projector, grad, basis):
        """What ``projector`` leaves of ``grad`` (a new tensor)."""
        if hasattr(projector, "residual"):
            return projector.residual(grad, basis)
        return grad - projector.project_back(projector.project(grad, basis), basis, grad.shape)

    def compute_bases(self, grad, previous=None, seed=0):
        """New bases for every projector: the second one is fitted to the residual
        left by the first one's *new* basis."""
        previous = previous or {}
        bases, target = {}, grad
        for i, projector in enumerate(self.projectors):
            bases[projector.name] = projector.compute_basis(target, previous.get(projector.name), seed=seed)
            if i + 1 < len(self.projectors):
                target = self._residual(projector, target, bases[projector.name])
        return bases

    def project(self, grad, bases):
        """Compressed parts ``{name: tensor}``; ``grad`` is not modified."""
        parts, target = {}, grad
        for i, projector in enumerate(self.projectors):
            basis = bases[projector.name]
            parts[projector.name] = projector.project(target, basis)
            if i + 1 < len(self.projectors):
                target = self._residual(projector, target, basis)
        return parts

    def project_back(self, parts, bases, shape):
        """Full-shape tensors ``{name: tensor}``, one per compressed part."""
        return {p.name: p.project_back(parts[p.name], bases[p.name], shape) for p in self.projectors}

    def reconstruct(self, grad, bases):
        """``B1(c1) + B2(c2)``: the gradient as the decomposition sees it."""
        full = self.project_back(self.project(grad, bases), bases, grad.shape)
        return sum(full.values())

    def __getitem__(self, name):
        for projector in self.projectors:
            if projector.name == name:
                return projector
        raise KeyError(name)

    def __repr__(self):
        return f"CompositeProjector({', '.join(map(repr, self.projectors))})"
