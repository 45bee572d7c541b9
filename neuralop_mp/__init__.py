"""neuralop-mp: mixed-precision training for neuraloperator.

Importing the package registers the plugin's models with neuraloperator's
model registry (by neuraloperator's own subclass mechanism) and nothing else:
no global backend switch, no monkey-patching. Everything else is imported
lazily on first attribute access, so ``import neuralop_mp`` stays cheap.
"""
from importlib import import_module
from importlib.util import find_spec

from . import models as _models  # noqa: F401  (registers the plugin's models with neuralop's registry)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "get_model": "neuralop_mp.models.registry",
    "available_models": "neuralop_mp.models.registry",
    "load_model": "neuralop_mp.models.checkpoints",
    "export_upstream_checkpoint": "neuralop_mp.models.checkpoints",
    "MixedPrecisionFNO": "neuralop_mp.models.mixed_precision_models",
    "MixedPrecisionTFNO": "neuralop_mp.models.mixed_precision_models",
    "MixedPrecisionUNO": "neuralop_mp.models.mixed_precision_models",
    "MixedPrecisionSpectralConv": "neuralop_mp.layers.spectral_conv",
    "PrecisionPolicy": "neuralop_mp.precision_policy",
    "set_precision": "neuralop_mp.layers.precision_switch",
    "precision": "neuralop_mp.layers.precision_switch",
    "get_precision": "neuralop_mp.layers.precision_switch",
    "get_precision_policy": "neuralop_mp.layers.precision_switch",
    "apply_precision_policy": "neuralop_mp.layers.precision_switch",
    "mixed_precision_layers": "neuralop_mp.layers.precision_switch",
    "set_spectral_weight_dtype": "neuralop_mp.layers.precision_switch",
    "get_spectral_weight_dtype": "neuralop_mp.layers.precision_switch",
    "set_autocast_scope": "neuralop_mp.layers.autocast_scope",
    "get_autocast_scope": "neuralop_mp.layers.autocast_scope",
    "PrecisionSchedule": "neuralop_mp.training.schedule",
    "PrecisionPhase": "neuralop_mp.training.schedule",
    "ComplexGradScaler": "neuralop_mp.training.loss_scaling",
    "MixedPrecisionTrainer": "neuralop_mp.training.trainer",
    "IncrementalMixedPrecisionTrainer": "neuralop_mp.training.incremental",
    "TrainingStopped": "neuralop_mp.training.guarded_step",
    "TensorGRaD": "neuralop_mp.optim.tensorgrad",
    "TuckerProjector": "neuralop_mp.optim.tucker_projector",
    "SparseProjector": "neuralop_mp.optim.sparse_projector",
    "CompositeProjector": "neuralop_mp.optim.composite_projector",
    "create_optimizer": "neuralop_mp.optim.factory",
    "fno_tensorgrad_param_groups": "neuralop_mp.optim.param_groups",
    "SavedTensorBytes": "neuralop_mp.memory",
    "model_product_paths": "neuralop_mp.layers.path_report",
    "summarize_product_paths": "neuralop_mp.layers.path_report",
    "set_pointwise_tiles": "neuralop_mp.models.pointwise_tiles",
    "pointwise_tile_points": "neuralop_mp.models.pointwise_tiles",
    "enable": "neuralop_mp.runner.activation",
    "disable": "neuralop_mp.runner.activation",
    "enabled": "neuralop_mp.runner.activation",
}

__all__ = sorted(_LAZY) + ["data", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    # a submodule on first use, so that the dotted paths the docs call
    # (``neuralop_mp.run_folder.load_model_and_precision``) work after a plain ``import neuralop_mp``,
    # as ``neuralop_mp.data.load_darcy`` does
    if not name.startswith("_") and find_spec(f"neuralop_mp.{name}") is not None:
        return import_module(f"neuralop_mp.{name}")
    raise AttributeError(f"module 'neuralop_mp' has no attribute {name!r}")


def __dir__():
    return __all__
