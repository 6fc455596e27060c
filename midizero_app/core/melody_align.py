"""Interval alignment of a tune with library line segments: its key shift, register and place.

:func:`align` is a local alignment of pitch *intervals* (so independent of the key) that
forgives a wrong note, an octave slip, an added or dropped note, and accompaniment notes
between tune notes in a library top line. For each candidate segment it gives the tune's
shift, register and the notes it covers; the melody search aligns every candidate place
with it before the pair-HMM (:mod:`~midizero_app.core.melody_likelihood`) weighs the
places.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Alignment scores, per query interval: exact about 1 (:func:`exact_score`), the same up
# to octaves 0.8 (a note played in the wrong octave keeps the tune), a near miss (≤ 2
# semitones) −0.3, anything else −1.
OCTAVE, NEAR, MISS = 0.8, -0.3, -1.0
# Skipping a library note (accompaniment in the top line, an ornament the player left out)
# costs half a matched interval: cheaper skips let chance alignments through (remembered
# 12-note tunes, benchmarks/RESULTS.md: 0.850 at 0.25, 0.883 at 0.5). Skipping a query
# note costs more (an added note, or a wrong note with its library note), except a
# repeated note (a common slip that leaves the tune as it is).
SKIP_LIB, SKIP_QUERY, SKIP_REPEAT, SKIP_BOTH = 0.5, 0.7, 0.2, 0.8
NEG = -1e9  # the score of an impossible alignment
# Share of each interval −12..+12 semitones in the melody lines of the music21 corpus's
# 3,111 works (``benchmarks/melody_bench.py --parts intervals``; ASAP not used), float64
# (25,), summing to 1. An exact interval scores by how rare it is (the log-odds scores of
# sequence alignment): a matched sixth or octave leap is stronger evidence than a matched
# step or repeated note, which any stepwise tune holds. Remembered themes in a random key
# (1,000 a cell, benchmarks/RESULTS.md): 8 notes 0.441 → 0.517 and 12 notes 0.833 → 0.859
# against a flat score of 1; any constant from ln 3 to ln 40 in ln(c / share) gave the same
# within a point.
INTERVAL_SHARE = np.array([
    0.0058, 0.0014, 0.0055, 0.0066, 0.0071, 0.0169, 0.0039, 0.0271, 0.0423, 0.0706,
    0.1780, 0.0786, 0.1357, 0.0799, 0.1572, 0.0499, 0.0354, 0.0438, 0.0036, 0.0194,
    0.0073, 0.0092, 0.0064, 0.0021, 0.0063])  # intervals −12 .. +12
INTERVAL_SHARE = INTERVAL_SHARE / INTERVAL_SHARE.sum()
# ln(10 / share), scaled so that the corpus's average interval scores 1; float32 (25,).
_EXACT_BY_INTERVAL = np.log(10.0 / INTERVAL_SHARE)
_EXACT_BY_INTERVAL = (_EXACT_BY_INTERVAL / (INTERVAL_SHARE * _EXACT_BY_INTERVAL).sum()
                      ).astype(np.float32)

NO_INTERVAL = 1000  # a library "interval" that touches padding
# Score by |query interval − library interval| (0..2 NO_INTERVAL): a table lookup is much
# cheaper than nested comparisons over every (segment, position).
_SCORE_BY_DIFF = np.full(2 * NO_INTERVAL + 1, MISS, np.float32)
_SCORE_BY_DIFF[:3] = NEAR
_SCORE_BY_DIFF[0:200:12] = OCTAVE  # piano intervals differ by < 200; padding never


def exact_score(interval: int) -> float:
    """Score of an exactly matched interval (semitones; beyond ±12 as ±12): about 0.8 for
    a step or a repeated note, 1 on average, up to 1.8 for a rare leap."""
    return float(_EXACT_BY_INTERVAL[min(max(int(interval), -12), 12) + 12])


def interval_score(a: int, b: np.ndarray) -> np.ndarray:
    """Score of query interval ``a`` (semitones) against library intervals ``b`` (int,
    any shape; :data:`NO_INTERVAL` where padding is involved): float32, ``b``'s shape."""
    table = _SCORE_BY_DIFF.copy()
    table[0] = exact_score(a)
    return table[np.minimum(np.abs(b - a), 2 * NO_INTERVAL)]


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


