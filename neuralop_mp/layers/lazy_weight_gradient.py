"""The dense mode product's weight gradient, computed one slice at a time on request.

For a dense spectral weight the gradient is, per kept mode ``k``,
``dW[i, o, k] = sum_b conj(X[b, i, k]) G[b, o, k]``: a matrix of rank at most the batch
size, made from the saved 16-bit spectrum ``X`` and the output's gradient ``G``. At
128 channels, 64 x 33 modes and batch 2, ``X`` and ``G`` take about 4 MB and the
complex32 gradient 138 MB. An optimizer that reads gradients only through
``narrow(axis, start, length)`` (TensorGRaD, through
:class:`~neuralop_mp.optim.gradient_chunks.GradientChunks`) can be handed a
:class:`LazyWeightGradient` instead and step the weight during backward: the whole
gradient is then never allocated.

Who consumes it is registered per parameter with :func:`consume_weight_gradients`
(:func:`~neuralop_mp.optim.update_in_backward.enable_update_in_backward` does it). The
product hands the lazy gradient over only when the whole gradient of that parameter
is its own: the parameter enters the product whole (not sliced to fewer modes), it is
used once in the graph being differentiated, and it holds no gradient yet. Otherwise
the ordinary gradient is built, which has the same numbers.

A slice is computed with the kernel the ordinary backward uses (a batched matmul of
the same operands, restricted to the slice's rows, columns or modes) and rounded to the
weight's dtype the same way. On CPU torch's batched matmul gives each entry the same
numbers whatever the rest of the batch and matrix; a test compares every slice with
the ordinary gradient bitwise. On other devices (whose kernels may choose another
summation order for another shape) each of the ordinary backward's mode chunks is
computed whole, with the ordinary call, and the slice copied out of it.
"""
import math
import weakref

import torch

_consumers = {}  # id(parameter) -> (weak reference to it, consumer)
_pending = {}  # id(parameter) -> WeakSet of its uses whose backward has not run yet


class _Use:
    """One use of a parameter by the product in a graph; ``shared`` when another use of it
    was pending at the same time (used twice in one forward, or an older graph kept)."""

    def __init__(self, param):
        self.param = weakref.ref(param)
        self.shared = False


class ConsumerHandle:
    """``remove()`` stops handing lazy gradients of the parameter to the consumer."""

    def __init__(self, key):
        self._key = key

    def remove(self):
        _consumers.pop(self._key, None)


def consume_weight_gradients(param, consumer, accepts):
    """Hand the dense mode product's gradient of ``param`` to ``consumer`` as a
    :class:`LazyWeightGradient` instead of building it.

    ``accepts()`` is asked in each backward, before anything is computed: True, and
    ``consumer(lazy_gradient)`` is called (the parameter then receives no gradient from
    the product); False, and the ordinary gradient is built. Returns a handle whose
    ``remove()`` undoes the registration.
    """
    key = id(param)
    _consumers[key] = (weakref.ref(param, lambda _: _consumers.pop(key, None)), consumer, accepts)
    return ConsumerHandle(key)


def record_use(weight, needs_grad):
    """A :class:`_Use` of the parameter ``weight`` is (a view of, with the same layout),
    when its gradient may be handed over lazily; else None. Called by the forward."""
    if not needs_grad or not _consumers or torch._C._current_graph_task_id() != -1:
        # a forward run inside a backward is a recompute (activation checkpointing): its
        # graph is never differentiated, the original use's backward runs instead
        return None
    param = weight if weight._base is None else weight._base
    entry = _consumers.get(id(param))
    if entry is None or entry[0]() is not param:
        return None
    same_layout = (weight.shape == param.shape and weight.stride() == param.stride()
                   and weight.storage_offset() == param.storage_offset() and weight.dtype == param.dtype)
    if not same_layout:  # a weight sliced to fewer modes: the parameter's gradient is zero-padded
        return None
    use = _Use(param)
    pending = _pending.setdefault(id(param), weakref.WeakSet())
    if len(pending):
        use.shared = True
        for other in pending:
            other.shared = True
    pending.add(use)
    return use


