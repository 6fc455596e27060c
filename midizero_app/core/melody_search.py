"""Melody queries: candidates from the melody view, ranked by how likely each piece makes the tune.

1. Candidates, from two sources: the query's top line → key-normalised windows (hop 1)
   → k nearest windows in the library's ``melody`` view → offset-consistent voting (as
   for full textures); and :class:`LineGrams`, exact runs of three intervals (up to
   octaves) voted by offset, each vote weighed by the run's rarity and the place's
   rhythm, which short tunes need (one padded window says little). Each gives its best
   pieces with their likely places (more of them for a tune of a few notes).
2. Around each place, :func:`melody.align` aligns the query's intervals with the library
   line, forgiving slips: it gives the key shift, the register and the exact place.
3. :func:`melody.likelihoods` (a pair hidden Markov model of how people play a tune from
   memory: its notes, and its rhythm at a tempo of the player's own) says how likely
   the tune is at each place, summed over alignments; with
   every piece, each of its lines and each place of a line equally likely beforehand, a
   piece's likelihood (the average of its lines' mean place likelihood) ranks it.
4. Confidence: gradient-boosted trees over how well the best place fits on pitches
   (against a note-for-note match), the share of its intervals matched and its alignment
   score, the lead over the best *different* piece and over the runner-up, the
   runner-up's fit, the share of rhythm in the tune's evidence, the share of it the best
   place keeps and the query length (:mod:`~midizero_app.core.melody_confidence`, fitted by
   ``benchmarks/melody_bench.py --calibrate`` on held-out pieces).
"""
from __future__ import annotations

import numpy as np

from .frames import Frames
from .melody import (LINE_STRIDE, MAX_LINES, MIN_IOI, RHYTHM_SD, Rhythm, align, likelihoods,
                     match_evidence, melody_lines, melody_windows, place_tempo,
                     rhythm_evidence, tune_notes)
from .melody_confidence import TreeConfidence, confidence_features, default
from .search import DEFAULT_BIN, Candidate, _best_per_window_sums, run_ends
from .windows import QUERY_HOP

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
# Interval-gram votes weigh what a shared run tells: its rarity (a run of steps is
# everywhere, a leap figure is not) and how well the place keeps its rhythm, floored at
# RHYTHM_FLOOR nats. With plain counts, a short remembered tune's place tied with
# thousands of others that share one common run, and the N_GRAM_VERIFY_SHORTEST aligned
# were the first in library order (RESULTS.md, thirteenth session).
RHYTHM_FLOOR = 4.0
SOURCES = ("learned", "grams")
# Offset bins (places) aligned per line and source. A tune of a few notes (≤ TINY_TUNE)
# shares a run or two with its place, and a line's best bins by vote are often other
# places of the same figure: remembered 8-note themes, random key (300, paired), 6 → 12
# → 20 → 40 places gave Top-1 0.777 → 0.797 → 0.803 → 0.807 at 101 → 154 → 163 → 219
# ms; 12-note themes gained nothing from 12 places at +100 ms (RESULTS.md).
PLACES, PLACES_TINY, TINY_TUNE = 6, 20, 10
# A match off a piece's top line (its line without dips, or a voice) scores this much less,
# so that where two pieces hold a tune note for note, the one whose melody it is comes
# first: tunes are mostly top lines. Exact themes, random key (1,000 a cell): 8 notes
# 0.850 → 0.855, 12 notes 0.964 → 0.970; remembered 8 / 12 +0.3 points (RESULTS.md).
OFF_TOP_LINE = 1e-3
_TINY = float(np.nextafter(0.0, 1.0))  # a place's likelihood that underflowed to 0 logs as this

# A flag on a short tune also falls on right answers: with 20 % of the pieces held out, it
# fell on 4 % / 17 % of the right answers to 8 exact / remembered notes, 0 % / 5 % at 12,
# and ≤ 0.7 % from 16 notes on, while it fell on 93–98 % of strangers' tunes at every length
# (RESULTS.md, sixteenth session). So a flagged tune shorter than this reads "not sure yet".
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
        spread chords (:func:`~midizero_app.core.melody.tune_notes`); their times give
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


