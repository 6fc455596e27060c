"""Compare encoders on tunes (issue 10's melody-trained variant against the study's rows).

    nice python benchmarks/melody_model_eval.py MODEL.pt [MODEL.pt ...] [--n 200]

Each model embeds the ASAP scores (a copy of benchmarks/.cache/asap-only, re-embedded from
its stored frames: texture and melody views) and answers melody_bench.py's queries in
random keys: themes (top line, 8 / 12 / 16 / 24 notes from downbeats, exact and as
remembered) and played melodies (top notes of 5 / 10 s real performance excerpts). Each
query is run with the melody view's learned candidates alone (what the encoder finds) and
with the interval-gram candidates added (the app's search). Top-1 per cell.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
from datetime import date
from pathlib import Path

import numpy as np

import benchmarks.melody_queries as mb
from benchmarks.common import CACHE, asap_dir, load_performances
from midizero_app.core.library import Library


def query_sets(lib: Library, n: int, seed: int) -> dict[str, list]:
    lines = mb.asap_lines(lib)
    sets = {f"{form} {length}": mb.make_themes(lines, n, length, seed + length, True, form)
            for form in ("exact", "remembered") for length in mb.LENGTHS}
    perfs = load_performances(asap_dir())
    rng = np.random.default_rng(seed)
    for length in (5.0, 10.0):
        sets[f"played {length:g} s"] = [t for t, _ in mb.played_queries(perfs, length, n, seed,
                                                                         rng)]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=200, help="queries per cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if asap_dir() is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    print(f"# Encoders on tunes {date.today()} on {platform.node()} ({platform.machine()}); "
          f"ASAP scores only, {args.n} queries per cell, random keys")
    header = None
    for model in map(Path, args.models):
        name = model.parent.name
        copy = CACHE / f"melody-eval-{name}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(CACHE / "asap-only", copy)
        lib = Library(copy, model=model)
        lib.load_index()
        lib.load_index(view="melody")
        sets = query_sets(lib, args.n, args.seed)
        if header is None:
            header = list(sets)
            print("| model | candidates | " + " | ".join(header) + " |")
            print("|---|---|" + "---|" * len(header))
        for sources in (("learned",), ("learned", "grams")):
            mb.SOURCES = sources
            cells = [f"{mb.run_themes(lib, sets[h], None)['top1']:.3f}" for h in header]
            print(f"| {name} | {' + '.join(sources)} | " + " | ".join(cells) + " |",
                  flush=True)
        lib.close()
        shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
