"""The dense mode product's weight gradient, computed one slice at a time on request.

For a dense spectral weight the gradient is, per kept mode ``k``,
``dW[i, o, k] = sum_b conj(X[b, i, k]) G[b, o, k]``: a matrix of rank at most the batch
size, made from the saved 16-bit spectrum ``X`` and the output's gradient ``G``. At
128 channels, 64 x 33 modes and batch 2, ``X`` and ``G`` take about 4 MB and the
complex32 gradient 132 MiB. An optimizer that reads gradients only through
``narrow(axis, start, length)`` (TensorGRaD, through
:class:`~neuralop_mp.optim.gradient_chunks.GradientChunks`) can be handed a
:class:`LazyWeightGradient` instead and step the weight during backward: the whole
gradient is then never allocated.

Who consumes it is registered per parameter with :func:`consume_weight_gradients`
(:func:`~neuralop_mp.optim.update_in_backward.enable_update_in_backward` does it). The
product hands the lazy gradient over only when the whole gradient of that parameter
is its own and would be accumulated: the parameter enters the product as a view of the
whole parameter (not sliced to fewer modes), it is used once in the graph being
differentiated (and no backward of this use built a graph, with ``create_graph``, which
uses it again), this backward accumulates into it, it holds no gradient yet, and it has
no gradient hooks but the consumer's own (``register_hook``: handed the gradient, they may
replace it; ``register_post_accumulate_grad_hook``: they read ``.grad``, which a weight
whose gradient was handed over never has). Otherwise the ordinary gradient is built,
which has the same numbers. That rule is checked here, for every consumer.

A slice is computed with the kernel the ordinary backward uses (a batched matmul of
the same operands, restricted to the slice's rows, columns or modes) and rounded to the
weight's dtype the same way. On CPU torch's batched matmul gives each entry the same
numbers whatever the rest of the batch and matrix; a test compares every slice with
the ordinary gradient bitwise. Other devices' kernels may sum in another order for
another shape, so there a slice can differ from the ordinary gradient in its last bits.
"""
import math
import weakref
from typing import Callable, NamedTuple

import torch


class _Consumer(NamedTuple):
    """What :func:`consume_weight_gradients` registered for one parameter."""

    param: weakref.ref
    consume: Callable
    accepts: Callable
    own_hooks: frozenset  # ids of the consumer's own hook handles on the parameter


_consumers = {}  # id(parameter) -> _Consumer
_pending = {}  # id(parameter) -> WeakSet of its uses whose backward has not run yet


class _Use:
    """One use of a parameter by the product in a graph; ``shared`` when another use of it
    was pending at the same time (used twice in one forward, or an older graph kept).
    ``accumulate`` is the parameter's AccumulateGrad node: a backward that will not run it
    (``torch.autograd.grad``, ``backward(inputs=...)`` without the weight) leaves the
    weight alone, as the ordinary path does."""

    def __init__(self, param, accumulate):
        self.param = weakref.ref(param)
        self.accumulate = accumulate
        self.shared = False


def _accumulate_node(param):
    """The AccumulateGrad node of the leaf ``param`` (the weight is ``param`` or a
    same-layout view of it, :func:`record_use` checks that)."""
    return torch.autograd.graph.get_gradient_edge(param).node


class ConsumerHandle:
    """``remove()`` stops handing lazy gradients of the parameter to the consumer."""

    def __init__(self, key, entry):
        self._key, self._entry = key, entry

    def remove(self):
        # only its own registration: a later one for the same parameter stays
        if _consumers.get(self._key) is self._entry:
            del _consumers[self._key]


