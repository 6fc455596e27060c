"""Score voices as melody lines: tunes from inner voices, with and without.

    python -m benchmarks.voice_lines_bench [--n 40] [--seed 0] [--workdir DIR]

Library: 100 music21-corpus scores with voices — 60 Bach chorales (MusicXML), 20
Palestrina mass movements (Humdrum) and 20 Monteverdi madrigals (MusicXML) — indexed once
("voices"). A copy of it with the stored voice lines emptied and the melody view made
again from the stored frames is the library searched by its top lines alone ("top line
only"); both melody views are made the same way (from stored frames) and timed.

Queries come from music21's own parse of each score (parts, ties merged, a chord's top
note): 8, 12 or 16 consecutive notes of the top part (soprano / canto) or of an inner part
(neither top nor bottom), from a random place, in a random key (±1..6 semitones), exact or
remembered (``melody_queries.remembered``: wrong notes and one slip), searched as a user's
tune (``search_library``, automatic mode: both views, a tune answered by the melody view
first) and in the melody view alone (``melody=True``). Top-1 is right when
the first piece is the query's score or holds the same run of intervals in one of its
parts (Bach harmonised some chorale tunes more than once).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.melody_queries import line_frames, remembered
from midizero_app.core.library import Library
from midizero_app.core.query import search_library

LENGTHS = (8, 12, 16)
SETS = (("bach", ".mxl", 60), ("palestrina", ".krn", 20), ("monteverdi", ".mxl", 20))


@dataclass
class Query:
    path: str            # the score the notes come from (as stored in the library)
    part: str            # "top" or "inner"
    form: str            # "exact" or "remembered"
    original: np.ndarray  # the score's notes (int64 (L,))
    pitches: np.ndarray  # what is played: the notes moved to another key, maybe slipped


def corpus_files() -> list[Path]:
    """The library's scores: the first files of each corpus set, by name."""
    import music21

    out = []
    for composer, suffix, n in SETS:
        paths = sorted(Path(str(p)) for p in music21.corpus.getComposer(composer)
                       if str(p).endswith(suffix))
        out += paths[:n]
    return out


def part_lines(path: Path) -> list[np.ndarray]:
    """music21's parts of a score, top to bottom: each part's notes (a chord's top note),
    ties merged; int64 MIDI pitches."""
    import music21

    score = music21.converter.parse(str(path))
    lines = []
    for part in score.parts:
        notes = part.stripTies().recurse().notes
        lines.append(np.array([max(p.midi for p in n.pitches) for n in notes], np.int64))
    return [ln for ln in lines if len(ln)]


def make_queries(lines: dict[str, list[np.ndarray]], n: int, seed: int) -> list[Query]:
    """``n`` queries per (part kind, length, form), from random scores and places."""
    rng = np.random.default_rng(seed)
    paths = sorted(lines)
    out = []
    for part in ("top", "inner"):
        for length in LENGTHS:
            for form in ("exact", "remembered"):
                made = 0
                while made < n:
                    path = paths[int(rng.integers(len(paths)))]
                    parts = lines[path]
                    k = 0 if part == "top" else int(rng.integers(1, max(len(parts) - 1, 2)))
                    if len(parts) < 3 or len(parts[k]) < length + 1:
                        continue
                    start = int(rng.integers(len(parts[k]) - length + 1))
                    orig = parts[k][start:start + length]
                    played = orig + int(rng.choice([-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6]))
                    if form == "remembered":
                        played = remembered(played, np.arange(len(played)) * 0.3, rng)[0]
                    out.append(Query(path, part, form, orig, played))
                    made += 1
    return out


def holds(lines: list[np.ndarray], notes: np.ndarray) -> bool:
    """True when one of the lines has the notes' run of intervals (in any key)."""
    want = np.diff(notes)
    for ln in lines:
        d = np.diff(ln)
        if len(d) >= len(want) and np.any(np.all(
                np.lib.stride_tricks.sliding_window_view(d, len(want)) == want, axis=1)):
            return True
    return False


