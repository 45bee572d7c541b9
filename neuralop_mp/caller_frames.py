"""Where a warning should point: the first frame outside the package's code that raised it.

``warnings.warn(..., stacklevel=N)`` names the frame N levels up; a fixed N is right for
one call path only (a public function calling the warning function directly) and wrong
as soon as another path, or a wrapper, reaches it. :func:`stacklevel_outside` counts the
levels to the first frame whose file is not in the given folders (or files), so that the
warning names the user's line whichever path led there.
"""
import os
import sys

__all__ = ["stacklevel_outside"]


def stacklevel_outside(folders, files=()):
    """``stacklevel`` for a ``warnings.warn`` made by the function that calls this one: the
    first frame above it whose file is neither directly in one of ``folders`` (their
    subfolders, e.g. tests, count as outside) nor one of ``files``."""
    folders = tuple(os.path.normpath(folder) for folder in folders)
    frame, level = sys._getframe(2), 2  # 1: the warning function itself, 2: its caller
    while frame is not None and (os.path.dirname(frame.f_code.co_filename) in folders
                                 or frame.f_code.co_filename in files):
        frame, level = frame.f_back, level + 1
    return level
