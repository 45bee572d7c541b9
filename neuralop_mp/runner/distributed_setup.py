"""The stand-in for upstream's ``neuralop.training.setup`` under ``neuralop-mp run``.

Upstream's ``setup(config)`` with ``distributed.use_distributed`` counts ranks with
``torch.cuda.device_count()`` (so on CPUs it creates no process group, and on several
nodes it counts one node's GPUs), always uses nccl, and returns ``cuda:<rank>`` (the
wrong GPU on every node but the first; no device at all on CPUs). The stand-in joins
the process group ``torchrun`` describes (:func:`~neuralop_mp.training.distributed.init_from_env`:
nccl with ``cuda:LOCAL_RANK`` where CUDA is available, gloo on the CPU otherwise) and
otherwise does what upstream does: seed ``distributed.seed + rank``, make rank 0 the
logger. Without ``use_distributed`` upstream's own ``setup`` runs; under torchrun, where
every rank then trains on the whole data on its own (the same work, repeated), rank 0 warns
once, naming the flag.
"""
import os
import sys

import torch

from ..configs.zencfg_compat import read_key
from ..training import distributed


def make_setup(original, report):
    """A ``setup(config)`` like upstream's ``original`` that also runs data parallel on CPUs."""

    warned = False

    def setup(config):
        nonlocal warned
        section = read_key(config, "distributed")
        if section is None or not read_key(section, "use_distributed"):
            if distributed.launched_by_torchrun() and not warned:
                warned = True
                _warn_ranks_train_alone(report)
            return original(config)
        model_parallel = read_key(section, "model_parallel_size")
        if model_parallel not in (None, 1):
            raise ValueError(f"Invalid distributed.model_parallel_size={model_parallel!r}: neuralop-mp runs "
                             "data parallel only; allowed: 1 or None.")
        device = distributed.init_from_env()
        rank, world_size = distributed.rank(), distributed.world_size()
        seed = read_key(section, "seed")
        if seed is not None:
            torch.manual_seed(seed + rank)  # upstream's rule; DDP then copies rank 0's weights to all
            if device.type == "cuda":
                torch.cuda.manual_seed(seed + rank)
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
        report.inform(f"data parallel: rank {rank} of {world_size} (backend {backend}, device {device})")
        return device, rank == 0

    return setup


def _warn_ranks_train_alone(report):
    """Say (rank 0, at once and in the summary's warnings) that the ranks torchrun started train
    independently: without ``--distributed.use_distributed True`` upstream's ``setup`` joins no
    process group, so each rank trains on the whole data, the same work as one process repeated."""
    message = (f"torchrun started {os.environ['WORLD_SIZE']} ranks, but the script's distributed.use_distributed is False: each rank "
               "trains on the whole data on its own (the same work, repeated, and no rank's model sees the others' "
               "gradients); pass --distributed.use_distributed True after the script's -- to train data parallel, "
               "or run one process without torchrun.")
    if distributed.launch_rank() == 0:
        print(f"neuralop-mp run: WARNING: {message}", file=sys.stdout, flush=True)
        report.note(message)
