"""Keeping freed CPU memory inside the process between training steps (glibc malloc).

torch's CPU tensors come from ``malloc``. glibc serves every block above its mmap
threshold (128 KiB, adapting up to at most 32 MiB) with a fresh ``mmap`` and unmaps it
again on ``free``. A training step frees its activations and the next step allocates
the same sizes again, so every step takes a page fault on, and has the kernel zero,
every page of every large tensor it writes. On the 2-core development VM that made
training steps at 256^2 1.6-2.4x slower than with freed memory kept (upstream's model
and ours), and made their time move with the host's memory pressure
(``neuralop-mp bench allocator``; docs/benchmarks.md, "Freed CPU memory kept").

:func:`set_cpu_allocator` with ``"keep"`` tells glibc to serve every block from its
heap (``M_MMAP_MAX = 0``) and to hand the heap's free top back to the kernel only
past 2 GiB (``M_TRIM_THRESHOLD``), the behaviour of a caching allocator: blocks that are freed are
reused, and the process keeps the heap it reached, fragmentation included (1.35-1.44x
the peak resident size in that benchmark). It changes how memory is obtained, never a value.
It acts on the whole process, so the library never calls it on import:
``neuralop-mp train`` and ``neuralop-mp bench spectral`` do on a CPU, by default, with
``--cpu-allocator system`` to leave malloc as it is. Elsewhere (not glibc) it
does nothing and says so.

References
----------
.. [1] The GNU C Library manual, "Malloc Tunable Parameters" (``mallopt``:
   ``M_MMAP_MAX``, ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``).
"""
import ctypes
import ctypes.util
import platform

from .vocabulary import check_choice

CPU_ALLOCATOR_MODES = ("keep", "system")
DEFAULT_CPU_ALLOCATOR = "keep"

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
# the largest value of mallopt's int: the heap's free top is trimmed only past 2 GiB
_TRIM_PAST = 2**31 - 1

_state = {"mode": "system", "detail": "malloc as the system configures it"}


def _glibc():
    """The C library if it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``), else None."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):  # musl, or no C library found under that name
        return None


def set_cpu_allocator(mode):
    """Choose how this process obtains CPU memory; returns a one-line description.

    Parameters
    ----------
    mode : {"keep", "system"}
        ``"keep"``: freed memory stays in the process for the next step's tensors
        (glibc only; elsewhere nothing changes and the description says so).
        ``"system"``: malloc is left as it is. Once ``"keep"`` was applied it lasts
        for the life of the process; asking for ``"system"`` afterwards raises.

    Raises
    ------
    ValueError
        On a mode not in :data:`CPU_ALLOCATOR_MODES`, or ``"system"`` after ``"keep"``.
    """
    mode = check_choice("cpu_allocator", mode, CPU_ALLOCATOR_MODES)
    if mode == "system":
        if _state["mode"] == "keep":
            raise ValueError("cpu_allocator='system' cannot be restored in this process: 'keep' was "
                             "already applied (malloc settings last until the process exits).")
        return describe_cpu_allocator()
    if _state["mode"] == "keep":
        return describe_cpu_allocator()
    libc = _glibc()
    if libc is None:
        _state["detail"] = f"malloc as the system configures it ('keep' needs glibc; this is {platform.system()})"
        return describe_cpu_allocator()
    # mallopt returns 1 on success, 0 on a refused value
    if libc.mallopt(_M_MMAP_MAX, 0) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_PAST) != 1:
        libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)  # not half applied
        _state["detail"] = "malloc as the system configures it (glibc refused the settings of 'keep')"
        return describe_cpu_allocator()
    _state.update(mode="keep", detail="freed memory kept in the process (glibc heap, trimmed only past 2 GiB)")
    return describe_cpu_allocator()


def cpu_allocator_mode():
    """``"keep"`` once :func:`set_cpu_allocator` applied it in this process, else ``"system"``."""
    return _state["mode"]


def describe_cpu_allocator():
    """One line for run summaries and benchmark headers: what CPU allocation does now."""
    return _state["detail"]