def consume_weight_gradients(param, consumer, accepts, own_hooks=()):
    """Hand the dense mode product's gradient of ``param`` to ``consumer`` as a
    :class:`LazyWeightGradient` instead of building it.

    ``accepts()`` is asked in each backward, before anything is computed: True, and
    ``consumer(lazy_gradient)`` is called (the parameter then receives no gradient from
    the product); False, and the ordinary gradient is built. It is not asked, and the
    ordinary gradient is built, while ``param`` has a gradient hook (``register_hook``,
    ``register_post_accumulate_grad_hook``) other than ``own_hooks``: the handles of the
    consumer's own hooks on ``param``, which know the gradient may not come. Returns a
    handle whose ``remove()`` undoes the registration.
    """
    key = id(param)
    entry = _consumers[key] = _Consumer(weakref.ref(param, lambda _: _consumers.pop(key, None)), consumer, accepts,
                                        frozenset(handle.id for handle in own_hooks))
    return ConsumerHandle(key, entry)


def record_use(weight, needs_grad):
    """A :class:`_Use` of the parameter ``weight`` is (a view of, with the same layout),
    when its gradient may be handed over lazily; else None. Called by the forward."""
    if not needs_grad or not _consumers or torch._C._current_graph_task_id() != -1:
        # a forward run inside a backward is a recompute (activation checkpointing): its
        # graph is never differentiated, the original use's backward runs instead
        return None
    param = weight if weight._base is None else weight._base
    entry = _consumers.get(id(param))
    if entry is None or entry.param() is not param:
        return None
    same_layout = (weight.shape == param.shape and weight.stride() == param.stride()
                   and weight.storage_offset() == param.storage_offset() and weight.dtype == param.dtype)
    if not same_layout:  # a weight sliced to fewer modes: the parameter's gradient is zero-padded
        return None
    accumulate = _accumulate_node(param)
    use = _Use(param, accumulate)
    pending = _pending.setdefault(id(param), weakref.WeakSet())
    if len(pending):
        use.shared = True
        for other in pending:
            other.shared = True
    pending.add(use)
    return use


def consumer_for(use):
    """The consumer to hand this use's gradient to, or None (build the ordinary one).
    Called by the backward, each time it runs (a graph kept with ``retain_graph`` is
    differentiated again)."""
    if use is None:
        return None
    param = use.param()
    if param is None:
        return None
    _pending.get(id(param), set()).discard(use)
    if torch.is_grad_enabled():
        # a backward that builds a graph (create_graph, a gradient penalty): that graph uses
        # the weight again, so a later backward through both gives it two gradients to sum
        use.shared = True
    entry = _consumers.get(id(param))
    if use.shared or param.grad is not None or entry is None or entry.param() is not param \
            or _has_users_hooks(param, entry.own_hooks) \
            or not torch._C._will_engine_execute_node(use.accumulate) or not entry.accepts():
        return None
    return entry.consume


def _has_users_hooks(param, own_hooks):
    """Whether ``param`` has gradient hooks whose handle ids are not in ``own_hooks``: a
    ``register_hook`` hook reads (and may replace) the gradient on its way into ``.grad``,
    a ``register_post_accumulate_grad_hook`` hook reads ``.grad``; either needs it built.
    Read at each backward, so hooks set or removed since the registration count."""
    return any(key not in own_hooks for hooks in (param._backward_hooks, param._post_accumulate_grad_hooks)
               for key in (hooks or ()))