def tune_evidence(frames: Frames) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The tune a query holds and what finding it can tell: its pitches (int64 (m,)) and
    onsets (seconds, (m,)) (:func:`~midizero_app.core.melody.tune_notes`), and the nats a
    note-for-note match and a kept rhythm are worth
    (:func:`~midizero_app.core.melody.match_evidence`,
    :func:`~midizero_app.core.melody.rhythm_evidence`): the units of
    :func:`score_melody`."""
    line, onsets = tune_notes(frames)
    return line, onsets, match_evidence(line), rhythm_evidence(onsets)


def _line_candidates(lib, line: np.ndarray, onsets: np.ndarray, best: float, top: int,
                     any_key: bool, k: int, n_verify: int, sources: tuple[str, ...]
                     ) -> list[Candidate]:
    """:func:`search_melody`'s ranking of a tune (int64 pitches, their onsets in seconds;
    ``best`` its :func:`~midizero_app.core.melody.match_evidence`), without confidences."""
    m = len(line)
    if m < 2:
        return []
    grams = LineGrams.of(lib)
    n_places = PLACES_TINY if m <= TINY_TUNE else PLACES
    places: dict[int, set[int]] = {}  # pseudo piece (piece · MAX_LINES + line) → positions
    if "learned" in sources:
        emb_model = lib.embedder
        wins, starts, _ = melody_windows(line, QUERY_HOP, emb_model.win_length)
        labels, sims = lib.knn(emb_model.embed(wins), k, view="melody")
        lp, lf = _line_maps(*lib.view_maps("melody"))
        for pseudo, where in _voted_places(starts, labels, sims, lp, lf, n_verify, n_places):
            places.setdefault(pseudo, set()).update(where)
    if "grams" in sources:
        n_gram = (N_GRAM_VERIFY_SHORTEST if m <= SHORTEST_TUNE else
                  N_GRAM_VERIFY_SHORT if m <= SHORT_TUNE else N_GRAM_VERIFY)
        for pseudo, pos in grams.vote(line, n_gram, onsets, places=n_places):
            places.setdefault(pseudo, set()).update(pos)
    owner = np.array([p for p, where in places.items() for _ in where], np.int64)
    pos = np.array([x for where in places.values() for x in where], np.int64)
    known = np.isin(owner, grams.pseudos)  # a piece added since the grams were built:
    owner, pos = owner[known], pos[known]   # the next query sees it
    if not len(owner):
        return []
    seg_start = pos - 8
    # A tune note may sit among accompaniment notes in line 0: twice its length and more.
    segs, seg_frames, seg_onsets = grams.segments(owner, seg_start, 2 * m + 16)
    aligned = align(line, segs)
    offsets = np.array([a.offset if any_key else 12 * round(a.offset / 12) for a in aligned])
    # Ranked with the rhythm; the best place's fit on pitches alone says how sure that is
    # (rhythm evidence is strong only where rhythms differ: among even-note chorales any
    # place keeps a tune's rhythm, so it would make a stranger's chorale theme look found).
    rhythm = Rhythm(onsets, seg_onsets, place_tempo(aligned, onsets, seg_onsets))
    pitch_fit, fit = likelihoods(line, segs, offsets, rhythm)
    top_line = np.where(owner % MAX_LINES > 0, 1.0 - OFF_TOP_LINE, 1.0)[:, None]
    pitch_fit, fit = pitch_fit * top_line, fit * top_line
    # Bayes with every piece equally likely, then each of its lines, then each place of
    # the line: a line sums its places (overlapping segments: each end frame's best),
    # divided by its length, and a piece averages its lines (lines not among the
    # candidates add about nothing).
    keep = (seg_frames >= 0) & (fit > 0)
    if not keep.any():  # no place makes the tune likelier than zero (in float64)
        return []
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
    place_rhythm = np.log(per_place[best_key] / np.maximum(pitch_place[best_key], 1e-300))
    score = np.log(summed)
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


class LineGrams:
    """Every melody line of the library, and its exact runs of :data:`GRAM` intervals (up
    to octaves).

    Built on first use per library state (pieces and their frame counts) from the stored
    frames (their voice lines included); ``lines[piece · MAX_LINES + line]`` is (pitches,
    frame indices, onsets in seconds); ``vote`` returns the pseudo pieces (piece · MAX_LINES + line) whose
    line holds the query's runs at a consistent offset, with those offsets.
    """

    GRAM = 3
    _cache: dict = {}

    def __init__(self, lib):
        codes, owners, pos = [], [], []
        self.lines: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for p in lib.pieces():
            if p["status"] == "failed" or not p["n_frames"]:
                continue
            frames = lib.frames_of(p["id"])
            for li, line in enumerate(melody_lines(frames)):
                pseudo = p["id"] * MAX_LINES + li
                self.lines[pseudo] = (line.pitches, line.frames, frames.onset[line.frames])
                c = self.codes(line.pitches)
                codes.append(c)
                owners.append(np.full(len(c), pseudo, np.int64))
                pos.append(np.arange(len(c), dtype=np.int64))
        cat = (lambda a: np.concatenate(a) if a else np.zeros(0, np.int64))
        codes, owners, pos = cat(codes), cat(owners), cat(pos)
        order = np.argsort(codes, kind="stable")
        self._codes, self._owners, self._pos = codes[order], owners[order], pos[order]
        # Every line end to end, for cutting many segments at once.
        self.pseudos = np.array(sorted(self.lines), np.int64)
        lens = np.array([len(self.lines[p][0]) for p in self.pseudos], np.int64)
        self._base = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else lens
        self._len = lens
        self._pitches = cat([self.lines[p][0].astype(np.int64) for p in self.pseudos])
        self._frames = cat([self.lines[p][1].astype(np.int64) for p in self.pseudos])
        self._onsets = (np.concatenate([self.lines[p][2] for p in self.pseudos])
                        if len(self.pseudos) else np.zeros(0))
        # Each run's first note end to end, and the log IOI after every note (float32 (N,),
        # meaningful within a line), for weighing votes by rhythm.
        self._at = self._base[np.searchsorted(self.pseudos, self._owners)] + self._pos
        self._log_ioi = np.log(np.maximum(np.diff(self._onsets, append=np.inf), MIN_IOI)
                               ).astype(np.float32)

    @classmethod
    def of(cls, lib) -> "LineGrams":
        """The grams of ``lib`` as it is now (rebuilt when pieces change)."""
        ok = [(p["id"], p["n_frames"]) for p in lib.pieces() if p["status"] != "failed"]
        key = (str(lib.path), len(ok), max((i for i, _ in ok), default=0),
               sum(n or 0 for _, n in ok))
        if key not in cls._cache:
            cls._cache.clear()
            cls._cache[key] = cls(lib)
        return cls._cache[key]

    def length_of(self, pseudo: np.ndarray) -> np.ndarray:
        """Notes in each line (pseudo pieces in :attr:`pseudos`): float64, ≥ 1."""
        return np.maximum(self._len[np.searchsorted(self.pseudos, pseudo)], 1).astype(float)

    def lines_of(self, piece: np.ndarray) -> np.ndarray:
        """Lines of each piece (ids that have lines): float64."""
        first = np.searchsorted(self.pseudos, piece * MAX_LINES)
        end = np.searchsorted(self.pseudos, (piece + 1) * MAX_LINES)
        return (end - first).astype(float)

    def segments(self, pseudo: np.ndarray, start: np.ndarray, length: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Line segments ``line[start:start + length]`` of the pseudo pieces (int64 (C,)
        each, all in :attr:`pseudos`): pitches and library frames, int64 (C, length), −1
        outside the line; onsets, float64 (C, length) seconds, NaN outside."""
        k = np.searchsorted(self.pseudos, pseudo)
        at = start[:, None] + np.arange(length)[None, :]
        inside = (at >= 0) & (at < self._len[k][:, None])
        idx = self._base[k][:, None] + np.clip(at, 0, np.maximum(self._len[k] - 1, 0)[:, None])
        return (np.where(inside, self._pitches[idx], -1),
                np.where(inside, self._frames[idx], -1),
                np.where(inside, self._onsets[idx], np.nan))

    @classmethod
    def codes(cls, line: np.ndarray) -> np.ndarray:
        """One int64 code per run of ``GRAM`` intervals (each folded to −5..6)."""
        d = np.mod(np.diff(line) + 5, 12)
        if len(d) < cls.GRAM:
            return np.zeros(0, np.int64)
        runs = np.lib.stride_tricks.sliding_window_view(d, cls.GRAM)
        return (runs * (12 ** np.arange(cls.GRAM))).sum(1).astype(np.int64)

    def vote(self, line: np.ndarray, n: int, onsets: np.ndarray | None = None,
             bin_width: int = DEFAULT_BIN, places: int = PLACES
             ) -> list[tuple[int, list[int]]]:
        """The ``n`` best (pseudo piece, [line positions of the query's first note, at
        most ``places``]).

        Each run the line shares with a library line votes for that place with how much it
        tells (:meth:`_hits`: the run's rarity, and with ``onsets`` (seconds, one per
        note) how well the place keeps the run's rhythm); a place's score is its bin's
        sum.
        """
        t = None if onsets is None else np.asarray(onsets, np.float64)
        own, off, w = self._hits(np.asarray(line, np.int64), t)
        if not len(own):
            return []
        keys, inv = np.unique(_bin_key(own, off, bin_width), return_inverse=True)
        return _best_places(keys, np.bincount(inv, weights=w), n, bin_width, places)

    def _hits(self, line: np.ndarray, onsets: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Library places holding the line's runs: pseudo pieces, offsets (line position
        of the line's first note) and weights, each (H,). A run's weight is its rarity,
        ln(runs in the library / runs like it), plus, with onsets, the log likelihood of
        its three inter-onset intervals at the place's, tempo-free (σ = the search's
        :data:`~midizero_app.core.melody.RHYTHM_SD`, at least −:data:`RHYTHM_FLOOR`: a
        tune played in a rhythm of its own still finds its places on pitches)."""
        qc = self.codes(line)
        lo = np.searchsorted(self._codes, qc, "left")
        hi = np.searchsorted(self._codes, qc, "right")
        own, off, w = [], [], []
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b == a:
                continue
            own.append(self._owners[a:b])
            off.append(self._pos[a:b] - i)
            ww = np.full(b - a, np.log(len(self._codes) / (b - a)))
            if onsets is not None:
                q = np.log(np.maximum(np.diff(onsets[i : i + self.GRAM + 1]), MIN_IOI))
                res = q.astype(np.float32) - self._log_ioi[self._at[a:b, None]
                                                           + np.arange(self.GRAM)]
                res -= res.mean(1, keepdims=True)  # the place's own tempo
                ww += np.maximum(-0.5 / RHYTHM_SD**2 * np.square(res).sum(1), -RHYTHM_FLOOR)
            w.append(ww)
        if not own:
            return (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
        return np.concatenate(own), np.concatenate(off), np.concatenate(w)


def _voted_places(q_starts: np.ndarray, labels: np.ndarray, sims: np.ndarray,
                  label_piece: np.ndarray, label_frame: np.ndarray, n: int,
                  places: int = PLACES, bin_width: int = DEFAULT_BIN
                  ) -> list[tuple[int, list[int]]]:
    """Offset voting as for full textures (each query window's best hit per offset bin),
    reduced to what alignment needs: the ``n`` best (pseudo) pieces and up to
    ``places`` of their offset bins each, as line positions of the query's first
    note."""
    valid = labels >= 0
    q = np.broadcast_to(q_starts[:, None], labels.shape)[valid]
    lab = labels[valid]
    p, o, s = label_piece[lab], label_frame[lab] - q, sims[valid]
    keep = p >= 0
    p, o, q, s = p[keep], o[keep], q[keep], s[keep]
    if not len(p):
        return []
    keys, sums, _ = _best_per_window_sums(_bin_key(p, o, bin_width), q, s)
    return _best_places(keys, sums, n, bin_width, places)


def _bin_key(pseudo: np.ndarray, offset: np.ndarray, bin_width: int) -> np.ndarray:
    """One int64 key per (pseudo piece, offset bin)."""
    return pseudo * (1 << 24) + (np.floor_divide(offset, bin_width) + (1 << 22))


def _best_places(keys: np.ndarray, scores: np.ndarray, n: int, bin_width: int, places: int
                 ) -> list[tuple[int, list[int]]]:
    """The ``n`` best pseudo pieces by their best bin's score, each with up to
    ``places`` bins (best first) as line positions of the query's first note;
    among the ``20 n`` best bins (the rest add aligning time, not answers)."""
    order = np.argsort(-scores, kind="stable")[:20 * n]
    pseudo = keys[order] >> 24
    owners, first = np.unique(pseudo, return_index=True)
    chosen = owners[np.argsort(first, kind="stable")[:n]]
    mine = np.flatnonzero(np.isin(pseudo, chosen))  # their bins, best first
    by_owner = mine[np.argsort(pseudo[mine], kind="stable")]
    sorted_owner = pseudo[by_owner]
    starts = np.searchsorted(sorted_owner, chosen)
    ends = np.minimum(np.searchsorted(sorted_owner, chosen, "right"), starts + places)
    offsets = ((keys[order] & ((1 << 24) - 1)) - (1 << 22)) * bin_width
    return [(int(p), offsets[by_owner[a:b]].tolist()) for p, a, b in zip(chosen, starts, ends)]


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
    :func:`~midizero_app.core.melody.match_evidence`."""
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
    (:func:`~midizero_app.core.melody.match_evidence`,
    :func:`~midizero_app.core.melody.rhythm_evidence`); returns ``not_in_library``.

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