def consumer_for(use):
    """The consumer to hand this use's gradient to, or None (build the ordinary one).
    Called once by the backward."""
    if use is None:
        return None
    param = use.param()
    if param is None:
        return None
    _pending.get(id(param), set()).discard(use)
    entry = _consumers.get(id(param))
    if use.shared or param.grad is not None or entry is None or entry[0]() is not param or not entry[2]():
        return None
    return entry[1]


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
    mode_ranges : list of (int, int)
        The ordinary backward's chunks of flat modes (used off CPU).
    """

    is_sparse = False

    def __init__(self, x_flat, g, modes, dtype, compute_dtype, mode_ranges):
        batch, n_in, n_modes, _ = x_flat.shape
        self.n_in, self.n_out, self.n_modes = n_in, g.shape[1], n_modes
        self.shape = torch.Size((n_in, self.n_out, *modes))
        self.dtype, self.device = dtype, x_flat.device
        self._x_flat, self._g, self._compute_dtype = x_flat, g, compute_dtype
        self._mode_ranges = mode_ranges
        self._operands = None
        # CPU: each slice from its own rows / columns / modes of the operands (same numbers,
        # tested); elsewhere from the ordinary backward's whole mode chunks
        self._subset_kernels = self.device.type == "cpu"

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

    def _chunk_operands(self, modes, rows, cols):
        """``X'`` as ``(k, 2 b, in)`` and ``H = [G; G']`` as ``(k, 2 b, 2 out)`` in the compute
        dtype for the flat ``modes`` (a slice or an index tensor), restricted to ``rows`` of
        ``in`` and ``cols`` of ``out``; built as the ordinary backward builds them, element by
        element, so they hold its numbers."""
        x, g = self._x_flat, self._g
        if isinstance(modes, slice):
            x, g = x[:, rows, modes], g[:, cols, modes]
        else:
            x, g = x[:, rows].index_select(2, modes), g[:, cols].index_select(2, modes)
        k, batch = x.shape[2], x.shape[0]
        stacked = x.permute(2, 3, 0, 1).reshape(k, 2 * batch, x.shape[1]).to(self._compute_dtype)
        gc = g.to(self._compute_dtype).permute(2, 0, 1, 3)
        h = torch.cat((gc, torch.stack((gc[..., 1], -gc[..., 0]), dim=-1)), dim=1)
        return stacked, h.reshape(k, 2 * batch, 2 * g.shape[1])

    def narrow(self, axis, start, length):
        """Indices ``start:start+length`` along ``axis`` of the gradient, as a new tensor of
        the weight's dtype. Computed one of the ordinary backward's mode chunks at a time:
        the temporaries are about one chunk."""
        ndim = len(self.shape)
        if not -ndim <= axis < ndim:
            raise IndexError(f"axis {axis} is out of range for a gradient of shape {tuple(self.shape)}.")
        axis %= ndim
        if start < 0 or length < 0 or start + length > self.shape[axis]:
            raise IndexError(f"narrow({axis}, {start}, {length}) is out of range for shape {tuple(self.shape)}.")
        rows = slice(start, start + length) if axis == 0 else slice(None)
        cols = slice(start, start + length) if axis == 1 else slice(None)
        wanted = torch.arange(self.n_modes, device=self.device)[self._flat_modes(axis, start, length)]
        out_shape = list(self.shape)
        out_shape[axis] = length
        n_pairs = out_shape[0] * out_shape[1]
        out = torch.empty(n_pairs, wanted.numel(), dtype=self.dtype, device=self.device)
        done = 0
        for chunk_start, chunk_stop in self._mode_ranges:
            inside = wanted[(wanted >= chunk_start) & (wanted < chunk_stop)]  # ascending, as `wanted` is
            if not inside.numel():
                continue
            k = inside.numel()
            if k == int(inside[-1] - inside[0]) + 1:  # a range of modes
                modes = slice(int(inside[0]), int(inside[-1]) + 1)
            else:
                modes = inside
            if self._subset_kernels:
                stacked, h = self._chunk_operands(modes, rows, cols)
                r = torch.bmm(stacked.transpose(1, 2), h).float()
            else:
                stacked, h = self._chunk_operands(slice(chunk_start, chunk_stop), slice(None), slice(None))
                r = torch.bmm(stacked.transpose(1, 2), h).float().index_select(0, inside - chunk_start)
                r = r[:, rows, 2 * cols.start if axis == 1 else None:2 * cols.stop if axis == 1 else None]
            del stacked, h
            # rounded to the weight's dtype as the ordinary gradient is written
            out[:, done:done + k] = torch.view_as_complex(r.reshape(k, n_pairs, 2)).t()
            done += k
        return out.view(out_shape)
