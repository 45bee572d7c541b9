"""SIGTERM handled as Ctrl-C, for the command-line entry points.

Python turns SIGINT into a ``KeyboardInterrupt``, so the ``finally`` blocks and ``except
KeyboardInterrupt`` handlers of a command run on Ctrl-C: temporary files are removed, what is
kept is said. SIGTERM (``kill``, a batch scheduler's time limit, ``timeout``, a container
stopping) kills the process by default with none of that. Within :func:`terminate_as_interrupt`
SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so the same code handles both; a
command returns :func:`exit_status` of the interrupt (130 for SIGINT, 143 for SIGTERM, the
statuses a shell gives a process those signals kill).

Usage in a command's ``main``::

    with terminate_as_interrupt():
        try:
            ...
        except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM
            print(f"prog: {interrupt_name(interrupt)}; ...", file=sys.stderr)
            return exit_status(interrupt)
"""
import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was, as Ctrl-C raises ``KeyboardInterrupt``."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler is restored after it.

    Every SIGTERM raises, as every Ctrl-C does. Nothing is installed where Python cannot install
    a handler (outside the main thread) or where it could not restore the previous one (a
    handler set outside Python); an ignored SIGTERM (``SIG_IGN``, e.g. as a parent set it) stays
    ignored, as an ignored SIGINT raises nothing.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if (threading.current_thread() is not threading.main_thread() or previous is None
            or previous == signal.SIG_IGN):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(interrupt):
    """The exit status of a command stopped by ``interrupt``: 128 + the signal (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def interrupt_name(interrupt):
    """How a message names ``interrupt``: ``"terminated (SIGTERM)"`` or ``"interrupted (Ctrl-C)"``."""
    return status_name(exit_status(interrupt))


def status_name(status):
    """How a message names the interrupt a command ended with from its exit status (what a
    report records): ``"terminated (SIGTERM)"`` for 143, else ``"interrupted (Ctrl-C)"``."""
    return "terminated (SIGTERM)" if status == 128 + signal.SIGTERM else "interrupted (Ctrl-C)"
