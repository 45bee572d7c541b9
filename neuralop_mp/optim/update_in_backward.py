"""Update in backward: each parameter is stepped, and its gradient freed, as soon as
the gradient is accumulated, so the full set of gradients never exists at once.

``enable_update_in_backward(optimizer)`` registers a
``Tensor.register_post_accumulate_grad_hook`` on every parameter of ``optimizer``.
When backward has accumulated a parameter's gradient, the hook calls the optimizer's
own ``step()`` while that gradient is the only one present (gradients are set to
None before backward and freed right after each hook), so each parameter receives
exactly the update the ordinary ``optimizer.step()`` would give it: the same code,
the same state keys, the same random streams (TensorGRaD numbers its parameters by
position, not by which have gradients). On CPU the weights and optimizer state are
bitwise those of the ordinary step, for ``torch.optim.AdamW`` and TensorGRaD.

With TensorGRaD, a dense spectral weight with compressed moments is not given a gradient
at all (``lazy_gradients=True``, the default): its spectral product hands the optimizer a
:class:`~neuralop_mp.layers.lazy_weight_gradient.LazyWeightGradient`, and the weight is
stepped from it when backward finishes, with bitwise the same numbers.

What needs all gradients at once, and the answer here:

- learning-rate schedulers: work; each hook reads the group's current ``lr``.
- a precision schedule: works; it changes how the forward is computed, not which
  tensors are parameters, and the hooks stay on the same tensors.
- global-norm gradient clipping (``max_grad_norm``): refused; the norm is known only
  after the last gradient, when every other parameter has already moved.
- dynamic loss scaling (``loss_scaling``): refused; an overflow found in a late layer
  cannot undo the updates of the layers whose gradients came first.
- gradient accumulation over micro-batches (``grad_accumulation_steps > 1``):
  refused; each micro-batch's backward would step the weights.
- DDP (``distributed``): refused; the hook runs before the bucket's all-reduce, so
  each rank would step with its own gradient.
- TensorGRaD ``nonfinite_grad="skip"``: refused; a NaN gradient would skip only the
  parameters after it. With "raise" the error names the parameter, and the
  parameters whose gradients came before it have already been updated.
"""
import torch

from ..vocabulary import setting_as_given


class UpdateInBackward:
    """Handle of the hooks :func:`enable_update_in_backward` registered; ``remove()``
    restores the ordinary ``optimizer.step()`` behaviour."""

    def __init__(self, optimizer, handles):
        self.optimizer = optimizer
        self._handles = handles

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if "owns_gradients" in vars(self.optimizer):
            del self.optimizer.owns_gradients

    @property
    def active(self):
        return bool(self._handles)


def auto_scaling_refusal(*, runs_half, half_is_float16, asked, complex32_weights, names):
    """The refusal of update in backward beside the trainer's default loss scaling "auto", where
    the settings tell that the trainer will scale the loss (its own check then refuses it, once
    the data are loaded), or None. The one rule of ``neuralop-mp train``'s config check and of
    ``neuralop-mp run`` / :func:`neuralop_mp.enable`'s options.

    "auto" scales where the run computes in float16 (a float16 half type in a run that computes in
    a half type: ``runs_half``) or stores weights in float16's range (complex32 spectral weights),
    as :meth:`~neuralop_mp.training.trainer.MixedPrecisionTrainer._uses_float16` decides on the model.

    Parameters
    ----------
    asked : str
        The setting that makes the run compute in a half type, as the caller wrote it
        (``--mp.precision mixed``, ``opt.precision_schedule='paper'``).
    names : dict
        The caller's names of ``half_dtype``, ``spectral_weight_dtype``, ``loss_scaling`` and
        ``update_in_backward`` (``"--mp.half_dtype"``, ``"model.half_dtype"``, ...).
    """
    def given(key, value):
        return setting_as_given("", names[key], value)

    computes = runs_half and half_is_float16
    causes = [f"{given('half_dtype', 'float16')} with {asked} computes in float16"] if computes else []
    if complex32_weights:
        causes.append(f"{given('spectral_weight_dtype', 'complex32')} stores the spectral weights in float16's range")
    if not causes:
        return None
    flag = names["update_in_backward"].startswith("-")
    other = f"use {given('half_dtype', 'bfloat16')}, " if computes else ""
    return (f"{given('update_in_backward', 'true' if flag else True)} cannot be combined with loss scaling: "
            f"{' and '.join(causes)}, so the trainer's loss scaling 'auto' (its default) scales the loss, and an "
            "overflow found in a late layer cannot undo the updates already made to earlier ones. Add "
            f"{given('loss_scaling', 'none')}, {other}or leave {names['update_in_backward']} out.")


