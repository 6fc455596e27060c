"""The melody view in one import: a tune's notes, a piece's lines, their key-normalised
windows, the interval alignment and the pair-HMM likelihood.

Each job has a module of its own; this one gathers their public names for callers that
want the melody view as a whole:

* :mod:`~midizero_app.core.melody_lines` — the tune a query plays, whether a query is a
  tune (:func:`query_mode`), and a piece's lines (top line, without dips, score voices);
* :mod:`~midizero_app.core.melody_windows` — key-normalised windows of those lines, the
  melody view's index input (:func:`library_windows`);
* :mod:`~midizero_app.core.melody_align` — local alignment of pitch intervals, giving each
  candidate place its shift, register and notes;
* :mod:`~midizero_app.core.melody_rhythm` — the tempo-free rhythm model;
* :mod:`~midizero_app.core.melody_likelihood` — how likely a tune is at each place under a
  pair hidden Markov model of playing from memory, which ranks the pieces
  (:mod:`~midizero_app.core.melody_search`).
"""
from __future__ import annotations

from .melody_align import (INTERVAL_SHARE, MISS, NEAR, NEG, NO_INTERVAL, OCTAVE, SKIP_BOTH,
                           SKIP_LIB, SKIP_QUERY, SKIP_REPEAT, Alignment, align, exact_score,
                           interval_score)
from .melody_likelihood import likelihood, likelihoods, match_evidence
from .melody_lines import (DIP, FUSE_SHARE, LINE_SHARE, MAX_LINES, MIN_MELODY_NOTES,
                           MONO_SHARE, SPREAD_LEAP, SPREAD_S, TUNE_RANGE, Line, is_line,
                           is_monophonic, melody_lines, melody_share, query_mode, segment,
                           skyline, tune_notes, voice_lines)
from .melody_rhythm import MIN_IOI, RHYTHM_SD, Rhythm, place_tempo, rhythm_evidence
from .melody_windows import (CENTER, LINE_STRIDE, MELODY_VIEW_VERSION, library_windows,
                             melody_windows)

__all__ = [
    "INTERVAL_SHARE", "MISS", "NEAR", "NEG", "NO_INTERVAL", "OCTAVE", "SKIP_BOTH", "SKIP_LIB",
    "SKIP_QUERY", "SKIP_REPEAT", "Alignment", "align", "exact_score", "interval_score",
    "likelihood", "likelihoods", "match_evidence",
    "DIP", "FUSE_SHARE", "LINE_SHARE", "MAX_LINES", "MIN_MELODY_NOTES", "MONO_SHARE",
    "SPREAD_LEAP", "SPREAD_S", "TUNE_RANGE", "Line", "is_line", "is_monophonic",
    "melody_lines", "melody_share", "query_mode", "segment", "skyline", "tune_notes",
    "voice_lines",
    "MIN_IOI", "RHYTHM_SD", "Rhythm", "place_tempo", "rhythm_evidence",
    "CENTER", "LINE_STRIDE", "MELODY_VIEW_VERSION", "library_windows", "melody_windows",
]
