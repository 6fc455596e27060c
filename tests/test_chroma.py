"""The chroma route (midizero_app/audio/chroma_route.py): Zalkow & Müller's CTC chroma
model, converted from its TensorFlow checkpoint, run with torch on audio rendered with a
real SoundFont."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from midizero_app.audio import chroma_route as chroma


def test_torch_port_reproduces_tensorflow():
    """models/ctc-chroma.npz holds an input and the network's output computed with
    TensorFlow's own ops at conversion (scripts/convert_ctc_chroma.py)."""
    with np.load(chroma.model_path(), allow_pickle=False) as z:
        x, want = z["check_input"], z["check_output"]
    with torch.inference_mode():
        got = chroma.network()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert got.shape == want.shape == (1, x.shape[1], 13)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_frames_chroma_holds_each_chord_until_the_next():
    # C major at 0 s, then A (pitch class 9) at 1 s held at most 2 s, at 5 frames/s
    c = chroma.frames_chroma(np.array([0.0, 1.0]), np.array([0, 3, 4]),
                             np.array([60, 64, 67, 69]), rate=5.0)
    assert c.shape == (12, 15)
    np.testing.assert_allclose(np.linalg.norm(c, axis=0), 1.0, atol=1e-6)
    assert set(np.flatnonzero(c[:, 2] > 0.1)) == {0, 4, 7}
    assert set(np.flatnonzero(c[:, 7] > 0.1)) == {9}
    assert np.allclose(c[:, 14], c[:, 7])  # still held at 2.8 s


def test_rendered_chords_give_their_pitch_classes():
    pytest.importorskip("librosa", reason="the HCQT front end needs librosa (bench extra)")
    from midizero_app.audio.render import Renderer, timgm6mb

    renderer = Renderer(timgm6mb(), 44100)
    chords = [(60, 64, 67), (57, 60, 64), (55, 59, 62), (53, 57, 60)]
    on = np.repeat(0.5 + np.arange(len(chords)), 3)
    y = renderer.render(on, on + 0.9, np.array([p for c in chords for p in c]),
                        np.full(len(on), 90))
    from midizero_app.audio.decode import resample

    c = chroma.audio_chroma(resample(y, 44100, chroma.SAMPLE_RATE))
    # CTC chroma peaks where notes start (the blank class takes the held part)
    for i, chord in enumerate(chords):
        near = c[:, int((0.4 + i) * chroma.FEATURE_RATE):int((1.0 + i) * chroma.FEATURE_RATE)]
        top3 = set(np.argsort(near.mean(axis=1))[-3:])
        assert top3 == {p % 12 for p in chord}, (chord, top3)
