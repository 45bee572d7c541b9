"""Measure, on a model and a few input batches, the three numbers behind precision choices.

For every :class:`~neuralop_mp.MixedPrecisionSpectralConv` of the model and every band
of Fourier modes:

(a) precision error: relative difference of the layer's output computed in "mixed" and
    "half", float16 and bfloat16, with and without tanh, against the same layer in full
    precision on the same input (with the same tanh);
(b) discretization error: the layer's output when the model sees the input at
    resolution N (restricted from a 2N grid by taking every other point) against its
    output at 2N restricted to the N grid;
(c) overflow margin: float16's largest value divided by the largest magnitude the
    layer's forward FFT sees (input and spectrum). bfloat16 has float32's range.

The same comparisons are made at the model's output, including recipes that run the
rest of the network under ``torch.autocast`` (plain autocast: autocast scope "model",
:data:`AUTOCAST_SCOPE_MEASURED`, whatever the model's own scope, which the result records).

Layer inputs are recorded from one full-precision forward with the stabilizer
switched off; a "+tanh" variant applies tanh to that recorded input, and its reference
is the full-precision layer on the same tanh-ed input. On CPU "half" runs its FFTs in
float32, exactly as "mixed" (only CUDA computes float16 FFTs): the result says so.

References
----------
.. [1] Tu, R., White, C., Kossaifi, J., Bonev, B., Pekhimenko, G., Azizzadenesheli, K.,
   Anandkumar, A. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
"""
import contextlib

import torch

from ..layers import product_paths
from ..layers.autocast_scope import autocast_scope, get_autocast_scope, scope_owners
from ..layers.layer_precision import get_precision, mixed_precision_layers, precision
from .bands import band_count, band_edges, band_errors, relative_error

FLOAT16_MAX = float(torch.finfo(torch.float16).max)
HALF_MODES = ("mixed", "half")
HALF_DTYPES = ("float16", "bfloat16")
# the autocast scope of the model-level "+autocast" variants: plain autocast over the whole model
AUTOCAST_SCOPE_MEASURED = "model"


def variant_name(mode, half_dtype, tanh, autocast=False):
    """Key of a precision variant, e.g. ``"mixed-bfloat16+tanh+autocast"``."""
    return f"{mode}-{half_dtype}" + ("+tanh" if tanh else "") + ("+autocast" if autocast else "")


def quiet_float16_cpu(half_dtype):
    """Around a measurement of ``half_dtype``: for float16, no warning that float16 on this CPU
    is emulated (:func:`~neuralop_mp.layers.product_paths.float16_cpu_warning_held`). The
    diagnosis measures float16 whether or not the user chose it, so the warning would speak of
    a choice nobody made; it stays due for the user's own float16 layers afterwards."""
    if half_dtype != "float16":
        return contextlib.nullcontext()
    return product_paths.float16_cpu_warning_held()


def restrict(x, spatial_dims):
    """Every other point of the last ``spatial_dims`` axes: a 2N grid restricted to N."""
    index = (Ellipsis,) + (slice(None, None, 2),) * spatial_dims
    return x[index]


@contextlib.contextmanager
def _recording(model):
    """Record ``(input, output_shape)`` of every plugin spectral layer in forward order."""
    layers = mixed_precision_layers(model)
    records = {id(layer): [] for layer in layers}

    def hook(layer, args, kwargs):
        x = args[0]
        output_shape = kwargs.get("output_shape", args[1] if len(args) > 1 else None)
        records[id(layer)].append((x.detach().to(torch.float32), output_shape))

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _layer_names(model):
    names = {id(m): name for name, m in model.named_modules()}
    return [names[id(layer)] or type(layer).__name__ for layer in mixed_precision_layers(model)]


@torch.no_grad()
def _full_forward(model, x):
    """Model output and each layer's recorded (input, output_shape) calls, in full
    precision without stabilizer."""
    with precision(model, "full", stabilizer=None):
        with _recording(model) as records:
            y = model(x)
    return y.to(torch.float32), [records[id(layer)] for layer in mixed_precision_layers(model)]


