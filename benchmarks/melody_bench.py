"""Theme, played-melody and version queries, beside an interval n-gram baseline.

    python -m benchmarks.melody_bench [--n 1000] [--library benchmarks/.cache/asap-library]
                                      [--parts themes ceiling played versions holdout
                                               intervals] [--rhythm score|none]

Library: the ASAP score MIDIs plus the music21 corpus distractors
(``python -m benchmarks.build_library``). Queries: :mod:`benchmarks.melody_queries`.

* themes: the top line (highest note of each score frame) of 8, 12, 16 and 24 consecutive
  notes from random downbeats of the ASAP scores, in the original and in a random key
  (±1..6 semitones), exact and "remembered" (``melody_queries.remembered``); the piece
  openings on their own. Graded by piece.
* ceiling: how many pieces hold each exact theme's intervals — the best Top-1 a search on
  pitches alone can expect (ties broken at random) — and how many hold them in the same
  rhythm: the best a search on pitches and rhythm can expect.
* played: the highest note of each frame of random 5 s and 10 s excerpts of the real
  performances, in a random key.
* versions: whole 10 s performance excerpts transposed by ±1..6, searched with ``any_key``
  (full texture): Top-1, the reported shift, latency against the plain search.
* intervals: the share of each interval among the distractors' melody lines (the alignment's
  exact-interval scores are made from it).
* holdout: 20 % of the ASAP pieces removed from a copy of the library; themes of every
  length and form (random key) from them should be rejected, the rest still found, with
  the shipped melody confidence (``models/melody-confidence.npz``, made by
  ``python -m scripts.fit_melody_confidence``).

``--rhythm``: themes in the score's rhythm as a player times it (the default), or one note
every 0.3 s (``none``: the rhythm tells nothing).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date

import numpy as np

from benchmarks import melody_queries as mq
from benchmarks.common import CACHE, asap_dir, grade_key, load_performances, make_queries
from benchmarks.melody_queries import (LENGTHS, asap_lines, grade, holdout, make_themes,
                                       played_queries, run_themes, summarise)
from midizero_app.core.library import Library
from midizero_app.core.melody import MAX_LINES, skyline
from midizero_app.core.melody_search import LineGrams
from midizero_app.core.query import search_library


class IntervalNgrams:
    """The classical baseline: interval n-grams of the library's top lines, offset voting.

    Each run of ``n`` intervals of a query looks up the same run in the library; a hit
    votes for (piece, library position − query position), binned by ``bin_width``; a
    piece's score is its best bin's vote count. Intervals make it key-invariant.
    """

    def __init__(self, lib: Library, n: int = 4, bin_width: int = 4):
        self.n, self.bw = n, bin_width
        codes, pieces, pos = [], [], []
        self.keys: dict[int, str] = {}
        for p in lib.pieces():
            if p["status"] == "failed":
                continue
            line = skyline(lib.frames_of(p["id"])).astype(np.int64)
            c = self._codes(line)
            codes.append(c)
            pieces.append(np.full(len(c), p["id"], np.int64))
            pos.append(np.arange(len(c)))
            self.keys[p["id"]] = grade_key(p["path"])
        codes, pieces, pos = (np.concatenate(a) for a in (codes, pieces, pos))
        order = np.argsort(codes, kind="stable")
        self.codes, self.pieces, self.pos = codes[order], pieces[order], pos[order]

    def _codes(self, line: np.ndarray) -> np.ndarray:
        d = np.clip(np.diff(line), -24, 24) + 24  # 0..48
        if len(d) < self.n:
            return np.zeros(0, np.int64)
        win = np.lib.stride_tricks.sliding_window_view(d, self.n)
        return (win * (49 ** np.arange(self.n))).sum(1)

    def search(self, line: np.ndarray, top: int = 10) -> list[str]:
        qc = self._codes(np.asarray(line, np.int64))
        lo = np.searchsorted(self.codes, qc, "left")
        hi = np.searchsorted(self.codes, qc, "right")
        hits_p, hits_o = [], []
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b - a > 20000:  # a gram everywhere (a scale run) carries no information
                continue
            hits_p.append(self.pieces[a:b])
            hits_o.append(self.pos[a:b] - i)
        if not hits_p:
            return []
        p, o = np.concatenate(hits_p), np.concatenate(hits_o)
        key = p * 1_000_000 + (o // self.bw + 500_000)
        uk, counts = np.unique(key, return_counts=True)
        best: dict[str, int] = {}
        for k, c in zip(uk // 1_000_000, counts):
            g = self.keys[int(k)]
            best[g] = max(best.get(g, 0), int(c))
        return sorted(best, key=lambda g: -best[g])[:top]


def table_themes(lib, lines, base, n, seed, forms=("exact", "remembered"),
                 keys=("original", "random")) -> list[str]:
    rows = ["| form | key | notes | n | Top-1 | Top-1 unflagged | MRR | baseline Top-1 | baseline MRR | ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for form in forms:
        for key_shift in [k == "random" for k in keys]:
            for length in LENGTHS:
                themes = make_themes(lines, n, length, seed + length, key_shift, form)
                r = run_themes(lib, themes, base)
                rows.append(_row(f"{form} | {'random' if key_shift else 'original'} | {length}",
                                 len(themes), r))
                print(rows[-1], flush=True)
    for form in ("exact", "remembered"):
        for length in (12, 16):
            themes = make_themes(lines, 0, length, seed + 99, True, form, openings=True)
            r = run_themes(lib, themes, base)
            rows.append(_row(f"{form}, openings | random | {length}", len(themes), r))
            print(rows[-1], flush=True)
    return rows


def _row(label: str, n: int, r: dict) -> str:
    """A table row of :func:`run_themes`' result: label cells, n, ours, baseline, ms."""
    return (f"| {label} | {n} | {r['top1']:.3f} | {r['top1_unflagged']:.3f} | {r['mrr']:.3f} | "
            f"{r['base']['top1']:.3f} | {r['base']['mrr']:.3f} | {r['ms_median']:.0f} |")


