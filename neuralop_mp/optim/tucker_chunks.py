"""Tucker refresh, projection and back-projection of a gradient read in chunks.

The whole-tensor versions (:class:`~neuralop_mp.optim.tucker_projector.TuckerProjector`'s
``compute_basis`` / ``project`` / ``project_back``) build full-size up-cast copies,
unfoldings and mode-product intermediates. Here every temporary is at most a few
chunks of :func:`~neuralop_mp.optim.gradient_chunks.chunk_bytes`, plus outputs whose
size is set by the ranks (a ``d_k x d_k`` Gram matrix, the core):

- Gram matrix of a mode-``k`` unfolding: summed over chunks along a mode that is not
  contracted (the Gram sums over every index but ``k``'s, so chunk contributions add).
  When every other mode is contracted (a HOOI sweep on a fully compressed weight), the
  contracted tensor is built for a few rank columns of one contracted mode at a time
  (from chunks along axis 0), and each such slab adds its Gram matrix.
- projection (the core): chunks along axis 0, the other modes contracted first, then
  axis 0 with the chunk's rows of its factor, summed into the core.
- back-projection: rows along axis 0, from the core with those rows of the factor.

The results equal the whole-tensor ones up to the order of floating-point sums.
"""
import math

import torch

from . import gradient_chunks
from .gradient_chunks import spans


def mode_product(x, matrix, mode, adjoint=False):
    """Multiply tensor ``x`` along ``mode`` by ``matrix`` (shape ``(d, r)``).

    ``adjoint=True`` applies ``matrix^H`` (d -> r), the projection; ``adjoint=False``
    applies ``matrix`` (r -> d), the back-projection. The conjugate transpose is what
    makes the projection orthogonal for complex factors; a plain transpose is not.
    """
    if adjoint:
        matrix = matrix.conj()
        out = torch.tensordot(x, matrix, dims=([mode], [0]))
    else:
        out = torch.tensordot(x, matrix, dims=([mode], [1]))
    return out.movedim(-1, mode)


def _contract(x, factors, modes, adjoint=True):
    for j in modes:
        x = mode_product(x, factors[j], j, adjoint=adjoint)
    return x


def _unfold(x, mode):
    return x.movedim(mode, 0).reshape(x.shape[mode], -1)


def _add_gram(gram, x, mode):
    # the product in the Gram's double precision, not only its sum: A A^H squares the
    # condition number, and in single precision a direction whose singular value is below
    # ~3e-4 of the largest would come out arbitrary (one chunk's double copy at a time)
    unfolding = _unfold(x, mode).to(gram.dtype)
    gram += unfolding @ unfolding.conj().transpose(0, 1)


