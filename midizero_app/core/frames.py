"""Notes → chord frames (DESIGN §1.1).

A frame is the set of pitches that start together, with the onset of its first note.
Scores group by exact onset (the file's tick/division grid); performances group with a
threshold zone τ: a frame opens at its first onset t0 and takes every later note with
onset < t0 + τ. :class:`FrameGrouper` is the same rule fed one note at a time, for the live
path; :func:`group_performance` is its vectorised batch form (the tests hold them equal).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scores import Notes

PITCH_LO, PITCH_HI = 21, 108  # piano range A0..C8 → 88 matrix columns
N_PITCHES = PITCH_HI - PITCH_LO + 1
DEFAULT_TAU = 0.05  # seconds; see models/README.md for the measurement behind it
MIN_VOICE_FRAMES = 8  # a score voice starting notes in fewer frames is no tune of its own


def fold_pitch(pitch: np.ndarray) -> np.ndarray:
    """Fold MIDI pitches into 21..108 by whole octaves (int16 array, same shape)."""
    p = np.asarray(pitch, np.int16).copy()
    low = p < PITCH_LO
    p[low] += 12 * ((PITCH_LO - p[low] + 11) // 12)
    high = p > PITCH_HI
    p[high] -= 12 * ((p[high] - PITCH_HI + 11) // 12)
    return p


@dataclass
class Frames:
    """Chord frames in compressed form.

    Attributes
    ----------
    onset : float64 (F,), seconds of each frame's first note.
    offsets : int64 (F + 1,), frame i holds ``pitches[offsets[i]:offsets[i + 1]]``.
    pitches : int16 (P,), sorted unique pitches per frame, all in 21..108.
    measure : int32 (F,), 1-based measure (0 for a pickup), -1 unknown.
    beat : float32 (F,), beat in the measure, NaN unknown.
    voices : int16 (K, F) or None. Score voices (:func:`voice_lines`): row k holds the
        highest pitch voice k starts in each frame (folded into 21..108), 0 where it starts
        none; None where the source has no voices (MIDI, performances, queries).
    """

    onset: np.ndarray
    offsets: np.ndarray
    pitches: np.ndarray
    measure: np.ndarray
    beat: np.ndarray
    voices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.onset)

    def chord(self, i: int) -> tuple[int, ...]:
        """The pitches of frame ``i`` (MIDI, ascending)."""
        return tuple(int(p) for p in self.pitches[self.offsets[i]:self.offsets[i + 1]])

    def chords(self) -> list[tuple[int, ...]]:
        """The pitches of every frame (MIDI, ascending), F tuples."""
        return [self.chord(i) for i in range(len(self))]

    def frame_index(self) -> np.ndarray:
        """Frame number of every entry of ``pitches`` (int64, (P,))."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def between(self, lo: int, hi: int) -> "Frames":
        """Frames ``lo`` to ``hi`` − 1 (onsets kept; voices dropped)."""
        return Frames(self.onset[lo:hi], self.offsets[lo:hi + 1] - self.offsets[lo],
                      self.pitches[self.offsets[lo]:self.offsets[hi]], self.measure[lo:hi],
                      self.beat[lo:hi])

    def transposed(self, semitones: int) -> "Frames":
        """The same frames shifted by ``semitones`` (re-folded into the piano range)."""
        if semitones == 0:
            return self
        return from_groups(self.onset, self.frame_index(), self.pitches + semitones,
                           self.measure, self.beat)

    @classmethod
    def from_chords(cls, chords: list, onsets=None, measure=None, beat=None) -> "Frames":
        """Frames from a list of pitch collections (onsets default to 0.1 s apart)."""
        n = len(chords)
        onset = np.arange(n) * 0.1 if onsets is None else np.asarray(onsets, np.float64)
        idx = np.repeat(np.arange(n), [len(c) for c in chords])
        pitches = np.asarray([p for c in chords for p in c], np.int16)
        m = np.full(n, -1, np.int32) if measure is None else np.asarray(measure, np.int32)
        b = np.full(n, np.nan, np.float32) if beat is None else np.asarray(beat, np.float32)
        return from_groups(onset, idx, pitches, m, b)


