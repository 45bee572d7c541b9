"""The plugin's vocabulary: allowed values of its flags and the small readers of configs.

A leaf module: it imports nothing from the rest of the package (only torch and the
standard library), so every other module can use it without creating an import cycle.

- allowed values of the precision flags (:data:`PRECISION_MODES`, :data:`HALF_DTYPES`,
  :data:`STABILIZERS`, :data:`SPECTRAL_WEIGHT_DTYPES`, :data:`AUTOCAST_SCOPES`) and their
  normalizers; a stabilizer *request* (:data:`STABILIZER_REQUESTS`) may also be "off";
- allowed values of the memory flags (:data:`RECOMPUTE_MODES`) and the reader of
  on/off flags (:func:`normalize_flag`);
- :func:`check_choice`, the one error format for a bad value (key, value, allowed
  values, and :func:`did_you_mean` for another case or ``-``/``_``), which
  :class:`OneLineErrorParser` gives argparse's ``choices`` too;
- :func:`check_int_at_least` and :func:`check_real`: an integer, or a finite real number in
  a range, in that format; :func:`check_each_once`: a list without a value given twice;
- :func:`none_if_null`: configs spell "no value" as None, "None", "none", "null" or "";
- :func:`read_key`: read a config section's key whether it is a dict, a Bunch or a
  zencfg config object, under zencfg 0.7 and 1.0 alike (a whole section as a dict:
  ``configs.zencfg_compat.section_dict``);
- :func:`plain_text`: a docstring's reST roles and literals as plain text, for ``--help``;
  :func:`public_name`: a class's dotted name as scripts import it, for messages;
- :func:`ignoring_upstream_unused_keys`: a block without upstream's one warning the
  commands hide (:data:`UPSTREAM_UNUSED_KEYS_WARNING`), every other warning kept.
"""
import argparse
import math
import re
import numbers
import operator
import warnings
from collections.abc import Mapping
from contextlib import contextmanager

import torch

PRECISION_MODES = ("full", "mixed", "half")
# "auto" is a request, never a layer's mode: neuralop_mp.diagnose.auto decides it from a calibration
AUTO_PRECISION = "auto"
PRECISION_REQUESTS = PRECISION_MODES + (AUTO_PRECISION,)
HALF_DTYPES = ("auto", "float16", "bfloat16")
# what a layer applies before every forward FFT (and what checkpoints record)
STABILIZERS = (None, "tanh")
# what a user may ask for (a policy, a config, an option): None is "not given", the mode's default
# where a config is built (tanh for float16 "half"); "off" is "no stabilizer, whatever the mode"
STABILIZER_OFF = "off"
STABILIZER_REQUESTS = (None, STABILIZER_OFF, "tanh")
SPECTRAL_WEIGHT_DTYPES = ("complex64", "complex32")
NULL_SPELLINGS = ("none", "null", "")
# where torch.autocast may round a plugin model's activations to 16 bits (widest first):
# "model" everywhere; "fno_blocks" not in lifting/projection; "spectral" nowhere but inside the
# spectral layers, as fno_block_precision says. "auto" is resolved per device at every forward.
AUTOCAST_SCOPES = ("auto", "model", "fno_blocks", "spectral")
# what "auto" means: CUDA's 16-bit matrix units make autocast pay; on a CPU the pointwise layers in
# bf16 put the precision error above the discretization error (docs/diagnose.md, "autocast scope"),
# and without bf16 units cost time too (with them they are faster: docs/training.md, tiles)
AUTO_AUTOCAST_SCOPE = {"cuda": "model", "other": "spectral"}

# what is recomputed in backward instead of saved (neuralop_mp.models.recompute)
RECOMPUTE_MODES = ("none", "fourier", "block")

_TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_TORCH_COMPLEX = {"complex64": torch.complex64, "complex32": torch.complex32}
# other names torch uses for the same complex dtypes
_COMPLEX_ALIASES = {"chalf": "complex32", "cfloat": "complex64"}
# zencfg's tag of the selected config subclass: bookkeeping, never a model argument
CONFIG_NAME_KEY = "_config_name"
# upstream's models and losses warn of each sample key they do not take, once per batch
# ("FNO.forward() received unexpected keyword arguments: ['y']"), where they are called with them all
UPSTREAM_UNUSED_KEYS_WARNING = r".*received unexpected keyword arguments"


def spelling_key(value):
    """``value`` with case, ``-`` and ``_`` made alike (``"FNO-blocks"`` -> ``"fno_blocks"``): the
    variants of one spelling that :func:`spelled_as` recognizes. Not a value's own: a choice is
    taken only as its allowed values spell it."""
    return value.strip().casefold().replace("-", "_") if isinstance(value, str) else None


