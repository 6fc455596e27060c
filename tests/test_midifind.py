"""MidiFind-style baseline (midizero_app/baselines/midifind.py)."""
from __future__ import annotations

import numpy as np
import pytest

from midizero_app.baselines.midifind import MidiFindIndex, pitch_class_counts, skyline
from midizero_app.core.frames import Frames

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]


def _scale_piece(tonic: int, mode, n: int = 300) -> list[list[int]]:
    """Scales up and down over two octaves, a bass note every fourth frame."""
    steps = [tonic + 12 * (d // 7) + mode[d % 7] for d in range(15)]
    line = steps + steps[-2:0:-1]
    out = []
    for i in range(n):
        p = line[i % len(line)]
        out.append([p - 24, p] if i % 4 == 0 else [p])
    return out


def _arpeggio_piece(tonic: int, mode, n: int = 300) -> list[list[int]]:
    """Broken triads on I–IV–V–I, rising, one chord per 8 frames."""
    out = []
    for i in range(n):
        root = [0, 3, 4, 0][(i // 8) % 4]
        triad = [tonic + 12 * ((root + d) // 7) + mode[(root + d) % 7] for d in (0, 2, 4, 7)]
        out.append([triad[0] - 12, triad[i % 4]] if i % 8 == 0 else [triad[i % 4]])
    return out


def _walk_piece(rng: np.random.Generator, tonic: int, mode, n: int = 400) -> list[list[int]]:
    """A random-walk melody in a key with occasional chords under it."""
    deg = 7
    out = []
    for _ in range(n):
        deg = int(np.clip(deg + rng.integers(-2, 3), 0, 20))
        top = tonic + 12 * (deg // 7) + mode[deg % 7]
        if rng.random() < 0.3:
            out.append(sorted({top - 12, top - 12 + mode[2], top - 12 + mode[4], top}))
        else:
            out.append([top])
    return out


@pytest.fixture(scope="module")
def library():
    rng = np.random.default_rng(7)
    pieces = [_scale_piece(60, MAJOR), _scale_piece(62, MINOR), _scale_piece(66, MAJOR),
              _arpeggio_piece(60, MAJOR), _arpeggio_piece(57, MINOR),
              _arpeggio_piece(63, MAJOR)]
    # Several walks in the same key, so the pitch-class prefilter cannot separate them.
    for tonic, mode in [(60, MAJOR), (60, MAJOR), (60, MAJOR), (55, MAJOR), (64, MINOR)]:
        pieces.append(_walk_piece(rng, tonic, mode))
    return pieces


def _index(pieces, **kw) -> MidiFindIndex:
    idx = MidiFindIndex(**kw)
    for pid, chords in enumerate(pieces):
        idx.add(100 + pid, Frames.from_chords(chords))
    return idx


def _corrupt(chords, wrong_at: int, drop_at: int) -> list[list[int]]:
    """One wrong (top) note and one dropped frame."""
    out = [list(c) for c in chords]
    out[wrong_at][-1] += 5
    del out[drop_at]
    return out


@pytest.mark.parametrize("source", [6, 7, 8, 0, 4])
@pytest.mark.parametrize("n_candidates", [50, 3])
def test_corrupted_excerpt_ranks_source_first(library, source, n_candidates):
    idx = _index(library, n_candidates=n_candidates)
    start = 123
    excerpt = _corrupt(library[source][start:start + 40], wrong_at=11, drop_at=25)
    hits = idx.search(Frames.from_chords(excerpt), top=5)
    assert hits[0][0] == 100 + source
    assert len(hits) == min(5, n_candidates)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    # One near-ish wrong note + one dropped frame: a small normalised distance.
    assert -0.1 < hits[0][1] < 0


def test_exact_excerpt_anywhere_scores_zero(library):
    idx = _index(library)
    src = library[8]
    for start in (0, 170, len(src) - 35):  # start, middle and end of the piece
        hits = idx.search(Frames.from_chords(src[start:start + 35]))
        assert hits[0] == (108, 0.0)


def test_intervals_mode_is_transposition_invariant(library):
    idx = _index(library, use_intervals=True)
    excerpt = [[p + 3 for p in c] for c in library[7][200:250]]
    hits = idx.search(Frames.from_chords(excerpt))
    assert hits[0][0] == 107


def test_skyline_and_histogram_helpers():
    f = Frames.from_chords([[60, 64, 67], [], [62], [48, 72]])
    assert skyline(f).tolist() == [67, 62, 72]
    h = pitch_class_counts(f)
    assert h.shape == (4, 12)
    assert h[0, [0, 4, 7]].tolist() == [1, 1, 1] and h[1].sum() == 0 and h[3, 0] == 2


def test_empty_inputs():
    idx = MidiFindIndex()
    assert idx.search(Frames.from_chords([[60]])) == []
    idx.add(1, Frames.from_chords([[60], [62], [64]]))
    idx.add(2, Frames.from_chords([]))
    assert idx.search(Frames.from_chords([]))  # no notes: still answers, by the prefilter
    assert idx.search(Frames.from_chords([[60], [62]]))[0] == (1, 0.0)


def _naive(q, t, gap):
    sub = np.minimum(np.arange(256), 3) / 3
    m, n = len(q), len(t)
    D = np.zeros((m + 1, n + 1))
    D[:, 0] = np.arange(m + 1) * gap
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            D[i, j] = min(D[i - 1, j - 1] + sub[abs(int(q[i - 1]) - int(t[j - 1]))],
                          D[i - 1, j] + gap, D[i, j - 1] + gap)
    return D[m].min()


@pytest.mark.parametrize("gap", [1.0, 0.5, 50.0])  # 50 takes the int32 path
def test_distance_matches_reference_dp(gap):
    rng = np.random.default_rng(3)
    idx = MidiFindIndex(gap_cost=gap)
    for _ in range(5):
        q = rng.integers(55, 68, rng.integers(1, 40)).astype(np.int16)
        cands = [rng.integers(55, 68, rng.integers(0, 60)).astype(np.int16) for _ in range(4)]
        got = idx._distances(q, cands)
        want = [_naive(q, t, gap) for t in cands]
        assert np.allclose(got, want), (got, want)
