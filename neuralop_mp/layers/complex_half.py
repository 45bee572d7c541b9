"""Complex contractions in a 16-bit real type, on (real, imag) pairs.

torch has no complex bfloat16 and only partial complex32 support, so a complex
tensor is carried in *real form*: a real tensor with a trailing axis of size 2
(``torch.view_as_real`` layout) in float16 or bfloat16. Each complex pairwise
contraction ``C = A . B`` is evaluated as real contractions:

- ``"block"`` (4 real products, the default): the smaller operand is expanded to the
  2x2 real matrix of complex multiplication, ``[[Br, Bi], [-Bi, Br]]``, so that one
  real einsum computes ``Cr = Ar Br - Ai Bi`` and ``Ci = Ar Bi + Ai Br`` with the
  subtraction inside the matmul's fp32 accumulator; the result is rounded to the
  16-bit type once.
- ``"complex"``: the 16-bit operands widened to complex64 (complex128 with a
  float64 ``compute_dtype``) and multiplied by one complex einsum: no 2x2 block to
  build, so the fastest form where the products run in float32 anyway (no 16-bit
  matrix units); needs a float32/float64 ``compute_dtype``.
- ``"gauss"`` (3 real products): ``k1 = (Ar + Ai) Br``, ``k2 = Ar (Bi - Br)``,
  ``k3 = Ai (Br + Bi)``; ``Cr = k1 - k3``, ``Ci = k1 + k2``. 25% fewer multiplies,
  but three kernel launches, extra elementwise passes, and cancellation in
  ``k1 - k3`` (errors relative to ``|A||B|``, not ``|C|``). Measured slower than
  "block" at FNO shapes on CPU (see docs/spectral_layer.md), so not the default.

Where the hardware multiplies 16-bit types natively (CUDA; CPUs with AVX512-BF16
or AMX) the einsum runs in the 16-bit type, which accumulates in fp32. Elsewhere
(e.g. AVX2-only CPUs, where oneDNN's bf16 matmul is emulated and 40-150x slower
than fp32) the 16-bit operands are up-cast inside the kernel and multiplied in
fp32: the product of two 16-bit numbers is exact in fp32, so the numbers are those
of a 16-bit matmul with fp32 accumulation, while storage (and what autograd saves
for backward) stays 16-bit. The backward pass is the same contraction with the
conjugate of the other operand, so autograd keeps only the compact 16-bit
operands.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034.
.. [2] Higham, N. J. "Stability of a method for multiplying complex matrices with
   three real matrix multiplications", SIAM J. Matrix Anal. Appl. 13 (1992).
"""
import functools

import torch

from .pairwise_matmul import consumer_layouts, pair_matmul

COMPLEX_PRODUCTS = ("block", "gauss", "complex")
DEFAULT_COMPLEX_PRODUCT = "block"

_SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def native_half_matmul(dtype, device):
    """Whether ``device`` multiplies ``dtype`` (float16/bfloat16) natively and fast."""
    return _native_half_matmul(dtype, torch.device(device).type)


@functools.lru_cache(maxsize=None)
def _native_half_matmul(dtype, device_type):
    # a hardware property: probed once per (dtype, device type), not on every forward
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    probe = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
    name = probe.get(dtype)
    try:
        return bool(name and getattr(torch.ops.mkldnn, name)())
    except (AttributeError, RuntimeError):
        return False


def compute_dtype_for(dtype, device):
    """The dtype real-form contractions of ``dtype`` operands are multiplied in on ``device``."""
    return dtype if native_half_matmul(dtype, device) else torch.float32


def to_real_form(z, dtype):
    """A complex tensor as a real ``(..., 2)`` tensor of ``dtype`` (one cast, no copy of imag loss)."""
    return torch.view_as_real(z).to(dtype)


def conj_real_form(a):
    """Complex conjugate of a real-form tensor."""
    return torch.stack((a[..., 0], -a[..., 1]), dim=-1)


def _spare_symbols(equation, k):
    spare = [c for c in _SYMBOLS if c not in equation]
    return spare[:k]


def _multiplication_matrix(b):
    """``[[Br, Bi], [-Bi, Br]]`` on two trailing axes (s, t): sum_s A_s M_st = (A B)_t."""
    return torch.stack((b, torch.stack((-b[..., 1], b[..., 0]), dim=-1)), dim=-2)


