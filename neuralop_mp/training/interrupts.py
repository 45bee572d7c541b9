"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the interpreter is when SIGINT arrives. Inside a
weakref finalizer or a ``__del__`` (the CPU step meter sets one per tensor it watches,
:class:`~neuralop_mp.peak_memory.PeakTensorBytes`) the exception is printed as "Exception
ignored" and training goes on as if no key was pressed. :func:`catching_interrupts` installs
a SIGINT handler that also remembers the interrupt (and keeps Python from printing the
swallowed one as an error), and :func:`raise_if_interrupted`, which the trainer calls at
every batch, raises it again where it was swallowed.
"""
import contextlib
import signal
import sys
import threading

_pending = False


def _on_sigint(signum, frame):
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def catching_interrupts():
    """Within the block, a Ctrl-C that a finalizer swallowed is raised at the next batch.

    Only the main thread may set a signal handler: elsewhere the block changes nothing.
    """
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    previous_hook = sys.unraisablehook

    def quiet_about_interrupts(unraisable):  # the swallowed Ctrl-C is raised again, not an error
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _pending):
            previous_hook(unraisable)

    _pending = False
    sys.unraisablehook = quiet_about_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _pending = False


def raise_if_interrupted():
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C that was swallowed since the last call."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
