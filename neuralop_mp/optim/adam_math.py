"""Adam moment arithmetic shared by the dense and the compressed branches, and the
storage of moments in a narrower dtype than they are computed in."""
import math

import torch

from . import gradient_chunks

STATE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def compute_dtype(tensor):
    """The dtype optimizer math runs in for ``tensor``: at least fp32 / complex64."""
    if tensor.is_complex():
        return torch.promote_types(tensor.dtype, torch.complex64)
    return torch.promote_types(tensor.dtype, torch.float32)


def real_dtype(dtype):
    """The real dtype of ``dtype``'s numbers (complex64 -> float32); a real dtype is kept."""
    return {torch.complex32: torch.float16, torch.complex64: torch.float32,
            torch.complex128: torch.float64}.get(dtype, dtype)


def storage_dtype(group, dtype):
    """dtype of compressed moments and factors for math in ``dtype``: bf16 if asked, else
    the real dtype of the math (fp32, or fp64 for double-precision parameters)."""
    storage = STATE_DTYPES[group["state_dtype"]]
    return real_dtype(dtype) if storage == torch.float32 else storage


def as_real(x):
    """Real view of a complex tensor (element-wise math on (re, im) pairs), else ``x``."""
    return torch.view_as_real(x) if x.is_complex() else x


def as_complex_like(x, like):
    """Undo :func:`as_real` for a tensor shaped like ``as_real(like)``."""
    return torch.view_as_complex(x.contiguous()) if like.is_complex() else x


#: how Adam treats complex entries, places eps and orders weight decay (see adam_step)
ADAM_CONVENTIONS = ("torch", "neuralop")


def second_moment_shape(part, convention):
    """Shape of the second moment kept for a (possibly complex) compressed part.

    "torch" keeps one per real number (``view_as_real``: ``(..., 2)`` for complex
    parts); "neuralop" keeps ``|g|^2`` per complex entry, so half as many.
    """
    if convention == "neuralop" or not part.is_complex():
        return tuple(part.shape)
    return tuple(part.shape) + (2,)


def bias_corrections(ages, beta1, beta2, dtype, device=None):
    """``(1 - beta1**age, sqrt(1 - beta2**age))`` for each entry of ``ages`` (counts >= 1),
    two new tensors in the real ``dtype`` of the math, on ``device`` (default: that of
    ``ages``); ``ages`` is left unchanged. A 16-bit ``dtype`` is computed in float32 and
    rounded once.

    In float32, ``1 - beta**age`` is computed as ``-expm1(age * log(beta))``: the power's
    subtraction from 1 would cancel (``1 - 0.999**1`` is 1e-3, so a float32 power loses
    three digits), the exponential's does not. The product's roundings give a relative
    error of a few units in the last place (about 2e-7, whatever the age) with no
    float64 temporary the size of ``ages``. float64 has the digits to spare: there it is
    the power itself, bit for bit the correction of a count given as a number.
    """
    if dtype == torch.float64:
        # two float64 tensors, worked on in place: ``(-x) + 1`` is ``1 - x`` bit for bit
        exponent = ages.to(device=device, dtype=dtype, copy=True)
        bias1 = torch.pow(beta1, exponent).neg_().add_(1.0)
        return bias1, torch.pow(beta2, exponent, out=exponent).neg_().add_(1.0).sqrt_()
    # 16-bit math (moments of 16-bit gradients) is corrected in float32 too, then rounded once:
    # a 16-bit age or exponential would be off by far more than one rounding
    exponent = ages.to(device=device, dtype=torch.float32, copy=True)  # a copy: worked on in place
    bias1 = torch.mul(exponent, _log(beta1)).expm1_().neg_()
    root_bias2 = exponent.mul_(_log(beta2)).expm1_().neg_().sqrt_()
    return bias1.to(dtype), root_bias2.to(dtype)


def _log(beta):
    """``log(beta)``, -inf for beta 0 (whose powers of a positive age are all 0)."""
    return math.log(beta) if beta > 0 else -math.inf


