"""The library's two locks: readers and one writer in a process, one writer among processes."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import LibraryBusy


class RWLock:
    """Many readers or one writer (hnswlib must not search while it inserts)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class WriterLock:
    """One writing thread in this process (re-entrant) and one writing process per library.

    The process lock is an ``flock`` on ``writer.lock`` in the library folder: the kernel
    drops it when the holder dies, so a killed indexer never leaves the library locked.
    """

    def __init__(self, folder: Path):
        self.file = Path(folder) / "writer.lock"
        self._thread_lock = threading.RLock()
        self._depth = 0

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (on any thread)."""
        return self._depth > 0

    @contextmanager
    def hold(self, wait: bool = True) -> Iterator[bool]:
        """Hold the lock; yields True when this call took it first (not re-entered).

        Raises :class:`LibraryBusy` when another process writes, or (``wait=False``)
        another thread of this one does."""
        if not self._thread_lock.acquire(blocking=wait):
            raise LibraryBusy("the library is being updated")
        try:
            if self._depth:
                self._depth += 1
                try:
                    yield False
                finally:
                    self._depth -= 1
                return
            fd = _lock_file(self.file)
            self._depth = 1
            try:
                yield True
            finally:
                self._depth = 0
                _unlock_file(fd)
        finally:
            self._thread_lock.release()


def _lock_file(path: Path) -> int:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LibraryBusy(f"another process is updating the library in {path.parent}") from None
    return fd


def _unlock_file(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
