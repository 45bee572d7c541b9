"""Warnings of ``neuralop-mp``'s own commands as one line each: ``[neuralop-mp] WARNING: <message>``.

Python shows a warning as ``/path/file.py:NNN: Category: message`` plus that line's source: for a
warning raised deep in this package the path and line say nothing a user can act on, and the
lines break a progress bar being drawn. While :func:`warnings_as_lines` holds (the ``neuralop-mp``
commands but ``run``, :func:`neuralop_mp.cli.main`), a warning Python decides to show is instead
one line on standard error, written as ``tqdm.write`` writes (a bar being drawn stays intact).

Which warnings are shown, and how often, stays Python's to decide: the filters are not touched,
so ``python -W error``, ``PYTHONWARNINGS`` and a test runner's filters work as before. Only the
display (``warnings.showwarning``) is swapped, and only where it is still Python's own and no
``warnings.catch_warnings(record=True)`` (pytest's ``recwarn``, ``pytest.warns``) is collecting:
those keep receiving the warnings.

A warning raised outside this package (torch, neuraloperator, a user's config) names where,
e.g. ``(UserWarning from torch/optim/lr_scheduler.py:200)``; one of ours says what it needs in its
message and is shown alone. Other warning lines of the commands (:func:`log_warning`) take the
same form.
"""
import os
import sys
import warnings
from contextlib import contextmanager

PREFIX = "[neuralop-mp] WARNING: "
# continuation lines of a message of several lines: indented, so they read as one warning
CONTINUATION_INDENT = "    "
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# the modules of Python's own warning machinery (3.14 moved it to _py_warnings): frames of theirs
# between a warning's raiser and the display are skipped
_WARNINGS_MODULES = ("warnings", "_py_warnings")


def warning_line(text):
    """``text`` as a warning line: ``[neuralop-mp] WARNING: text``, each further line of ``text``
    indented by :data:`CONTINUATION_INDENT`."""
    return PREFIX + f"\n{CONTINUATION_INDENT}".join(str(text).splitlines() or [""])


def write_warning_line(text, file=None):
    """Write :func:`warning_line` of ``text`` to ``file`` (None: standard error, nothing where
    there is none) through ``tqdm.write``, so a progress bar being drawn stays intact."""
    stream = sys.stderr if file is None else file
    if stream is None:  # pythonw: no standard error to say it on
        return
    from tqdm.auto import tqdm

    tqdm.write(warning_line(text), file=stream)


def log_warning(log, text):
    """``text`` as a WARNING line of ``log``: on standard error where ``log`` is ``print``
    (:func:`write_warning_line`), as the warnings of the commands are, so a reader of standard
    output (``| grep``, ``> results.txt``) is not handed it as a result. Another ``log`` (a
    caller's collector) gets the line as it gets every other."""
    if log is print:
        write_warning_line(text)
    else:
        log(warning_line(text))


@contextmanager
def warnings_as_lines():
    """While the block runs, every warning Python shows is one :func:`warning_line` on standard
    error (:func:`show_as_line`); ``warnings.showwarning`` is restored after.

    Nothing is swapped where the display is not Python's own (a caller replaced
    ``warnings.showwarning``, e.g. ``logging.captureWarnings``) or where a
    ``catch_warnings(record=True)`` is collecting (pytest's recording of a test's warnings,
    ``recwarn``, ``pytest.warns``): those keep getting every warning. Nested, the inner one
    finds the display swapped already and changes nothing.
    """
    python_display = getattr(warnings, "_showwarning_orig", None)
    if python_display is None or warnings.showwarning is not python_display or recording():
        yield
        return
    warnings.showwarning = show_as_line
    try:
        yield
    finally:
        if warnings.showwarning is show_as_line:  # not a display someone set meanwhile and left on
            warnings.showwarning = python_display


def recording():
    """Whether a ``warnings.catch_warnings(record=True)`` is collecting the warnings shown now
    (it hands each to its list's ``append`` in place of Python's writer)."""
    writer = getattr(warnings, "_showwarnmsg_impl", None)
    return isinstance(getattr(writer, "__self__", None), list)


def show_as_line(message, category, filename, lineno, file=None, line=None):
    """A ``warnings.showwarning``: ``message`` as one :func:`warning_line`; for a warning raised
    outside this package, followed by its category and where it was raised (Python's
    ``filename:lineno``, the path from its top-level package). ``line`` (the source line) is left
    out. A stream that cannot be written loses the warning, as with Python's display."""
    text = str(message)
    if not _raised_here(filename, sys._getframe(1)):
        text += f" ({category.__name__} from {_package_path(filename)}:{lineno})"
    try:
        write_warning_line(text, file)
    except OSError:  # as Python's own display: a standard error that is gone loses the warning
        pass


def _in_package(path):
    return bool(path) and os.path.abspath(path).startswith(_PACKAGE_DIR + os.sep)


def _raised_here(filename, frame):
    """Whether a warning was raised in this package: the place Python names (``filename``, which a
    ``stacklevel`` may move to a caller), or the code that raised it (the first frame from ``frame``
    up that is not Python's warning machinery; torch's C++ warnings: the Python line calling torch)."""
    while frame is not None and frame.f_globals.get("__name__") in _WARNINGS_MODULES:
        frame = frame.f_back
    return _in_package(filename) or (frame is not None and _in_package(frame.f_code.co_filename))


def _package_path(filename):
    """``filename`` from the ``sys.path`` folder it is found under (``torch/nn/functional.py``), as
    given where it is under none (a user's file) or is no path (``<string>``)."""
    if not os.path.isabs(filename):
        return filename
    roots = {os.path.abspath(entry or os.curdir) for entry in sys.path if isinstance(entry, str)}
    for root in sorted(roots, key=len, reverse=True):  # the innermost: site-packages before its parents
        if filename.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(filename, root)
    return filename
