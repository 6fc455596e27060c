"""How likely a tune is at each place of a library line: a pair hidden Markov model of
playing from memory, summed over every alignment.

How a tune played from memory relates to the score's line, per note (the query-by-humming
error models of Meek & Birmingham, Pardo et al.): a query note is the library note at the
tune's shift (0.88), an octave off (0.04), a wrong key within 3 semitones (0.01 each) or
anything else (0.02 over 80 keys); after it comes the next library note, or one or two are
left out (0.05, 0.01), or the player adds a note (0.06): a repeat (0.4), a neighbour
within 2 semitones (0.1 each of 4) or any other (0.2 over 25). Round rates, not fitted to
the benchmarks. Summed over alignments and places, this ranks remembered 8-note themes far
better than the best single alignment does (benchmarks/RESULTS.md, melody). With the
notes' times it also weighs the rhythm (:mod:`~midizero_app.core.melody_rhythm`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .melody_align import INTERVAL_SHARE
from .melody_rhythm import MIN_IOI, RHYTHM_SD, RHYTHM_SHARE, RHYTHM_SLIP, Rhythm, kept_over_null

P_EXACT, P_OCTAVE, P_NEAR, P_OTHER = 0.88, 0.04, 0.01, 0.02 / 80
T_SKIP1, T_SKIP2, T_ADD = 0.05, 0.01, 0.06
T_NEXT = 1.0 - T_SKIP1 - T_SKIP2 - T_ADD
# P(query note | library note), by |difference| in semitones (0..255), relative to an exact
# note: with the next-note step as 1, a note-for-note match keeps 1. float64 (256,).
EMIT = np.full(256, P_OTHER)
EMIT[:4] = P_NEAR
EMIT[0] = P_EXACT
EMIT[[12, 24]] = P_OCTAVE
EMIT = EMIT / P_EXACT
# A likelihood ratio beyond this (a long tune in a rhythm no piece could make likelier,
# times from a caller rather than a reader) is taken as this, and one that is not a number
# as 0: every value :func:`likelihoods` returns is finite. Real tunes stay far below it.
HUGE = 1e250
_F32_MAX = float(np.finfo(np.float32).max)


def added_note(q: np.ndarray, i: int) -> float:
    """P(query note i of ``q`` (int (m,) pitches) is one the player added | its
    neighbours), scaled as :data:`EMIT`."""
    near = [abs(int(q[i]) - int(q[k])) for k in (i - 1, i + 1) if 0 <= k < len(q)]
    p = 0.4 if 0 in near else 0.1 if min(near, default=99) <= 2 else 0.2 / 25
    return p * T_ADD / (P_EXACT * T_NEXT)


def match_evidence(line: np.ndarray) -> float:
    """Natural log of how much likelier a tune (``line``, int (m,) MIDI pitches) is under
    :func:`likelihood` when a library line holds it note for note than as any tune (each
    interval at its share among tunes): the unit in which a melody search's scores are
    compared (≥ 1e-6)."""
    d = np.clip(np.diff(np.asarray(line, np.int64)), -12, 12)
    return max(float(np.log(P_EXACT * T_NEXT / INTERVAL_SHARE[d + 12]).sum()), 1e-6)


def likelihood(query: np.ndarray, segments: np.ndarray, offsets: np.ndarray,
               rhythm: Rhythm | None = None) -> np.ndarray:
    """How well a tune fits each place of library segments: float64 (C, L), the second of
    :func:`likelihoods` (with the rhythm where it is given)."""
    return likelihoods(query, segments, offsets, rhythm)[1]


def likelihoods(query: np.ndarray, segments: np.ndarray, offsets: np.ndarray,
                rhythm: Rhythm | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How well a tune fits each place of library segments, on its pitches alone and
    with its rhythm: pair-HMM forward passes.

    Parameters
    ----------
    query : int (m,), the tune's MIDI pitches, m ≥ 1.
    segments : int (C, L), library line segments (MIDI pitches); pitches < 0 are padding.
    offsets : int (C,), semitones added to the query to reach each segment (the tune's
        key and register there, e.g. :attr:`~midizero_app.core.melody_align.Alignment.offset`).
    rhythm : the notes' times (:class:`~midizero_app.core.melody_rhythm.Rhythm`); without
        them, pitches alone.

    Returns
    -------
    pitches : float64 (C, L), P(query | it ends at position j), summed over where it
        starts and over every alignment, relative to a note-for-note match (which scores
        1; a slip about 0.01-0.05, a note that fits nothing 3e-4).
    with_rhythm : float64 (C, L), that times the rhythm's likelihood ratio
        (:data:`~midizero_app.core.melody_rhythm.RHYTHM_SHARE` · ratio + the rest): a tune
        in the place's own rhythm up to
        :func:`~midizero_app.core.melody_rhythm.rhythm_evidence` more, one in another
        rhythm down to half; ``pitches`` itself without ``rhythm`` or where the place's
        tempo is unknown.
    """
    q = np.asarray(query, np.int64)
    t = np.asarray(segments, np.int64)
    shifted = np.asarray(offsets, np.int64)[:, None] - t  # the query's pitch is added per note
    inside = t >= 0

    def emission(i: int) -> np.ndarray:
        """P(query note i | library note j) of every segment: float64 (C, L), 0 at padding."""
        return np.where(inside, EMIT[np.minimum(np.abs(q[i] + shifted), 255)], 0.0)

    ratio = None if rhythm is None or len(q) < 2 else _rhythm_ratio(rhythm)
    if ratio is None:
        plain = _finite(forward(q, emission))
        return plain, plain
    known, ratio = ratio
    plain, with_rhythm = forward(q, emission, ratio)
    with np.errstate(over="ignore", invalid="ignore"):
        mixed = (1 - RHYTHM_SHARE) * plain + RHYTHM_SHARE * with_rhythm
    plain = _finite(plain)
    return plain, _finite(np.where(known[:, None], mixed, plain))


