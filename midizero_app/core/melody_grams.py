"""An index of every melody line's interval runs: candidates for tunes too short for windows.

A tune of a few notes fills one padded window, which says little to the learned melody
view. :class:`LineGrams` finds its places another way: exact runs of :attr:`LineGrams.GRAM`
intervals (up to octaves) it shares with library lines, voted by offset, each vote weighed
by the run's rarity and by how well the place keeps the run's rhythm.
"""
from __future__ import annotations

import numpy as np

from .melody_lines import MAX_LINES, melody_lines
from .melody_rhythm import MIN_IOI, RHYTHM_SD
from .melody_votes import PLACES, best_places, bin_key
from .search import DEFAULT_BIN

# Interval-gram votes weigh what a shared run tells: its rarity (a run of steps is
# everywhere, a leap figure is not) and how well the place keeps its rhythm, floored at
# RHYTHM_FLOOR nats. With plain counts, a short remembered tune's place tied with
# thousands of others that share one common run, and the places aligned were the first in
# library order (benchmarks/RESULTS.md, melody).
RHYTHM_FLOOR = 4.0


class LineGrams:
    """Every melody line of the library, and its exact runs of :data:`GRAM` intervals (up
    to octaves).

    Built on first use per library state (pieces and their frame counts) from the stored
    frames (their voice lines included); :attr:`lines` (a copy made on each read: take it
    once) maps ``piece · MAX_LINES + line`` to (pitches int64 (n,), frame indices int64
    (n,), onsets float64 (n,) seconds); :meth:`vote`
    returns the pseudo pieces (piece · MAX_LINES + line) whose line holds the query's runs
    at a consistent offset, with those offsets.
    """

    GRAM = 3
    _cache: dict = {}

    def __init__(self, lib):
        # Held end to end in compact types: a library of 5 M windows has about 20 M line
        # notes, at 32 bytes a note here (about 85 with an array per line and int64
        # everywhere) — codes int16 (12³ < 2¹⁵); lines, positions and frames int32;
        # pitches int16; onsets float64. Pieces in id order, so lines come in pseudo order.
        pseudos, lens, pitches, frames_, onsets = [], [], [], [], []
        for p in sorted(lib.pieces(), key=lambda p: p["id"]):
            if p["status"] == "failed" or not p["n_frames"]:
                continue
            frames = lib.frames_of(p["id"])
            for li, line in enumerate(melody_lines(frames)):
                pseudos.append(p["id"] * MAX_LINES + li)
                lens.append(len(line.pitches))
                pitches.append(line.pitches.astype(np.int16))
                frames_.append(line.frames.astype(np.int32))
                onsets.append(frames.onset[line.frames])
        cat = (lambda a, dt: np.concatenate(a).astype(dt, copy=False) if a else
               np.zeros(0, dt))
        self.pseudos = np.asarray(pseudos, np.int64)
        self._len = np.asarray(lens, np.int64)
        self._base = np.concatenate([[0], np.cumsum(self._len)[:-1]]).astype(np.int64) \
            if len(self._len) else self._len
        self._pitches = cat(pitches, np.int16)
        self._frames = cat(frames_, np.int32)
        self._onsets = cat(onsets, np.float64)
        del pitches, frames_, onsets
        # every run of GRAM intervals, sorted by code: its line and position in that line
        # (the runs of all lines end to end at once; those crossing into the next line
        # are dropped)
        line = np.repeat(np.arange(len(self._len), dtype=np.int32), self._len)
        pos = (np.arange(len(line), dtype=np.int64) - self._base[line]).astype(np.int32)
        codes = self.codes(self._pitches.astype(np.int32))
        keep = np.flatnonzero(pos[:len(codes)] < (self._len[line[:len(codes)]] - self.GRAM))
        codes, owners, pos = codes[keep].astype(np.int16), line[keep], pos[keep]
        del line, keep
        order = np.argsort(codes, kind="stable")
        self._codes, self._pos, self._line = codes[order], pos[order], owners[order]
        del codes, owners, pos, order
        # Each run's first note end to end, and the log IOI after every note (float32 (N,),
        # meaningful within a line), for weighing votes by rhythm.
        self._at = (self._base[self._line] + self._pos).astype(
            np.int32 if len(self._pitches) < 2**31 else np.int64)
        self._log_ioi = np.log(np.maximum(np.diff(self._onsets, append=np.inf), MIN_IOI)
                               ).astype(np.float32)

    @property
    def lines(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{pseudo piece: (pitches int64 (n,), frame indices int64 (n,), onsets float64
        (n,) seconds)}`` of every line, copied on each read (for studies and benchmarks:
        read it once)."""
        return {int(p): (self._pitches[b:b + n].astype(np.int64),
                         self._frames[b:b + n].astype(np.int64), self._onsets[b:b + n])
                for p, b, n in zip(self.pseudos, self._base, self._len)}

    @classmethod
    def of(cls, lib) -> "LineGrams":
        """The grams of ``lib`` as it is now (rebuilt when its pieces change: their count,
        largest id or frames)."""
        key = (str(lib.path), *lib.content_state())
        if key not in cls._cache:
            cls._cache.clear()
            cls._cache[key] = cls(lib)
        return cls._cache[key]

    def length_of(self, pseudo: np.ndarray) -> np.ndarray:
        """Notes in each line (``pseudo`` int (C,), pseudo pieces in :attr:`pseudos`):
        float64 (C,), ≥ 1."""
        return np.maximum(self._len[np.searchsorted(self.pseudos, pseudo)], 1).astype(float)

    def lines_of(self, piece: np.ndarray) -> np.ndarray:
        """Lines of each piece (``piece`` int (P,), ids that have lines): float64 (P,)."""
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
        return (np.where(inside, self._pitches[idx].astype(np.int64), -1),
                np.where(inside, self._frames[idx].astype(np.int64), -1),
                np.where(inside, self._onsets[idx], np.nan))

    @classmethod
    def codes(cls, line: np.ndarray) -> np.ndarray:
        """One int64 code per run of ``GRAM`` intervals of ``line`` (int (n,) MIDI
        pitches), each interval folded to −5..6: int64 (max(n − GRAM, 0),)."""
        d = np.mod(np.diff(line) + 5, 12)
        if len(d) < cls.GRAM:
            return np.zeros(0, np.int64)
        runs = np.lib.stride_tricks.sliding_window_view(d, cls.GRAM)
        return (runs * (12 ** np.arange(cls.GRAM))).sum(1).astype(np.int64)

    def vote(self, line: np.ndarray, n: int, onsets: np.ndarray | None = None,
             bin_width: int = DEFAULT_BIN, places: int = PLACES
             ) -> list[tuple[int, list[int]]]:
        """The ``n`` best (pseudo piece, [line positions of the query's first note, at
        most ``places``]) for a tune ``line`` (int (m,) MIDI pitches).

        Each run the line shares with a library line votes for that place with how much it
        tells (:meth:`hits`: the run's rarity, and with ``onsets`` (float (m,) seconds)
        how well the place keeps the run's rhythm); a place's score is its bin's sum.
        """
        t = None if onsets is None else np.asarray(onsets, np.float64)
        own, off, w = self.hits(np.asarray(line, np.int64), t)
        if not len(own):
            return []
        keys, inv = np.unique(bin_key(own, off, bin_width), return_inverse=True)
        return best_places(keys, np.bincount(inv, weights=w), n, bin_width, places)

    def hits(self, line: np.ndarray, onsets: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Library places holding the line's runs: pseudo pieces int64 (H,), offsets int64
        (H,) (line position of the line's first note) and weights float64 (H,).

        A run's weight is its rarity, ln(runs in the library / runs like it), plus, with
        ``onsets`` (float (m,) seconds), the log likelihood of its three inter-onset
        intervals at the place's, tempo-free (σ =
        :data:`~midizero_app.core.melody_rhythm.RHYTHM_SD`, at least −:data:`RHYTHM_FLOOR`:
        a tune played in a rhythm of its own still finds its places on pitches)."""
        qc = self.codes(line)
        lo = np.searchsorted(self._codes, qc, "left")
        hi = np.searchsorted(self._codes, qc, "right")
        own, off, w = [], [], []
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b == a:
                continue
            own.append(self.pseudos[self._line[a:b]])
            off.append(self._pos[a:b].astype(np.int64) - i)
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