def spelled_as(value, allowed):
    """The one allowed value that ``value`` spells in another case or with ``-`` for ``_`` (or the
    other way), for a "did you mean"; None where none or several do."""
    key = spelling_key(value)
    matches = [a for a in allowed if key is not None and spelling_key(a) == key and a != value]
    return matches[0] if len(matches) == 1 else None


def did_you_mean(value, allowed):
    """``" Did you mean 'mixed'?"`` for ``value`` that :func:`spelled_as` an allowed value, else "".
    The CLI's one rule for every choice: a value is taken as its allowed values spell it; another
    case or ``-``/``_`` is refused, with this hint (only values documented as case-free are not,
    docs/configs.md: the built-in configs, section class names, the spellings of None and the
    stabilizer's "off", factorizations, model_arch, device, precision schedules, recompute modes,
    on/off values, ``--threads auto`` and :func:`~neuralop_mp.optim.factory.create_optimizer`'s
    ``optimizer``)."""
    match = spelled_as(value, allowed)
    return f" Did you mean {match!r}?" if match is not None else ""


def check_choice(key, value, allowed, ignore_case=False, labels=None):
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError.

    The message names the key, the bad value as typed and every allowed value, e.g.
    ``Invalid model.fno_block_precision='hlaf'; allowed values: 'full', 'mixed', 'half'.``,
    and the allowed value a variant of case or ``-``/``_`` spells (:func:`did_you_mean`):
    ``Invalid model.fno_block_precision='Mixed'; allowed values: ... Did you mean 'mixed'?``

    ``ignore_case``: a string is also taken in any case, and the allowed value it spells is
    returned (``'AdamW'`` -> ``'adamw'``), for the few choices documented as case-free
    (:func:`did_you_mean` lists them).

    ``labels``: ``{allowed value: text}`` shown for those values in the message instead of
    their repr, e.g. ``{None: "None (the mode's default)"}``.
    """
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value tested against a set-like
        ok = False
    if ok:
        return value
    if ignore_case and isinstance(value, str):
        folded = value.lower()
        for choice in allowed:
            if isinstance(choice, str) and choice.lower() == folded:
                return choice
    shown = ", ".join(labels.get(a, repr(a)) if labels else repr(a) for a in allowed)
    raise ValueError(f"Invalid {key}={value!r}; allowed values: {shown}.{did_you_mean(value, allowed)}")


def is_integer(value):
    """An integer: a Python int, a numpy integer (or a 0-d integer array) or a 0-d tensor of an
    integer dtype; never a bool (Python's, numpy's or torch's), a float or a complex number.

    ``operator.index`` is the integer rule, but a bool tensor and a one-element integer
    tensor of any shape pass it, so tensors are checked by dtype and shape instead."""
    if isinstance(value, bool):
        return False
    if torch.is_tensor(value):
        return value.ndim == 0 and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_int_at_least(key, value, minimum=1, unit=None):
    """``value`` as an int if it is an integer (:func:`is_integer`) of at least ``minimum``;
    TypeError (not an integer) or ValueError (too small) naming ``key`` and the allowed
    values otherwise. ``unit`` is said after them, e.g. "grid points per chunk"."""
    allowed = f"integers >= {minimum}" + (f" ({unit})" if unit else "")
    if not is_integer(value):
        raise TypeError(f"Invalid {key}={value!r}; allowed values: {allowed}.")
    number = operator.index(value)
    if number < minimum:
        raise ValueError(f"Invalid {key}={value!r}; allowed values: {allowed}.")
    return number


def check_each_once(given, values):
    """``values`` if no value is in it twice, else a ValueError naming them as given (``given``:
    ``--res 16 32 16``, ``data.test_resolutions=[16, 32, 16]``), the repeated ones and the rule,
    worded for resolutions (what its callers check), e.g. ``Invalid --res 16 32 16: 16 given more
    than once; allowed values: each resolution once.``"""
    values = list(values)
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"Invalid {given}: {', '.join(map(str, repeated))} given more than once; "
                         "allowed values: each resolution once.")
    return values


class NotARealNumberError(TypeError, ValueError):
    """:func:`check_real`'s error for a value that is no real number at all (a string, a bool,
    None, a complex number).

    A TypeError by kind, and a ValueError as well: the checks :func:`check_real` replaced
    raised TypeError for a wrong type (the optimizer's settings) or ValueError for any bad
    value (loss scaling, the Burgers step, the diagnosis rule), and callers catching either
    still catch it.
    """


def real_scalar(value):
    """``value`` as a Python real number if it is one: a Python or numpy real, a 0-d numpy
    array or a 0-d tensor of a real dtype; never a bool (numpy's or torch's either). None
    otherwise (a 1-element 1-d tensor is an array, not a number)."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a bool or complex dtype gives a bool or complex, refused below
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value


def _bound_text(bound):
    # 0 and 1, not 0.0 and 1.0: "finite numbers > 0"
    bound = float(bound)
    return str(int(bound)) if bound.is_integer() else repr(bound)


def _real_range_text(low=None, high=None, low_open=False, high_open=False):
    """The allowed values of :func:`check_real` in words, e.g. "finite numbers > 0" or
    "finite numbers in (0, 1)"."""
    if low is not None and high is not None:
        return (f"finite numbers in {'(' if low_open else '['}{_bound_text(low)}, "
                f"{_bound_text(high)}{')' if high_open else ']'}")
    if low is not None:
        return f"finite numbers {'>' if low_open else '>='} {_bound_text(low)}"
    if high is not None:
        return f"finite numbers {'<' if high_open else '<='} {_bound_text(high)}"
    return "finite numbers"


def check_real(key, value, low=None, high=None, low_open=False, high_open=False, allowed=None):
    """``value`` as a Python float if it is a finite real number within the bounds, else an
    error naming ``key``, the value and the allowed values.

    Parameters
    ----------
    key : str
        The setting's name, as the message shows it.
    value : object
        A Python or numpy real number, or a 0-d numpy array or tensor of a real dtype. Bools
        are refused (``True`` is an int to Python, never a meant number here).
    low, high : float, optional
        Bounds; None: unbounded on that side.
    low_open, high_open : bool, default False
        Exclude the bound itself.
    allowed : str, optional
        The allowed values in words, for the message; default from the bounds, e.g.
        "finite numbers > 0" or "finite numbers in (0, 1)".

    Returns
    -------
    float

    Raises
    ------
    NotARealNumberError
        ``value`` is no real number (a TypeError and a ValueError).
    ValueError
        NaN, an infinity, or out of the bounds.
    """
    number = real_scalar(value)
    if number is not None:
        try:
            number = float(number)
        except OverflowError:  # an int beyond float's range is not a finite float
            number = math.inf
        if (math.isfinite(number)
                and (low is None or (number > low if low_open else number >= low))
                and (high is None or (number < high if high_open else number <= high))):
            return number
    if allowed is None:
        allowed = _real_range_text(low, high, low_open, high_open)
    error = NotARealNumberError if number is None else ValueError
    raise error(f"Invalid {key}={value!r}; allowed values: {allowed}.")


def setting_as_given(prefix, key, value):
    """A setting as its caller writes it, for advice in a message: ``--mp.loss_scaling none`` where
    ``prefix`` is a command line flag's (``"--mp."``), ``opt.loss_scaling='none'`` (a config key's
    or a keyword's prefix) otherwise."""
    name = prefix + key
    return f"{name} {value}" if name.startswith("-") else f"{name}={value!r}"


def none_if_null(value):
    """Map the spellings configs use for "no value" ("None", "none", "null", "") to None."""
    if isinstance(value, str) and value.strip().lower() in NULL_SPELLINGS:
        return None
    return value


def normalize_precision_request(value, key="fno_block_precision"):
    """Validate a requested precision: a mode, or "auto" (decided by a calibration)."""
    return check_choice(key, value, PRECISION_REQUESTS)


def _off_in_any_case(value):
    """``"off"`` for ``value`` spelling it in any case (``"OFF"``, ``" Off"``), as the spellings of
    None are read (an explicit "no stabilizer", like a typed ``none``); ``value`` otherwise."""
    if isinstance(value, str) and value.strip().lower() == STABILIZER_OFF:
        return STABILIZER_OFF
    return value


def typed_null_is_off(value, key="stabilizer"):
    """``"off"`` for a string spelling of None ("none", "None", "null") given as a stabilizer
    request of its own (typed on a command line, or ``enable``'s keyword), where it asks for no
    stabilizer rather than "not given"; ``value`` otherwise. The one place of that rule.

    An empty (or blank) string is refused, naming ``key``: ``--mp.stabilizer "$S"`` with ``S``
    unset would otherwise turn tanh off without anyone having asked for it.
    """
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"Invalid {key}={value!r}: an empty value (an unset shell variable?) is refused; "
                         f"allowed values: 'none' or 'off' (no stabilizer, whatever the mode), 'tanh'; "
                         f"leave the option out for the mode's default.")
    return STABILIZER_OFF if isinstance(value, str) and none_if_null(value) is None else value


