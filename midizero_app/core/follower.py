"""Score following: where in a known piece the player is, chord by chord (DESIGN §5.3).

Identification (:mod:`.query`, :mod:`..live.session`) says *which* piece and roughly where;
the follower then tracks the player through that piece's frames, one performed chord at a
time, through rubato and tempo changes, wrong, missing and extra notes, ornaments, and
jumps (a repeat taken or skipped, starting again from an earlier bar).

The model is a hidden Markov model over the score's frames (chords), decoded on line with
the Viterbi recursion (the best path's end is the position; there is no look-ahead):

* **states** — the score frames ``0..F-1`` (:class:`~.frames.Frames`, score seconds);
* **emission** — each performed pitch is explained by the state's chord (log-ratio +2.2),
  by its pitch class in another octave (+1.1), or not (−1.6); a frame's evidence is the
  sum over its pitches, so a full chord says more than one note;
* **transitions** — stay (a chord split in two, a trill, a repeated note), advance 1..D
  frames (skipped chords for missing notes) weighed by timing: the score time advanced
  against the performance time since the state was entered times the current tempo,
  log-normal with ``TIMING_SD``; or jump: to the first chord of any bar (``LOG_JUMP_BAR``:
  a restart from an earlier bar, a repeat taken or skipped) or, dearer, to any chord
  (``LOG_JUMP``), both a little dearer the more bars away (``JUMP_DISTANCE``: where the
  same music comes back, the nearer place is taken); a jump in the performance is followed
  once the evidence for the new place outweighs the penalty; for a follower started
  without identification's place (a piece chosen to practise), places more than D frames
  from the best fall behind it a little with every chord (``FAR_DECAY``, down to
  ``FAR_FLOOR``), so where the same music comes back elsewhere a path there does not
  stay one mistimed chord from taking over;
* **tempo** — score seconds per performance second, a robust slope over the best path's
  recent matches, reset after a jump.

Between chords the shown position advances at the current tempo from the best state's
onset, up to (never past) the next chord: a cursor that keeps moving in a long note and
never runs ahead of the music. Cost: O(F·D) numpy per performed chord (≈ 0.1 ms for a
5,000-frame piece).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .frames import Frames

MAX_ADVANCE = 6           # D: a performed chord may skip up to D − 1 score chords
LOG_STAY = math.log(0.15)
LOG_ADVANCE = np.log(np.array([0.7, 0.12, 0.06, 0.03, 0.015, 0.008]))  # d = 1..D
LOG_JUMP = -20.0          # a jump to any chord of the piece (nats) ...
LOG_JUMP_BAR = -10.0      # ... to the first chord of a bar, where players restart and repeats begin
JUMP_DISTANCE = 1.5       # ... less likely the farther: − this × ln(1 + bars / JUMP_BARS)
JUMP_BARS = 8.0
TIMING_SD = 0.45          # log-ratio spread of the score advance against the expected one
TIMING_FLOOR = 0.03       # seconds added to both sides: tiny gaps are not informative
LOG_IN_CHORD, LOG_OCTAVE, LOG_MISS = 2.2, 1.1, -1.6
TEMPO_POINTS = 12         # recent matches for the tempo slope
TEMPO_TRUSTED = 6         # chords on the path after which its slope is the tempo
TEMPO_RANGE = (0.25, 4.0)  # score seconds per performance second
CHORD_GAP_S = 0.035       # notes closer than this join one performed chord
# Each performed chord, a path more than MAX_ADVANCE frames from the best loses FAR_DECAY
# nats, down to FAR_FLOOR below the best (not further: less than a jump there costs): where
# the same music comes back elsewhere, a path there that has matched as well as the
# followed one for a while stays behind it by more than a mistimed chord or a wrong note.
# Only for a follower started without a place (start_seconds None).
FAR_DECAY = 0.5
FAR_FLOOR = -6.0


@dataclass
class Position:
    """Where the player is: score frame, score seconds, measure and beat.

    ``frame``: the score frame (−1 before any note); ``score_seconds``: time in the score
    file at this moment (between chords it moves at the player's tempo); ``measure`` (the
    score's measure number, −1 unknown) and ``beat`` (beats from the start of that measure,
    in the score's beat unit; NaN unknown); ``tempo``: score seconds per performance
    second; ``confidence`` in 0..1 (how well the recent chords match the followed path);
    ``jumped``: True on the update where the follower moved to a place it did not reach
    by playing on.
    """

    frame: int
    score_seconds: float
    measure: int
    beat: float
    tempo: float
    confidence: float
    jumped: bool = False


class ScoreFollower:
    """Follow a performance through one piece's score frames.

    Parameters
    ----------
    frames : the piece's score frames (onset in score seconds, chords, measure, beat).
    start_seconds : where the player is expected to be (score seconds), e.g. the
        position identification found; None: anywhere, with the beginning favoured.
    also_opening : with ``start_seconds``, favour the opening as much (the notes since the
        player began are then decoded again: where identification and the opening agree
        — a repeat written out — the opening wins unless the music says otherwise).
    tempo : the expected tempo (score seconds per performance second; 1.0: as written).
    """

    def __init__(self, frames: Frames, start_seconds: float | None = None, tempo: float = 1.0,
                 also_opening: bool = False):
        if len(frames) == 0:
            raise ValueError("a score with no notes cannot be followed")
        self.frames = frames
        self.onset = np.asarray(frames.onset, np.float64)
        n = len(self.onset)
        # chord membership: (F, 128) bool, and pitch classes (F, 12) bool
        self._chord = np.zeros((n, 128), bool)
        self._pc = np.zeros((n, 12), bool)
        for j in range(n):
            p = frames.pitches[frames.offsets[j]:frames.offsets[j + 1]]
            self._chord[j, p] = True
            self._pc[j, p % 12] = True
        # score time advanced by moving d frames, for each destination j: (D, F)
        self._advance = np.full((MAX_ADVANCE, n), np.nan)
        for d in range(1, MAX_ADVANCE + 1):
            self._advance[d - 1, d:] = self.onset[d:] - self.onset[:-d]
        # the first chord of each measure: where a player restarts or a repeat begins
        measure = np.asarray(frames.measure)
        self._bar_start = np.ones(n, bool)
        self._bar_start[1:] = measure[1:] != measure[:-1]
        self._bar_index = np.cumsum(self._bar_start) - 1
        self._jump_base = np.where(self._bar_start, LOG_JUMP_BAR, LOG_JUMP)
        self._delta = np.zeros(n)
        if start_seconds is None:  # anywhere, the opening favoured
            self._delta -= 3.0
            self._delta[:min(n, 8)] = 0.0
        else:
            self._delta -= 8.0
            j0 = int(np.clip(np.searchsorted(self.onset, start_seconds - 1e-6), 0, n - 1))
            lo, hi = max(0, j0 - 4), min(n, j0 + 5)
            self._delta[lo:hi] = -0.5 * np.abs(np.arange(lo, hi) - j0)
            if also_opening:
                self._delta[:min(n, 8)] = 0.0
        # Started from identification's place (and the opening), the two are kept level
        # until the music decides: decaying the one behind would fix the first chords' lead.
        self._far_decay = FAR_DECAY if start_seconds is None else 0.0
        self._entered = np.full(n, np.nan)  # performance time each state was entered
        self.tempo = float(tempo)
        self._history: list[tuple[float, float]] = []  # (perf time, score onset) on the path
        self._recent: list[float] = []  # per-chord match quality on the path (0..1)
        self._state = -1
        self._last_t: float | None = None
        self._pending: list[int] = []
        self._pending_t: float | None = None
        self.jumps = 0

    # --- input --------------------------------------------------------------------------
    def note(self, t: float, pitch: int) -> Position:
        """A performed note at performance time ``t`` (seconds; non-decreasing)."""
        if self._pending_t is not None and t - self._pending_t > CHORD_GAP_S:
            self._close()
        if self._pending_t is None:
            self._pending_t = t
            self._pending = []
            self._snapshot = (self._delta.copy(), self._entered.copy(), self._state,
                              list(self._history), list(self._recent), self.tempo,
                              self._last_t, self.jumps)
        else:  # the chord grows: decode it again from the state before it
            (d, e, s, h, r, tp, lt, jm) = self._snapshot
            self._delta, self._entered, self._state = d.copy(), e.copy(), s
            self._history, self._recent, self.tempo = list(h), list(r), tp
            self._last_t, self.jumps = lt, jm
        self._pending.append(int(pitch))
        jumped = self._step(self._pending_t, self._pending)
        return self.position(t, jumped)

    def _close(self) -> None:
        self._pending_t = None
        self._pending = []

    # --- decoding -------------------------------------------------------------------------
    def _emission(self, pitches: list[int]) -> np.ndarray:
        e = np.zeros(len(self.onset))
        for p in pitches:
            if not 0 <= p < 128:
                continue
            inc = self._chord[:, p]
            octv = self._pc[:, p % 12] & ~inc
            e += np.where(inc, LOG_IN_CHORD, np.where(octv, LOG_OCTAVE, LOG_MISS))
        return e

    def _step(self, t: float, pitches: list[int]) -> bool:
        prev = self._delta
        n = len(prev)
        emission = self._emission(pitches)
        if self._last_t is None:  # the first chord: the prior and the evidence
            new = prev + emission
            source = np.arange(n)
            self._entered[:] = t
        else:
            # stay
            best = prev + LOG_STAY
            source = np.arange(n)
            since = t - self._entered  # performance time since each state was entered
            since = np.where(np.isnan(since), t - self._last_t, since)
            # until the tempo is known (a few chords), timing says less
            sd = TIMING_SD * (2.0 - self._tempo_weight())
            for d in range(1, MAX_ADVANCE + 1):
                adv = self._advance[d - 1, d:]
                expect = self.tempo * since[:-d]
                ratio = np.log((adv + TIMING_FLOOR) / (expect + TIMING_FLOOR))
                cand = prev[:-d] + LOG_ADVANCE[d - 1] - 0.5 * (ratio / sd) ** 2
                better = cand > best[d:]
                best[d:] = np.where(better, cand, best[d:])
                source[d:] = np.where(better, np.arange(n - d), source[d:])
            jump_from = int(np.argmax(prev))
            bars = np.abs(self._bar_index - self._bar_index[jump_from])
            jump = prev[jump_from] + self._jump_base - JUMP_DISTANCE * np.log1p(bars / JUMP_BARS)
            better = jump > best
            best = np.where(better, jump, best)
            source = np.where(better, -1, source)
            new = best + emission
            moved = source != np.arange(n)
            self._entered = np.where(moved, t, self._entered)
        new -= new.max()
        np.maximum(new, -60.0, out=new)  # far-off states stay reachable by a jump
        state = int(np.argmax(new))
        if self._far_decay and self._last_t is not None:  # far places fall behind
            far = np.abs(np.arange(n) - state) > MAX_ADVANCE
            decayed = np.maximum(new - self._far_decay, np.minimum(new, FAR_FLOOR))
            new = np.where(far, decayed, new)
        self._delta = new
        came_from = int(source[state])
        jumped = self._state >= 0 and (came_from == -1 or
                                       not 0 <= state - self._state <= MAX_ADVANCE)
        if jumped:
            self.jumps += 1
            self._history = []
        if state != self._state or not self._history:
            self._history.append((t, float(self.onset[state])))
            self._history = self._history[-TEMPO_POINTS:]
            self._update_tempo()
        chord = self._chord[state]
        matched = sum(1 for p in pitches if 0 <= p < 128 and chord[p])
        self._recent = (self._recent + [matched / max(len(pitches), 1)])[-8:]
        self._state = state
        self._last_t = t
        return jumped

    def _update_tempo(self) -> None:
        """Median of pairwise slopes (Theil–Sen) over the recent path: robust to one
        misplaced chord."""
        h = self._history
        if len(h) < 3:
            return
        slopes = []
        for i in range(len(h)):
            for k in range(i + 1, len(h)):
                dt = h[k][0] - h[i][0]
                if dt > 0.08:
                    slopes.append((h[k][1] - h[i][1]) / dt)
        if slopes:
            s = float(np.median(slopes))
            if TEMPO_RANGE[0] <= s <= TEMPO_RANGE[1]:
                # a few points say little: move towards the new slope, not onto it
                w = self._tempo_weight()
                self.tempo = math.exp((1 - w) * math.log(self.tempo) + w * math.log(s))

    def _tempo_weight(self) -> float:
        """How far the recent path's slope is trusted (0 with no history, 1 from
        ``TEMPO_TRUSTED`` chords on)."""
        return min(1.0, max(0, len(self._history) - 1) / TEMPO_TRUSTED)

    # --- output ---------------------------------------------------------------------------
    def position(self, now: float, jumped: bool = False, lead: float = 0.0) -> Position:
        """Where the player is at performance time ``now`` (between chords the position
        moves at the current tempo, up to the next chord).

        ``lead`` (seconds): how late the input hands notes on (a microphone's streaming
        transcription holds each note back for up to a step and a margin). The position may
        run on at the tempo up to that much past the next chord, since the notes that
        would confirm it cannot have arrived yet; 0 for MIDI."""
        j = self._state
        if j < 0:
            return Position(-1, float("nan"), -1, float("nan"), self.tempo, 0.0, False)
        onset = self.onset[j]
        entered = self._entered[j] if not np.isnan(self._entered[j]) else now
        nxt = self.onset[j + 1] if j + 1 < len(self.onset) else onset + 2.0
        pos = onset + min(max(0.0, (now - entered) * self.tempo),
                          max(0.0, nxt - onset - 1e-3) + max(0.0, lead) * self.tempo)
        if pos >= nxt and j + 1 < len(self.onset):  # run on into the chords after
            j = int(np.searchsorted(self.onset, pos, side="right")) - 1
            onset = self.onset[j]
            nxt = self.onset[j + 1] if j + 1 < len(self.onset) else onset + 2.0
        measure = int(self.frames.measure[j])
        beat = float(self.frames.beat[j])
        if not math.isnan(beat) and j + 1 < len(self.onset) and \
                self.frames.measure[j + 1] == measure and nxt > onset:
            beat += (float(self.frames.beat[j + 1]) - beat) * (pos - onset) / (nxt - onset)
        conf = float(np.mean(self._recent)) if self._recent else 0.0
        return Position(j, float(pos), measure, beat, self.tempo, conf, jumped)

    def place(self, score_seconds: float) -> None:
        """The player says where they are (a click on a measure): restart there."""
        n = len(self.onset)
        j0 = int(np.clip(np.searchsorted(self.onset, score_seconds - 1e-6), 0, n - 1))
        self._delta = np.full(n, -8.0)
        self._delta[j0] = 0.0
        self._entered[:] = np.nan
        self._history, self._recent = [], []
        self._state = -1
        self._last_t = None
        self._pending_t = None
