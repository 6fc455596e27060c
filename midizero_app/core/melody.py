"""The melody view: top line of each frame, key-normalised windows, tolerant alignment.

People who want to name a piece usually play its *tune*: one note at a time, often in
another key, with their own rhythm and a few slips. The full-texture index does not see a
one-note line inside chords, nor a transposition. So each piece also gets a melody view,
made from its stored frames (no re-parsing):

* :func:`skyline` — the highest pitch of each frame (the top line); :func:`tune_notes` —
  a query's top line less the notes of spread chords (a bass played just before or after
  the melody note);
* :func:`melody_lines` — the lines a tune is looked for in: the top line, the top line
  without the accompaniment notes that surface in it while the tune holds a note (frames
  store onsets only, so a held melody note leaves the moving lower voices on top), and
  where the score has voices (MusicXML, MEI, Humdrum, ABC) each voice's own line, so a
  tune in an inner voice (an alto line, a tenor theme under held chords) is found too;
* :func:`melody_windows` — W-note windows of a line, each transposed so that its
  median pitch sits on :data:`CENTER` (key-invariant), embedded by the same encoder into
  an index of their own (``Library`` view ``"melody"``, :func:`library_windows`);
* :func:`align` — a local alignment of pitch *intervals* (key-invariant) that forgives a
  wrong note, an octave slip, an added or dropped note and accompaniment notes between
  tune notes in the library's top line. It gives each candidate place its shift, register
  and notes;
* :func:`likelihood` — how likely a tune is at each place, at that shift, under a pair
  hidden Markov model of playing from memory (its notes, and its rhythm at a tempo of
  the player's own), summed over all alignments: what ranks the pieces
  (``core/melody_search.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .frames import N_PITCHES, PITCH_LO, Frames, fold_pitch

CENTER = 64          # a melody window's median pitch is moved here (E4)
MONO_SHARE = 0.85    # share of one-note frames that makes a query a melody
FUSE_SHARE = 0.6     # ... that makes it a tune with some chords (both views searched)
LINE_SHARE = 0.8     # share of top-line steps within a fifth that makes a line a tune
TUNE_RANGE = 26      # semitones: a tune played alone spans about two octaves at most
MIN_MELODY_NOTES = 6
DIP = 5              # semitones below both neighbours that mark an accompaniment note
# A query note this close in time to its neighbour and this far below it is one end of a
# spread chord (τ = 50 ms leaves such notes frames of their own), not a tune note. Played
# ASAP melodies (benchmarks/RESULTS.md): 10 s 0.960 → 0.971, 5 s 0.880 → 0.897; 4–7
# semitones and 60–120 ms all gain; written tunes move slower or by step.
SPREAD_S = 0.08
SPREAD_LEAP = 5
MELODY_VIEW_VERSION = 2  # bump when the lines or windows change: libraries re-embed
LINE_STRIDE = 1_000_000  # a melody-view label's frame = line number · stride + position
MAX_LINES = 16       # lines per piece (2 from the top line, the rest voices); a piece's
# line li is searched as the pseudo piece piece · MAX_LINES + li (core/melody_search.py)

# Alignment scores (per query interval): exact about 1 (below), same up to octaves 0.8
# (a note played in the wrong octave keeps the tune), a near miss (≤ 2 semitones) −0.3,
# else −1.
# Skipping a library note (accompaniment in the top line, an ornament the player left
# out) costs half a matched interval (cheaper skips let chance alignments through: on
# the dev half, 12-note remembered tunes 0.850 → 0.883 from 0.25 to 0.5); a query note
# skipped costs more (an added note, or a wrong note with its
# library note), except a repeated note (a common slip that leaves the tune as it is).
_OCTAVE, _NEAR, _MISS = 0.8, -0.3, -1.0
# An exact interval scores by how rare it is, not a flat 1: a matched sixth or octave leap
# is stronger evidence than a matched step or repeated note, which any stepwise tune
# holds (the log-odds scores of sequence alignment). Share of each interval −12..+12 in
# the melody lines of the music21 corpus's 3,111 works (`benchmarks/melody_bench.py
# --parts intervals`; ASAP not used); an exact interval scores ln(10 / share), scaled so
# that the corpus's average interval scores 1 as before; wider ones score as ±12. Remembered
# themes, random key, 1,000 a cell: 8 notes 0.441 → 0.517, 12 notes 0.833 → 0.859 (any
# constant from ln 3 to ln 40 gave the same within a point); exact themes unchanged,
# played melodies as good or better (benchmarks/RESULTS.md).
_INTERVAL_SHARE = np.array([
    0.0058, 0.0014, 0.0055, 0.0066, 0.0071, 0.0169, 0.0039, 0.0271, 0.0423, 0.0706,
    0.1780, 0.0786, 0.1357, 0.0799, 0.1572, 0.0499, 0.0354, 0.0438, 0.0036, 0.0194,
    0.0073, 0.0092, 0.0064, 0.0021, 0.0063])  # intervals −12 .. +12
_INTERVAL_SHARE = _INTERVAL_SHARE / _INTERVAL_SHARE.sum()
_EXACT_BY_INTERVAL = np.log(10.0 / _INTERVAL_SHARE)
_EXACT_BY_INTERVAL = (_EXACT_BY_INTERVAL / (_INTERVAL_SHARE * _EXACT_BY_INTERVAL).sum()
                      ).astype(np.float32)
_SKIP_LIB, _SKIP_QUERY, _SKIP_REPEAT, _SKIP_BOTH = 0.5, 0.7, 0.2, 0.8
_NEG = -1e9


def skyline(frames: Frames) -> np.ndarray:
    """Highest pitch of each frame: int16 (F,) (pitches are sorted within a frame)."""
    if len(frames) == 0:
        return np.zeros(0, np.int16)
    return frames.pitches[frames.offsets[1:] - 1].astype(np.int16)


def tune_notes(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """The tune a query plays: the top note of each frame (:func:`skyline`), less each
    note struck within :data:`SPREAD_S` seconds of its neighbour and :data:`SPREAD_LEAP`
    or more semitones below it — the bass of a spread chord, played just before or after
    the melody note as pianists do.

    Returns pitches int64 (F',) and their onsets float64 (F',) in seconds, F' ≤ F (the
    frames' onsets must be increasing; a line without times has them 0.1 s apart and
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
    """Share of frames that hold exactly one note (1.0 for a tune played one note at a time)."""
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
    Until 2026-11-27 the latter was searched as a texture alone, which found such 8-note
    themes first 0.49 of the time and played 10 s top lines 0.23. Answered by the melody
    view alone they would cost the ASAP benchmark two 5 s one-hand passages in 1,000;
    mostly one note at a time with leaps (two hands not quite together) stays a texture
    (benchmarks/RESULTS.md)."""
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
    return lines + _voice_lines(frames.voices, top, MAX_LINES - len(lines))


def _voice_lines(voices: np.ndarray | None, top: np.ndarray, most: int) -> list[Line]:
    """Lines of the score voices (int16 (K, F), 0 = no note), in voice order: the ``most``
    with most notes, leaving out a voice equal to the top line in every frame."""
    if voices is None or most <= 0:
        return []
    v = voices.astype(np.int64)
    counts = (v > 0).sum(1)
    same = (v == top[None, :]).all(1)
    ranked = [k for k in np.argsort(-counts, kind="stable") if counts[k] and not same[k]]
    return [Line(v[k][v[k] > 0], np.flatnonzero(v[k]), True) for k in sorted(ranked[:most])]


def library_windows(frames: Frames, hop: int, win_length: int = 10
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Melody-view windows of a library piece: every line's key-normalised windows, less
    a voice's windows whose notes the top line holds in a row (line 0 has them).

    Returns windows uint8 (N, win_length, 88) and labels' frames int64 (N,) encoded as
    ``line * LINE_STRIDE + position in the line``.
    """
    top = skyline(frames).astype(np.int64)
    wins, starts = [], []
    for li, line in enumerate(melody_lines(frames)):
        w, st, _ = melody_windows(line.pitches, hop, win_length)
        if line.voice:
            keep = ~_on_top_line(line, top, st, win_length)
            w, st = w[keep], st[keep]
        wins.append(w)
        starts.append(li * LINE_STRIDE + st)
    return np.concatenate(wins), np.concatenate(starts)


