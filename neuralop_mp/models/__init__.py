"""Models: upstream's UNO registered by name, the plugin's FNO/TFNO/UNO whose precision is a
constructor argument, ``get_model`` and the one-call checkpoint loader."""
from .checkpoints import load_model
from .mixed_precision_models import PLUGIN_MODEL_CLASSES, MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from .registry import available_models, get_model
from .uno_registration import UNO

__all__ = ["UNO", "MixedPrecisionFNO", "MixedPrecisionTFNO", "MixedPrecisionUNO", "PLUGIN_MODEL_CLASSES",
           "get_model", "available_models", "load_model"]
