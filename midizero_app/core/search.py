"""Window hits → ranked pieces with position and confidence (DESIGN §1.5).

Every query window's k nearest library windows vote for (piece, frame offset), where the
offset is the library frame minus the query frame. Hits of one piece that agree on the
offset (within ``bin_width`` frames; performances add and drop frames) add up: a piece's
score is the sum, over query windows, of each window's best similarity in the piece's best
offset bin. :class:`VoteAccumulator` keeps the hits so the live path can add windows as
they arrive and re-rank cheaply; batch search is the same object filled at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from .frames import Frames

DEFAULT_K = 10
DEFAULT_BIN = 4      # frames; measured in benchmarks/RESULTS.md
VERIFY_TOP = 5       # candidates re-scored along their alignment (:func:`verify`)
ALIGN_REACH = 2.0    # frames either side of the aligned place (library windows hop 2)
STRONG_SIM = 0.8     # a query window this close to its aligned window counts as matched
_PIECE_SHIFT = 32
_BIN_BIAS = 1 << 30


@dataclass
class Candidate:
    """One ranked piece: ``score`` in summed similarity, positions best-supported first."""

    piece: int
    score: float
    support: float            # score / number of query windows, in [0, 1]
    agree: float              # share of query windows that voted for the best offset
    positions: list[dict] = field(default_factory=list)  # {"frame", "support", "end_frame"}
    transpose: int = 0
    margin: float = 0.0
    aligned: float = 0.0          # see :func:`verify`
    aligned_hi: float = 0.0
    aligned_margin: float = 0.0
    notes: float = 0.0
    rhythm: float = 0.0       # melody: the rhythm's log likelihood ratio at the best place
    confidence: float = 0.0


class VoteAccumulator:
    """Offset-consistent voting over a (growing) set of query windows.

    Parameters
    ----------
    label_piece, label_frame : int arrays mapping an index label to its piece id and the
        library frame where that window starts.
    bin_width : offset tolerance in frames. Offsets are binned twice, the second grid shifted
        by half a bin, and the better bin counts — so a drift across a bin edge costs nothing.
    aggregate : ``"vote"`` (offset-consistent) or ``"sum"`` (the published sum of the
        similarities of every hit per piece).
    """

    def __init__(self, label_piece: np.ndarray, label_frame: np.ndarray,
                 bin_width: int = DEFAULT_BIN, aggregate: str = "vote"):
        if aggregate not in ("vote", "sum"):
            raise ValueError("aggregate must be 'vote' or 'sum'")
        self.label_piece, self.label_frame = label_piece, label_frame
        self.bin_width, self.aggregate = int(bin_width), aggregate
        self._q: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._o: list[np.ndarray] = []
        self._s: list[np.ndarray] = []
        self.n_windows = 0
        self.last_frame = 0  # last query frame covered by a window

    def add(self, q_starts: np.ndarray, labels: np.ndarray, sims: np.ndarray,
            win_length: int = 10) -> None:
        """Add hits: ``q_starts`` (n,) query frames, ``labels``/``sims`` (n, k) from kNN."""
        if not len(q_starts):
            return
        labels = np.asarray(labels, np.int64)
        valid = labels >= 0
        q = np.broadcast_to(np.asarray(q_starts, np.int64)[:, None], labels.shape)[valid]
        lab = labels[valid]
        self._q.append(q)
        self._p.append(self.label_piece[lab].astype(np.int64))
        self._o.append(self.label_frame[lab].astype(np.int64) - q)
        self._s.append(np.asarray(sims, np.float32)[valid])
        self.n_windows += len(q_starts)
        self.last_frame = max(self.last_frame, int(np.max(q_starts)) + win_length - 1)

    def _arrays(self):
        if not self._q:
            z = np.zeros(0, np.int64)
            return z, z, z, np.zeros(0, np.float32)
        if len(self._q) > 1:  # compact, so repeated live re-ranking stays cheap
            self._q, self._p, self._o, self._s = ([np.concatenate(a)] for a in
                                                  (self._q, self._p, self._o, self._s))
        return self._q[0], self._p[0], self._o[0], self._s[0]

    def rank(self, top: int = 10, max_positions: int = 3) -> list[Candidate]:
        """The ``top`` pieces, best first, with positions (library frame of query frame 0)."""
        q, p, o, s = self._arrays()
        if not len(q):
            return []
        nq = max(self.n_windows, 1)
        if self.aggregate == "sum":
            uniq, inv = np.unique(p, return_inverse=True)
            sums = np.bincount(inv, weights=s)
            order = np.argsort(-sums)[:top]
            out = []
            for i in order:
                cand = self._positions(q, p, o, s, int(uniq[i]), max_positions, nq)
                cand.score = float(sums[i])
                out.append(cand)
            return out
        bw = self.bin_width
        heads_p, heads_s = [], []
        for shift in (0, bw // 2):  # each piece's best bin on both staggered grids
            key = (p << _PIECE_SHIFT) + (np.floor_divide(o + shift, bw) + _BIN_BIAS)
            keys, sums, _ = best_per_window_sums(key, q, s)
            heads_p.append(keys >> _PIECE_SHIFT)
            heads_s.append(sums)
        pieces, sums = _max_per_group(np.concatenate(heads_p), np.concatenate(heads_s))
        ranked = np.argsort(-sums, kind="stable")[:top]
        return [self._positions(q, p, o, s, int(pieces[i]), max_positions, nq) for i in ranked]

    def _positions(self, q, p, o, s, piece: int, max_positions: int, nq: int) -> Candidate:
        """Offset bins of one piece, best first; each gives a position and its support."""
        m = p == piece
        q, o, s = q[m], o[m], s[m]
        bw = self.bin_width
        bins = []  # (score, shift, bin key, windows); the median offset only where needed
        for shift in (0, bw // 2):
            keys, sums, counts = best_per_window_sums(np.floor_divide(o + shift, bw), q, s)
            bins += [(float(sc), shift, kk, int(cnt)) for kk, sc, cnt in zip(keys, sums, counts)]
        bins.sort(key=lambda b: -b[0])
        positions: list[dict] = []
        for sc, shift, kk, cnt in bins:
            if positions and sc < 0.5 * bins[0][0]:
                break
            off = float(np.median(o[np.floor_divide(o + shift, bw) == kk]))
            if any(abs(off - pp["center"]) < 2 * bw for pp in positions):
                continue
            start, slope = _fit_alignment(q, o, s, off, 3 * bw)
            positions.append({"offset": start, "slope": slope, "center": off, "score": sc,
                              "support": sc / nq, "windows": cnt})
            if len(positions) >= max_positions:
                break
        top_score = positions[0]["score"] if positions else 0.0
        agree = positions[0]["windows"] / nq if positions else 0.0
        return Candidate(piece, top_score, top_score / nq, agree, positions)


def _fit_alignment(q: np.ndarray, o: np.ndarray, s: np.ndarray, center: float,
                   reach: float) -> tuple[float, float]:
    """Library frame at query frame 0, and library frames per query frame, for one match.

    A performance adds and drops frames against its score (spread chords, merged fast
    notes), so the offset drifts along a long query and a bin's median offset belongs to
    the query's middle. Fit library frame j = a + b·i (Theil–Sen, robust to stray hits)
    through each query window's best hit within ``reach`` frames of the bin's offset.
    """
    m = np.abs(o - center) <= reach
    qi, jj, ss = q[m], o[m] + q[m], s[m]
    order = np.lexsort((-ss, qi))
    first = run_starts(qi[order])
    qi, jj = qi[order][first].astype(np.float64), jj[order][first].astype(np.float64)
    slope = 1.0
    if len(qi) >= 6 and np.ptp(qi) >= 6:
        if len(qi) > 60:  # Theil–Sen is O(n²): thin long queries evenly
            pick = np.linspace(0, len(qi) - 1, 60).astype(int)
            qi, jj = qi[pick], jj[pick]
        a, b = np.triu_indices(len(qi), 1)
        dq = qi[b] - qi[a]
        ok = dq > 0
        slope = float(np.clip(np.median((jj[b] - jj[a])[ok] / dq[ok]), 0.5, 2.0))
    return float(np.median(jj - slope * qi)), slope


def run_starts(a: np.ndarray) -> np.ndarray:
    """bool (n,): True where a run of equal values of ``a`` (n,) begins (the first element
    always; an empty array gives an empty mask)."""
    first = np.ones(len(a), bool)
    first[1:] = a[1:] != a[:-1]
    return first


def run_ends(a: np.ndarray) -> np.ndarray:
    """bool (n,): True where a run of equal values of ``a`` (n,) ends (the last element
    always; an empty array gives an empty mask)."""
    last = np.ones(len(a), bool)
    last[:-1] = a[1:] != a[:-1]
    return last


def _max_per_group(group: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest value of each group: (groups, values), groups ascending."""
    order = np.lexsort((-value, group))
    first = run_starts(group[order])
    return group[order][first], value[order][first]


