"""Zalkow & Müller's chroma route: audio → CTC chroma, and the chroma of score notes.

The second audio route beside transcription (Zalkow & Müller, ISMIR 2020: "Using weakly
aligned score–audio pairs to train deep chroma models for cross-modal music retrieval").
Their network maps a harmonic CQT (HCQT) of the audio to a 12-bin chroma plus a blank
class, frame by frame. The weights come from the ``ctc-chroma`` package (MIT,
models/LICENSE-ctc-chroma), converted once by ``scripts/convert_ctc_chroma.py`` to
``models/ctc-chroma.npz``, and run here with torch; the HCQT front end needs librosa (the
``bench`` extra), imported only when audio is analysed. ``python -m benchmarks.chroma_bench``
measures it against the transcription route, alone and fused; the app's search does not
use it (benchmarks/RESULTS.md, audio).

Units: audio is float32 mono at :data:`SAMPLE_RATE` Hz; chroma arrays are (12, frames)
with unit-norm columns, :data:`FEATURE_RATE` frames per second unless a function takes a
``rate``; times in seconds.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from midizero_app.core.bundled import bundled_path
from midizero_app.core.errors import MidizeroError

SAMPLE_RATE = 22050
HOP = 256
BINS_PER_OCTAVE = 36
N_OCTAVES = 6
HARMONICS = (0.5, 1, 2, 3, 4, 5)
FMIN = 32.7                      # Hz, C1
FEATURE_RATE = 25                # frames per second, as the model was trained
CHUNK, CONTEXT = 1500, 8         # frames per network call on long audio, and their margin
LAYERS = ("bendy1", "bendy2", "smoothy1", "smoothy2", "distribute", "squishy")


class ChromaUnavailable(MidizeroError):
    """The chroma route cannot run here (no librosa, or no converted model); ``str()`` is
    one line for the user."""


def model_path() -> Path:
    """``models/ctc-chroma.npz`` (raises :class:`ChromaUnavailable` when it is missing)."""
    p = bundled_path("models", "ctc-chroma.npz", must_exist=False)
    if not p.is_file():
        raise ChromaUnavailable(f"{p} is missing: make it with scripts/convert_ctc_chroma.py")
    return p


def _librosa():
    try:
        import librosa
    except ImportError:
        raise ChromaUnavailable("the chroma route needs librosa: pip install "
                                "'midizero-app[bench]'") from None
    return librosa


def build_network(weights: dict[str, np.ndarray]):
    """The CTC chroma network as a torch module: (batch, 6, time, 216) → (batch, time, 13)
    softmax probabilities (12 chroma classes, then the blank)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList()
            for name in LAYERS:
                k = torch.from_numpy(weights[f"{name}.kernel"])  # TF: (kh, kw, in, out)
                conv = nn.Conv2d(k.shape[2], k.shape[3], tuple(k.shape[:2]), padding="same")
                conv.weight.data = k.permute(3, 2, 0, 1).contiguous()
                conv.bias.data = torch.from_numpy(weights[f"{name}.bias"])
                self.convs.append(conv)
            self.register_buffer("chroma", torch.from_numpy(weights["chroma_pool.kernel"]))
            self.register_buffer("eps_w", torch.from_numpy(weights["eps_pool.kernel"]))
            self.register_buffer("eps_b", torch.from_numpy(weights["eps_pool.bias"]))

        def forward(self, x):
            for conv in self.convs[:-1]:
                x = nn.functional.leaky_relu(conv(x), 0.3)
            s = torch.sigmoid(self.convs[-1](x))[:, 0]  # (batch, time, 216)
            logits = torch.cat([s @ self.chroma, s @ self.eps_w + self.eps_b], -1)
            return torch.softmax(logits, -1)

    return Net().eval()


@lru_cache(maxsize=1)
def network():
    """The network of :func:`model_path`, loaded once (see :func:`build_network`)."""
    with np.load(model_path(), allow_pickle=False) as z:
        return build_network({k: z[k] for k in z.files})


def hcqt(samples: np.ndarray) -> np.ndarray:
    """Log-magnitude harmonic CQT as the model was trained on: (6, 216, frames) in [0, 1]
    (dB / 80 + 1 against the loudest bin), hop :data:`HOP` samples at :data:`SAMPLE_RATE`."""
    librosa = _librosa()

    cqts = [np.abs(librosa.cqt(samples, sr=SAMPLE_RATE, hop_length=HOP, fmin=FMIN * h,
                               n_bins=BINS_PER_OCTAVE * N_OCTAVES,
                               bins_per_octave=BINS_PER_OCTAVE)) for h in HARMONICS]
    n = min(c.shape[1] for c in cqts)
    return librosa.amplitude_to_db(np.stack([c[:, :n] for c in cqts]), ref=np.max) / 80.0 + 1.0


