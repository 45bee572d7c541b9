"""The model inside a data-parallel wrapper: what is saved, loaded and switched.

Low in the package (it imports only torch), so that the training code and the models
package use the one rule without importing each other.
"""
from torch import nn

_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def unwrap(model):
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (nested ones
    included), else ``model`` itself."""
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model
