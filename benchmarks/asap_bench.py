"""ASAP identification: identify random excerpts of real performances.

    python -m benchmarks.asap_bench [--n 1000] [--lengths 5 10 20] [--holdout 0.2]
                                    [--library benchmarks/.cache/asap-library] [--no-midifind]

Library: the 235 ASAP score MIDIs plus the music21 corpus distractors (build it first with
``python -m benchmarks.build_library``). Queries: seeded random excerpts of the 1067 performances,
grouped with τ = 0.05 s, graded by piece (folder without its version suffix). Prints Top-1,
Top-10 and MRR@10 for our ranking (offset voting), the published similarity sum, and the
MidiFind-style baseline; Top-1 (unflagged) counts only answers not flagged "not in library".
Also: position within 2 s, search latency, the held-out "not in library" rate.
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
from datetime import date

import numpy as np

from benchmarks.common import (CACHE, asap_dir, copy_library, dev_test_split, evaluate, grade_key,
                               load_performances, make_queries)
from midizero_app.core.library import Library
from midizero_app.core.query import search_library


def build_midifind(lib: Library):
    """The MidiFind-style baseline over the library's pieces: (index, {piece id: grading key})."""
    from midizero_app.baselines.midifind import MidiFindIndex

    mf, keys = MidiFindIndex(n_candidates=50), {}
    for p in lib.pieces("ok") + lib.pieces("repaired"):
        mf.add(p["id"], lib.frames_of(p["id"]))
        keys[p["id"]] = grade_key(p["path"])
    return mf, keys


def holdout_run(lib: Library, perfs, frac: float, n: int, length: float, seed: int) -> dict:
    """Remove a seeded share of the ASAP pieces from a copy of the library; queries from
    removed pieces should be flagged, the rest still identified."""
    copy = CACHE / "holdout-library"
    copy_library(lib.path, copy)
    hl = Library(copy)
    asap_pieces = [p for p in hl.pieces() if p["path"].endswith("midi_score.mid")]
    keys = sorted({grade_key(p["path"]) for p in asap_pieces})
    rng = np.random.default_rng(seed)
    out_keys = set(rng.choice(keys, int(round(frac * len(keys))), replace=False).tolist())
    hl.remove(*[p["path"] for p in asap_pieces if grade_key(p["path"]) in out_keys])
    q_out = make_queries(perfs, length, n, seed + 1, pieces=out_keys)
    q_in = make_queries(perfs, length, n, seed + 2, pieces=set(keys) - out_keys)
    flagged_out = np.mean([search_library(hl, q.frames)["not_in_library"] for q in q_out])
    res_in = evaluate(hl, q_in, "vote")
    hl.close()
    return {"removed": len(out_keys), "flagged_out": float(flagged_out),
            "top1_unflagged_in": res_in["top1_unflagged"], "top1_in": res_in["top1"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--lengths", type=float, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("all", "dev", "test"), default="all")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--no-midifind", action="store_true")
    ap.add_argument("--methods", nargs="+", default=["vote", "sum"])
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    lib.load_index()
    st = lib.stats()
    print(f"# ASAP benchmark {date.today()} on {platform.node()} ({platform.processor() or platform.machine()}), "
          f"model {st['model_id']}, library {st['ok']} pieces / {st['windows']} windows")
    perfs = load_performances(asap)
    pieces = None
    if args.split != "all":
        dev, test = dev_test_split(asap)
        pieces = dev if args.split == "dev" else test
    mf = mf_keys = None
    methods = list(args.methods)
    if not args.no_midifind:
        mf, mf_keys = build_midifind(lib)
        methods.append("midifind")
    print("| length | method | Top-1 | Top-1 unflagged | Top-10 | MRR@10 | flagged | pos ≤ 2 s | "
          "median ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes: list[str] = []
    for length in args.lengths:
        queries = make_queries(perfs, length, args.n, args.seed + int(length * 10), pieces=pieces)
        for m in methods:
            r = evaluate(lib, queries, m, mf, mf_keys)
            print(f"| {length:g} s | {m} | {r['top1']:.3f} | {r['top1_unflagged']:.3f} | "
                  f"{r['top10']:.3f} | {r['mrr10']:.3f} | {r['flagged']:.3f} | "
                  f"{r['pos2s']:.3f} (n={r['n_pos']}) | {r['ms_median']:.1f} | {r['ms_p99']:.1f} |",
                  flush=True)
            notes += [f"{length:g} s, {m}: {r[k]} of {len(queries)} {what}" for k, what in (
                ("melody_view", "searched in the melody view too (a tune)"),
                ("generated_first", "answered first with a generated piece (scale_library)"))
                if r.get(k)]
    for line in notes:
        print(f"* {line}")
    print(f"* peak resident memory of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.holdout > 0:
        print("\n| length | pieces removed | out-of-library flagged | Top-1 unflagged (in) | Top-1 (in) |")
        print("|---|---|---|---|---|")
        for length in args.lengths:
            h = holdout_run(lib, perfs, args.holdout, min(args.n, 500), length, args.seed + 7)
            print(f"| {length:g} s | {h['removed']} | {h['flagged_out']:.3f} | "
                  f"{h['top1_unflagged_in']:.3f} | {h['top1_in']:.3f} |", flush=True)
    lib.close()


if __name__ == "__main__":
    main()