class LazyWeightGradient:
    """``conj(X)^T G`` per mode, shaped and rounded like the weight's gradient, computed
    only for the slices asked for.

    Parameters
    ----------
    x_flat : torch.Tensor
        The saved spectrum as ``(batch, in, K, 2)`` real pairs (16-bit, or float32).
    g : torch.Tensor
        The output's gradient as ``(batch, out, K, 2)`` real pairs, in the type the
        ordinary backward rounds it to.
    modes : tuple of int
        The kept modes (their product is ``K``).
    dtype : torch.dtype
        The weight's dtype: slices are rounded to it, as the ordinary gradient is.
    compute_dtype : torch.dtype
        dtype of the matmuls (that of the ordinary backward).
    """

    is_sparse = False

    def __init__(self, x_flat, g, modes, dtype, compute_dtype):
        batch, n_in, n_modes, _ = x_flat.shape
        self.n_in, self.n_out, self.n_modes = n_in, g.shape[1], n_modes
        self.shape = torch.Size((n_in, self.n_out, *modes))
        self.dtype, self.device = dtype, x_flat.device
        self._x_flat, self._g, self._compute_dtype = x_flat, g, compute_dtype
        self._stacked = self._h = None

    def dim(self):
        return len(self.shape)

    def numel(self):
        return math.prod(self.shape)

    def is_contiguous(self):
        """False: there is no memory to write into."""
        return False

    def _flat_modes(self, axis, start, length):
        """The flat mode indices (ascending) of indices ``start:start+length`` along
        ``axis``: a slice when they are one range, else an index tensor."""
        if axis < 2:
            return slice(0, self.n_modes)
        mode_shape = self.shape[2:]
        if math.prod(mode_shape[:axis - 2]) == 1:  # the outermost mode axis that is longer than 1
            inner = math.prod(mode_shape[axis - 1:])
            return slice(start * inner, (start + length) * inner)
        grid = torch.arange(self.n_modes, device=self.device).reshape(mode_shape)
        return grid.narrow(axis - 2, start, length).reshape(-1)

    def _operands(self):
        """``X'`` as ``(K, 2 b, in)`` and ``H = [G; G']`` as ``(K, 2 b, 2 out)``, kept in the
        saved 16-bit type (negation is exact), built once; the saved tensors are then let go.
        Each slice converts its part to the compute dtype, which gives the ordinary
        backward's operands element by element."""
        if self._x_flat is not None:
            x, g = self._x_flat, self._g
            batch = x.shape[0]
            self._stacked = x.permute(2, 3, 0, 1).reshape(self.n_modes, 2 * batch, self.n_in)
            gc = g.permute(2, 0, 1, 3)
            h = torch.cat((gc, torch.stack((gc[..., 1], -gc[..., 0]), dim=-1)), dim=1)
            self._h = h.reshape(self.n_modes, 2 * batch, 2 * self.n_out)
            self._x_flat = self._g = None
        elif self._h is None:
            raise RuntimeError("This lazy weight gradient was released after its step; it cannot be read again.")
        return self._stacked, self._h

    def narrow(self, axis, start, length):
        """Indices ``start:start+length`` along ``axis`` of the gradient, as a new tensor of
        the weight's dtype; the temporaries are about the size of the slice in float32 plus
        ``H`` in float32."""
        ndim = len(self.shape)
        if not -ndim <= axis < ndim:
            raise IndexError(f"axis {axis} is out of range for a gradient of shape {tuple(self.shape)}.")
        axis %= ndim
        if start < 0 or length < 0 or start + length > self.shape[axis]:
            raise IndexError(f"narrow({axis}, {start}, {length}) is out of range for shape {tuple(self.shape)}.")
        stacked, h = self._operands()
        rows = slice(start, start + length) if axis == 0 else slice(None)
        cols = slice(2 * start, 2 * (start + length)) if axis == 1 else slice(None)
        modes = self._flat_modes(axis, start, length)
        out_shape = list(self.shape)
        out_shape[axis] = length
        n_pairs = out_shape[0] * out_shape[1]
        pick = (lambda t: t[modes]) if isinstance(modes, slice) else (lambda t: t.index_select(0, modes))
        x_part = pick(stacked)[:, :, rows].to(self._compute_dtype)
        h_part = pick(h)[:, :, cols].to(self._compute_dtype)
        r = torch.bmm(x_part.transpose(1, 2), h_part).float()
        del x_part, h_part
        k = r.shape[0]
        out = torch.empty(n_pairs, k, dtype=self.dtype, device=self.device)
        # rounded to the weight's dtype as the ordinary gradient is written
        out.copy_(torch.view_as_complex(r.reshape(k, n_pairs, 2)).t())
        return out.view(out_shape)

    def release(self):
        """Let go of the operands (once the gradient has been used)."""
        self._x_flat = self._g = self._stacked = self._h = None
