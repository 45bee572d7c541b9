"""Memory-efficient optimizers: TensorGRaD (sparse + low-rank compressed Adam state).

The projectors are stateless helpers; :class:`TensorGRaD` keeps every basis and
moment as tensors in its state, so its state_dict loads with
``torch.load(weights_only=True)``.
"""
from .composite_projector import CompositeProjector
from .factory import create_optimizer, list_optimizers
from .param_groups import fno_tensorgrad_param_groups
from .sparse_projector import SparseProjector
from .tensorgrad import TensorGRaD
from .tucker_projector import TuckerProjector

__all__ = [
    "CompositeProjector",
    "SparseProjector",
    "TensorGRaD",
    "TuckerProjector",
    "create_optimizer",
    "fno_tensorgrad_param_groups",
    "list_optimizers",
]
