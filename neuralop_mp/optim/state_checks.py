"""What :meth:`TensorGRaD.load_state_dict` accepts: checked state, and upstream's layout.

A state dict is checked against the optimizer's parameters *before* anything is
loaded, so one saved for another model size or by another optimizer fails in
``load_state_dict`` with a message naming the parameter, not at the first
``step()`` with a KeyError or a shape error. A compressed state is accepted for any
parameter that can be compressed (``TensorGRaD.eligible_for_compression``), also one now
kept plain because compressing it does not save memory: versions before that rule
compressed every such parameter, and their runs resume compressed, as they went.

Upstream neuraloperator's ``TensorGRaD`` (main branch) keeps, per parameter,
``step`` (an int), ``exp_avg`` / ``exp_avg_sq`` (plain AdamW) or
``low_rank_exp_avg`` / ``low_rank_exp_avg_sq`` (+ ``sparse_exp_avg`` /
``sparse_exp_avg_sq``) as complex tensors with ``|g|^2`` in the second moment,
and projector objects ``low_rank_projector`` (``proj_tensor``: one factor per
mode) and ``sparse_projector`` (``indices`` into the flattened tensor). Its param
groups carry ``tensorgrad`` but not this class's ``compress``. Such a state dict
is converted to this class's layout: same moment keys, real views (bf16-capable)
instead of complex moments, factors and int32 indices as tensors.
"""
import copy
import math

import torch

from .adam_math import STATE_DTYPES, as_real, compute_dtype, real_dtype, storage_dtype
from .seeds import state_seed
from .composite_projector import CompositeProjector
from .settings import (DEFAULTS, UPSTREAM_GROUP_DEFAULTS, check_torch_keys, upstream_compress_flag, validate_group,
                       warn_unknown_keys)
from .state_memory import BASIS_INFIX, compression_saves_memory

#: state key (after ``<branch>_``) of the per-entry births of a part's moments
BIRTH = "birth"
#: top-level key of a state dict listing its parameters' shapes, one list per param group
#: (parallel to its ``params``). Top-level, not in the groups: torch's optimizers copy every
#: group key, so a TensorGRaD state dict loaded into ``AdamW`` would carry it into theirs
PARAM_SHAPES = "param_shapes"
#: state key of a compressed parameter whose basis refresh waits for a nonzero gradient
#: (present only while it waits; see ``compressed_step.project_parts``)
REFRESH_PENDING = "refresh_pending"
#: state key of a compressed parameter whose second part's basis refresh waits for a nonzero
#: residual (the gradient less the first part; present only while it waits)
RESIDUAL_REFRESH_PENDING = "residual_refresh_pending"
REQUIRED_KEYS = ("step", "compressed", "seed")
_BRANCH_SUFFIXES = ("_exp_avg", "_exp_avg_sq", "_step", f"_{BIRTH}")


def is_counter(key, value):
    """Whether state ``key`` is a scalar counter kept on the CPU (``step``, ``compressed``,
    ``seed``, a part's ``<branch>_step``, the pending-refresh flags), not a tensor on the
    parameter's device."""
    return value.dim() == 0 and (key in REQUIRED_KEYS or key in (REFRESH_PENDING, RESIDUAL_REFRESH_PENDING)
                                 or key.endswith("_step"))