def _product(equation, a, b, method, compute_dtype):
    """Real-form ``einsum(equation, A, B)`` for complex A, B; returns real form in compute_dtype."""
    a, b = a.to(compute_dtype), b.to(compute_dtype)
    (sa, sb), so = equation.split("->")[0].split(","), equation.split("->")[1]
    if method == "complex":
        if compute_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"complex_product='complex' needs a float32/float64 compute_dtype, got {compute_dtype}.")
        product = torch.einsum(equation, torch.view_as_complex(a.contiguous()), torch.view_as_complex(b.contiguous()))
        return torch.view_as_real(product)
    if method == "block":
        s, t = _spare_symbols(equation, 2)
        # expand the smaller operand: the 2x2 block doubles its size
        if b.numel() <= a.numel():
            return torch.einsum(f"{sa}{s},{sb}{s}{t}->{so}{t}", a, _multiplication_matrix(b))
        return torch.einsum(f"{sa}{s}{t},{sb}{s}->{so}{t}", _multiplication_matrix(a), b)
    ar, ai = a.unbind(-1)
    br, bi = b.unbind(-1)
    k1 = torch.einsum(equation, ar + ai, br)
    k2 = torch.einsum(equation, ar, bi - br)
    k3 = torch.einsum(equation, ai, br + bi)
    return torch.stack((k1 - k3, k1 + k2), dim=-1)


def _grad_equation(target, other, out):
    """Einsum for d(out)/d(target) and the indices of ``target`` it cannot produce."""
    available = set(other) | set(out)
    kept = "".join(c for c in target if c in available)
    return f"{out},{other}->{kept}", kept


def _expand_lone(grad, kept, target, shape):
    """Re-insert indices summed over in the target alone (e.g. a size-1 TT boundary rank)."""
    if kept == target:
        return grad
    view = list(grad.shape)
    for pos, c in enumerate(target):
        if c not in kept:
            view.insert(pos, 1)
    return grad.reshape(view).expand(*shape).contiguous()


class _ComplexPairContraction(torch.autograd.Function):
    """Real-form complex einsum of two 16-bit operands that saves only those operands."""

    @staticmethod
    def forward(ctx, a, b, equation, method, compute_dtype, a_source, b_source):
        # an operand that is a cast of a parameter is re-cast in backward from the
        # parameter (alive anyway) instead of keeping its 16-bit copy alive
        ctx.recast = (a_source is not None, b_source is not None)
        ctx.save_for_backward(a if a_source is None else a_source, b if b_source is None else b_source)
        ctx.config = (equation, method, compute_dtype, a.dtype)
        return _product(equation, a, b, method, compute_dtype).to(a.dtype)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        equation, method, compute_dtype, dtype = ctx.config
        a = to_real_form(a, dtype) if ctx.recast[0] else a
        b = to_real_form(b, dtype) if ctx.recast[1] else b
        (sa, sb), so = equation.split("->")[0].split(","), equation.split("->")[1]
        grad_a = grad_b = None
        # C = A B is complex-bilinear; for real L, dL/dA = dL/dC * conj(B) (torch's convention)
        if ctx.needs_input_grad[0]:
            eq, kept = _grad_equation(sa, sb, so)
            g = _product(eq, grad, conj_real_form(b), method, compute_dtype)
            grad_a = _expand_lone(g, kept + "#", sa + "#", a.shape).to(a.dtype)
        if ctx.needs_input_grad[1]:
            eq, kept = _grad_equation(sb, sa, so)
            g = _product(eq, grad, conj_real_form(a), method, compute_dtype)
            grad_b = _expand_lone(g, kept + "#", sb + "#", b.shape).to(b.dtype)
        return grad_a, grad_b, None, None, None, None, None


