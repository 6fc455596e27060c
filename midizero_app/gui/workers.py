"""Background work: a core function run on QThreadPool with progress, cancel and result
signals delivered on the GUI thread (:class:`Job`); one-line messages for what failed."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


DAMAGED = "the library is damaged: press Check library on the Library tab to repair it"


def readable(exc: BaseException) -> str:
    """One line a user can read, never a traceback (a damaged library: what to press)."""
    from ..core.errors import LibraryDamaged

    if isinstance(exc, LibraryDamaged):
        return DAMAGED
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


def library_problem(exc: BaseException, folder) -> str:
    """One line for a library that cannot be opened or used, saying what to do."""
    import sqlite3

    from ..core.errors import (LibraryBusy, LibraryDamaged, MidizeroError, WriteFailed,
                               is_disk_full)

    if isinstance(exc, LibraryBusy):
        return f"The library in {folder} is being updated by another program: try again " \
               "when it has finished."
    if isinstance(exc, LibraryDamaged) or (isinstance(exc, sqlite3.DatabaseError)
                                           and not is_disk_full(exc)):
        return f"The library in {folder} is damaged: press Check library on the Library tab " \
               "to repair it."
    if is_disk_full(exc) and not isinstance(exc, WriteFailed):
        return "The disk is full: nothing was changed; free some space and open the app again."
    if isinstance(exc, MidizeroError):
        return readable(exc)
    return f"Cannot open the library in {folder}: {readable(exc)}"


class JobSignals(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    ended = Signal()


class Job(QRunnable):
    """Runs ``fn(progress, cancel)`` on the pool; ``progress(obj)`` is thread-safe.

    Connect to ``job.signals`` before :meth:`start`. ``done`` carries the return value,
    ``failed`` a readable message; ``ended`` follows either.
    """

    _alive: set["Job"] = set()  # keep Python references until the job has ended

    def __init__(self, fn: Callable, name: str = "job"):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.name = fn, name
        self.cancel = threading.Event()
        self.signals = JobSignals()
        self.running = False
        self.settled = False  # True once `ended` has been handled on the GUI thread

    def start(self, pool: QThreadPool | None = None) -> "Job":
        Job._alive.add(self)
        self.running = True
        self.signals.ended.connect(self._forget)
        (pool or QThreadPool.globalInstance()).start(self)
        return self

    def _forget(self) -> None:  # connected last, so it runs after the caller's handlers
        self.running = False
        self.settled = True
        Job._alive.discard(self)

    def run(self) -> None:  # on a pool thread
        fn, self.fn = self.fn, None  # its closure may hold much: a Job outlives its run
        try:
            result = fn(self.signals.progress.emit, self.cancel)
        except Exception as exc:  # noqa: BLE001 - reaches the user as a message
            log.exception("%s failed", self.name)
            self.signals.failed.emit(readable(exc))
        else:
            self.signals.done.emit(result)
        self.running = False  # before `ended`, so its handlers see the job as finished
        self.signals.ended.emit()