# The moves of the alignment: (query notes advanced, library notes advanced, cost).
_MOVES = [(1, 1, 0.0), (1, 2, SKIP_LIB), (1, 3, 2 * SKIP_LIB), (2, 1, SKIP_QUERY),
          (2, 2, SKIP_BOTH)]


def align(query: np.ndarray, segments: np.ndarray) -> list[Alignment]:
    """Align a query line against several library segments at once.

    Parameters
    ----------
    query : int (m,), the query's top line (MIDI pitches), m ≥ 2.
    segments : int (C, L), library line segments (MIDI pitches); pitches < 0 are padding.

    Returns
    -------
    One :class:`Alignment` per segment (C). The alignment is global in the query (a
    missing first or last note costs one skip) and local in the segment; intervals make it
    independent of the key. A segment the query cannot be aligned with at all (too few
    notes in a row for the query's) scores about :data:`NEG` and aligns no note: start,
    end, first and last 0, no shift.
    """
    q = np.asarray(query, np.int64)
    t = np.asarray(segments, np.int64)
    m = len(q)
    pad = t < 0
    lib_d = _library_intervals(t, pad)
    scores, i_cur, j_cur, moves = _fill(q, pad, lib_d)
    pairs = _backtrack(moves, i_cur, j_cur, m, scores > NEG / 2)
    return _summarise(q, t, scores, pairs)


def _library_intervals(t: np.ndarray, pad: np.ndarray) -> dict[int, np.ndarray]:
    """Library intervals over 1, 2 and 3 steps (skipping 0, 1 or 2 library notes): k →
    int32 (C, L), valid at [:, k:], :data:`NO_INTERVAL` where padding is involved."""
    c, length = t.shape
    lib_d = {}
    for k in (1, 2, 3):
        d = np.full((c, length), NO_INTERVAL, np.int32)
        d[:, k:] = t[:, k:] - t[:, :-k]
        d[:, k:][pad[:, k:] | pad[:, :-k]] = NO_INTERVAL
        lib_d[k] = d
    return lib_d


def _fill(q: np.ndarray, pad: np.ndarray, lib_d: dict[int, np.ndarray]):
    """The dynamic programme: the best score with query note i at library position j (a
    row per query note, the last two kept) and the move that reached it (int8 (m, C, L),
    −1 where the alignment starts at query note 1).

    Returns the best score of each segment (float64 (C,)), where its alignment ends
    (query note, library position; int64 (C,) each) and the moves."""
    m = len(q)
    c, length = pad.shape
    rows: dict[int, np.ndarray] = {0: np.where(pad, NEG, 0.0).astype(np.float32)}
    moves = np.zeros((m, c, length), np.int8)
    for i in range(1, m):
        best = np.full((c, length), NEG, np.float32)
        how = np.zeros((c, length), np.int8)
        if i == 1:  # the first query note may be missing from the library line
            best = np.where(pad, NEG, -SKIP_QUERY).astype(np.float32)
            how[:] = -1
        for code, (di, dj, cost) in enumerate(_MOVES):
            if i - di < 0:
                continue
            if di == 2 and dj == 1 and q[i - 1] == q[i - 2]:
                cost = SKIP_REPEAT  # the skipped query note repeats the one before
            s = np.full((c, length), NEG, np.float32)
            s[:, dj:] = rows[i - di][:, :-dj] + interval_score(int(q[i] - q[i - di]),
                                                               lib_d[dj][:, dj:]) - cost
            take = s > best
            best = np.where(take, s, best)
            how = np.where(take, np.int8(code), how)
        best[pad] = NEG
        rows[i], moves[i] = best, how
        rows.pop(i - 2, None)  # a move goes back at most two query notes
    # The end: the last query note, or the one before it (a missing last note).
    last = rows[m - 1]
    skip_last = rows[m - 2] - SKIP_QUERY if m >= 2 else np.full_like(last, NEG)
    seg = np.arange(c)
    j_last, j_skip = last.argmax(1), skip_last.argmax(1)
    use_skip = skip_last[seg, j_skip] > last[seg, j_last]
    scores = np.where(use_skip, skip_last[seg, j_skip], last[seg, j_last]).astype(float)
    return (scores, np.where(use_skip, m - 2, m - 1), np.where(use_skip, j_skip, j_last),
            moves)


