"""Which kernel runs a spectral layer's Fourier-domain product, and why.

The product is evaluated in one of three ways:

- ``"mode-batched matmul"`` (:mod:`.mode_matmul`), for dense weights: one real
  matmul batched over Fourier modes. ``torch.einsum`` on complex tensors runs, on
  CPU, one small complex matmul per mode.
- ``"pairwise plan"`` (:mod:`.contraction_planner` + :mod:`.complex_half`), for
  factorized (CP/Tucker/TT) and separable weights: the einsum over the input and
  the weight's factors, pairwise, in the order with the smallest intermediates.
- ``"rebuilt dense weight + mode-batched matmul"`` (:mod:`.rebuilt_weight`), for
  factorized, non-separable weights: on a CPU where the pairwise plan costs at least as
  many multiply-adds as multiplying the weight out (decided per input shape by
  :func:`~.rebuilt_weight.rebuild_pays` and cached per (path, shapes)); on a GPU always,
  where kernel launches rather than multiply-adds bound the product.

Its multiplications run in the 16-bit type on CUDA, and on CPU in float32 on
operands rounded to 16 bits: the same numbers (a product of two 16-bit values is
exact in float32). CPUs without 16-bit matrix units would emulate the 16-bit matmul
(several times slower); on CPUs with them (AVX512-BF16, AMX) these thin per-mode
matmuls gain little, while the 16-bit real 2x2 block form of the pairwise steps
costs layout copies that dominated small TFNO steps (1.56x upstream's time at 64^2
before this choice, docs/benchmarks.md of 2026-12-02). On CPU the pairwise steps
therefore use one complex64 matmul each (:mod:`.pairwise_matmul`). The kernel and compute dtype depend on
the weight format, the precision, the half type and the device, so they are chosen
once per (weight kind, separable, mode, half dtype, device type) and cached; for
factorized weights the input shape then decides between the pairwise plan and the
rebuilt weight (a rule on multiply-add counts, cached per shape); every
layer records the path of its last forward, which :func:`model_product_paths`
reports.

The device these choices are made for can be forced (:func:`force_device_choices`), for tests and
benchmarks: a GPU's choices counted on a CPU.
"""
import contextlib
import dataclasses
import functools
import warnings
from dataclasses import dataclass

import torch

from .complex_half import native_half_matmul
from ..vocabulary import dtype_name
from .rebuilt_weight import rebuild_pays

MODE_BATCHED = "mode-batched matmul"
PAIRWISE = "pairwise plan"
REBUILT = "rebuilt dense weight + mode-batched matmul"
# Pairwise plans multiplied in float32 on CPU (full precision, and 16-bit-rounded operands) accept a largest intermediate up to 10%
# above the smallest for fewer multiply-adds: there the product's time, not its
# few-MB intermediates, is what a step pays for (TFNO 64^2 batch 1: 12% fewer
# multiply-adds for a 4.6% larger peak; at batch >= 2 the plan is unchanged).
FLOAT32_PAIRWISE_PEAK_SLACK = 1.1
_SLACK_WHY = f" (or, within {FLOAT32_PAIRWISE_PEAK_SLACK - 1:.0%} of them, the fewest FLOPs)"

_warned = set()
_forced = {"device_type": None}  # set by force_device_choices


@contextlib.contextmanager
def force_device_choices(device_type):
    """Within the ``with`` block, the plugin's choices made from a tensor's device answer as on
    ``device_type``, whatever device the tensors are on: the spectral product's path
    (:func:`choose_product_path`: kernel, compute dtype, TFNO's rebuilt weight), how the
    truncated inverse's last axis runs (:mod:`.truncated_fft`: the DFT-block matmul is CPU-only)
    and the pointwise work's (:mod:`neuralop_mp.models.pointwise_tiles`: tiles, 1x1 convolutions
    as matrix products, recompute of the lifting and projection). For tests and benchmarks:
    "cuda" on a CPU gives what a GPU step does; so do the dense product's mode chunks
    (:mod:`.mode_matmul`: a GPU's chunk budget). Choices that need the hardware itself keep the
    tensor's device: cuFFT's float16 transforms, the CPU's 16-bit matrix products of the
    pointwise work, ``half_dtype="auto"``, and the "auto" autocast scope (autocast runs on the
    tensor's device; set a scope to count another's). Each choice reads the setting when it is
    made, backward's in backward: run the backward inside the block too. One setting for the
    process (not per thread). Blocks nest; the previous setting is restored on exit, an
    exception's included.

    Parameters
    ----------
    device_type : str or torch.device
        A device type ("cpu", "cuda", ...) or a device (its type is taken).
    """
    previous = _forced["device_type"]
    _forced["device_type"] = torch.device(device_type).type
    try:
        yield
    finally:
        _forced["device_type"] = previous