def adam_step(exp_avg, exp_avg_sq, grad, step, beta1, beta2, eps, correct_bias, convention):
    """Update the moments in place and return the normalised Adam direction.

    ``exp_avg`` is a real tensor shaped like ``as_real(grad)``; ``exp_avg_sq`` is
    shaped by :func:`second_moment_shape`. ``step`` counts this update (1 on the
    first call): a number, or a tensor shaped like ``grad`` giving each entry its
    own count (entries whose moments started at different steps). The direction
    has ``grad``'s shape and dtype; the weight update is ``lr`` times it.

    Conventions (they agree on real tensors up to the placement of eps):

    - "torch", as ``torch.optim.AdamW``: complex entries are split into real and
      imaginary parts, each normalised by its own second moment;
      ``m_hat / (sqrt(v_hat) + eps)`` with eps added after bias correction.
    - "neuralop", as upstream neuraloperator's ``AdamW`` and ``TensorGRaD`` and the
      TensorGRaD authors' code: one second moment ``|g|^2`` per complex entry, so
      the phase of the complex update is that of ``m``;
      ``(sqrt(bc2) / bc1) m / (sqrt(v) + eps)``, i.e. eps is added before bias
      correction (effectively ``eps / sqrt(bc2)``).

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A method for stochastic optimization", ICLR 2015.
    .. [2] I. Loshchilov, F. Hutter, "Decoupled weight decay regularization", ICLR 2019.
    """
    grad_real = as_real(grad)
    exp_avg.lerp_(grad_real, 1.0 - beta1)
    if not correct_bias:
        bias1, root_bias2 = 1.0, 1.0
    elif isinstance(step, torch.Tensor):
        # per entry, shaped to broadcast over the (re, im) pairs of a complex entry
        bias1, root_bias2 = bias_corrections(step, beta1, beta2, grad_real.dtype, grad.device)
        if grad.is_complex():
            bias1, root_bias2 = bias1.unsqueeze(-1), root_bias2.unsqueeze(-1)
    else:
        bias1, root_bias2 = 1.0 - beta1**step, math.sqrt(1.0 - beta2**step)
    if convention == "torch":
        exp_avg_sq.mul_(beta2).addcmul_(grad_real, grad_real, value=1.0 - beta2)
        denom = (exp_avg_sq.sqrt() / root_bias2).add_(eps)
        return as_complex_like((exp_avg / bias1).div_(denom), grad)
    if grad.is_complex():
        squared = grad_real.square().sum(-1)
        exp_avg_sq.mul_(beta2).add_(squared, alpha=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps).unsqueeze(-1)
    else:
        exp_avg_sq.mul_(beta2).addcmul_(grad_real, grad_real, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps)
    return as_complex_like((exp_avg / denom).mul_(root_bias2 / bias1), grad)


def load_moment(stored, dtype=torch.float32):
    """Working copy of a stored moment in ``dtype`` (the stored tensor itself when
    it already has that dtype, so updates land in place)."""
    return stored if stored.dtype == dtype else stored.to(dtype)


# significand bits after the leading one, and the exponent of the smallest normal number
_HALF_FORMATS = {torch.float16: (10, -14), torch.bfloat16: (7, -126)}


def _finite_range(dtype):
    """``(largest, overflow)`` of the 16-bit ``dtype``: its largest finite number, and the
    smallest magnitude a plain (round-to-nearest-even) cast turns into inf, the largest plus
    half its spacing (float16: 65504 and 65520). Both are float32 numbers."""
    bits, _ = _HALF_FORMATS[dtype]
    largest = torch.finfo(dtype).max
    _, exponent = math.frexp(largest)  # largest = m 2**exponent, m in [0.5, 1): spacing 2**(exponent - 1 - bits)
    return largest, largest + 2.0 ** (exponent - 2 - bits)


_FINITE_RANGES = {dtype: _finite_range(dtype) for dtype in _HALF_FORMATS}


# elements rounded per chunk: the rounding's fp32 temporaries (noise, spacing, quotient)
# then hold a few MB whatever the tensor's size, instead of several copies of it (they
# coexist with the activations when the update runs during backward)
ROUNDING_CHUNK = 1 << 18


