"""Peak of live tensor bytes during a piece of work, on CPU as on GPU.

On a GPU, ``torch.cuda.max_memory_allocated`` is the peak. On CPU there is no such
counter, so :class:`PeakTensorBytes` watches every tensor an operator returns (a
``TorchDispatchMode``, below autograd, so the tensors autograd saves, the gradients
and the optimizer's temporaries are all seen), counts each storage once while any
tensor holding it is alive (a weak reference tells when the last one dies), and
keeps the largest total; a view of a tensor named by ``alive`` is not counted again. Added to it are the bytes of the tensors named by
``alive``, which exist before the block (parameters, optimizer state). The result
is the peak of bytes held by tensors at any moment of the block, so freeing a
gradient early lowers it, while a sum of params + grads + state + activations
would not change. Tensors that existed before the block and are freed inside it
are not subtracted, so the peak errs high by at most their size.
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .vocabulary import dtype_name


def _storage_key(tensor):
    storage = tensor.untyped_storage()
    return (storage.data_ptr(), storage.nbytes())


def tensor_bytes(obj, seen=None):
    """Bytes of the distinct storages of every tensor in a (nested) dict / list / tuple.

    ``seen`` (a set) collects the storages counted, so a caller can tell them apart later.
    """
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = _storage_key(obj)
        if key in seen:
            return 0
        seen.add(key)
        return key[1]
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


class _LiveStorages(TorchDispatchMode):
    def __init__(self, counted=(), describe=False):
        super().__init__()
        # storages already in the baseline: an operator returning a view of one (a
        # parameter's alias or real view) allocates nothing
        self.counted = set(counted)
        self.live = {}  # storage key -> [bytes, tensors alive]
        self.current = 0
        self.peak = 0
        # describe: what made each live storage, and the live storages at the peak; the
        # list is taken when the total first falls from a new peak (once per such
        # maximum, not at every allocation that raises it)
        self.describe = describe
        self.made_by = {}
        self.at_peak = []
        self._at_new_peak = False
        self._refs = {}  # id -> (weak reference to a watched tensor, its storage's key)

    def snapshot_peak(self):
        """Record the live storages as those at the peak (called when the total first falls
        from a new peak, or at the end if it never fell)."""
        self._at_new_peak = False
        self.at_peak = sorted(((n, *self.made_by[k]) for k, (n, _) in self.live.items()), key=lambda row: -row[0])

    def _release(self, key):
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                if self._at_new_peak:
                    self.snapshot_peak()
                self.current -= entry[0]
                del self.live[key]
                self.made_by.pop(key, None)

    def _watch(self, tensor, func):
        """Count ``tensor``'s storage while some tensor holding it is alive."""
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        nbytes = storage.nbytes()
        key = (storage.data_ptr(), nbytes)
        if key in self.counted:
            return
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [nbytes, 0]
            self.current += nbytes
            if self.current > self.peak:
                self.peak = self.current
                self._at_new_peak = self.describe
            if self.describe:
                self.made_by[key] = (str(func), tuple(tensor.shape), dtype_name(tensor.dtype))
        entry[1] += 1
        # a weak reference whose callback releases the storage (what weakref.finalize does, without
        # its global registry: this runs for every operator of the block)
        ref = weakref.ref(tensor, self._dead)
        self._refs[id(ref)] = (ref, key)

    def _dead(self, ref):
        self._release(self._refs.pop(id(ref))[1])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):  # most operators return one tensor: no pytree walk
            self._watch(out, func)
        else:
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self._watch(tensor, func)
        return out


class PeakTensorBytes:
    """Context manager measuring the peak of live tensor bytes inside its block.

    Parameters
    ----------
    alive : list, optional
        Tensors (or dicts / lists of them, e.g. ``list(model.parameters())`` and
        ``optimizer.state``) alive before the block, counted as held throughout.
    device : str or torch.device, default "cpu"
        "cuda": ``torch.cuda.max_memory_allocated`` above the block's start instead.
    describe : bool, default False
        CPU only: also list the tensors alive at the peak (``peak_tensors``), to find
        what to free; it slows the block a little.

    Attributes
    ----------
    peak_bytes : int
        ``baseline_bytes`` plus the largest total of tensor bytes allocated in the block
        and alive at the same time.
    baseline_bytes : int
        Bytes of ``alive``.
    peak_tensors : list of (int, str, tuple, str)
        With ``describe``: ``(bytes, operator, shape, dtype)`` of each storage allocated
        in the block and alive at the peak, largest first (``alive`` is not listed).

    Examples
    --------
    >>> with PeakTensorBytes(alive=[list(model.parameters()), optimizer.state]) as meter:
    ...     model(x).square().mean().backward(); optimizer.step()
    >>> meter.peak_bytes
    """

    def __init__(self, alive=(), device="cpu", describe=False):
        self._alive = alive
        self.device = torch.device(device)
        self.describe = bool(describe)
        self.peak_tensors = []
        self.baseline_bytes = 0
        self.peak_bytes = None
        self._mode = None

    def __enter__(self):
        counted = set()
        self.baseline_bytes = tensor_bytes(list(self._alive), counted)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._mode = _LiveStorages(counted, self.describe)
            self._mode.__enter__()
        return self

    @property
    def live_bytes(self):
        """Bytes allocated inside the block so far and still alive (CUDA: allocated now
        minus at the start)."""
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) - self._start
        return self._mode.current

    @property
    def peak_so_far(self):
        """``baseline_bytes`` plus the largest total allocated since the start, or since
        the last :meth:`restart_peak`, while the block runs."""
        if self.device.type == "cuda":
            return self.baseline_bytes + torch.cuda.max_memory_allocated(self.device) - self._start
        return self.baseline_bytes + self._mode.peak

    def restart_peak(self):
        """Measure the peak from here on (one phase of the block after another); still
        relative to the block's start, so phases compare with each other. ``peak_bytes``
        at the block's end is then the last phase's peak."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._mode.peak = self._mode.current
            if self.describe:  # the new phase's peak so far is now: its tensors, not the last phase's
                self._mode.snapshot_peak()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        else:
            self._mode.__exit__(*exc)
            if self.describe:
                if self._mode._at_new_peak:  # the peak was reached last and never fell: the end
                    self._mode.snapshot_peak()
                self.peak_tensors = self._mode.at_peak
        self.peak_bytes = self.peak_so_far
        return False
