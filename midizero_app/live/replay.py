"""Play a performance into the live path: in real time × speed, or on a simulated clock.

:func:`replay` feeds notes to ``feed_note`` at their times, as a keyboard would (faster
with a session whose clock runs ``speed`` times real time);
:func:`simulate` drives a :class:`~midizero_app.live.session.LiveSession`'s timer logic on
the caller's thread with a simulated clock — the same frames, closes and query ends as in
real time, as fast as the search runs (benchmarks, tests).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .session import LiveSession


def load_performance(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Notes of a file (parsed in a limited worker): onsets in seconds from the first note
    (float64, sorted) and MIDI pitches (int16). Raises ``ScoreError`` for a bad file."""
    from ..core.parsing import parse_one

    notes = parse_one(path)
    return notes.onset - notes.onset[0], notes.pitch


def replay(onsets: np.ndarray, pitches: np.ndarray, feed: Callable[[float, int], None],
           clock: Callable[[], float] = time.perf_counter, speed: float = 1.0,
           cancel: threading.Event | None = None) -> bool:
    """Call ``feed(t, pitch)`` for each note at ``start + onset`` on ``clock``, a clock that
    runs ``speed`` times faster than real time (a ``LiveSession(speed=...)``'s ``clock``).

    Each note is stamped with its scheduled time, so the frames do not depend on how
    promptly this thread wakes. Returns False if ``cancel`` was set before the end.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    cancel = cancel or threading.Event()
    start = clock()
    for onset, pitch in zip(np.asarray(onsets, np.float64).tolist(), np.asarray(pitches).tolist()):
        due = start + onset
        wait = (due - clock()) / speed
        if wait > 0 and cancel.wait(wait):
            return False
        if cancel.is_set():
            return False
        feed(due, int(pitch))
    return True


def simulate(session: LiveSession, onsets: np.ndarray, pitches: np.ndarray,
             finish: bool = True) -> None:
    """Run ``session`` (not started) over the notes with a simulated clock.

    Every timer fires at its exact deadline before the next note; with ``finish`` the
    clock then runs on until the last frame closes and the query ends on silence.
    """
    for t, pitch in zip(np.asarray(onsets, np.float64).tolist(), np.asarray(pitches).tolist()):
        _fire_timers(session, t)
        session.step_note(t, int(pitch))
    if finish:
        _fire_timers(session, float("inf"))


def _fire_timers(session: LiveSession, until: float) -> None:
    deadline = session.next_deadline()
    while deadline is not None and deadline <= until:
        session.step_tick(deadline)
        deadline = session.next_deadline()