def complex_einsum_pair(equation, a, b, *, method=DEFAULT_COMPLEX_PRODUCT, compute_dtype=None,
                        a_source=None, b_source=None):
    """Two-operand complex einsum on real-form 16-bit tensors.

    Parameters
    ----------
    equation : str
        Einsum over the complex shapes (without the trailing real/imag axis).
    a, b : torch.Tensor
        Real-form operands (``(..., 2)``) of the same 16-bit dtype.
    method : {"block", "gauss", "complex"}
        4-product block form, Gauss's 3-product form, or one complex einsum of the
        widened operands (float32/float64 ``compute_dtype`` only).
    compute_dtype : torch.dtype, optional
        Dtype the products run in; by default the operands' dtype where the
        hardware multiplies it natively, else float32.
    a_source, b_source : torch.Tensor, optional
        Complex tensors ``a``/``b`` were cast from (``to_real_form(source, dtype)``),
        typically parameter views: saved for backward instead of the 16-bit copy.

    Returns
    -------
    torch.Tensor
        Real-form result in the operands' dtype.
    """
    if method not in COMPLEX_PRODUCTS:
        from ..vocabulary import check_choice

        check_choice("complex_product", method, COMPLEX_PRODUCTS)
    if compute_dtype is None:
        compute_dtype = compute_dtype_for(a.dtype, a.device)
    # the sources go in as they are, not detached: a backward that builds a graph (second
    # derivatives) re-casts them differentiably, so its gradients depend on the parameters
    return _ComplexPairContraction.apply(a, b, equation, method, compute_dtype, a_source, b_source)


def _layouts(plan):
    return consumer_layouts(plan.steps, plan.path, plan.equation.split("->")[1])


def run_plan(plan, operands, *, real_form, method=DEFAULT_COMPLEX_PRODUCT, compute_dtype=None, sources=None):
    """Evaluate a :class:`~.contraction_planner.ContractionPlan` pairwise.

    ``real_form=False``: operands are complex tensors, each step is one matmul laid out
    for the step that reads its result (:func:`~.pairwise_matmul.pair_matmul`).
    ``real_form=True``: operands are real-form 16-bit tensors, each step is
    :func:`complex_einsum_pair`; ``sources`` (optional, one per operand, or None)
    are the complex tensors the operands were cast from, re-cast in backward.
    """
    current = list(zip(operands, sources or [None] * len(operands)))
    # the real-form product has its own kernel: only the complex steps use the layouts
    wanted = [None] * len(plan.steps) if real_form else _layouts(plan)
    for (i, j), step, want in zip(plan.path, plan.steps, wanted):
        (a, sa), (b, sb) = current[i], current[j]
        for k in sorted((i, j), reverse=True):
            current.pop(k)
        if real_form:
            out = complex_einsum_pair(step, a, b, method=method, compute_dtype=compute_dtype, a_source=sa, b_source=sb)
            current.append((out, None))
        else:
            current.append((pair_matmul(step, a, b, want), None))
    return current[0][0]


def _rounded(z, half):
    """Complex64 ``z`` with its real and imaginary parts rounded to ``half``."""
    return torch.view_as_complex(torch.view_as_real(z).to(half).float())


def _run_rounded(plan, operands, half):
    """Pairwise complex64 products of the plan on operands rounded to ``half``; result rounded too.

    Intermediates stay complex64 (float32 accumulation along the whole chain): one
    rounding per operand and one of the result, as for a single 16-bit matmul.
    """
    current = [_rounded(t, half) for t in operands]
    for (i, j), step, want in zip(plan.path, plan.steps, _layouts(plan)):
        a, b = current[i], current[j]
        for k in sorted((i, j), reverse=True):
            current.pop(k)
        current.append(pair_matmul(step, a, b, want))
    return _rounded(current[0], half)


def run_plan_rounded(plan, operands, half):
    """Evaluate ``plan`` in complex64 on operands rounded to ``half``; the result rounded too.

    The float32-compute form of a 16-bit pairwise plan (CPU): one rounding per
    operand and one of the result, float32 accumulation through the chain (fewer
    roundings than the real-form path, which rounds every intermediate), and
    gradients that flow back through the roundings in ``half``. Autograd keeps the
    complex64 operands of each step: batch x channels x modes sized, so a constant
    few MB per layer, against which the kernel count of the real-form path made
    small TFNO steps slower than upstream's.

    Returns
    -------
    torch.Tensor
        Complex64 result.
    """
    return _run_rounded(plan, [op.to(torch.complex64) for op in operands], half)
