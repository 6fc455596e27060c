"""Study: encoders on tunes — does an encoder trained with melody pairs find more tunes?

    nice python -m benchmarks.studies.melody_model_eval MODEL.pt [MODEL.pt ...] [--n 200]

Each model embeds the ASAP scores (a copy of benchmarks/.cache/asap-only, re-embedded from
its stored frames: texture and melody views) and answers melody_bench's queries
(``benchmarks.melody_queries``) in random keys: themes (top line, 8 / 12 / 16 / 24 notes
from downbeats, exact and as remembered) and played melodies (top notes of 5 / 10 s real
performance excerpts). Each query is run with the melody view's learned candidates alone
(what the encoder finds) and with the interval-gram candidates added (the app's search).
Top-1 per cell.

Found (2026-11-27, 2-core x86_64 VM, ``--n 200``; the study's 300-step rows P2 and
P2-melody, models/README.md):

| model | candidates | exact 8 / 12 / 16 / 24 | remembered 8 / 12 / 16 / 24 | played 5 / 10 s |
|---|---|---|---|---|
| P2 | learned | 0.550 / 0.955 / 0.970 / 0.995 | 0.225 / 0.735 / 0.840 / 0.975 | 0.880 / 0.975 |
| P2-melody | learned | 0.685 / 0.970 / 0.985 / 0.995 | 0.265 / 0.765 / 0.895 / 0.995 | 0.870 / 0.980 |
| P2 | learned + grams | 0.900 / 0.970 / 0.975 / 0.995 | 0.600 / 0.905 / 0.940 / 1.000 | 0.905 / 0.975 |
| P2-melody | learned + grams | 0.915 / 0.970 / 0.990 / 1.000 | 0.595 / 0.900 / 0.940 / 1.000 | 0.905 / 0.970 |

The melody-trained encoder finds more tunes by itself (exact 8 notes +13.5 points,
remembered 16 +5.5), but through the app's search it gains at most 1.5 points and nothing
on remembered tunes or played melodies; full-budget runs (5,000 steps, 2026-11-28) gave
the same picture, every cell within two queries in 200 of the bundled model. The bundled
model has no melody pairs.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks import melody_queries as mq
from benchmarks.common import CACHE, asap_dir, load_performances
from midizero_app.core.library import Library


def query_sets(lib: Library, n: int, seed: int) -> dict[str, list]:
    lines = mq.asap_lines(lib)
    sets = {f"{form} {length}": mq.make_themes(lines, n, length, seed + length, True, form)
            for form in ("exact", "remembered") for length in mq.LENGTHS}
    perfs = load_performances(asap_dir())
    rng = np.random.default_rng(seed)
    for length in (5.0, 10.0):
        sets[f"played {length:g} s"] = [t for t, _ in mq.played_queries(perfs, length, n, seed,
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
            mq.SOURCES = sources
            cells = [f"{mq.run_themes(lib, sets[h], None)['top1']:.3f}" for h in header]
            print(f"| {name} | {' + '.join(sources)} | " + " | ".join(cells) + " |",
                  flush=True)
        lib.close()
        shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
