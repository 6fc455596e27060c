"""Errors a user can act on: each carries one line that says what happened and what to do.

The command line prints :class:`MidizeroError` messages as one line (no traceback); the
desktop app shows them in its status bar or a dialog. Everything else is a bug.
"""
from __future__ import annotations

import errno


class MidizeroError(Exception):
    """A failure with a message meant for the user (one line, no traceback)."""


class LibraryError(MidizeroError):
    """The library cannot do what was asked; the message says why and what to do."""


class LibraryBusy(LibraryError):
    """Another process is changing this library (one writer at a time)."""


class LibraryDamaged(LibraryError):
    """The library's files are damaged; ``midizero library check`` repairs what it can."""


class NoLibrary(LibraryError):
    """No library exists at the given folder (and it was not asked to make one)."""


class WriteFailed(MidizeroError, OSError):
    """A write did not complete; the previous state of the file is untouched.

    ``errno`` is that of the underlying :class:`OSError` (``ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, err: int | None = None):
        OSError.__init__(self, err or errno.EIO, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception means "no space left" (an OSError, or SQLite saying so)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text or \
        "disk quota" in text