def to_feature_rate(x: np.ndarray) -> np.ndarray:
    """Median of the HCQT frames within each 1/FEATURE_RATE s (last axis)."""
    times = np.arange(x.shape[-1]) * HOP / SAMPLE_RATE
    edges = np.searchsorted(times, np.arange(0, times[-1] + 1e-9, 1.0 / FEATURE_RATE))
    edges = np.append(edges, x.shape[-1])
    return np.stack([np.median(x[..., a:max(b, a + 1)], axis=-1)
                     for a, b in zip(edges[:-1], edges[1:])], axis=-1)


def audio_chroma(samples: np.ndarray) -> np.ndarray:
    """CTC chroma of mono audio at :data:`SAMPLE_RATE`: (12, frames) at FEATURE_RATE,
    columns of unit length (the blank class dropped, as in ctc_chroma's apply_model)."""
    import torch

    x = to_feature_rate(hcqt(np.asarray(samples, np.float32)))          # (6, 216, T)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = np.ascontiguousarray(x.transpose(0, 2, 1), np.float32)          # (6, T, 216)
    out = []
    # Long recordings in chunks: the five 3-frame convolutions see ±5 frames, so CONTEXT
    # frames on each side make every chunk's output equal to the whole-input output.
    with torch.inference_mode():
        for a in range(0, x.shape[1], CHUNK):
            lo, hi = max(a - CONTEXT, 0), min(a + CHUNK + CONTEXT, x.shape[1])
            p = network()(torch.from_numpy(x[None, :, lo:hi]))[0]
            out.append(p[a - lo:a - lo + min(CHUNK, x.shape[1] - a), :12].numpy())
    return unit_columns(np.concatenate(out).T)


def notes_chroma(onset: np.ndarray, offset: np.ndarray, pitch: np.ndarray,
                 rate: float, duration: float | None = None) -> np.ndarray:
    """Chroma of notes: (12, frames) at ``rate`` frames per second, each frame the pitch
    classes sounding in it (a note counts in every frame it overlaps), unit-norm columns.
    Times in seconds."""
    end = float(np.max(offset)) if duration is None and len(offset) else (duration or 0.0)
    n = max(int(np.ceil(end * rate)), 1)
    c = np.zeros((12, n), np.float32)
    a = np.clip((np.asarray(onset) * rate).astype(int), 0, n - 1)
    b = np.clip(np.ceil(np.asarray(offset) * rate).astype(int), a + 1, n)
    for pc, i, j in zip(np.asarray(pitch) % 12, a, b):
        c[pc, i:j] = 1.0
    return unit_columns(c)


def unit_columns(c: np.ndarray) -> np.ndarray:
    """Columns scaled to unit length; silent columns become the flat 1/√12 vector."""
    c = np.asarray(c, np.float32)
    norm = np.linalg.norm(c, axis=0, keepdims=True)
    return np.where(norm > 1e-9, c / np.maximum(norm, 1e-9), np.float32(1 / np.sqrt(12)))


def frames_chroma(onset: np.ndarray, offsets: np.ndarray, pitches: np.ndarray, rate: float,
                  max_hold: float = 2.0) -> np.ndarray:
    """Chroma of chord frames (:class:`~midizero_app.core.frames.Frames` arrays): each
    frame's pitches sound until the next frame starts, at most ``max_hold`` seconds.
    (12, frames) at ``rate`` per second."""
    if len(onset) == 0:
        return unit_columns(np.zeros((12, 1)))
    ends = np.minimum(np.append(onset[1:], onset[-1] + max_hold), onset + max_hold)
    counts = np.diff(offsets)
    return notes_chroma(np.repeat(onset, counts), np.repeat(ends, counts), pitches, rate)


def pool(c: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` neighbouring columns (25 Hz → 25/factor Hz), unit-norm again."""
    n = c.shape[1] // factor * factor
    if n == 0:
        return unit_columns(c.mean(axis=1, keepdims=True))
    return unit_columns(c[:, :n].reshape(12, -1, factor).mean(axis=2))
