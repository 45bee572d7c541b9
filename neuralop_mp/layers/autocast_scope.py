"""Confining ``torch.autocast`` to part of a model: float32 lifting, projection, pointwise layers.

Under ``torch.autocast`` every linear layer and convolution of a model runs in the 16-bit
type, the 1x1 convolutions of the lifting, projection, skips and channel MLPs included.
With bfloat16 (8 significant bits) that rounding, not the spectral layers, is what puts
the model's precision error above its discretization error (docs/diagnose.md). An
autocast scope says where autocast may act:

- ``"model"``: everywhere (plain autocast);
- ``"fno_blocks"``: inside the FNO blocks only; the lifting, the projection and UNO's
  horizontal skips run in float32;
- ``"spectral"``: nowhere; the model runs as without autocast, so 16 bits are used only
  inside the spectral layers, where ``fno_block_precision`` puts them;
- ``"auto"``: one of these by device, decided at every forward
  (:func:`neuralop_mp.vocabulary.resolve_autocast_scope`).

A module kept in float32 gets a forward pre-hook that, when autocast is on for its
input's device and the scope asks for it, casts its floating inputs to float32 and
switches autocast off until its forward returns (a forward hook that torch runs even
when the forward raises restores autocast). Hooks and plain attributes add no
parameter or buffer, so ``state_dict`` keys are unchanged and upstream checkpoints
still load; outside autocast the hooks change nothing.

References
----------
.. [1] Tu, R., White, C., Kossaifi, J., Bonev, B., Pekhimenko, G., Azizzadenesheli, K.,
   Anandkumar, A. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (their recipe: the layers outside the
   spectral convolution under autocast, i.e. scope "model").
"""
import weakref
from contextlib import contextmanager, nullcontext, suppress

import torch
from torch import nn

from ..vocabulary import normalize_autocast_scope, scope_on_device
from ..wrapped_module import unwrap

# the scopes in which a module of each role runs in float32
_FLOAT32_IN = {"model": ("spectral",), "outside_blocks": ("fno_blocks", "spectral")}
# attributes of FNO/TFNO/UNO that hold the layers outside the FNO blocks
_OUTSIDE_BLOCKS = ("lifting", "projection", "horizontal_skips")
_AUTOCAST_DEVICES = ("cpu", "cuda")


def _device_type(args, kwargs):
    for value in (*args, *kwargs.values()):
        if torch.is_tensor(value):
            return value.device.type
    return None


def _to_float32(value):
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
        return value.to(torch.float32)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value


def _enter_float32(module, args, kwargs):
    """Forward pre-hook: autocast off and float32 inputs, when the scope asks for it."""
    exits = module.__dict__.setdefault("_float32_scope_exits", [])
    device_type = _device_type(args, kwargs)
    if (device_type not in _AUTOCAST_DEVICES or not torch.is_autocast_enabled(device_type)
            or scope_on_device(module._autocast_scope, device_type) not in module._float32_in):
        exits.append(None)
        return None
    no_autocast = torch.autocast(device_type, enabled=False)
    no_autocast.__enter__()
    exits.append(no_autocast)
    return _to_float32(args), _to_float32(kwargs)


def _exit_float32(module, args, output):
    """Forward hook (run even when the forward raises): restore autocast."""
    exits = module.__dict__.get("_float32_scope_exits")
    if exits:  # empty only if an earlier pre-hook raised before ours ran
        no_autocast = exits.pop()
        if no_autocast is not None:
            no_autocast.__exit__(None, None, None)


def scoped_modules(model):
    """``[(module, role)]``: the modules an autocast scope can keep in float32.

    The model itself (role "model", float32 in scope "spectral") and its lifting,
    projection and horizontal skips (role "outside_blocks", float32 in "fno_blocks"
    and "spectral").
    """
    found = [(model, "model")]
    for name in _OUTSIDE_BLOCKS:
        child = model._modules.get(name)
        if isinstance(child, nn.ModuleDict):
            children = list(child.values())
        elif isinstance(child, nn.ModuleList):
            children = list(child)
        else:
            children = [] if child is None else [child]
        found += [(m, "outside_blocks") for m in children]
    return found


