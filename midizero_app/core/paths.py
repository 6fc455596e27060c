"""File names as the operating system gives them: any bytes, stored and shown safely.

On Linux a file name is bytes; Python decodes the bytes that are not UTF-8 to lone
surrogates (``surrogateescape``), which SQLite cannot store as text and a terminal cannot
print. The catalogue stores such a name as a BLOB of its raw bytes (every other name as
TEXT, so existing libraries read unchanged) and reads both back to the same ``str`` that
``os.listdir`` gives; :func:`display_path` escapes the undecodable bytes for people.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


def to_db(path: str | Path) -> str | bytes:
    """A path as the catalogue stores it: TEXT when it is valid UTF-8, else its raw bytes."""
    s = os.fspath(path)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s)


def from_db(value: str | bytes) -> str:
    """A stored path back as the ``str`` the operating system's functions take."""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return value


def display_path(path: str | Path) -> str:
    """A path fit to print or show: undecodable bytes as ``\\xNN`` escapes."""
    s = os.fspath(path)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "backslashreplace")


def not_readable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file (one line), or None when it is a readable,
    non-empty regular file: a FIFO or device named like a score would block a read."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"not a readable file ({exc.strerror or type(exc).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a pipe, device or folder)"
    if st.st_size == 0:
        return "empty file"
    return None