@torch.no_grad()
def _layer_output(layer, calls, mode, half_dtype, tanh):
    """The layer's outputs on its recorded calls, in one precision; settings restored."""
    saved = (layer.fno_block_precision, layer.half_dtype, layer.stabilizer)
    layer.fno_block_precision, layer.stabilizer = mode, None
    if half_dtype is not None:
        layer.half_dtype = half_dtype
    try:
        with quiet_float16_cpu(half_dtype):
            outs = [layer(torch.tanh(x) if tanh else x, output_shape=shape) for x, shape in calls]
    finally:
        layer.fno_block_precision, layer.half_dtype, layer.stabilizer = saved
    return torch.cat([o.to(torch.float32) for o in outs])


def zero_output_note(name):
    """The note of a layer ``name`` whose full-precision output is exactly zero (``zero_output``)."""
    return (f"{name} outputs exactly zero in full precision on these inputs (zero weights and bias?): no rounding "
            "error to bound, so its errors are 0 where the other output is exactly zero too and infinite where it "
            "is not (not 0/0)")


def _overflow(calls, order):
    dims = tuple(range(-order, 0))
    max_in = max(float(x.abs().max()) for x, _ in calls)
    max_spec = max(float(torch.fft.rfftn(x.to(torch.float64), dim=dims, norm="forward").abs().max())
                   for x, _ in calls)
    largest = max(max_in, max_spec)
    return {"max_abs_input": max_in, "max_abs_spectrum": max_spec,
            "float16_margin": FLOAT16_MAX / largest if largest > 0 else float("inf")}


