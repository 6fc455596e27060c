"""Build (or refresh) the benchmark library: ASAP score MIDIs + music21 corpus distractors.

    python -m benchmarks.build_library [--model models/default.safetensors] [--no-distractors]

The library lives in benchmarks/.cache/ (not in git). Frames are stored, so switching the
model later only re-embeds.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from benchmarks.common import CACHE, asap_dir, asap_scores, music21_distractors
from midizero_app.core.library import Library


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-distractors", action="store_true")
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    if args.model:
        t = time.perf_counter()
        lib.set_model(args.model)
        print(f"model set, re-embedded in {time.perf_counter() - t:.1f} s")
    scores = asap_scores(asap)
    t = time.perf_counter()
    rep = lib.add(scores, workers=args.workers)
    t_asap = time.perf_counter() - t
    print(f"ASAP scores: {rep.summary()} in {t_asap:.1f} s")
    if not args.no_distractors:
        files = music21_distractors()
        t = time.perf_counter()
        rep2 = lib.add(files, workers=args.workers)
        print(f"music21 distractors ({len(files)} files): {rep2.summary()} in "
              f"{time.perf_counter() - t:.1f} s")
        for p, r in rep2.failed[:20]:
            print("  failed:", p, r)
    st = lib.stats()
    st["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(st, indent=1))


if __name__ == "__main__":
    main()
