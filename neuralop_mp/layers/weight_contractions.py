"""The einsum of a spectral layer's Fourier-domain product, for each weight format.

Same index conventions as upstream's ``neuralop.layers.spectral_convolution``:
the input spectrum is ``(batch, in, k_1, ..., k_d)``, dense weights are
``(in, out, k_1, ..., k_d)`` (``(channels, k_1, ..., k_d)`` when separable), and
factorized weights contribute their CP weights/factors, Tucker core/factors or TT
cores. Here the equation is only *written*; :mod:`.contraction_planner` decides
the evaluation order and :mod:`.complex_half` evaluates it.

References
----------
.. [1] Kossaifi, J. et al. "Multi-Grid Tensorized Fourier Neural Operator for
   High-Resolution PDEs", TMLR 2024.
"""
import torch
from tltorch.factorized_tensors.core import FactorizedTensor

_SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
WEIGHT_KINDS = ("dense", "cp", "tucker", "tt")


def weight_kind(weight, implementation):
    """Which contraction a (possibly factorized) weight uses: dense, cp, tucker or tt.

    With ``implementation="reconstructed"`` every weight is reconstructed to a dense
    tensor first, as upstream does.
    """
    if implementation == "reconstructed" or torch.is_tensor(weight):
        return "dense"
    if not isinstance(weight, FactorizedTensor):
        raise TypeError(f"Unexpected spectral weight type {type(weight).__name__}.")
    kind = factorization_kind(weight.name)
    if kind is None:
        raise ValueError(f"Unexpected factorization {weight.name!r}; supported: Dense, CP, Tucker, TT.")
    return kind


def factorization_kind(name):
    """The kind ("dense", "cp", "tucker", "tt") of the factorization ``name`` (case-insensitive,
    with or without tensorly-torch's "Complex" prefix: "ComplexTucker", "cp"), or None."""
    name = str(name).lower()
    for kind in ("dense", "tucker", "tt", "cp"):
        if name.endswith(kind):
            return kind
    return None


def weight_operands(weight, kind):
    """The weight tensors of the einsum, in the order :func:`spectral_equation` names them."""
    if kind == "dense":
        return [weight if torch.is_tensor(weight) else dense_weight(weight)]
    return _factors(weight, kind)


def dense_weight(weight):
    """The full tensor of a factorized weight.

    complex64 factors are reconstructed by tltorch (upstream's own numbers); 16-bit
    (complex32) factors, which tensorly's matrix products do not support, are widened
    to complex64 and contracted here.
    """
    kind = weight_kind(weight, "factorized")
    factors = [] if kind == "dense" else _factors(weight, kind)
    if all(f.dtype == torch.complex64 for f in factors):
        return weight.to_tensor()
    modes = _SYMBOLS[: len(weight.shape)]
    subscripts = _factor_subscripts(kind, list(modes), iter(_SYMBOLS[len(modes):]))
    return torch.einsum(f"{','.join(subscripts)}->{modes}", *[f.to(torch.complex64) for f in factors])


def _factors(weight, kind):
    if kind == "cp":
        return [weight.weights, *weight.factors]
    if kind == "tucker":
        return [weight.core, *weight.factors]
    return list(weight.factors)  # tt


def spectral_equation(kind, x_ndim, separable=False):
    """Einsum of the spectrum ``x`` (``x_ndim`` dims) with the weight operands of ``kind``.

    Examples
    --------
    >>> spectral_equation("dense", 4)
    'abcd,becd->aecd'
    >>> spectral_equation("tucker", 4)
    'abcd,fghi,bf,eg,ch,di->aecd'
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"Invalid kind={kind!r}; allowed values: {', '.join(map(repr, WEIGHT_KINDS))}.")
    x = _SYMBOLS[:x_ndim]
    batch, channel, spatial = x[0], x[1], x[2:]
    out_channel = _SYMBOLS[x_ndim]
    spare = iter(_SYMBOLS[x_ndim + 1 :])
    # weight modes: (in, [out], k_1..k_d); the output keeps batch, out (or in), k_1..k_d
    modes = [channel] + ([] if separable else [out_channel]) + list(spatial)
    out = batch + (channel if separable else out_channel) + spatial
    return f"{x},{','.join(_factor_subscripts(kind, modes, spare))}->{out}"


def _factor_subscripts(kind, modes, spare):
    """Einsum subscripts of the operands of a ``kind`` weight whose modes are ``modes``
    (one symbol each); ``spare`` yields unused symbols for the ranks."""
    if kind == "dense":
        return ["".join(modes)]
    if kind == "cp":
        rank = next(spare)
        return [rank] + [m + rank for m in modes]
    if kind == "tucker":
        core = [next(spare) for _ in modes]
        return ["".join(core)] + [m + r for m, r in zip(modes, core)]
    # tt: cores (r_{k-1}, n_k, r_k), boundary ranks are 1
    ranks = [next(spare) for _ in range(len(modes) + 1)]
    return [ranks[k] + m + ranks[k + 1] for k, m in enumerate(modes)]


def rebuild_equation(kind, n_modes):
    """Einsum of the weight operands of ``kind`` to the dense (non-separable) weight,
    whose ``n_modes`` dims are ``(in, out, k_1, ..., k_d)``.

    Examples
    --------
    >>> rebuild_equation("tucker", 4)
    'efgh,ae,bf,cg,dh->abcd'
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"Invalid kind={kind!r}; allowed values: {', '.join(map(repr, WEIGHT_KINDS))}.")
    modes = _SYMBOLS[:n_modes]
    return f"{','.join(_factor_subscripts(kind, list(modes), iter(_SYMBOLS[n_modes:])))}->{modes}"
