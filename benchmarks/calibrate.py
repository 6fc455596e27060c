"""Fit the confidence / "not in your library" calibration of a model on the ASAP dev half.

    python benchmarks/calibrate.py [--model models/default.pt] [--n 400]
        [--flag-rate 0.96 | --flag-rate R5 R10 R20] [--reuse] [--write]

A copy of the benchmark library loses a seeded half of the dev pieces. Queries (5, 10 and
20 s excerpts of dev performances) from removed pieces must be flagged; queries from kept
pieces should not be (when answered correctly). A logistic model over the features of
:func:`midizero_app.core.search.features` is fitted, and a threshold per query length is
set so that 96 % (``--flag-rate``; one share, or one per length) of the dev
out-of-library queries are flagged at each length (``--reuse`` fits again on the last
run's features, cached, without searching). ``--write`` stores it in the model card.
The test half is never used here; benchmarks/asap_bench.py --split test reports on it.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.asap_bench import grade_key  # noqa: E402
from benchmarks.common import CACHE, asap_dir, dev_test_split  # noqa: E402
from benchmarks.queries import load_performances, make_queries  # noqa: E402
from midizero_app.core.library import Library  # noqa: E402
from midizero_app.core.search import (DEFAULT_K, FEATURES, Calibration,  # noqa: E402
                                       QueryWindows, VoteAccumulator, features,
                                       score_candidates, verify)
from midizero_app.core.windows import QUERY_HOP, make_windows  # noqa: E402

def feature_rows(lib: Library, queries, k: int = DEFAULT_K
                 ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per query: the confidence features of its best answer, that answer's grading key,
    and the query's window count (the same steps as search_library with ``k`` neighbours
    per window, stopping before the calibrated confidence)."""
    emb = lib.embedder
    # The card's calibration orders the verified candidates (score_candidates), as the
    # search does; the features are then read from whichever candidate comes first.
    ordering = Calibration.from_card(emb.card)
    rows, keys, counts = [], [], []
    for q in queries:
        w, starts = make_windows(q.frames, QUERY_HOP, emb.win_length)
        e = emb.embed(w)
        labels, sims = lib.knn(e, k)
        acc = VoteAccumulator(*lib.label_maps)
        acc.add(starts, labels, sims, emb.win_length)
        cands = verify(acc.rank(12), {0: QueryWindows(e, starts, q.frames)}, lib)
        score_candidates(cands, len(starts), ordering)
        rows.append(features(cands[0] if cands else None, len(starts)))
        keys.append(grade_key(lib.piece(cands[0].piece)["path"]) if cands else "")
        counts.append(len(starts))
    return np.array(rows), keys, np.array(counts)


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
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--model", default=None, help="card to update (default: the library's model)")
    ap.add_argument("--n", type=int, default=400, help="queries per length and class")
    ap.add_argument("--flag-rate", type=float, nargs="+", default=[0.96],
                    help="share of out-of-library queries to flag: one for all lengths, or "
                         "one each for 5, 10 and 20 s")
    ap.add_argument("--reuse", action="store_true",
                    help="fit on the features of the last run (no searching)")
    ap.add_argument("--write", action="store_true")
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
    if args.write:
        model = Path(args.model) if args.model else Path(Library(args.library).embedder.path)
        card_path = model.with_suffix(".json")
        card = json.loads(card_path.read_text())
        rates_text = " ".join(f"{r:g}" for r in args.flag_rate)
        card["calibration"] = {**calib, "fitted_on": "ASAP dev half (benchmarks/calibrate.py "
                               f"--n {args.n} --flag-rate {rates_text})",
                               "features": list(FEATURES)}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"written to {card_path}")


if __name__ == "__main__":
    main()
