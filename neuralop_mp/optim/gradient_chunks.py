"""A gradient read one chunk at a time: up-cast, unscaled, with a sparse part removed.

TensorGRaD's math runs in fp32 / complex64, while the gradient of a 16-bit weight is
stored in 16 bits. Up-casting the whole gradient at once doubles it (at FNO 128 x 128
channels, 64 x 64 modes: 138 MB of complex32 become 277 MB), and a residual copy for
the second projector doubles it again. Reading it through :class:`GradientChunks`
instead makes each temporary a chunk of at most :func:`chunk_bytes` (in the compute
dtype: 8 MiB on a CPU, 256 MiB on a GPU), whatever the weight's size.
"""
import math

import torch

from ..chunk_budget import DEVICE_CHUNK_BYTES

#: bytes of one chunk in the compute dtype on a CPU; the step's temporaries are a few
#: chunks. Read at call time, so tests may set it small to exercise the chunked paths.
CHUNK_BYTES = 8 * 2**20


def chunk_bytes(device=None):
    """The chunk budget for tensors on ``device``: :data:`CHUNK_BYTES` on the CPU (and
    when no device is given), :data:`~neuralop_mp.chunk_budget.DEVICE_CHUNK_BYTES` on an
    accelerator."""
    if device is None or torch.device(device).type == "cpu":
        return CHUNK_BYTES
    return DEVICE_CHUNK_BYTES


def rows_per_chunk(shape, axis, itemsize, budget=None, device=None):
    """How many indices along ``axis`` one chunk of a tensor of ``shape`` holds (>= 1);
    ``budget`` by default :func:`chunk_bytes` of ``device``."""
    budget = chunk_bytes(device) if budget is None else budget
    per_index = itemsize * math.prod(shape) // max(1, shape[axis])
    return max(1, int(budget) // max(1, per_index))


def spans(length, step):
    """``(start, stop)`` pairs covering ``range(length)`` in steps of ``step``."""
    return [(start, min(start + step, length)) for start in range(0, length, step)]


class GradientChunks:
    """Chunks of ``grad / scale`` in ``dtype``, with entries a projector removed set to zero.

    Parameters
    ----------
    grad : torch.Tensor
        The stored gradient (any dtype, e.g. complex32); never modified.
    dtype : torch.dtype
        The dtype of the chunks (that of the optimizer's math).
    scale : float, optional
        Loss scale: each chunk is multiplied by ``1 / scale`` after the up-cast.
    removed : callable, optional
        ``removed(piece, axis, start)`` sets to zero, in place, the entries of ``piece``
        (the indices ``start ...`` along ``axis``) that a first projector took, so the
        chunks are those of the residual.
    """

    def __init__(self, grad, dtype, scale=None, removed=None):
        self.grad = grad
        self.dtype = dtype
        self.scale = None if scale is None or scale == 1.0 else float(scale)
        self.removed = removed
        self.shape = tuple(grad.shape)
        self.device = grad.device
        self.itemsize = torch.empty((), dtype=dtype).element_size()

    def read(self, axis, start, stop):
        """A new contiguous tensor: indices ``start:stop`` along ``axis``."""
        piece = torch.empty(
            self.shape[:axis] + (stop - start,) + self.shape[axis + 1:], dtype=self.dtype, device=self.device)
        piece.copy_(self.grad.narrow(axis, start, stop - start))
        if self.scale is not None:
            piece.mul_(1.0 / self.scale)
        if self.removed is not None:
            self.removed(piece, axis, start)
        return piece

    def chunks(self, axis, budget=None):
        """Yield ``(start, stop, piece)`` along ``axis``, each piece at most ``budget`` bytes
        (one index along ``axis`` at least)."""
        step = rows_per_chunk(self.shape, axis, self.itemsize, budget, self.device)
        for start, stop in spans(self.shape[axis], step):
            yield start, stop, self.read(axis, start, stop)

    def without(self, removed):
        """The same gradient with ``removed`` applied to every chunk as well."""
        if self.removed is None:
            return GradientChunks(self.grad, self.dtype, self.scale, removed)
        first = self.removed

        def both(piece, axis, start):
            first(piece, axis, start)
            removed(piece, axis, start)

        return GradientChunks(self.grad, self.dtype, self.scale, both)


class ResidualChunks:
    """Chunks along axis 0 of ``source`` minus a part given row by row.

    ``rows(start, stop)`` returns that part's indices ``start:stop`` along axis 0
    (e.g. a Tucker back-projection restricted to those rows). Only axis 0 is
    readable: that is all the sparse projector reads.
    """

    def __init__(self, source, rows):
        self.source = source
        self.rows = rows
        self.shape, self.dtype, self.device, self.itemsize = source.shape, source.dtype, source.device, source.itemsize

    def read(self, axis, start, stop):
        if axis != 0:
            raise NotImplementedError("ResidualChunks reads along axis 0 only.")
        return self.source.read(0, start, stop).sub_(self.rows(start, stop))

    def chunks(self, axis, budget=None):
        step = rows_per_chunk(self.shape, axis, self.itemsize, budget, self.device)
        for start, stop in spans(self.shape[axis], step):
            yield start, stop, self.read(axis, start, stop)
