"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the interpreter is when SIGINT arrives. Inside a
weakref finalizer or a ``__del__`` (the CPU step meter sets one per tensor it watches,
:class:`~neuralop_mp.peak_memory.PeakTensorBytes`) the exception cannot propagate: Python
hands it to ``sys.unraisablehook``, which prints "Exception ignored", and training goes on as
if no key was pressed. :func:`catching_interrupts`, around the trainer's ``train()``, replaces
that hook so a swallowed ``KeyboardInterrupt`` is remembered instead of printed, and
:func:`raise_if_interrupted`, which the trainer calls at every batch, raises it again. SIGINT's own handling is left alone (an
ignored SIGINT stays ignored; a Ctrl-C the user's code catches is not raised again).
"""
import contextlib
import sys

_pending = False


@contextlib.contextmanager
def catching_interrupts():
    """Within the block, a Ctrl-C that a finalizer swallowed is raised at the next batch."""
    global _pending
    previous_hook = sys.unraisablehook

    def remember_interrupts(unraisable):
        global _pending
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _pending = True  # raised again at the next batch: not an error to print
        else:
            previous_hook(unraisable)

    _pending = False
    sys.unraisablehook = remember_interrupts
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        _pending = False


def raise_if_interrupted():
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C that was swallowed since the last call."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
