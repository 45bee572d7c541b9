"""Storage dtype of the spectral weights: complex64 (default) or complex32.

The spectral weights dominate an FNO's parameter count, and with them the memory of
parameters and gradients. TensorGRaD's half recipe (Loeschcke et al., section on
mixed precision) keeps those weights, and so their gradients, in complex32: two fp16
numbers, 4 bytes an entry instead of 8. Nothing else changes:

- the layer's Fourier-domain product already runs in a 16-bit type in "mixed" and
  "half", so it reads complex32 weights directly; "full" widens them to complex64;
- autograd returns gradients in the parameters' dtype, so gradients are complex32
  too; :class:`~neuralop_mp.TensorGRaD` up-casts them for its math and writes the
  updated weights back with stochastic rounding (round-to-nearest would drop every
  update smaller than half an fp16 ulp, i.e. most updates late in training);
- fp16's narrow range is why loss scaling stays on with complex32 weights:
  :class:`~neuralop_mp.MixedPrecisionTrainer` enables it, and
  :class:`~neuralop_mp.ComplexGradScaler` hands the scale to TensorGRaD instead of
  dividing 16-bit gradients in place (which would underflow them again).

Bias, lifting, projection and skip weights stay float32: they are small.

References
----------
.. [1] S. Loeschcke et al., "TensorGRaD: Tensor Gradient Robust Decomposition for
   Memory-Efficient Neural Operator Training", arXiv:2501.02379, 2025.
.. [2] R. Tu et al., "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import warnings

import torch

from ..vocabulary import SPECTRAL_WEIGHT_DTYPES, normalize_spectral_weight_dtype, spectral_weight_torch_dtype

__all__ = ["SPECTRAL_WEIGHT_DTYPES", "spectral_weight_parameters", "store_layer_weights", "layer_weight_dtype"]


def spectral_weight_parameters(layer):
    """The complex parameters holding a spectral layer's weight (dense tensor, or the
    CP / Tucker / TT factors of a factorized one)."""
    weight = layer.weight
    params = weight.parameters() if isinstance(weight, torch.nn.Module) else [weight]
    return [p for p in params if p.is_complex()]


def store_layer_weights(layer, dtype):
    """Cast one layer's spectral weight parameters to ``dtype`` in place.

    The ``Parameter`` objects are kept (only their data changes), so an optimizer
    built before still refers to them. A gradient of the old dtype is dropped: it
    could not be accumulated into.
    """
    target = spectral_weight_torch_dtype(dtype)
    with warnings.catch_warnings():
        # torch warns once that complex32 is "experimental"; the ops we use are covered by tests
        warnings.filterwarnings("ignore", message="ComplexHalf support is experimental")
        for param in spectral_weight_parameters(layer):
            if param.dtype != target:
                with torch.no_grad():
                    param.data = param.data.to(target)
                param.grad = None


def layer_weight_dtype(layer):
    """Canonical name of the storage dtype of one layer's spectral weights."""
    dtypes = {p.dtype for p in spectral_weight_parameters(layer)}
    if len(dtypes) != 1:
        raise ValueError(f"Spectral weight parameters of one layer have mixed dtypes: {sorted(map(str, dtypes))}.")
    return normalize_spectral_weight_dtype(dtypes.pop())