def gram(source, mode, factors):
    """``A A^H`` with ``A`` the mode-``mode`` unfolding of ``G x_j U_j^H`` (``j`` over
    ``factors``, a dict ``{j: U_j}`` that must not hold ``mode``), accumulated in double
    precision, where ``G`` is read from ``source`` (:class:`GradientChunks`)."""
    shape, d = source.shape, source.shape[mode]
    wide = torch.complex128 if source.dtype.is_complex else torch.float64
    out = torch.zeros(d, d, dtype=wide, device=source.device)
    contracted = sorted(factors)
    free = [t for t in range(len(shape)) if t != mode and t not in factors]
    if free:
        for _, _, piece in source.chunks(free[0]):
            _add_gram(out, _contract(piece, factors, contracted), mode)
        return out
    # every other mode is contracted: build the contracted tensor a few rank columns of
    # mode `sliced` at a time (the one of largest rank keeps those slabs smallest), from
    # chunks along axis 0 (contiguous reads); when axis 0 is contracted, each chunk's
    # share is accumulated into the slab by the product itself
    sliced = max(contracted, key=lambda j: factors[j].shape[1])
    slab_shape = [factors[j].shape[1] if j in factors else shape[j] for j in range(len(shape))]
    per_column = source.itemsize * math.prod(slab_shape) // slab_shape[sliced]
    columns = max(1, int(gradient_chunks.chunk_bytes(source.device)) // max(1, per_column))
    for c0, c1 in spans(slab_shape[sliced], columns):
        sub = dict(factors)
        sub[sliced] = factors[sliced][:, c0:c1]
        slab_shape[sliced] = c1 - c0
        # fewest columns first; axis 0, the chunked one, last (by the accumulating product)
        order = [j for j in dict.fromkeys([sliced] + contracted) if j != 0]
        slab = (torch.zeros if 0 in sub else torch.empty)(slab_shape, dtype=source.dtype, device=source.device)
        for start, stop, piece in source.chunks(0):
            part = _contract(piece, sub, order)
            if 0 in sub:
                slab.view(slab_shape[0], -1).addmm_(sub[0][start:stop].conj().transpose(0, 1),
                                                    part.reshape(stop - start, -1))
            else:
                slab[start:stop] = part
        _add_gram(out, slab, mode)
    return out


def leading_eigenvectors(gram_matrix, rank, dtype):
    """The ``rank`` leading eigenvectors of a Hermitian Gram matrix (columns, descending),
    each with its largest-magnitude entry real and positive.

    The phase (sign) of an eigenvector is arbitrary, and how ``eigh`` picks it may differ
    between devices and libraries; a cold-start basis carries its phases into the moments
    and, through the alignment of later refreshes, into the whole run, so they are fixed
    here from the vectors themselves.
    """
    _, vectors = torch.linalg.eigh(gram_matrix)
    # eigh sorts ascending: the leading eigenvectors are the last columns
    vectors = vectors[:, -rank:].flip(-1)
    pivot = vectors.gather(0, vectors.abs().argmax(0, keepdim=True))  # nonzero: unit columns
    return (vectors * (pivot.conj() / pivot.abs())).to(dtype)


def compute_factors(source, ranks, modes, previous=None, n_iter=1):
    """Higher-order SVD (``previous`` None) then ``n_iter`` HOOI sweeps, or ``n_iter``
    sweeps from ``previous`` factors ``{k: U_k}``; returns ``{k: U_k}``."""
    if previous is not None:
        factors = dict(previous)
    else:
        factors = {k: leading_eigenvectors(gram(source, k, {}), ranks[k], source.dtype) for k in modes}
    sweeps = n_iter if len(modes) > 1 or previous is not None else 0
    for _ in range(sweeps):
        for k in modes:
            others = {j: factors[j] for j in modes if j != k}
            factors[k] = leading_eigenvectors(gram(source, k, others), ranks[k], source.dtype)
    return factors


def project(source, factors):
    """The core ``G x_k U_k^H`` over every ``k`` in ``factors``, read along axis 0."""
    shape = source.shape
    core_shape = tuple(factors[k].shape[1] if k in factors else d for k, d in enumerate(shape))
    # last mode first: its product reads the piece in place (tensordot copies an operand
    # whose contracted mode is not innermost), so no reordered copy of a whole piece is made
    # and each later copy is of an already contracted, smaller tensor
    others = sorted((k for k in factors if k != 0), reverse=True)
    core = (torch.zeros if 0 in factors else torch.empty)(core_shape, dtype=source.dtype, device=source.device)
    for start, stop in spans(shape[0], gradient_chunks.rows_per_chunk(shape, 0, source.itemsize, device=source.device)):
        # contracted here rather than by _contract: an argument stays referenced until the
        # call returns, while rebinding frees the piece right after the first product
        part = source.read(0, start, stop)
        for j in others:
            part = mode_product(part, factors[j], j, adjoint=True)
        if 0 in factors:
            # core += U_0[rows]^H @ part, accumulated by the product itself: a core-size
            # temporary per chunk would double the core
            core.view(core_shape[0], -1).addmm_(factors[0][start:stop].conj().transpose(0, 1),
                                                part.reshape(stop - start, -1))
        else:
            core[start:stop] = part
        del part  # before the next piece is read
    return core


def project_over_gradient(source, factors, buffer):
    """:func:`project`, with the core written over the gradient ``source`` reads, which
    nothing may read afterwards; the same additions in the same order, so the same numbers.

    ``buffer`` is the gradient's memory seen in ``source.dtype`` (flat). Each chunk's
    partly contracted rows (every mode but 0) are written over gradient rows already read,
    then the core is accumulated one block of columns at a time over the same row chunks
    as :func:`project` and written over the rows it read. Without this the core (a quarter
    of the entries in complex64: half the bytes of a complex32 gradient) is a new tensor
    alongside the whole gradient. Returns None (nothing written) when mode 0 is not
    compressed or the partly contracted rows do not fit behind the reads.
    """
    shape = source.shape
    if 0 not in factors:
        return None
    core_shape = tuple(factors[k].shape[1] if k in factors else d for k, d in enumerate(shape))
    inner = math.prod(core_shape[1:])
    # a written row must end before the first unread gradient row starts
    if inner * source.itemsize > math.prod(shape[1:]) * source.grad.element_size() \
            or buffer.numel() < shape[0] * inner:
        return None
    contracted = buffer[:shape[0] * inner].view(shape[0], inner)
    others = sorted((k for k in factors if k != 0), reverse=True)
    row_spans = spans(shape[0], gradient_chunks.rows_per_chunk(shape, 0, source.itemsize, device=source.device))
    for start, stop in row_spans:
        part = source.read(0, start, stop)
        for j in others:
            part = mode_product(part, factors[j], j, adjoint=True)
        contracted[start:stop] = part.reshape(stop - start, -1)
        del part
    r0 = core_shape[0]
    columns = max(1, int(gradient_chunks.chunk_bytes(source.device)) // (source.itemsize * r0))
    for c0, c1 in spans(inner, columns):
        block = torch.zeros(r0, c1 - c0, dtype=source.dtype, device=source.device)
        for start, stop in row_spans:
            block.addmm_(factors[0][start:stop].conj().transpose(0, 1), contracted[start:stop, c0:c1])
        contracted[:r0, c0:c1] = block  # these columns are not read again
    return contracted[:r0].view(core_shape)


def back_project_rows(core, factors, start, stop):
    """Indices ``start:stop`` along axis 0 of ``core x_k U_k`` (a new contiguous tensor)."""
    if not factors:  # every mode at full rank: the core is the tensor itself
        return core[start:stop].clone()
    if 0 in factors:
        out = mode_product(core, factors[0][start:stop], 0, adjoint=False)
    else:
        out = core[start:stop]
    return _contract(out, factors, sorted(k for k in factors if k != 0), adjoint=False).contiguous()
