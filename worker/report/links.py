"""Hyperlinks: relative, percent-encoded paths from the report's folder to files that exist,
built from our own file paths (never a URL taken from input data)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import quote

__all__ = ["relative_link"]


def relative_link(target: Path, out_dir: str, real_out_dir: str) -> str | None:
    """Percent-encoded relative URI from the report's folder to an existing ``target``.

    Encoding every ``:`` makes a scheme (``file:``, ``javascript:``) impossible, whatever the
    path holds. A file outside the folder still gets a relative ``../`` link (it works where
    the report is), but only files inside survive zipping the folder.
    """
    try:
        info = os.stat(target)
        absolute = os.path.abspath(target)
        if absolute.startswith(out_dir + os.sep):  # the usual case, without relpath's work
            rel = absolute[len(out_dir) + 1:]
        else:
            rel = os.path.relpath(absolute, out_dir)
        if rel.startswith(".."):
            # Maybe the same folder reached through a symlink (/tmp, /var…): compare real
            # paths, which costs a readlink per path component, so only when needed.
            rel = os.path.relpath(os.path.realpath(absolute), real_out_dir)
    except (OSError, ValueError):  # missing, or another drive on Windows: no relative path
        return None
    posix = rel.replace(os.sep, "/")
    if stat.S_ISDIR(info.st_mode):
        posix += "/"
    return quote(posix, safe="/")