def applied_stabilizer(held):
    """What a block or layer holding ``held`` applies: "tanh" for "tanh" (upstream's FNOBlocks test
    exactly that), None for anything else (None, "off")."""
    return "tanh" if held == "tanh" else None


def normalize_stabilizer_request(value, key="stabilizer", *, given=False):
    """Validate a requested stabilizer (a policy's, a config's, an option's): None, "off" or
    "tanh". The spellings of "no value" ("None", "none", "null", "") become None, which means
    "not given": the mode's default where a config is built. "off" (in any case) asks for no
    stabilizer whatever the mode (a command line's typed "none" becomes it).

    ``given``: the value was given explicitly, where None is the only "not given" (``neuralop-mp
    run --mp.stabilizer``, :func:`neuralop_mp.enable`'s keyword): a string spelling of None is then
    "off" too (an empty string is refused: :func:`typed_null_is_off`), and the message lists
    ``'none'`` beside ``'off'``.
    """
    if given:
        if value is None:  # still "not given"
            return None
        if typed_null_is_off(value, key) == STABILIZER_OFF:
            return STABILIZER_OFF
        return check_choice(key, _off_in_any_case(value), ("none", STABILIZER_OFF, "tanh"),
                            labels={STABILIZER_OFF: f"{STABILIZER_OFF!r} (both: no stabilizer)"})
    return check_choice(key, _off_in_any_case(none_if_null(value)), STABILIZER_REQUESTS,
                        labels={None: "None (unset: the mode's default; typed on a command line, none is 'off')"})


