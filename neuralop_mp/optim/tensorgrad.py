"""TensorGRaD: AdamW whose moments for large tensor weights live in a compressed space."""
import copy
import functools
import inspect
import warnings
from collections import defaultdict

import torch
from torch.optim import Optimizer

from ..caller_frames import stacklevel_outside
from ..vocabulary import check_real
from . import gradient_chunks, nonfinite
from .adam_math import (
    adam_step,
    as_real,
    compute_dtype,
    decoupled_update_,
    flat_real,
    rounding_chunk,
    rounding_generator,
    second_moment_shape,
    stochastic_round_,
    stochastic_round_chunk_,
)
from .composite_projector import CompositeProjector
from .compressed_step import adam_directions_, apply_update, project_parts, refresh_due, weigh_directions_
from .seeds import WEIGHT_WRITE, rounding_seed, state_seed
from .state_checks import PARAM_SHAPES, checked_state
from .state_memory import compressed_state_bytes, compression_saves_memory, plain_state_bytes, state_memory_report
from .settings import (
    DEFAULTS,
    LAYOUT_KEYS,
    OPTIONS_BY_NAME,
    TORCH_ADAMW_DEFAULTS,
    UPSTREAM_PLAIN_GROUP_DEFAULTS,
    check_torch_keys,
    group_settings,
    layout_change_error,
    layout_of,
    upstream_defaults_of,
    validate_group,
    warn_unknown_keys,
)


def _records_passed_keywords(init):
    """``init`` that first stores in ``self._explicit_keywords`` the names of the settings
    its caller passed (by position or keyword), whatever their values: a keyword equal
    to its default still counts (torch AdamW's keywords, no settings, are left out). The
    signature, defaults included, stays ``init``'s."""
    names = list(inspect.signature(init).parameters)[2:]  # after self and params

    @functools.wraps(init)
    def wrapper(self, params, *args, **kwargs):
        self._explicit_keywords = (frozenset(names[:len(args)]) | frozenset(kwargs)) & DEFAULTS.keys()
        init(self, params, *args, **kwargs)

    return wrapper


class _CheckedTensor:
    """A tensor setting as last checked (a tensor ``lr``, which torch's schedulers change in place
    with ``fill_``): on the CPU its value, read cheaply; on a device, where a read would wait for
    it at every step, the tensor and its in-place version counter (``fill_`` advances it)."""

    __slots__ = ("tensor", "version", "value")

    def __init__(self, tensor):
        try:
            version = tensor._version
        except RuntimeError:  # an inference-mode tensor counts no versions: checked at every step
            version = None
        self.tensor, self.version = tensor, version
        self.value = tensor.item() if tensor.device.type == "cpu" and tensor.numel() == 1 else None

    def holds(self, value):
        """Whether ``value`` is this setting unchanged (else it is checked again)."""
        if not isinstance(value, torch.Tensor):
            return False
        if self.value is not None and value.device.type == "cpu" and value.numel() == 1:
            now = value.item()
            return now == self.value or (now != now and self.value != self.value)  # NaN: as before
        return value is self.tensor and self.version is not None and value._version == self.version


def _settings(group):
    """A param group's keys and values, its ``params`` left out."""
    return {key: value for key, value in group.items() if key != "params"}


def _settings_snapshot(group):
    """:func:`_settings` of ``group`` as checked, a tensor's by value (:class:`_CheckedTensor`):
    what :meth:`TensorGRaD.step` compares the group's settings with."""
    return {key: _CheckedTensor(value) if isinstance(value, torch.Tensor) else value
            for key, value in _settings(group).items()}


def _changed_keys(now, checked):
    """The keys of settings ``now`` (:func:`_settings`) whose values differ from the ``checked``
    snapshot (:func:`_settings_snapshot`; a tensor compared by value, or by its version counter
    on a device), or None when the keys themselves differ or a value cannot be compared."""
    if checked is None or now.keys() != checked.keys():
        return None
    try:
        return [key for key, value in now.items()
                if not (checked[key].holds(value) if isinstance(checked[key], _CheckedTensor)
                        else value is checked[key] or bool(value == checked[key]))]
    except (RuntimeError, TypeError, ValueError):  # e.g. a tensor of several entries under a user's key
        return None


#: settings whose check involves no other key: changed alone (an LR schedule's ``lr``), only
#: they are checked again (the others: rank and sparse_ratio with compress, weight_decay with
#: decoupled_weight_decay, torch's keys)
_STANDALONE = frozenset(OPTIONS_BY_NAME) - {"compress", "rank", "sparse_ratio", "weight_decay"}


