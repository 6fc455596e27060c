"""Follow the player through the score: identify the piece, then track it note by note
(DESIGN §5.3).

:class:`FollowSession` puts a :class:`~midizero_app.core.follower.ScoreFollower` behind a
:class:`~midizero_app.live.session.LiveSession`: the live search names the piece and the
place (its ``positions[0].now``); from then on every note moves the follower, and each
note gives an update. The search keeps running beside it. A piece it named from few
frames is followed at once but stays open to its next answers until one from
:data:`CONFIRM_FRAMES` frames confirms it; after that, a different piece is noticed when
the follower has lost the music (its recent chords match poorly) and the search is sure of
another piece. Without a library search (a piece chosen to practise), the follower starts
anywhere, the opening favoured.

Updates are dicts (the ``follow --json`` contract, DESIGN §4.2): ``time`` (seconds on the
input's clock), ``piece`` (path, None before one is found), ``piece_id``, ``title``,
``measure`` (the score's measure number), ``beat`` (beats from the start of that
measure, in the score's beat unit),
``score_seconds`` (time in the score file), ``confidence`` (0..1), ``tempo`` (score
seconds per performance second), ``jumped``, and ``identified`` (True on the update where
a piece was found or changed).
"""
from __future__ import annotations

import math
import threading
from typing import Callable

from ..core.follower import Position, ScoreFollower
from .session import DEFAULT_SILENCE_S, LiveSession

FollowFn = Callable[[dict], None]
LOST_CONFIDENCE = 0.35   # below this (recent chords matched) the follower may have lost it
LOST_FOR_S = 2.5         # ... for this long before another piece may take over
HEARD_NOTES = 400        # notes of the current query decoded again when following starts
# A piece the search named from fewer frames than this is followed at once but stays open:
# each later answer of the search that names another piece moves following there, until an
# answer from at least this many frames names the followed piece (at the ~7 frames/s of
# piano music, 4 s; the search's own Top-1 is 0.97 from 5 s of playing and much lower from
# its first frames, where its confidence is not yet calibrated).
CONFIRM_FRAMES = 28
DUPLICATE_SCORE = 0.98   # a piece within 2 % of the search's best is the same music


