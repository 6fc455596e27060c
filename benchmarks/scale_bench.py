"""Index kinds at scale: memory, kNN latency, recall and build rate per library size.

    python -m benchmarks.scale_bench [--sizes 100000 1000000] [--kinds hnsw-float ivf-sq6]
                                     [--queries 100] [--library benchmarks/.cache/asap-library]

The library's windows are real and generated:

* **real**: the texture vectors of the benchmark library (ASAP scores and music21 corpus
  distractors, benchmarks/build_library.py), read from its catalogue (read-only);
* **generated** (to fill larger sizes): pieces of mode-S music (core/training/datagen.py:
  frames drawn from unigram / bigram statistics fitted to the music21 pieces of that
  library, never to ASAP), 100–800 frames each, windowed and embedded by the library's
  model exactly as a library piece is. They are cached in benchmarks/.cache/scale/.

Queries: 60 consecutive library windows of a random real piece with Gaussian noise added
(and renormalised) so that each is about 0.89 cosine from its source window — a played
query's windows are never the stored ones. Per size and kind it prints the index file's
bytes a window, the RSS the loaded index adds, the time to open it (checksum + load),
the build rate, kNN time for one 60-window query (k = 10, median and p90), "source@10"
(the source window among the 10 found) and the overlap of the 10 found with hnsw-float's
10 and with the exact 10 (a flat inner-product scan, for up to 20 queries).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, ROOT, asap_dir
from midizero_app.core import index_store
from midizero_app.core.hashing import split_file_hash
from midizero_app.core.index_store import EMBED_DIM, HNSW_FLOAT, INDEX_KINDS, KINDS
from midizero_app.core.windows import LIBRARY_HOP, make_windows

K = 10
QUERY_WINDOWS = 60
NOISE = 0.045  # per component: unit vectors end up about 0.89 cosine from their source
SCALE_CACHE = CACHE / "scale"


def rss_mb() -> float:
    """This process's resident memory now, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def read_library(path: Path) -> tuple[str, list[np.ndarray], list[list[list[int]]]]:
    """The benchmark library's model id, texture vectors per piece (float16 (m, 128)) and
    the frames (pitch lists) of its pieces that are not ASAP's (for mode S statistics)."""
    db = sqlite3.connect(f"file:{path / 'library.sqlite'}?mode=ro", uri=True)
    try:
        model_id = db.execute("SELECT value FROM meta WHERE key='model_id'").fetchone()[0]
        vecs = [np.frombuffer(e, np.float16).reshape(-1, EMBED_DIM) for (e,) in db.execute(
            "SELECT emb FROM vectors WHERE model_id=? ORDER BY first_label", (model_id,))
            if len(e) % (2 * EMBED_DIM) == 0 and len(e)]
        asap = str(asap_dir() or "/nonexistent-asap")
        seqs = []
        for p, offsets, pitches in db.execute(
                "SELECT p.path, f.offsets, f.pitches FROM frames f JOIN pieces p ON p.id=f.piece"):
            if isinstance(p, str) and p.startswith(asap):
                continue
            off = np.frombuffer(offsets, np.int64)
            pit = np.frombuffer(pitches, np.int16)
            seqs.append([[int(x) for x in pit[a:b] if 21 <= x <= 108]
                         for a, b in zip(off[:-1], off[1:])])
    finally:
        db.close()
    return model_id, vecs, seqs


