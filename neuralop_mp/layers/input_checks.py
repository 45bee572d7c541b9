"""Argument and input checks of :class:`~neuralop_mp.layers.spectral_conv.MixedPrecisionSpectralConv`.

Each check turns a value that upstream's ``SpectralConv`` accepts and then uses
wrongly into a clear error before any work: a zero mode (a weight with an empty
axis), a factorization rank that builds far more parameters than the dense weight
(``rank=100`` with Tucker on a (4, 4, 5, 3) weight: 100 million instead of 240),
complex input to a real-data layer (the cast drops the imaginary part), a wrong
channel count or number of dimensions (deep shape errors inside the contraction).

Documented handling instead of errors (docs/reliability.md): float64 input is
computed in float32 and returned as float32, as every other real input; ``n_modes``
larger than the input's spectrum keeps the modes that exist; inf/NaN input gives
non-finite output (checking every forward would cost a device sync per layer; the
trainer skips such steps and the data loaders refuse non-finite data up front).
"""
import torch

_REAL_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COMPLEX_INPUT_DTYPES = (torch.complex32, torch.complex64, torch.complex128)


def _is_int(value):
    """An integer of any kind (Python, numpy, 0-d tensor index), not a bool."""
    return not isinstance(value, (bool, float)) and hasattr(value, "__index__")


def _as_tuple(n_modes):
    return tuple(n_modes) if isinstance(n_modes, (list, tuple)) else (n_modes,)


def check_layer_arguments(in_channels, out_channels, n_modes, rank, factorization, separable, complex_data=False):
    """Refuse constructor arguments that would build a wrong or oversized layer.

    Rules: channels and every ``n_modes`` entry are integers >= 1; with a
    factorization, a float ``rank`` is the fraction of the dense weight's parameters
    kept and must be in (0, 1], and an integer ``rank`` must not exceed the largest
    dimension of the weight (larger ranks add parameters and no expressiveness).

    Raises
    ------
    ValueError
        Naming the argument, its value and the allowed values.
    """
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"Invalid {name}={value!r}; allowed values: integers >= 1.")
    modes = _as_tuple(n_modes)
    if not modes or any(not _is_int(m) or m < 1 for m in modes):
        raise ValueError(f"Invalid n_modes={n_modes!r}; allowed values: one integer >= 1 per spatial dimension "
                         "(1 to 3 dimensions).")
    if factorization is None or str(factorization).lower() == "dense" or isinstance(rank, str):
        return  # a string rank ("same") is tensorly-torch's to interpret
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) and not _is_int(rank) or not rank > 0:
        raise ValueError(f"Invalid rank={rank!r}; allowed values: a fraction in (0, 1] of the dense weight's "
                         "parameters, or an integer >= 1.")
    # the weight is (in, out, *modes) with the last mode halved (+1) for real data; separable: (in, *modes)
    weight_modes = modes if complex_data else modes[:-1] + (modes[-1] // 2 + 1,)
    shape = (in_channels,) + (() if separable else (out_channels,)) + weight_modes
    dense = 1
    for d in shape:
        dense *= d
    if isinstance(rank, float) and rank > 1.0:
        raise ValueError(
            f"Invalid rank={rank!r} with factorization={factorization!r}: a float rank is the fraction of the "
            f"dense weight's {dense} parameters kept, so {rank!r} asks for more parameters than the dense "
            "weight and ranks larger than its dimensions. Allowed values: (0, 1], or an integer rank.")
    if _is_int(rank) and rank > max(shape):
        raise ValueError(
            f"Invalid rank={rank!r} with factorization={factorization!r}: larger than every dimension of the "
            f"weight {shape} (dense: {dense} parameters; a Tucker rank of {rank} alone builds a core of "
            f"{rank ** len(shape)}). Allowed values: integers <= {max(shape)}, or a fraction in (0, 1].")


def check_input(layer, x):
    """Refuse an input the layer would silently misuse or fail on deep inside.

    Raises
    ------
    TypeError
        Complex input to a real-data layer (``complex_data=False``: casting drops the
        imaginary part) or a non-floating dtype.
    ValueError
        Wrong number of dimensions or of channels.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{type(layer).__name__} expects a tensor, got {type(x).__name__}.")
    if x.is_complex() and not layer.complex_data:
        raise TypeError(
            f"{type(layer).__name__} was built with complex_data=False but got a {x.dtype} input: its imaginary "
            "part would be dropped. Build the layer with complex_data=True, or pass x.real explicitly.")
    allowed = _COMPLEX_INPUT_DTYPES + _REAL_INPUT_DTYPES if layer.complex_data else _REAL_INPUT_DTYPES
    if x.dtype not in allowed:
        raise TypeError(f"Invalid input dtype {x.dtype}; allowed: {[str(d) for d in allowed]}.")
    if x.ndim != 2 + layer.order:
        raise ValueError(
            f"Invalid input shape {tuple(x.shape)}: this {layer.order}-D layer expects "
            f"(batch, {layer.in_channels}, {', '.join(['d'] * layer.order)}).")
    if x.shape[1] != layer.in_channels:
        raise ValueError(f"Invalid input shape {tuple(x.shape)}: {x.shape[1]} channels, the layer has "
                         f"in_channels={layer.in_channels}.")
    if any(s < 1 for s in x.shape[2:]):
        raise ValueError(f"Invalid input shape {tuple(x.shape)}: every spatial size must be >= 1.")
