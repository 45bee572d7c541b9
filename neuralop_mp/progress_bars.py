"""Progress bars: tqdm's, shown where someone watches them.

A bar redraws itself with carriage returns. Written to a file or a pipe (the log of a long
run: ``neuralop-mp train ... > log 2>&1``) every redraw stays in it, the lines printed
meanwhile are glued after the bar's text, and a log of 80 epochs holds lines of hundreds
of characters. So a bar is drawn in a terminal and in a notebook, and left out where its
stream is neither: there the commands' own lines (one per epoch, one per file written)
tell the progress.
"""
from tqdm.auto import tqdm as auto_tqdm

# tqdm.auto picks the notebook widget in a Jupyter kernel (whose stream is no terminal)
_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in auto_tqdm.__mro__)


def progress_bar(iterable=None, *, enabled=True, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, drawn where ``enabled`` and its stream (stderr
    unless ``file=`` says otherwise) is a terminal, or in a notebook (tqdm's widget)."""
    # tqdm's disable=None: off where the stream is no terminal; a notebook's stream is none, but its bar is a widget
    disable = True if not enabled else (False if _NOTEBOOK else None)
    return auto_tqdm(iterable, disable=disable, **kwargs)


def write_line(text):
    """Print ``text`` without breaking a progress bar that is being drawn (``tqdm.write``)."""
    auto_tqdm.write(text)
