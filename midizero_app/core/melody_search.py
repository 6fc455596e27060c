"""Melody queries: learned candidates from the melody view, verified by interval alignment.

1. Candidates, from two sources: the query's top line → key-normalised windows (hop 1)
   → k nearest windows in the library's ``melody`` view → offset-consistent voting (as
   for full textures); and :class:`LineGrams`, exact runs of three intervals (up to
   octaves) voted by offset, which short exact tunes need (one padded window says
   little). Each gives its best pieces with their likely places.
2. Around each place, :func:`melody.align` aligns the query's intervals with the library's
   top line, forgiving slips; its score ranks the pieces, and it gives the key shift and
   the exact place.
3. Confidence: a logistic over the share of the tune's best possible score that the
   best place holds, the margin to the best *different* piece (same unit) and the
   query length (:data:`MELODY_CALIBRATION`, fitted by ``benchmarks/melody_bench.py
   --calibrate`` on held-out pieces).
"""
from __future__ import annotations

import numpy as np

from .frames import Frames
from .melody import (LINE_STRIDE, MAX_LINES, align, best_score, melody_lines, melody_windows,
                     segment, tune_line)
from .search import DEFAULT_BIN, Calibration, Candidate, _best_per_window_sums, features
from .windows import QUERY_HOP

MELODY_K = 20      # nearest melody windows per query window
N_VERIFY = 40      # pieces (learned candidates) whose places are aligned
N_GRAM_VERIFY = 20  # pieces (interval-gram candidates) whose places are aligned ...
N_GRAM_VERIFY_SHORT = 150  # ... for a short tune, whose few grams rank the right piece
SHORT_TUNE = 24     # low among common figures (8-16-note themes: +2-4 points at 5-15 ms
# more); a longer line's grams rank it high, and aligning more would cost a 10 s played
# line 100 ms more for nothing (benchmarks/RESULTS.md)
SOURCES = ("learned", "grams")
# A match off a piece's top line (its line without dips, or a voice) scores this much less,
# so that where two pieces hold a tune note for note, the one whose melody it is comes
# first: tunes are mostly top lines. Exact themes, random key (1,000 a cell): 8 notes
# 0.850 → 0.855, 12 notes 0.964 → 0.970; remembered 8 / 12 +0.3 points (RESULTS.md).
OFF_TOP_LINE = 1e-3
# Fitted by `benchmarks/melody_bench.py --calibrate` (themes of 8-24 notes, exact and
# remembered, any key, from a dev split of held-out pieces; ASAP scores + music21 corpus
# library; benchmarks/RESULTS.md): support = alignment score / the tune's best possible
# score, margin = lead over the best different piece in the same unit, log notes. The
# thresholds (per number of notes) are the lowest that reject ≥ 92 % of the dev split's
# held-out themes at each length: an 8-note theme matches some other piece note for note
# so often that it needs more.
MELODY_CALIBRATION = Calibration(w_support=10.42, w_margin=4.653, w_agree=0.0,
                                 w_log_windows=2.262, bias=-15.077,
                                 thresholds=((8, 0.63), (12, 0.54), (16, 0.5), (24, 0.5)))


def search_melody(lib, frames: Frames, top: int = 10, any_key: bool = True,
                  k: int = MELODY_K, n_verify: int = N_VERIFY,
                  sources: tuple[str, ...] = SOURCES) -> tuple[list[Candidate], bool]:
    """Rank library pieces for a melody query and say how sure the ranking is.

    Parameters
    ----------
    lib : the :class:`~midizero_app.core.library.Library`.
    frames : the query's frames; only each frame's top note is used, less the notes of
        spread chords (:func:`~midizero_app.core.melody.tune_line`).
    any_key : accept the tune in any key (else only alignments with shift 0 count).
    sources : candidate sources, ``"learned"`` and/or ``"grams"`` (for ablations).

    Returns
    -------
    candidates : best first; ``score`` is the alignment score (about 1 per matched
        interval of the tune searched, more for rare leaps), ``transpose`` the semitones
        added to the query to reach the library, ``positions[0]["offset"]`` the library
        frame of the query's first note;
        ``margin`` and ``confidence`` filled by :func:`score_melody`.
    not_in_library : True when the best candidate is not confident.
    """
    line = tune_line(frames)
    best = best_score(line)
    cands = _line_candidates(lib, line, best, top, any_key, k, n_verify, sources)
    return cands, score_melody(cands, len(line), best)


