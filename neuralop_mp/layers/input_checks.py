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
import math

import numpy as np
import torch
from tensorly.cp_tensor import validate_cp_rank
from tltorch.factorized_tensors.core import FactorizedTensor

from ..vocabulary import check_choice, check_real, is_integer, real_scalar
from .weight_contractions import factorization_kind

_REAL_INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COMPLEX_INPUT_DTYPES = (torch.complex32, torch.complex64, torch.complex128)


def _as_tuple(n_modes):
    return tuple(n_modes) if isinstance(n_modes, (list, tuple)) else (n_modes,)


def _positive_ints(values):
    """``values`` as a tuple of ints if every entry is an integer >= 1, else None."""
    if all(is_integer(v) and v >= 1 for v in values):
        return tuple(int(v) for v in values)
    return None


def check_n_modes(n_modes, order=None):
    """``n_modes`` as a tuple of ints: one integer >= 1 per spatial dimension, ``order`` of them
    where given (a built layer's ``n_modes`` set at run time, as incremental training does).

    Raises
    ------
    ValueError
        Naming ``n_modes``, its value and the allowed values.
    """
    modes = _positive_ints(_as_tuple(n_modes))
    if not modes or order is not None and len(modes) != order:
        # no limit on the number of dimensions is claimed: a 4-D layer builds and runs
        dims = "" if order is None else f" of this {order}-D layer ({order} integer{'s' if order > 1 else ''})"
        raise ValueError(f"Invalid n_modes={n_modes!r}; allowed values: one integer >= 1 per spatial dimension{dims}.")
    return modes


# An integer rank above the largest one the factorization can use on the weight (see
# _useful_rank) adds parameters and no expressiveness; such a rank is still accepted while its
# factors hold at most this many times the dense weight's parameters (upstream builds it in
# modest memory), and refused beyond (Tucker rank 100 on a (4, 4, 5, 3) weight: 100 million).
MAX_PARAMETER_MULTIPLE = 16

_FACTORIZATION_NAMES = {"cp": "CP", "tucker": "Tucker", "tt": "TT"}


def factorization_choices():
    """Allowed values of ``factorization`` (any case): None and tensorly-torch's factorizations,
    read from its registry so they follow the installed version, without its "Complex" ones.

    Those store each complex entry as a real ``(..., 2)`` float view: the spectral weight
    has no complex parameter, so complex32 storage and the weight-dtype bookkeeping
    (:mod:`.weight_storage`) find nothing to act on.
    """
    names = sorted(name for name in FactorizedTensor._factorizations if not name.startswith("complex"))
    return (None,) + tuple(names)


def _check_rank_tuple(rank, factorization, kind, shape):
    """Refuse per-mode ranks that do not fit the weight of ``shape``: from a Tucker tuple of
    another length tensorly-torch builds a weight of the wrong order (the forward fails
    later), and a CP tuple fails deep inside it."""
    if kind == "tucker":
        expected = len(shape)
        takes = f"one rank per dimension of the weight: {expected} entries"
        fits = len(rank) == expected
    elif kind == "tt":
        expected = len(shape) + 1
        takes = f"one rank per bond between cores plus the two boundary ranks: {expected} entries, the first and last 1"
        fits = len(rank) == expected and rank[0] == rank[-1] == 1
    else:  # cp
        takes, fits = "one rank, not a tuple", False
    if not fits:
        single = "a fraction in (0, 1] of the dense weight's parameters"
        allowed = (f"{single}, or an integer >= 1" if kind == "cp"
                   else f"{single}, an integer >= 1, or a tuple of {expected} integers >= 1 (as above)")
        raise ValueError(
            f"Invalid rank={rank!r} with factorization={factorization!r} on the spectral weight of shape {shape}: "
            f"{_FACTORIZATION_NAMES[kind]} takes {takes}. Allowed values: {allowed}.")


def _smallest_cp_fraction(shape):
    """The smallest fraction, to 3 significant digits, from which tensorly-torch derives a CP
    rank >= 1 on a weight of ``shape``."""
    # the rank it derives is the fraction of the dense parameters divided by the parameters one
    # rank-one term holds (the sum of the dimensions), rounded: it reaches 1 just above half a term
    bound = sum(shape) / (2 * math.prod(shape))
    step = 10.0 ** (math.floor(math.log10(bound)) - 2)
    k = math.ceil(bound / step)
    while True:  # a step or two at most; the library's own rounding decides
        fraction = float(f"{k * step:.3g}")
        if validate_cp_rank(shape, fraction) >= 1:
            return fraction
        k += 1