def check_update_in_backward_settings(optimizer=None, *, loss_scaling=False, distributed=False,
                                      grad_accumulation_steps=1, max_grad_norm=None, nonfinite_grad=None,
                                      optimizer_kind=None, prefix="", float16_storage=(), float16_compute=False):
    """Raise ValueError for a setting that cannot be combined with update in backward.

    Each message names ``update_in_backward`` and the other setting, with its value.
    ``prefix`` (e.g. ``"opt."``) is put before every setting's name, so a config's
    check names the config keys. ``nonfinite_grad`` is named ``tensorgrad_nonfinite_grad``
    (after the prefix) when ``optimizer_kind`` is given: the checks that give it read the
    setting under that name (a ``--mp.`` flag, a key of ``enable``'s ``optimizer_options``);
    the trainer's check of a built optimizer gives no kind and names ``nonfinite_grad``.

    ``optimizer_kind`` ("adamw", "tensorgrad", "galore", "sparse") is given by a check
    made before the optimizer and the trainer exist (a config's, ``neuralop_mp.enable``'s).
    ``loss_scaling`` is then the setting as written: True or "dynamic" is refused, "auto"
    is left to the trainer, which scales only when the device computes in float16; and
    ``nonfinite_grad`` counts only for the TensorGRaD kinds ("adamw" does not read it).
    Without it, a true ``loss_scaling`` means that the run scales its loss.
    ``float16_storage``: the float16-range dtypes the model's parameters are stored in (the
    trainer's), which make "auto" scale whatever the run computes in, and ``float16_compute``
    whether the run also computes in float16: what made "auto" scale is named, with the advice
    that fits each cause.
    """
    if optimizer_kind is not None:
        loss_scaling = loss_scaling if loss_scaling is True or loss_scaling == "dynamic" else False
        nonfinite_grad = None if optimizer_kind == "adamw" else nonfinite_grad
    refused = []
    if max_grad_norm is not None:
        refused.append(f"{prefix}max_grad_norm={max_grad_norm!r} (global-norm clipping needs every gradient "
                       f"before any update; use {setting_as_given(prefix, 'max_grad_norm', None)})")
    if loss_scaling:
        # parameters stored in float16's range scale the loss under "auto" whatever is computed: a half
        # type changes nothing then, the storage does
        storage = ", ".join(float16_storage) if loss_scaling == "auto" else ""
        causes = ([f"parameters stored in {storage}"] if storage else []) + (
            ["float16 compute"] if storage and float16_compute else [])
        why = f"{' and '.join(causes)} make 'auto' scale the loss; " if causes else ""
        remedies = (["store them in float32 / complex64 (set_spectral_weight_dtype(model, 'complex64'))"]
                    if storage else []) + (["train in bfloat16 or float32"] if float16_compute or not storage else [])
        instead = " and ".join(remedies)
        refused.append(f"{prefix}loss_scaling={loss_scaling!r} ({why}an overflow found in a late layer cannot undo the "
                       f"updates already made to earlier ones; {instead}, or set "
                       f"{setting_as_given(prefix, 'loss_scaling', 'none')})")
    if int(grad_accumulation_steps) != 1:
        refused.append(f"{prefix}grad_accumulation_steps={grad_accumulation_steps!r} (every micro-batch's "
                       "backward would step the weights; use 1)")
    if distributed:
        # a text says what made the run data-parallel (training.distributed.data_parallel)
        what = distributed if isinstance(distributed, str) else f"{prefix}distributed={distributed!r}"
        refused.append(f"{what} (DDP all-reduces gradients after the hooks run, so "
                       "each rank would step with its own gradient; train on one process)")
    skip_reason = "(a NaN gradient would skip only the parameters after it; use 'raise')"
    if nonfinite_grad == "skip":
        name = f"{prefix}tensorgrad_nonfinite_grad" if optimizer_kind is not None else "nonfinite_grad"
        refused.append(f"{name}='skip' {skip_reason}")
    if optimizer is not None:
        for index, group in enumerate(optimizer.param_groups):
            if group.get("nonfinite_grad") == "skip":
                refused.append(f"nonfinite_grad='skip' in param group {index} {skip_reason}")
    if refused:
        raise ValueError(f"{prefix}update_in_backward=True cannot be combined with " + "; ".join(refused) + ".")


