"""Device-independent memory accounting: bytes of tensors saved for backward.

``torch.cuda.max_memory_allocated`` exists only on a GPU; the bytes autograd keeps
alive between forward and backward are the activation memory of a training step on
any device, and they are what half precision is meant to shrink.
"""
import torch


class SavedTensorBytes:
    """Context manager that sums the bytes autograd saves for backward.

    Storages are counted once even when several saved tensors view the same memory
    (``view_as_real``, slices). Storages of ``exclude`` tensors (typically the model's
    parameters, which live in memory anyway) are not counted.

    Examples
    --------
    >>> with SavedTensorBytes(exclude=model.parameters()) as meter:
    ...     loss = model(x).square().mean()
    >>> meter.bytes
    """

    def __init__(self, exclude=()):
        self._excluded = {self._key(t) for t in exclude}
        self._seen = {}
        self._ctx = None

    @staticmethod
    def _key(t):
        s = t.untyped_storage()
        return (t.device, s.data_ptr())

    def _pack(self, t):
        key = self._key(t)
        if key not in self._excluded and key not in self._seen:
            self._seen[key] = t.untyped_storage().nbytes()
        return t

    @property
    def bytes(self):
        return sum(self._seen.values())

    def __enter__(self):
        self._seen.clear()
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False
