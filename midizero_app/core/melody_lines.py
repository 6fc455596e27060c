"""Which notes form a tune: a query's tune, whether a query is one, and a piece's lines.

People who want to name a piece usually play its *tune*: one note at a time, often in
another key, with their own rhythm and a few slips. The full-texture index does not see a
one-note line inside chords, so each piece also gets lines made from its stored frames (no
re-parsing):

* :func:`skyline` — the highest pitch of each frame (the top line); :func:`tune_notes` —
  a query's top line less the notes of spread chords (a bass played just before or after
  the melody note);
* :func:`query_mode` — whether a query is a tune (searched in the melody view), a tune with
  some chords (both views) or a texture;
* :func:`melody_lines` — the lines a tune is looked for in: the top line, the top line
  without the accompaniment notes that surface in it while the tune holds a note (frames
  store onsets only, so a held melody note leaves the moving lower voices on top), and
  where the score has voices (MusicXML, MEI, Humdrum, ABC) each voice's own line, so a
  tune in an inner voice (an alto line, a tenor theme under held chords) is found too.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .frames import Frames

MONO_SHARE = 0.85    # share of one-note frames that makes a query a melody
FUSE_SHARE = 0.6     # ... that makes it a tune with some chords (both views searched)
LINE_SHARE = 0.8     # share of top-line steps within a fifth that makes a line a tune
TUNE_RANGE = 26      # semitones: a tune played alone spans about two octaves at most
MIN_MELODY_NOTES = 6
DIP = 5              # semitones below both neighbours that mark an accompaniment note
# A query note this close in time (seconds) to its neighbour and this far below it
# (semitones) is one end of a spread chord (τ = 50 ms leaves such notes frames of their
# own), not a tune note. Played ASAP melodies (benchmarks/RESULTS.md): 10 s 0.960 → 0.971,
# 5 s 0.880 → 0.897 against keeping them; 4–7 semitones and 60–120 ms all gain; written
# tunes move slower or by step.
SPREAD_S = 0.08
SPREAD_LEAP = 5
# Lines per piece (2 from the top line, the rest voices); a piece's line li is searched as
# the pseudo piece piece · MAX_LINES + li (core/melody_search.py).
MAX_LINES = 16


def skyline(frames: Frames) -> np.ndarray:
    """Highest pitch of each frame: int16 (F,) MIDI pitches (pitches are sorted within a
    frame)."""
    if len(frames) == 0:
        return np.zeros(0, np.int16)
    return frames.pitches[frames.offsets[1:] - 1].astype(np.int16)


def tune_notes(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """The tune a query plays: the top note of each frame (:func:`skyline`), less each
    note struck within :data:`SPREAD_S` seconds of its neighbour and :data:`SPREAD_LEAP`
    or more semitones below it — the bass of a spread chord, played just before or after
    the melody note as pianists do.

    Returns pitches int64 (F',) and their onsets float64 (F',) in seconds, F' ≤ F (the
    frames' onsets should be increasing; a line without times has them 0.1 s apart and
    keeps every note)."""
    top = skyline(frames).astype(np.int64)
    onset = np.asarray(frames.onset, np.float64)
    if len(top) < 3:
        return top, onset
    near = np.diff(onset) < SPREAD_S
    up = np.diff(top)
    drop = np.zeros(len(top), bool)
    drop[:-1] |= near & (up >= SPREAD_LEAP)   # struck just before a higher note
    drop[1:] |= near & (-up >= SPREAD_LEAP)   # struck just after one
    return top[~drop], onset[~drop]


def melody_share(frames: Frames) -> float:
    """Share of frames that hold exactly one note (1.0 for a tune played one note at a
    time; 0.0 for no frames)."""
    if len(frames) == 0:
        return 0.0
    return float(np.mean(np.diff(frames.offsets) == 1))


def is_line(frames: Frames) -> bool:
    """True when the notes move like a tune: within about two octaves, most top-line
    steps within a fifth (or an octave slip of one). Two hands played one note at a time
    (a bass note alone, then the melody; a performance whose hands are not quite
    together) span more and jump between registers: not a tune, however many one-note
    frames they make."""
    top = skyline(frames).astype(np.int64)
    if len(top) < 2 or np.percentile(frames.pitches, 98) - np.percentile(frames.pitches, 2) \
            > TUNE_RANGE:
        return False  # both hands: bass and treble far apart
    d = np.abs(np.diff(top))
    step = (d <= 7) | (np.abs(d - 12) <= 2)  # a step, or one played an octave off
    return float(np.mean(step)) >= LINE_SHARE


def is_monophonic(frames: Frames, threshold: float = MONO_SHARE) -> bool:
    """A query is a melody when nearly every frame holds one note (a few overlapping
    legato notes grouped into one frame are forgiven), its top line moves like a tune
    and it has enough notes."""
    return (len(frames) >= MIN_MELODY_NOTES and melody_share(frames) >= threshold
            and is_line(frames))


def query_mode(frames: Frames) -> str:
    """``"melody"`` (a tune: answered by the melody view), ``"fused"`` (both views, the
    more confident reading wins) or ``"texture"``.

    Fused: a tune with some chords or doublings, and strictly one note at a time that leaps
    like two hands (a theme's top line across registers, the top notes of a passage).
    Searched as a texture alone, such 8-note themes were found first 0.49 of the time and
    played 10 s top lines 0.23; answered by the melody view alone they would cost the ASAP
    benchmark two 5 s one-hand passages in 1,000. Mostly one note at a time with leaps (two
    hands not quite together) stays a texture (benchmarks/RESULTS.md)."""
    if is_monophonic(frames):
        return "melody"
    if len(frames) >= MIN_MELODY_NOTES and (
            melody_share(frames) == 1.0
            or (melody_share(frames) >= FUSE_SHARE and is_line(frames))):
        return "fused"
    return "texture"


class Line(NamedTuple):
    """One line of a piece's melody view."""

    pitches: np.ndarray  # int64 (n,), one MIDI pitch per note
    frames: np.ndarray   # int64 (n,), ascending: the frame each note starts in
    voice: bool          # a score voice's line (else the top line, or it without dips)


def melody_lines(frames: Frames) -> list[Line]:
    """The lines of a piece's melody view.

    Line 0 is the top line (every frame). Line 1 drops the *dips*: top notes at least
    :data:`DIP` semitones below both neighbours, which in a score are mostly lower voices
    moving under a held melody note (a real leap down and back is kept in line 0); it is
    there only where the top line has dips. Then each score voice (``frames.voices``, the
    highest note it starts in each frame), except one that is the whole top line itself;
    at most :data:`MAX_LINES` lines, the voices with most notes kept.
    """
    top = skyline(frames).astype(np.int64)
    every = np.arange(len(top), dtype=np.int64)
    lines = [Line(top, every, False)]
    if len(top) >= 3:
        dip = np.zeros(len(top), bool)
        dip[1:-1] = (top[1:-1] <= top[:-2] - DIP) & (top[1:-1] <= top[2:] - DIP)
        if dip.any():
            lines.append(Line(top[~dip], every[~dip], False))
    return lines + voice_lines(frames.voices, top, MAX_LINES - len(lines))


def voice_lines(voices: np.ndarray | None, top: np.ndarray, most: int) -> list[Line]:
    """Lines of the score voices (``voices`` int16 (K, F) MIDI pitches, 0 = no note), in
    voice order: the ``most`` with most notes, leaving out a voice equal to the top line
    ``top`` (int (F,)) in every frame."""
    if voices is None or most <= 0:
        return []
    v = voices.astype(np.int64)
    counts = (v > 0).sum(1)
    same = (v == top[None, :]).all(1)
    ranked = [k for k in np.argsort(-counts, kind="stable") if counts[k] and not same[k]]
    return [Line(v[k][v[k] > 0], np.flatnonzero(v[k]), True) for k in sorted(ranked[:most])]


def segment(line: np.ndarray, start: int, length: int) -> np.ndarray:
    """``line[start:start + length]`` padded with −1 outside the line (int64 (length,))."""
    out = np.full(length, -1, np.int64)
    lo, hi = max(start, 0), min(start + length, len(line))
    if hi > lo:
        out[lo - start:hi - start] = line[lo:hi]
    return out
