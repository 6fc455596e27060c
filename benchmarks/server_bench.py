"""A shared library on a Milvus server against the local index: Top-1 and added latency.

    python -m benchmarks.server_bench [--windows 1000000] [--n 100] [--lengths 5 10 20]
                                      [--knn 20] [--source benchmarks/.cache/asap-only]

The library: the ASAP scores of ``--source`` (read-only; copied) filled to ``--windows``
texture windows with generated mode-S pieces (benchmarks/scale_bench.py's cached windows:
bigram frame statistics of music21 pieces, never ASAP's, embedded by the library's model).
A generated piece's notes are not kept by that cache, so its catalogue entry holds a
placeholder (one note a frame); both sides read the same catalogue, so a filler that reaches
verification weighs the same on each.

The local side is that library's hnsw-float index (built from its stored vectors); the
server side is the same library pushed (``core.server_library.push``, texture view) into an
embedded Milvus Lite in ``benchmarks/.cache/server-bench/milvus.db`` — the pymilvus client
speaking gRPC to Milvus Lite's server in this process, HNSW with the same M,
ef_construction and ef. Queries: ``--n`` seeded excerpts of ASAP performances of the test
half per length (benchmarks/asap_bench.py's), searched as textures (``melody=False``), vote.
Prints the build and push rates, Top-1 / unflagged Top-1 of each side and the whole search's
time per query (median, p99) with the server's added time; then the kNN call alone on each
side (``--knn`` queries of 60 noisy library windows) and how far their 10 found agree.
Both the local library and the Milvus Lite folder are kept in benchmarks/.cache/server-bench/
for the next run of the same size (the push then only compares digests).
"""
from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import (CACHE, asap_dir, copy_library, dev_test_split, evaluate,
                               load_performances, make_queries)
from midizero_app.core.catalogue import row_digest
from midizero_app.core.index_store import EMBED_DIM
from midizero_app.core.windows import LIBRARY_HOP

WORK = CACHE / "server-bench"
FILLER_PREFIX = "/generated/mode-S/"


