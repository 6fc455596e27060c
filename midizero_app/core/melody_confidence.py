"""How sure a melody answer is: gradient-boosted trees over the answer's evidence.

A logistic over support, margin and length (what full textures use) could not tell a
remembered short tune of the library from a stranger's that some piece holds nearly as
well. Trees over a few more of the search's own numbers (how far the second piece trails,
how well it fits, how much of the tune is rhythm, the aligned place's interval score and
how much of the tune's rhythm the best place keeps) flag fewer right answers at the same
share of strangers rejected (benchmarks/RESULTS.md, melody). ``python -m
scripts.fit_melody_confidence`` fits them with scikit-learn on themes of held-out pieces
and stores them as plain arrays in ``models/melody-confidence.npz``; this module evaluates
them with numpy, so the app needs neither scikit-learn nor pickle.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundled import model_file
from .errors import MidizeroError
from .search import Candidate, shifted_confidence, threshold_at

class ConfidenceModelError(MidizeroError, RuntimeError):
    """The melody confidence model is missing or damaged (a broken installation)."""


MAX_DEPTH = 64  # deeper trees are no model this software fits: a damaged file


FEATURES = ("support", "margin", "log_notes", "agree", "rhythm", "gap", "second_support",
            "place", "rhythm_kept")
# Confidence never falls when the best place fits better, the lead over the best
# different piece or over the runner-up grows, the aligned place scores higher, or the
# best place keeps more of the tune's rhythm (scikit-learn's monotonic_cst).
MONOTONE = (1, 1, 0, 0, 0, 1, 0, 1, 1)


def confidence_features(cands: list[Candidate], n_notes: int, match: float, rhythm: float
                        ) -> np.ndarray:
    """The evidence for the best of ``cands`` (best first, ``margin`` filled) for a tune of
    ``n_notes`` notes whose note-for-note match is worth ``match`` nats
    (:func:`~midizero_app.core.melody_likelihood.match_evidence`) and whose rhythm is worth at most
    ``rhythm`` (:func:`~midizero_app.core.melody_rhythm.rhythm_evidence`), float64 (9,) in the
    order of :data:`FEATURES`:

    support (1 note for note), margin (lead over the best different piece, in units of
    match + rhythm), log notes, agree (share of intervals matched at the best place),
    rhythm / match, gap (lead over the runner-up, any piece, in units of match), the
    runner-up's support, the best place's interval-alignment score per note, and the
    share of the rhythm's evidence the best place keeps (1: the tune in the place's own
    rhythm; below 0: in another; 0 for a tune whose rhythm tells nothing). With no
    runner-up the gap is the margin and the runner-up's support 0 (a place that explains
    the tune no better than any tune).
    """
    top = cands[0]
    second = cands[1] if len(cands) > 1 else None
    return np.array([
        top.support, top.margin, math.log(max(n_notes, 1)), top.agree, rhythm / match,
        (top.score - second.score) / match if second else top.margin,
        second.support if second else 0.0,
        top.positions[0]["score"] / n_notes if top.positions else 0.0,
        top.rhythm / rhythm if rhythm > 0 else 0.0], np.float64)


@dataclass(frozen=True, eq=False)
class TreeConfidence:
    """A binary gradient-boosted tree ensemble (log-odds), flattened: node ``i`` splits on
    ``feature[i]`` (go left when the value ≤ ``threshold[i]``, a NaN where
    ``missing_left[i]``) or is a leaf worth ``value[i]``; ``roots`` are the trees' first
    nodes (none: a neutral model, probability 0.5 everywhere). ``thresholds``: (notes,
    probability) points, interpolated in log notes, below which the answer is "not in
    your library"; :meth:`confidence` shifts by them so that 0.5 is always the boundary.
    """

    feature: np.ndarray    # int64 (N,)
    threshold: np.ndarray  # float64 (N,)
    left: np.ndarray       # int64 (N,)
    right: np.ndarray      # int64 (N,)
    value: np.ndarray      # float64 (N,)
    is_leaf: np.ndarray    # bool (N,)
    missing_left: np.ndarray  # bool (N,)
    roots: np.ndarray      # int64 (T,)
    baseline: float
    depth: int
    thresholds: tuple[tuple[float, float], ...]

    def log_odds(self, x: np.ndarray) -> float:
        """The ensemble's raw log-odds for one feature vector, float (9,) in the order of
        :data:`FEATURES`."""
        x = np.asarray(x, np.float64)
        node = self.roots.copy()
        for _ in range(self.depth):
            v = x[self.feature[node]]
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            node = np.where(self.is_leaf[node], node,
                            np.where(go_left, self.left[node], self.right[node]))
        return self.baseline + float(self.value[node].sum())

    def probability(self, x: np.ndarray) -> float:
        """The fitted probability that the best candidate is right, in [0, 1]."""
        return shifted_confidence(self.log_odds(x), 0.5)

    def threshold_for(self, n_notes: int) -> float:
        """The probability below which a tune of ``n_notes`` notes is not in the library."""
        return threshold_at(self.thresholds, math.log(max(n_notes, 1)))

    def confidence(self, x: np.ndarray, n_notes: int) -> float:
        """The probability shifted by the threshold for ``n_notes``: below 0.5 the answer is
        "not in your library"."""
        return shifted_confidence(self.log_odds(x), self.threshold_for(n_notes))

    @classmethod
    def neutral(cls) -> "TreeConfidence":
        """No trees: probability 0.5 for every answer (to collect features with before any
        model is fitted)."""
        none = np.zeros(0, np.int64)
        return cls(none, np.zeros(0), none, none, np.zeros(0), np.zeros(0, bool),
                   np.zeros(0, bool), none, 0.0, 0, ())

    @classmethod
    def from_sklearn(cls, model, thresholds: list[tuple[float, float]]) -> "TreeConfidence":
        """Flatten a fitted binary ``sklearn.ensemble.HistGradientBoostingClassifier`` with
        numeric features only; ``thresholds`` as :attr:`thresholds`."""
        if model.n_trees_per_iteration_ != 1 or model.is_categorical_ is not None:
            raise ValueError("only binary classifiers on numeric features can be flattened")
        parts, roots, base = [], [], 0
        for (tree,) in model._predictors:
            n = tree.nodes
            parts.append((n["feature_idx"], n["num_threshold"], n["left"].astype(np.int64) + base,
                          n["right"].astype(np.int64) + base, n["value"], n["is_leaf"] > 0,
                          n["missing_go_to_left"] > 0, n["depth"]))
            roots.append(base)
            base += len(n)
        cat = [np.concatenate([p[i] for p in parts]) for i in range(8)]
        return cls(cat[0].astype(np.int64), cat[1].astype(np.float64), cat[2], cat[3],
                   cat[4].astype(np.float64), cat[5], cat[6], np.array(roots, np.int64),
                   float(np.ravel(model._baseline_prediction)[0]), int(cat[7].max()) + 1,
                   tuple((float(a), float(b)) for a, b in thresholds))

    def save(self, path: str | Path) -> None:
        """Write the model as plain arrays (``numpy.savez_compressed``)."""
        np.savez_compressed(path, feature=self.feature, threshold=self.threshold,
                            left=self.left, right=self.right, value=self.value,
                            is_leaf=self.is_leaf, missing_left=self.missing_left,
                            roots=self.roots,
                            baseline=np.float64(self.baseline), depth=np.int64(self.depth),
                            thresholds=np.array(self.thresholds, np.float64).reshape(-1, 2),
                            features=np.array(FEATURES))

    @classmethod
    def load(cls, path: str | Path) -> "TreeConfidence":
        """Read a model written by :meth:`save` (never unpickles); ValueError if it was
        fitted on other :data:`FEATURES` or its arrays do not form trees
        (:meth:`check`)."""
        with np.load(path, allow_pickle=False) as z:
            if tuple(z["features"].tolist()) != FEATURES:
                raise ValueError(f"{path}: fitted on other features {z['features'].tolist()}")
            model = cls(z["feature"].astype(np.int64), z["threshold"].astype(np.float64),
                        z["left"].astype(np.int64), z["right"].astype(np.int64),
                        z["value"].astype(np.float64), z["is_leaf"].astype(bool),
                        z["missing_left"].astype(bool), z["roots"].astype(np.int64),
                        float(z["baseline"]), int(z["depth"]),
                        tuple((float(a), float(b)) for a, b in
                              np.asarray(z["thresholds"], np.float64).reshape(-1, 2)))
        model.check()
        return model

    def check(self) -> None:
        """ValueError unless the arrays form trees :meth:`log_odds` can walk: one length N
        for every node array, every node's feature one of :data:`FEATURES` and its children
        nodes, roots nodes, a depth of 0..:data:`MAX_DEPTH`, finite leaf values
        and thresholds."""
        n = len(self.feature)
        arrays = (self.threshold, self.left, self.right, self.value, self.is_leaf,
                  self.missing_left)
        if any(np.ndim(a) != 1 or len(a) != n for a in (self.feature, *arrays)):
            raise ValueError("the node arrays differ in length")
        # log_odds reads every node's feature and children, a leaf's too
        if np.ndim(self.roots) != 1 \
                or np.any((self.feature < 0) | (self.feature >= len(FEATURES))) \
                or np.any((self.left < 0) | (self.left >= n)) \
                or np.any((self.right < 0) | (self.right >= n)) \
                or np.any((self.roots < 0) | (self.roots >= n)):
            raise ValueError("a node points outside the trees")
        if not 0 <= self.depth <= MAX_DEPTH or (len(self.roots) and self.depth == 0):
            raise ValueError(f"a depth of {self.depth}")
        if not (np.isfinite(self.value).all() and math.isfinite(self.baseline)
                and all(math.isfinite(a) and math.isfinite(b) for a, b in self.thresholds)):
            raise ValueError("a value that is not a finite number")


MODEL_NAME, MODEL_ENV = "melody-confidence.npz", "MIDIZERO_MELODY_CONFIDENCE"


def default_path() -> Path:
    """The bundled model (the environment variable ``MIDIZERO_MELODY_CONFIDENCE`` names
    another), found as every shipped file is (:func:`~midizero_app.core.bundled.model_file`)."""
    return model_file(MODEL_NAME, MODEL_ENV)


_DEFAULT: list[TreeConfidence] = []


def default() -> TreeConfidence:
    """The model in use: the bundled one, loaded once, unless :func:`use` set another.
    :class:`ConfidenceModelError`, saying what to do, when the file is missing or
    damaged."""
    if not _DEFAULT:
        path = default_path()
        try:
            _DEFAULT.append(TreeConfidence.load(path))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfidenceModelError(
                f"the melody confidence model {path} is missing or damaged"
                f" ({' '.join(str(exc).split())}); reinstall"
                " MIDI-Zero, or make it again with python -m scripts.fit_melody_confidence"
                ) from None
    return _DEFAULT[0]


def use(model: TreeConfidence | None) -> None:
    """Make ``model`` the one :func:`default` returns (None: the bundled file again)."""
    _DEFAULT[:] = [model] if model is not None else []