class TensorGRaD(Optimizer):
    """AdamW with sparse + low-rank compressed moments for tensor-shaped weights.

    For a routed parameter with gradient ``G`` the optimizer splits ``G`` into
    compressed parts with a :class:`CompositeProjector` (by default a 5% random-k
    sparse part, then a Tucker core of the residual holding 25% of the entries),
    keeps separate Adam moments *and bias-correction step counters* for each
    part in its compressed shape, projects each part's normalised update
    ``m_hat / (sqrt(v_hat) + eps)`` back, and applies
    ``p <- p (1 - lr wd) - lr (scale * U_lowrank + lambda_sparse * sparse_scale * U_sparse)``
    (with ``adam_convention="neuralop"`` the decay follows the update).
    Weight decay is decoupled and applies to compressed parameters too; the
    ordinary ``step()`` never modifies ``p.grad`` (with update in backward the
    gradient is the optimizer's to consume, see ``owns_gradients``). Bases are
    refreshed when the parameter's step count is a multiple of ``update_proj_gap``
    (step 0 included). Every other parameter (and every group with
    ``compress=False``) gets plain AdamW.

    Routing: a parameter is compressed when its group has ``compress=True``, it
    has at least ``min_params`` entries (and is not empty), at least two modes longer than 1,
    and its compressed state (moments, factors, indices) would be smaller than plain AdamW
    moments: otherwise compressing it costs memory (a CP factor of 64 x 629 at the default
    rank keeps a 629 x 314 factor) and it gets plain AdamW moments (counted by
    :meth:`memory_report` as ``kept_plain``). The decision is cached in ``state[p]["compressed"]``.
    Where a ``rank`` or ``sparse_ratio`` the user chose is why, a warning names the group, the
    settings and the shapes (:meth:`keeps_plain_for_chosen_settings`).

    On a refresh, sparse moments are reset by default (``reset_sparse_moments=True``)
    together with that branch's step counter: a new random (or top-k) index set
    mostly selects entries whose history was never tracked, and bias correction
    from a fresh counter restores a correctly scaled first update. A refresh that
    selects the same index set (every entry, at ``sparse_ratio=1.0``) keeps them. With
    ``False`` the moments of entries chosen again move with them and new entries
    start at zero, each entry bias-corrected by its own age. Low-rank moments carry
    over by default: the new factors are rotated to align with the old ones, so the
    core coordinates keep their meaning (set ``reset_lowrank_moments=True`` to reset
    them).

    Complex parameters: first moments are kept on ``view_as_real`` of the
    compressed parts; second moments per real number ("torch" convention) or per
    complex entry ("neuralop"); projections use conjugate transposes. 16-bit
    parameters and gradients (complex32 spectral weights,
    :func:`neuralop_mp.set_spectral_weight_dtype`; float16 / bfloat16 tensors) are
    up-cast (a chunk at a time) to complex64 / fp32 for the math, moments of every branch stay fp32 (or
    ``state_dtype``), and the new weights are written back with stochastic rounding,
    so updates smaller than the 16-bit spacing are not lost.

    Loss scaling: ``step(grad_scale=s)`` divides each gradient by ``s`` after the
    up-cast. :class:`~neuralop_mp.ComplexGradScaler` uses it (``supports_grad_scale``)
    instead of unscaling 16-bit gradients in place, where small ones would underflow.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or param groups. Every keyword below is also a group key.
        A group that names upstream's ``tensorgrad`` key gets upstream's defaults
        for the keys it leaves out (``order="lowrank_first"``, no sparse part,
        ``rank_convention="params"``, gap 50, 10 HOOI sweeps, ``min_params=0``,
        ``adam_convention="neuralop"``, ``scale=1``), and when any group names
        ``tensorgrad``, groups naming neither ``tensorgrad`` nor ``compress`` get
        upstream's plain AdamW (``compress=False, adam_convention="neuralop"``), as
        with upstream's class. A keyword passed to the constructor explicitly (even
        at its default value) wins over these upstream defaults; a group's own keys
        win over both. Groups added later with :meth:`add_param_group` follow the
        same rules.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-6
    weight_decay : float, default 0.0
        Decoupled (AdamW) weight decay, applied to every parameter.
    correct_bias : bool, default True
    adam_convention : {"torch", "neuralop"}, default "torch"
        "torch": as ``torch.optim.AdamW`` (real and imaginary parts normalised
        separately, eps added after bias correction, weight decay before the
        update). "neuralop": as upstream neuraloperator's ``AdamW`` and the
        TensorGRaD authors (one ``|g|^2`` second moment per complex entry, eps
        added before bias correction, weight decay after the update). See
        :func:`~neuralop_mp.optim.adam_math.adam_step`.
    compress : bool, default True
        False: the group is plain AdamW. ``tensorgrad`` is upstream's name for it.
    min_params : int, default 1000
    rank : float, int, sequence of int or None, default 0.25
        Tucker rank (see :class:`TuckerProjector`); None drops the low-rank part. An
        int or tuple above a mode's size is clipped to it; a warning names the weights
        this leaves with plain AdamW moments (:meth:`rank_exceeds_modes`). A tuple holds one
        rank per mode of each parameter the group compresses: another length is refused
        (ValueError) as the group joins.
    rank_convention : {"core", "mode", "params"}, default "core"
        "core": a float rank is the fraction of entries the Tucker core keeps.
    sparse_ratio : float or None, default 0.05
        None drops the sparse part.
    sparse_type : {"randk", "randomk", "topk", "structured", "structured_randk"}, default "randk"
    sparse_mode : int, default 0
        Mode whose slices the structured types keep.
    order : {"sparse_first", "lowrank_first"}, default "sparse_first"
    update_proj_gap : int, default 100
    scale : float, default 4.0
        Multiplier of the low-rank update (upstream's key; upstream's default and
        that of upstream-style groups is 1.0). At rank 0.25 the Adam-normalised
        core update is about half as long as AdamW's; 4.0 matched AdamW on the
        built-in Darcy and Navier-Stokes tasks (docs/tensorgrad.md). Use 1.0 with
        rank 1.0 under ``rank_convention`` "core" or "mode" (every mode at full rank;
        not "params", where 1.0 counts the factors' entries too and a matrix gets a
        lower rank) and ``sparse_ratio=None`` for exactly AdamW (so is
        ``rank=None, sparse_ratio=1.0``, a sparse part keeping every entry).
    sparse_scale, lambda_sparse : float, default 1.0
        Multipliers of the sparse update (upstream's keys).
    scale_by_mask_ratio : bool, default False
        Also multiply the sparse update by ``sqrt(numel / k)`` (upstream's key).
    warm_restart : bool, default True
        Start each Tucker refresh from the previous factors.
    tucker_n_iter_max : int, default 1
        HOOI sweeps per refresh (0 = plain higher-order SVD on a cold start).
    reset_sparse_moments : bool, default True
        True: a refresh resets the sparse moments and their step counter, unless it
        selects the same index set again. False: on a refresh the moments of entries
        chosen again move with them and new entries start at zero; each entry is
        bias-corrected by its own age (the branch's steps since its moments started,
        ``state[p]["sparse_birth"]``, int32, one per entry), so a new entry's first
        update is a fresh Adam's, as with a reset. A state saved before births were
        kept counts every entry as born when the branch's moments started (its
        counter's age), the correction it was stepped with.
    reset_lowrank_moments : bool, default False
    state_dtype : {"float32", "bfloat16"}, default "float32"
        Storage dtype of compressed moments and Tucker factors; the arithmetic is
        fp32, bf16 moments are written with stochastic rounding. Survives
        ``load_state_dict``.
    nonfinite_grad : {"raise", "skip"}, default "raise"
        What a NaN/inf gradient (checked for every parameter before any update)
        or a non-finite update does: raise :class:`~neuralop_mp.optim.nonfinite.NonFiniteError`
        naming the parameter, or warn and skip (see :meth:`step`).
    seed : int in [0, 2**64), default 0
        Seeds random-k selection (per parameter and refresh) and stochastic rounding.
    maximize, foreach, capturable, differentiable, fused, amsgrad, decoupled_weight_decay
        torch AdamW's keywords (and group keys), accepted for drop-in use at the values
        TensorGRaD's step matches: torch's defaults, ``foreach`` any (no effect),
        ``fused=False``, ``decoupled_weight_decay=True`` (its decay is AdamW's; False,
        torch Adam's default, only with ``weight_decay=0``). Any other value
        (``maximize=True``, ``fused=True``, ...) raises ValueError, also set in
        ``param_groups`` (at the next :meth:`step`) or in a loaded group. They are no
        settings: groups do not get them.

    Notes
    -----
    The settings that lay out a parameter's state (``compress``, ``min_params``,
    ``adam_convention``, ``rank``, ``rank_convention``, ``sparse_ratio``, ``sparse_type``,
    ``sparse_mode``, ``state_dtype``:
    :data:`~neuralop_mp.optim.settings.LAYOUT_KEYS`) are fixed once a parameter of the
    group has stepped: changed in ``param_groups`` after that, the next :meth:`step`
    raises ValueError naming the group, the key and both values (a new optimizer restarts
    the state). Plain AdamW moments (a parameter that is not compressed, before the change
    nor after it) are laid out by ``adam_convention`` alone. The others (``lr``, ``betas``, ``eps``, ``weight_decay``, ``scale``,
    ``update_proj_gap``, ...) may change at any time. Any setting changed in ``param_groups``
    is checked again at the next :meth:`step`, as the constructor checks it.

    A refresh whose gradient is all zero (torch.distributed.checkpoint's state
    initialisation, an unused parameter after ``zero_grad(set_to_none=False)``) keeps the
    bases and waits for the next nonzero gradient (``state[p]["refresh_pending"]``); before
    any basis exists such a step only decays the weight. Likewise a second part whose
    residual is all zero (the first part took all of the gradient) keeps its basis and
    waits for the next nonzero residual (``state[p]["residual_refresh_pending"]``).

    References
    ----------
    .. [1] S. Loeschcke, D. Pitt, R. George, J. Zhao, C. Luo, Y. Tian, J. Kossaifi,
       A. Anandkumar, "TensorGRaD: Tensor Gradient Robust Decomposition for
       Memory-Efficient Neural Operator Training", arXiv:2501.02379, 2025.
    .. [2] J. Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient
       Low-Rank Projection", ICML 2024.
    .. [3] I. Loshchilov, F. Hutter, "Decoupled weight decay regularization", ICLR 2019.
    """

    @_records_passed_keywords
    def __init__(self, params, lr=DEFAULTS["lr"], betas=DEFAULTS["betas"], eps=DEFAULTS["eps"],
                 weight_decay=DEFAULTS["weight_decay"], *, correct_bias=DEFAULTS["correct_bias"],
                 adam_convention=DEFAULTS["adam_convention"], compress=DEFAULTS["compress"],
                 min_params=DEFAULTS["min_params"], rank=DEFAULTS["rank"], rank_convention=DEFAULTS["rank_convention"],
                 sparse_ratio=DEFAULTS["sparse_ratio"], sparse_type=DEFAULTS["sparse_type"],
                 sparse_mode=DEFAULTS["sparse_mode"], order=DEFAULTS["order"],
                 update_proj_gap=DEFAULTS["update_proj_gap"], scale=DEFAULTS["scale"],
                 sparse_scale=DEFAULTS["sparse_scale"], lambda_sparse=DEFAULTS["lambda_sparse"],
                 scale_by_mask_ratio=DEFAULTS["scale_by_mask_ratio"], warm_restart=DEFAULTS["warm_restart"],
                 tucker_n_iter_max=DEFAULTS["tucker_n_iter_max"],
                 reset_sparse_moments=DEFAULTS["reset_sparse_moments"],
                 reset_lowrank_moments=DEFAULTS["reset_lowrank_moments"], state_dtype=DEFAULTS["state_dtype"],
                 nonfinite_grad=DEFAULTS["nonfinite_grad"], seed=DEFAULTS["seed"],
                 activation_checkpoint=DEFAULTS["activation_checkpoint"],
                 maximize=TORCH_ADAMW_DEFAULTS["maximize"], foreach=TORCH_ADAMW_DEFAULTS["foreach"],
                 capturable=TORCH_ADAMW_DEFAULTS["capturable"], differentiable=TORCH_ADAMW_DEFAULTS["differentiable"],
                 fused=TORCH_ADAMW_DEFAULTS["fused"], amsgrad=TORCH_ADAMW_DEFAULTS["amsgrad"],
                 decoupled_weight_decay=TORCH_ADAMW_DEFAULTS["decoupled_weight_decay"]):
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
            weight_decay=weight_decay, correct_bias=correct_bias, adam_convention=adam_convention,
            compress=compress, min_params=min_params, rank=rank, rank_convention=rank_convention,
            sparse_ratio=sparse_ratio, sparse_type=sparse_type, sparse_mode=sparse_mode, order=order,
            update_proj_gap=update_proj_gap, scale=scale, sparse_scale=sparse_scale, lambda_sparse=lambda_sparse,
            scale_by_mask_ratio=scale_by_mask_ratio, warm_restart=warm_restart, tucker_n_iter_max=tucker_n_iter_max,
            reset_sparse_moments=reset_sparse_moments, reset_lowrank_moments=reset_lowrank_moments,
            state_dtype=state_dtype, nonfinite_grad=nonfinite_grad, seed=seed,
            activation_checkpoint=activation_checkpoint,
        )
        validate_group(defaults)
        check_torch_keys(dict(maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                              fused=fused, amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay),
                         weight_decay)
        # the only torch keyword whose check depends on a group's own setting (its weight decay)
        self._decoupled_weight_decay = decoupled_weight_decay
        params = list(params) if not isinstance(params, torch.Tensor) else [params]
        # the keys each group named, for the groups a later tensorgrad group turns into AdamW
        # (also in the constructor: the groups join one at a time, none has state yet)
        self._group_keys = []
        self._layouts = []  # each group's LAYOUT_KEYS as its parameters' state is built (see step)
        self._checked = []  # each group's keys as last checked (see _check_settings)
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a group (also after construction); its settings are checked before
        it joins, so a bad value leaves the optimizer unchanged.

        The group gets the settings it would get from the constructor (see the class
        docstring): a plain group joining an optimizer with a group that names
        ``tensorgrad`` is upstream's plain AdamW. When the first group naming
        ``tensorgrad`` joins after construction, the groups already there that named
        neither ``tensorgrad`` nor ``compress`` become upstream's plain AdamW too, as
        they would have in the constructor, if they have not stepped yet; one that has
        keeps the settings its moments were made with, and a warning names it.

        Keys of the group that TensorGRaD does not read are named in one warning, with the
        group's index, once it has joined (:func:`~neuralop_mp.optim.settings.warn_unknown_keys`):
        a later group joining does not name them again.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"Invalid param_group of type {type(param_group).__name__}; expected a dict.")
        param_group = dict(param_group)
        params = param_group.get("params")
        if params is not None and not isinstance(params, (torch.Tensor, set)):  # torch refuses a set
            param_group["params"] = list(params)  # an iterator is read once, here
        upstream = self._upstream_style()
        keys = frozenset(k for k in param_group if k != "params")
        param_group.update(group_settings(param_group, self.defaults, self._explicit_keywords, upstream))
        self._check_constructor_decay(param_group)
        index = len(self.param_groups)
        self._check_shapes(param_group, index)
        super().add_param_group(param_group)
        self._group_keys.append(keys)
        self._layouts.append(layout_of(param_group))
        self._checked.append(_settings_snapshot(self.param_groups[-1]))
        if not upstream and "tensorgrad" in keys:
            self._plain_groups_become_upstream_adamw()
        # once, as it joins (a refused group is not named); last, so a warning raised as an
        # error (-W error) leaves the joined group's bookkeeping complete
        warn_unknown_keys(param_group, f"of param group {index}")
        self._warn_rank_above_modes(self.param_groups[-1], index)
        self._warn_chosen_settings_keep_plain(index)

    @staticmethod
    def _warn_rank_above_modes(group, index):
        """Warn once, naming param group ``index``, its rank and the shapes, where an int or
        tuple rank above the mode sizes leaves parameters with plain AdamW moments
        (:meth:`rank_exceeds_modes`): a rank meant to compress them, silently clipped."""
        params = group["params"]
        shapes = list(dict.fromkeys(tuple(p.shape) for p in params if TensorGRaD.rank_exceeds_modes(p, group)))
        if shapes:
            warnings.warn(
                f"TensorGRaD: rank={group['rank']!r} of param group {index} is above a mode size of its "
                f"parameters of shape {', '.join(map(str, shapes))}: clipped to the mode sizes, their compressed "
                "state would not be smaller than AdamW moments, so they keep plain AdamW moments. A rank "
                "below the mode sizes compresses them.", UserWarning,
                stacklevel=stacklevel_outside(nonfinite.OPTIMIZER_CODE_FOLDERS, nonfinite.OPTIMIZER_CODE_FILES))

    def chosen_compression_settings(self, index):
        """The ``rank`` and ``sparse_ratio`` of param group ``index`` that its user chose: set, to
        another value than the default the group would have without them (upstream's, for a group
        naming ``tensorgrad``). None, which drops a part and so shrinks the state, is no choice
        that can keep a weight plain. Configs pass every field, their defaults too: those are the
        defaults' routing, not the user's choice."""
        group, keys = self.param_groups[index], self._group_keys[index] or ()
        defaults = {**DEFAULTS, **upstream_defaults_of(keys, self._upstream_style())}
        return {key: group[key] for key in ("rank", "sparse_ratio")
                if group[key] is not None and group[key] != defaults[key]}

    def keeps_plain_for_chosen_settings(self, param, index):
        """Whether ``param`` of param group ``index``, which the group could compress
        (:meth:`eligible_for_compression`), keeps plain AdamW moments because its compressed state
        would be no smaller, under a rank or sparse ratio the user chose
        (:meth:`chosen_compression_settings`). Not where the rank is above its mode sizes
        (:meth:`rank_exceeds_modes`, warned of on its own), nor where a part keeps all of the
        weight (full rank in every mode, or every entry: the documented way to ask for AdamW
        itself). The constructor warns of it, once per group."""
        group = self.param_groups[index]
        if not (self.chosen_compression_settings(index) and self.eligible_for_compression(param, group)):
            return False
        if self.routes_to_compression(param, group) or self.rank_exceeds_modes(param, group):
            return False
        shape = tuple(param.shape)
        return not any(part.kept_fraction(shape) == 1 if part.name == "sparse" else not part.compressed_modes(shape)
                       for part in self.projector_for(group).projectors)

    def _warn_chosen_settings_keep_plain(self, index):
        """Warn once, naming param group ``index``, the chosen settings, the shapes and both sizes,
        where :meth:`keeps_plain_for_chosen_settings`: settings meant to compress the weights that
        silently give them AdamW's moments."""
        group = self.param_groups[index]
        chosen = self.chosen_compression_settings(index)
        if not chosen:  # the defaults' own routing (e.g. a weight just above min_params): no warning
            return
        plain = [p for p in group["params"] if self.keeps_plain_for_chosen_settings(p, index)]
        if not plain:
            return
        projector = self.projector_for(group)
        sizes = {}
        for p in plain:  # one entry per shape and dtype: weights alike have alike state
            shape, dtype = tuple(p.shape), compute_dtype(p)
            sizes.setdefault((shape, dtype), (compressed_state_bytes(shape, dtype, group, projector),
                                              plain_state_bytes(shape, dtype, group["adam_convention"])))
        shapes = ", ".join(map(str, dict.fromkeys(shape for shape, _ in sizes)))
        listed = "; ".join(f"{shape} {str(dtype).removeprefix('torch.')}: {compressed:,} bytes against {adamw:,}"
                           for (shape, dtype), (compressed, adamw) in sizes.items())
        settings = ", ".join(f"{key}={value!r}" for key, value in chosen.items())
        warnings.warn(
            f"TensorGRaD: {settings} of param group {index} leaves its parameters of shape {shapes} with plain "
            "AdamW moments: their compressed state (moments, Tucker factors, sparse indices) would be no smaller "
            f"than AdamW's moments ({listed}). A lower rank or sparse_ratio compresses them.", UserWarning,
            stacklevel=stacklevel_outside(nonfinite.OPTIMIZER_CODE_FOLDERS, nonfinite.OPTIMIZER_CODE_FILES))

    def _check_constructor_decay(self, group):
        """Refuse (ValueError) a nonzero ``weight_decay`` in a ``group`` that names no
        ``decoupled_weight_decay`` when the constructor was given ``decoupled_weight_decay=False``
        (torch Adam's coupled decay, which the step does not make): the one torch keyword whose
        check depends on a group's own setting. Run as a group joins, when its settings change in
        ``param_groups`` and on each group ``load_state_dict`` loads."""
        if "decoupled_weight_decay" not in group:
            check_torch_keys({"decoupled_weight_decay": self._decoupled_weight_decay}, group["weight_decay"])

    @staticmethod
    def _check_shapes(group, index):
        """Raise ValueError, naming param group ``index``, the parameter and its shape, if the
        group could compress a parameter (:meth:`eligible_for_compression`) whose shape its
        settings do not fit (a rank tuple of another length, a structured ``sparse_mode``
        beyond its modes): found as the group joins or its settings change, not partway
        through a step."""
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else params
        if isinstance(params, set):
            return  # torch's add_param_group refuses it
        names = group.get("param_names", ())  # a group that joined with (name, parameter) pairs
        projector = None
        for position, param in enumerate(params):
            name, param = param if isinstance(param, tuple) and len(param) == 2 else (None, param)
            if name is None and position < len(names):
                name = names[position]
            # every eligible one: the memory estimate that completes the routing needs the fit
            if not isinstance(param, torch.Tensor) or not TensorGRaD.eligible_for_compression(param, group):
                continue
            projector = projector or TensorGRaD.projector_for(group)
            for part in projector.projectors:
                try:
                    part.compressed_shape(param.shape)
                except ValueError as error:
                    label = f"parameter {name!r}" if name is not None else f"parameter {position}"
                    raise ValueError(
                        f"TensorGRaD: {label} of param group {index} (shape "
                        f"{tuple(param.shape)}) is compressed, but its group's settings do not fit it: {error} "
                        "Fix the setting, or put the parameter in a group with compress=False.") from None

    def _upstream_style(self):
        """Whether a group names upstream's ``tensorgrad`` key (the group dicts keep it)."""
        return any("tensorgrad" in group for group in self.param_groups)

    def _plain_groups_become_upstream_adamw(self):
        """A first group naming ``tensorgrad`` joined after construction: the groups that
        named neither ``tensorgrad`` nor ``compress`` get upstream's plain AdamW settings,
        as in the constructor, unless they have stepped (then they keep theirs, with a warning)."""
        for index, (group, keys) in enumerate(zip(self.param_groups, self._group_keys)):
            if keys is None or "tensorgrad" in keys or "compress" in keys:
                continue  # keys None: unpickled from a version that did not record them
            own = {key: group[key] for key in keys}
            settings = group_settings(own, self.defaults, self._explicit_keywords, upstream=True)
            wanted = {key: settings[key] for key in UPSTREAM_PLAIN_GROUP_DEFAULTS}
            if all(group[key] == value for key, value in wanted.items()):
                continue
            if any(self.state.get(p) for p in group["params"]):
                have = ", ".join(f"{key}={group[key]!r}" for key in wanted)
                warnings.warn(
                    f"TensorGRaD: param group {index} names neither 'tensorgrad' nor 'compress'; beside the "
                    f"'tensorgrad' group just added it would be upstream's plain AdamW "
                    f"({', '.join(f'{k}={v!r}' for k, v in wanted.items())}), but it has already stepped "
                    f"with {have} and keeps them. Pass all groups to the constructor, or name "
                    "'compress' in each group, for the same settings either way.", UserWarning, stacklevel=3)
                continue
            group.update(wanted)
            self._layouts[index] = layout_of(group)

    def __getstate__(self):
        # torch's keeps defaults, state and param groups only (pickle, copy.deepcopy)
        return {**super().__getstate__(), "_explicit_keywords": self._explicit_keywords,
                "_group_keys": self._group_keys, "_layouts": self._layouts,
                "_decoupled_weight_decay": self._decoupled_weight_decay}

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                # torch's __setstate__ adds "differentiable" to the defaults: no setting of this class
                if key in DEFAULTS:
                    group.setdefault(key, value)
        # an optimizer pickled by a version that did not record them
        self.__dict__.setdefault("_explicit_keywords", frozenset())
        self.__dict__.setdefault("_group_keys", [None] * len(self.param_groups))
        self.__dict__.setdefault("_decoupled_weight_decay", TORCH_ADAMW_DEFAULTS["decoupled_weight_decay"])
        if "_layouts" not in state:  # load_state_dict (the loaded groups built the loaded state), older pickles
            self._layouts = [layout_of(group) for group in self.param_groups]
        # loaded groups were checked by load_state_dict (unpickled ones when they stepped): a
        # later change is checked at the next step (not pickled: a snapshot would have to
        # compare equal to the unpickled groups' copies of their tensors)
        self._checked = [_settings_snapshot(group) for group in self.param_groups]

    def _check_settings(self, groups=None):
        """Check again the settings of each group changed in ``param_groups`` since it was last
        checked (``groups``: ``(index, group)`` pairs, default all), as the constructor checks
        them: an invalid value (``update_proj_gap=0``, ``state_dtype="float16"``,
        ``lambda_sparse=nan``) or a torch AdamW key the step would ignore (``maximize=True``)
        raises the constructor's error, naming the group. A group's checked values (a list as a
        tuple, a numpy number as a float) are written back. Costs a comparison of the group's
        keys with the last checked copy when nothing changed."""
        for index, group in enumerate(self.param_groups) if groups is None else groups:
            snapshot = _settings(group)
            changed = _changed_keys(snapshot, self._checked[index])
            if changed == []:
                continue
            try:
                if changed is not None and _STANDALONE.issuperset(changed):
                    settings = {key: OPTIONS_BY_NAME[key].check(key, group[key]) for key in changed}
                else:
                    missing = [key for key in DEFAULTS if key not in group]
                    if missing:
                        raise ValueError(f"the settings {missing} were removed from the group; set them back")
                    settings = validate_group({key: group[key] for key in DEFAULTS})
                    # a torch AdamW key asking for what TensorGRaD lacks is refused; of the unknown keys only
                    # one added since the last check is named: the others were, as the group entered
                    check_torch_keys(snapshot, settings["weight_decay"])
                    warn_unknown_keys(snapshot, f"of param group {index} (added in param_groups)",
                                      self._checked[index])
                    self._check_constructor_decay({**group, **settings})
            except (TypeError, ValueError) as error:
                raise type(error)(f"TensorGRaD: param group {index} was changed in param_groups: {error}") from None
            group.update(settings)
            self._checked[index] = _settings_snapshot(group)

    def _check_layouts(self, groups=None):
        """Refuse a change of a group's :data:`~neuralop_mp.optim.settings.LAYOUT_KEYS` since
        its parameters' state was built (ValueError naming the group, the key and both values;
        see :meth:`laid_out_keys` for the changes taken), and new settings that do not fit a
        parameter the group could compress (ValueError naming it, see :meth:`_check_shapes`).
        ``groups``: ``(index, group)`` pairs, default all. Compares a few values per group:
        the state is looked at only when they differ."""
        for index, group in enumerate(self.param_groups) if groups is None else groups:
            built, now = self._layouts[index], layout_of(group)
            if now == built:
                continue
            stepped = [(p, self.state[p]) for p in group["params"] if self.state.get(p)]
            changed = [key for key in now if now[key] != built[key]]
            if self.laid_out_keys(index, group, stepped, changed):
                raise layout_change_error(index, built, now)
            # the new settings lay out the states started from now on
            self._check_shapes(group, index)
            self._layouts[index] = now

    @staticmethod
    def laid_out_keys(index, group, stepped, changed):
        """Those of the ``changed`` settings of param group ``index`` that laid out the state
        of its parameters (:data:`~neuralop_mp.optim.settings.LAYOUT_KEYS`): the ones
        :meth:`step` refuses changed. Nothing is laid out before a parameter of the group
        has stepped, and plain AdamW moments (no stepped parameter compressed, before the
        change nor with ``group``'s settings) by ``adam_convention`` alone.

        Parameters
        ----------
        index : int
            The group's index, which an error names.
        group : dict
            The group with the changed settings.
        stepped : list of (torch.Tensor, dict)
            The group's parameters that have stepped, each with its (non-empty) state.
        changed : iterable of str
            The keys whose values differ from those the state was built with.

        Returns
        -------
        set of str

        Raises
        ------
        ValueError
            The changed settings do not fit a parameter the group could compress (see
            :meth:`_check_shapes`): its routing cannot be told.
        """
        changed = {key for key in changed if key in LAYOUT_KEYS}
        if not stepped or changed <= {"adam_convention"}:
            return changed if stepped else set()
        if any(bool(state.get("compressed", False)) for _, state in stepped):
            return changed
        # a group without these settings (another optimizer's) compresses nothing
        if "compress" in group and "min_params" in group:
            # the routing's memory estimate builds the changed projector: a misfit is named here
            TensorGRaD._check_shapes(group, index)
            if any(TensorGRaD.routes_to_compression(p, group) for p, _ in stepped):
                return changed
        return changed & {"adam_convention"}

    @staticmethod
    def eligible_for_compression(param, group):
        """Whether ``param`` in ``group`` could get compressed moments: the group has
        ``compress=True``, ``param`` at least ``min_params`` entries (and one at least) and
        two modes longer than 1. Its settings must fit such a parameter (see ``_check_shapes``)."""
        long_modes = sum(1 for d in param.shape if d > 1)
        # an empty weight has nothing to compress (and no entry for a sparse part to keep)
        return bool(group["compress"]) and param.numel() >= max(1, group["min_params"]) and long_modes >= 2

    @staticmethod
    def routes_to_compression(param, group):
        """Whether ``param`` in ``group`` gets compressed moments: it is eligible
        (:meth:`eligible_for_compression`) and its compressed state is smaller than plain
        AdamW moments (:func:`~neuralop_mp.optim.state_memory.compression_saves_memory`)."""
        return TensorGRaD.eligible_for_compression(param, group) and compression_saves_memory(
            param, group, TensorGRaD.projector_for(group))

    @staticmethod
    def rank_exceeds_modes(param, group):
        """Whether ``param`` keeps plain AdamW moments in ``group``, which could compress it
        (:meth:`eligible_for_compression`), under an int or tuple ``rank`` above one of its
        mode sizes (:meth:`asks_rank_above_modes`): clipped to them, its compressed state is not
        smaller (:meth:`routes_to_compression`). The constructor warns of it, once per group."""
        return (TensorGRaD.eligible_for_compression(param, group) and TensorGRaD.asks_rank_above_modes(param, group)
                and not TensorGRaD.routes_to_compression(param, group))

    @staticmethod
    def asks_rank_above_modes(param, group):
        """Whether ``group``'s int or tuple ``rank`` asks more than one of ``param``'s mode sizes,
        as the group's Tucker projector reads it (:meth:`TuckerProjector.asked_ranks
        <neuralop_mp.optim.tucker_projector.TuckerProjector.asked_ranks>`); a fraction never does.
        For a parameter the group could compress (:meth:`eligible_for_compression`, which this
        does not check): a tuple of another length than its modes raises the projector's
        ValueError naming both, as the constructor refused it (:meth:`_check_shapes`)."""
        rank = group["rank"]
        if rank is None or isinstance(rank, float):  # no Tucker part; a fraction never exceeds a mode
            return False
        asked = TensorGRaD.projector_for(group)["low_rank"].asked_ranks(param.shape)
        return any(r > d for r, d in zip(asked, param.shape))

    @staticmethod
    def projector_for(group):
        """The (stateless) composite projector a group's settings describe."""
        return CompositeProjector.from_settings(
            group["rank"], group["sparse_ratio"], order=group["order"], sparse_type=group["sparse_type"],
            sparse_mode=group["sparse_mode"], rank_convention=group["rank_convention"],
            n_iter=group["tucker_n_iter_max"], warm_start=group["warm_restart"],
        )

    # -------------------------------------------------------------------- step
    supports_grad_scale = True
    # set by neuralop_mp.optim.update_in_backward while it steps one parameter at a time:
    # each gradient is the optimizer's to consume (a compressed weight's sparse residual is
    # written into it) and is released as soon as it is projected (or up-cast)
    owns_gradients = False

    @torch.no_grad()
    def step(self, closure=None, *, grad_scale=None, gradients_checked=False):
        """Perform one optimisation step; returns the closure's loss if given.

        A compressed weight's step reads its gradient in chunks and updates the
        weight a block of rows at a time (:mod:`~neuralop_mp.optim.compressed_step`),
        so its temporaries are a few :func:`~neuralop_mp.optim.gradient_chunks.chunk_bytes`
        besides the compressed parts, whatever the weight's size.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss.
        grad_scale : float, optional
            The gradients are ``grad_scale`` times the true ones (loss scaling): each
            is divided by it in fp32, after the up-cast from its storage dtype.
        gradients_checked : bool, default False
            The caller has just found every gradient finite
            (:class:`~neuralop_mp.ComplexGradScaler` does, before it steps): the
            optimizer's own check, a pass over all gradients and a read back to the
            host, is not made again. Ignored with a ``closure``, which makes new gradients.

        Raises
        ------
        ValueError, TypeError
            A setting changed in ``param_groups`` is invalid (as the constructor would
            refuse it, e.g. ``update_proj_gap=0``, ``maximize=True``), or a setting that lays
            out the state (:data:`~neuralop_mp.optim.settings.LAYOUT_KEYS`) was changed in a
            group whose parameters have stepped; nothing is updated.
        NonFiniteError
            A gradient holds NaN or inf (checked for every parameter before any is
            updated), or an update is not finite (e.g. ``eps=0`` with a zero
            moment), and the group's ``nonfinite_grad`` is "raise". With "skip",
            a warning is issued instead and nothing (a gradient) or that
            parameter (an update) is left unchanged.

        Notes
        -----
        The updates of uncompressed parameters are checked together, a chunk's worth
        of them at a time in order, with one read back to the host (on a GPU every
        read waits for the device): the finite ones of such a batch are applied,
        then a non-finite one raises (or warns), so the parameters stepped before
        the error are those up to the end of its batch. Any other error partway
        through the step still applies the updates computed before it, as when
        each was applied at once.
        """
        if grad_scale is not None:
            scale = check_real("grad_scale", grad_scale, low=0, low_open=True)
            if not isinstance(grad_scale, torch.Tensor):  # a 0-d tensor is kept, as before
                grad_scale = scale
        self._check_settings()
        self._check_layouts()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # whether a gradient is all zero matters where a compressed basis is refreshed: read with
        # the finite check, not a read per parameter (docs/tensorgrad.md, one host read)
        refreshing = self._refreshing()
        if closure is not None or not gradients_checked:
            finite, zero = nonfinite.gradient_flags(self, refreshing)
            if not finite:
                return loss
        else:  # the caller checked the gradients: the refreshes' flags alone, one read per device
            zero = nonfinite.zero_flags(refreshing) if refreshing else {}
        # dense updates wait for one shared finite check (a chunk's worth at a time, in
        # order): on a GPU a check per parameter would wait for the device each time
        pending = []
        try:
            self._step_all(pending, grad_scale, zero)
        except BaseException as error:
            # a parameter whose moments have moved is stepped, as it was before the error
            try:
                nonfinite.apply_finite_updates(pending, self._apply)
            except Exception as also:  # e.g. a non-finite update: named, the first error kept
                error.add_note(f"TensorGRaD, finishing the step's earlier parameters: {also}")
            raise
        return loss

    def _refreshing(self):
        """The parameters with a gradient whose step refreshes a compressed basis
        (:func:`~neuralop_mp.optim.compressed_step.refresh_due`), or may: one without state
        yet that could be compressed (its first step refreshes, if the routing compresses it)."""
        refreshing = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or p.grad.is_sparse:
                    continue
                state = self.state.get(p)
                if self._refreshes(p, group) if state else self.eligible_for_compression(p, group):
                    refreshing.append(p)
        return refreshing

    def _refreshes(self, p, group):
        """Whether the next step of ``p`` (a parameter with state) refreshes compressed bases."""
        state = self.state[p]
        return bool(state["compressed"]) and refresh_due(state, group)

    def _step_all(self, pending, grad_scale, zero):
        waiting = 0  # bytes of the updates in pending

        def flush():
            nonlocal waiting
            waiting = 0  # zeroed first: an apply that raises leaves no count behind
            nonfinite.apply_finite_updates(pending, self._apply)

        ordinal = 0
        for group_index, group in enumerate(self.param_groups):
            for position, p in enumerate(group["params"]):
                ordinal += 1
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("TensorGRaD does not support sparse gradients (torch.sparse layouts).")
                state = self._state_of(p, group, ordinal)
                if bool(state["compressed"]):
                    flush()  # in order: earlier ones first
                    self._step_compressed(p, p.grad, group, group_index, position, state, grad_scale,
                                          self.owns_gradients, zero.get(p))
                    continue
                grad = p.grad.to(compute_dtype(p))
                if grad_scale is not None and grad_scale != 1.0:
                    grad = grad.mul_(1.0 / grad_scale) if grad is not p.grad else grad / grad_scale
                if self.owns_gradients:  # up-cast: nothing reads this gradient again
                    p.grad = None
                update = self._dense_update(grad, group, state)
                del grad  # its memory is free for the update's application
                state["step"] += 1
                pending.append((update, group, group_index, position, p, state))
                # applied once a chunk's worth waits, before the next update is computed: a
                # large update never waits beside another (a few dozen entries at most)
                waiting += update.numel() * update.element_size()
                if waiting >= gradient_chunks.chunk_bytes(update.device):
                    flush()
        flush()

    def _state_of(self, p, group, ordinal):
        """``self.state[p]``, started on the parameter's first step (``ordinal``: its
        1-based position over all groups, which names its random streams)."""
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["compressed"] = torch.tensor(self.routes_to_compression(p, group))
            state["seed"] = torch.tensor(state_seed(group["seed"], ordinal), dtype=torch.int64)
        return state

    def _step_compressed(self, p, grad, group, group_index, position, state, grad_scale, owns_grad, zero=None):
        projector = self.projector_for(group)
        bases, parts = project_parts(p, projector, group, state, grad_scale, owns_grad, grad=grad, zero=zero)
        if owns_grad:  # projected: nothing reads this gradient again
            p.grad = None
        if hasattr(grad, "release"):  # a lazily computed gradient: its operands, likewise
            grad.release()
        del grad
        directions = weigh_directions_(p, projector, bases, adam_directions_(parts, group, state), group)
        state["step"] += 1
        if nonfinite.update_is_finite(directions, group, group_index, position, p):
            apply_update(p, projector, bases, directions, group, state)

    def steps_from_slices(self, param):
        """Whether :meth:`step_parameter` reads ``param``'s gradient only in slices: its
        moments are compressed (plain AdamW moments need the whole gradient)."""
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                state = self.state.get(param)
                return bool(state["compressed"]) if state else self.routes_to_compression(param, group)
        return False

    @torch.no_grad()
    def step_parameter(self, param, grad):
        """Step ``param`` alone from ``grad``, as :meth:`step` would with ``param.grad = grad``
        (no loss scale); ``param.grad`` is neither read nor written.

        For update in backward: ``grad`` may be any object with the gradient's ``shape``,
        ``dtype``, ``device`` and a ``narrow(axis, start, length)`` returning that slice
        (e.g. :class:`~neuralop_mp.layers.lazy_weight_gradient.LazyWeightGradient`), since
        a compressed weight's step reads its gradient only in such slices. A ``grad``
        with a ``release()`` method is released once projected.

        Raises
        ------
        ValueError
            ``param`` is not in this optimizer, or its step needs the whole gradient
            (see :meth:`steps_from_slices`), or a setting that lays out the state was
            changed after the group stepped (see :meth:`step`).
        NonFiniteError
            As :meth:`step`, for this gradient.
        """
        if not self.steps_from_slices(param):
            raise ValueError("step_parameter needs a parameter of this optimizer with compressed moments "
                             f"(shape {tuple(param.shape)}); plain AdamW moments are stepped by step().")
        ordinal = 0
        for group_index, group in enumerate(self.param_groups):
            for position, p in enumerate(group["params"]):
                ordinal += 1
                if p is not param:
                    continue
                self._check_settings([(group_index, group)])  # its own group: this runs once per parameter
                self._check_layouts([(group_index, group)])
                state = self.state.get(p)
                # a refresh's zero test rides the finite check's read (and its computation of a lazy gradient)
                refreshing = not state or refresh_due(state, group)
                finite, zero = nonfinite.single_gradient_flags(grad, group, group_index, position, p,
                                                               zero_tested=refreshing)
                if finite:
                    state = self._state_of(p, group, ordinal)
                    self._step_compressed(p, grad, group, group_index, position, state, None, False, zero)

    @staticmethod
    def _apply(p, update, group, state):
        """Decoupled weight decay and the update, in the order of the group's
        ``adam_convention``: "torch" ``p <- p (1 - lr wd) - lr u``, "neuralop"
        ``p <- (p - lr u)(1 - lr wd)``. A 16-bit ``p`` is updated in fp32 and
        written back with stochastic rounding, chunk by chunk, so no fp32 copy of
        the whole weight is made."""
        if compute_dtype(p) == p.dtype:
            decoupled_update_(p, update, group)
            return
        # step was already advanced: the pre-increment count names this step's noise stream
        seed = rounding_seed(state["seed"], int(state["step"]) - 1, WEIGHT_WRITE)
        stored, change = flat_real(p), flat_real(update.contiguous())
        if stored is None:  # a strided weight: through a whole fp32 copy
            wide = p.to(update.dtype)
            decoupled_update_(wide, update, group)
            stochastic_round_(p, wide, seed)
            return
        generator = rounding_generator(seed, p.device)
        length = rounding_chunk(p.device)
        for start in range(0, stored.numel(), length):
            chunk = slice(start, start + length)
            wide = stored[chunk].float()
            decoupled_update_(wide, change[chunk], group)
            stochastic_round_chunk_(stored[chunk], wide, generator)

    def _dense_update(self, grad, group, state):
        convention = group["adam_convention"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            if convention == "torch":  # complex like the gradient, as torch's AdamW keeps it
                state["exp_avg_sq"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            else:  # one real |g|^2 per (complex) entry, as upstream's AdamW
                state["exp_avg_sq"] = torch.zeros(second_moment_shape(grad, convention), dtype=as_real(grad).dtype,
                                                  device=grad.device)
        beta1, beta2 = group["betas"]
        exp_avg_sq = as_real(state["exp_avg_sq"]) if convention == "torch" else state["exp_avg_sq"]
        return adam_step(as_real(state["exp_avg"]), exp_avg_sq, grad, float(state["step"]) + 1, beta1, beta2,
                         group["eps"], group["correct_bias"], convention)

    # ------------------------------------------------------------- state_dict
    def state_dict(self):
        """torch's state dict, with each parameter's shape listed under the top-level key
        ``param_shapes`` (one list per param group, parallel to its ``params``):
        :meth:`load_state_dict` checks it, so a parameter that has no state yet (no
        step, or no gradient so far) is checked against the model too. torch's optimizers
        ignore the key when they load the state dict."""
        state_dict = super().state_dict()
        state_dict[PARAM_SHAPES] = [[tuple(p.shape) for p in group["params"]] for group in self.param_groups]
        return state_dict

    def load_state_dict(self, state_dict):
        """Load a state_dict after checking that it fits these parameters.

        Accepted: a state_dict of this class, or one in the layout of upstream
        neuraloperator's ``TensorGRaD`` (main branch), which is converted. Every
        parameter's state is checked against the parameter (kind of state, moment
        and basis shapes, the births of kept sparse moments), and every parameter's
        shape against the one the state dict lists (``param_shapes``, saved by
        :meth:`state_dict`; state dicts without it, older ones, torch's and upstream's,
        list none), before anything is loaded: a state dict of another optimizer or of
        another model size raises a ValueError naming the parameter and the mismatch. A
        loaded group's keys that TensorGRaD does not read are named in a warning, as the
        constructor names a joining group's (:func:`~neuralop_mp.optim.settings.warn_unknown_keys`).

        torch's loader casts floating-point state to the parameter's dtype (and,
        for real parameters, integer state too), which would widen bf16 moments
        and turn int32 indices into floats. Here floating-point (and complex) state
        is cast to the dtype this optimizer makes it in for the parameter and its
        group: the math's dtype (fp32 / complex64 for 16-bit and fp32 weights, fp64
        for double ones) or the group's ``state_dtype`` for compressed parts, so an
        fp32 checkpoint resumes a float64 model; other tensors (int32 indices) keep
        theirs. The scalar counters (steps, the compression flag, the
        random-stream seed) stay on the CPU, where the optimizer creates them, as torch's
        own optimizers keep ``step``: on a GPU every step reads them in Python, and a
        device copy would cost a synchronisation each time.

        Otherwise the load is torch's: hooks registered with
        ``register_load_state_dict_pre_hook`` get (a shallow copy of) the state dict
        first and may return another to load instead; those registered with
        ``register_load_state_dict_post_hook`` run once the state and the groups are
        in place.
        """
        # torch.optim.Optimizer.load_state_dict's sequence, without the cast of every
        # tensor that its loader (_process_value_according_to_param_policy) makes
        if isinstance(state_dict, dict):  # anything else is named by checked_state
            state_dict = state_dict.copy()  # shallow, as torch's: a pre-hook may replace entries
        for pre_hook in getattr(self, "_optimizer_load_state_dict_pre_hooks", {}).values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups, state_by_param = checked_state(self, state_dict)
        for index, group in enumerate(groups):  # saved with decoupled decay, loaded into coupled
            try:
                self._check_constructor_decay(group)
            except ValueError as error:
                raise ValueError(f"Param group {index} of the state dict: {error}") from None
        state = defaultdict(dict, state_by_param)
        param_groups = []
        for current, saved in zip(self.param_groups, copy.deepcopy(groups)):
            saved["params"] = current["params"]
            if "param_names" in current and "param_names" not in saved:
                saved["param_names"] = current["param_names"]
            param_groups.append(saved)
        self.__setstate__({"state": state, "param_groups": param_groups})
        for post_hook in getattr(self, "_optimizer_load_state_dict_post_hooks", {}).values():
            post_hook(self)

    # ----------------------------------------------------------------- memory
    def next_step_refreshes(self):
        """``(group index, position)`` of each compressed parameter whose next step refreshes its
        bases (:func:`~neuralop_mp.optim.compressed_step.refresh_due`): such a step's memory
        differs from the others' (the Gram matrices, the new factors), so a meter that measures one
        step as every step's (``MixedPrecisionTrainer``'s) measures again where this changes."""
        return tuple((i, j) for i, group in enumerate(self.param_groups) for j, p in enumerate(group["params"])
                     if self.state.get(p) and self._refreshes(p, group))

    def memory_report(self):
        """Bytes held by parameters, gradients and optimizer state, by category
        (see :func:`~neuralop_mp.optim.state_memory.state_memory_report`)."""
        return state_memory_report(self)
