"""Offset voting for melody candidates: hits on library lines → the places worth aligning.

A hit says "the query's first note may sit at this position of this line" (a pseudo piece
``piece · MAX_LINES + line``); hits that agree on the position within a bin add up, as
for full textures (:mod:`~midizero_app.core.search`). The best pseudo pieces and a few of
their best bins each are the places the melody search aligns.
"""
from __future__ import annotations

import numpy as np

from .search import DEFAULT_BIN, best_per_window_sums

# Offset bins (places) aligned per line and source. A tune of a few notes (≤ TINY_TUNE)
# shares a run or two with its place, and a line's best bins by vote are often other
# places of the same figure: remembered 8-note themes, random key (300, paired), 6 → 12
# → 20 → 40 places gave Top-1 0.777 → 0.797 → 0.803 → 0.807 at 101 → 154 → 163 → 219
# ms; 12-note themes gained nothing from 12 places at +100 ms (benchmarks/RESULTS.md).
PLACES, PLACES_TINY, TINY_TUNE = 6, 20, 10
_BIN_BITS, _BIN_BIAS = 24, 1 << 22  # a key holds the pseudo piece above 24 bits of bin


def bin_key(pseudo: np.ndarray, offset: np.ndarray, bin_width: int) -> np.ndarray:
    """One int64 key per (pseudo piece, offset bin): ``pseudo`` and ``offset`` (line
    positions) int (H,) → int64 (H,)."""
    return pseudo * (1 << _BIN_BITS) + (np.floor_divide(offset, bin_width) + _BIN_BIAS)


def best_places(keys: np.ndarray, scores: np.ndarray, n: int, bin_width: int, places: int
                ) -> list[tuple[int, list[int]]]:
    """The ``n`` best pseudo pieces by their best bin's score, each with up to ``places``
    bins (best first) as line positions of the query's first note; among the ``20 n``
    best bins (the rest add aligning time, not answers).

    ``keys`` int64 (K,) from :func:`bin_key`, ``scores`` float (K,) each bin's votes.
    Returns [(pseudo piece, [line positions])], best first."""
    order = np.argsort(-scores, kind="stable")[:20 * n]
    pseudo = keys[order] >> _BIN_BITS
    owners, first = np.unique(pseudo, return_index=True)
    chosen = owners[np.argsort(first, kind="stable")[:n]]
    mine = np.flatnonzero(np.isin(pseudo, chosen))  # their bins, best first
    by_owner = mine[np.argsort(pseudo[mine], kind="stable")]
    sorted_owner = pseudo[by_owner]
    starts = np.searchsorted(sorted_owner, chosen)
    ends = np.minimum(np.searchsorted(sorted_owner, chosen, "right"), starts + places)
    offsets = ((keys[order] & ((1 << _BIN_BITS) - 1)) - _BIN_BIAS) * bin_width
    return [(int(p), offsets[by_owner[a:b]].tolist()) for p, a, b in zip(chosen, starts, ends)]


def voted_places(q_starts: np.ndarray, labels: np.ndarray, sims: np.ndarray,
                 label_piece: np.ndarray, label_frame: np.ndarray, n: int,
                 places: int = PLACES, bin_width: int = DEFAULT_BIN
                 ) -> list[tuple[int, list[int]]]:
    """Offset voting as for full textures (each query window's best hit per offset bin),
    reduced to what alignment needs: the ``n`` best (pseudo) pieces and up to ``places``
    of their offset bins each, as line positions of the query's first note.

    ``q_starts`` int (N,) query window starts (line positions), ``labels`` int (N, k) and
    ``sims`` float (N, k) their nearest melody-view windows (−1: none),
    ``label_piece`` / ``label_frame`` int (labels,) each label's pseudo piece (−1: none)
    and line position."""
    valid = labels >= 0
    q = np.broadcast_to(q_starts[:, None], labels.shape)[valid]
    lab = labels[valid]
    p, o, s = label_piece[lab], label_frame[lab] - q, sims[valid]
    keep = p >= 0
    p, o, q, s = p[keep], o[keep], q[keep], s[keep]
    if not len(p):
        return []
    keys, sums, _ = best_per_window_sums(bin_key(p, o, bin_width), q, s)
    return best_places(keys, sums, n, bin_width, places)