def real_windows(db: Path) -> tuple[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        model_id = con.execute("SELECT value FROM meta WHERE key='model_id'").fetchone()[0]
        n = con.execute("SELECT COALESCE(SUM(length(starts) / 4), 0) FROM vectors "
                        "WHERE model_id=?", (model_id,)).fetchone()[0]
    finally:
        con.close()
    return model_id, int(n)


def make_library(source: Path, windows: int) -> tuple[Path, int, int]:
    """A copy of ``source`` filled to ``windows`` texture windows with generated pieces
    (kept for the next run of the same size). Returns (folder, real windows, filler)."""
    from benchmarks.scale_bench import generated_vectors

    folder = WORK / f"local-{windows}"
    model_id, n_real = real_windows(source / "library.sqlite")
    marker = folder / "filled"
    need = max(0, windows - n_real)
    if marker.is_file():
        return folder, n_real, need
    copy_library(source, folder)
    for f in folder.glob("index-*"):
        f.unlink()
    gen = generated_vectors(need, model_id, []) if need else []
    con = sqlite3.connect(folder / "library.sqlite")
    try:
        con.execute("DELETE FROM vectors WHERE model_id != ?", (model_id,))  # texture only
        label = con.execute("SELECT COALESCE(MAX(first_label + length(starts) / 4), 0) FROM "
                            "vectors WHERE model_id=?", (model_id,)).fetchone()[0]
        left = need
        with con:
            for i, v in enumerate(gen):
                if left <= 0:
                    break
                v = np.ascontiguousarray(v[:left], np.float16)
                left -= len(v)
                n_frames = (len(v) - 1) * LIBRARY_HOP + 10
                cur = con.execute(
                    "INSERT INTO pieces(path, size, mtime, hash, title, composer, format, status,"
                    " n_frames, duration, kind, added) VALUES (?,0,0,NULL,?,NULL,'midi','ok',?,?,"
                    "'score',0)", (f"{FILLER_PREFIX}{i:06d}.mid", f"generated {i}", n_frames,
                                   n_frames * 0.25))
                pid = cur.lastrowid
                blobs = ((np.arange(n_frames) * 0.25).astype(np.float64).tobytes(),
                         np.arange(n_frames + 1, dtype=np.int64).tobytes(),
                         np.full(n_frames, 60, np.int16).tobytes(),
                         np.full(n_frames, -1, np.int32).tobytes(),
                         np.full(n_frames, np.nan, np.float32).tobytes(), None)
                con.execute("INSERT INTO frames(piece, onset, offsets, pitches, measure, beat,"
                            " voices, digest) VALUES (?,?,?,?,?,?,?,?)",
                            (pid, *blobs, row_digest(*blobs)))
                starts = (np.arange(len(v)) * LIBRARY_HOP).astype(np.int32).tobytes()
                emb = v.tobytes()
                con.execute("INSERT INTO vectors(piece, model_id, first_label, starts, emb, digest)"
                            " VALUES (?,?,?,?,?,?)", (pid, model_id, label, starts, emb,
                                                      row_digest(starts, emb)))
                label += len(v)
            con.execute("DELETE FROM index_state")
            con.execute("INSERT INTO index_state(model_id, count, checksum, next_label) "
                        "VALUES (?, 0, '', ?)", (model_id, label))
    finally:
        con.close()
    marker.write_text(str(windows))
    return folder, n_real, need - max(left, 0) if gen else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--lengths", type=float, nargs="*", default=[5, 10, 20])
    ap.add_argument("--knn", type=int, default=20,
                    help="60-window kNN calls timed on each side (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default=str(CACHE / "asap-only"))
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    from midizero_app.core.library import Library
    from midizero_app.core.server_library import ServerLibrary, push

    WORK.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    folder, n_real, n_fill = make_library(Path(args.source), args.windows)
    print(f"# server_bench {date.today()} on {platform.node()} "
          f"({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"load {os.getloadavg()[0]:.1f}): {n_real:,} real + {n_fill:,} "
          f"generated texture windows ({time.perf_counter() - t:.0f} s to prepare)", flush=True)
    local = Library(folder)
    t = time.perf_counter()
    local.load_index(view="texture")
    build_s = time.perf_counter() - t
    windows = local.stats()["windows"]
    print(f"local hnsw-float index: {windows:,} windows in {build_s:.0f} s "
          f"({windows / max(build_s, 1e-9):,.0f} windows/s, or loaded from its file)", flush=True)
    url = f"milvus://{WORK / f'milvus-{args.windows}.db'}/bench"
    t = time.perf_counter()
    report = push(folder, url, views=("texture",))
    push_s = time.perf_counter() - t
    sent = report.windows.get("texture", 0)
    print(f"push into embedded Milvus Lite: {report.summary()} in {push_s:.0f} s"
          + (f" ({sent / push_s:,.0f} windows/s)" if sent else ""), flush=True)
    t = time.perf_counter()
    server = ServerLibrary(url)
    server.knn(np.ones((1, EMBED_DIM), np.float32) / np.sqrt(EMBED_DIM), 10)
    print(f"opening the shared library and a first search: {time.perf_counter() - t:.1f} s",
          flush=True)
    perfs = load_performances(asap)
    _, test = dev_test_split(asap)
    print("\n| length | local Top-1 / unflagged | Milvus Lite Top-1 / unflagged | Δ Top-1 "
          "(points) | local ms median / p99 | Milvus Lite ms median / p99 | added ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for length in args.lengths:
        queries = make_queries(perfs, length, args.n, args.seed + int(length * 10), pieces=test)
        a = evaluate(local, queries, "vote", melody=False)
        b = evaluate(server, queries, "vote", melody=False)
        print(f"| {length:g} s | {a['top1']:.3f} / {a['top1_unflagged']:.3f} | "
              f"{b['top1']:.3f} / {b['top1_unflagged']:.3f} | "
              f"{100 * (b['top1'] - a['top1']):+.1f} | {a['ms_median']:.0f} / {a['ms_p99']:.0f} | "
              f"{b['ms_median']:.0f} / {b['ms_p99']:.0f} | "
              f"{b['ms_median'] - a['ms_median']:+.0f} |", flush=True)
    if args.knn:
        knn_times(local, server, args.knn, args.seed)
    server.close()
    local.close()


def knn_times(local, server, n: int, seed: int) -> None:
    """The kNN call alone on each side: ``n`` queries of 60 windows (a real piece's stored
    windows with noise, as benchmarks/scale_bench.py makes them), k = 10, ef 256."""
    from benchmarks.scale_bench import NOISE, QUERY_WINDOWS

    rng = np.random.default_rng(seed)
    real = [p["id"] for p in local.pieces("ok") if not p["path"].startswith(FILLER_PREFIX)]
    times: dict[str, list] = {"local": [], "server": []}
    same = []
    for _ in range(n):
        pid = int(rng.choice(real))
        _, v = local.window_vectors(pid, 0, 1e9)
        if len(v) < QUERY_WINDOWS:
            continue
        s = int(rng.integers(0, len(v) - QUERY_WINDOWS + 1))
        x = v[s:s + QUERY_WINDOWS] + rng.normal(0, NOISE, (QUERY_WINDOWS, EMBED_DIM))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        found = {}
        for name, lib in (("local", local), ("server", server)):
            t = time.perf_counter()
            found[name] = lib.knn(x, 10)[0]
            times[name].append((time.perf_counter() - t) * 1000)
        same.append(np.mean([len(set(a) & set(b)) / 10 for a, b in
                             zip(found["local"], found["server"])]))
    lo, sv = np.array(times["local"]), np.array(times["server"])
    print(f"\n60-window kNN alone ({len(lo)} queries, k = 10): local {np.median(lo):.1f} / "
          f"{np.percentile(lo, 90):.1f} ms, Milvus Lite {np.median(sv):.1f} / "
          f"{np.percentile(sv, 90):.1f} ms (median / p90); the 10 found agree "
          f"{np.mean(same):.3f}", flush=True)


if __name__ == "__main__":
    main()