def melody_view_copy(src: Path, dst: Path, keep_voices: bool) -> tuple[float, int]:
    """Copy a library without its melody view (and, unless ``keep_voices``, without its
    stored voice lines), then make the melody view from the stored frames.

    Returns (seconds to embed and index the melody view, its windows)."""
    shutil.copytree(src, dst)
    for f in dst.glob("index-melody*"):
        f.unlink()
    db = sqlite3.connect(dst / "library.sqlite")
    if not keep_voices:
        db.execute("UPDATE frames SET voices = NULL")
    db.execute("DELETE FROM vectors WHERE model_id LIKE 'melody%'")
    db.execute("DELETE FROM index_state WHERE model_id LIKE 'melody%'")
    db.commit()
    db.close()
    with Library(dst) as lib:
        lib.embedder.embed(np.zeros((1, lib.embedder.win_length, 88), np.uint8))  # load it
        t0 = time.perf_counter()
        lib.load_index(view="melody")
        seconds = time.perf_counter() - t0
    db = sqlite3.connect(f"file:{dst / 'library.sqlite'}?mode=ro", uri=True)
    try:
        windows = db.execute("SELECT SUM(length(starts) / 4) FROM vectors"
                             " WHERE model_id LIKE 'melody%'").fetchone()[0]
    finally:
        db.close()
    return seconds, int(windows)


def run(lib_dir: Path, queries: list[Query], lines: dict[str, list[np.ndarray]]) -> dict:
    """Top-1 per (part, length, form, reading), reading ``"auto"`` or ``"melody"``
    (the melody view alone); the share searched as a tune; median ms per reading."""
    cells: dict[tuple, list[int]] = {}
    ms: dict[str, list[float]] = {"auto": [], "melody": []}
    tunes = 0
    with Library(lib_dir) as lib:
        search_library(lib, line_frames(queries[0].pitches))  # load indexes, build grams
        for q in queries:
            for reading, melody in (("auto", "auto"), ("melody", True)):
                t0 = time.perf_counter()
                res = search_library(lib, line_frames(q.pitches), top=3, melody=melody)
                ms[reading].append(1000 * (time.perf_counter() - t0))
                tunes += reading == "auto" and res["mode"] == "melody"
                first = res["results"][0]["path"] if res["results"] else None
                ok = first == q.path or holds(lines.get(first, []), q.original)
                cells.setdefault((q.part, len(q.original), q.form, reading), []).append(int(ok))
    return {"cells": cells, "ms": {r: float(np.median(v)) for r, v in ms.items()},
            "tunes": tunes / len(queries)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="queries per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the libraries go (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="voice-lines-"))
    scores = work / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    for f in corpus_files():
        (scores / f"{f.parent.name}_{f.name}").write_bytes(f.read_bytes())
    t0 = time.perf_counter()
    with Library(work / "voices-indexed") as lib:
        report = lib.add([scores])
        texture_windows = lib.stats()["windows"]
    add_s = time.perf_counter() - t0
    print(f"indexed {len(report.added)} scores ({len(report.failed)} failed) in {add_s:.1f} s, "
          f"{texture_windows} texture windows", flush=True)
    views = {}
    for name, keep in (("top line only", False), ("voices", True)):
        views[name] = melody_view_copy(work / "voices-indexed", work / name.replace(" ", "-"),
                                       keep)
        print(f"{name}: melody view {views[name][1]} windows in {views[name][0]:.1f} s",
              flush=True)
    lines = {str(p.resolve()): part_lines(p) for p in sorted(scores.iterdir())}
    queries = make_queries(lines, args.n, args.seed)
    results = {name: run(work / name.replace(" ", "-"), queries, lines) for name in views}
    print_table(results, views, args.n, len(report.added), add_s, texture_windows)


def print_table(results: dict, views: dict, n: int, pieces: int, add_s: float,
                texture_windows: int) -> None:
    names = list(views)
    print(f"\n{platform.machine()}, {pieces} scores, {n} queries per cell, indexed in "
          f"{add_s:.1f} s ({texture_windows} texture windows)\n")
    readings = ("auto", "melody")
    print("| part | notes | form | " + " | ".join(
        f"Top-1 {r}, {m}" for r in readings for m in names) + " |")
    print("|---|---|---|" + "---|" * (len(names) * len(readings)))
    keys = sorted({k[:3] for k in results[names[0]]["cells"]},
                  key=lambda k: (k[0] != "top", k[1], k[2]))
    for key in keys:
        vals = [np.mean(results[m]["cells"][(*key, r)]) for r in readings for m in names]
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{v:.3f}" for v in vals)
              + " |")
    print("\n| melody view | windows | made from stored frames (s) | median ms auto |"
          " median ms melody view | searched as a tune |")
    print("|---|---|---|---|---|---|")
    for m in names:
        r = results[m]
        print(f"| {m} | {views[m][1]} | {views[m][0]:.1f} | {r['ms']['auto']:.1f} | "
              f"{r['ms']['melody']:.1f} | {r['tunes']:.2f} |")


if __name__ == "__main__":
    main()
