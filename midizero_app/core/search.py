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
from dataclasses import dataclass, field

import numpy as np

DEFAULT_K = 10
DEFAULT_BIN = 4      # frames; measured in benchmarks/RESULTS.md
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
            keys, sums, _ = _best_per_window_sums(key, q, s)
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
            keys, sums, counts = _best_per_window_sums(np.floor_divide(o + shift, bw), q, s)
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
    first = np.r_[True, qi[order][1:] != qi[order][:-1]]
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


def _max_per_group(group: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest value of each group: (groups, values), groups ascending."""
    order = np.lexsort((-value, group))
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    return group[order][first], value[order][first]


def _best_per_window_sums(key: np.ndarray, q: np.ndarray, s: np.ndarray):
    """For each key: sum over query windows of that window's best similarity, and the count
    of windows. Returns (keys, sums, counts)."""
    order = np.lexsort((-s, q, key))
    k, qq, ss = key[order], q[order], s[order]
    first = np.r_[True, (k[1:] != k[:-1]) | (qq[1:] != qq[:-1])]
    k, ss = k[first], ss[first]
    uk, idx, counts = np.unique(k, return_index=True, return_counts=True)
    return uk, np.add.reduceat(ss.astype(np.float64), idx), counts


@dataclass
class Calibration:
    """Logistic confidence from (support, margin, agree, log windows); fitted on data."""

    w_support: float = 12.0
    w_margin: float = 4.0
    w_agree: float = 2.0
    w_log_windows: float = 0.5
    bias: float = -8.0
    threshold: float = 0.5

    def confidence(self, support: float, margin: float, agree: float, n_windows: int) -> float:
        z = (self.w_support * support + self.w_margin * margin + self.w_agree * agree
             + self.w_log_windows * math.log(max(n_windows, 1)) + self.bias)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    @classmethod
    def from_card(cls, card: dict) -> "Calibration":
        c = card.get("calibration") or {}
        return cls(**{k: float(v) for k, v in c.items() if k in cls.__dataclass_fields__})


def features(cands: list[Candidate], n_windows: int) -> tuple[float, float, float, int]:
    """Confidence features of the best candidate (see :func:`score_candidates`)."""
    if not cands:
        return 0.0, 0.0, 0.0, n_windows
    return cands[0].support, cands[0].margin, cands[0].agree, n_windows


def score_candidates(cands: list[Candidate], n_windows: int, calib: Calibration) -> bool:
    """Fill ``margin`` and ``confidence`` of ranked candidates; returns ``not_in_library``.

    The margin compares the best piece with the best *different* runner-up: a piece whose
    winning bin has the same score within 2 % is taken as a duplicate or version of the
    same music (a MIDI and a MusicXML of one score, a version without repeats) and skipped.
    """
    if not cands:
        return True
    for i, c in enumerate(cands):
        rival = 0.0
        for d in cands:
            if d is c:
                continue
            if abs(d.score - c.score) <= 0.02 * max(c.score, 1e-9) and i == 0:
                continue  # a duplicate of the winner
            rival = max(rival, d.score)
        c.margin = max(0.0, (c.score - rival) / max(c.score, 1e-9))
        c.confidence = calib.confidence(c.support, c.margin, c.agree, n_windows)
    # Lower-ranked pieces cannot be more confident than the winner.
    for c in cands[1:]:
        c.confidence = min(c.confidence, cands[0].confidence)
    return cands[0].confidence < calib.threshold