def table_played(lib, perfs, base, n, seed) -> list[str]:
    """Played melodies through the melody view (as the themes, but the notes at their
    played times, so a spread chord's bass can be told from the tune), and through the
    app's own search (``search_library`` in auto mode): the query must be recognised as a
    melody by itself."""
    rows = ["| played melody | n | Top-1 | Top-1 unflagged | MRR | baseline Top-1 | baseline MRR | "
            "ms | app, auto mode: Top-1 (modes) |", "|---|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(seed)
    for length in (5.0, 10.0):
        themes, notes, auto, modes = [], [], [], {}
        for theme, played in played_queries(perfs, length, n, seed, rng):
            themes.append(theme)
            notes.append(played)
            res = search_library(lib, played, top=10)
            auto.append(bool(res["results"]) and
                        grade_key(res["results"][0]["path"]) == theme.key)
            modes[res["mode"]] = modes.get(res["mode"], 0) + 1
        r = run_themes(lib, themes, base, notes)
        rows.append(_row(f"{length:.0f} s, random key", len(themes), r)
                    + f" {np.mean(auto):.3f} ({', '.join(f'{m} {c}' for m, c in modes.items())}) |")
        print(rows[-1], flush=True)
    return rows


def table_versions(lib, perfs, n, seed) -> list[str]:
    rng = np.random.default_rng(seed)
    qs = make_queries(perfs, 10.0, n, seed + 3)
    plain, anyk, shift_ok, t_plain, t_any = [], [], [], [], []
    for q in qs:
        shift = int(rng.choice([s for s in range(-6, 7) if s]))
        t0 = time.perf_counter()
        r0 = search_library(lib, q.frames, melody=False)
        t_plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r1 = search_library(lib, q.frames.transposed(shift), melody=False, any_key=True)
        t_any.append(time.perf_counter() - t0)
        plain.append(grade([grade_key(r["path"]) for r in r0["results"]], q.key))
        anyk.append(grade([grade_key(r["path"]) for r in r1["results"]], q.key))
        if anyk[-1] == 1:
            shift_ok.append(r1["results"][0]["transpose"] == -shift)
    p, a = summarise(plain), summarise(anyk)
    rows = ["| versions (10 s, ±1..6) | n | Top-1 untransposed | Top-1 any key | shift right |"
            " ms plain (median) | ms any key (median) | ratio |",
            "|---|---|---|---|---|---|---|---|",
            f"| performance excerpts | {len(qs)} | {p['top1']:.3f} | {a['top1']:.3f} | "
            f"{np.mean(shift_ok):.3f} | {1000 * np.median(t_plain):.1f} | "
            f"{1000 * np.median(t_any):.1f} | {np.median(t_any) / np.median(t_plain):.2f} |"]
    print(rows[-1], flush=True)
    return rows


def table_intervals(lib: Library) -> list[str]:
    """The share of each interval −12..+12 semitones among the melody lines of the
    library's pieces outside ASAP (the music21 corpus): ``melody_align.INTERVAL_SHARE``."""
    asap = {p["id"] for p in lib.pieces() if p["path"].endswith("midi_score.mid")}
    counts = np.zeros(25)
    for pseudo, (pitches, *_) in LineGrams.of(lib).lines.items():
        if pseudo // MAX_LINES not in asap:
            d = np.diff(pitches)
            counts += np.bincount(d[np.abs(d) <= 12] + 12, minlength=25)
    share = counts / counts.sum()
    return ["| interval | " + " | ".join(f"{i:+d}" for i in range(-12, 13)) + " |",
            "|---" * 26 + "|",
            "| share | " + " | ".join(f"{x:.4f}" for x in share) + " |"]


def table_ceiling(lib: Library, lines, n: int, seed: int) -> list[str]:
    """How many pieces hold an exact theme's intervals (the table's exact, random-key
    themes): no search on pitches alone can tell those pieces apart, so the mean of
    1 / (pieces holding it) is the best Top-1 any pitch-only method can expect. The same
    counting only the pieces that hold it in the same rhythm (every inter-onset interval
    within 5 % of the theme's, at a tempo of their own) bounds a search on pitches and
    rhythm: the rest needs knowing which pieces people play."""
    from midizero_app.core.melody import MAX_LINES
    from midizero_app.core.melody_search import LineGrams

    grams = LineGrams.of(lib)
    glines = grams.lines  # made once: each read of the property copies every line
    owner = {p["id"]: grade_key(p["path"]) if p["path"].endswith("midi_score.mid")
             else p["path"] for p in lib.pieces()}
    rows = ["| exact themes, any key | n | held by 1 piece only | mean 1 / pieces holding it "
            "(pitch-only ceiling) | median pieces | held by 1 piece in its rhythm | "
            "pitch-and-rhythm ceiling |", "|---|---|---|---|---|---|---|"]
    for length in LENGTHS:
        codes, pseudos, starts = [], [], []
        for pseudo, (pitches, *_) in glines.items():
            c = _interval_codes(pitches, length - 1)
            codes.append(c)
            pseudos.append(np.full(len(c), pseudo))
            starts.append(np.arange(len(c)))
        codes, pseudos, starts = (np.concatenate(a) for a in (codes, pseudos, starts))
        order = np.argsort(codes)
        codes, pseudos, starts = codes[order], pseudos[order], starts[order]
        holders, in_rhythm = [], []
        for t in make_themes(lines, n, length, seed + length, True, "exact"):
            qc = _interval_codes(t.pitches, length - 1)[0]
            a, b = np.searchsorted(codes, qc), np.searchsorted(codes, qc, "right")
            same = [pseudos[i] // MAX_LINES for i in range(a, b)
                    if _same_rhythm(glines[pseudos[i]][2][starts[i]:starts[i] + length],
                                    t.score_onsets)]
            holders.append(len({owner[int(p)] for p in pseudos[a:b] // MAX_LINES} | {t.key}))
            in_rhythm.append(len({owner[int(p)] for p in same} | {t.key}))
        h, r = np.array(holders), np.array(in_rhythm)
        rows.append(f"| {length} notes | {len(h)} | {np.mean(h == 1):.3f} | {np.mean(1 / h):.3f} | "
                    f"{np.median(h):g} | {np.mean(r == 1):.3f} | {np.mean(1 / r):.3f} |")
        print(rows[-1], flush=True)
    return rows


def _same_rhythm(a: np.ndarray, b: np.ndarray, tolerance: float = 0.05) -> bool:
    """True when two note-time sequences (seconds) have the same rhythm at some tempo:
    every log inter-onset interval ratio within ``tolerance`` of their mean."""
    r = (np.log(np.maximum(np.diff(a), 1e-3)) - np.log(np.maximum(np.diff(b), 1e-3)))
    return bool(np.all(np.abs(r - r.mean()) <= tolerance))


def _interval_codes(line: np.ndarray, n: int) -> np.ndarray:
    """One sortable bytes code (numpy void) per run of ``n`` exact intervals (clipped to
    ±40) of a line."""
    d = (np.clip(np.diff(np.asarray(line, np.int64)), -40, 40) + 40).astype(np.uint8)
    kind = np.dtype((np.void, n))
    if len(d) < n:
        return np.zeros(0, kind)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(d, n)).view(kind).ravel()


def main() -> None:
    ap = argparse.ArgumentParser(description="Theme, played-melody and version queries.")
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", nargs="+", default=["themes", "played", "versions", "holdout"])
    ap.add_argument("--forms", nargs="+", default=["exact", "remembered"])
    ap.add_argument("--keys", nargs="+", default=["original", "random"],
                    help="themes in the original key and/or a random one")
    ap.add_argument("--sources", nargs="+", default=["learned", "grams"],
                    help="melody candidate sources (ablation)")
    ap.add_argument("--rhythm", choices=["score", "none"], default="score",
                    help="themes in the score's rhythm (played with human timing) or one "
                         "note every 0.3 s")
    args = ap.parse_args()
    mq.SOURCES, mq.RHYTHM = tuple(args.sources), args.rhythm
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    lines = asap_lines(lib)
    if {"themes", "played", "holdout"} & set(args.parts):
        t0 = time.perf_counter()
        lib.load_index(view="melody")
        print(f"melody view ready in {time.perf_counter() - t0:.1f} s", flush=True)
    base = IntervalNgrams(lib) if {"themes", "played"} & set(args.parts) else None
    out = [f"## Melody, theme and version queries — {date.today()}, {platform.machine()}, "
           f"2 cores, no GPU (`python -m benchmarks.melody_bench --n {args.n}`)", ""]
    if "themes" in args.parts:
        out += table_themes(lib, lines, base, args.n, args.seed, args.forms, args.keys) + [""]
    if "ceiling" in args.parts:
        out += table_ceiling(lib, lines, args.n, args.seed) + [""]
    if "intervals" in args.parts:
        out += table_intervals(lib) + [""]
    if "played" in args.parts or "versions" in args.parts:
        perfs = load_performances(asap)
        if "played" in args.parts:
            out += table_played(lib, perfs, base, args.n, args.seed) + [""]
        if "versions" in args.parts:
            out += table_versions(lib, perfs, args.n, args.seed) + [""]
    if "holdout" in args.parts:
        rows, _ = holdout(lib, lines, min(args.n, 300), args.seed + 11)
        out += rows + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