def set_autocast_scope(model, scope):
    """Set where ``torch.autocast`` may act on ``model``, in place; returns the previous scope.

    Parameters
    ----------
    model : nn.Module
        An FNO, TFNO or UNO (plugin or upstream class), or a wrapper or container of them
        (DDP, ``nn.Sequential``: each model inside takes the scope, :func:`scope_owners`);
        any other module takes only "model", "spectral" and "auto".
    scope : {"auto", "model", "fno_blocks", "spectral"}

    Raises
    ------
    ValueError
        On an unknown scope, or "fno_blocks" on a model without lifting or projection.

    Warns
    -----
    UnrecordedPrecisionWarning
        Once per model, where upstream's checkpoint of ``model`` would not rebuild the new
        scope (:func:`check_recorded_precision`).

    Examples
    --------
    >>> previous = set_autocast_scope(model, "fno_blocks")
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     y = model(x)   # lifting and projection ran in float32
    """
    scope = normalize_autocast_scope(scope)
    owners = scope_owners(model)
    if owners != [model]:  # a wrapper or container of models: each model inside takes the scope
        previous = {get_autocast_scope(owner) for owner in owners}
        for owner in owners:  # each checks (and warns of) its own record
            set_autocast_scope(owner, scope)
        return previous.pop() if len(previous) == 1 else None  # None: the models inside had different scopes
    modules = scoped_modules(model)
    if scope == "fno_blocks" and len(modules) == 1:
        raise ValueError(f"Invalid autocast_scope='fno_blocks' for {type(model).__name__}: it has no "
                         f"{' / '.join(_OUTSIDE_BLOCKS)} to keep in float32; allowed values for it: "
                         "'auto', 'model', 'spectral'.")
    previous = get_autocast_scope(model)
    for module, role in modules:
        if "_float32_in" not in module.__dict__:
            module.register_forward_pre_hook(_enter_float32, with_kwargs=True)
            module.register_forward_hook(_exit_float32, always_call=True)
            module._float32_in = _FLOAT32_IN[role]
        module._autocast_scope = scope
    check_recorded_precision(model)
    return previous


def get_autocast_scope(model):
    """The model's autocast scope; "model" (plain autocast) if none was ever set. Of a wrapper or
    container of models (:func:`scope_owners`), the scope of the models inside that have one set
    (the plugin's models set theirs when built), which must agree: an upstream model beside a
    plugin one (a frozen upstream FNO and its plugin correction) has none, and disagrees with none."""
    owners = scope_owners(model)
    scopes = {owner.__dict__["_autocast_scope"] for owner in owners if "_autocast_scope" in owner.__dict__} or {"model"}
    if len(scopes) > 1:
        raise ValueError(f"The models inside {type(model).__name__} have different autocast scopes "
                         f"({', '.join(sorted(scopes))}): read each model's own, or set one for all of them.")
    return scopes.pop()


def _is_operator(module):
    """Whether ``module`` has a lifting, projection or horizontal skips of its own (an FNO, TFNO, UNO)."""
    return any(module._modules.get(name) is not None for name in _OUTSIDE_BLOCKS)


def scope_owners(model):
    """The modules whose autocast scope ``model``'s is: ``model`` itself, unless it is a wrapper
    (DDP, DataParallel) or a container holding neural operators (an ``nn.Sequential``, an EMA's
    holder), whose own scope would change nothing inside them: then the outermost operators
    inside (each of which keeps its own hooks), through any wrapper."""
    inner = unwrap(model)
    if _is_operator(inner):
        return [inner]
    found, stack = [], list(inner.children())[::-1]  # the next module to look at last: depth first, in order
    while stack:
        module = unwrap(stack.pop())
        if _is_operator(module):
            found.append(module)
        else:
            stack.extend(list(module.children())[::-1])
    return found or [model]