def _finite(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN as 0 and anything above :data:`HUGE` as :data:`HUGE` (the same array
    where every value is finite and below it, as for every real tune)."""
    if np.isfinite(x).all() and not (x > HUGE).any():
        return x
    return np.minimum(np.nan_to_num(x, nan=0.0, posinf=HUGE), HUGE)


def _rhythm_ratio(rhythm: Rhythm):
    """``(known, ratio)`` for :func:`forward` (``known``: bool (C,), the places whose tempo
    is known), or None where no place's tempo is known."""
    tempo = np.asarray(rhythm.tempo, np.float64)
    known = np.isfinite(tempo) & (tempo > 0)
    if not known.any():
        return None
    ts = np.asarray(rhythm.segments, np.float64)
    log_tempo = np.log(np.where(known, tempo, 1.0))[:, None]
    unit = RHYTHM_SD * np.sqrt(2.0)  # log IOIs in these units: the kernel is exp(−x²)
    lib_ioi = {}  # k: log(tempo · (t[j] − t[j − k])) / unit at [:, k:], float32 for speed
    for k in (1, 2, 3):
        d = np.maximum(np.nan_to_num(ts[:, k:] - ts[:, :-k]), MIN_IOI)
        lib_ioi[k] = ((np.log(d) + log_tempo) / unit).astype(np.float32)
    tq = np.asarray(rhythm.query, np.float64)
    peak = kept_over_null(tq)

    def ratio(i: int, k: int, back: int) -> np.ndarray:
        """Kept rhythm over the null for query IOI i (from note i − back) against the
        library's over k notes: ≈ 1 for even notes that agree, more for a distinctive
        figure, ≈ 0.1 for one the place contradicts. float32 (C, L − k)."""
        x = lib_ioi[k] - np.float32(np.log(max(tq[i] - tq[i - back], MIN_IOI)) / unit)
        np.square(x, out=x)
        np.negative(x, out=x)
        np.exp(x, out=x)
        return x * np.float32(min(peak[i], _F32_MAX)) + np.float32(RHYTHM_SLIP)

    return known, ratio


RatioFn = Callable[[int, int, int], np.ndarray]


def forward(q: np.ndarray, emission: Callable[[int], np.ndarray], ratio: RatioFn | None = None):
    """:func:`likelihoods`' forward pass over the query ``q`` (int (m,) pitches).

    ``emission(i)`` gives P(query note i | library note j), float64 (C, L), one query note
    at a time (the whole (C, m, L) table of a long tune would take gigabytes).
    ``ratio(i, k, back)`` (optional) weighs the step to query note i from library note
    j − k and query note i − back (2 after an added note): float (C, L − k) for [:, k:].

    Returns float64 (C, L) without ``ratio``; with it, the pass without and the pass with
    it, each (C, L), sharing the emissions.
    """
    e = emission(0)
    c, length = e.shape
    plain = (e.copy(), np.zeros((c, length)))  # (query note i played as library note j,
    timed = (e.copy(), np.zeros((c, length))) if ratio is not None else None  # added after)
    # Underflow is a place that does not fit; overflow and inf · 0 only come of times no
    # reader makes, and likelihoods() makes them finite.
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        for i in range(1, len(q)):
            e, add = emission(i), added_note(q, i)
            plain = _step(*plain, i, e, add, None)
            if timed is not None:
                timed = _step(*timed, i, e, add, ratio)
    if timed is None:
        return plain[0] + plain[1]
    return plain[0] + plain[1], timed[0] + timed[1]


def _step(f: np.ndarray, g: np.ndarray, i: int, e: np.ndarray, add: float,
          ratio: RatioFn | None) -> tuple[np.ndarray, np.ndarray]:
    """One query note further: ``f`` (query note i − 1 played as library note j) and ``g``
    (query note i − 1 added after library note j), float64 (C, L) each, → the same for
    note i, whose emissions are ``e`` and whose chance of being added is ``add``."""
    c, length = f.shape
    nf = np.zeros((c, length))
    for k, p in enumerate((T_NEXT, T_SKIP1, T_SKIP2), 1):
        if ratio is None:
            step = f[:, :-k] + g[:, :-k]
        else:
            step = f[:, :-k] * ratio(i, k, 1)
            if i >= 2:
                step += g[:, :-k] * ratio(i, k, 2)
        nf[:, k:] += step * (p / T_NEXT)
    return nf * e, f * add