def choice_device_type(device):
    """The device type that choices for a tensor on ``device`` are made for: the one
    :func:`force_device_choices` forces, else ``device``'s."""
    return _forced["device_type"] or torch.device(device).type


@dataclass(frozen=True)
class ProductPath:
    """How one spectral product runs.

    Attributes
    ----------
    kernel : {"mode-batched matmul", "pairwise plan", "rebuilt dense weight + mode-batched matmul"}
    compute_dtype : torch.dtype
        Dtype of the multiplications (float32, or the 16-bit type on native hardware).
    reason : str
        Why this path was chosen, in words, for reports.
    complex_product : {"complex", None}
        For pairwise plans multiplied in float32: "complex" (complex64 einsums on
        16-bit-rounded values); None keeps the layer's ``complex_product``.
    peak_slack : float
        The contraction planner's ``peak_slack`` for a pairwise plan on this path.
    precision_reason : str
        The part of ``reason`` about the precision and the device (not the kernel).
    """

    kernel: str
    compute_dtype: torch.dtype
    reason: str
    complex_product: str = None
    peak_slack: float = 1.0
    precision_reason: str = ""


@functools.lru_cache(maxsize=None)
def _choose(kind, separable, mode, half, device_type):
    if separable:
        kernel, why = PAIRWISE, "separable weight: an elementwise product"
    elif kind == "dense":
        kernel, why = MODE_BATCHED, "dense weight: one matmul batched over modes"
    else:
        kernel, why = PAIRWISE, f"{kind} weight: pairwise, in the order with the smallest intermediates"
    if mode == "full" or half is None:
        if kernel == PAIRWISE and device_type == "cpu":
            # complex64 products on CPU: time, not the few-MB intermediates, decides (as below)
            return ProductPath(kernel, torch.float32, f"{why}{_SLACK_WHY}; full precision",
                               precision_reason="full precision", peak_slack=FLOAT32_PAIRWISE_PEAK_SLACK)
        return ProductPath(kernel, torch.float32, f"{why}; full precision", precision_reason="full precision")
    name = dtype_name(half)
    if device_type != "cpu" and native_half_matmul(half, device_type):
        return ProductPath(kernel, half, f"{why}; {name} matrix units", precision_reason=f"{name} matrix units")
    if device_type == "cpu" and native_half_matmul(half, device_type):
        detail = (f"float32 kernels on {name}-rounded operands: on CPU these thin per-mode matmuls gain "
                  f"little from {name} units, and the 16-bit forms need extra layout copies")
    else:
        detail = (f"no {name} matrix units on this {device_type.upper()}: {name}-rounded operands multiplied "
                  "in float32 (faster than emulated 16-bit)")
    if kernel == PAIRWISE:
        why += _SLACK_WHY
    detail += "; the same numbers as a 16-bit matmul with float32 accumulation"
    return ProductPath(kernel, torch.float32, f"{why}; {detail}", complex_product="complex" if kernel == PAIRWISE else None,
                       peak_slack=FLOAT32_PAIRWISE_PEAK_SLACK if kernel == PAIRWISE else 1.0, precision_reason=detail)


