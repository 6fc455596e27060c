"""A library of a given size for Top-1 at scale: the benchmark library's catalogue plus
generated pieces, compact index (ivf-sq6), searched through the app's own code.

    python -m benchmarks.scale_library --windows 5000000 [--source benchmarks/.cache/asap-library]
                                       [--out benchmarks/.cache/scale-library-5000000]
    python -m benchmarks.asap_bench --library benchmarks/.cache/scale-library-5000000 \\
        --split test --n 200 --lengths 5 10 20 --methods vote --no-midifind --holdout 0

The real pieces are the source library's (ASAP's 235 scores and the music21 corpus pieces,
``benchmarks/build_library.py``), copied with SQLite's backup API and converted to ivf-sq6
by :meth:`~midizero_app.core.library.Library.convert_index_kind`. The rest, up to
``--windows`` texture windows, are the generated mode-S pieces of ``scale_bench``'s cache
(``benchmarks/.cache/scale/<model id>/``; fill it first with ``python -m
benchmarks.scale_bench --sizes N --generate-only``): only the cache's chunks that keep
their pieces' frames are used, so a generated piece is a whole library piece — frames
(a chord every 0.25 s, no bar lines), texture vectors as the cache holds them — and
verification, note agreement and the confidence treat it as any other. Generated pieces
have no melody windows (an empty melody row each): a query searched in the melody view
meets only the real pieces there; the benchmark prints how many queries that was.

The texture index is then rebuilt from the stored vectors through the library's own
:meth:`~midizero_app.core.library.Library.load_index`, timed (the build rate printed), and
probed in a fresh process (``--probe DIR`` alone does only this): the time to open the
library and load its texture index, the resident memory then, and the kNN time of 100
queries of 60 windows (k = 10; each a stored window of a real piece with noise added,
about 0.89 cosine from it, as ``scale_bench`` makes them) with the share whose source
window is among the 10 found.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, ROOT, copy_library
from benchmarks.scale_bench import NOISE, QUERY_WINDOWS, SCALE_CACHE, rss_mb
from midizero_app.core import index_store
from midizero_app.core.catalogue import row_digest
from midizero_app.core.index_store import IVF_SQ6, VIEWS
from midizero_app.core.library import Library
from midizero_app.core.windows import LIBRARY_HOP, WIN_LENGTH, window_starts

SECONDS_PER_FRAME = 0.25  # generated pieces' chords, evenly spaced


def chunks_with_frames(model_id: str):
    """The cache's chunks that keep their pieces' frames, in order: (name, npz)."""
    for path in sorted((SCALE_CACHE / model_id).glob("S-*.npz")):
        z = np.load(path)
        if "n_frames" in z.files:
            yield path.stem, z


def generated_pieces(model_id: str):
    """Generated pieces one by one: (name, frames row blobs, starts int32, vectors float16)."""
    for name, z in chunks_with_frames(model_id):
        emb, lengths = z["emb"], z["lengths"]
        per_frame, pitches = z["per_frame"], z["pitches"].astype(np.int16)
        first_frame, first_pitch, first_win = 0, 0, 0
        for i, n in enumerate(z["n_frames"]):
            counts = per_frame[first_frame:first_frame + n]
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            pit = pitches[first_pitch:first_pitch + int(offsets[-1])]
            starts = window_starts(int(n), LIBRARY_HOP, WIN_LENGTH).astype(np.int32)
            m = int(lengths[i])
            if len(starts) != m:
                raise SystemExit(f"{name}: piece {i} has {m} windows but {len(starts)} starts")
            blobs = ((np.arange(n) * SECONDS_PER_FRAME).astype(np.float64).tobytes(),
                     offsets.tobytes(), pit.tobytes(), np.full(n, -1, np.int32).tobytes(),
                     np.full(n, np.nan, np.float32).tobytes(), None)
            yield f"{name}/{i}", blobs, starts, emb[first_win:first_win + m]
            first_frame += int(n)
            first_pitch += int(offsets[-1])
            first_win += m


def add_generated(folder: Path, model_id: str, texture_key: str, melody_key: str,
                  want: int) -> tuple[int, int]:
    """Store generated pieces in the library at ``folder`` (closed) until its texture
    windows reach ``want``: (pieces added, texture windows now). Each batch of pieces is
    one transaction that also moves the texture view's next label on, so a stopped run
    leaves a consistent library."""
    db = sqlite3.connect(folder / "library.sqlite")
    try:
        have = sum(n for (n,) in db.execute(
            "SELECT length(starts) / 4 FROM vectors WHERE model_id=?", (texture_key,)))
        label = db.execute("SELECT next_label FROM index_state WHERE model_id=?",
                           (texture_key,)).fetchone()[0]
        # an empty melody row stands at the view's next label, as the library writes one
        melody_label = db.execute("SELECT next_label FROM index_state WHERE model_id=?",
                                  (melody_key,)).fetchone()[0]
        added = 0
        gen = generated_pieces(model_id)
        while have < want:
            batch = list(itertools.islice(gen, 2000))
            if not batch:
                raise SystemExit(f"the cache holds too few generated windows with frames "
                                 f"({have:,} of {want:,}): run scale_bench --generate-only "
                                 "with a larger size")
            with db:
                for name, blobs, starts, emb in batch:
                    if have >= want:
                        break
                    n = len(blobs[0]) // 8
                    pid = db.execute(
                        "INSERT INTO pieces(path, size, mtime, hash, title, composer, format, "
                        "status, n_frames, duration, kind, added) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (f"generated:{name}", 0, 0.0, None, f"generated {name}", None,
                         "generated", "ok", n, n * SECONDS_PER_FRAME, "score",
                         time.time())).lastrowid
                    db.execute("INSERT INTO frames(piece, onset, offsets, pitches, measure, beat,"
                               " voices, digest) VALUES (?,?,?,?,?,?,?,?)",
                               (pid, *blobs, row_digest(*blobs)))
                    v = (starts.tobytes(), index_store.encode_vectors(emb, IVF_SQ6))
                    db.execute("INSERT INTO vectors(piece, model_id, first_label, starts, emb,"
                               " digest) VALUES (?,?,?,?,?,?)",
                               (pid, texture_key, label, *v, row_digest(*v)))
                    db.execute("INSERT INTO vectors(piece, model_id, first_label, starts, emb,"
                               " digest) VALUES (?,?,?,?,?,?)",
                               (pid, melody_key, melody_label, b"", b"", row_digest(b"", b"")))
                    label += len(starts)
                    have += len(starts)
                    added += 1
                # the saved index no longer matches: the next load rebuilds it from the vectors
                db.execute("UPDATE index_state SET next_label=?, checksum='' WHERE model_id=?",
                           (label, texture_key))
            print(f"  {have:,} texture windows", flush=True)
    finally:
        db.close()
    return added, have


def probe(folder: Path, n_queries: int = 100, seed: int = 0) -> dict:
    """Open the library, load its texture index and time kNN queries (in this process:
    run it in a fresh one for the memory figure)."""
    r0 = rss_mb()
    t = time.perf_counter()
    lib = Library(folder)
    lib.load_index(view="texture")
    open_s = time.perf_counter() - t
    rss = rss_mb() - r0
    rng = np.random.default_rng(seed)
    real = [p["id"] for p in lib.pieces() if not p["path"].startswith("generated:")]
    lp, lf = lib.label_maps
    times, hits = [], []
    while len(times) < n_queries:
        pid = int(rng.choice(real))
        starts, vecs = lib.window_vectors(pid, 0, 1e9)
        if len(starts) < QUERY_WINDOWS:
            continue
        s = int(rng.integers(0, len(starts) - QUERY_WINDOWS + 1))
        x = vecs[s:s + QUERY_WINDOWS] + rng.normal(0, NOISE, (QUERY_WINDOWS, vecs.shape[1]))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        t = time.perf_counter()
        labels, _ = lib.knn(x, 10)
        times.append((time.perf_counter() - t) * 1000)
        hits.append(np.mean([np.any((row >= 0) & (lp[np.clip(row, 0, None)] == pid) &
                                    (lf[np.clip(row, 0, None)] == starts[s + i]))
                             for i, row in enumerate(labels)]))
    lib.close()
    return {"open_s": open_s, "rss_mb": rss, "knn_ms_median": float(np.median(times)),
            "knn_ms_p90": float(np.percentile(times, 90)), "source_at10": float(np.mean(hits))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=5_000_000)
    ap.add_argument("--source", default=str(CACHE / "asap-library"))
    ap.add_argument("--out")
    ap.add_argument("--probe", help="only probe this library (open time, memory, kNN)")
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe(Path(args.probe))))
        return
    out = Path(args.out or CACHE / f"scale-library-{args.windows}")
    print(f"# scale_library {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on "
          f"{platform.node()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})", flush=True)
    copy_library(args.source, out)
    with Library(out) as lib:
        t = time.perf_counter()
        lib.convert_index_kind(IVF_SQ6)
        print(f"  real pieces converted to {IVF_SQ6} in {time.perf_counter() - t:.0f} s",
              flush=True)
        model_id = lib.model_id
        keys = {v: lib.views[v].key(model_id) for v in VIEWS}
    added, n = add_generated(out, model_id, keys["texture"], keys["melody"], args.windows)
    r0 = rss_mb()
    with Library(out) as lib:
        t = time.perf_counter()
        lib.load_index(view="texture")
        build_s = time.perf_counter() - t
        pieces = len(lib.pieces())
    index_file = next(out.glob(f"index-{model_id}{index_store.SUFFIXES[IVF_SQ6]}"))
    print(f"\n| texture windows | generated pieces added | pieces | index rebuilt s | windows/s "
          f"| index bytes/window | RSS+ MB after the build |\n|---|---|---|---|---|---|---|\n"
          f"| {n:,} | {added:,} | {pieces:,} | {build_s:.0f} | {n / build_s:,.0f} "
          f"| {index_file.stat().st_size / n:.0f} | {rss_mb() - r0:.0f} |", flush=True)
    out_s = subprocess.run([sys.executable, "-m", "benchmarks.scale_library", "--probe", str(out)],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout
    p = json.loads(out_s.strip().splitlines()[-1])
    print(f"\n| texture windows | open + load index s | RSS after opening MB | 60-window kNN "
          f"median / p90 ms | source@10 |\n|---|---|---|---|---|\n"
          f"| {n:,} | {p['open_s']:.2f} | {p['rss_mb']:.0f} | {p['knn_ms_median']:.1f} / "
          f"{p['knn_ms_p90']:.1f} | {p['source_at10']:.3f} |")


if __name__ == "__main__":
    main()
