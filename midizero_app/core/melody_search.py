"""Melody queries: candidates from the melody view, ranked by how likely each piece makes the tune.

1. Candidates, from two sources: the query's top line → key-normalised windows (hop 1)
   → k nearest windows in the library's ``melody`` view → offset-consistent voting (as
   for full textures, :mod:`~midizero_app.core.melody_votes`); and
   :class:`~midizero_app.core.melody_grams.LineGrams`, exact runs of three intervals (up
   to octaves) voted by offset, each vote weighed by the run's rarity and the place's
   rhythm, which short tunes need (one padded window says little). Each gives its best
   pieces with their likely places (more of them for a tune of a few notes).
2. Around each place, :func:`~midizero_app.core.melody_align.align` aligns the query's
   intervals with the library line, forgiving slips: it gives the key shift, the register
   and the exact place.
3. :func:`~midizero_app.core.melody_likelihood.likelihoods` (a pair hidden Markov model of
   how people play a tune from memory: its notes, and its rhythm at a tempo of the
   player's own) says how likely the tune is at each place, summed over alignments; with
   every piece, each of its lines and each place of a line equally likely beforehand, a
   piece's likelihood (the average of its lines' mean place likelihood) ranks it.
4. Confidence: gradient-boosted trees over how well the best place fits on pitches
   (against a note-for-note match), the share of its intervals matched and its alignment
   score, the lead over the best *different* piece and over the runner-up, the
   runner-up's fit, the share of rhythm in the tune's evidence, the share of it the best
   place keeps and the query length (:mod:`~midizero_app.core.melody_confidence`, fitted by
   ``python -m scripts.fit_melody_confidence`` on held-out pieces).
"""
from __future__ import annotations

import numpy as np

from .frames import Frames
from .melody_align import align
from .melody_confidence import TreeConfidence, confidence_features, default
from .melody_grams import LineGrams
from .melody_likelihood import likelihoods, match_evidence
from .melody_lines import MAX_LINES, tune_notes
from .melody_rhythm import Rhythm, place_tempo, rhythm_evidence
from .melody_votes import PLACES, PLACES_TINY, TINY_TUNE, voted_places
from .melody_windows import LINE_STRIDE, melody_windows
from .search import Candidate, run_ends
from .windows import QUERY_HOP

__all__ = ["LineGrams", "PLACES", "PLACES_TINY", "TINY_TUNE", "search_melody",
           "tune_evidence", "score_melody", "verdict"]

MELODY_K = 20      # nearest melody windows per query window
N_VERIFY = 40      # pieces (learned candidates) whose places are aligned
# Pieces (interval-gram candidates) whose places are aligned: the shorter the tune, the
# more, as its few grams rank the right piece low among common figures (remembered 8 notes:
# 150 → 400 +6 points with the likelihood ranking; with weighed votes 400 → 800 +2.3
# points, 0.740 → 0.763, at 67 → 108 ms a query; 16 notes: 150 and 400 alike). A longer
# line's grams rank it high, and aligning more would cost a 10 s played line 100 ms more
# for nothing (benchmarks/RESULTS.md).
N_GRAM_VERIFY, N_GRAM_VERIFY_SHORT, N_GRAM_VERIFY_SHORTEST = 20, 150, 800
SHORT_TUNE, SHORTEST_TUNE = 24, 14  # notes
SOURCES = ("learned", "grams")
# A match off a piece's top line (its line without dips, or a voice) scores this much less,
# so that where two pieces hold a tune note for note, the one whose melody it is comes
# first: tunes are mostly top lines. Exact themes, random key (1,000 a cell): 8 notes
# 0.850 → 0.855, 12 notes 0.964 → 0.970; remembered 8 / 12 +0.3 points
# (benchmarks/RESULTS.md).
OFF_TOP_LINE = 1e-3
_TINY = float(np.nextafter(0.0, 1.0))  # a place's likelihood that underflowed to 0 logs as this
# Library notes around a place: a segment starts this many before the voted position and
# holds twice the tune and this much more on both sides together (a tune note may sit
# among accompaniment notes in line 0).
SEGMENT_LEAD, SEGMENT_EXTRA = 8, 16

# A flag on a short tune also falls on right answers: with 20 % of the pieces held out, it
# fell on 4 % / 17 % of the right answers to 8 exact / remembered notes, 0 % / 5 % at 12,
# and ≤ 0.7 % from 16 notes on, while it fell on 93–98 % of strangers' tunes at every length
# (benchmarks/RESULTS.md). So a flagged tune shorter than this reads "not sure yet".
SURE_FROM = 16  # notes