def checked_state(optimizer, state_dict):
    """Param groups and ``{param: state}`` of ``state_dict``, checked against ``optimizer``
    and placed as the optimizer keeps them (see :func:`placed_state`).

    A saved group's keys that TensorGRaD does not read (a misspelt setting, another
    optimizer's key) are named in a warning once everything has been checked, by the rule
    of the constructor (:func:`~neuralop_mp.optim.settings.warn_unknown_keys`). A warning,
    not an error, as there: a TensorGRaD given such a key saves it in its state dict, which
    must load again.

    Raises
    ------
    ValueError
        The number of groups or parameters differs, or a parameter's state does
        not fit it (another optimizer's state, another shape, other settings).
    """
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("Invalid optimizer state dict: expected a dict with 'state' and 'param_groups'.")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"The state dict has {len(saved_groups)} param group(s); this TensorGRaD has "
                         f"{len(optimizer.param_groups)}.")
    upstream = is_upstream_layout(saved_groups)
    foreign = None  # the first group of another optimizer: refused once the states are checked
    read = []  # (index, saved group) of the groups loaded: their unknown keys named once all is checked
    groups, by_index = [], {}
    ordinal = 0
    for group_index, (saved, current) in enumerate(zip(saved_groups, optimizer.param_groups)):
        if len(saved["params"]) != len(current["params"]):
            raise ValueError(f"Param group {group_index} of the state dict has {len(saved['params'])} parameters; "
                             f"this TensorGRaD's has {len(current['params'])}: saved for another model.")
        group = _upstream_group(saved) if upstream else dict(saved)
        group = validate_group({**DEFAULTS, **group})
        if upstream or "compress" in saved:
            try:  # torch AdamW's keys, which the step would ignore (maximize=True, amsgrad=True, ...)
                check_torch_keys(group, group["weight_decay"])
            except ValueError as error:
                raise ValueError(f"Param group {group_index} of the state dict: {error}") from None
            read.append((group_index, saved))
        elif foreign is None:
            foreign = group_index, saved
        groups.append(group)
        for position, (index, param) in enumerate(zip(saved["params"], current["params"])):
            ordinal += 1
            by_index[index] = (param, group, group_index, position, ordinal)
    state = {}
    for index, value in state_dict["state"].items():
        if index not in by_index:
            raise ValueError(f"The state dict holds state for parameter index {index!r}, which none of its "
                             "param groups lists.")
        param, group, group_index, position, ordinal = by_index[index]
        where = f"Parameter {position} of param group {group_index} (shape {tuple(param.shape)})"
        if upstream:
            value = _upstream_param_state(value, group, ordinal)
        elif isinstance(value, dict) and any(k.startswith("lowrank_") for k in value):
            # this class's earlier name of the low-rank branch
            value = {("low_rank_" + k[len("lowrank_"):] if k.startswith("lowrank_") else k): v
                     for k, v in value.items()}
        if param.numel() == 0 and isinstance(value, dict) and "compressed" in value and bool(value["compressed"]):
            # earlier versions (and upstream) compressed zero-size weights; their moments hold
            # nothing, and such a weight now takes the plain path
            value = {**{k: value[k] for k in REQUIRED_KEYS if k in value}, "compressed": torch.tensor(False)}
        check_param_state(optimizer, param, group, value, where)
        state[param] = placed_state(param, group, value)
    if foreign is not None:  # after the states, whose message names a stepped one's keys
        _refuse_foreign_group(*foreign)
    # after the state checks, whose messages name the mismatched state: this one also covers
    # the parameters without state
    listed = state_dict.get(PARAM_SHAPES)
    if listed is not None:
        if not isinstance(listed, (list, tuple)) or len(listed) != len(optimizer.param_groups):
            raise ValueError(f"Invalid {PARAM_SHAPES!r} in the state dict: expected one list of shapes for each of "
                             f"its {len(optimizer.param_groups)} param group(s), got {listed!r}.")
        for group_index, (shapes, current) in enumerate(zip(listed, optimizer.param_groups)):
            _check_listed_shapes(group_index, shapes, current["params"])
    for group_index, saved in read:
        warn_unknown_keys(saved, f"of param group {group_index} of the loaded state dict")
    return groups, state


def _refuse_foreign_group(group_index, saved):
    """Raise the ValueError of a param group saved by another optimizer: it has none of
    TensorGRaD's settings (``compress``) nor upstream's (``correct_bias``). Its torch keys
    (``maximize``, ``amsgrad``, Adam's coupled decay) would be ignored by the step, and a
    never-stepped state holds no parameter state that could tell."""
    keys = sorted(key for key in saved if key != "params")
    if {"betas", "amsgrad"} <= set(keys):
        decoupled = saved.get("decoupled_weight_decay")
        writer = {True: "torch.optim.AdamW", False: "torch.optim.Adam"}.get(decoupled, "torch.optim.Adam or AdamW")
    else:
        writer = "another optimizer"
    raise ValueError(f"Param group {group_index} of the state dict was saved by {writer}, not TensorGRaD (its keys "
                     f"{keys} lack TensorGRaD's 'compress'): load it into that optimizer, or start this one fresh.")


def _check_listed_shapes(group_index, shapes, params):
    """Raise ValueError unless each parameter has the shape the state dict lists for it.

    A state dict without the lists (saved before they were written, by upstream's class or
    by torch's optimizers) leaves a parameter without state unchecked: torch's layout names
    parameters by index only, and such a parameter has no state whose shape could tell.
    """
    if not isinstance(shapes, (list, tuple)) or len(shapes) != len(params) \
            or not all(isinstance(shape, (list, tuple)) for shape in shapes):
        raise ValueError(f"Invalid {PARAM_SHAPES!r} in param group {group_index} of the state dict: "
                         f"expected one shape (a tuple) for each of its {len(params)} parameters, got {shapes!r}.")
    for position, (shape, param) in enumerate(zip(shapes, params)):
        if tuple(shape) != tuple(param.shape):
            _fail(f"Parameter {position} of param group {group_index} (shape {tuple(param.shape)})",
                  f"the state dict was saved for a parameter of shape {tuple(shape)}")