@contextmanager
def autocast_scope(model, scope):
    """Context manager: run a block with ``model``'s autocast scope set to ``scope``, then restore."""
    with deferred_precision_check(model):  # restored: no warning for the switch itself
        # each model's own scope, restored to it (the models inside a container may have different ones)
        previous = [(owner, get_autocast_scope(owner)) for owner in scope_owners(model)]
        for owner, _ in previous:  # the owners found once: each set (and checked) as itself
            set_autocast_scope(owner, scope)
        try:
            yield model
        finally:
            for owner, owner_scope in previous:
                set_autocast_scope(owner, owner_scope)


# the models whose check is left to an enclosing deferred_precision_check, each with the number of blocks open
# on it; their parts (submodules) too, found when a setter checks (a part's settings are its model's, checked
# when the block ends). Per model, not a flag: a setter on another model inside such a block is checked.
# Counted on the model itself (weakly), not on a context variable or an id: blocks held by generators
# may end in any order, and a freed model's id may be reused by an unrelated one.
_DEFERRED_DEPTH = weakref.WeakKeyDictionary()
# what check_recorded_precision runs: warn_unrecorded_precision, installed by
# neuralop_mp.models.mixed_precision_models, which imports the layers (so they cannot import it,
# not even deferred: tests/test_import_graph.py); importing neuralop_mp imports it first
_recorded_precision_check = None


def install_recorded_precision_check(check):
    """Make :func:`check_recorded_precision` run ``check(model)``."""
    global _recorded_precision_check
    _recorded_precision_check = check


def check_recorded_precision(model):
    """Run by each precision setter once it has changed ``model`` (this module's, and
    :mod:`.layer_precision`'s and :mod:`.precision_switch`'s): warn, once per model, when
    upstream's checkpoint of ``model`` would not rebuild its settings
    (:func:`~neuralop_mp.models.mixed_precision_models.warn_unrecorded_precision`; bare layers
    and the plugin's models pass), unless an enclosing :func:`deferred_precision_check` checks
    instead (one of ``model`` or of a model ``model`` is part of). Here, below the other setter
    modules, so that all of them can import it."""
    if _recorded_precision_check is not None and not _is_deferred(model):
        _recorded_precision_check(model)


def _is_deferred(model):
    """Whether ``model`` (the model inside a data-parallel wrapper: what is switched) is, or is part
    of, a model an open deferred_precision_check holds."""
    model = unwrap(model)
    if not _DEFERRED_DEPTH or model in _DEFERRED_DEPTH:  # no block open, or one on this very model
        return bool(_DEFERRED_DEPTH)
    return any(part is model for held in list(_DEFERRED_DEPTH) for part in held.modules())


@contextmanager
def deferred_precision_check(model):
    """Context manager: the precision setters run inside do not check ``model`` nor its
    submodules; one :func:`check_recorded_precision` of ``model``, for what remains, when the
    block ends, also when it raises (the block's error is then the one raised, even where the
    check fails: a warning filtered into an error). Setters on other models are checked as
    anywhere else.

    For a switch made of several setters (one warning naming all it changed) and for a
    temporary switch (:func:`autocast_scope`, ``precision()``): restored before the block
    ends, it leaves nothing to warn about, and does not use up the model's one warning.
    """
    _DEFERRED_DEPTH[model] = _DEFERRED_DEPTH.get(model, 0) + 1
    ended = False
    try:
        yield
        ended = True
    finally:
        depth = _DEFERRED_DEPTH.pop(model) - 1
        if depth:
            _DEFERRED_DEPTH[model] = depth
        # part of a model an enclosing deferral checks: left to that one. After an error in the block a
        # change that stays is checked too, but the block's error, not the check's, is the one raised
        with nullcontext() if ended else suppress(Exception):
            check_recorded_precision(model)
