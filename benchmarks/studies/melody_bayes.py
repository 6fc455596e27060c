"""Study: how far pitches can take remembered themes — rankings that look at every place of
the library, without the search's candidate step.

    python -m benchmarks.studies.melody_bayes [--n 300] [--notes 8 12] [--library ...]

Remembered themes in a random key (``melody_queries.make_themes``, melody_bench's seeds),
Top-1 of:

* **alignment, every place** — the interval alignment's score (``core/melody.align``)
  at every place of every melody line of the library, each piece by its best place;
* **likelihood, best place** / **likelihood, summed** — the app's pair-HMM
  (``core/melody.likelihood``, best of the 12 shifts around the place's register) at the
  4,000 places where that alignment ends best; a piece by its best place, or by the
  average over its lines of their mean place likelihood (the app's ranking, without its
  candidate step);
* **generator, summed** — the same sum, each place's likelihood from the benchmark's own
  slip generator (``melody_queries.remembered``: one wrong note in 16, then exactly one
  slip of a known kind). It knows how the benchmark slips, not where its themes start nor
  which pieces they come from: a search on pitches cannot expect to do much better;
* **the app** — ``search_melody`` as shipped.

About 1 s (alignment and likelihood) and 3 s (generator) a theme on a 2-core machine.

Found (2026-11-28, 2-core x86_64 VM, the benchmark library, ``--n 300 --notes 8 12``;
benchmarks/RESULTS.md, melody):

| notes | alignment, every place | likelihood, best place | likelihood, summed | generator, summed | the app |
|---|---|---|---|---|---|
| 8 | 0.550 | 0.670 | 0.703 | 0.767 | 0.633 |
| 12 | 0.860 | 0.943 | 0.967 | – (``--no-generator``) | 0.930 |

The interval alignment's best place finds no more over every place than among the
search's candidates (0.53–0.54 at 8 notes): its scores were the limit, not the
candidates. A ranking that knows exactly how the benchmark slips reaches 0.767 at 8
notes, the edge of what pitches alone can give. The app then ranked pieces by the
pair-HMM likelihood summed over places (``core/melody.likelihood``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import CACHE, grade_key
from benchmarks.melody_queries import asap_lines, line_frames, make_themes
from midizero_app.core import melody_align
from midizero_app.core.library import Library
from midizero_app.core.melody import MAX_LINES, likelihood
from midizero_app.core.melody_search import LineGrams, search_melody

PAD = 4        # padding between lines in the concatenated library
N_ENDS = 4000  # best alignment ends whose places are scored by likelihood

# The interval alignment's own scores and gap costs (core/melody.py), read from the engine so
# that "alignment, every place" ranks exactly as its alignment does.
NEG, NO_INTERVAL = melody_align.NEG, melody_align.NO_INTERVAL
SKIP_BOTH, SKIP_LIB, SKIP_QUERY, SKIP_REPEAT = (melody_align.SKIP_BOTH, melody_align.SKIP_LIB,
                                                melody_align.SKIP_QUERY, melody_align.SKIP_REPEAT)
interval_score = melody_align.interval_score


class Everything:
    """Every melody line of a library end to end (−1 between lines), for exhaustive scans."""

    def __init__(self, lib: Library):
        grams = LineGrams.of(lib)
        keys = {p["id"]: grade_key(p["path"]) for p in lib.pieces()}
        parts, starts, owners, frames = [], [], [], []
        at = 0
        for pseudo, (pitches, fr, _) in grams.lines.items():
            parts += [pitches.astype(np.int64), np.full(PAD, -1, np.int64)]
            frames += [fr.astype(np.int64), np.full(PAD, -1, np.int64)]
            starts.append(at)
            owners.append(pseudo)
            at += len(pitches) + PAD
        self.t = np.concatenate(parts)
        self.frame = np.concatenate(frames)
        self.starts = np.array(starts)
        owners = np.array(owners)
        lens = np.diff(np.append(self.starts, len(self.t)))
        self.owner = np.repeat(owners, lens)  # pseudo piece of each position
        self.key = np.array([keys[int(p // MAX_LINES)] for p in owners])  # per line
        self.key_of = keys  # per piece id
        self.line_of = owners % MAX_LINES
        self.line_idx = np.repeat(np.arange(len(owners)), lens)  # line of each position
        self.line_len = np.maximum(lens - PAD, 1).astype(float)
        self.line_piece = owners // MAX_LINES
        self.n_lines = np.bincount(self.line_piece).astype(float)
        self.pad = pad = self.t < 0
        self.lib_d = {}
        for k in (1, 2, 3):
            d = np.full(len(self.t), NO_INTERVAL, np.int32)
            d[k:] = self.t[k:] - self.t[:-k]
            d[k:][pad[k:] | pad[:-k]] = NO_INTERVAL
            self.lib_d[k] = d

    def align_ends(self, q: np.ndarray) -> np.ndarray:
        """``core/melody.align``'s score of the best alignment ending at each position
        (the same moves and costs, without backtracking): float32 (N,)."""
        m, n = len(q), len(self.t)
        rows = [np.where(self.pad, NEG, 0.0).astype(np.float32)]
        moves = [(1, 1, 0.0), (1, 2, SKIP_LIB), (1, 3, 2 * SKIP_LIB), (2, 1, SKIP_QUERY),
                 (2, 2, SKIP_BOTH)]
        for i in range(1, m):
            best = (np.where(self.pad, NEG, -SKIP_QUERY).astype(np.float32) if i == 1
                    else np.full(n, NEG, np.float32))
            for di, dj, cost in moves:
                if i - di < 0:
                    continue
                if di == 2 and dj == 1 and q[i - 1] == q[i - 2]:
                    cost = SKIP_REPEAT
                s = np.full(n, NEG, np.float32)
                s[dj:] = rows[i - di][:-dj] + interval_score(int(q[i] - q[i - di]),
                                                              self.lib_d[dj][dj:]) - cost
                np.maximum(best, s, out=best)
            best[self.pad] = NEG
            rows.append(best)
        return np.maximum(rows[m - 1], rows[m - 2] - SKIP_QUERY)


def by_best_place(keys: np.ndarray, values: np.ndarray) -> list[str]:
    """Grading keys ranked by their best value."""
    order = np.argsort(-values, kind="stable")
    seen: dict[str, None] = {}
    for i in order:
        seen.setdefault(str(keys[i]), None)
        if len(seen) >= 10:
            break
    return list(seen)


def summed(lib_all: Everything, places: np.ndarray, fit: np.ndarray) -> tuple[list, list]:
    """Rank by the best place and as the app does (every piece, each of its lines and each
    place of a line equally likely: a piece averages its lines' mean place likelihood).
    ``places``: line positions (ends or starts)."""
    real = lib_all.frame[places] >= 0  # not the padding between lines
    places, fit = places[real], fit[real]
    line = lib_all.line_idx[places]
    per_line = np.bincount(line, weights=fit, minlength=len(lib_all.line_len))
    piece = lib_all.line_piece
    total = np.bincount(piece, weights=per_line / lib_all.line_len) / np.maximum(
        lib_all.n_lines, 1)
    top = np.zeros(len(lib_all.n_lines))
    np.maximum.at(top, piece[line], fit)
    up = np.flatnonzero(top > 0)
    keys = _keys_of(lib_all, up)
    return by_best_place(keys, top[up]), by_best_place(keys, total[up])


def _keys_of(lib_all: Everything, pieces: np.ndarray) -> np.ndarray:
    """Grading keys of piece ids."""
    return np.array([lib_all.key_of[int(p)] for p in pieces])


def first(ranked: list[str]) -> str | None:
    """The top key of a ranking (None when no place fits at all)."""
    return ranked[0] if ranked else None


def hmm_fit(lib_all: Everything, q: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The app's likelihood of ``q`` ending at each of ``ends`` (best of 12 shifts)."""
    m = len(q)
    at = ends[:, None] + np.arange(-(m + 3), 1)[None, :]
    segs = np.where(at >= 0, lib_all.t[np.clip(at, 0, len(lib_all.t) - 1)], -1)
    d = segs[:, -m:] - q[None, :]
    base = np.round(np.median(np.where(segs[:, -m:] >= 0, d, 0), axis=1)).astype(np.int64)
    fit = np.zeros(len(ends))
    for off in range(-6, 6):
        fit = np.maximum(fit, likelihood(q, segs, base + off)[:, -1])
    return fit


def generator_fit(lib_all: Everything, q: np.ndarray, ends: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """P(q | a theme starting at each place near ``ends``) under
    ``melody_queries.remembered``'s generator (register free), summed over the theme's
    possible lengths: (start positions, likelihoods)."""
    n_q = len(q)
    starts = np.unique((ends[:, None] - n_q + 1 + np.arange(-3, 3)[None, :]).ravel())
    starts = starts[starts >= 0]
    out = np.zeros(len(starts))
    for length in (n_q - 1, n_q, n_q + 1):
        at = starts[:, None] + np.arange(length)[None, :]
        seg = lib_all.t[np.clip(at, 0, len(lib_all.t) - 1)]
        ok = (at < len(lib_all.t)).all(1) & (seg >= 0).all(1)
        if ok.any():
            out[ok] += _generator_lik(q, seg[ok])
    return starts, out


def _generator_lik(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``remembered()``'s probability of ``q`` from each theme in ``s`` (N, n), any shift."""
    n_rows, n = s.shape
    total = np.zeros(n_rows)

    def note(d):
        a = np.abs(d)
        return np.where(a == 0, 15 / 16, np.where(a <= 3, 1 / 16 / 6, 0.0))

    def add(v, w):
        if v.shape[1] != len(q):
            return
        d = q[None, :] - v
        base = np.round(np.median(d, axis=1)).astype(np.int64)[:, None]
        for off in range(-8, 9):
            total[:] += w * np.prod(note(d - base - off), axis=1) / 12

    reps = np.zeros((n_rows, n), bool)
    reps[:, 1:] = s[:, 1:] == s[:, :-1]
    n_rep = reps.sum(1)
    for r in range(1, n):  # a repeated note dropped ...
        add(np.delete(s, r, axis=1), np.where(reps[:, r], 0.5 / 3 / np.maximum(n_rep, 1), 0))
    for i in range(n):     # ... or one added
        add(np.insert(s, i, s[:, i], axis=1), np.where(n_rep > 0, 0.5, 1.0) / 3 / n)
    octave = np.where(s < 72, 12, -12)
    for i in range(n):     # one or two notes an octave off
        v = s.copy()
        v[:, i] += octave[:, i]
        add(v, np.full(n_rows, 0.5 / 3 / n))
        for j in range(i + 1, n):
            v2 = v.copy()
            v2[:, j] += octave[:, j]
            add(v2, np.full(n_rows, 0.5 / 3 / (n * (n - 1) / 2)))
    steps = np.zeros((n_rows, n), bool)
    steps[:, 1:n - 1] = np.abs(s[:, 1:n - 1] - s[:, :n - 2]) <= 2
    n_step = steps.sum(1)
    for r in range(1, n - 1):  # a step-wise note left out ...
        add(np.delete(s, r, axis=1), np.where(steps[:, r], 0.5 / 3 / np.maximum(n_step, 1), 0))
    for i in range(1, n):      # ... or a neighbour note added
        for dl in (-2, -1, 1, 2):
            add(np.insert(s, i, s[:, i] + dl, axis=1),
                np.where(n_step > 0, 0.5, 1.0) / 3 / (n - 1) / 4)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--notes", type=int, nargs="+", default=[8, 12])
    ap.add_argument("--no-generator", action="store_true", help="skip the slowest ranking")
    args = ap.parse_args()
    lib = Library(args.library)
    lib.load_index(view="melody")
    lines = asap_lines(lib)
    every = Everything(lib)
    print(f"{len(every.t):,} line positions, {len(every.starts):,} lines", flush=True)
    names = ["alignment, every place", "likelihood, best place", "likelihood, summed",
             "generator, summed", "the app"]
    rows = ["| notes | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for length in args.notes:
        themes = make_themes(lines, args.n, length, length, True, "remembered")[:args.n]
        hits = {k: [] for k in names}
        t0 = time.perf_counter()
        for t in themes:
            q = np.asarray(t.pitches, np.int64)
            end_score = every.align_ends(q)
            per_line = np.maximum.reduceat(end_score, every.starts) - 1e-3 * (every.line_of > 0)
            hits[names[0]].append(first(by_best_place(every.key, per_line)) == t.key)
            ends = np.argpartition(-end_score, N_ENDS)[:N_ENDS]
            ends = ends[every.t[ends] >= 0]
            best, total = summed(every, ends, hmm_fit(every, q, ends))
            hits[names[1]].append(first(best) == t.key)
            hits[names[2]].append(first(total) == t.key)
            if not args.no_generator:
                hits[names[3]].append(first(summed(every, *generator_fit(every, q, ends))[1])
                                      == t.key)
            cands, _ = search_melody(lib, line_frames(q))
            hits[names[4]].append(bool(cands)
                                  and grade_key(lib.piece(cands[0].piece)["path"]) == t.key)
        cells = [f"{np.mean(hits[k]):.3f}" if hits[k] else "–" for k in names]
        rows.append(f"| {length} | {len(themes)} | " + " | ".join(cells) + " |")
        print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
