"""Indexing throughput: the ASAP score MIDIs end to end into a fresh library, MusicXML apart.

    python -m benchmarks.index_bench [--workers 2] [--no-xml] [--index-kind ivf-sq6]

Prints wall time, files/s, texture windows per second end to end (parsing, both views'
embedding, the catalogue and the index), windows embedded per second (embedding alone,
measured on the stored frames), index bytes per window and peak memory.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import asap_dir, asap_scores
from midizero_app.core.library import Library
from midizero_app.core.windows import LIBRARY_HOP, make_windows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-xml", action="store_true")
    ap.add_argument("--index-kind", default=None, help="the new library's index kind")
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found")
    tmp = Path(tempfile.mkdtemp(prefix="midizero-index-bench-"))
    try:
        lib = Library(tmp / "lib")
        if args.index_kind:
            lib.choose_index_kind(args.index_kind)
        lib.embedder  # load the model before timing
        mids = asap_scores(asap)
        t = time.perf_counter()
        rep = lib.add(mids, workers=args.workers)
        wall = time.perf_counter() - t
        st = lib.stats()
        # Embedding alone, from the stored frames.
        wins = [make_windows(lib.frames_of(p["id"]), LIBRARY_HOP)[0] for p in lib.pieces("ok")]
        t = time.perf_counter()
        n = sum(len(lib.embedder.embed(w)) for w in wins)
        emb_rate = n / (time.perf_counter() - t)
        print(f"index kind {lib.index_kind}")
        print("| what | files | failed | wall s | files/s | windows | windows/s end to end | "
              "embed windows/s | index bytes/window | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| ASAP score MIDI | {len(mids)} | {len(rep.failed)} | {wall:.1f} | "
              f"{len(mids) / wall:.1f} | {st['windows']} | {st['windows'] / wall:,.0f} | "
              f"{emb_rate:.0f} | "
              f"{st['index_bytes'] / max(st['windows'], 1):.0f} | "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |", flush=True)
        lib.close()
        if not args.no_xml:
            xml = sorted(asap.rglob("xml_score.mxl"))
            lib = Library(tmp / "lib-xml")
            if args.index_kind:
                lib.choose_index_kind(args.index_kind)
            lib.embedder
            t = time.perf_counter()
            rep = lib.add(xml, workers=args.workers)
            wall = time.perf_counter() - t
            st = lib.stats()
            print(f"| ASAP MusicXML (.mxl) | {len(xml)} | {len(rep.failed)} | {wall:.1f} | "
                  f"{len(xml) / wall:.2f} | {st['windows']} | {st['windows'] / wall:,.0f} | – | "
                  f"{st['index_bytes'] / max(st['windows'], 1):.0f} | "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |")
            for p, r in rep.failed:
                print(f"  failed: {p}: {r}")
            lib.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
