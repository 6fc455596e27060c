"""Fit the texture search's confidence / "not in your library" calibration on the ASAP dev
half and write it into the model card (``models/default.json``, key ``calibration``),
which ``midizero_app.core.search.Calibration`` reads.

    python -m scripts.fit_texture_confidence [--model models/default.safetensors] [--n 400]
        [--flag-rate 0.96 | --flag-rate R5 R10 R20] [--reuse] [--dry-run]

Needs the benchmark library (``python -m benchmarks.build_library``) and ASAP data. A copy
of the library loses a seeded half of the dev pieces. Queries (5, 10 and 20 s excerpts of
dev performances) from removed pieces must be flagged; queries from kept pieces should
not be (when answered correctly). A logistic model over the features of
:func:`midizero_app.core.search.features` is fitted, and a threshold per query length is
set so that 96 % (``--flag-rate``; one share, or one per length) of the dev
out-of-library queries are flagged at each length. ``--reuse`` fits again on the last
run's features (cached in benchmarks/.cache/), without searching; ``--dry-run`` prints the
fit and its dev figures without writing. The test half is never used here;
``python -m benchmarks.asap_bench --split test`` reports on it.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (CACHE, asap_dir, dev_test_split, feature_rows, grade_key,
                               load_performances, make_queries)
from midizero_app.core.atomic import write_text
from midizero_app.core.library import Library
from midizero_app.core.search import FEATURES, Calibration


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Newton's method for L2-regularised logistic regression; returns weights + bias."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -50, 50)))
        g = xb.T @ (p - y) + l2 * w
        h = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return w


FEATURES_CACHE = CACHE / "calibration-features.npz"


def collect(library: str, n: int) -> tuple[np.ndarray, ...]:
    """Search the dev queries in a copy of ``library`` that lost half the dev pieces.

    Returns features x (N, len(FEATURES)), right-answer labels y (N,), is_in (N,) (the
    query's piece is in the copy), lengths (N,) (0, 1, 2 for 5, 10, 20 s) and the window
    counts of each length's out-of-library queries (3 arrays); all cached in
    ``FEATURES_CACHE`` for ``--reuse``.
    """
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found")
    dev, _ = dev_test_split(asap)
    copy = CACHE / "calibration-library"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(library, copy)
    lib = Library(copy)
    rng = np.random.default_rng(123)
    dev_sorted = sorted(dev)
    removed = set(rng.choice(dev_sorted, len(dev_sorted) // 2, replace=False).tolist())
    lib.remove(*[p["path"] for p in lib.pieces() if grade_key(p["path"]) in removed])
    perfs = load_performances(asap)
    xs, ys, kinds, counts, lengths = [], [], [], [], []
    for i, length in enumerate((5.0, 10.0, 20.0)):
        q_out = make_queries(perfs, length, n, 1000 + i, pieces=removed)
        q_in = make_queries(perfs, length, n, 2000 + i, pieces=set(dev) - removed)
        x_out, _, n_out = feature_rows(lib, q_out)
        x_in, keys, _ = feature_rows(lib, q_in)
        correct = np.array([k == q.key for k, q in zip(keys, q_in)])
        xs += [x_out, x_in]
        ys += [np.zeros(len(x_out)), correct.astype(float)]
        kinds += [np.zeros(len(x_out), bool), np.ones(len(x_in), bool)]
        counts.append(n_out)
        lengths.append(np.full(len(x_out) + len(x_in), i))
        print(f"{length:g} s: in-library top-1 {correct.mean():.3f}", flush=True)
    lib.close()
    out = (np.vstack(xs), np.concatenate(ys), np.concatenate(kinds), np.concatenate(lengths),
           *counts)
    np.savez(FEATURES_CACHE, *out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Fit the texture confidence and write it into "
                                             "the model card.")
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--model", default=None, help="card to update (default: the library's model)")
    ap.add_argument("--n", type=int, default=400, help="queries per length and class")
    ap.add_argument("--flag-rate", type=float, nargs="+", default=[0.96],
                    help="share of out-of-library queries to flag: one for all lengths, or "
                         "one each for 5, 10 and 20 s")
    ap.add_argument("--reuse", action="store_true",
                    help="fit on the features of the last run (no searching)")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    args = ap.parse_args()
    if args.reuse:
        with np.load(FEATURES_CACHE) as z:
            x, y, is_in, lengths, *counts = (z[f"arr_{i}"] for i in range(len(z.files)))
    else:
        x, y, is_in, lengths, *counts = collect(args.library, args.n)
    w = fit_logistic(x, y)
    conf = 1 / (1 + np.exp(-(np.hstack([x, np.ones((len(x), 1))]) @ w)))
    # A threshold per query length (at its median window count), each flagging the asked
    # share of out-of-library queries: short queries carry less evidence, and one pooled
    # threshold set by the shortest would flag many right answers of longer ones.
    rates = args.flag_rate * 3 if len(args.flag_rate) == 1 else args.flag_rate
    points = [(float(np.median(counts[i])),
               float(np.quantile(conf[~is_in & (lengths == i)], rates[i])))
              for i in range(3)]
    calib = {f"w_{f}": float(v) for f, v in zip(FEATURES, w)}
    calib = {k: round(v, 5) for k, v in calib.items()}
    calib["bias"] = round(float(w[-1]), 5)
    calib["threshold"] = round(max(t for _, t in points), 5)  # for a card read by older code
    calib["thresholds"] = [[round(n, 1), round(t, 5)] for n, t in points]
    fitted = Calibration.from_card({"calibration": calib})
    thr = np.array([fitted.threshold_for(round(math.exp(lw))) for lw in x[:, 3]])
    report = {}
    for i, length in enumerate((5, 10, 20)):
        o, n = ~is_in & (lengths == i), is_in & (lengths == i)
        report[f"{length} s"] = {"out_flagged": round(float(np.mean(conf[o] < thr[o])), 3),
                                 "in_top1_unflagged": round(float(np.mean(
                                     (conf[n] >= thr[n]) & (y[n] == 1))), 3)}
    print(json.dumps({"calibration": calib, "dev": report}, indent=1))
    if not args.dry_run:
        model = Path(args.model) if args.model else Path(Library(args.library).embedder.path)
        card_path = model.with_suffix(".json")
        card = json.loads(card_path.read_text())
        rates_text = " ".join(f"{r:g}" for r in args.flag_rate)
        card["calibration"] = {**calib, "fitted_on": "ASAP dev half (python -m "
                               f"scripts.fit_texture_confidence --n {args.n} --flag-rate "
                               f"{rates_text})",
                               "features": list(FEATURES)}
        write_text(card_path, json.dumps(card, indent=2) + "\n")
        print(f"written to {card_path}")


if __name__ == "__main__":
    main()
