"""Data-parallel glue: what every rank must agree on, decided through torch.distributed.

Data-parallel training (DistributedDataParallel, launched by ``torchrun``) keeps one
copy of the model and the optimizer per rank and relies on every rank taking the
same step. DDP all-reduces (averages) the gradients during ``backward``; from there
the ranks must make the same decisions on their own:

- skip or take the step: a loss or gradient that is non-finite on one rank only
  (a bad sample, or an overflow after the all-reduce) must skip the step on every
  rank, and the loss scale must back off everywhere. :func:`any_rank` all-reduces
  that flag (one MAX of one number per step).
- TensorGRaD's projectors: the Tucker factors come from an eigen-decomposition of
  the all-reduced gradient (deterministic), the random-k sparse indices from a
  ``torch.Generator`` seeded with the parameter's stored seed and the step, never
  from a rank's global RNG; so they agree without communication.
- a ``ReduceLROnPlateau`` step: the trainer steps it with the epoch's loss summed over
  every rank's batches (:func:`sum_over_ranks`), not with the rank's own shard's; the
  same all-reduce gives the epoch's recorded training loss (history, loss curve), over
  every rank's batches and samples as the evaluation metrics are.
- stopping an epoch without a finite loss: the trainer stops on every rank when one
  rank had none (the ranks are named through the same all-reduce of the epoch's
  counts, once per epoch), not on that rank alone while the others wait in their next
  collective until the process group's timeout. The stop after too many consecutive
  skipped steps needs nothing more: it counts the all-reduced skip decisions.
- the precision phase: chosen from the epoch number, the same on every rank as
  long as every rank runs the same number of epochs and of batches per epoch,
  which :func:`check_same_on_all_ranks` verifies before training starts.
- complex32 weights: DDP's reducer fails on them under autocast (torch: "Expected
  ComplexFloat, got ComplexHalf" in the backward after its first, once it rebuilds
  its buckets). :func:`wrap_model` keeps them out of DDP, and the trainer averages
  their gradients with :func:`average_gradients` before each step's check.

This module builds no communication of its own: it calls ``torch.distributed``
collectives and DDP. A gloo group it joins (:func:`init_from_env`) it also leaves, at exit.
"""
import atexit
import os
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

BACKENDS = ("gloo", "nccl")


