"""Streaming identification: notes → frames → incremental search (DESIGN §1.1, §1.5, §5).

Three layers, each usable alone:

- :class:`FrameStream` — the batch grouping rule (:class:`~midizero_app.core.frames.FrameGrouper`)
  driven by an explicit clock: a frame closes when a note arrives at or after τ from the
  frame's first onset, or when the clock passes that point (the timer, so a lone last chord
  is not stuck); no note for ``silence_s`` seconds ends the query.
- :class:`StreamingSearch` — the frames of one query → hop-1 windows as frames arrive →
  embed only the new windows → kNN → offset votes accumulated → a ranking in the §4.2 JSON
  shape. While the query is shorter than W frames its one window is padded (and replaced
  as frames arrive), as in batch search, so a complete replay ends on the batch ranking.
- :class:`LiveSession` — a thread and a queue around the two: :meth:`LiveSession.feed_note`
  is safe from any thread (MIDI input, replay, an on-screen keyboard) and never blocks;
  the search runs on the session thread; results go to ``on_update``. No Qt.

Times are seconds on one clock (``time.perf_counter`` for live input).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.frames import DEFAULT_TAU, N_PITCHES, PITCH_LO, FrameGrouper, Frames
from ..core.melody import query_mode, tune_notes
from ..core.melody_search import search_melody, verdict
from ..core.query import answered_as_tune, merge_readings, result_entry
from ..core.search import (DEFAULT_BIN, DEFAULT_K, Calibration, QueryWindows,
                           VoteAccumulator, score_candidates, verify)

log = logging.getLogger(__name__)

DEFAULT_SILENCE_S = 3.0
MELODY_NOTES = 24  # a live tune is searched by its latest notes (the longest theme cell)
# The session thread closes a frame this long (real seconds) after its τ has passed, so that
# a note stamped just before t0 + τ but still on its way through the queues joins it. Under
# a load of 6 on 2 cores, 2 of 1,500 hand-offs took longer than 20 ms (max 50 ms); a note
# that late forms a frame of its own and is counted in ``FrameStream.late_notes``.
HANDOFF_GRACE_S = 0.02
# Votes are kept for the latest MAX_WINDOWS..2×MAX_WINDOWS query windows (35–75 s of playing
# at the ~7 frames/s of the ASAP performances), so a long session stays fast and flat in
# memory and follows a change of piece; shorter queries rank exactly as batch search does.
MAX_WINDOWS = 256

UpdateFn = Callable[[dict], None]
FrameFn = Callable[[float, list[int]], None]  # (onset seconds, sorted pitches)


@dataclass
class Frame:
    """A closed frame: first onset and pitches (seconds, MIDI 21..108), closed at ``at``."""

    onset: float
    pitches: list[int]
    at: float


@dataclass
class QueryEnd:
    """The query ended (silence or reset) at clock time ``at``."""

    at: float


class FrameStream:
    """Performance grouping fed one note at a time, with an explicit clock.

    Parameters
    ----------
    tau : threshold zone in seconds (the batch rule of DESIGN §1.1).
    silence_s : seconds without a note after which the query ends.
    """

    def __init__(self, tau: float = DEFAULT_TAU, silence_s: float = DEFAULT_SILENCE_S):
        self.tau, self.silence_s = float(tau), float(silence_s)
        self._grouper = FrameGrouper(tau)
        self._last_onset: float | None = None
        self._closed_until = -math.inf  # t0 + τ of the last closed frame
        self.notes = 0       # notes taken, over the whole stream
        self.late_notes = 0  # notes that arrived after their frame had closed

    @property
    def active(self) -> bool:
        """True while a query is going on (a note since the last end)."""
        return self._last_onset is not None

    def next_deadline(self) -> float | None:
        """Clock time of the next timer event (close the open frame, or end the query)."""
        t0 = self._grouper.open_since
        if t0 is not None:
            return t0 + self.tau
        if self._last_onset is not None:
            return self._last_onset + self.silence_s
        return None

    def note(self, t: float, pitch: int) -> list[Frame | QueryEnd]:
        """A note-on at ``t``; returns what closed or ended before it."""
        events = self.tick(t)
        if t < self._closed_until:
            self.late_notes += 1
        self._grouper.add(t, pitch)  # closes nothing: tick(t) closed a due frame
        self._last_onset = t if self._last_onset is None else max(self._last_onset, t)
        self.notes += 1
        return events

    def tick(self, now: float) -> list[Frame | QueryEnd]:
        """The clock reached ``now``: close a due frame, end a query after silence."""
        events: list[Frame | QueryEnd] = []
        closed = self._grouper.close_due(now)
        if closed is not None:
            events.append(self._closed(closed, now))
        if (self._grouper.open_since is None and self._last_onset is not None
                and now >= self._last_onset + self.silence_s):
            events.append(QueryEnd(now))
            self._last_onset = None
        return events

    def end(self, now: float) -> list[Frame | QueryEnd]:
        """End the query now (a reset): close the open frame, then end."""
        events: list[Frame | QueryEnd] = []
        closed = self._grouper.flush()
        if closed is not None:
            events.append(self._closed(closed, now))
        if self._last_onset is not None:
            events.append(QueryEnd(now))
            self._last_onset = None
        return events

    def _closed(self, frame: tuple[float, list[int]], now: float) -> Frame:
        self._closed_until = max(self._closed_until, frame[0] + self.tau)
        return Frame(frame[0], frame[1], now)


class StreamingSearch:
    """Incremental search over the frames of one query at a time.

    Parameters
    ----------
    library : an open :class:`~midizero_app.core.library.Library`.
    top : results per update.
    k, bin_width, max_positions : as in :func:`~midizero_app.core.query.search_library`.
    max_windows : vote horizon; see :data:`MAX_WINDOWS`.
    name : the ``"query"`` field of updates.
    melody : ``"auto"`` (a tune played one note at a time searches the melody view, any
        key), ``True`` (always) or ``False`` (full texture only).
    any_key : for melodies, accept any key (default); ``False`` keeps the score's key.
    """

    def __init__(self, library, top: int = 10, k: int = DEFAULT_K,
                 bin_width: int = DEFAULT_BIN, max_positions: int = 3,
                 max_windows: int = MAX_WINDOWS, name: str = "live",
                 melody: str | bool = "auto", any_key: bool = True):
        self.melody, self.any_key = melody, any_key
        self.lib, self.top, self.k = library, top, k
        self.bin_width, self.max_positions, self.max_windows = bin_width, max_positions, max_windows
        self.name = name
        self.embedder = library.embedder
        self.win = self.embedder.win_length
        self.calib = Calibration.from_card(self.embedder.card)
        self._new_query()

    def warm_up(self) -> None:
        """Load the index and run the model once, so the first real frame is fast."""
        blank = self.embedder.embed(np.zeros((1, self.win, N_PITCHES), np.uint8))
        self.lib.knn(blank, self.k)
        if self.melody is not False:
            self.lib.knn(blank, self.k, view="melody")

    def _new_query(self) -> None:
        self.first_onset: float | None = None
        self.n_frames = 0
        self._tail = np.zeros((0, N_PITCHES), np.uint8)  # the last W − 1 frames
        # (start, labels, sims, embedding) of each full window in the vote horizon
        self._hits: deque[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._acc: VoteAccumulator | None = None
        self._recent: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=MELODY_NOTES)
        # (onset, pitches) of the frames the vote horizon's windows cover, for verify()
        self._chords: deque[tuple[float, tuple[int, ...]]] = deque(
            maxlen=2 * self.max_windows + self.win)
        self.last: dict | None = None

    def add_frames(self, frames: list[Frame]) -> dict:
        """Add closed frames (oldest first); returns the new ranking as an update dict."""
        t_start = time.perf_counter()
        if self.first_onset is None:
            self.first_onset = frames[0].onset
        rows = np.zeros((len(frames), N_PITCHES), np.uint8)
        for i, f in enumerate(frames):
            rows[i, np.asarray(f.pitches, np.int64) - PITCH_LO] = 1
            self._recent.append((f.onset, tuple(f.pitches)))
            self._chords.append(self._recent[-1])
        before, self.n_frames = self.n_frames, self.n_frames + len(frames)
        roll = np.concatenate([self._tail, rows])
        self._tail = roll[-(self.win - 1):] if self.win > 1 else roll[:0]
        if self.n_frames < self.win:  # one padded window at frame 0, replaced each time
            window = np.zeros((1, self.win, N_PITCHES), np.uint8)
            window[0, :len(roll)] = roll
            emb = self.embedder.embed(window)
            labels, sims = self.lib.knn(emb, self.k)
            acc = self._accumulator([(0, labels[0], sims[0])])
            horizon = (emb, np.zeros(1, np.int64))
        else:
            first = max(before - self.win + 1, 0)  # the first start not yet searched
            starts = np.arange(first, self.n_frames - self.win + 1)
            # roll begins at frame `first` (the tail holds the W − 1 frames before the new)
            view = np.lib.stride_tricks.sliding_window_view(roll, self.win, axis=0)
            windows = np.ascontiguousarray(view[:len(starts)].transpose(0, 2, 1))
            emb = self.embedder.embed(windows)
            labels, sims = self.lib.knn(emb, self.k)
            acc = self._add_hits(starts, labels, sims, emb)
            horizon = (np.stack([h[3] for h in self._hits]),
                       np.array([h[0] for h in self._hits], np.int64))
        recent = Frames.from_chords([c for _, c in self._recent], [t for t, _ in self._recent])
        mode = "melody" if self.melody is True else (
            "texture" if self.melody is False else query_mode(recent))
        n_windows, now_frame = acc.n_windows, self.n_frames - 1
        cands, not_in_library = [], True
        if self.melody is not True:
            cands = acc.rank(self.top + 2, self.max_positions)
            played = Frames.from_chords([c for _, c in self._chords], [t for t, _ in self._chords])
            verify(cands, {0: QueryWindows(*horizon, played, self.n_frames - len(played))},
                   self.lib)
            not_in_library = score_candidates(cands, acc.n_windows, self.calib)
            # A one-note passage inside a performance (a melody alone, the hands in turn,
            # a transcription that lost the accompaniment) is not a tune: while everything
            # heard is a texture with a confident answer, that answer stands.
            if self.melody == "auto" and mode != "texture" and not not_in_library \
                    and len(played) > len(recent) and query_mode(played) == "texture":
                mode = "texture"
        if mode != "texture":
            # A tune: its latest notes against the melody view, each piece keeping its
            # more confident reading; "now" is the last of those notes.
            mel, mel_flag = search_melody(self.lib, recent, self.top, any_key=self.any_key)
            from_melody = {id(c) for c in mel}
            cands, not_in_library = (mel, mel_flag) if self.melody is True else \
                merge_readings(cands, not_in_library, mel, mel_flag, self.top,
                               tune=answered_as_tune(mode, recent, mel_flag))
        else:
            from_melody = set()
        n_tune = len(tune_notes(recent)[0]) if mode != "texture" else None
        # a melody reading's place counts from the first of the recent notes
        now_frames = {c.piece: len(recent) - 1 if id(c) in from_melody else now_frame
                      for c in cands}
        results = [result_entry(self.lib, rank, c, n_windows, now_frames[c.piece])
                   for rank, c in enumerate(cands[:self.top], 1)]
        self.last = {"query": self.name, "frames": self.n_frames, "windows": n_windows,
                     "elapsed_ms": round((time.perf_counter() - t_start) * 1000, 2),
                     "not_in_library": bool(not_in_library),
                     "model_id": self.embedder.model_id, "query_kind": "performance",
                     "mode": mode, "tune_notes": n_tune,
                     "verdict": verdict(bool(not_in_library), mode, n_tune or 0),
                     "results": results,
                     "t": round(frames[-1].at - self.first_onset, 3), "final": False}
        return self.last

    def finish(self, at: float) -> dict | None:
        """End the query at clock time ``at``: the last ranking again, marked final."""
        final = None
        if self.last is not None:
            final = dict(self.last, final=True, elapsed_ms=0.0,
                         t=round(at - self.first_onset, 3))
        self._new_query()
        return final

    def _accumulator(self, hits) -> VoteAccumulator:
        """A fresh accumulator holding ``hits`` [(start, labels (k,), sims (k,))]."""
        label_piece, label_frame = self.lib.label_maps  # current maps (the library may grow)
        acc = VoteAccumulator(label_piece, label_frame, self.bin_width)
        if hits:
            acc.add(np.array([h[0] for h in hits]), np.stack([h[1] for h in hits]),
                    np.stack([h[2] for h in hits]), self.win)
        return acc

    def _add_hits(self, starts: np.ndarray, labels: np.ndarray, sims: np.ndarray,
                  emb: np.ndarray) -> VoteAccumulator:
        """Add full windows' hits to the query's accumulator, keeping the vote horizon."""
        self._hits.extend(zip(starts.tolist(), labels, sims, emb))
        # a label beyond the accumulator's maps: the library grew since it was made
        stale = self._acc is not None and int(labels.max()) >= len(self._acc.label_piece)
        if len(self._hits) > 2 * self.max_windows:
            for _ in range(len(self._hits) - self.max_windows):
                self._hits.popleft()
            self._acc = self._accumulator(list(self._hits))
        elif self._acc is None or stale:
            self._acc = self._accumulator(list(self._hits))
        else:
            self._acc.add(starts, labels, sims, self.win)
        return self._acc


_RESET, _STOP = object(), object()


class LiveSession:
    """Live identification on a thread of its own.

    Parameters
    ----------
    library : an open Library, or None to group frames only (``on_frame``, no updates).
    tau : threshold zone, seconds.
    silence_s : seconds without a note that end a query.
    top : results per update.
    on_update : called on the session thread with each update: the §4.2 JSON plus ``"t"``
        (seconds from the query's first note to the frame close), ``"final"`` and
        ``"frames"``. The last update of a query has ``final`` true.
    on_frame : called on the session thread with each closed frame ``(onset, pitches)``.
    clock : the clock note times are on (``time.perf_counter`` for MIDI input).
    speed : for replays, the session's clock runs ``speed`` times faster than ``clock``
        (``self.clock() == clock() * speed``), so τ, silence and ``"t"`` stay in the
        performance's own seconds.
    grace_s : see :data:`HANDOFF_GRACE_S`.
    name, k, bin_width, max_windows, melody, any_key : see :class:`StreamingSearch`.
    on_note : called on the session thread with each note ``(t, pitch)`` as it is taken
        from the queue, before it is grouped (the score follower reads notes, not frames).
    """

    def __init__(self, library=None, tau: float = DEFAULT_TAU,
                 silence_s: float = DEFAULT_SILENCE_S, top: int = 10,
                 on_update: UpdateFn | None = None, on_frame: FrameFn | None = None,
                 clock: Callable[[], float] = time.perf_counter, speed: float = 1.0,
                 grace_s: float = HANDOFF_GRACE_S, name: str = "live", k: int = DEFAULT_K,
                 bin_width: int = DEFAULT_BIN, max_windows: int = MAX_WINDOWS,
                 melody: str | bool = "auto", any_key: bool = True,
                 on_note: Callable[[float, int], None] | None = None):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.stream = FrameStream(tau, silence_s)
        self.search = None if library is None else StreamingSearch(
            library, top, k, bin_width, max_windows=max_windows, name=name, melody=melody,
            any_key=any_key)
        self.on_update, self.on_frame, self.speed = on_update, on_frame, float(speed)
        self.on_note = on_note
        self.grace_s = float(grace_s)
        self.clock = clock if speed == 1 else (lambda: clock() * self.speed)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- any thread -------------------------------------------------------------------
    def start(self) -> "LiveSession":
        """Warm up the model and index (seconds on a big library), then start the thread."""
        if self.search is not None:
            self.search.warm_up()
        self._thread = threading.Thread(target=self._run, name="live-session", daemon=True)
        self._thread.start()
        return self

    def feed_note(self, t: float, pitch: int, velocity: int = 1) -> None:
        """A note at clock time ``t``; velocity 0 (a note-off) is ignored. Never blocks."""
        if velocity > 0:
            self._queue.put((t, pitch))

    def reset(self) -> None:
        """End the current query now (its final update follows) and start a new one."""
        self._queue.put(_RESET)

    def stop(self, timeout: float | None = 30.0) -> None:
        """End the current query (final update) and stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the session thread (or a simulated clock: see replay.simulate) ----------------
    def next_deadline(self) -> float | None:
        return self.stream.next_deadline()

    def step_note(self, t: float, pitch: int) -> None:
        if self.on_note is not None:
            _guarded(self.on_note, t, pitch)
        self._handle(self.stream.note(t, pitch))

    def step_tick(self, now: float) -> None:
        self._handle(self.stream.tick(now))

    def step_end(self, now: float) -> None:
        self._handle(self.stream.end(now))

    def _run(self) -> None:
        while True:
            deadline = self.stream.next_deadline()
            timeout = None if deadline is None else \
                max(0.0, (deadline - self.clock()) / self.speed + self.grace_s)
            try:
                items = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                items = []
            while True:  # take everything already queued: those notes came first
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events: list[Frame | QueryEnd] = []
            for item in items:
                if item is _STOP:
                    self._handle(events + self.stream.end(self.clock()))
                    return
                if item is _RESET:
                    events += self.stream.end(self.clock())
                else:
                    if self.on_note is not None:
                        _guarded(self.on_note, *item)
                    events += self.stream.note(*item)
            events += self.stream.tick(self.clock() - self.grace_s * self.speed)
            self._handle(events)

    def _handle(self, events: list[Frame | QueryEnd]) -> None:
        """Frames → one search update per run of frames; a query end → its final update."""
        pending: list[Frame] = []
        for ev in events:
            if isinstance(ev, Frame):
                if self.on_frame is not None:
                    _guarded(self.on_frame, ev.onset, ev.pitches)
                pending.append(ev)
                continue
            self._update(pending)
            pending = []
            if self.search is not None:
                self._publish(_guarded(self.search.finish, ev.at))
        self._update(pending)

    def _update(self, frames: list[Frame]) -> None:
        if frames and self.search is not None:
            self._publish(_guarded(self.search.add_frames, frames))

    def _publish(self, update: dict | None) -> None:
        if update is not None and self.on_update is not None:
            _guarded(self.on_update, update)


def _guarded(fn: Callable, *args):
    """``fn(*args)``, logging an exception instead of ending the session thread."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - keep listening; the next frame may work
        log.exception("live session: %s failed", getattr(fn, "__qualname__", fn))
        return None
