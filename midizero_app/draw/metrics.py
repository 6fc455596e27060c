"""How well a generated piece follows the drawing and how much it sounds like music.

* :func:`blurred_iou` — intersection over union of the drawing and the generated roll,
  both blurred by a small Gaussian (a soft IoU: Σ min / Σ max), as midiDraw suggests.
* :func:`frechet_distance` — the Fréchet distance between two Gaussians fitted to window
  embeddings (the symbolic counterpart of the Fréchet Audio Distance), after
  :func:`fit_pca`.
* :func:`in_key_share`, :func:`notes_per_frame`, :func:`second_share` — simple musical
  statistics (the last one hears what the embeddings barely see: notes a second apart).
"""
from __future__ import annotations

import numpy as np

from ..core.frames import Frames
from .theory import Key

IOU_SIGMA = 1.0  # cells (one 16th note in time, one semitone in pitch)


def blurred_iou(a: np.ndarray, b: np.ndarray, sigma: float | tuple[float, float] = IOU_SIGMA
                ) -> float:
    """Soft IoU of two rolls after a Gaussian blur.

    Parameters
    ----------
    a, b : (T, 88) arrays; anything above 0 counts as 1.
    sigma : blur in cells (time steps, semitones).

    Returns
    -------
    float in [0, 1]: Σ min(A, B) / Σ max(A, B) of the blurred maps; 1.0 for two empty rolls.
    """
    from scipy.ndimage import gaussian_filter

    if a.shape != b.shape:
        raise ValueError(f"rolls differ in shape: {a.shape} vs {b.shape}")
    A = gaussian_filter((np.asarray(a) > 0).astype(np.float32), sigma, mode="constant")
    B = gaussian_filter((np.asarray(b) > 0).astype(np.float32), sigma, mode="constant")
    den = float(np.maximum(A, B).sum())
    return 1.0 if den == 0 else float(np.minimum(A, B).sum()) / den


def fit_pca(x: np.ndarray, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rows of ``x`` (N, D) → (mean (D,), components (dim, D))."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    _u, _s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:dim]


def project(x: np.ndarray, pca: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Rows of ``x`` (N, D) in the PCA basis → (N, dim)."""
    mean, comp = pca
    return (np.asarray(x, np.float64) - mean) @ comp.T


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to samples ``x`` (N, d) and ``y`` (M, d):
    ‖μx − μy‖² + tr(Σx + Σy − 2 (Σx Σy)^½)."""
    from scipy.linalg import sqrtm

    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = sqrtm(cx @ cy)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * covmean))


def in_key_share(pitches: np.ndarray, key: Key) -> float:
    """Share of the notes whose pitch class is in the key (1.0 for no notes)."""
    pitches = np.asarray(pitches, np.int64)
    if not len(pitches):
        return 1.0
    return float(key.pitch_class_mask[pitches % 12].mean())


def notes_per_frame(frames: Frames) -> float:
    """Mean number of pitches per chord frame."""
    return float(len(frames.pitches)) / max(len(frames), 1)


def second_share(frames: Frames) -> float:
    """Share of the chord frames that strike two notes a second (1 or 2 semitones) apart."""
    if not len(frames):
        return 0.0
    p = frames.pitches.astype(np.int64)
    close = (np.diff(p) <= 2) & (np.diff(frames.frame_index()) == 0)  # sorted per frame
    return float(len(np.unique(frames.frame_index()[1:][close]))) / len(frames)


def best_key(pitches: np.ndarray) -> Key:
    """The major or minor key whose scale holds the most of the notes (ties: major, C first)."""
    pitches = np.asarray(pitches, np.int64)
    hist = np.bincount(pitches % 12, minlength=12)
    best, best_n = Key(0), -1
    for mode in ("major", "minor"):
        for tonic in range(12):
            k = Key(tonic, mode)
            n = int(hist[k.pitch_class_mask].sum())
            if n > best_n:
                best, best_n = k, n
    return best