class Int8Encoder:
    """The library model's ONNX export quantised to int8 (onnxruntime static quantisation,
    per-channel weights, calibrated on windows of the library's music21 pieces): about twice
    the float export's windows a second on a CPU with AVX-512 VNNI; on 60,000 windows of the
    ASAP scores its embeddings lie at cosine 0.9997 (median) from the float export's, 0.998
    or closer for 99.9 % of them, 0.987 at the least. Used only to fill the generated-window
    cache faster; the library's own pieces are not embedded with it."""

    def __init__(self, float_export: Path, folder: Path, seqs: list, win_length: int,
                 threads: int = 2):
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from midizero_app.core.onnx_session import make_session
        from midizero_app.core.training.datagen import windows_to_array

        self.win_length = win_length
        path = folder / "encoder-int8.onnx"
        if not path.is_file():
            rng = np.random.default_rng(7)
            pieces = [seqs[i] for i in rng.choice(len(seqs), min(len(seqs), 64), replace=False)]
            calib = np.concatenate([make_windows(windows_to_array([sq], len(sq))[0].astype(
                np.float32), LIBRARY_HOP, win_length)[0] for sq in pieces if len(sq) >= win_length])
            calib = calib[rng.permutation(len(calib))[:4096]].astype(np.float32)

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.batches = iter(np.array_split(calib, 16))

                def get_next(self):
                    b = next(self.batches, None)
                    return None if b is None else {"windows": b}

            with tempfile.TemporaryDirectory(dir=folder) as d:
                pre = Path(d) / "pre.onnx"
                quant_pre_process(str(float_export), str(pre))
                quantize_static(str(pre), str(Path(d) / "q.onnx"), Reader(),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                os.replace(Path(d) / "q.onnx", path)
        self.session = make_session(path, threads)

    def embed(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """windows: (N, W, 88) binary → float32 (N, 128) unit vectors."""
        out = np.concatenate([self.session.run(None, {"windows": np.asarray(
            windows[i:i + batch], np.float32)})[0] for i in range(0, len(windows), batch)])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def generated_vectors(n: int, model_id: str, seqs: list, seed: int = 0,
                      load: bool = True, int8: bool = False) -> list[np.ndarray]:
    """``n`` windows or more of mode-S pieces, embedded (float16 per piece), cached; with
    ``load=False`` they are only made (the cache filled ahead of a run), and nothing returned.
    ``int8``: new windows are embedded by :class:`Int8Encoder` (each chunk records which)."""
    from midizero_app.core.atomic import atomic_write
    from midizero_app.core.inference import load_embedder
    from midizero_app.core.training.datagen import WindowSource, frame_distributions, windows_to_array

    folder = SCALE_CACHE / model_id
    folder.mkdir(parents=True, exist_ok=True)
    stats = folder / "frame-stats.json"
    if not stats.is_file():
        frame_distributions(seqs, save_path=stats)
    chunks = sorted(folder.glob("S-*.npz"))
    have = sum(int(np.load(c)["n"]) for c in chunks)
    rng = np.random.default_rng(seed + len(chunks))
    embedder = None
    t0, made = time.perf_counter(), 0
    while have < n:
        if embedder is None:
            embedder = load_embedder()
            if embedder.model_id != model_id:
                raise SystemExit(f"the bundled model is {embedder.model_id}, the library's "
                                 f"{model_id}: generated windows would not match")
            if int8:
                embedder = Int8Encoder(embedder.path.with_suffix(".onnx"), folder, seqs,
                                       embedder.win_length)
            source = WindowSource("S", win_length=800, frame_dist_file=stats)
        pieces, lengths, total = [], [], 0
        n_frames, per_frame, pitches = [], [], []  # the pieces' frames, for a library of them
        while total < 50_000:
            length = int(rng.integers(100, 801))
            roll = windows_to_array([source.draw(rng)[:length]], length)[0]
            wins, _ = make_windows(roll, LIBRARY_HOP, embedder.win_length)
            pieces.append(wins)
            lengths.append(len(wins))
            total += len(wins)
            rows, cols = np.nonzero(roll)
            n_frames.append(len(roll))
            per_frame.append(np.bincount(rows, minlength=len(roll)))
            pitches.append((cols + 21).astype(np.uint8))
        emb = embedder.embed(np.concatenate(pieces)).astype(np.float16)
        target = folder / f"S-{len(chunks):04d}.npz"
        with atomic_write(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, emb=emb, lengths=np.asarray(lengths), n=total,
                         n_frames=np.asarray(n_frames), per_frame=np.concatenate(per_frame),
                         pitches=np.concatenate(pitches),
                         encoder="int8" if int8 else "float")
        chunks.append(target)
        have += total
        made += total
        print(f"  generated {have:,} windows ({made / (time.perf_counter() - t0):.0f} a second "
              "embedded)", flush=True)
    if not load:
        return []
    out = []
    for c in chunks:
        z = np.load(c)
        out += np.split(z["emb"], np.cumsum(z["lengths"])[:-1])
        if sum(len(v) for v in out) >= n:
            break
    return out


def library_of(size: int, real: list, gen: list, rng) -> tuple[list, int]:
    """Rows (piece, first label, starts, vectors) of ``size`` windows: real pieces first
    (a random subset when they alone exceed it), then generated ones."""
    rows, label = [], 0
    order = rng.permutation(len(real))
    for src in ([real[i] for i in order], gen):
        for v in src:
            if label >= size:
                break
            v = v[:size - label]
            rows.append((len(rows), label, np.arange(len(v)), v))
            label += len(v)
    return rows, label


def make_queries(rows: list, n_real: int, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` queries of QUERY_WINDOWS noisy windows from real pieces: (n, 60, 128) float32
    and their source labels (n, 60)."""
    real = [r for r in rows[:n_real] if len(r[3]) >= QUERY_WINDOWS]
    qs, src = [], []
    for i in rng.choice(len(real), n, replace=len(real) < n):
        _, first, _, v = real[i]
        s = int(rng.integers(0, len(v) - QUERY_WINDOWS + 1))
        x = v[s:s + QUERY_WINDOWS].astype(np.float32)
        x = x + rng.normal(0, NOISE, x.shape).astype(np.float32)
        qs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        src.append(np.arange(first + s, first + s + QUERY_WINDOWS))
    return np.stack(qs), np.stack(src)


def loaded_rss(path: Path, checksum: str, n: int, kind: str) -> float:
    """MB of resident memory that loading the index file adds to a fresh process."""
    code = ("import sys; from pathlib import Path; import faiss, hnswlib, numpy;"
            "from benchmarks.scale_bench import rss_mb;"
            "from midizero_app.core import index_store; r0 = rss_mb();"
            "i = index_store.load_file(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]);"
            "assert i is not None; print(rss_mb() - r0)")
    out = subprocess.run([sys.executable, "-c", code, str(path), checksum, str(n), kind],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.split()[-1])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row of ``b`` (n, k) found in the same row of ``a``."""
    return float(np.mean([len(set(x[x >= 0]) & set(y[y >= 0])) / max((y >= 0).sum(), 1)
                          for x, y in zip(a, b)]))


def measure(kind: str, rows: list, n: int, queries: np.ndarray, sources: np.ndarray,
            threads: int) -> tuple[dict, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(threads)
    cls = KINDS[kind]
    gc.collect()
    t = time.perf_counter()
    index = cls.build(rows, n)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=SCALE_CACHE) as d:
        path = Path(d) / f"index{index_store.SUFFIXES[kind]}"
        index.write(path)
        size = path.stat().st_size
        checksum = split_file_hash(path)  # as a library records it
        del index
        gc.collect()
        rss_added = loaded_rss(path, checksum, n, kind)
        t = time.perf_counter()
        index = index_store.load_file(path, checksum, n, kind)
        open_s = time.perf_counter() - t
    assert index is not None
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        labels, _ = index.search(q, K, None)
        times.append((time.perf_counter() - t) * 1000)
        found.append(labels)
    found = np.stack(found)  # (Q, 60, K)
    hit = np.mean([[s in f for s, f in zip(src, fd)] for src, fd in zip(sources, found)])
    out = {"kind": kind, "threads": threads, "windows": n, "bytes_per_window": size / n,
           "file_mb": size / 2**20, "rss_mb": rss_added, "open_s": open_s,
           "build_per_s": n / build_s, "knn_ms_median": float(np.median(times)),
           "knn_ms_p90": float(np.percentile(times, 90)), "source_at10": float(hit)}
    del index
    gc.collect()
    return out, found.reshape(-1, K)


def exact(rows: list, queries: np.ndarray, chunk: int = 500_000) -> np.ndarray:
    """The exact top-K labels of (m, 128) queries by a flat inner-product scan, a chunk of
    library windows at a time (a float32 copy of 22 M windows would be 11 GB)."""
    import faiss

    q = np.ascontiguousarray(queries, np.float32)
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_l = np.full((len(q), K), -1, np.int64)

    def scan(vecs: list, labels: list) -> None:
        nonlocal best_s, best_l
        s, i = faiss.knn(q, np.concatenate(vecs).astype(np.float32), K,
                         metric=faiss.METRIC_INNER_PRODUCT)
        lab = np.concatenate(labels)[i]
        s_all, l_all = np.hstack([best_s, s]), np.hstack([best_l, lab])
        top = np.argsort(-s_all, axis=1)[:, :K]
        best_s = np.take_along_axis(s_all, top, 1)
        best_l = np.take_along_axis(l_all, top, 1)

    vecs, labels, held = [], [], 0
    for _, first, starts, v in rows:
        vecs.append(v)
        labels.append(np.arange(first, first + len(starts)))
        held += len(v)
        if held >= chunk:
            scan(vecs, labels)
            vecs, labels, held = [], [], 0
    if vecs:
        scan(vecs, labels)
    return best_l


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=list(INDEX_KINDS), choices=INDEX_KINDS)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--exact-queries", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="faiss threads for ivf kinds (hnsw-float searches on one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--generate-only", action="store_true",
                    help="fill the generated-window cache up to the largest size, measure nothing")
    ap.add_argument("--int8", action="store_true",
                    help="embed new generated windows with an int8 export (about twice as fast)")
    args = ap.parse_args()
    SCALE_CACHE.mkdir(parents=True, exist_ok=True)
    model_id, real, seqs = read_library(Path(args.library))
    n_real = sum(len(v) for v in real)
    if args.generate_only:
        generated_vectors(max(args.sizes) - n_real, model_id, seqs, args.seed, load=False,
                          int8=args.int8)
        return
    print(f"# scale_bench {date.today()} on {platform.node()} ({os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}), model {model_id}: {n_real:,} real windows in "
          f"{len(real)} pieces", flush=True)
    print("\n| windows | real | kind | threads | bytes/window | file MB | RSS+ MB | open s | "
          "build windows/s | 60-window kNN median ms | p90 ms | source@10 | "
          "overlap with hnsw-float | overlap with exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    gen: list = []
    for size in sorted(args.sizes):
        if size > n_real + sum(len(v) for v in gen):  # generated pieces fill the rest
            gen = generated_vectors(size - n_real, model_id, seqs, args.seed, int8=args.int8)
        rng = np.random.default_rng(args.seed)
        rows, n = library_of(size, real, gen, rng)
        n_real_rows = sum(1 for r in rows if r[0] < len(real))
        real_here = sum(len(r[3]) for r in rows[:n_real_rows])
        queries, sources = make_queries(rows, n_real_rows, args.queries, rng)
        m = min(args.exact_queries, args.queries) * QUERY_WINDOWS
        truth = exact(rows, queries.reshape(-1, EMBED_DIM)[:m])
        float_found = None
        runs = [(kind, t) for kind in args.kinds
                for t in ([1] if kind == HNSW_FLOAT else args.threads)]
        runs.sort(key=lambda r: r[0] != HNSW_FLOAT)  # hnsw-float first: the reference
        for kind, threads in runs:
            r, found = measure(kind, rows, n, queries, sources, threads)
            if kind == HNSW_FLOAT:
                float_found = found
            r["overlap_float"] = overlap(found, float_found) if float_found is not None else None
            r["overlap_exact"] = overlap(found[:m], truth)
            r["real_windows"] = real_here
            results.append(r)
            of = "—" if r["overlap_float"] is None else f"{r['overlap_float']:.3f}"
            print(f"| {n:,} | {real_here:,} | {kind} | {threads} | {r['bytes_per_window']:.0f} | "
                  f"{r['file_mb']:.0f} | {r['rss_mb']:.0f} | {r['open_s']:.2f} | "
                  f"{r['build_per_s']:,.0f} | {r['knn_ms_median']:.1f} | {r['knn_ms_p90']:.1f} | "
                  f"{r['source_at10']:.3f} | {of} | {r['overlap_exact']:.3f} |", flush=True)
        del rows
        gc.collect()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