def _line_candidates(lib, line: np.ndarray, best: float, top: int, any_key: bool, k: int,
                     n_verify: int, sources: tuple[str, ...]) -> list[Candidate]:
    """:func:`search_melody`'s ranking of a tune (int64 pitches; ``best`` its
    :func:`~midizero_app.core.melody.best_score`), without confidences."""
    m = len(line)
    if m < 2:
        return []
    grams = LineGrams.of(lib)
    places: dict[int, set[int]] = {}  # pseudo piece (piece · MAX_LINES + line) → positions
    if "learned" in sources:
        emb_model = lib.embedder
        wins, starts, _ = melody_windows(line, QUERY_HOP, emb_model.win_length)
        labels, sims = lib.knn(emb_model.embed(wins), k, view="melody")
        lp, lf = _line_maps(*lib.view_maps("melody"))
        for pseudo, where in _voted_places(starts, labels, sims, lp, lf, n_verify):
            places.setdefault(pseudo, set()).update(where)
    if "grams" in sources:
        n_gram = N_GRAM_VERIFY_SHORT if m <= SHORT_TUNE else N_GRAM_VERIFY
        for pseudo, pos in grams.vote(line, n_gram):
            places.setdefault(pseudo, set()).update(pos)
    if not places:
        return []
    seg_len = 2 * m + 16  # a tune note may sit among accompaniment notes in line 0
    lines = {pseudo: grams.lines[pseudo] for pseudo in places if pseudo in grams.lines}
    segs, owner, seg_start = [], [], []
    for pseudo, where in places.items():
        if pseudo not in lines:
            continue  # a piece added since the grams were built; the next query sees it
        pline, _ = lines[pseudo]
        for pos in sorted(where):
            s0 = pos - 8
            segs.append(segment(pline, s0, seg_len))
            owner.append(pseudo)
            seg_start.append(s0)
    if not segs:
        return []
    found: dict[int, list] = {}
    for pseudo, s0, a in zip(owner, seg_start, align(line, np.stack(segs))):
        score, first, last, a = _hit(lines[pseudo][1], s0, a, m, any_key)
        if pseudo % MAX_LINES:
            score -= OFF_TOP_LINE
        found.setdefault(pseudo // MAX_LINES, []).append((score, first, last, a))
    out = sorted((_candidate(piece, hits, m, best) for piece, hits in found.items()),
                 key=lambda c: -c.score)
    return out[:top + 2]


class LineGrams:
    """Every melody line of the library, and its exact runs of :data:`GRAM` intervals (up
    to octaves).

    Built on first use per library state (pieces and their frame counts) from the stored
    frames (their voice lines included); ``lines[piece · MAX_LINES + line]`` is (pitches,
    frame indices); ``vote`` returns the pseudo pieces (piece · MAX_LINES + line) whose
    line holds the query's runs at a consistent offset, with those offsets.
    """

    GRAM = 3
    _cache: dict = {}

    def __init__(self, lib):
        codes, owners, pos = [], [], []
        self.lines: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p in lib.pieces():
            if p["status"] == "failed" or not p["n_frames"]:
                continue
            for li, line in enumerate(melody_lines(lib.frames_of(p["id"]))):
                pseudo = p["id"] * MAX_LINES + li
                self.lines[pseudo] = (line.pitches, line.frames)
                c = self.codes(line.pitches)
                codes.append(c)
                owners.append(np.full(len(c), pseudo, np.int64))
                pos.append(np.arange(len(c), dtype=np.int64))
        cat = (lambda a: np.concatenate(a) if a else np.zeros(0, np.int64))
        codes, owners, pos = cat(codes), cat(owners), cat(pos)
        order = np.argsort(codes, kind="stable")
        self._codes, self._owners, self._pos = codes[order], owners[order], pos[order]

    @classmethod
    def of(cls, lib) -> "LineGrams":
        """The grams of ``lib`` as it is now (rebuilt when pieces change)."""
        state = lib._q("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(n_frames), 0)"
                       " FROM pieces WHERE status != 'failed'")[0]
        key = (str(lib.path), *state)
        if key not in cls._cache:
            cls._cache.clear()
            cls._cache[key] = cls(lib)
        return cls._cache[key]

    @classmethod
    def codes(cls, line: np.ndarray) -> np.ndarray:
        """One int64 code per run of ``GRAM`` intervals (each folded to −5..6)."""
        d = np.mod(np.diff(line) + 5, 12)
        if len(d) < cls.GRAM:
            return np.zeros(0, np.int64)
        runs = np.lib.stride_tricks.sliding_window_view(d, cls.GRAM)
        return (runs * (12 ** np.arange(cls.GRAM))).sum(1).astype(np.int64)

    def vote(self, line: np.ndarray, n: int, bin_width: int = DEFAULT_BIN
             ) -> list[tuple[int, list[int]]]:
        """The ``n`` best (pseudo piece, [line positions of the query's first note])."""
        qc = self.codes(line)
        lo = np.searchsorted(self._codes, qc, "left")
        hi = np.searchsorted(self._codes, qc, "right")
        own, off = [], []
        for i, (a, b) in enumerate(zip(lo, hi)):
            own.append(self._owners[a:b])
            off.append(self._pos[a:b] - i)
        if not own:
            return []
        own, off = np.concatenate(own), np.concatenate(off)
        if not len(own):
            return []
        uk, counts = np.unique(_bin_key(own, off, bin_width), return_counts=True)
        return _best_places(uk, counts, n, bin_width)


def _voted_places(q_starts: np.ndarray, labels: np.ndarray, sims: np.ndarray,
                  label_piece: np.ndarray, label_frame: np.ndarray, n: int,
                  bin_width: int = DEFAULT_BIN) -> list[tuple[int, list[int]]]:
    """Offset voting as for full textures (each query window's best hit per offset bin),
    reduced to what alignment needs: the ``n`` best (pseudo) pieces and up to three of
    their offset bins each, as line positions of the query's first note."""
    valid = labels >= 0
    q = np.broadcast_to(q_starts[:, None], labels.shape)[valid]
    lab = labels[valid]
    p, o, s = label_piece[lab], label_frame[lab] - q, sims[valid]
    keep = p >= 0
    p, o, q, s = p[keep], o[keep], q[keep], s[keep]
    if not len(p):
        return []
    keys, sums, _ = _best_per_window_sums(_bin_key(p, o, bin_width), q, s)
    return _best_places(keys, sums, n, bin_width)


def _bin_key(pseudo: np.ndarray, offset: np.ndarray, bin_width: int) -> np.ndarray:
    """One int64 key per (pseudo piece, offset bin)."""
    return pseudo * (1 << 24) + (np.floor_divide(offset, bin_width) + (1 << 22))


def _best_places(keys: np.ndarray, scores: np.ndarray, n: int, bin_width: int
                 ) -> list[tuple[int, list[int]]]:
    """The ``n`` best pseudo pieces by their best bin's score, each with up to three bins
    (best first) as line positions of the query's first note."""
    out: dict[int, list[int]] = {}
    for i in np.argsort(-scores, kind="stable")[:20 * n]:
        pseudo = int(keys[i] >> 24)
        place = (int(keys[i] & ((1 << 24) - 1)) - (1 << 22)) * bin_width
        if pseudo in out:
            if len(out[pseudo]) < 3:
                out[pseudo].append(place)
        elif len(out) < n:
            out[pseudo] = [place]
    return list(out.items())


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


def _hit(idx: np.ndarray, s0: int, a, m: int, any_key: bool) -> tuple:
    """(score, library frame of the first aligned note, library frame of the last, a);
    ``idx`` maps line positions to library frames."""
    first = idx[min(max(s0 + a.start, 0), len(idx) - 1)]
    last = idx[min(max(s0 + a.end, 0), len(idx) - 1)]
    score = a.score if (any_key or a.transpose == 0) else a.score - m
    return score, int(first), int(last), a


def _candidate(piece: int, hits: list, m: int, best: float) -> Candidate:
    """A piece's candidate from its alignments (score, first frame, last frame, Alignment);
    ``best``: the tune's :func:`~midizero_app.core.melody.best_score`."""
    n_int = m - 1
    # Best first; an exact repeat of the passage ties, and the earlier place leads.
    hits.sort(key=lambda x: (-x[0], x[1]))
    score, _, _, a = hits[0]
    positions: list[dict] = []
    for sc, first, last, al in hits:
        if sc < score - 1.0 or any(abs(first - p["offset"]) <= 8 for p in positions):
            continue
        slope = max((last - first) / max(n_int, 1), 0.5)
        positions.append({"offset": float(first), "slope": float(slope), "center": float(first),
                          "score": sc, "support": sc / best, "windows": al.matched})
    return Candidate(piece, float(score), float(score / best), a.matched / n_int,
                     positions[:3], transpose=a.transpose)


def score_melody(cands: list[Candidate], n_notes: int, best: float,
                 calib: Calibration = MELODY_CALIBRATION) -> bool:
    """Fill ``margin`` and ``confidence`` of the candidates of a tune of ``n_notes`` notes
    whose :func:`~midizero_app.core.melody.best_score` is ``best``; returns
    ``not_in_library``.

    The margin is to the best *different* piece: one that scores within 2 % of the
    winner is taken as another edition of the same music and skipped, as for textures.
    """
    if not cands:
        return True
    top = cands[0]
    rival = max((c.score for c in cands[1:] if abs(c.score - top.score) > 0.02 * abs(top.score)),
                default=0.0)
    for c in cands:
        c.margin = max(0.0, (c.score - max(rival, 0.0)) / best) if c is top else 0.0
        c.confidence = calib.confidence(features(c, n_notes))
        c.confidence = min(c.confidence, top.confidence) if c is not top else c.confidence
    return top.confidence < 0.5  # the calibration's boundary
