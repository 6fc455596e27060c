"""Fit the melody confidence ("not in your library" for tunes) and write
``models/melody-confidence.npz``, which ``midizero_app/core/melody_confidence.py`` reads.

    python -m scripts.fit_melody_confidence [--n 300] [--seed 0] [--library ...] [--dry-run]

Needs the benchmark library (``python -m benchmarks.build_library``), ASAP data and
scikit-learn (the test extra); the app itself only reads the fitted trees.

A dev split: 20 % of the ASAP pieces removed from a copy of the library (seed
``--seed`` + 23, other pieces than the ones ``benchmarks.melody_bench --parts holdout``
reports on, seed + 11), ``--n`` themes a cell from them (strangers) and from the rest, at
8 / 12 / 16 / 24 notes, exact and remembered, random key, timed both ways (in the score's
rhythm and one note every 0.3 s: a player may or may not keep the rhythm). The
confidence features of each answer (``melody_confidence.confidence_features``) are
collected with a neutral model, then scikit-learn's gradient-boosted trees are fitted
(:func:`calibration`) with per-length thresholds that reject 92 % of the strangers in
each form. Measure the written model with ``python -m benchmarks.melody_bench --parts
holdout``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import melody_queries as mq
from benchmarks.common import CACHE, asap_dir
from benchmarks.melody_queries import LENGTHS, asap_lines, holdout
from midizero_app.core import melody_confidence
from midizero_app.core.atomic import atomic_write
from midizero_app.core.library import Library
from midizero_app.core.melody_confidence import MONOTONE, TreeConfidence


def calibration(feats: list[tuple], reject: float = 0.92) -> TreeConfidence:
    """Fit the melody confidence on ``melody_queries.holdout``'s rows (features, right, held out,
    form, length, piece): scikit-learn's gradient-boosted trees (monotone where more
    evidence must mean more confidence), then per length the lowest threshold that rejects
    ``reject`` of the held-out themes in each form, read off predictions for pieces the
    trees did not see (5 folds grouped by piece: a piece's themes overlap)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x = np.array([f[0] for f in feats])
    y = np.array([f[1] for f in feats])
    outside = np.array([f[2] for f in feats], bool)
    forms = np.array([f[3] for f in feats])
    nominal = np.array([f[4] for f in feats])
    _, groups = np.unique([f[5] for f in feats], return_inverse=True)

    def trees():
        return HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
            l2_regularization=1.0, monotonic_cst=list(MONOTONE), early_stopping=False,
            random_state=0)

    p = cross_val_predict(trees(), x, y, groups=groups, cv=GroupKFold(5),
                          method="predict_proba")[:, 1]
    thresholds = []
    for length in LENGTHS:
        masks = [m for form in set(forms)
                 if (m := outside & (nominal == length) & (forms == form)).any()]
        t = next((t for t in np.arange(0.005, 0.99, 0.005)
                  if all(np.mean(p[m] < t) >= reject for m in masks)), 0.99)
        thresholds.append((length, round(float(t), 3)))
    fitted = trees().fit(x, y)
    model = TreeConfidence.from_sklearn(fitted, thresholds)
    assert np.allclose([model.probability(v) for v in x[:200]],
                       fitted.predict_proba(x[:200])[:, 1])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description="Fit the melody confidence and write "
                                             "models/melody-confidence.npz.")
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=300, help="themes per cell and class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reject", type=float, default=0.92,
                    help="share of held-out themes each length's threshold rejects")
    ap.add_argument("--out", default=None,
                    help="where to write (default: models/melody-confidence.npz)")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    args = ap.parse_args()
    if asap_dir() is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    lines = asap_lines(lib)
    # The features do not depend on the model in use: a neutral one needs no file.
    melody_confidence.use(TreeConfidence.neutral())
    feats = []
    for rhythm in ("score", "none"):
        mq.RHYTHM = rhythm
        feats += holdout(lib, lines, args.n, args.seed + 23, calibrate=True)[1]
    mq.RHYTHM = "score"
    lib.close()
    model = calibration(feats, args.reject)
    melody_confidence.use(None)
    out = Path(args.out) if args.out else melody_confidence.default_path()
    print(f"melody confidence: {len(model.roots)} trees, thresholds {model.thresholds}",
          flush=True)
    if args.dry_run:
        return
    with atomic_write(out) as tmp, open(tmp, "wb") as f:
        model.save(f)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
