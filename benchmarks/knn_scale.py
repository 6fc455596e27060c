"""kNN time alone at large scale: hnswlib over synthetic embedding-like vectors.

    python -m benchmarks.knn_scale [--n 1000000] [--queries 60]

Vectors are unit 128-d points drawn around 5,000 random "piece" centres (real window
embeddings cluster by piece), so the graph sees realistic structure rather than uniform
noise (the worst case for graph indexes). Prints build time, memory, file size, and the
time of one 10 s query's kNN (60 windows, k = 10) at the library's M / ef settings.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import hnswlib
import numpy as np

from midizero_app.core.library import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M


def vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(len(centres), size=n)] + 0.6 * rng.standard_normal((n, 128)) / np.sqrt(128)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5000, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = hnswlib.Index(space="ip", dim=128)
    index.init_index(max_elements=args.n, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M)
    t = time.perf_counter()
    for i in range(0, args.n, 100_000):
        index.add_items(vectors(min(100_000, args.n - i), rng, centres), np.arange(i, min(i + 100_000, args.n)))
    build = time.perf_counter() - t
    index.set_ef(HNSW_EF_SEARCH)
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "x.hnsw")
        index.save_index(f)
        size = os.path.getsize(f)
    times = []
    for _ in range(args.trials):
        q = vectors(args.queries, rng, centres)
        t = time.perf_counter()
        index.knn_query(q, k=10, num_threads=1)
        times.append((time.perf_counter() - t) * 1000)
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(f"| windows | M | ef_construction | ef | build s | index MB | RSS+ MB | "
          f"{args.queries}-window kNN median ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.n:,} | {HNSW_M} | {HNSW_EF_CONSTRUCTION} | {HNSW_EF_SEARCH} | {build:.0f} | "
          f"{size / 2**20:.0f} | {rss:.0f} | {np.median(times):.2f} | {np.percentile(times, 99):.2f} |")


if __name__ == "__main__":
    main()