def verdict(not_in_library: bool, mode: str, tune_notes: int) -> str:
    """How a user should read an answer: ``"found"``, ``"not_in_library"``, or ``"unsure"``
    — flagged, but a tune (``mode`` ``"melody"`` or ``"fused"``) of fewer than
    :data:`SURE_FROM` notes, where more of the tune would settle it."""
    if not not_in_library:
        return "found"
    return "unsure" if mode != "texture" and tune_notes < SURE_FROM else "not_in_library"


def search_melody(lib, frames: Frames, top: int = 10, any_key: bool = True,
                  k: int = MELODY_K, n_verify: int = N_VERIFY,
                  sources: tuple[str, ...] = SOURCES) -> tuple[list[Candidate], bool]:
    """Rank library pieces for a melody query and say how sure the ranking is.

    Parameters
    ----------
    lib : the :class:`~midizero_app.core.library.Library`.
    frames : the query's frames; only each frame's top note is used, less the notes of
        spread chords (:func:`~midizero_app.core.melody_lines.tune_notes`); their times give
        the rhythm.
    any_key : accept the tune in any key (else it is heard in the key it is played in).
    sources : candidate sources, ``"learned"`` and/or ``"grams"`` (for ablations).

    Returns
    -------
    candidates : best first; ``score`` is the natural log of the tune's likelihood in
        the piece (the average over its lines of the mean over their places, relative
        to a note-for-note match), ``support`` 1 + the best place's log
        likelihood / the tune's match evidence (1 note for note), ``transpose`` the
        semitones added to the query to reach the library, ``positions[0]["offset"]``
        the library frame of the query's first note (each position's ``score``: its
        interval alignment score); ``margin`` and ``confidence`` filled by
        :func:`score_melody`.
    not_in_library : True when the best candidate is not confident.
    """
    line, onsets, match, rhythm = tune_evidence(frames)
    cands = _line_candidates(lib, line, onsets, match, top, any_key, k, n_verify, sources)
    return cands, score_melody(cands, len(line), match, rhythm)


MAX_TUNE_NOTES = 400


def tune_evidence(frames: Frames) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The tune a query holds and what finding it can tell: its pitches (int64 (m,)) and
    onsets (seconds, (m,)) (:func:`~midizero_app.core.melody_lines.tune_notes`), and the nats a
    note-for-note match and a kept rhythm are worth
    (:func:`~midizero_app.core.melody_likelihood.match_evidence`,
    :func:`~midizero_app.core.melody_rhythm.rhythm_evidence`): the units of
    :func:`score_melody`."""
    line, onsets = tune_notes(frames)
    # A tune is searched by its first MAX_TUNE_NOTES notes: a whole movement read as a "tune"
    # would make millions of n-gram hits and a quadratic alignment, and says no more.
    line, onsets = line[:MAX_TUNE_NOTES], onsets[:MAX_TUNE_NOTES]
    return line, onsets, match_evidence(line), rhythm_evidence(onsets)


def _line_candidates(lib, line: np.ndarray, onsets: np.ndarray, best: float, top: int,
                     any_key: bool, k: int, n_verify: int, sources: tuple[str, ...]
                     ) -> list[Candidate]:
    """:func:`search_melody`'s ranking of a tune (int64 (m,) pitches, their onsets float64
    (m,) seconds; ``best`` its :func:`~midizero_app.core.melody_likelihood.match_evidence`),
    without confidences."""
    m = len(line)
    if m < 2:
        return []
    grams = LineGrams.of(lib)
    owner, pos = _candidate_places(lib, grams, line, onsets, k, n_verify, sources)
    if not len(owner):
        return []
    segs, seg_frames, seg_onsets = grams.segments(owner, pos - SEGMENT_LEAD,
                                                  2 * m + SEGMENT_EXTRA)
    aligned = align(line, segs)
    offsets = np.array([a.offset if any_key else 12 * round(a.offset / 12) for a in aligned])
    # Ranked with the rhythm; the best place's fit on pitches alone says how sure that is
    # (rhythm evidence is strong only where rhythms differ: among even-note chorales any
    # place keeps a tune's rhythm, so it would make a stranger's chorale theme look found).
    rhythm = Rhythm(onsets, seg_onsets, place_tempo(aligned, onsets, seg_onsets))
    pitch_fit, fit = likelihoods(line, segs, offsets, rhythm)
    top_line = np.where(owner % MAX_LINES > 0, 1.0 - OFF_TOP_LINE, 1.0)[:, None]
    ranked = _rank_pieces(grams, owner, seg_frames, pitch_fit * top_line, fit * top_line)
    if ranked is None:  # no place makes the tune likelier than zero (in float64)
        return []
    pieces, score, best_place, place_rhythm = ranked
    order = np.argsort(-score, kind="stable")[:top + 2]
    # The alignments give the shown pieces their places and shift.
    shown = np.isin(owner // MAX_LINES, pieces[order])
    hits: dict[int, list] = {}
    for ci in np.flatnonzero(shown):
        a, pseudo = aligned[ci], int(owner[ci])
        sc = a.score if (any_key or a.transpose == 0) else a.score - m
        if pseudo % MAX_LINES:
            sc -= OFF_TOP_LINE
        hits.setdefault(pseudo // MAX_LINES, []).append(
            (sc, int(seg_frames[ci, a.start]), int(seg_frames[ci, a.end]), a))
    return [_candidate(int(pieces[i]), hits[int(pieces[i])], m, best, float(score[i]),
                       float(np.log(max(best_place[i], _TINY))), float(place_rhythm[i]))
            for i in order]


def _candidate_places(lib, grams: LineGrams, line: np.ndarray, onsets: np.ndarray, k: int,
                      n_verify: int, sources: tuple[str, ...]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The places to align a tune (int64 (m,) pitches, onsets (m,) seconds) at, from the
    learned melody view and the interval grams: pseudo pieces (piece · MAX_LINES + line)
    and line positions of the tune's first note, int64 (C,) each."""
    m = len(line)
    n_places = PLACES_TINY if m <= TINY_TUNE else PLACES
    places: dict[int, set[int]] = {}  # pseudo piece → positions
    if "learned" in sources:
        emb_model = lib.embedder
        wins, starts, _ = melody_windows(line, QUERY_HOP, emb_model.win_length)
        labels, sims = lib.knn(emb_model.embed(wins), k, view="melody")
        lp, lf = _line_maps(*lib.view_maps("melody"))
        for pseudo, where in voted_places(starts, labels, sims, lp, lf, n_verify, n_places):
            places.setdefault(pseudo, set()).update(where)
    if "grams" in sources:
        n_gram = (N_GRAM_VERIFY_SHORTEST if m <= SHORTEST_TUNE else
                  N_GRAM_VERIFY_SHORT if m <= SHORT_TUNE else N_GRAM_VERIFY)
        for pseudo, pos in grams.vote(line, n_gram, onsets, places=n_places):
            places.setdefault(pseudo, set()).update(pos)
    owner = np.array([p for p, where in places.items() for _ in where], np.int64)
    pos = np.array([x for where in places.values() for x in where], np.int64)
    known = np.isin(owner, grams.pseudos)  # a piece added since the grams were built:
    return owner[known], pos[known]         # the next query sees it