def normalize_stabilizer(value, key="stabilizer"):
    """Validate the stabilizer a layer or a model built directly applies: None or "tanh".
    "off" (in any case) and the spellings of "no value" become None (no mode default applies there)."""
    request = check_choice(key, _off_in_any_case(none_if_null(value)), STABILIZER_REQUESTS)
    return None if request == STABILIZER_OFF else request


def normalize_half_dtype(value, key="half_dtype"):
    """Accept a torch half dtype or its name (None means "auto"); return the canonical name."""
    if value is None:
        value = "auto"
    if isinstance(value, torch.dtype):
        names = {v: k for k, v in _TORCH_HALF.items()}
        value = names.get(value, dtype_name(value))
    return check_choice(key, value, HALF_DTYPES)


def normalize_spectral_weight_dtype(value, key="spectral_weight_dtype"):
    """Accept a torch complex dtype or its name ("complex64", "complex32", "chalf",
    "cfloat"; None means "complex64"); return the canonical name."""
    if value is None:
        value = "complex64"
    if isinstance(value, torch.dtype):
        names = {v: k for k, v in _TORCH_COMPLEX.items()}
        value = names.get(value, dtype_name(value))
    if isinstance(value, str):
        value = _COMPLEX_ALIASES.get(value, value)
    return check_choice(key, value, SPECTRAL_WEIGHT_DTYPES)


def normalize_autocast_scope(value, key="autocast_scope"):
    """Validate an autocast scope; None (and the other spellings of "no value") mean "auto"."""
    value = none_if_null(value)
    return check_choice(key, "auto" if value is None else value, AUTOCAST_SCOPES)


def resolve_autocast_scope(scope, device_type):
    """The scope ``scope`` means for a forward on ``device_type`` ("auto" is device-dependent)."""
    return scope_on_device(normalize_autocast_scope(scope), device_type)


def scope_on_device(scope, device_type):
    """:func:`resolve_autocast_scope` for a ``scope`` already normalized (a per-forward hook
    need not validate again what :func:`normalize_autocast_scope` checked when it was set)."""
    if scope == "auto":
        return AUTO_AUTOCAST_SCOPE["cuda" if device_type == "cuda" else "other"]
    return scope


def normalize_recompute(value, key="recompute"):
    """A recompute mode as :data:`RECOMPUTE_MODES` spells it: the spellings of "no value" mean
    "none", and case is ignored (``"Fourier"`` -> ``"fourier"``; a documented exception to the one
    spelling rule of :func:`did_you_mean`, as earlier versions read it: run folders' command.json
    and scripts' ``neuralop_mp.enabled(recompute=...)`` hold it as typed)."""
    value = none_if_null(value)
    if value is None:
        return "none"
    return check_choice(key, value, RECOMPUTE_MODES, ignore_case=True)


