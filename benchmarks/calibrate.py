"""Fit the confidence / "not in your library" calibration of a model on the ASAP dev half.

    python benchmarks/calibrate.py --model models/default.pt [--n 400] [--write]

A copy of the benchmark library loses a seeded half of the dev pieces. Queries (5, 10 and
20 s excerpts of dev performances) from removed pieces must be flagged; queries from kept
pieces should not be (when answered correctly). A logistic model over the features of
:func:`midizero_app.core.search.features` is fitted, and the threshold is set so that 97 %
of the dev out-of-library queries are flagged. ``--write`` stores it in the model card.
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
from midizero_app.core.search import (DEFAULT_K, Calibration, VoteAccumulator,  # noqa: E402
                                       features, score_candidates)
from midizero_app.core.windows import QUERY_HOP, make_windows  # noqa: E402

FEATURES = ("support", "margin", "agree", "log_windows")


def feature_rows(lib: Library, queries) -> tuple[np.ndarray, list[str]]:
    """Per query: the confidence features of its best answer, and that answer's grading key
    (the same steps as search_library, stopping before the calibrated confidence)."""
    emb = lib.embedder
    neutral = Calibration(threshold=0.0)
    rows, keys = [], []
    for q in queries:
        w, starts = make_windows(q.frames, QUERY_HOP, emb.win_length)
        labels, sims = lib.knn(emb.embed(w), DEFAULT_K)
        acc = VoteAccumulator(*lib.label_maps)
        acc.add(starts, labels, sims, emb.win_length)
        cands = acc.rank(12)
        score_candidates(cands, len(starts), neutral)
        s, m, a, n = features(cands, len(starts))
        rows.append([s, m, a, math.log(max(n, 1))])
        keys.append(grade_key(lib.piece(cands[0].piece)["path"]) if cands else "")
    return np.array(rows), keys


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--model", default=None, help="card to update (default: the library's model)")
    ap.add_argument("--n", type=int, default=400, help="queries per length and class")
    ap.add_argument("--flag-rate", type=float, default=0.97)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found")
    dev, _ = dev_test_split(asap)
    copy = CACHE / "calibration-library"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(args.library, copy)
    lib = Library(copy)
    rng = np.random.default_rng(123)
    dev_sorted = sorted(dev)
    removed = set(rng.choice(dev_sorted, len(dev_sorted) // 2, replace=False).tolist())
    lib.remove(*[p["path"] for p in lib.pieces() if grade_key(p["path"]) in removed])
    perfs = load_performances(asap)
    xs, ys, kinds = [], [], []
    for i, length in enumerate((5.0, 10.0, 20.0)):
        q_out = make_queries(perfs, length, args.n, 1000 + i, pieces=removed)
        q_in = make_queries(perfs, length, args.n, 2000 + i, pieces=set(dev) - removed)
        x_out, _ = feature_rows(lib, q_out)
        x_in, keys = feature_rows(lib, q_in)
        correct = np.array([k == q.key for k, q in zip(keys, q_in)])
        xs += [x_out, x_in]
        ys += [np.zeros(len(x_out)), correct.astype(float)]
        kinds += [np.zeros(len(x_out), bool), np.ones(len(x_in), bool)]
        print(f"{length:g} s: in-library top-1 {correct.mean():.3f}", flush=True)
    x, y, is_in = np.vstack(xs), np.concatenate(ys), np.concatenate(kinds)
    w = fit_logistic(x, y)
    z = np.hstack([x, np.ones((len(x), 1))]) @ w
    conf = 1 / (1 + np.exp(-z))
    # The threshold flags the asked share of out-of-library queries at every length (short
    # queries carry less evidence; a pooled quantile would under-flag them).
    lengths = np.concatenate([np.full(2 * args.n, i) for i in range(3)])
    thr = max(float(np.quantile(conf[~is_in & (lengths == i)], args.flag_rate)) for i in range(3))
    calib = {"w_support": w[0], "w_margin": w[1], "w_agree": w[2], "w_log_windows": w[3],
             "bias": w[4], "threshold": thr}
    calib = {k: round(float(v), 5) for k, v in calib.items()}
    flagged_out = float(np.mean(conf[~is_in] < thr))
    kept_correct = float(np.mean((conf[is_in] >= thr) & (y[is_in] == 1)))
    print(json.dumps({"calibration": calib, "dev_out_flagged": flagged_out,
                      "dev_in_top1_unflagged": kept_correct}, indent=1))
    lib.close()
    if args.write:
        model = Path(args.model) if args.model else Path(Library(args.library).embedder.path)
        card_path = model.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["calibration"] = {**calib, "fitted_on": "ASAP dev half (benchmarks/calibrate.py)",
                               "features": list(FEATURES)}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"written to {card_path}")


if __name__ == "__main__":
    main()