def _weight_shape(in_channels, out_channels, modes, max_n_modes, separable, complex_data):
    """The shape of the spectral weight upstream's ``SpectralConv`` allocates: ``(in, out,
    *max_n_modes)`` (separable: ``(in, *max_n_modes)``), where ``max_n_modes`` defaults to
    ``n_modes`` with the last mode halved (+1) for real data and is taken as given otherwise."""
    if max_n_modes is None:
        weight_modes = modes if complex_data else modes[:-1] + (modes[-1] // 2 + 1,)
    else:
        weight_modes = _positive_ints(_as_tuple(max_n_modes))
        if weight_modes is None or len(weight_modes) != len(modes):
            raise ValueError(f"Invalid max_n_modes={max_n_modes!r}; allowed values: None, or one integer >= 1 per "
                             f"spatial dimension ({len(modes)}, as n_modes={tuple(modes)!r}).")
    return (int(in_channels),) + (() if separable else (int(out_channels),)) + tuple(weight_modes)


def _fixed_modes(fixed_rank_modes):
    # as upstream: True keeps mode 0 at full rank, False none; an int names one mode
    if isinstance(fixed_rank_modes, bool):
        return (0,) if fixed_rank_modes else ()
    if fixed_rank_modes is None:
        return ()
    return (fixed_rank_modes,) if is_integer(fixed_rank_modes) else tuple(fixed_rank_modes)


def tensorly_fixed_rank_modes(fixed_rank_modes):
    """``fixed_rank_modes`` in the form tensorly-torch takes: one integer mode as a list of it,
    anything else as it is. Upstream passes an int on unchanged and Tucker fails inside
    tensorly ("'int' object is not iterable"); CP and TT ignore the value either way."""
    return [int(fixed_rank_modes)] if is_integer(fixed_rank_modes) else fixed_rank_modes


def _check_fixed_modes(fixed_rank_modes, shape):
    """Refuse Tucker ``fixed_rank_modes`` that name no dimension of the weight of ``shape``:
    tensorly-torch fails on a mode past the last with a bare IndexError, and keeps no
    dimension at full rank for a negative one (it ignores it, or shifts the others' ranks)."""
    allowed = (f"True, False, None, or an integer mode or a list of them in 0..{len(shape) - 1} "
               f"(the dimensions of the spectral weight of shape {shape})")
    try:
        modes = _fixed_modes(fixed_rank_modes)
    except TypeError:  # neither a bool, None, an integer nor a sequence
        modes = None
    if modes is None or not all(is_integer(m) and 0 <= m < len(shape) for m in modes):
        raise ValueError(f"Invalid fixed_rank_modes={fixed_rank_modes!r} with factorization='tucker'; "
                         f"allowed values: {allowed}.")
    return tuple(int(m) for m in modes)


def _tucker_ranks(shape, rank, fixed_modes):
    # as tensorly: an integer rank for every mode, fixed modes at full rank
    return [d if i in fixed_modes else rank for i, d in enumerate(shape)]


def _factorized_parameters(kind, shape, rank, fixed_modes=()):
    """Parameters (complex entries) tensorly-torch builds for an integer ``rank``."""
    if kind == "cp":  # weights (rank,) and one (dim, rank) factor per dimension
        return rank * (sum(shape) + 1)
    if kind == "tucker":  # core of the ranks, one (dim, rank) factor per dimension
        ranks = _tucker_ranks(shape, rank, fixed_modes)
        return math.prod(ranks) + sum(d * r for d, r in zip(shape, ranks))
    bonds = [1] + [rank] * (len(shape) - 1) + [1]  # tt: cores (r_k, dim_k, r_k+1)
    return sum(bonds[k] * d * bonds[k + 1] for k, d in enumerate(shape))


def _useful_rank(kind, shape):
    """The largest integer rank that can add expressiveness to a weight of ``shape``."""
    if kind == "cp":  # every tensor is a sum of (product of all dimensions but the largest) rank-one terms
        return math.prod(shape) // max(shape)
    if kind == "tucker":  # a mode's rank is at most its dimension
        return max(shape)
    # tt: the rank between cores k-1 and k is at most the product of the dimensions on either side
    return max(min(math.prod(shape[:k]), math.prod(shape[k:])) for k in range(1, len(shape)))


def _largest_rank_within(kind, shape, budget, fixed_modes):
    """The largest integer rank whose factors hold at most ``budget`` parameters (0 if none)."""
    low, high = 0, budget  # every rank >= 1 holds at least `rank` parameters
    while low < high:
        mid = (low + high + 1) // 2
        if _factorized_parameters(kind, shape, mid, fixed_modes) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def check_resolution_scaling_factor(factor, order):
    """``resolution_scaling_factor`` as the list of ``order`` floats the forward scales the
    spatial sizes by (None stays None).

    Allowed: None; one finite number > 0, the same along every spatial dimension; a list or a
    tuple of ``order`` finite numbers > 0, one per dimension. Numbers may be numpy's or 0-d
    tensors. Upstream's ``validate_scaling_factor`` turns a tuple, a numpy integer or a string
    into None (the output keeps the input's size, silently), and a list of another length into
    a list of lists that fails at forward; a tuple is taken here as the list it spells.

    Raises
    ------
    ValueError
        Naming ``resolution_scaling_factor``, its value and the allowed values: a string, a bool,
        NaN, an infinity, a factor <= 0, or a list of another length (a list per layer, as
        ``FNOBlocks`` takes, included: it gives each of its layers one entry).
    """
    if factor is None:
        return None
    single = _positive_factor(factor)
    if single is not None:
        return [single] * order
    if isinstance(factor, (list, tuple)) and len(factor) == order:
        factors = [_positive_factor(f) for f in factor]
        if None not in factors:
            return factors
    raise ValueError(
        f"Invalid resolution_scaling_factor={factor!r} for this {order}-D layer; allowed values: None, a finite "
        f"number > 0 (the same along every spatial dimension), or a list or tuple of {order} finite number"
        f"{'s' if order > 1 else ''} > 0 (one per spatial dimension).")


def _positive_factor(value):
    """``value`` as a float if it is a finite number > 0 (not a bool, not a string), else None."""
    try:
        return check_real("resolution_scaling_factor", value, low=0, low_open=True)
    except ValueError:  # NotARealNumberError included
        return None


def tensorly_rank(rank):
    """``rank`` in the form tensorly-torch takes: a number of another type (numpy's, a 0-d
    tensor) as a Python int (an integer) or float (a fraction), anything else as it is. Tucker
    and TT take any non-int, non-float rank for a sequence of ranks ("'numpy.int64' object is
    not iterable"); CP converts it."""
    if isinstance(rank, (str, list, tuple)):
        return rank
    number = real_scalar(rank)
    if number is None:
        return rank
    return int(number) if is_integer(number) else float(number)


def check_rank_value(rank, factorization, key="rank", dense=None):
    """A factorization's ``rank`` (``key``) as tensorly-torch takes it (:func:`tensorly_rank`), where
    it is one of the kinds it means whatever the weight's shape: tensorly-torch's ``'same'`` (as
    many parameters as the dense weight), a fraction in (0, 1] of the dense weight's parameters, an
    integer >= 1 (the rank of every mode), or a tuple of integers >= 1 (one per mode: Tucker, TT).
    Whether a tuple's length or an integer's size fits a weight is :func:`check_layer_arguments`'.

    tensorly-torch builds nothing sensible from the others: rank 0 divides by zero (a warning,
    then a Tucker core of zeros) or fails in CP, a negative or NaN rank fails deep inside its
    solver, a fraction above 1 builds more parameters than the dense weight. ``dense``: the
    dense weight's parameter count, said in the message of a fraction above 1 where known.

    Raises
    ------
    ValueError
        Naming ``key``, the value (as given) and the allowed values.
    """
    # numpy's and 0-d tensors' numbers are checked as the int or float they are, named as given
    given, rank = rank, tensorly_rank(rank)
    allowed = ("a fraction in (0, 1] of the dense weight's parameters, an integer >= 1, or a tuple of integers >= 1 "
               "(one per mode: Tucker, TT)")
    if isinstance(rank, str):
        if rank == "same":  # tensorly-torch's: as many parameters as the dense weight
            return rank
        # tensorly-torch takes any other string for a sequence of ranks: a TypeError in torch.empty
        raise ValueError(f"Invalid {key}={given!r} with factorization={factorization!r}; allowed values: 'same' (as "
                         f"many parameters as the dense weight), {allowed}.")
    if isinstance(rank, (list, tuple)) and _positive_ints(rank):
        return rank
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) and not is_integer(rank) or not rank > 0:
        raise ValueError(f"Invalid {key}={given!r}; allowed values: {allowed}.")
    if isinstance(rank, float) and rank > 1.0:
        weight = "the dense weight's parameters" if dense is None else f"the dense weight's {dense} parameters"
        raise ValueError(
            f"Invalid {key}={given!r} with factorization={factorization!r}: a float rank is the fraction of "
            f"{weight} kept, so {given!r} asks for more parameters than the dense "
            "weight and ranks larger than its dimensions. Allowed values: (0, 1], or an integer rank.")
    return rank


