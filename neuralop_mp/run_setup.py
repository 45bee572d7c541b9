"""Checks and choices made before a run does any work: device, CPU threads, output folder,
settings a torchrun launch cannot run.

Each check fails with a :class:`RunSetupError` naming the bad value and what is
allowed, so ``neuralop-mp`` can print one line instead of a traceback, and does so
before data is generated or loaded (an unwritable output folder used to fail after
the last epoch, losing the results).
"""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no file locks
    fcntl = None

import torch

DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N")


class RunSetupError(ValueError):
    """A run cannot start as configured; the message says why and what to change."""


def parse_device(device):
    """``device`` as the torch device a run would use, without asking whether it is there
    (:func:`resolve_device` does): "auto" is CUDA when available, else CPU.

    Raises
    ------
    RunSetupError
        For a malformed name or a device type other than CPU and CUDA, naming the allowed forms.
    """
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(text)
    except (RuntimeError, TypeError):
        raise RunSetupError(f"Invalid device {device!r}; allowed: {', '.join(DEVICE_FORMS)}.") from None
    if parsed.type not in ("cpu", "cuda"):
        raise RunSetupError(f"Unsupported device {device!r}; allowed: {', '.join(DEVICE_FORMS)}.")
    return parsed


def resolve_device(device):
    """The torch device a run uses; fails now when it is unavailable.

    Parameters
    ----------
    device : str or torch.device
        "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".

    Raises
    ------
    RunSetupError
        For a malformed name, or a CUDA device this torch or this machine lacks.
    """
    resolved = parse_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible")
            raise RunSetupError(f"device {device!r} is not available: {why} (torch {torch.__version__}). "
                                "Use --device cpu, or --device auto to pick CUDA only when present.")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise RunSetupError(f"device {device!r} is not available: {count} CUDA device(s), "
                                f"indices 0..{count - 1}.")
    return resolved


def available_cpus():
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# how long a start looks at what runs now: the 1-minute load average lags a process started
# seconds before (a run started with one just begun took two threads, 3x slower an epoch)
BUSY_SAMPLE_S = 0.2


def busy_cpus_now(interval=BUSY_SAMPLE_S, read_stat=None):
    """The CPUs other processes keep busy now: the busy share of ``/proc/stat``'s CPU time over
    ``interval`` seconds (this process sleeps meanwhile) times the machine's CPUs. None where
    that cannot be read (not Linux) or does not describe this machine alone (a container that
    sees more CPUs in ``/proc/stat`` than ``os.cpu_count()``, e.g. its host's).

    ``read_stat``: a callable returning ``/proc/stat``'s text (tests); default the file."""
    import time

    def read():
        if read_stat is not None:
            return read_stat()
        with open("/proc/stat") as stat:
            return stat.read()

    def sample():
        lines = read().splitlines()
        per_cpu = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        values = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
        return per_cpu, sum(values), values[3] + values[4]

    try:
        per_cpu, total0, idle0 = sample()
        time.sleep(interval)
        _, total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if per_cpu != (os.cpu_count() or 0) or total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * per_cpu