def placed_state(param, group, value):
    """A copy of a parameter's checked state as the optimizer keeps it: the scalar counters
    on the CPU, the rest on the parameter's device; floating-point (and complex) tensors in
    the dtype the optimizer makes them in for ``param`` and ``group`` (so an fp32 checkpoint
    resumes a float64 model, as torch's optimizers allow), other tensors in their own dtype
    (int32 indices stay int32). A compressed part's moments and births are made contiguous, as
    the optimizer makes them; other tensors keep their layout, as torch's loader keeps it."""
    placed = {}
    for key, tensor in value.items():
        if isinstance(tensor, torch.Tensor):
            counter = is_counter(key, tensor)
            dtype = None if counter else _made_dtype(param, group, key, tensor)
            # a compressed part's moments and births are stepped through flat views (compressed_step),
            # as the optimizer makes them: contiguous. Bases keep their layout (the product's rounding)
            flat = _branch_of(key) is not None and key.endswith(("_exp_avg", "_exp_avg_sq", f"_{BIRTH}"))
            layout = torch.contiguous_format if flat else torch.preserve_format
            tensor = tensor.to(device="cpu" if counter else param.device, dtype=dtype, copy=True,
                               memory_format=layout)
        placed[key] = tensor
    return placed


def _made_dtype(param, group, key, tensor):
    """The dtype the optimizer makes floating-point state ``key`` of ``param`` in, or None
    (not floating point: kept). A complex tensor stays complex, a real view stays real."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return None
    math_dtype = compute_dtype(param)
    # compressed parts and bases: the group's storage; plain AdamW moments: the math's dtype
    real = storage_dtype(group, math_dtype) if _branch_of(key) is not None else real_dtype(math_dtype)
    return torch.promote_types(real, torch.complex64) if tensor.is_complex() else real


def is_upstream_layout(param_groups):
    """Whether param groups were saved by upstream's ``TensorGRaD`` or ``AdamW``: they
    carry ``correct_bias`` but not this class's ``compress`` (torch's optimizers have neither)."""
    return bool(param_groups) and all("compress" not in g and "correct_bias" in g for g in param_groups)


def _upstream_group(group):
    group = dict(group)
    if "tensorgrad" in group:
        group["compress"] = upstream_compress_flag(group["tensorgrad"])
        for key, value in UPSTREAM_GROUP_DEFAULTS.items():
            group.setdefault(key, value)
    else:
        group["compress"] = False  # upstream's plain AdamW groups
        group.setdefault("adam_convention", "neuralop")
    return group


def _attribute(obj, name):
    if isinstance(obj, dict):
        return obj[name]
    return getattr(obj, name)


def _real_moment(tensor, storage=None):
    """Upstream's complex moment as this class stores it: ``|g|^2`` moments are
    real-valued complex tensors (keep the real part); first moments become real views."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor).contiguous()
    return tensor if storage is None else tensor.to(storage)


def _upstream_param_state(value, group, ordinal):
    if not isinstance(value, dict) or "step" not in value:
        raise ValueError(f"Invalid upstream TensorGRaD state {sorted(value) if isinstance(value, dict) else value!r}"
                         ": expected a dict with 'step'.")
    step = int(value["step"])
    out = {
        "step": torch.tensor(float(step)),
        "compressed": torch.tensor(bool(group["compress"])),
        "seed": torch.tensor(state_seed(group["seed"], ordinal), dtype=torch.int64),
    }
    if "low_rank_projector" not in value:
        if "exp_avg" in value:
            out["exp_avg"] = value["exp_avg"]
            sq = value["exp_avg_sq"]
            out["exp_avg_sq"] = sq.real.contiguous() if sq.is_complex() else sq
        return out
    # moments and factors as TensorGRaD stores them: bf16 when asked, else as computed
    storage = STATE_DTYPES[group["state_dtype"]] if group["state_dtype"] != "float32" else None
    for branch, projector_key in (("low_rank", "low_rank_projector"), ("sparse", "sparse_projector")):
        if projector_key not in value:
            continue
        projector = value[projector_key]
        if branch == "low_rank":
            for mode, factor in enumerate(_attribute(projector, "proj_tensor")):
                out[f"low_rank{BASIS_INFIX}factor_{mode}"] = _real_moment(factor, storage)
        else:
            out[f"sparse{BASIS_INFIX}indices"] = _attribute(projector, "indices").to(torch.int32)
        if f"{branch}_exp_avg" in value:
            out[f"{branch}_exp_avg"] = _real_moment(value[f"{branch}_exp_avg"], storage)
            sq = value[f"{branch}_exp_avg_sq"]
            sq = (sq.real if sq.is_complex() else sq).contiguous()
            out[f"{branch}_exp_avg_sq"] = sq if storage is None else sq.to(storage)
            out[f"{branch}_step"] = torch.tensor(float(step))  # upstream's branches share the step count
    return out