def from_groups(onset: np.ndarray, group: np.ndarray, pitch: np.ndarray,
                measure: np.ndarray, beat: np.ndarray) -> Frames:
    """Frames from per-note group numbers (0..F-1, non-decreasing is not required).

    ``onset``, ``measure`` and ``beat`` are per frame (F,); ``group`` and ``pitch`` per note.
    Pitches are folded into 21..108, de-duplicated and sorted inside each frame.
    """
    p = fold_pitch(pitch)
    g = np.asarray(group, np.int64)
    key = np.unique(g * 128 + p)  # sorts by frame then pitch, drops duplicates
    g, p = key // 128, (key % 128).astype(np.int16)
    counts = np.bincount(g, minlength=len(onset))
    offsets = np.zeros(len(onset) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Frames(np.asarray(onset, np.float64), offsets, p,
                  np.asarray(measure, np.int32), np.asarray(beat, np.float32))


def group_score(notes: Notes) -> Frames:
    """Exact grouping: notes with equal grid onsets (ticks/divisions) form one frame."""
    if len(notes) == 0:
        return Frames.from_chords([])
    key = notes.grid if notes.grid is not None else np.round(notes.onset * 1e6).astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.r_[True, key[1:] != key[:-1]]
    group = np.cumsum(first) - 1
    heads = order[first]
    frames = from_groups(notes.onset[heads], group, notes.pitch[order],
                         notes.measure[heads], notes.beat[heads])
    if notes.voice is not None:
        frames.voices = voice_lines(group, notes.voice[order], notes.pitch[order], len(frames))
    return frames


def voice_lines(group: np.ndarray, voice: np.ndarray, pitch: np.ndarray, n_frames: int,
                min_frames: int = MIN_VOICE_FRAMES) -> np.ndarray | None:
    """Each voice's line aligned to the frames: int16 (K, n_frames), the highest (folded)
    pitch the voice starts in each frame, 0 where none; only voices that start notes in
    at least ``min_frames`` frames, in voice order. None when no voice has enough.

    ``group``, ``voice`` and ``pitch`` are per note (N,): frame number, voice number
    (0..), MIDI pitch.
    """
    v = np.asarray(voice, np.int64)
    lines = np.zeros((int(v.max()) + 1 if len(v) else 0, n_frames), np.int16)
    np.maximum.at(lines, (v, np.asarray(group, np.int64)), fold_pitch(pitch))
    lines = lines[(lines > 0).sum(1) >= min_frames]
    return lines if len(lines) else None


class FrameGrouper:
    """Threshold-zone grouping, one note at a time (the live path's rule).

    ``add(onset, pitch)`` returns the frame it closed, if any, as ``(onset, pitches)``;
    ``close_due(now)`` closes the open frame once ``now >= t0 + tau`` (the timer of the
    live path); ``flush()`` closes it unconditionally. Onsets must not decrease.
    """

    def __init__(self, tau: float = DEFAULT_TAU):
        self.tau = float(tau)
        self._t0: float | None = None
        self._pitches: list[int] = []

    @property
    def open_since(self) -> float | None:
        """Onset (seconds) of the open frame's first note; None when no frame is open."""
        return self._t0

    def add(self, onset: float, pitch: int) -> tuple[float, list[int]] | None:
        """Add a note (onset seconds, MIDI pitch); returns the frame it closed (first onset,
        sorted folded pitches), if any."""
        closed = None
        if self._t0 is not None and onset >= self._t0 + self.tau:
            closed = self.flush()
        if self._t0 is None:
            self._t0 = float(onset)
        self._pitches.append(int(pitch))
        return closed

    def close_due(self, now: float) -> tuple[float, list[int]] | None:
        """Close the open frame if ``now`` (seconds) is at least τ past its first onset;
        returns it (first onset, sorted folded pitches), else None."""
        if self._t0 is not None and now >= self._t0 + self.tau:
            return self.flush()
        return None

    def flush(self) -> tuple[float, list[int]] | None:
        """Close the open frame whatever the time: (first onset, sorted folded pitches), or
        None when none is open."""
        if self._t0 is None:
            return None
        frame = (self._t0, sorted(set(int(p) for p in fold_pitch(np.asarray(self._pitches)))))
        self._t0, self._pitches = None, []
        return frame


def group_performance(notes: Notes, tau: float = DEFAULT_TAU) -> Frames:
    """Threshold-zone grouping (τ seconds) of performed notes; measures are unknown."""
    onset = notes.onset
    n = len(onset)
    if n == 0:
        return Frames.from_chords([])
    # The rule is sequential (each frame's t0 depends on the previous head), so walk the
    # heads with a binary search per frame rather than a Python loop per note.
    heads = [0]
    t0 = onset[0]
    i = int(np.searchsorted(onset, t0 + tau, side="left"))
    while i < n:
        heads.append(i)
        i = int(np.searchsorted(onset, onset[i] + tau, side="left"))
    heads = np.asarray(heads)
    group = np.zeros(n, np.int64)
    group[heads[1:]] = 1
    group = np.cumsum(group)
    f = len(heads)
    return from_groups(onset[heads], group, notes.pitch,
                       np.full(f, -1, np.int32), np.full(f, np.nan, np.float32))


def to_frames(notes: Notes, kind: str = "auto", tau: float = DEFAULT_TAU) -> tuple[Frames, str]:
    """Group notes as a ``"score"`` or ``"performance"``; ``"auto"`` asks ``notes.quantised``.

    Returns the frames and the kind that was used.
    """
    if kind == "auto":
        kind = "score" if notes.quantised else "performance"
    if kind == "score":
        return group_score(notes), kind
    if kind == "performance":
        return group_performance(notes, tau), kind
    raise ValueError(f"unknown grouping kind {kind!r}")