def choose_product_path(kind, separable, mode, half, device, shapes=None):
    """The :class:`ProductPath` of a product (cached; warns once about float16 on CPU).

    Parameters
    ----------
    kind : {"dense", "cp", "tucker", "tt"}
    separable : bool
    mode : {"full", "mixed", "half"}
    half : torch.dtype or None
        16-bit type of the product (ignored in "full").
    device : torch.device or str
        The product's device; :func:`force_device_choices` overrides its type.
    shapes : sequence of tuple of int, optional
        Shapes of the kept spectrum and of the weight operands. For a factorized,
        non-separable weight they decide between its pairwise plan and rebuilding
        the dense weight for the mode-batched matmul
        (:func:`~.rebuilt_weight.rebuild_pays`, a rule on multiply-add counts:
        the same choice on every run); without them the pairwise plan is kept.
    """
    device_type = choice_device_type(device)
    if mode != "full" and half == torch.float16 and device_type == "cpu" and not native_half_matmul(half, "cpu"):
        _warn_float16_cpu_once()
    half = None if mode == "full" else half
    path = _choose(kind, bool(separable), mode, half, device_type)
    if path.kernel != PAIRWISE or separable:
        return path
    if device_type == "cuda":
        return _rebuilt_on_gpu(path, kind)
    # the rule's timings are CPU timings: on other devices the factorized plan is kept
    if shapes is None or device_type != "cpu":
        return path
    shapes = tuple(tuple(int(d) for d in s) for s in shapes)
    return _choose_for_shapes(path, kind, shapes, plan_itemsize(mode, half, path))


def plan_itemsize(mode, half, path):
    """Bytes per complex element of a pairwise plan's intermediates as forward runs them.

    8 (complex64) in "full" and where 16-bit-rounded operands are multiplied as complex64
    (``path.complex_product == "complex"``: on CPU, and on devices without 16-bit matrix
    units); 4 only for the real-form product of (real, imag) pairs in the 16-bit type. The
    order chosen does not depend on it (the planner compares element counts); the byte
    counts of the plan do."""
    if mode == "full" or path.complex_product == "complex":
        return 8
    return 2 * half.itemsize


@functools.lru_cache(maxsize=None)
def _rebuilt_on_gpu(path, kind):
    # A pairwise plan is a dozen small kernels per step in forward and more in backward;
    # on a GPU their launches, not the multiply-adds, bound a step at the sizes users train.
    # Measured on an H200 (2026-12-04, docs/benchmarks.md, GPU campaign notes): TFNO 64
    # channels, 32x32 modes, batch 4, mixed, whole training step: rebuilt 0.72x (bf16) and
    # 0.60x (fp16) the pairwise plan's time at 256^2, the same time at 1024^2, for +1%
    # peak memory.
    why = (f"{kind} weight: on a GPU the rebuilt dense weight's one batched matmul takes fewer "
           "kernel launches than the pairwise plan, which bound the step")
    return dataclasses.replace(path, kernel=REBUILT, reason=f"{why}; {path.precision_reason}",
                               complex_product=None, peak_slack=1.0)


@functools.lru_cache(maxsize=512)
def _choose_for_shapes(path, kind, shapes, itemsize):
    # per (path, shapes, bytes per element): the device and dtypes are in ``path``
    rebuild, why = rebuild_pays(kind, shapes, itemsize, path.peak_slack)
    if not rebuild:
        return dataclasses.replace(path, reason=f"{path.reason}; {why}")
    return dataclasses.replace(path, kernel=REBUILT, reason=f"{kind} weight: {why}; {path.precision_reason}",
                               complex_product=None, peak_slack=1.0)


@contextlib.contextmanager
def float16_cpu_warning_held():
    """Inside, the warning that float16 on this CPU is emulated is not given; afterwards it is
    due as before (for code measuring float16 on the user's behalf, a choice nobody made)."""
    due = "float16-cpu" not in _warned
    _warned.add("float16-cpu")
    try:
        yield
    finally:
        if due:
            _warned.discard("float16-cpu")


def _warn_float16_cpu_once():
    if "float16-cpu" in _warned:
        return
    _warned.add("float16-cpu")
    warnings.warn(
        "half_dtype='float16' on a CPU without float16 matrix units: the spectral product is "
        "multiplied in float32 on float16-rounded values (the same numbers, no speed-up), and float16 "
        "autocast elsewhere in the model is emulated and slow. Use half_dtype='bfloat16' (what 'auto' "
        "picks on CPU): it has float32's exponent range, so it needs no tanh stabilizer against "
        "overflow, and CPUs with AVX512-BF16 or AMX multiply it natively.",
        UserWarning,
        stacklevel=4,
    )


def autocast_pays(dtype, device):
    """Whether ``torch.autocast`` with ``dtype`` speeds up the rest of a model on ``device``.

    On a CPU without native 16-bit matrix units autocast's 16-bit convolutions and
    linear layers are emulated and several times slower than float32.
    """
    return native_half_matmul(dtype, device)
