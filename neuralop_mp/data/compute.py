"""Where and how the generators compute: device choice and CPU thread count."""
from contextlib import contextmanager, nullcontext

import torch


def default_device(device=None):
    """``device`` as a torch.device; default CUDA when available, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@contextmanager
def cpu_threads(n_threads=1):
    """Run the body with ``n_threads`` intra-op CPU threads, then restore the previous count.

    The solvers issue many small FFTs; on a busy machine torch's thread pool made
    them 10-30x slower than one thread (measured: Navier-Stokes 400+100 samples,
    81 s with 2 threads on 2 shared cores vs 3 s with 1), so generation on CPU uses one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def solver_threads(tensor):
    """One CPU thread for a solver working on ``tensor`` on the CPU; no change on CUDA."""
    return cpu_threads(1) if tensor.device.type == "cpu" else nullcontext()