def normalize_recompute_chunk_points(value, recompute, key="recompute_chunk_points", recompute_key="recompute"):
    """Validate the grid points per slice of ``recompute="block"``'s lifting/projection
    replay: None (the default) or a positive int, and only with ``recompute="block"``
    (the other modes slice nothing, so a value there would be silently ignored).
    ``recompute=None`` means the mode is not known where this is called (an option
    merged into a script's own config later): only the value is checked then."""
    value = none_if_null(value)
    if value is None:
        return None
    value = check_int_at_least(key, value, unit="grid points per chunk")
    if recompute is not None and normalize_recompute(recompute, key=recompute_key) != "block":
        raise ValueError(f"{key}={value!r} is used only with {recompute_key}='block', not with "
                         f"{recompute_key}={recompute!r}; set {recompute_key}='block' or leave {key} unset.")
    return value


def normalize_flag(value, key):
    """An on/off setting as a bool: True/False, or the strings "true"/"false" of a
    command line (any case); TypeError naming the key otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError(f"Invalid {key}={value!r}; allowed values: True, False.")


def dtype_name(dtype):
    """A torch dtype as configs and reports spell it: ``"float16"`` for ``torch.float16``."""
    return str(dtype).replace("torch.", "")


def resolve_half_dtype(half_dtype, device):
    """The torch dtype that ``half_dtype`` means on ``device``.

    "auto" is float16 on CUDA (tensor cores, cuFFT half) and bfloat16 elsewhere:
    CPUs with AVX512-BF16/AMX run bf16 matmuls fast while fp16 CPU matmuls are
    slow, and bf16 has fp32's exponent range, so it cannot overflow.
    """
    name = normalize_half_dtype(half_dtype)
    if name == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    return _TORCH_HALF[name]


def spectral_weight_torch_dtype(name):
    """The torch dtype of a spectral weight dtype name (or alias)."""
    return _TORCH_COMPLEX[normalize_spectral_weight_dtype(name)]


def _is_mapping(obj):
    # a zencfg Bunch is a dict whose attribute access raises KeyError for missing keys
    return isinstance(obj, Mapping)


def read_key(section, key, default=None):
    """Read ``key`` from a config section: a dict, a Bunch or a zencfg config object.

    ``None`` as the section gives ``default``. A missing key gives ``default``, whatever
    the object raises for it: zencfg 0.7's Bunch raises KeyError from attribute access
    (so even ``hasattr`` raises), zencfg 1.0 raises AttributeError.
    """
    if section is None:
        return default
    if _is_mapping(section):
        return section.get(key, default)
    try:
        return getattr(section, key)
    except (AttributeError, KeyError):
        return default


def plain_text(doc):
    """``doc`` (a module docstring shown by ``--help``) with its reST roles and literals as plain
    text: ``:func:`name``` and ````value```` become ``name`` and ``value``."""
    return re.sub(r"(?::\w+:)?`+([^`]+)`+", r"\1", doc)


def public_name(path):
    """A class's ``module.qualname`` (``path``, as a class or a report records it) by the name
    scripts import it under: torch's optimizers from ``torch.optim`` (``torch.optim.sparse_adam.SparseAdam``
    is ``torch.optim.SparseAdam``), else a class in a module named after it from the package
    (``neuralop.training.adamw.AdamW`` is ``neuralop.training.AdamW``), else ``path`` itself.

    A string, not a class: ``neuralop-mp run`` names the classes its script's process recorded."""
    module, _, name = path.rpartition(".")
    exported = getattr(torch.optim, name, None)
    if isinstance(exported, type) and f"{exported.__module__}.{exported.__qualname__}" == path:
        return f"torch.optim.{name}"
    package, _, leaf = module.rpartition(".")
    return f"{package}.{name}" if package and leaf == name.lower() else path


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose usage errors are one line, as ``train`` and ``eval`` print
    theirs: argparse's own ``PROG: error: MESSAGE``, exit status 2, without the usage block it
    prints first (3 to 9 lines before the line that says what is wrong; ``--help`` shows it).
    Options are written in full (``allow_abbrev=False`` unless given): an abbreviation would be
    taken for one option, and an option added later with the same prefix would make it ambiguous."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _check_value(self, action, value):
        # argparse's refusal of a value outside ``choices``, with check_choice's hint
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as error:
            hint = did_you_mean(value, action.choices)
            if not hint:
                raise
            raise argparse.ArgumentError(action, f"{str(error).partition(': ')[2]}.{hint}") from None


@contextmanager
def ignoring_upstream_unused_keys():
    """A block in which upstream's unused-keys warning (:data:`UPSTREAM_UNUSED_KEYS_WARNING`) is
    not shown; every other warning is, and the warning filters are restored when it ends."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UPSTREAM_UNUSED_KEYS_WARNING)
        yield