def _backtrack(moves: np.ndarray, i_cur: np.ndarray, j_cur: np.ndarray, m: int,
               feasible: np.ndarray) -> np.ndarray:
    """Follow every segment's moves back at once: int64 (C, m), the library position of
    each query note, −1 where the note is not aligned (every note of a segment that is
    not ``feasible``, bool (C,): its cells hold no path to follow)."""
    c = len(i_cur)
    seg = np.arange(c)
    pairs = np.full((c, m), -1, np.int64)
    pairs[seg[feasible], i_cur[feasible]] = j_cur[feasible]
    live = feasible.copy()
    step_di = np.array([mv[0] for mv in _MOVES])
    step_dj = np.array([mv[1] for mv in _MOVES])
    for _ in range(m):
        live &= i_cur > 0
        if not live.any():
            break
        code = moves[i_cur, seg, j_cur]
        live &= code >= 0
        di = np.where(live, step_di[np.maximum(code, 0)], 0)
        dj = np.where(live, step_dj[np.maximum(code, 0)], 0)
        i_cur, j_cur = i_cur - di, j_cur - dj
        pairs[seg[live], i_cur[live]] = j_cur[live]
    return pairs


def _summarise(q: np.ndarray, t: np.ndarray, scores: np.ndarray, pairs: np.ndarray
               ) -> list[Alignment]:
    """Each segment's :class:`Alignment` from its score and aligned pairs: the key shift,
    the register, the matched intervals and the aligned span."""
    c, m = pairs.shape
    seg = np.arange(c)
    aligned = pairs >= 0
    diffs = np.where(aligned, t[seg[:, None], np.maximum(pairs, 0)] - q[None, :], 0)
    # The key shift is the most common pitch difference up to octaves, in −6..+5.
    pc = np.zeros((c, 12), np.int64)
    np.add.at(pc, (np.repeat(seg, m)[aligned.ravel()], np.mod(diffs, 12)[aligned]), 1)
    shift = pc.argmax(1)
    shift = np.where(shift >= 6, shift - 12, shift)
    # ... and the offset the most common exact difference of that shift (its register).
    at_shift = aligned & (np.mod(diffs - shift[:, None], 12) == 0)
    by_diff = np.zeros((c, 512), np.int64)
    np.add.at(by_diff, (np.repeat(seg, m)[at_shift.ravel()], diffs[at_shift] + 256), 1)
    offset = np.where(aligned.any(1), by_diff.argmax(1) - 256, 0)
    # Matched intervals: aligned notes whose difference repeats the previous aligned
    # note's up to octaves.
    steps = np.arange(m)[None, :]
    before = np.maximum.accumulate(np.where(aligned, steps, -1), axis=1)
    before = np.concatenate([np.full((c, 1), -1), before[:, :-1]], axis=1)
    dm = np.mod(diffs, 12)
    ok = (aligned & (before >= 0) & (dm == dm[seg[:, None], np.maximum(before, 0)])).sum(1)
    first_i = aligned.argmax(1)
    last_i = m - 1 - aligned[:, ::-1].argmax(1)
    last_i = np.where(aligned.any(1), last_i, 0)
    return [Alignment(*x) for x in zip(scores.tolist(),
                                       np.maximum(pairs[seg, first_i], 0).tolist(),
                                       np.maximum(pairs[seg, last_i], 0).tolist(),
                                       shift.tolist(), ok.tolist(), offset.tolist(),
                                       first_i.tolist(), last_i.tolist())]