def _check_inputs(model, x_fine, n_bands):
    layers = mixed_precision_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no MixedPrecisionSpectralConv layer to diagnose; "
                         "build it with neuralop_mp.get_model(config) or a MixedPrecision* model class.")
    if not torch.is_tensor(x_fine) or not x_fine.is_floating_point():
        raise TypeError(f"x_fine must be a floating-point tensor (batch, channels, *spatial); got {type(x_fine).__name__}"
                        + (f" of dtype {x_fine.dtype}" if torch.is_tensor(x_fine) else "") + ".")
    order = layers[0].order
    if x_fine.ndim != order + 2:
        raise ValueError(_dimension_mismatch(model, order, tuple(x_fine.shape), alone=model is layers[0]))
    _check_channels(model, x_fine.shape[1])
    small = [s for s in x_fine.shape[2:] if s < 4 or s % 2]
    if small:
        raise ValueError(f"x_fine's spatial sizes {tuple(x_fine.shape[2:])} must be even and >= 4 "
                         "(the fine grid 2N is restricted to N by taking every other point).")
    return layers, order, _bands_asked(n_bands, [s // 2 for s in x_fine.shape[2:]])


def _dimension_mismatch(model, order, shape, alone=False):
    """Why inputs of ``shape`` do not fit ``model``, whose spectral layers transform ``order`` axes:
    said as the model's and the data's dimensions, with the config key that sets the model's
    (``model.n_modes``, UNO's ``model.uno_n_modes``; a spectral layer measured ``alone``: its
    ``n_modes``), not as the shape of an argument the user of ``neuralop-mp diagnose`` never named."""
    name = type(model).__name__
    if len(shape) < 3:
        return (f"The inputs have shape {shape}, not (batch, channels) + spatial axes; allowed: (batch, channels) + "
                f"{order} spatial axes, the {order}-D data {name} takes.")
    dims = len(shape) - 2
    key = "n_modes" if alone else "each entry of model.uno_n_modes" if hasattr(model, "uno_n_modes") else "model.n_modes"

    def entries(n):
        return f"{n} {'entry' if n == 1 else 'entries'}"

    return (f"{name} is {order}-D ({key} has {entries(order)}) and the data are {dims}-D (inputs of shape {shape}: "
            f"batch, channels and {dims} spatial {'axis' if dims == 1 else 'axes'}); allowed: a model whose "
            f"{key.removeprefix('each entry of ')} {'entries have' if key.startswith('each') else 'has'} "
            f"{entries(dims)} for these data.")


def _bands_asked(n_bands, coarse):
    """The bands to split the ``coarse`` grid (where the errors are measured) into:
    :func:`~neuralop_mp.diagnose.bands.band_count`'s reading of ``n_bands``, a refusal of more than
    the grid holds."""
    return band_count(coarse, n_bands)


def _check_channels(model, channels):
    """The model must take the inputs' ``channels``. A model trained with multi-grid patching takes
    ``channels * (patching.levels + 1)`` (each patch with its coarser levels stacked as channels): the
    measurement runs the model on whole grids, so such a model is refused by name, in one line, not
    with the model's traceback at its first layer."""
    expected = getattr(model, "in_channels", None)
    if not isinstance(expected, int) or expected == channels:
        return
    name = type(model).__name__
    if expected > channels and expected % channels == 0:
        # the channels alone cannot tell patching from other data: both are said
        raise ValueError(
            f"{name} takes {expected} input channels and the data give {channels}: a model trained with multi-grid "
            f"patching (patching.levels={expected // channels - 1}, which stacks each patch's coarser levels as "
            "channels) cannot be diagnosed, as diagnose runs the model on whole grids, not on patches; or one "
            f"trained on other data. Allowed: a model whose in_channels are the data's ({channels}), trained with "
            "patching.levels 0.")
    raise ValueError(f"{name} takes {expected} input channels and the data give {channels}; allowed: a model "
                     f"whose in_channels are the data's ({channels}).")


@torch.no_grad()
def even_grid(x):
    """``(x, note)``: ``x`` without the last point of its odd spatial axes, so that every other
    point is a grid of half its size (Burgers' 17 time levels, which no resolution changes),
    and a note saying what was dropped (None where nothing was)."""
    if not torch.is_tensor(x) or x.ndim < 3 or all(s % 2 == 0 for s in x.shape[2:]):
        return x, None
    even = x[(slice(None), slice(None)) + tuple(slice(0, s - s % 2) for s in x.shape[2:])]
    shape, kept = "x".join(map(str, x.shape[2:])), "x".join(map(str, even.shape[2:]))
    return even, (f"the fine grid {shape} has an odd size: its last point was dropped ({kept}), so that every "
                  "other point is the coarse grid")


@torch.no_grad()  # forward passes only: the model-level ones recorded a graph each (and warned in bands)
def measure(model, x_fine, *, n_bands=None, half_dtypes=HALF_DTYPES, modes=HALF_MODES):
    """Precision error, discretization error and overflow margin of each spectral layer.

    Parameters
    ----------
    model : nn.Module
        A model with :class:`~neuralop_mp.MixedPrecisionSpectralConv` layers. Its
        precision settings are restored afterwards.
    x_fine : torch.Tensor
        A few input samples ``(batch, channels, *spatial)`` on the fine grid 2N (already
        through the data processor). The model's working resolution N is ``x_fine``
        restricted to every other point; precision errors are measured at N.
    n_bands : int or None, default None
        Number of Fourier mode bands (by ``|k|_inf``, lowest first) of the grid N. None: the
        default, :data:`~neuralop_mp.diagnose.bands.DEFAULT_N_BANDS` (4), capped at what the
        grid holds. A number is used as given and must be at most ``N // 2 + 1`` (one
        frequency a band); any larger number, 4 included (a 4x4 grid holds 3), is a
        ValueError naming the cap.
    half_dtypes, modes : sequences of str
        The 16-bit types and the modes ("mixed", "half") to measure.

    Returns
    -------
    dict
        JSON-ready: ``resolution``, ``fine_resolution``, ``device``, ``notes``,
        ``bands``, ``stabilizer`` and ``autocast_scope`` (the model's own, as set: "auto"
        unresolved; None where the models inside a container disagree), ``layers`` (per
        layer: ``name``, ``overflow``, ``discretization_error``, ``discretization_bands``,
        ``precision`` ``{variant: {"error", "bands"}}``, ``zero_output``: whether its full-precision
        output is exactly zero, with and without tanh, which makes each error 0 where the other
        output is exactly zero too and ``inf`` where not, and adds a note) and ``model`` (the same at the
        output, with autocast variants measured with the scope its ``autocast_scope`` names,
        :data:`AUTOCAST_SCOPE_MEASURED`).
    """
    x_fine, dropped = even_grid(x_fine)
    layers, order, n_bands = _check_inputs(model, x_fine, n_bands)
    _, _, model_stabilizer = get_precision(model)
    x_coarse = restrict(x_fine, order).contiguous()
    was_training = model.training
    model.eval()
    try:
        y_coarse, calls_coarse = _full_forward(model, x_coarse)
        y_fine, calls_fine = _full_forward(model, x_fine)
        edges = band_edges(x_coarse.shape[2:], n_bands)
        result = {
            "device": x_fine.device.type,
            "resolution": list(x_coarse.shape[2:]),
            "fine_resolution": list(x_fine.shape[2:]),
            "n_samples": int(x_fine.shape[0]),
            "bands": [list(e) for e in edges],
            "stabilizer": model_stabilizer,
            "autocast_scope": _own_autocast_scope(model),
            "notes": [],
            "layers": [],
        }
        if dropped:
            result["notes"].append(dropped)
        if x_fine.device.type != "cuda" and "half" in modes:
            result["notes"].append('on CPU "half" runs its FFTs in float32, i.e. exactly as "mixed"')
        for name, layer, coarse, fine in zip(_layer_names(model), layers, calls_coarse, calls_fine):
            entry = {"name": name, "overflow": _overflow(coarse, order), "precision": {}}
            full_out = {t: _layer_output(layer, coarse, "full", None, t) for t in (False, True)}
            entry["zero_output"] = not any(bool(out.any()) for out in full_out.values())
            if entry["zero_output"]:
                result["notes"].append(zero_output_note(name))
            for mode in modes:
                for dtype in half_dtypes:
                    for tanh in (False, True):
                        out = _layer_output(layer, coarse, mode, dtype, tanh)
                        ref = full_out[tanh]
                        entry["precision"][variant_name(mode, dtype, tanh)] = {
                            "error": relative_error(out, ref), "bands": band_errors(out - ref, ref, edges)}
            # the layer's own output (no bias cancellation issue: both sides carry it), computed above
            out_c = full_out[False]
            out_f = restrict(_layer_output(layer, fine, "full", None, False), order)
            if out_c.shape == out_f.shape:
                entry["discretization_error"] = relative_error(out_c, out_f)
                entry["discretization_bands"] = band_errors(out_c - out_f, out_f, edges)
            else:  # e.g. a layer that changes resolution: the grids do not nest
                entry["discretization_error"], entry["discretization_bands"] = None, None
            result["layers"].append(entry)
        result["model"] = _model_level(model, x_coarse, y_coarse, y_fine, edges, order, modes, half_dtypes)
    finally:
        model.train(was_training)
    return result


def _own_autocast_scope(model):
    """The autocast scope ``model`` runs with as set ("auto" unresolved), None where the models
    inside a container have different ones (nothing to name: each keeps its own)."""
    scopes = {get_autocast_scope(owner) for owner in scope_owners(model)}
    return scopes.pop() if len(scopes) == 1 else None


def _model_level(model, x, y_full, y_fine, edges, order, modes, half_dtypes):
    device_type = x.device.type
    reference = {False: y_full}
    with precision(model, "full", stabilizer="tanh"):
        reference[True] = model(x).to(torch.float32)
    out = {"precision": {}, "autocast_scope": AUTOCAST_SCOPE_MEASURED}
    for mode in modes:
        for dtype in half_dtypes:
            for tanh in (False, True):
                for autocast in (False, True):
                    # "+autocast" is plain autocast over the whole model, whatever the model's own scope
                    with precision(model, mode, half_dtype=dtype, stabilizer="tanh" if tanh else None), \
                            autocast_scope(model, AUTOCAST_SCOPE_MEASURED), quiet_float16_cpu(dtype):
                        with torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=autocast):
                            y = model(x).to(torch.float32)
                    ref = reference[tanh]
                    out["precision"][variant_name(mode, dtype, tanh, autocast)] = {
                        "error": relative_error(y, ref), "bands": band_errors(y - ref, ref, edges),
                        "finite": bool(torch.isfinite(y).all())}
    y_fine_r = restrict(y_fine, order)
    out["discretization_error"] = relative_error(y_full, y_fine_r)
    out["discretization_bands"] = band_errors(y_full - y_fine_r, y_fine_r, edges)
    return out
