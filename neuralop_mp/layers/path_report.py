"""Which spectral product path each mixed-precision layer of a model took (for summaries).

The path itself is chosen per layer call in :mod:`neuralop_mp.layers.product_paths`;
this module only reads back what the layers recorded.
"""
from .precision_switch import mixed_precision_layers


def model_product_paths(model):
    """One dict per spectral layer of ``model``: the path of its last forward.

    Keys: ``layer`` (module name), ``input_shape``, ``mode``, ``half_dtype``,
    ``fft`` ("float32" or "float16 (cuFFT)"), ``last_axis`` (how the inverse transform's
    last axis ran, as the forward decided it: "FFT" or "DFT-block matmul" and why, the text of
    a :class:`~neuralop_mp.layers.truncated_fft.LastAxisChoice`), ``last_axis_by_matmul``
    (bool: it ran as the DFT-block matmul), ``kernel``, ``compute_dtype``, ``reason``.
    Plain values (``input_shape`` a tuple of ints): the rows serialise to JSON.
    :func:`summarize_product_paths` names the last axis only where it is a matmul. Layers
    that have not run yet are listed with ``kernel=None``.
    """
    layers = {id(layer) for layer in mixed_precision_layers(model)}
    rows = []
    for name, module in model.named_modules():
        if id(module) in layers:
            record = getattr(module, "last_product_path", None) or {"kernel": None}
            rows.append({"layer": name or type(module).__name__, **record})
    return rows


def summarize_product_paths(model):
    """The distinct paths of :func:`model_product_paths` as short lines, for a training summary."""
    lines = []
    for row in model_product_paths(model):
        if row["kernel"] is None:
            continue
        text = (f"{row['mode']}: {row['kernel']} in {row['compute_dtype']}, FFT in {row['fft']}"
                + (f", last axis of the inverse: {row['last_axis']}" if row.get("last_axis_by_matmul") else "")
                + f" ({row['reason']})")
        if text not in lines:
            lines.append(text)
    return lines
