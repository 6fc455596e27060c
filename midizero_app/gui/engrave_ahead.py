"""Engrave the library's longest scores ahead of need, while nothing is played, so that a
piece identified later shows its first page at once (from the notation package's cache
of engraved scores) instead of after its whole layout (a 20-page score: ~1.5 s on a busy
2-core machine).

The work runs in a process of its own (:class:`~midizero_app.notation.EngraverProcess`,
at a lower priority), never in the one the score view waits on, one score at a time, and
only while the player has been silent for :data:`IDLE_S` seconds.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject

from .workers import Job

AHEAD = 32      # scores engraved ahead: the longest files first (fewer than the cache keeps)
IDLE_S = 5.0    # seconds without playing before engraving ahead (resumes when idle again)
START_S = 10.0  # seconds after the search engine is ready before the first one


def candidates(pieces: list[dict], cache_dir: str | os.PathLike, limit: int = AHEAD
               ) -> list[str]:
    """Paths of the library's scores worth engraving ahead: readable notation or MIDI
    files, the largest first (long scores take longest to lay out), at most ``limit``,
    less those already in ``cache_dir``."""
    from ..notation import MIDI_SUFFIXES, NOTATION_SUFFIXES, engrave_options
    from ..notation.cache import cache_key

    sizes = []
    for p in pieces:
        path = p.get("path") or ""
        if p.get("status") != "ok" or (p.get("kind") or "score") != "score" or \
                not path.lower().endswith(NOTATION_SUFFIXES + MIDI_SUFFIXES):
            continue
        try:
            sizes.append((os.stat(path).st_size, path))
        except OSError:
            continue
    sizes.sort(reverse=True)
    options = engrave_options()
    out = []
    for _size, path in sizes[:limit]:
        key = cache_key(path, options)
        if key is not None and not (Path(cache_dir) / f"{key}.json").is_file():
            out.append(path)
    return out


def engrave_ahead(paths: list[str], cache_dir: str | os.PathLike, idle: Callable[[], bool],
                  cancel: threading.Event, worker=None) -> int:
    """Engrave each score of ``paths`` into ``cache_dir`` (its layout and first page),
    waiting while ``idle()`` is False; stops when ``cancel`` is set. Returns how many were
    engraved (a score that cannot be engraved is skipped)."""
    from ..notation import NotationError, ScoreRendering

    done = 0
    for path in paths:
        while not idle():
            if cancel.wait(0.5):
                return done
        if cancel.is_set():
            break
        try:
            with ScoreRendering.open(path, worker=worker, cache_dir=cache_dir) as r:
                r.svg(1)  # the cache entry is written with the first page
            done += 1
        except NotationError:
            continue
    return done


class EngraveAhead(QObject):
    """Engraves a library's scores ahead in a background job (see the module docstring).

    :meth:`start` begins (again) for a library; :meth:`stop` ends it. ``last_activity``
    (a ``time.perf_counter()`` value) is when the player last played: the tab sets it.
    """

    def __init__(self, cache_dir: str, parent=None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.last_activity = time.perf_counter()
        self.job: Job | None = None
        self.engraved = 0
        self._worker = None  # the running job's engraver process

    def idle(self) -> bool:
        return time.perf_counter() - self.last_activity >= IDLE_S

    def start(self, library, delay_s: float = START_S) -> Job | None:
        self.stop()
        if library is None:
            return None
        cache_dir = self.cache_dir
        ready_at = time.perf_counter() + delay_s

        def run(_progress, cancel):
            from ..notation import EngraverProcess

            if cancel.wait(max(0.0, ready_at - time.perf_counter())):
                return 0
            paths = candidates(library.pieces(), cache_dir)
            if not paths:
                return 0
            worker = self._worker = EngraverProcess().start()
            if cancel.is_set():  # stopped while it started
                worker.close()
                return 0
            try:
                if worker.pid is not None and hasattr(os, "setpriority"):
                    try:
                        os.setpriority(os.PRIO_PROCESS, worker.pid, 10)
                    except OSError:
                        pass
                return engrave_ahead(paths, cache_dir, self.idle, cancel, worker)
            finally:
                worker.close()

        job = self.job = Job(run, "engrave ahead")
        job.signals.done.connect(self._done)
        return job.start()

    def _done(self, n: int) -> None:
        self.engraved += int(n or 0)

    def stop(self) -> None:
        """End the job now: a score being engraved is abandoned (its process ended), so
        that closing the app never waits for it."""
        job, self.job = self.job, None
        if job is not None and job.running:
            job.cancel.set()
            worker, self._worker = self._worker, None
            pid = worker.pid if worker is not None else None
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
