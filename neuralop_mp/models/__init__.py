"""Model registration glue: see :mod:`neuralop_mp.models.registry`."""
from .registry import UNO, get_model, available_models

__all__ = ["UNO", "get_model", "available_models"]