def _fail(where, what):
    raise ValueError(f"{where}: {what}. The state dict was saved for another model or optimizer settings; "
                     "load it into a matching optimizer or start this one fresh.")


def _check_shape(where, key, tensor, expected):
    if not isinstance(tensor, torch.Tensor):
        _fail(where, f"state {key!r} is a {type(tensor).__name__}, expected a tensor")
    if tuple(tensor.shape) != tuple(expected):
        _fail(where, f"state {key!r} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")


def check_param_state(optimizer, param, group, value, where):
    """Raise ValueError unless ``value`` is TensorGRaD state that fits ``param`` in ``group``."""
    if not isinstance(value, dict):
        _fail(where, f"state is a {type(value).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in value]
    if missing:
        raise ValueError(
            f"{where}: state keys {sorted(value)} are not TensorGRaD's (missing {missing}): the state dict was "
            "saved by another optimizer. Load it into that optimizer, or start this one fresh."
        )
    complex_ = compute_dtype(param).is_complex
    real_shape = tuple(param.shape) + ((2,) if complex_ else ())
    convention = group["adam_convention"]
    compressed = bool(value["compressed"])
    # a compressed state is taken for any parameter that could be compressed, also one that
    # is now kept plain because compressing it does not save memory: earlier versions
    # compressed every eligible one, and the step follows the saved flag (the checks below
    # still require the group's layout)
    routed = optimizer.eligible_for_compression(param, group) if compressed else optimizer.routes_to_compression(
        param, group)
    if routed and not compressed and _plain_before_clipping(optimizer, param, group):
        routed = False  # saved by a version whose wider Tucker ranks kept it plain: the step follows the flag
    if compressed != routed:
        _fail(where, f"state was saved {'compressed' if compressed else 'uncompressed'}, but with these settings "
                     f"the parameter is {'uncompressed' if compressed else 'compressed'}")
    if not compressed:
        if "exp_avg" in value:
            _check_shape(where, "exp_avg", as_real(_tensor(where, value, "exp_avg")), real_shape)
            sq_shape = real_shape if convention == "torch" else tuple(param.shape)
            _check_shape(where, "exp_avg_sq", as_real(_tensor(where, value, "exp_avg_sq")), sq_shape)
        return
    projector = optimizer.projector_for(group)
    branches = projector.names
    for key in value:
        branch = _branch_of(key)
        if branch is not None and branch not in branches:
            _fail(where, f"state {key!r} belongs to a {branch!r} part, but the group has only {branches}")
    for name in branches:
        part = projector[name]
        shape = _compressed_shape(where, part, param, value)
        if f"{name}_exp_avg" in value:
            _check_shape(where, f"{name}_exp_avg", value[f"{name}_exp_avg"], shape + ((2,) if complex_ else ()))
            sq = shape + ((2,) if complex_ and convention == "torch" else ())
            _check_shape(where, f"{name}_exp_avg_sq", _tensor(where, value, f"{name}_exp_avg_sq"), sq)
        if f"{name}_{BIRTH}" in value:
            _check_births(where, name, value, shape)
        for key, tensor in value.items():
            if key.startswith(name + BASIS_INFIX):
                _check_basis(where, key, tensor, key[len(name + BASIS_INFIX):], param, part, shape, complex_)


def _plain_before_clipping(optimizer, param, group):
    """Whether ``param`` got plain moments with the Tucker ranks of earlier versions (not
    clipped to the other modes' ranks, which made its compressed state larger)."""
    projector = optimizer.projector_for(group)
    if "low_rank" not in projector.names:
        return False
    # a copy of the group's projector with the old ranks: the group's own stays as it is
    unclipped = copy.copy(projector["low_rank"])
    unclipped.clip_ranks = False
    parts = [unclipped if part.name == "low_rank" else part for part in projector.projectors]
    return not compression_saves_memory(param, group, CompositeProjector(*parts, default_second=False))


def _check_births(where, name, value, shape):
    """Part ``name``'s births (kept sparse moments): integers, one an entry, each the part's
    step count when that entry's moments started, so in ``[0, <name>_step]``. A larger one
    would give the entry an age of 0 or less at the next step (``<name>_step + 1 - birth``):
    no bias correction (a division by zero, an infinite update) or a negative one."""
    key = f"{name}_{BIRTH}"
    births = value[key]
    _check_shape(where, key, births, shape)
    if births.is_floating_point() or births.is_complex():
        _fail(where, f"state {key!r} has dtype {births.dtype}, expected an integer dtype")
    step = _tensor(where, value, f"{name}_step")
    _check_shape(where, f"{name}_step", step, ())
    if births.numel():
        count, low, high = int(step), int(births.min()), int(births.max())
        if low < 0 or high > count:
            _fail(where, f"state {key!r} holds the birth {low if low < 0 else high}, outside [0, {count}] (0 to "
                         f"the part's step count {name + '_step'!r}): corrupted state")


def _tensor(where, value, key):
    """``value[key]``, which must be a tensor."""
    if key not in value:
        _fail(where, f"state {key!r} is missing")
    if not isinstance(value[key], torch.Tensor):
        _fail(where, f"state {key!r} is a {type(value[key]).__name__}, expected a tensor")
    return value[key]


def _compressed_shape(where, part, param, value):
    """Shape of ``part``'s moments for ``param``. A sparse part's count is that of its
    stored indices: upstream's is ``int(ratio * total)``, this class's a ceiling (before
    a float tolerance, one more for e.g. 0.07 * 100), and stepping reads the count from
    the indices (the next refresh moves the moments to a set of this class's count).
    Any of these counts is accepted; another is a state of another model size."""
    if hasattr(part, "unclipped_ranks"):
        return _low_rank_shape(part, param, value)
    key = f"{part.name}{BASIS_INFIX}indices"
    if key not in value:
        return part.compressed_shape(param.shape)
    indices = _tensor(where, value, key)
    total = part.n_candidates(param.shape)
    exact = part.sparse_ratio * total
    counts = sorted({part.n_selected(param.shape), min(total, max(1, int(exact))),
                     min(total, max(1, math.ceil(exact)))})
    if indices.dim() != 1 or indices.numel() not in counts:
        _fail(where, f"state {key!r} has shape {tuple(indices.shape)}, expected ({' or '.join(map(str, counts))},) "
                     f"for sparse_ratio={part.sparse_ratio} of {total}")
    return part.compressed_shape(param.shape, indices.numel())


def _low_rank_shape(part, param, value):
    """Core shape of a Tucker part: that of its ranks or, for a state saved before ranks
    were clipped to the other modes' ranks, that of the unclipped ones when a factor has
    their width (stepping keeps the factors' widths; see ``basis_ranks``)."""
    shape = part.compressed_shape(param.shape)
    ranks = part.unclipped_ranks(param.shape)
    saved = tuple(r if r < d else d for r, d in zip(ranks, param.shape))
    for k in part.compressed_modes(param.shape):
        factor = value.get(f"{part.name}{BASIS_INFIX}factor_{k}")
        if isinstance(factor, torch.Tensor) and factor.dim() >= 2 and factor.shape[1] == saved[k] != shape[k]:
            return saved
    return shape


def _branch_of(key):
    for branch in ("low_rank", "sparse"):
        if key.startswith(branch + BASIS_INFIX) or key in (branch + s for s in _BRANCH_SUFFIXES):
            return branch
    return None


def _check_basis(where, key, tensor, basis_key, param, part, shape, complex_):
    if not isinstance(tensor, torch.Tensor):
        _fail(where, f"state {key!r} is a {type(tensor).__name__}, expected a tensor")
    if basis_key.startswith("factor_"):
        mode = int(basis_key.split("_")[1])
        if mode >= param.dim():
            _fail(where, f"state {key!r} is a factor of mode {mode}, but the parameter has {param.dim()} modes")
        _check_shape(where, key, tensor, (param.shape[mode], shape[mode]) + ((2,) if complex_ else ()))
    elif basis_key == "indices":
        axis = part.mode if getattr(part, "structured", False) else None
        count = shape[axis] if axis is not None else shape[0]
        bound = param.shape[axis] if axis is not None else param.numel()
        _check_shape(where, key, tensor, (count,))
        if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= bound):
            _fail(where, f"state {key!r} holds indices outside [0, {bound})")
