""""Not in your library" on audio queries: the card's thresholds, and thresholds fitted
on audio instead.

    nice -n 5 python -m benchmarks.audio_not_in_library [--n 200] [--flag-rate 0.96 0.97 0.98]
        [--k 10 30]
    python -m benchmarks.audio_not_in_library --reuse [--k 10 30]   # refit from saved features

The card's calibration (``python -m scripts.fit_texture_confidence``) is fitted on MIDI
queries; a transcription loses and adds notes, so right answers from audio score lower
and more of them are flagged. This keeps the card's logistic weights and fits, per query
length, thresholds that flag ``--flag-rate`` of out-of-library *audio* queries, on one
half, and reports them on the other (both ways):

* dev: audio_bench's renders (FluidR3, room, 20 dB noise) of dev-half performance excerpts,
  transcribed, searched in a copy of the library without half of the dev pieces (the
  pieces fit_texture_confidence removes);
* test: the same on the test half (TimGM6mb), in a copy without half of the test pieces.

Per half and length: out-of-library queries flagged / right in-library answers left
unflagged, with the card's (MIDI) thresholds and with thresholds fitted on the other half.
``--k``: neighbours per query window (the audio search's own k, or others to compare).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import SR, make_excerpts
from benchmarks.common import (CACHE, Query, asap_dir, asap_performances, dev_test_split,
                               feature_rows, grade_key, piece_key)
from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
from midizero_app.audio.transcribe import AUDIO_TAU, transcribe_events, warm_up
from midizero_app.core.frames import group_performance
from midizero_app.core.library import Library
from midizero_app.core.search import DEFAULT_K, Calibration

LENGTHS = (5.0, 10.0, 20.0)
FEATURES_CACHE = CACHE / "calibration-audio-features.npz"


def holdout_copy(library: str, half: set[str], name: str, seed: int) -> tuple[Library, set]:
    """A copy of ``library`` without a seeded half of the pieces in ``half``."""
    copy = CACHE / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(library, copy)
    lib = Library(copy)
    keys = sorted(half)
    removed = set(np.random.default_rng(seed).choice(keys, len(keys) // 2,
                                                     replace=False).tolist())
    lib.remove(*[p["path"] for p in lib.pieces() if grade_key(p["path"]) in removed])
    lib.load_index()
    return lib, removed


def audio_queries(pieces: set[str], length: float, n: int, seed: int, sf2: Path) -> list[Query]:
    asap = asap_dir()
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in pieces]
    out = []
    for ex in make_excerpts(perfs, length, n, seed, Renderer(sf2, SR)):
        frames = group_performance(transcribe_events(ex.audio, SR).to_notes(), AUDIO_TAU)
        out.append(Query(ex.perf, piece_key(ex.perf.parent), ex.start, length, frames,
                         ex.score_time))
    return out


def collect(library: str, half: str, n: int, ks: list[int]) -> dict[int, dict[str, np.ndarray]]:
    """Per kNN depth in ``ks``: features of the best answer of ``n`` out-of-library and
    ``n`` in-library audio queries per length on one half: x, right (in-library answered
    right), is_in, length index, window counts. Each query is transcribed once."""
    dev, test = dev_test_split(asap_dir())
    pieces = dev if half == "dev" else test
    # dev: the copy scripts/fit_texture_confidence.py fits on (seed 123); test: its own
    lib, removed = holdout_copy(library, pieces, f"calibration-audio-{half}",
                                123 if half == "dev" else 456)
    sf2 = FLUID_R3 if half == "dev" else timgm6mb()
    cols = {k: {c: [] for c in ("x", "right", "is_in", "length", "windows")} for k in ks}
    for i, length in enumerate(LENGTHS):
        for is_in, group, seed in ((False, removed, 3000), (True, pieces - removed, 4000)):
            qs = audio_queries(group, length, n, seed + i + (0 if half == "dev" else 500), sf2)
            for k in ks:
                x, keys, windows = feature_rows(lib, qs, k)
                c = cols[k]
                c["x"].append(x)
                c["right"].append(np.array([is_in and key == q.key for key, q in zip(keys, qs)]))
                c["is_in"].append(np.full(len(qs), is_in))
                c["length"].append(np.full(len(qs), i))
                c["windows"].append(windows)
        print(f"<!-- {half} {length:g} s collected -->", flush=True)
    lib.close()
    return {k: {c: np.concatenate(v) for c, v in d.items()} for k, d in cols.items()}


def features_cache(k: int) -> Path:
    return FEATURES_CACHE if k == DEFAULT_K else \
        FEATURES_CACHE.with_name(f"{FEATURES_CACHE.stem}-k{k}.npz")


def judged(calib: Calibration, d: dict) -> list[str]:
    """Per length: "out-of-library flagged / right in-library answers unflagged"."""
    flag = np.array([calib.confidence(tuple(row)) < 0.5 for row in d["x"]])
    cells = []
    for i in range(len(LENGTHS)):
        o, n = (d["length"] == i) & ~d["is_in"], (d["length"] == i) & d["is_in"]
        cells.append(f"{flag[o].mean():.3f} / {np.mean(d['right'][n] & ~flag[n]):.3f}")
    return cells


def fit_thresholds(base: Calibration, d: dict, rate: float) -> Calibration:
    """``base`` with per-length thresholds flagging ``rate`` of ``d``'s out-of-library
    queries (at each length's median window count)."""
    plain = replace(base, thresholds=(), threshold=0.5)  # the unshifted probability
    prob = np.array([plain.confidence(tuple(row)) for row in d["x"]])
    return replace(base, thresholds=tuple(
        (float(np.median(d["windows"][d["length"] == i])),
         float(np.quantile(prob[(d["length"] == i) & ~d["is_in"]], rate)))
        for i in range(len(LENGTHS))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=200, help="queries per length and class")
    ap.add_argument("--flag-rate", type=float, nargs="+", default=[0.96, 0.97, 0.98])
    ap.add_argument("--reuse", action="store_true", help="fit on the last run's features")
    ap.add_argument("--k", type=int, nargs="+", default=[DEFAULT_K],
                    help="nearest library windows per query window; several: each judged "
                         "with the card's thresholds, the first also fitted (default 10)")
    args = ap.parse_args()
    by_k = {}
    if args.reuse:
        for k in args.k:
            with np.load(features_cache(k)) as z:
                by_k[k] = {h: {c.split("/")[1]: z[c] for c in z.files if c.startswith(h)}
                           for h in ("dev", "test")}
    else:
        if asap_dir() is None:
            sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
        warm_up()
        halves = {h: collect(args.library, h, args.n, args.k) for h in ("dev", "test")}
        for k in args.k:
            by_k[k] = {h: halves[h][k] for h in halves}
            np.savez(features_cache(k), **{f"{h}/{c}": v for h, d in by_k[k].items()
                                           for c, v in d.items()})
    data = by_k[args.k[0]]
    lib = Library(args.library)
    base = Calibration.from_card(lib.embedder.card)
    lib.close()
    n = {h: int((d["length"] == 0).sum() // 2) for h, d in data.items()}
    print(f"# Audio thresholds, fitted on one half and judged on the other; {n['dev']} / "
          f"{n['test']} queries per length and class (dev / test)\n")
    print("| thresholds | judged on | " + " | ".join(
        f"{length:g} s: out flagged / right unflagged" for length in LENGTHS) + " |")
    print("|---|---|" + "---|" * len(LENGTHS))
    for k in args.k:
        for half in ("dev", "test"):
            print(f"| card (MIDI){'' if len(args.k) == 1 else f', k = {k}'} | {half} | "
                  + " | ".join(judged(base, by_k[k][half])) + " |")
    for rate in args.flag_rate:
        for fit, on in (("dev", "test"), ("test", "dev")):
            c = fit_thresholds(base, data[fit], rate)
            print(f"| audio, {rate:g} of {fit} | {on} | " + " | ".join(judged(c, data[on]))
                  + " |")


if __name__ == "__main__":
    main()