class FollowSession:
    """Identify (unless a piece is given) and follow, on a LiveSession's thread.

    Parameters
    ----------
    library : an open Library.
    piece_id : follow this piece from the first note (no identification needed first);
        None: identify first.
    on_follow : called with each follow update (see the module docstring).
    start_seconds : with ``piece_id``, where the player starts (score seconds; None:
        anywhere, the opening favoured).
    lead_s : how late the input hands notes on, in seconds (a microphone's streaming
        transcription: :attr:`StreamingTranscriber.delay_s`; MIDI: 0): :meth:`position`
        moves the cursor on at the tempo through that delay.
    Other keyword arguments go to :class:`LiveSession` (clock, speed, silence_s, top, …).
    """

    def __init__(self, library, piece_id: int | None = None, on_follow: FollowFn | None = None,
                 start_seconds: float | None = None, on_update: Callable | None = None,
                 silence_s: float = DEFAULT_SILENCE_S, lead_s: float = 0.0, **session_kw):
        self.library = library
        self.lead_s = float(lead_s)
        self.on_follow = on_follow
        self.on_search_update = on_update
        self.live = LiveSession(library, silence_s=silence_s, on_update=self._on_search,
                                on_note=self._on_note, **session_kw)
        self.piece: dict | None = None
        self.follower: ScoreFollower | None = None
        self._lost_since: float | None = None
        self._confirmed = False  # following a piece the search (or the player) settled
        self._last_t = 0.0
        self._just_identified = False
        self._heard: list[tuple[float, int]] = []  # notes of the current query
        # follow(), place() and position() may come from the GUI thread while the session
        # thread decodes a note
        self._lock = threading.RLock()
        if piece_id is not None:
            self.follow(piece_id, start_seconds)

    # --- control (the session thread, or before start) ----------------------------------
    def follow(self, piece_id: int, start_seconds: float | None = None,
               tempo: float = 1.0, heard: list[tuple[float, int]] | None = None) -> None:
        """Follow ``piece_id`` from now on (from ``start_seconds`` in the score if known).

        ``heard``: the notes played so far (time, pitch), decoded again from a prior that
        favours both ``start_seconds`` and the opening, so the follower starts from all the
        evidence identification had — and, where a repeat is written out, at the first
        time through unless the music says otherwise."""
        piece = self.library.piece(piece_id)
        follower = ScoreFollower(self.library.frames_of(piece_id), start_seconds, tempo,
                                 also_opening=bool(heard))
        for t, p in heard or ():
            follower.note(t, p)
        with self._lock:
            self.piece, self.follower = piece, follower
            self._lost_since = None
            self._just_identified = True
            self._confirmed = heard is None  # chosen by the player, not found by the search

    def place(self, score_seconds: float) -> None:
        """The player says where they are (e.g. a click on a measure)."""
        with self._lock:
            if self.follower is not None:
                self.follower.place(score_seconds)

    # --- the LiveSession API ------------------------------------------------------------
    def start(self) -> "FollowSession":
        self.live.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        self.live.stop(timeout)

    def feed_note(self, t: float, pitch: int, velocity: int = 1) -> None:
        self.live.feed_note(t, pitch, velocity)

    def reset(self) -> None:
        self.live.reset()

    @property
    def clock(self):
        return self.live.clock

    def next_deadline(self) -> float | None:
        return self.live.next_deadline()

    def step_note(self, t: float, pitch: int) -> None:
        self.live.step_note(t, pitch)

    def step_tick(self, now: float) -> None:
        self.live.step_tick(now)

    def step_end(self, now: float) -> None:
        self.live.step_end(now)

    def __enter__(self) -> "FollowSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- callbacks on the session thread ------------------------------------------------
    def _on_note(self, t: float, pitch: int) -> None:
        if self._heard and t - self._heard[-1][0] > self.live.stream.silence_s:
            self._heard = []  # a new query: the search starts again too
        self._heard.append((t, pitch))
        del self._heard[:-HEARD_NOTES]
        self._last_t = t
        with self._lock:
            if self.follower is None:
                return
            pos = self.follower.note(t, pitch)
        if pos.confidence < LOST_CONFIDENCE:
            self._lost_since = t if self._lost_since is None else self._lost_since
        else:
            self._lost_since = None
        self._publish(t, pos)

    def _on_search(self, update: dict) -> None:
        if self.on_search_update is not None:
            self.on_search_update(update)
        if not self.reads_search():
            return  # following well: the search is not consulted
        results = update.get("results") or []
        if not results or update.get("not_in_library") or update.get("verdict") == "unsure":
            return
        top = results[0]
        if self.piece is not None:
            ours = next((r for r in results if r["piece_id"] == self.piece["id"]), None)
            if ours is not None and ours["score"] >= DUPLICATE_SCORE * top["score"]:
                # the followed piece (or music the search cannot tell from it) is the answer
                if (update.get("frames") or 0) >= CONFIRM_FRAMES:
                    self._confirmed = True
                return
        pos = top["positions"][0] if top.get("positions") else {}
        now = pos.get("now") or pos
        self.follow(top["piece_id"], now.get("seconds"), heard=list(self._heard))
        if self.follower is not None and self._last_t:
            self._publish(self._last_t, self.follower.position(self._last_t))

    def reads_search(self) -> bool:
        """True while a search update may change what is followed: no piece yet, a piece
        not yet confirmed (:data:`CONFIRM_FRAMES`), or a follower that has lost the music
        for :data:`LOST_FOR_S`. Otherwise search updates are not consulted."""
        if self.piece is None or not self._confirmed:
            return True
        return self._lost_since is not None and self._last_t - self._lost_since >= LOST_FOR_S

    def _publish(self, t: float, pos: Position) -> None:
        if self.on_follow is None:
            return
        update = follow_update(t, self.piece, pos)
        update["identified"] = self._just_identified
        self._just_identified = False
        self.on_follow(update)

    def position(self, now: float | None = None) -> dict:
        """The follow update for clock time ``now`` (default: the session's clock), e.g.
        for a cursor that moves between notes."""
        now = self.live.clock() if now is None else now
        with self._lock:
            if self.follower is None:
                return follow_update(now, None, None)
            return follow_update(now, self.piece, self.follower.position(now, lead=self.lead_s))


def follow_update(t: float, piece: dict | None, pos: Position | None) -> dict:
    """The ``follow --json`` dict for a position (None: nothing followed yet)."""
    if piece is None or pos is None or pos.frame < 0:
        return {"time": round(t, 3), "piece": piece["path"] if piece else None,
                "piece_id": piece["id"] if piece else None,
                "title": piece["title"] if piece else None, "measure": None, "beat": None,
                "score_seconds": None, "confidence": 0.0, "tempo": None, "jumped": False}
    return {"time": round(t, 3), "piece": piece["path"], "piece_id": piece["id"],
            "title": piece["title"],
            "measure": pos.measure if pos.measure >= 0 else None,
            # frames count beats from 1; the contract counts from the bar line
            "beat": None if math.isnan(pos.beat) else round(pos.beat - 1.0, 3),
            "score_seconds": round(pos.score_seconds, 3),
            "confidence": round(pos.confidence, 3), "tempo": round(pos.tempo, 3),
            "jumped": pos.jumped}

