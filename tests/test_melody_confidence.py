"""The melody confidence: trees fitted by scikit-learn, evaluated by numpy from plain arrays."""
import numpy as np
import pytest

from midizero_app.core import melody_confidence as mc
from midizero_app.core.melody_confidence import FEATURES, MONOTONE, TreeConfidence


def _fitted(rng, missing: bool = False):
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = rng.normal(size=(2000, len(FEATURES)))
    if missing:  # some values missing in training: their side of each split is learnt
        x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0] + 0.5 * x[:, 1] * x[:, 5] - 0.3 * x[:, 4], nan=1.0)
         + rng.normal(0, 0.5, 2000) > 0)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15,
                                           monotonic_cst=list(MONOTONE), early_stopping=False,
                                           random_state=0).fit(x, y.astype(int))
    return model, x


def test_flattened_trees_give_scikit_learns_probabilities(tmp_path):
    model, x = _fitted(np.random.default_rng(0))
    trees = TreeConfidence.from_sklearn(model, [(8, 0.4), (24, 0.1)])
    trees.save(tmp_path / "m.npz")
    loaded = TreeConfidence.load(tmp_path / "m.npz")
    ours = np.array([loaded.probability(v) for v in x[:300]])
    np.testing.assert_allclose(ours, model.predict_proba(x[:300])[:, 1], rtol=1e-9, atol=1e-12)
    # The thresholds move the boundary: at 8 notes a probability of 0.4 is the 0.5 line.
    v = x[int(np.argmin(np.abs(ours - 0.4)))]
    p = loaded.probability(v)
    assert (loaded.confidence(v, 8) >= 0.5) == (p >= 0.4)
    assert loaded.threshold_for(12) == pytest.approx(0.4 + (0.1 - 0.4) * np.log(1.5) / np.log(3))


def test_missing_values_take_the_side_scikit_learn_learnt(tmp_path):
    model, x = _fitted(np.random.default_rng(3), missing=True)
    trees = TreeConfidence.from_sklearn(model, [(8, 0.5)])
    trees.save(tmp_path / "m.npz")
    loaded = TreeConfidence.load(tmp_path / "m.npz")
    ours = np.array([loaded.probability(v) for v in x[:300]])
    np.testing.assert_allclose(ours, model.predict_proba(x[:300])[:, 1], rtol=1e-9, atol=1e-12)


def test_a_neutral_model_is_undecided():
    neutral = TreeConfidence.neutral()
    assert neutral.probability(np.ones(len(FEATURES))) == 0.5


def test_a_damaged_model_file_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "melody-confidence.npz"
    bad.write_bytes(b"not a zip file at all")
    monkeypatch.setenv("MIDIZERO_MELODY_CONFIDENCE", str(bad))
    mc.use(None)
    try:
        with pytest.raises(mc.ConfidenceModelError, match="missing or damaged.*reinstall"):
            mc.default()
        monkeypatch.setenv("MIDIZERO_MELODY_CONFIDENCE", str(tmp_path / "absent.npz"))
        with pytest.raises(mc.ConfidenceModelError, match="absent.npz is missing or damaged"):
            mc.default()
    finally:
        monkeypatch.delenv("MIDIZERO_MELODY_CONFIDENCE")
        mc.use(None)
    assert len(mc.default().roots) > 10  # the bundled model again


def test_a_model_fitted_on_other_features_is_refused(tmp_path):
    model, _ = _fitted(np.random.default_rng(1))
    path = tmp_path / "m.npz"
    TreeConfidence.from_sklearn(model, [(8, 0.5)]).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["features"] = np.array(FEATURES[:-1] + ("something else",))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="other features"):
        TreeConfidence.load(path)


def test_the_bundled_model_grows_with_the_evidence():
    model = mc.default()
    assert len(model.roots) > 10 and model.thresholds
    rng = np.random.default_rng(2)
    for _ in range(200):
        v = np.array([rng.uniform(-0.5, 1), rng.uniform(0, 1), np.log(rng.integers(6, 40)),
                      rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1),
                      rng.uniform(-0.5, 1), rng.uniform(0, 3), rng.uniform(-0.3, 1)])
        better = v.copy()
        better[[i for i, m in enumerate(MONOTONE) if m > 0]] += 0.2
        assert model.probability(better) >= model.probability(v) - 1e-12
    # A note-for-note 16-note match far ahead of every other piece is confident; a tune
    # whose best place fits worse than a random tune would is not.
    sure = np.array([1.0, 0.8, np.log(16), 1.0, 0.1, 0.8, 0.2, 2.0, 1.0])
    lost = np.array([-0.2, 0.01, np.log(16), 0.5, 0.1, 0.01, -0.25, 0.2, 0.0])
    assert model.confidence(sure, 16) > 0.9 and model.confidence(lost, 16) < 0.5


@pytest.mark.parametrize("damage", ["child", "feature", "root", "depth", "lengths", "value"])
def test_a_crafted_model_is_refused_before_any_answer(tmp_path, monkeypatch, damage):
    """A model file whose arrays do not form trees (a child or feature index out of range,
    a huge depth, arrays of different lengths, a NaN leaf) is refused when loaded, with one
    line; the search never walks it."""
    model, _ = _fitted(np.random.default_rng(4))
    path = tmp_path / "m.npz"
    TreeConfidence.from_sklearn(model, [(8, 0.5)]).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if damage == "child":
        arrays["left"][np.flatnonzero(~arrays["is_leaf"])[0]] = 10**9
    elif damage == "feature":
        arrays["feature"][0] = len(FEATURES)
    elif damage == "root":
        arrays["roots"][-1] = -5
    elif damage == "depth":
        arrays["depth"] = np.int64(10**9)
    elif damage == "lengths":
        arrays["value"] = arrays["value"][:-1]
    else:
        arrays["value"][np.flatnonzero(arrays["is_leaf"])[0]] = np.nan
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError):
        TreeConfidence.load(path)
    monkeypatch.setenv("MIDIZERO_MELODY_CONFIDENCE", str(path))
    mc.use(None)
    try:
        with pytest.raises(mc.ConfidenceModelError) as err:
            mc.default()
        assert "\n" not in str(err.value) and "reinstall" in str(err.value)
    finally:
        monkeypatch.delenv("MIDIZERO_MELODY_CONFIDENCE")
        mc.use(None)


def test_the_bundled_model_is_found_through_the_shipped_files():
    from midizero_app.core.bundled import bundled_path

    assert mc.default_path() == bundled_path("models", "melody-confidence.npz")
    mc.default().check()
