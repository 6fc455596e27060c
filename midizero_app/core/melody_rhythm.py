"""The rhythm model of a tune played from memory: tempo-free, in log inter-onset intervals.

A tune is played at a tempo of its own, so each inter-onset interval (IOI) is compared
with the library's times the place's tempo (the aligned span's duration ratio), in log
units. A player who keeps the rhythm is off by about :data:`RHYTHM_SD` (±28 %), a note now
and then by anything (:data:`RHYTHM_SLIP`). That is weighed against how the tune's rhythm
would come about anyway (:func:`rhythm_null`): most notes last as long as the one before
(57 % of the music21 corpus's top-line IOIs; the others spread about ±1 in log units), and
a player who does not know the rhythm plays even notes. So even notes say little, a dotted
or syncopated figure a lot, and a place whose rhythm contradicts the tune's loses. Not
every player keeps the rhythm, so the rhythm reading counts for :data:`RHYTHM_SHARE` of
the likelihood (:func:`~midizero_app.core.melody_likelihood.likelihoods`) and the
pitch-only reading for the rest: a tune in a rhythm of its own loses at most a factor 2
anywhere. Round values, not fitted (benchmarks/RESULTS.md, melody).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .melody_align import Alignment

RHYTHM_SHARE, RHYTHM_SD, RHYTHM_SLIP = 0.5, 0.25, 0.1
EVEN_SHARE, EVEN_SD, UNEVEN_SD = 0.57, 0.15, 1.0
MIN_IOI = 1e-3  # seconds: onsets closer than this count as this close
MIN_DENSITY = 1e-300


def normal(x, sd: float) -> np.ndarray:
    """The normal density with standard deviation ``sd`` at ``x`` (any shape)."""
    return np.exp(-0.5 * (np.asarray(x) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def rhythm_null(onsets: np.ndarray) -> np.ndarray:
    """Density of each query IOI's log ratio to the one before when nothing is known of
    the piece, for onsets float (m,) seconds: float64 (m,), [0] unused. The first IOI has
    none before it and is taken as a repeat (the least evidence), not as its ratio to the
    next, which the second IOI already counts."""
    ioi = np.log(np.maximum(np.diff(np.asarray(onsets, np.float64)), MIN_IOI))
    r = np.zeros(len(ioi))
    r[1:] = np.diff(ioi)
    with np.errstate(under="ignore"):
        dens = EVEN_SHARE * normal(r, EVEN_SD) + (1 - EVEN_SHARE) * normal(r, UNEVEN_SD)
    # at least 1e-300: only a ratio of IOIs beyond e^37 comes near it, and no density is 0
    return np.concatenate([[1.0], np.maximum(dens, MIN_DENSITY)])


def kept_over_null(onsets: np.ndarray) -> np.ndarray:
    """Most each query IOI's kept-rhythm density can exceed its null (:func:`rhythm_null`),
    without the slip term, for onsets float (m,) seconds: float64 (m,), [0] unused."""
    return (1 - RHYTHM_SLIP) * normal(0.0, RHYTHM_SD) / rhythm_null(onsets)


def rhythm_evidence(onsets: np.ndarray) -> float:
    """Natural log of the most a tune with these onsets (float (m,) seconds) gains in
    :func:`~midizero_app.core.melody_likelihood.likelihood` by keeping a place's rhythm
    exactly: about 0 for even notes, more the more distinctive the rhythm."""
    if len(onsets) < 2:
        return 0.0
    peak = kept_over_null(onsets)[1:] + RHYTHM_SLIP
    return float(np.logaddexp(np.log(1 - RHYTHM_SHARE),  # in logs: no overflow
                              np.log(RHYTHM_SHARE) + np.log(np.maximum(peak, 1.0)).sum()))


class Rhythm(NamedTuple):
    """Note times for :func:`~midizero_app.core.melody_likelihood.likelihoods`: the
    query's and each segment's, and the tempo."""

    query: np.ndarray     # float (m,), seconds of the query's notes, increasing
    segments: np.ndarray  # float (C, L), seconds of the segments' notes (any at padding)
    tempo: np.ndarray     # float (C,), query seconds per library second at each place;
    # ≤ 0 or not finite where unknown (that place is ranked on pitches alone)


def place_tempo(alignments: list[Alignment], query_onsets: np.ndarray,
                segment_onsets: np.ndarray) -> np.ndarray:
    """Query seconds per library second of each aligned place: float64 (C,), the span
    from the first to the last aligned note in the query (``query_onsets`` float (m,)
    seconds) over that in the segment (``segment_onsets`` float (C, L) seconds); 0 where
    the span is a single note or not a finite ratio."""
    q = np.asarray(query_onsets, np.float64)
    first, last, start, end = np.array([(a.first, a.last, a.start, a.end) for a in alignments],
                                       np.int64).reshape(-1, 4).T  # one pass, not four
    rows = np.arange(len(alignments))
    lib = segment_onsets[rows, end] - segment_onsets[rows, start]
    with np.errstate(divide="ignore", invalid="ignore"):
        tempo = np.where(lib > 0, (q[last] - q[first]) / np.where(lib > 0, lib, 1.0), 0.0)
    return np.where((last > first) & np.isfinite(tempo), tempo, 0.0)