def best_per_window_sums(key: np.ndarray, q: np.ndarray, s: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each key: the sum over query windows of that window's best similarity, and the
    count of windows.

    ``key`` int64 (H,) (a piece and offset bin per hit), ``q`` int (H,) the hit's query
    window, ``s`` float (H,) its similarity. Returns keys int64 (K,) ascending, sums
    float64 (K,) and counts int64 (K,); all empty for no hits."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    order = np.lexsort((-s, q, key))
    k, qq, ss = key[order], q[order], s[order]
    first = run_starts(k) | run_starts(qq)
    k, ss = k[first], ss[first]
    uk, idx, counts = np.unique(k, return_index=True, return_counts=True)
    return uk, np.add.reduceat(ss.astype(np.float64), idx), counts


def aligned_similarity(q_emb: np.ndarray, q_starts: np.ndarray, lib_starts: np.ndarray,
                       lib_vecs: np.ndarray, offset: float, slope: float,
                       reach: float = ALIGN_REACH) -> np.ndarray:
    """Each query window's best similarity to the candidate's windows that start within
    ``reach`` frames of where the alignment (library frame = offset + slope · query frame)
    puts it; 0 where none is near. ``q_emb`` (n, 128) and ``lib_vecs`` (m, 128) unit
    vectors, ``q_starts`` (n,) and ``lib_starts`` (m,) frames. Returns (n,) in [0, 1]."""
    if not len(lib_starts):
        return np.zeros(len(q_starts), np.float32)
    target = offset + slope * np.asarray(q_starts, np.float64)
    near = np.abs(lib_starts[None, :] - target[:, None]) <= reach
    return np.where(near, q_emb @ lib_vecs.T, 0.0).max(1).clip(0.0, None)


class QueryWindows(NamedTuple):
    """One (transposed) reading of a query, as :func:`verify` compares it with candidates:
    window embeddings (n, 128), window start frames (n,), the query's frames from frame
    ``first_frame`` on (the live path keeps only its recent ones)."""

    emb: np.ndarray
    starts: np.ndarray
    frames: Frames
    first_frame: int = 0


def note_agreement(query: Frames, first_frame: int, score: Frames, offset: float,
                   slope: float, reach: int = int(ALIGN_REACH)) -> float:
    """Share of the query's notes whose pitch the score has within ``reach`` frames of
    where the alignment (score frame = offset + slope · query frame) puts them."""
    counts = np.diff(query.offsets)
    if not len(query.pitches) or not len(score):
        return 0.0
    j = np.rint(offset + slope * (np.repeat(np.arange(len(query)), counts) + first_frame))
    j = j.astype(np.int64)
    lo, hi = max(int(j.min()) - reach, 0), min(int(j.max()) + reach + 1, len(score))
    if hi <= lo:
        return 0.0
    # cumulative pitch counts over the score frames lo..hi: a frame range is one subtraction
    rows = np.repeat(np.arange(len(score)), np.diff(score.offsets))
    keep = (rows >= lo) & (rows < hi)
    roll = np.zeros((hi - lo + 1, 128), np.int32)
    roll[rows[keep] - lo + 1, score.pitches[keep]] = 1
    cum = np.cumsum(roll, axis=0)
    a = np.clip(j - reach - lo, 0, hi - lo)
    b = np.clip(j + reach + 1 - lo, 0, hi - lo)
    return float(np.mean(cum[b, query.pitches] > cum[a, query.pitches]))


def verify(cands: list[Candidate], queries: dict[int, QueryWindows], lib,
           top: int = VERIFY_TOP) -> list[Candidate]:
    """Re-score the first ``top`` candidates along their alignments.

    The vote only sees the k nearest library windows of each query window; in a large
    library a right answer's windows often miss that list while still lying close, and a
    chance match gathers a few strong votes. Along each candidate's alignment:
    ``aligned`` — each query window against the candidate's own windows at its aligned
    place (mean best similarity), ``aligned_hi`` — the share of those ≥ ``STRONG_SIM``,
    and ``notes`` — the share of the query's notes the score has there
    (:func:`note_agreement`). A true match scores high on all; they are what the "not in
    your library" answer needs (docs/DESIGN-NOTES.md), and :func:`score_candidates`
    orders these candidates by them.

    Parameters
    ----------
    queries : query shift (semitones) → its :class:`QueryWindows`.
    lib : the library (:meth:`~midizero_app.core.library.Library.window_vectors` and
        ``frames_of``).
    """
    for c in cands[:top]:
        q = queries[c.transpose]
        best = np.zeros(len(q.starts), np.float32)
        score = lib.frames_of(c.piece)
        for p in c.positions:  # a repeated passage: the best place for each window
            lo = p["offset"] + p["slope"] * float(q.starts.min()) - ALIGN_REACH
            hi = p["offset"] + p["slope"] * float(q.starts.max()) + ALIGN_REACH
            lib_starts, lib_vecs = lib.window_vectors(c.piece, lo, hi)
            best = np.maximum(best, aligned_similarity(q.emb, q.starts, lib_starts, lib_vecs,
                                                       p["offset"], p["slope"]))
            c.notes = max(c.notes, note_agreement(q.frames, q.first_frame, score,
                                                  p["offset"], p["slope"]))
        c.aligned = float(best.mean()) if len(best) else 0.0
        c.aligned_hi = float(np.mean(best >= STRONG_SIM)) if len(best) else 0.0
    return cands


@dataclass
class Calibration:
    """Logistic confidence over :data:`FEATURES`, fitted on data (scripts/fit_texture_confidence.py).

    The "not in your library" threshold may depend on the query length: ``thresholds``
    holds (windows, threshold) points, interpolated in log windows (``threshold`` when
    empty), so that every length flags the same share of out-of-library queries. The
    confidence is shifted by the threshold for the query's length, so 0.5 is always the
    boundary: below it the answer is "not in your library".
    """

    w_support: float = 12.0
    w_margin: float = 4.0
    w_agree: float = 2.0
    w_log_windows: float = 0.5
    w_aligned: float = 0.0
    w_aligned_hi: float = 0.0
    w_aligned_margin: float = 0.0
    w_notes: float = 0.0
    bias: float = -8.0
    threshold: float = 0.5
    thresholds: tuple[tuple[float, float], ...] = ()

    def confidence(self, feats: tuple[float, ...]) -> float:
        """``feats`` as :func:`features` returns them → confidence in [0, 1]."""
        w = (self.w_support, self.w_margin, self.w_agree, self.w_log_windows, self.w_aligned,
             self.w_aligned_hi, self.w_aligned_margin, self.w_notes)
        return shifted_confidence(float(np.dot(w, feats)) + self.bias,
                                  threshold_at(self.thresholds, feats[3], self.threshold))

    def threshold_for(self, n_windows: int) -> float:
        """The fitted threshold (on the unshifted probability) for a query of n windows."""
        return threshold_at(self.thresholds, math.log(max(n_windows, 1)), self.threshold)

    @classmethod
    def from_card(cls, card: dict) -> "Calibration":
        """The calibration stored in a model card (its ``"calibration"`` entry; the
        defaults where there is none)."""
        c = card.get("calibration") or {}
        kw = {k: float(v) for k, v in c.items()
              if k in cls.__dataclass_fields__ and k != "thresholds"}
        kw["thresholds"] = tuple((float(n), float(t)) for n, t in c.get("thresholds", ()))
        return cls(**kw)


def threshold_at(points: tuple[tuple[float, float], ...], log_n: float,
                 default: float = 0.5) -> float:
    """The threshold for a query of log size ``log_n``, interpolated between (size,
    threshold) ``points`` in log size (``default`` without points)."""
    if not points:
        return default
    pts = sorted(points)
    return float(np.interp(log_n, [math.log(n) for n, _ in pts], [t for _, t in pts]))


def shifted_confidence(log_odds: float, threshold: float) -> float:
    """The probability of ``log_odds``, shifted so that ``threshold`` lands on 0.5."""
    thr = min(max(threshold, 1e-6), 1 - 1e-6)
    z = log_odds - math.log(thr / (1 - thr))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


FEATURES = ("support", "margin", "agree", "log_windows", "aligned", "aligned_hi",
            "aligned_margin", "notes")


def features(c: Candidate | None, n_windows: int) -> tuple[float, ...]:
    """The best candidate's confidence features, in the order of :data:`FEATURES`."""
    if c is None:
        return (0.0, 0.0, 0.0, math.log(max(n_windows, 1)), 0.0, 0.0, 0.0, 0.0)
    return (c.support, c.margin, c.agree, math.log(max(n_windows, 1)), c.aligned,
            c.aligned_hi, c.aligned_margin, c.notes)


def evidence(c: Candidate, n_windows: int, calib: Calibration) -> float:
    """How likely ``c`` is right on its own evidence (the calibrated confidence without the
    margins, which only restate the vote order)."""
    return calib.confidence(features(replace(c, margin=0.0, aligned_margin=0.0), n_windows))


def score_candidates(cands: list[Candidate], n_windows: int, calib: Calibration) -> bool:
    """Order the verified candidates by their :func:`evidence`, then fill ``margin`` and
    ``confidence``; returns ``not_in_library``.

    The votes only see each window's k nearest neighbours; the verified evidence (window
    alignment and note agreement at the aligned place) decides among the first
    :data:`VERIFY_TOP`. On the ASAP benchmark (1,000 excerpts per length) Top-1 went
    0.970 → 0.975 at 5 s and 0.991 → 0.994 at 10 s; from audio 0.908 → 0.936 and
    0.958 → 0.982 (benchmarks/RESULTS.md).

    The margins compare the best piece with the best *different* runner-up: a piece whose
    winning bin has the same score within 2 % is taken as a duplicate or version of the
    same music (a MIDI and a MusicXML of one score, a version without repeats) and skipped.
    """
    if not cands:
        return True
    cands[:VERIFY_TOP] = sorted(cands[:VERIFY_TOP], key=lambda c: -evidence(c, n_windows, calib))
    for i, c in enumerate(cands):
        rival, rival_aligned = 0.0, 0.0
        for d in cands:
            if d is c:
                continue
            if abs(d.score - c.score) <= 0.02 * max(c.score, 1e-9) and i == 0:
                continue  # a duplicate of the winner
            rival = max(rival, d.score)
            rival_aligned = max(rival_aligned, d.aligned)
        c.margin = max(0.0, (c.score - rival) / max(c.score, 1e-9))
        c.aligned_margin = c.aligned - rival_aligned
        c.confidence = calib.confidence(features(c, n_windows))
    # Lower-ranked pieces cannot be more confident than the winner.
    for c in cands[1:]:
        c.confidence = min(c.confidence, cands[0].confidence)
    return cands[0].confidence < 0.5