def enable_update_in_backward(optimizer, *, lazy_gradients=True, **settings):
    """Step each parameter of ``optimizer`` during backward, right after its gradient
    is accumulated, and free that gradient.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        ``torch.optim.AdamW`` (any optimizer whose ``step()`` skips parameters
        without a gradient) or :class:`~neuralop_mp.optim.tensorgrad.TensorGRaD`.
    lazy_gradients : bool, default True
        Let a dense spectral weight with TensorGRaD-compressed moments be stepped from
        its gradient computed a slice at a time, inside the spectral product's backward,
        so its whole gradient is never built (see Notes). Same numbers either way.
    **settings
        The training settings that cannot be combined with it, checked up front by
        :func:`check_update_in_backward_settings`: ``loss_scaling``, ``distributed``,
        ``grad_accumulation_steps``, ``max_grad_norm``.

    Returns
    -------
    UpdateInBackward
        ``remove()`` it to go back to the ordinary step.

    Notes
    -----
    Call ``optimizer.zero_grad(set_to_none=True)`` (the default) before each
    backward: a gradient left over from elsewhere would be stepped again by the
    first hook. After backward every ``p.grad`` is None, and ``optimizer.step()`` is
    a no-op, so a training loop written for the ordinary step runs unchanged, except
    for what reads the gradients after backward: ``torch.nn.utils.clip_grad_norm_``
    there sees none, returns 0.0 and clips nothing.

    The hooks go on the parameters that require a gradient now. One unfrozen later, or
    added with ``add_param_group``, would be stepped by the other parameters' hooks (by
    torch's optimizers at every hook): the first hook of such a backward raises a
    RuntimeError naming it, before any step; ``remove()`` the hooks and call this again
    after such a change.

    With ``lazy_gradients`` and TensorGRaD, the dense mode product
    (:mod:`neuralop_mp.layers.mode_matmul`) hands each compressed weight's gradient to
    :meth:`~neuralop_mp.optim.tensorgrad.TensorGRaD.step_parameter` as a
    :class:`~neuralop_mp.layers.lazy_weight_gradient.LazyWeightGradient` when that
    product is the weight's only use in the graph, no backward of it builds a graph
    (``create_graph``), and the weight has no hooks of the user's (``register_hook``,
    ``register_post_accumulate_grad_hook``: they are given the gradient); otherwise the
    ordinary gradient is built (same numbers). A weight stepped this way that then receives another gradient
    in the same backward (it is used outside the spectral product too) raises a
    RuntimeError: pass ``lazy_gradients=False``.
    """
    if not isinstance(lazy_gradients, bool):
        raise TypeError(f"lazy_gradients must be a bool, got {lazy_gradients!r}.")
    check_update_in_backward_settings(optimizer, **settings)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if len({id(p) for p in params}) != len(params):
        raise ValueError("update_in_backward=True needs each parameter in exactly one param group.")

    stepped_lazily = set()  # ids of parameters stepped by their product's backward, not yet hooked
    hooked = {id(p) for p in params}
    checked_backward = [None]  # the graph task (backward) check_alone last passed in

    def check_alone(param):
        """RuntimeError unless ``param`` is the only parameter of the optimizer (its groups as
        they are now) that a step would update: a parameter without a hook (frozen at enable
        time, or added since) would be stepped by the other parameters' hooks, torch's
        optimizers stepping it at every hook (TensorGRaD frees its gradient at the first).

        Once per backward, at its first hook: a gradient left from before the backward, or one
        that requires_grad without a hook, is there (or would come) at the first hook as at any
        later one, and every hooked parameter's own gradient is freed by its hook. Scanned at
        every hook, the parameters cost a backward of 400 small ones 65%."""
        backward = torch._C._current_graph_task_id()  # -1 outside a backward (not reached here)
        if backward == checked_backward[0] and backward != -1:
            return
        unhooked, stale = [], []
        for group_index, group in enumerate(optimizer.param_groups):
            for position, p in enumerate(group["params"]):
                if p is param:
                    continue
                if p.requires_grad and id(p) not in hooked:
                    unhooked.append(f"group {group_index} parameter {position} {tuple(p.shape)}")
                elif p.grad is not None:
                    stale.append(f"group {group_index} parameter {position}")
        if unhooked:
            raise RuntimeError(
                f"update_in_backward: {', '.join(unhooked)} of the optimizer require a gradient but have no "
                "update-in-backward hook (frozen when enable_update_in_backward was called, or added with "
                "add_param_group since): other parameters' hooks would step them (torch's optimizers at every hook); "
                "remove() the hooks and call "
                "enable_update_in_backward(optimizer) again after changing requires_grad or the param groups.")
        if stale:
            raise RuntimeError(
                f"update_in_backward: {', '.join(stale)} still hold a gradient from before this backward; "
                "call optimizer.zero_grad(set_to_none=True) before each backward.")
        checked_backward[0] = backward

    def step_now(param):
        if id(param) in stepped_lazily:  # AccumulateGrad runs (with no gradient) after the product
            stepped_lazily.discard(id(param))
            if param.grad is None:
                return
            index = next(i for i, p in enumerate(params) if p is param)
            param.grad = None
            raise RuntimeError(
                f"update_in_backward: parameter {index} {tuple(param.shape)} was stepped from its spectral "
                "product's gradient and then received another gradient in the same backward (it is used "
                "outside the spectral product too); call enable_update_in_backward(..., lazy_gradients=False).")
        # every other parameter's gradient is None here (set to none before backward, freed
        # after its own hook), so the optimizer's own step() updates this parameter alone
        check_alone(param)
        try:
            optimizer.step()
        finally:
            param.grad = None

    step_hooks = [p.register_post_accumulate_grad_hook(step_now) for p in params]
    handles = list(step_hooks)
    if lazy_gradients and hasattr(optimizer, "step_parameter"):
        from ..layers.lazy_weight_gradient import consume_weight_gradients

        def consumer_of(param):
            def consume(grad):
                check_alone(param)  # before the step is queued: it runs only if backward finishes
                stepped_lazily.add(id(param))
                # stepped when this backward finishes: the lazy gradient keeps only the product's
                # 16-bit spectrum and output gradient alive (rank <= batch per mode: a few MB where
                # the gradient takes a hundred), while the activations the step would otherwise
                # sit on top of are freed by then
                def step_later():
                    try:
                        optimizer.step_parameter(param, grad)
                    finally:  # the callback list keeps it until every callback has run
                        grad.release()
                torch.autograd.Variable._execution_engine.queue_callback(step_later)
            return consume

        # step_now is told of a lazy step (stepped_lazily); any other hook on the weight makes the
        # product build the ordinary gradient (lazy_weight_gradient checks that for every consumer)
        handles += [consume_weight_gradients(p, consumer_of(p), lambda p=p: optimizer.steps_from_slices(p),
                                             own_hooks=(handle,))
                    for p, handle in zip(params, step_hooks) if p.is_complex()]
    if hasattr(optimizer, "owns_gradients"):  # TensorGRaD: consume each gradient, release it once projected
        optimizer.owns_gradients = True
    return UpdateInBackward(optimizer, handles)