def check_flag(key, value):
    """An on/off setting (``key``: ``separable``, ``bias``, a model's ``use_channel_mlp``) as a
    Python bool: a bool, a numpy bool, or the integer 0 or 1 (upstream's default_config.py writes
    ``use_channel_mlp: int = 0``). Upstream takes any value for its truth: the string "False" is
    truthy and silently meant True.

    Raises
    ------
    TypeError
        Not a bool nor an integer (a string, a float, None), naming ``key``, the value and the
        allowed values.
    ValueError
        An integer other than 0 and 1, worded the same.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_integer(value) and value in (0, 1):
        return bool(value)
    error = ValueError if is_integer(value) else TypeError
    raise error(f"Invalid {key}={value!r}; allowed values: True, False (a numpy bool, or the integer 1 or 0, "
                "taken as them).")


def flag_parameters(params):
    """The names among ``params`` (``{name: inspect.Parameter}``) of on/off settings, checked by
    :func:`check_flag`: those whose default is a bool, but ``fixed_rank_modes`` (also
    ``fno_fixed_rank_modes``), which takes an integer mode or a list of them too."""
    return [name for name, param in params.items()
            if isinstance(param.default, bool) and not name.endswith("fixed_rank_modes")]


def check_init_std(init_std):
    """``init_std`` as upstream's ``SpectralConv`` uses it: ``"auto"`` as it is, a number as a Python
    float. Upstream draws the spectral weight (and the bias) with it as their standard deviation:
    torch refuses a negative or NaN one deep inside (``normal expects std >= 0.0``, or a
    tensorly-torch error for a factorized weight), an infinite one gives NaN weights silently, and
    ``True`` means 1.

    Raises
    ------
    ValueError
        Naming ``init_std``, the value and the allowed values (a TypeError too for a value that
        is no number: :class:`~neuralop_mp.vocabulary.NotARealNumberError`).
    """
    if isinstance(init_std, str) and init_std == "auto":
        return init_std
    return check_real("init_std", init_std, low=0, allowed=(
        "'auto' ((2 / (in_channels + out_channels)) ** 0.5), or a finite number >= 0 (the standard deviation of the "
        "initial spectral weight and bias; 0: zeros)"))


def check_layer_arguments(in_channels, out_channels, n_modes, rank, factorization, separable, complex_data=False,
                          max_n_modes=None, fixed_rank_modes=False):
    """Refuse constructor arguments that would build a wrong or oversized layer.

    Rules: channels and every ``n_modes`` (and ``max_n_modes``) entry are integers >= 1;
    ``factorization`` is one of :func:`factorization_choices`; with a factorization, the one
    string ``rank`` is tensorly-torch's ``'same'``, a float ``rank`` is the fraction of the
    dense weight's parameters kept and must be in (0, 1] (those two and the rank's kind:
    :func:`check_rank_value`; with CP, also large enough that
    tensorly-torch derives a CP rank >= 1 from it), per-mode ranks fit the weight (Tucker:
    one per dimension; TT: one per bond and the two boundary ranks of 1; CP takes none),
    and an integer ``rank`` is refused only when
    it is both larger than any rank the factorization can use on the weight upstream
    allocates (CP: the product of all its dimensions but the largest; Tucker: its largest
    dimension; TT: the largest product of the dimensions on either side of a bond; larger
    ranks add parameters and no expressiveness) and its factors would hold more than
    ``MAX_PARAMETER_MULTIPLE`` times the dense weight's parameters. With Tucker,
    ``fixed_rank_modes`` names dimensions of that weight (True: the first; an int: that one).

    Raises
    ------
    ValueError
        Naming the argument, its value and the allowed values.
    """
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not is_integer(value) or value < 1:
            # a model builds its spectral layers from its own arguments (FNO: hidden_channels):
            # the message says whose argument this is, not to be read as the model's in_channels
            raise ValueError(f"Invalid {name}={value!r}: the spectral layer's {name} (in a model, the width it "
                             f"gives its spectral layers, e.g. FNO's hidden_channels); allowed values: integers "
                             f">= 1.")
    modes = check_n_modes(n_modes)
    shape = _weight_shape(in_channels, out_channels, modes, max_n_modes, separable, complex_data)
    choices = factorization_choices()
    if (factorization.lower() if isinstance(factorization, str) else factorization) not in choices:
        check_choice("factorization", factorization, choices)  # raises with the allowed names
    kind = factorization_kind(factorization)
    # fixed modes matter to Tucker only (upstream passes them to CP and TT, which ignore them)
    fixed = _check_fixed_modes(fixed_rank_modes, shape) if kind == "tucker" else ()
    if factorization is None or kind == "dense":
        return  # no factorization takes the rank
    given, dense = rank, math.prod(shape)
    rank = check_rank_value(rank, factorization, dense=dense)
    if isinstance(rank, str):  # "same"
        return
    if isinstance(rank, (list, tuple)):
        _check_rank_tuple(rank, factorization, kind, shape)
        return
    if not is_integer(rank):  # a fraction: Tucker and TT ranks stay >= 1, a CP rank can round to 0
        cp_rank = validate_cp_rank(shape, float(rank)) if kind == "cp" else 1
        if cp_rank < 1:
            smallest = _smallest_cp_fraction(shape)
            allowed = (f"a fraction in [{smallest}, 1] (CP rank 1 and up), or an integer >= 1." if smallest <= 1
                       else "an integer >= 1 (no fraction in (0, 1] gives CP rank 1 on this weight).")
            raise ValueError(
                f"Invalid rank={given!r} with factorization={factorization!r} on the spectral weight of shape "
                f"{shape} (dense: {dense} parameters): tensorly-torch derives CP rank {cp_rank} from it (the "
                f"parameters kept, {given!r} x {dense}, over the {sum(shape)} factor entries of one rank-one term, "
                f"rounded), which builds no weight. Allowed values: {allowed}")
        return
    rank, name = int(rank), _FACTORIZATION_NAMES[kind]
    budget = MAX_PARAMETER_MULTIPLE * dense
    useful = _useful_rank(kind, shape)
    allowed = max(useful, _largest_rank_within(kind, shape, budget, fixed))
    if rank <= allowed:
        return
    params = _factorized_parameters(kind, shape, rank, fixed)
    why = {
        "cp": f"a CP rank above {useful} (the product of all the weight's dimensions but the largest: every "
              "tensor of this shape is a sum of that many rank-one terms)",
        "tucker": f"a Tucker rank above {useful} (the weight's largest dimension; rank {rank} alone builds a core "
                  f"of {math.prod(_tucker_ranks(shape, rank, fixed))})",
        "tt": f"a TT rank above {useful} (the largest product of the weight's dimensions on either side of a "
              "bond, which bounds the rank between two cores)",
    }[kind]
    raise ValueError(
        f"Invalid rank={given!r} with factorization={factorization!r} on the spectral weight of shape {shape} "
        f"(dense: {dense} parameters): its {name} factors would hold {params} parameters, "
        f"{params / dense:.0f}x the dense weight, and {why} adds parameters, no expressiveness. "
        f"Allowed values: integers <= {allowed} (every {name} rank up to {useful}, and larger ones while their "
        f"factors hold at most {MAX_PARAMETER_MULTIPLE}x the dense weight's parameters), or a fraction in (0, 1].")


def check_input(layer, x, output_shape=None):
    """Refuse an input the layer would silently misuse or fail on deep inside.

    Returns
    -------
    tuple of int or None
        ``output_shape`` normalised (:func:`check_output_shape`), as the forward uses it.

    Raises
    ------
    TypeError
        Complex input to a real-data layer (``complex_data=False``: casting drops the
        imaginary part) or a non-floating dtype.
    ValueError
        Wrong number of dimensions or of channels, or an ``output_shape`` that is not one
        integer >= 1 per spatial dimension (upstream's inverse FFT refuses a wrong length;
        ours would leave axes untransformed or ignore entries).
    """
    output_shape = check_output_shape(layer, output_shape)
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
    return output_shape


def check_output_shape(layer, output_shape):
    """``output_shape`` as a tuple of ints, one per spatial dimension (None stays None); a
    1-D layer also takes one integer, as upstream's ``irfftn`` does.

    Raises
    ------
    ValueError
        On anything else: a wrong length, or an entry that is not an integer >= 1.
    """
    if output_shape is None:
        return None
    if layer.order == 1 and is_integer(output_shape):
        sizes = _positive_ints((output_shape,))
    else:
        sizes = _positive_ints(output_shape) if isinstance(output_shape, (list, tuple)) else None
    if sizes is None or len(sizes) != layer.order:
        raise ValueError(
            f"Invalid output_shape={output_shape!r}: this {layer.order}-D layer allows None or a sequence of "
            f"{layer.order} integer(s) >= 1, the output's spatial sizes (d_1, ..., d_{layer.order})"
            + (" (or one integer)." if layer.order == 1 else "."))
    return sizes