def _rank_pieces(grams: LineGrams, owner: np.ndarray, seg_frames: np.ndarray,
                 pitch_fit: np.ndarray, fit: np.ndarray):
    """Each candidate piece's likelihood from its places' (Bayes with every piece equally
    likely, then each of its lines, then each place of the line): a line sums its places
    (overlapping segments: each end frame's best), divided by its length, and a piece
    averages its lines (lines not among the candidates add about nothing).

    ``owner`` int64 (C,) each segment's pseudo piece, ``seg_frames`` int64 (C, L) its
    library frames (−1 outside the line), ``pitch_fit`` / ``fit`` float64 (C, L) the
    likelihood at each place on pitches alone / with the rhythm. Returns pieces int64 (P,),
    their log likelihoods (P,), their best place's likelihood on pitches (P,) and what the
    rhythm makes of that place (log ratio, nats, (P,)); None where no place has a
    likelihood above zero."""
    keep = (seg_frames >= 0) & (fit > 0)
    if not keep.any():
        return None
    line_of = np.broadcast_to(owner[:, None], fit.shape)[keep]
    keys, inv = np.unique(line_of * (1 << 32) + seg_frames[keep], return_inverse=True)
    per_place, pitch_place = np.zeros(len(keys)), np.zeros(len(keys))
    np.maximum.at(per_place, inv, fit[keep])
    np.maximum.at(pitch_place, inv, pitch_fit[keep])
    pseudos, first_key = np.unique(keys >> 32, return_index=True)
    line_fit = np.add.reduceat(per_place, first_key) / grams.length_of(pseudos)
    best_in_line = np.maximum.reduceat(pitch_place, first_key)
    pieces, line_piece = np.unique(pseudos // MAX_LINES, return_inverse=True)
    summed = np.bincount(line_piece, weights=line_fit) / grams.lines_of(pieces)
    best_place = np.zeros(len(pieces))
    np.maximum.at(best_place, line_piece, best_in_line)
    # What the rhythm makes of each piece's best place on pitches (log ratio, nats).
    key_piece = line_piece[np.searchsorted(pseudos, keys >> 32)]
    by = np.lexsort((pitch_place, key_piece))
    best_key = by[run_ends(key_piece[by])]
    with_rhythm, on_pitches = per_place[best_key], np.maximum(pitch_place[best_key], 1e-300)
    with np.errstate(over="ignore"):
        ratio = with_rhythm / on_pitches
    fits = np.isfinite(ratio)  # else a ratio past float64: its log taken in parts
    place_rhythm = np.where(fits, np.log(np.where(fits, ratio, 1.0)),
                            np.log(with_rhythm) - np.log(on_pitches))
    # A place's likelihood below the smallest float (a subnormal over a long line) logs as
    # that smallest float, not as −∞.
    return pieces, np.log(np.maximum(summed, _TINY)), best_place, place_rhythm


_MAPS_CACHE: dict = {}


def _line_maps(label_piece: np.ndarray, label_frame: np.ndarray):
    """Label maps in (piece · MAX_LINES + line, position in line) form, cached per map
    arrays."""
    key = (id(label_piece), len(label_piece), id(label_frame))
    if key not in _MAPS_CACHE:
        _MAPS_CACHE.clear()
        lines = label_frame // LINE_STRIDE
        pseudo = np.where(label_piece >= 0, label_piece * MAX_LINES + lines, -1)
        _MAPS_CACHE[key] = (pseudo, label_frame % LINE_STRIDE)
    return _MAPS_CACHE[key]


def _candidate(piece: int, hits: list, m: int, best: float, score: float, place: float,
               rhythm: float) -> Candidate:
    """A piece's candidate: ``score`` ranks it (its log likelihood), ``place`` is the log
    likelihood of its best place on pitches and ``rhythm`` what the tune's rhythm adds to
    it (nats), ``hits`` its alignments (score, first frame, last frame, Alignment) for the
    places and the shift; ``best``: the tune's
    :func:`~midizero_app.core.melody_likelihood.match_evidence`."""
    n_int = m - 1
    # Best first; an exact repeat of the passage ties, and the earlier place leads.
    hits.sort(key=lambda x: (-x[0], x[1]))
    top_score, _, _, a = hits[0]
    positions: list[dict] = []
    for sc, first, last, al in hits:
        if sc < top_score - 1.0 or any(abs(first - p["offset"]) <= 8 for p in positions):
            continue
        slope = max((last - first) / max(n_int, 1), 0.5)
        positions.append({"offset": float(first), "slope": float(slope), "center": float(first),
                          "score": sc, "support": 1.0 + place / best, "windows": al.matched})
    return Candidate(piece, score, 1.0 + place / best, a.matched / n_int, positions[:3],
                     transpose=a.transpose, rhythm=rhythm)


def score_melody(cands: list[Candidate], n_notes: int, match: float, rhythm: float,
                 model: TreeConfidence | None = None) -> bool:
    """Fill ``margin`` and ``confidence`` of the candidates of a tune of ``n_notes`` notes
    whose note-for-note match is worth ``match`` nats and whose rhythm at most ``rhythm``
    (:func:`~midizero_app.core.melody_likelihood.match_evidence`,
    :func:`~midizero_app.core.melody_rhythm.rhythm_evidence`); returns ``not_in_library``.

    The margin is the winner's lead over the best *different* piece, in units of
    ``match + rhythm`` (at most 1): one that scores within 2 % of that of the winner is
    taken as another edition of the same music and skipped, as for textures; with none,
    the lead over a score of −(match + rhythm), a tune no likelier than any. The
    confidence is ``model``'s (the bundled
    :class:`~midizero_app.core.melody_confidence.TreeConfidence` by default); a
    runner-up's comes from its own fit and its lead over the next (margin 0), at most the
    winner's. A winner whose best place explains the tune no better than any tune
    (support ≤ 0) is not confident whatever its lead: in a small library every answer
    leads, and no right answer among 6,700 held-out-split themes had support ≤ 0.
    """
    if not cands:
        return True
    if model is None:
        model = default()
    best = match + rhythm
    top = cands[0]
    # With no different piece among the candidates (a library of one piece), the rival is
    # any tune: a place that explains the tune no better than chance.
    rival = max((c.score for c in cands[1:] if top.score - c.score > 0.02 * best),
                default=-best)
    for i, c in enumerate(cands):
        c.margin = min((c.score - rival) / best, 1.0) if c is top else 0.0
        c.confidence = 0.0 if top.support <= 0 else model.confidence(
            confidence_features(cands[i:], n_notes, match, rhythm), n_notes)
        c.confidence = min(c.confidence, top.confidence) if c is not top else c.confidence
    return top.confidence < 0.5  # the model's boundary