def _on_top_line(line: Line, top: np.ndarray, starts: np.ndarray, win_length: int
                 ) -> np.ndarray:
    """bool (N,): the voice window at each start (a line position) covers ``win_length``
    consecutive frames whose top notes are the voice's notes — a window line 0 has."""
    n = len(line.pitches)
    off = np.zeros(n + 1, np.int64)  # prefix counts of notes that differ from the top line
    np.cumsum(line.pitches != top[line.frames], out=off[1:])
    end = starts + win_length
    full = end <= n
    e = np.minimum(end, n)
    same = off[e] - off[starts] == 0
    gap = line.frames[e - 1] - line.frames[starts]
    return full & same & (gap == win_length - 1)


def melody_windows(pitches: np.ndarray, hop: int, win_length: int = 10
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key-normalised one-note-per-row windows of a line (a top line, or a voice's).

    Parameters
    ----------
    pitches : int (F,), the line (one MIDI pitch per note).
    hop : notes between window starts (library 2, query 1).

    Returns
    -------
    windows : uint8 (N, win_length, 88); a line shorter than ``win_length`` gives one
        window padded with empty rows.
    starts : int64 (N,), first note (position in the line) of each window.
    shifts : int64 (N,), semitones added to the window's pitches (its median → CENTER).
    """
    from .windows import window_starts

    p = np.asarray(pitches, np.int64)
    n = len(p)
    starts = window_starts(n, hop, win_length)
    idx = starts[:, None] + np.arange(win_length)[None, :]
    valid = idx < n
    seg = np.where(valid, p[np.minimum(idx, max(n - 1, 0))] if n else 0, 0)
    # Only a line shorter than a window has padding; all windows of a longer one are full.
    med = (np.median(seg, axis=1) if valid.all() else
           np.array([np.median(seg[0][valid[0]]) if n else CENTER]))
    shifts = CENTER - np.floor(med + 0.5).astype(np.int64)  # not round(): half-to-even
    # would normalise the same tune differently in neighbouring keys
    moved = fold_pitch((seg + shifts[:, None]).clip(-200, 300)).astype(np.int64)
    wins = np.zeros((len(starts), win_length, N_PITCHES), np.uint8)
    r, c = np.nonzero(valid)
    wins[r, c, moved[r, c] - PITCH_LO] = 1
    return wins, starts, shifts


_NO_INTERVAL = 1000  # a library "interval" that touches padding
# Score by |query interval − library interval| (0.._NO_INTERVAL): a table lookup is much
# cheaper than nested comparisons over every (segment, position).
_SCORE_BY_DIFF = np.full(2 * _NO_INTERVAL + 1, _MISS, np.float32)
_SCORE_BY_DIFF[:3] = _NEAR
_SCORE_BY_DIFF[0:200:12] = _OCTAVE  # piano intervals differ by < 200; padding never


def exact_score(interval: int) -> float:
    """Score of an exactly matched interval (semitones): about 0.8 for a step or a repeated
    note, 1 on average, up to 1.8 for a rare leap."""
    return float(_EXACT_BY_INTERVAL[min(max(int(interval), -12), 12) + 12])


def _interval_score(a: int, b: np.ndarray) -> np.ndarray:
    """Score of query interval ``a`` against library intervals ``b`` (float32, b's shape)."""
    table = _SCORE_BY_DIFF.copy()
    table[0] = exact_score(a)
    return table[np.minimum(np.abs(b - a), 2 * _NO_INTERVAL)]


@dataclass
class Alignment:
    """Best alignment of a query line in one library segment."""

    score: float        # summed interval scores minus skip costs (≈ 1 per matched interval)
    start: int          # segment index aligned to the first aligned query note
    end: int            # segment index aligned to the last aligned query note
    transpose: int      # semitones to add to the query to reach the library (−6..+5)
    matched: int        # query intervals matched exactly or up to octaves
    offset: int = 0     # semitones from the query to the library (most common, octaves kept)
    first: int = 0      # query note aligned to ``start``
    last: int = 0       # query note aligned to ``end``


def align(query: np.ndarray, segments: np.ndarray) -> list[Alignment]:
    """Align a query line against several library segments at once.

    Parameters
    ----------
    query : int (m,), the query's top line, m ≥ 2.
    segments : int (C, L), library top-line segments; pitches < 0 are padding.

    Returns
    -------
    One :class:`Alignment` per segment. The alignment is global in the query (a missing
    first or last note costs one skip) and local in the segment; intervals make it
    independent of the key.
    """
    q = np.asarray(query, np.int64)
    t = np.asarray(segments, np.int64)
    m, (c, length) = len(q), t.shape
    pad = t < 0
    # Library intervals over 1, 2 and 3 steps (skipping 0, 1 or 2 library notes).
    lib_d = {}
    for k in (1, 2, 3):
        d = np.full((c, length), _NO_INTERVAL, np.int32)
        d[:, k:] = t[:, k:] - t[:, :-k]
        d[:, k:][pad[:, k:] | pad[:, :-k]] = _NO_INTERVAL
        lib_d[k] = d
    # D[i]: best score with query note i aligned to library position j; B[i]: how.
    D = np.full((m, c, length), _NEG, np.float32)
    B = np.zeros((m, c, length), np.int8)
    D[0] = np.where(pad, _NEG, 0.0)
    moves = [(1, 1, 0.0), (1, 2, _SKIP_LIB), (1, 3, 2 * _SKIP_LIB), (2, 1, _SKIP_QUERY),
             (2, 2, _SKIP_BOTH)]
    for i in range(1, m):
        best = np.full((c, length), _NEG, np.float32)
        how = np.zeros((c, length), np.int8)
        if i == 1:  # the first query note may be missing from the library line
            best = np.where(pad, _NEG, -_SKIP_QUERY).astype(np.float32)
            how[:] = -1
        for code, (di, dj, cost) in enumerate(moves):
            if i - di < 0:
                continue
            if di == 2 and dj == 1 and q[i - 1] == q[i - 2]:
                cost = _SKIP_REPEAT  # the skipped query note repeats the one before
            s = np.full((c, length), _NEG, np.float32)
            s[:, dj:] = D[i - di][:, :-dj] + _interval_score(int(q[i] - q[i - di]),
                                                             lib_d[dj][:, dj:]) - cost
            take = s > best
            best = np.where(take, s, best)
            how = np.where(take, np.int8(code), how)
        best[pad] = _NEG
        D[i], B[i] = best, how
    # The end: the last query note, or the one before it (a missing last note).
    last = D[m - 1]
    skip_last = D[m - 2] - _SKIP_QUERY if m >= 2 else np.full_like(last, _NEG)
    rows = np.arange(c)
    j_last, j_skip = last.argmax(1), skip_last.argmax(1)
    use_skip = skip_last[rows, j_skip] > last[rows, j_last]
    scores = np.where(use_skip, skip_last[rows, j_skip], last[rows, j_last]).astype(float)
    i_cur = np.where(use_skip, m - 2, m - 1)
    j_cur = np.where(use_skip, j_skip, j_last)
    # Backtrack every segment at once; pairs[ci, i] = library position of query note i.
    pairs = np.full((c, m), -1, np.int64)
    pairs[rows, i_cur] = j_cur
    live = np.ones(c, bool)
    step_di = np.array([mv[0] for mv in moves])
    step_dj = np.array([mv[1] for mv in moves])
    for _ in range(m):
        live &= i_cur > 0
        if not live.any():
            break
        code = B[i_cur, rows, j_cur]
        live &= code >= 0
        di = np.where(live, step_di[np.maximum(code, 0)], 0)
        dj = np.where(live, step_dj[np.maximum(code, 0)], 0)
        i_cur, j_cur = i_cur - di, j_cur - dj
        pairs[rows[live], i_cur[live]] = j_cur[live]
    aligned = pairs >= 0
    diffs = np.where(aligned, t[rows[:, None], np.maximum(pairs, 0)] - q[None, :], 0)
    # The key shift is the most common pitch difference up to octaves, in −6..+5.
    pc = np.zeros((c, 12), np.int64)
    np.add.at(pc, (np.repeat(rows, m)[aligned.ravel()], np.mod(diffs, 12)[aligned]), 1)
    shift = pc.argmax(1)
    shift = np.where(shift >= 6, shift - 12, shift)
    # ... and the offset the most common exact difference of that shift (its register).
    at_shift = aligned & (np.mod(diffs - shift[:, None], 12) == 0)
    by_diff = np.zeros((c, 512), np.int64)
    np.add.at(by_diff, (np.repeat(rows, m)[at_shift.ravel()], diffs[at_shift] + 256), 1)
    offset = by_diff.argmax(1) - 256
    # Matched intervals: aligned notes whose difference repeats the previous aligned
    # note's up to octaves.
    steps = np.arange(m)[None, :]
    before = np.maximum.accumulate(np.where(aligned, steps, -1), axis=1)
    before = np.concatenate([np.full((c, 1), -1), before[:, :-1]], axis=1)
    dm = np.mod(diffs, 12)
    ok = (aligned & (before >= 0) & (dm == dm[rows[:, None], np.maximum(before, 0)])).sum(1)
    first_i = aligned.argmax(1)
    last_i = m - 1 - aligned[:, ::-1].argmax(1)
    return [Alignment(*x) for x in zip(scores.tolist(), pairs[rows, first_i].tolist(),
                                       pairs[rows, last_i].tolist(), shift.tolist(),
                                       ok.tolist(), offset.tolist(), first_i.tolist(),
                                       last_i.tolist())]


# How a tune played from memory relates to the score's line, per note, as a pair hidden
# Markov model (the query-by-humming error models of Meek & Birmingham, Pardo et al.):
# a query note is the library note at the tune's shift (0.88), an octave off (0.04), a
# wrong key within 3 semitones (0.01 each) or anything else (0.02 over 80 keys); after it
# comes the next library note, or one or two are left out (0.05, 0.01), or the player adds
# a note (0.06): a repeat (0.4), a neighbour within 2 semitones (0.1 each of 4) or any
# other (0.2 over 25). Round rates, not fitted to the benchmarks. Summed over alignments
# and places, this ranks remembered 8-note themes far better than the best single
# alignment does (benchmarks/RESULTS.md, eleventh session).
_P_EXACT, _P_OCTAVE, _P_NEAR, _P_OTHER = 0.88, 0.04, 0.01, 0.02 / 80
_T_SKIP1, _T_SKIP2, _T_ADD = 0.05, 0.01, 0.06
_T_NEXT = 1.0 - _T_SKIP1 - _T_SKIP2 - _T_ADD
_EMIT = np.full(256, _P_OTHER)
_EMIT[:4] = _P_NEAR
_EMIT[0] = _P_EXACT
_EMIT[[12, 24]] = _P_OCTAVE
_EMIT = _EMIT / _P_EXACT  # with the next-note step as 1: a note-for-note match keeps 1


def _added_note(q: np.ndarray, i: int) -> float:
    """P(query note i is one the player added | its neighbours), scaled as :data:`_EMIT`."""
    near = [abs(int(q[i]) - int(q[k])) for k in (i - 1, i + 1) if 0 <= k < len(q)]
    p = 0.4 if 0 in near else 0.1 if min(near, default=99) <= 2 else 0.2 / 25
    return p * _T_ADD / (_P_EXACT * _T_NEXT)


def match_evidence(line: np.ndarray) -> float:
    """Natural log of how much likelier a tune is under :func:`likelihood` when a library
    line holds it note for note than as any tune (each interval at its share among tunes):
    the unit in which a melody search's scores are compared (≥ 1e-6)."""
    d = np.clip(np.diff(np.asarray(line, np.int64)), -12, 12)
    return max(float(np.log(_P_EXACT * _T_NEXT / _INTERVAL_SHARE[d + 12]).sum()), 1e-6)


# Rhythm, tempo-free: a tune is played at a tempo of its own, so each inter-onset interval
# (IOI) is compared with the library's times the place's tempo (the aligned span's
# duration ratio), in log units. A player who keeps the rhythm is off by about
# :data:`RHYTHM_SD` (±28 %), a note now and then by anything (:data:`_RHYTHM_SLIP`).
# That is weighed against how the tune's rhythm would come about anyway: most notes last
# as long as the one before (57 % of the music21 corpus's top-line IOIs; the others
# spread about ±1 in log units), and a player who does not know the rhythm plays even
# notes. So even notes say little, and a dotted or syncopated figure a lot, and a place
# whose rhythm contradicts the tune's loses. Not every player keeps the rhythm, so the
# rhythm reading counts for :data:`_RHYTHM_SHARE` of the likelihood and the pitch-only
# reading for the rest: a tune in a rhythm of its own loses at most a factor 2 anywhere.
# Round values, not fitted (benchmarks/RESULTS.md, twelfth session).
_RHYTHM_SHARE, RHYTHM_SD, _RHYTHM_SLIP = 0.5, 0.25, 0.1
_EVEN_SHARE, _EVEN_SD, _UNEVEN_SD = 0.57, 0.15, 1.0
MIN_IOI = 1e-3  # seconds: onsets closer than this count as this close


def _normal(x, sd: float):
    return np.exp(-0.5 * (np.asarray(x) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def _rhythm_null(onsets: np.ndarray) -> np.ndarray:
    """Density of each query IOI's log ratio to the one before when nothing is known of
    the piece: float64 (m,), [0] unused. The first IOI has none before it and is taken as
    a repeat (the least evidence), not as its ratio to the next, which the second IOI
    already counts."""
    ioi = np.log(np.maximum(np.diff(np.asarray(onsets, np.float64)), MIN_IOI))
    r = np.zeros(len(ioi))
    r[1:] = np.diff(ioi)
    dens = _EVEN_SHARE * _normal(r, _EVEN_SD) + (1 - _EVEN_SHARE) * _normal(r, _UNEVEN_SD)
    return np.concatenate([[1.0], dens])


def _kept_over_null(onsets: np.ndarray) -> np.ndarray:
    """Most each query IOI's kept-rhythm density can exceed its null (:func:`_rhythm_null`),
    without the slip term: float64 (m,), [0] unused."""
    return (1 - _RHYTHM_SLIP) * _normal(0.0, RHYTHM_SD) / _rhythm_null(onsets)


def rhythm_evidence(onsets: np.ndarray) -> float:
    """Natural log of the most a tune with these onsets (seconds) gains in
    :func:`likelihood` by keeping a place's rhythm exactly: about 0 for even notes, more
    the more distinctive the rhythm."""
    if len(onsets) < 2:
        return 0.0
    peak = _kept_over_null(onsets)[1:] + _RHYTHM_SLIP
    return float(np.logaddexp(np.log(1 - _RHYTHM_SHARE),  # in logs: no overflow
                              np.log(_RHYTHM_SHARE) + np.log(np.maximum(peak, 1.0)).sum()))


class Rhythm(NamedTuple):
    """Note times for :func:`likelihood`: the query's and each segment's, and the tempo."""

    query: np.ndarray     # float (m,), seconds of the query's notes, increasing
    segments: np.ndarray  # float (C, L), seconds of the segments' notes (any at padding)
    tempo: np.ndarray     # float (C,), query seconds per library second at each place;
    # ≤ 0 or not finite where unknown (that place is ranked on pitches alone)


def place_tempo(alignments: list[Alignment], query_onsets: np.ndarray,
                segment_onsets: np.ndarray) -> np.ndarray:
    """Query seconds per library second of each aligned place: float64 (C,), the span
    from the first to the last aligned note in the query over that in the segment; 0
    where the span is a single note."""
    q = np.asarray(query_onsets, np.float64)
    first, last, start, end = np.array([(a.first, a.last, a.start, a.end) for a in alignments],
                                       np.int64).reshape(-1, 4).T  # one pass, not four
    rows = np.arange(len(alignments))
    lib = segment_onsets[rows, end] - segment_onsets[rows, start]
    with np.errstate(divide="ignore", invalid="ignore"):
        tempo = np.where(lib > 0, (q[last] - q[first]) / np.where(lib > 0, lib, 1.0), 0.0)
    return np.where((last > first) & np.isfinite(tempo), tempo, 0.0)


def likelihood(query: np.ndarray, segments: np.ndarray, offsets: np.ndarray,
               rhythm: Rhythm | None = None) -> np.ndarray:
    """How well a tune fits each place of library segments: a pair-HMM forward pass.
    The second of :func:`likelihoods`: with the rhythm where it is given."""
    return likelihoods(query, segments, offsets, rhythm)[1]


def likelihoods(query: np.ndarray, segments: np.ndarray, offsets: np.ndarray,
                rhythm: Rhythm | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How well a tune fits each place of library segments, on its pitches alone and
    with its rhythm: pair-HMM forward passes.

    Parameters
    ----------
    query : int (m,), the tune's pitches, m ≥ 1.
    segments : int (C, L), library line segments; pitches < 0 are padding.
    offsets : int (C,), semitones added to the query to reach each segment (the tune's
        key and register there, e.g. :attr:`Alignment.offset`).
    rhythm : the notes' times (:class:`Rhythm`); without them, pitches alone.

    Returns
    -------
    pitches : float64 (C, L), P(query | it ends at position j), summed over where it
        starts and over every alignment, relative to a note-for-note match (which scores
        1; a slip about 0.01-0.05, a note that fits nothing 3e-4).
    with_rhythm : float64 (C, L), that times the rhythm's likelihood ratio
        (:data:`_RHYTHM_SHARE` · ratio + the rest): a tune in the place's own rhythm up to
        :func:`rhythm_evidence` more, one in another rhythm down to half; ``pitches``
        itself without ``rhythm`` or where the place's tempo is unknown.
    """
    q = np.asarray(query, np.int64)
    t = np.asarray(segments, np.int64)
    c, length = t.shape
    diff = np.abs(q[None, :, None] + np.asarray(offsets, np.int64)[:, None, None]
                  - t[:, None, :])
    emit = np.where(t[:, None, :] >= 0, _EMIT[np.minimum(diff, 255)], 0.0)  # (C, m, L)
    plain = _forward(q, emit)
    if rhythm is None or len(q) < 2:
        return plain, plain
    tempo = np.asarray(rhythm.tempo, np.float64)
    known = np.isfinite(tempo) & (tempo > 0)
    if not known.any():
        return plain, plain
    ts = np.asarray(rhythm.segments, np.float64)
    log_tempo = np.log(np.where(known, tempo, 1.0))[:, None]
    unit = RHYTHM_SD * np.sqrt(2.0)  # log IOIs in these units: the kernel is exp(−x²)
    lib_ioi = {}  # k: log(tempo · (t[j] − t[j − k])) / unit at [:, k:], float32 for speed
    for k in (1, 2, 3):
        d = np.maximum(np.nan_to_num(ts[:, k:] - ts[:, :-k]), MIN_IOI)
        lib_ioi[k] = ((np.log(d) + log_tempo) / unit).astype(np.float32)
    tq = np.asarray(rhythm.query, np.float64)
    peak = _kept_over_null(tq)

    def ratio(i: int, k: int, back: int) -> np.ndarray:
        """Kept rhythm over the null for query IOI i (from note i − back) against the
        library's over k notes: ≈ 1 for even notes that agree, more for a distinctive
        figure, ≈ 0.1 for one the place contradicts."""
        x = lib_ioi[k] - np.float32(np.log(max(tq[i] - tq[i - back], MIN_IOI)) / unit)
        np.square(x, out=x)
        np.negative(x, out=x)
        np.exp(x, out=x)
        return x * np.float32(peak[i]) + np.float32(_RHYTHM_SLIP)

    with_rhythm = _forward(q, emit, ratio)
    mixed = (1 - _RHYTHM_SHARE) * plain + _RHYTHM_SHARE * with_rhythm
    return plain, np.where(known[:, None], mixed, plain)


def _forward(q: np.ndarray, emit: np.ndarray, ratio=None) -> np.ndarray:
    """:func:`likelihood`'s forward pass over emissions ``emit`` (C, m, L); ``ratio(i,
    k, back)`` (optional) weighs the step to query note i from library note j − k and
    query note i − back (2 after an added note): float (C, L − k) for [:, k:]."""
    c, _, length = emit.shape
    skip = (_T_NEXT, _T_SKIP1, _T_SKIP2)
    with np.errstate(under="ignore"):
        f = emit[:, 0, :].copy()   # query note i played as library note j
        g = np.zeros((c, length))  # query note i added by the player, after library note j
        for i in range(1, len(q)):
            nf = np.zeros((c, length))
            for k, p in enumerate(skip, 1):
                if ratio is None:
                    step = f[:, :-k] + g[:, :-k]
                else:
                    step = f[:, :-k] * ratio(i, k, 1)
                    if i >= 2:
                        step += g[:, :-k] * ratio(i, k, 2)
                nf[:, k:] += step * (p / _T_NEXT)
            f, g = nf * emit[:, i, :], f * _added_note(q, i)
    return f + g


def segment(line: np.ndarray, start: int, length: int) -> np.ndarray:
    """``line[start:start + length]`` padded with −1 outside the line (int64 (length,))."""
    out = np.full(length, -1, np.int64)
    lo, hi = max(start, 0), min(start + length, len(line))
    if hi > lo:
        out[lo - start:hi - start] = line[lo:hi]
    return out