def rounding_chunk(device):
    """Elements rounded per chunk on ``device``: :data:`ROUNDING_CHUNK` on the CPU, as many
    more on an accelerator as its chunk budget is larger (each chunk is kernel launches)."""
    return ROUNDING_CHUNK * max(1, gradient_chunks.chunk_bytes(device) // gradient_chunks.CHUNK_BYTES)


def rounding_generator(seed, device):
    """The generator of the rounding noise of one write, seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) % (2**62))
    return generator


def flat_real(tensor):
    """A 1-D real view of a contiguous ``tensor`` (complex through ``view_as_real``), or None."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.view(-1) if tensor.is_contiguous() else None


def stochastic_round_(stored, value, seed):
    """Write ``value`` into the 16-bit tensor ``stored`` (float16 or bfloat16; a
    complex32 tensor through ``view_as_real``), rounding stochastically.

    ``x`` becomes one of its two neighbouring 16-bit numbers, the upper one with
    probability equal to the distance from the lower one in units of their spacing,
    so the rounding is unbiased: updates much smaller than the spacing still move
    the stored value in expectation (round-to-nearest drops them all). The noise
    comes from a generator seeded with ``seed``, which keeps steps reproducible.
    Values beyond the type's range become inf, as a plain cast would: exactly those
    (float16: magnitudes from 65520 up). A value a plain cast keeps finite never becomes
    inf: above the largest finite number it becomes that number, and below it the upper
    neighbour is at most that number. NaN stays NaN. The work runs
    in chunks of :func:`rounding_chunk` elements, drawing the noise of each chunk in
    turn from the one generator.

    References
    ----------
    .. [1] M. P. Connolly, N. J. Higham, T. Mary, "Stochastic rounding and its
       probabilistic backward error analysis", SIAM J. Sci. Comput. 43(1), 2021.
    """
    if stored.is_complex():
        stored, value = torch.view_as_real(stored), torch.view_as_real(value) if value.is_complex() else value
    if stored.dtype not in _HALF_FORMATS:
        raise TypeError(f"stochastic_round_ writes float16 or bfloat16 tensors, got {stored.dtype}.")
    generator = rounding_generator(seed, value.device)
    flat_stored, flat_value = flat_real(stored), value.reshape(-1)
    if flat_stored is None:  # a strided target: round a contiguous copy, then write it back
        rounded = torch.empty(stored.shape, dtype=stored.dtype, device=stored.device)
        stochastic_round_chunks_(rounded.view(-1), flat_value, generator)
        stored.copy_(rounded)
        return
    stochastic_round_chunks_(flat_stored, flat_value, generator)


def decoupled_update_(wide, change, group):
    """In place: ``wide <- wide (1 - lr wd) - lr change`` for the group's "torch"
    ``adam_convention``, ``(wide - lr change)(1 - lr wd)`` for "neuralop"."""
    decay = 1.0 - group["lr"] * group["weight_decay"]
    decay_first = group["adam_convention"] == "torch"
    if decay_first and decay != 1.0:
        wide.mul_(decay)
    wide.add_(change, alpha=-group["lr"])
    if not decay_first and decay != 1.0:
        wide.mul_(decay)


def stochastic_round_chunks_(stored, value, generator):
    """:func:`stochastic_round_` of the 1-D ``value`` into the 1-D ``stored``, chunk by chunk."""
    length = rounding_chunk(value.device)
    for start in range(0, value.numel(), length):
        stop = start + length
        stochastic_round_chunk_(stored[start:stop], value[start:stop], generator)


def stochastic_round_chunk_(stored, value, generator):
    """Round one chunk; ``generator`` continues the write's noise stream."""
    value = value.float().contiguous()
    if stored.dtype == torch.bfloat16:
        # bf16 is the top half of fp32: add uniform noise below the kept 16 bits,
        # then truncate; it rounds up with probability equal to the discarded fraction
        noise = torch.randint(0, 1 << 16, value.shape, generator=generator, dtype=torch.int32, device=value.device)
        rounded = noise.add_(value.view(torch.int32)).bitwise_and_(-65536).view(torch.float32)
        # a NaN's payload can carry into the sign or clear to inf's or zero's bits: NaN is
        # kept by _keep_the_casts_range_, as the values the cast overflows are
        stored.copy_(_keep_the_casts_range_(rounded, value, stored.dtype))
        return
    bits, min_exponent = _HALF_FORMATS[stored.dtype]
    # spacing of the 16-bit numbers around x: 2**(e - 1 - bits) for |x| in [2**(e-1), 2**e),
    # constant below the smallest normal number (subnormals); every operation is exact in fp32
    _, exponent = torch.frexp(value)
    spacing = torch.ldexp(torch.ones_like(value), (exponent - 1 - bits).clamp_(min=min_exponent - bits))
    scaled = value / spacing
    lower = torch.floor(scaled)
    # up with probability equal to the fraction, compared rather than added: floor(scaled +
    # noise) rounds in float32 when noise is near 1, which moved exact values a spacing up
    up = torch.rand(value.shape, generator=generator, device=value.device) < scaled.sub_(lower)
    rounded = lower.add_(up).mul_(spacing)
    # scaled and up are spent: the range check reuses their memory
    stored.copy_(_keep_the_casts_range_(rounded, value, stored.dtype, scaled, up))


def _keep_the_casts_range_(rounded, value, dtype, magnitude=None, keep=None):
    """``rounded`` (a float32 stochastic rounding of ``value`` to the 16-bit ``dtype``) made
    to overflow where a plain cast of ``value`` does, and only there, in place; returned.

    Rounding up from the top binade gives the next power of two, inf in ``dtype``: a value
    the cast keeps finite (float16: below 65520) is clamped to the largest finite number
    instead, and a value the cast turns into inf (or a NaN) is taken as it is, so the cast
    to ``dtype`` makes it inf (or NaN). ``magnitude`` (float32) and ``keep`` (bool), shaped
    like ``value``, are spent buffers to reuse, else new ones are made."""
    largest, overflow = _FINITE_RANGES[dtype]
    magnitude = torch.abs(value, out=magnitude) if magnitude is not None else value.abs()
    keep = torch.lt(magnitude, overflow, out=keep) if keep is not None else magnitude < overflow  # NaN: False
    return torch.where(keep, rounded.clamp_(-largest, largest), value, out=rounded)