def is_distributed():
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launch_rank():
    """This process's rank as launched: the process group's, else torchrun's ``RANK``, else 0.

    Asks "am I the process that prints and writes?" where :func:`rank` cannot answer: before
    the group exists (a run folder is claimed before training starts it) or after a script
    ended its own (upstream's train_navier_stokes.py does). A ``RANK`` that is not an integer
    reads as 0, as outside torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world_size():
    """The number of ranks (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _collective_device():
    """nccl only reduces CUDA tensors; gloo reduces CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag):
    """Whether ``flag`` is true on at least one rank (``flag`` itself outside a group).

    A collective: every rank must call it at the same point, once per step.
    """
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def check_same_on_all_ranks(**values):
    """Raise a ValueError naming each value that differs between ranks.

    Values that decide when a precision phase starts or how many steps an epoch has
    (``n_epochs``, the schedule, the number of batches) must be equal everywhere, or
    ranks would wait on each other's collectives forever. A collective.
    """
    if not is_distributed():
        return
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    differing = {key: [g[key] for g in gathered] for key in values if any(g[key] != values[key] for g in gathered)}
    if differing:
        details = "; ".join(f"{key} per rank = {per_rank!r}" for key, per_rank in differing.items())
        raise ValueError(
            f"Data-parallel ranks disagree: {details}. Every rank must run the same schedule, number of "
            "epochs and number of batches per epoch (use a DistributedSampler, which pads every rank to "
            "the same length).")


def mean_over_ranks(metrics, counts=None):
    """``metrics`` (a dict) with each number replaced by its mean over every rank's samples.

    Each rank evaluated its shard of a test set: its value of a metric is a mean over
    ``counts[key]`` samples, so the ranks' values are weighted by those counts (shards of
    unequal sizes: the mean over all their samples, not the mean of the ranks' means). A
    key without a count weighs the same on every rank. A DistributedSampler pads the shards
    to equal sizes by repeating samples: those count more than once, which nothing here can undo.
    One collective (every number and count in one all-reduce); every rank must pass the same
    numeric keys (evaluate_all does): with others the ranks' sums do not line up, and the call
    fails or gives wrong means. Non-numeric entries are kept as they are; outside a group ``metrics``
    itself is returned.
    """
    if not is_distributed():
        return metrics
    keys = sorted(k for k, v in metrics.items()
                  if (torch.is_tensor(v) and v.numel() == 1) or (isinstance(v, (int, float)) and not isinstance(v, bool)))
    if not keys:
        return metrics
    weights = [float((counts or {}).get(k, 1)) for k in keys]
    totals = sum_over_ranks([float(metrics[k]) * w for k, w in zip(keys, weights)] + weights)
    sums, weight_sums = totals[:len(keys)], totals[len(keys):]
    return {**metrics, **{k: total / weight for k, total, weight in zip(keys, sums, weight_sums)}}


def sum_over_ranks(values):
    """The sum over the ranks of each number in ``values`` (a list of floats), in float64.

    ``values`` itself outside a group. A collective: every rank passes as many numbers,
    in the same order.
    """
    if not is_distributed():
        return list(values)
    totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return totals.tolist()


def gather_objects(obj):
    """``obj`` of every rank, as a list indexed by rank (``[obj]`` outside a group). A collective."""
    if not is_distributed():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier():
    """Wait for every rank (nothing outside a group)."""
    if is_distributed():
        dist.barrier()


# parameter dtypes DDP's reducer cannot hold: complex32 fails under autocast from the second
# backward on (its bucket rebuild); these are left to average_gradients
_SELF_AVERAGED_DTYPES = (torch.complex32,)


def wrap_model(model, device):
    """``model`` inside DistributedDataParallel, on ``device``.

    Upstream's Trainer passes ``device_ids=[rank]`` whatever the device, which DDP
    refuses for CPU modules (gloo) and which names the wrong GPU on any node but the
    first; here a CPU model gets no ``device_ids`` and a CUDA model the index of its
    own device. An already wrapped model is returned unchanged.

    complex32 parameters are kept out of DDP (its reducer fails on them under autocast):
    they get rank 0's values here, as DDP gives the others, and their gradients must be
    averaged with :func:`average_gradients` (:func:`self_averaged_parameters`) before
    each optimizer step.
    """
    if isinstance(model, DistributedDataParallel):
        return model
    device = torch.device(device)
    model = model.to(device)
    kept_out = [name for name, p in model.named_parameters() if p.dtype in _SELF_AVERAGED_DTYPES]
    previous = getattr(model, "_ddp_params_and_buffers_to_ignore", None)
    if kept_out:
        # DDP matches a top-level parameter's name with a leading dot in one place, without in another
        ignored = set(previous or ()) | set(kept_out) | {f".{name}" for name in kept_out if "." not in name}
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, sorted(ignored))
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        wrapped = DistributedDataParallel(model, device_ids=[index], output_device=index)
    else:
        wrapped = DistributedDataParallel(model)
    if kept_out:
        # read by DDP's constructor alone: another DDP of this model later (a user's own) must not
        # inherit it, or it would leave these weights unsynchronised without a word
        if previous is None:
            del model._ddp_params_and_buffers_to_ignore
        else:
            model._ddp_params_and_buffers_to_ignore = previous
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name in kept_out:
                _in_place_collective(parameters[name], lambda flat: dist.broadcast(flat, src=0))
    return wrapped


def data_parallel(model, use_distributed=False):
    """Why ``model`` trains data-parallel, else None: it is a DistributedDataParallel module (one
    the caller wrapped included, on any number of ranks), or ``use_distributed`` is set inside a
    process group of more than one rank (where the trainer wraps it). The reason names what the
    caller gave, for the messages of what data parallelism refuses."""
    if isinstance(model, DistributedDataParallel):
        return "a model wrapped in DistributedDataParallel"
    if use_distributed and is_distributed():
        return f"use_distributed=True on {world_size()} ranks"
    return None


def self_averaged_parameters(model):
    """The parameters of the DDP ``model`` that :func:`wrap_model` kept out of DDP: those whose
    gradients :func:`average_gradients` must average. ``[]`` for any other model."""
    if not isinstance(model, DistributedDataParallel):
        return []
    ignored = model.parameters_to_ignore
    return [p for name, p in model.module.named_parameters()
            if name in ignored and p.dtype in _SELF_AVERAGED_DTYPES and p.requires_grad]


def _in_place_collective(tensor, collective):
    """Run ``collective`` on the real view of ``tensor`` (complex32 as float16 pairs, which gloo and
    nccl reduce), in place; a non-contiguous tensor through a contiguous copy."""
    flat = tensor if tensor.is_contiguous() else tensor.contiguous()
    collective(_real_view(flat))
    if flat is not tensor:
        tensor.copy_(flat)


def average_gradients(params):
    """Replace each gradient of ``params`` with its mean over the ranks, in place, as DDP does.

    As DDP: each rank divides by the number of ranks, then the ranks sum (in the gradient's
    own dtype: complex32 as float16 pairs), so the sum of loss-scaled float16 gradients
    overflows no sooner than the mean would, and rounds as any float16 sum does: on 2 ranks
    the result is within one float16 rounding of the exact mean, on more each rank's share
    and each partial sum round. Gradients of one dtype are packed into buckets of at most
    :data:`_BUCKET_BYTES`, one all-reduce each; a gradient alone in its bucket (any larger
    one is) is reduced in place, without a copy. A parameter without a gradient on some rank
    counts zeros there; on none, it keeps none. A collective: every rank passes the same
    parameters, once per optimizer step, after backward; nothing outside a group.
    """
    if not is_distributed() or not params:
        return
    present = torch.tensor([float(p.grad is not None) for p in params], device=_collective_device())
    dist.all_reduce(present, op=dist.ReduceOp.SUM)
    with torch.no_grad():
        grads = []
        for p, count in zip(params, present.tolist()):
            if count:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        # packed as DDP packs its buckets: one all-reduce per bucket, not one per weight
        for bucket in _buckets(grads):
            if len(bucket) == 1:
                # a lone gradient (any one larger than a bucket is) is reduced on its own storage:
                # packing it would copy it whole, adding its size to the step's peak memory
                _in_place_collective(bucket[0], _mean_in_place)
            else:
                _mean_packed(bucket)


def _mean_packed(bucket):
    """Average the tensors of ``bucket`` with one all-reduce of a packed copy of them (freed on
    return, so one bucket's copy exists at a time)."""
    flat = torch.cat([_real_view(g).reshape(-1) for g in bucket])
    _mean_in_place(flat)
    offset = 0
    for g in bucket:
        real = _real_view(g)
        real.copy_(flat[offset:offset + real.numel()].view_as(real))
        offset += real.numel()


# DDP's default bucket size: bounds the packed copy a bucket of several gradients adds to the
# gradients' memory (a gradient larger than this is alone in its bucket, reduced in place)
_BUCKET_BYTES = 25 * 2 ** 20


def _real_view(tensor):
    """``tensor``, complex ones as (real, imag) pairs: what gloo and nccl reduce (complex32 included)."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def _buckets(tensors):
    """``tensors`` in lists of one real dtype (complex32 counts as float16) and device, each of
    at most :data:`_BUCKET_BYTES` unless one tensor alone is larger."""
    buckets, open_buckets = [], {}
    for tensor in tensors:
        key = (_real_view(tensor).dtype, tensor.device)
        bucket, size = open_buckets.get(key, (None, 0))
        nbytes = tensor.numel() * tensor.element_size()
        if bucket is None or size + nbytes > _BUCKET_BYTES:
            bucket, size = [], 0
            buckets.append(bucket)
        bucket.append(tensor)
        open_buckets[key] = (bucket, size + nbytes)
    return buckets


def _mean_in_place(flat):
    flat.div_(dist.get_world_size())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)


def init_from_env(backend=None):
    """Join the process group ``torchrun`` describes in the environment; return the device.

    Parameters
    ----------
    backend : {"gloo", "nccl"} or None
        None: :func:`backend_for` the default device (nccl when CUDA is available, else gloo).

    Returns
    -------
    torch.device
        ``cuda:LOCAL_RANK`` with nccl, else the CPU. Outside torchrun (no
        ``WORLD_SIZE`` in the environment) no group is created and the device is
        ``cuda`` when available, else the CPU. A gloo group created here is destroyed when
        the process exits (``atexit``; the default group then, unless the caller destroyed it).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"Invalid backend={backend!r}; expected one of {list(BACKENDS)} or None.")
    default_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if "WORLD_SIZE" not in os.environ:
        return default_device
    if backend is None:  # the rule `neuralop-mp train` joins by, and names the backend by in its summary
        backend = backend_for(default_device)
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs CUDA, which is not available here; use backend='gloo' on CPUs.")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        if backend == "gloo":  # left at exit; nccl's as torch leaves it: destroying a communicator
            # whose peer died can block (NCCL's ncclCommDestroy), which an exit after a failed rank must not
            atexit.unregister(_leave_process_group)  # once, however often a group is joined
            atexit.register(_leave_process_group)
    return device


def _leave_process_group():
    # at exit, while the interpreter is whole: a gloo group left to the interpreter's teardown can
    # abort a rank whose run finished ("terminate called without an active exception", exit -6),
    # which torchrun then reports as a failed run. A script that left the group itself: nothing to do
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def backend_for(device):
    """The backend a process group of ranks on ``device`` uses: nccl for CUDA, gloo else (what
    ``neuralop-mp train`` joins, and how its summary names it)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def launched_by_torchrun():
    """True in a process that ``torchrun`` started as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def collective_failure(error):
    """Whether ``error`` says that a peer rank's process is gone (killed, crashed, or stopped by an
    error of its own) while this rank communicated with it: gloo's transport found the connection
    closed or reset by the peer (a plain RuntimeError, DDP's reducer in ``backward`` included), or
    NCCL aborted its communicator, found the remote process exited, or its watchdog timed out a
    collective. Only inside a launch of several ranks.

    Not one: torch's refusal of a collective's arguments (``ProcessGroupGloo::allgather: invalid
    tensor size ...``, a caller's bug, which keeps its traceback), and a failure to set the group up
    (a :class:`torch.distributed.DistNetworkError` or :class:`torch.distributed.DistStoreError`: a
    wrong ``MASTER_ADDR``, a port taken), which no stopped rank caused. A
    :class:`torch.distributed.DistBackendError` is one only where its text says so, as any other.
    """
    if not launched_by_torchrun() or not isinstance(error, RuntimeError):
        return False
    if isinstance(error, (dist.DistNetworkError, dist.DistStoreError)):
        return False
    message = str(error)
    if _GLOO_TRANSPORT in message:
        return any(marker in message for marker in _GLOO_PEER_GONE)
    return any(marker in message for marker in _NCCL_PEER_GONE)


# where gloo's transport errors come from (``[.../gloo/transport/tcp/pair.cc:553] Connection closed by
# peer ...``), and the words of those a peer gone causes. Not gloo's timeouts: a peer gone closes its
# connections at once, so a timeout means one still alive elsewhere (a collective missing on one rank)
_GLOO_TRANSPORT = "gloo/transport/"
_GLOO_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Read error")
# NCCL's, as torch raises them: its communicator aborted (the watchdog's doing after an error or a
# timeout), NCCL's ncclRemoteError, and the watchdog's timeout, which is how NCCL meets a peer gone
# mid-collective (its kernel waits on the peer; nothing else ends the wait)
_NCCL_PEER_GONE = ("NCCL communicator was aborted", "remote process exited or there was a network error",
                   "Watchdog caught collective operation timeout")


def collective_failure_text(error):
    """The gist of the :func:`collective_failure` ``error``, for one line: its first sentence, without
    the source location gloo puts first (``Connection reset by peer [127.0.0.1]:19376``)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("[") and "] " in text:  # "[/path/gloo/transport/tcp/pair.cc:537] Read error ..."
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".")


def padded_samples(n_samples, n_ranks):
    """How many samples a DistributedSampler (``drop_last=False``) repeats each epoch so that each
    of ``n_ranks`` ranks gets as many of ``n_samples``: up to the next multiple of ``n_ranks``."""
    return -n_samples % n_ranks


def padding_warning(n_samples, n_ranks):
    """What :func:`shard_loader` says of the samples a DistributedSampler repeats to give each of
    ``n_ranks`` ranks as many of ``n_samples`` (:func:`padded_samples`); None where it repeats none.

    The sampler appends the samples from the first on, again as often as needed: with fewer
    repeats than samples, as many samples are seen twice; with more (fewer samples than ranks),
    every sample is repeated, seen as many times as the padded count allows, some once more.
    """
    repeated = padded_samples(n_samples, n_ranks)
    if not repeated:
        return None
    total = n_samples + repeated
    if repeated <= n_samples:
        how = f"{repeated} of the {n_samples} training samples are seen twice in every epoch"
    else:
        times, more = divmod(total, n_samples)  # each sample `times` times, `more` of them once more
        seen = f"{times} times" if not more else f"{times} or {times + 1} times"
        how = (f"all {n_samples} training samples are repeated in every epoch (each seen {seen})" if n_samples > 1
               else f"the one training sample is repeated in every epoch (seen {seen})")
    return (f"{how}: the DistributedSampler pads the {n_samples} samples to {total} ({total // n_ranks} per rank "
            f"on {n_ranks} ranks) so that every rank takes as many steps; with a number of training samples that "
            f"is a multiple of {n_ranks} none is repeated.")


def shard_loader(loader, seed=0):
    """``loader`` over this rank's shard of its dataset (a shuffling DistributedSampler
    seeded with ``seed``, the same on every rank); ``loader`` itself outside a group.

    Where the dataset's size is no multiple of the number of ranks, the sampler repeats samples
    to give every rank as many (every rank must take as many steps): rank 0 says how many, once,
    in a ``UserWarning`` (:func:`padding_warning`)."""
    if not is_distributed():
        return loader
    message = padding_warning(len(loader.dataset), world_size())
    if message and rank() == 0:
        warnings.warn(message, UserWarning, stacklevel=2)
    sampler = torch.utils.data.DistributedSampler(loader.dataset, shuffle=True, seed=int(seed))
    return torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                                       num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                       pin_memory=loader.pin_memory, drop_last=loader.drop_last)


def set_sampler_epoch(loader, epoch):
    """Reshuffle a DistributedSampler for ``epoch`` (upstream's loop never calls
    ``set_epoch``, so every epoch would see the same order)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