def default_threads(cpus=None, load=None, busy_now=None):
    """Intra-op threads for training on the CPU: the CPUs that other processes leave idle.

    torch starts one thread per core, and its OpenMP threads spin while they wait for
    each other: on a busy 2-core machine two threads ran a quickstart epoch in ~130 s
    instead of 4-10 s with one (docs/configs.md, "Threads on a shared CPU"). So the CPUs
    busy by the 1-minute load average, or by a short look at what runs now
    (:func:`busy_cpus_now`, which sees a process started seconds ago), whichever is more,
    are left out, keeping at least one.

    Under ``torchrun`` the idle CPUs are shared by this node's ranks: each takes its
    share, ``LOCAL_WORLD_SIZE`` (torchrun's number of ranks on this node) dividing them,
    and still at least one (each rank taking them all would oversubscribe the node by
    that factor).

    Parameters
    ----------
    cpus : int, optional
        Available CPUs (default :func:`available_cpus`).
    load : float, optional
        Load average of the last minute (default ``os.getloadavg()[0]``, 0 where the
        OS has none).
    busy_now : float, optional
        CPUs busy now (default: :func:`busy_cpus_now` where ``load`` is not given, outside
        ``torchrun``, whose ranks starting together would count each other).
    """
    cpus = available_cpus() if cpus is None else int(cpus)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
        if busy_now is None and _local_ranks() == 1:
            busy_now = busy_cpus_now()
    busy = max(int(round(load)), int(round(busy_now or 0.0)))
    idle = min(cpus, cpus - busy)
    return max(1, idle // _local_ranks())


def _local_ranks():
    """The number of ranks ``torchrun`` started on this node (1 outside torchrun, whatever the
    environment inherited, or for a value that is not a positive integer)."""
    from .training.distributed import launched_by_torchrun

    if not launched_by_torchrun():
        return 1
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_update_in_backward_launch(update_in_backward, option):
    """Refuse ``update_in_backward`` in a process that ``torchrun`` started as one of several
    ranks, before anything is loaded or written: the update runs inside backward, before DDP's
    gradient all-reduce, so each rank would step with its own gradient.

    Parameters
    ----------
    update_in_backward : bool
        The setting (nothing to check when False).
    option : str
        The setting as the user wrote it, for the message (``"opt.update_in_backward"``,
        ``"--mp.update_in_backward"``).

    Raises
    ------
    RunSetupError
        Naming ``option``, the number of ranks and the reason (the trainer's own check,
        :func:`neuralop_mp.optim.update_in_backward.check_update_in_backward_settings`).
    """
    from .training.distributed import launched_by_torchrun

    if not update_in_backward or not launched_by_torchrun():
        return
    from .optim.update_in_backward import check_update_in_backward_settings

    try:
        check_update_in_backward_settings(distributed=True)
    except ValueError as error:
        raise RunSetupError(f"{option}=True cannot run under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}): "
                            f"{error} Set {option} false to train under torchrun.") from None


def parse_threads(value):
    """``--threads``: "auto" (None) or a positive int."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        threads = int(str(value))
    except ValueError:
        threads = 0
    if threads < 1:
        raise RunSetupError(f"Invalid --threads {value!r}; allowed: auto or an integer >= 1.")
    return threads


def resolve_threads(value):
    """``--threads`` as a number of threads: :func:`parse_threads`, with "auto" (or no value)
    read as :func:`default_threads`."""
    threads = parse_threads(value)
    return default_threads() if threads is None else threads


def threads_above_cpus(threads):
    """A one-line warning where ``threads`` (a count, per rank: ``torchrun``'s ranks on this node
    each take as many) is more than the CPUs this process may run on (:func:`available_cpus`),
    else None. torch's threads spin while they wait for each other, so more threads than CPUs
    run each step slower; "auto" (:func:`default_threads`) never asks for more."""
    cpus, ranks = available_cpus(), _local_ranks()
    if threads * ranks <= cpus:
        return None
    per_rank = f" on each of this node's {ranks} ranks ({threads * ranks} in all)" if ranks > 1 else ""
    return (f"--threads {threads}{per_rank} is more than the {cpus} CPU(s) this process may run on: torch's "
            f"threads wait for each other and each step runs slower; --threads auto uses the idle ones.")


_AUTO_REASON = "auto: the CPUs other processes leave idle"


def train_threads(given=None, recorded=None, resume=False):
    """``(threads, reason)``: the thread count of a ``train`` run and why, for its log line.

    ``given`` (``--threads`` typed now) wins; else, at a ``resume``, ``recorded`` (the run's
    ``command.json``: the count the run used, so it goes on bitwise as it started, whatever the
    load now); else "auto" (:func:`default_threads`). A run recorded before the count was
    (``recorded`` None, or the "auto" it was given) is asked again, as then.
    """
    if given is not None:
        threads = parse_threads(given)
        return (default_threads(), _AUTO_REASON) if threads is None else (threads, "as given")
    if resume and recorded is not None:
        threads = parse_threads(recorded)
        if threads is not None:
            return threads, "the run's own, from its command.json"
        return default_threads(), _AUTO_REASON + ", as the run recorded --threads auto"
    return default_threads(), _AUTO_REASON + ("; the run recorded no count" if resume else "")


def check_writable(folder, option="--output_dir", *, what="Output folder", create=True):
    """Create ``folder`` if needed (``create``) and prove a file can be written in it.

    The one check of every folder a command writes into (a run's ``--output_dir``, a data
    root, ``bench --out``, the folder of ``eval --json``), made before any work: a file in
    the way or a missing permission otherwise fails only when the results are saved.

    Parameters
    ----------
    folder : str or Path
    option : str
        What the user changes to choose another folder, for the message.
    what : str
        What the folder is, for the message.
    create : bool
        Create ``folder`` and its parents if missing; with False a missing folder fails.

    Raises
    ------
    RunSetupError
        Naming the folder and the reason (permission, a file in the way, read-only disk,
        a missing folder).
    """
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_check_"):
            pass
    except OSError as error:
        blocker = file_in_the_way(folder)
        if blocker is not None:  # "Not a directory" / "File exists" said what the user must change
            where = "is" if blocker == folder else f"cannot be created: {str(blocker)!r} is"
            raise RunSetupError(f"{what} {str(folder)!r} {where} a file, not a folder; "
                                f"choose another with {option}.") from None
        raise RunSetupError(f"{what} {str(folder)!r} is not writable ({error.strerror or error}); "
                            f"choose another with {option}.") from None
    return folder


def file_in_the_way(folder):
    """``folder``, or the folder above it that a path to it meets first, where that exists as a file
    (or anything but a folder), in which no folder can be made; None where there is none (the first
    path of ``folder`` and its parents that exists is a folder). The one rule of the messages that
    say "is a file, not a folder" (:func:`check_writable`, a checkpoint's ``save_dir``)."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def check_output_file(file, option, example_name):
    """Refuse, before any work, an output file ``option`` names that could not be written after it:
    a folder (``example_name`` shows a file name in it), or a file whose folder is missing or not
    writable (:func:`check_writable`, which creates nothing here).

    Raises
    ------
    RunSetupError
    """
    path = Path(file)
    if path.is_dir():
        raise RunSetupError(f"{option} {str(path)!r} is a folder; give a file name, e.g. "
                            f"{str(path / example_name)!r}.")
    check_writable(path.parent, option, what=f"The folder of {option}", create=False)


def removed_temporaries_line(names, left_by):
    """The one line that says the temporaries ``names`` (paths, as they are to be shown) that
    ``left_by`` ("a killed run", "a killed generation") left were removed: the run folder's and
    the data cache's sweeps of what a SIGKILL left say it in these words."""
    return (f"removed {len(names)} temporary file{'s' if len(names) > 1 else ''} that {left_by} left: "
            f"{', '.join(map(str, names))}")


@contextmanager
def file_lock(path, wait=True):
    """Hold ``flock``'s exclusive lock on the file ``path`` (created if missing) while the block
    runs; yield ``(descriptor, writable)``, or None where ``fcntl`` is missing (no lock).

    The system releases the lock when its process ends, a killed one included, so a lock file left
    behind never blocks. Another user's lock file (0644 under its umask) is opened for reading,
    which ``flock`` needs alone (``writable`` False). ``wait=False`` raises BlockingIOError at once
    while another process holds it. The data cache (:mod:`neuralop_mp.data.cache`) and the run
    folder (:func:`neuralop_mp.run_folder.run_folder_lock`) lock through it. A symbolic link at
    ``path`` is an OSError (ELOOP), never followed.
    """
    if fcntl is None:
        yield None
        return
    # a link in the lock's place is refused (ELOOP), not followed: in a shared folder anyone may
    # plant one, and opening it with O_CREAT would create (or lock) a file wherever it points
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor, writable = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o666), True
    except PermissionError:
        descriptor, writable = os.open(path, os.O_RDONLY | nofollow), False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield descriptor, writable
    finally:
        os.close(descriptor)  # releases the lock, on an exception too
