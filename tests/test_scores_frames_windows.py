"""Scores → notes → frames → windows, on real files."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from midizero_app.core.frames import (FrameGrouper, Frames, fold_pitch, group_performance,
                                      group_score, to_frames)
from midizero_app.core.scores import Notes, ScoreError, load_notes
from midizero_app.core.windows import LIBRARY_HOP, frame_matrix, make_windows, window_starts

from .conftest import random_piece, write_midi


def test_midi_notes_measures_and_drums(tmp_path):
    notes = [(0.0, 60, 0.5), (0.0, 64, 0.5), (0.5, 67, 0.5), (2.0, 72, 0.5)]
    path = write_midi(tmp_path / "a.mid", notes)
    n = load_notes(path)
    assert list(n.pitch) == [60, 64, 67, 72]
    assert np.allclose(n.onset, [0, 0, 0.5, 2.0])
    assert n.quantised and n.format == "midi" and not n.repaired
    # 120 bpm, 4/4: 2.0 s is the first beat of measure 2.
    assert list(n.measure) == [1, 1, 1, 2] and n.beat[3] == pytest.approx(1.0)
    drums = write_midi(tmp_path / "d.mid", notes, drums=True)
    with pytest.raises(ScoreError, match="drums"):
        load_notes(drums)


def test_performance_midi_is_not_quantised(tmp_path):
    rng = np.random.default_rng(1)
    notes = [(t + rng.uniform(0, 0.03), 60 + i % 12, 0.2)
             for i, t in enumerate(np.arange(0, 20, 0.23))]
    assert not load_notes(write_midi(tmp_path / "p.mid", notes)).quantised


def test_musicxml_from_music21_corpus():
    import music21

    path = music21.corpus.getWork("bach/bwv66.6")
    n = load_notes(path)
    assert n.format == "musicxml" and len(n) > 100 and n.quantised
    assert n.onset.min() == 0.0
    f = group_score(n)
    # A four-part chorale: most frames are 4-note chords, and measures increase.
    sizes = np.diff(f.offsets)
    assert np.median(sizes) >= 3 and sizes.max() == 4
    assert np.all(np.diff(f.measure) >= 0) and f.measure[-1] >= 9


def test_abc_and_humdrum_from_music21_corpus():
    import music21

    krn = next(p for p in music21.corpus.getPaths() if str(p).endswith("bwv277.krn"))
    n = load_notes(krn)
    assert n.format == "humdrum" and len(n) > 50
    abc = next(p for p in music21.corpus.getPaths() if str(p).endswith(".abc")
               and "ryansMammoth" in str(p))
    assert len(load_notes(abc)) > 10


def test_score_voices_are_kept_per_note_and_travel_from_the_parse_worker(tmp_path):
    import music21

    from midizero_app.core.parsing import parse_one

    path = music21.corpus.getWork("bach/bwv66.6")
    n = load_notes(path)
    assert sorted(set(n.voice.tolist())) == [0, 1, 2, 3]  # soprano, alto, tenor, bass parts
    np.testing.assert_array_equal(parse_one(path).voice, n.voice)
    f = group_score(n)
    assert f.voices.shape == (4, len(f))
    both = (f.voices[0] > 0) & (f.voices[3] > 0)  # 0: the voice starts no note there
    assert both.sum() > 20 and np.all(f.voices[0][both] > f.voices[3][both])
    abc = tmp_path / "two.abc"
    abc.write_text("X:1\nT:Two voices\nM:4/4\nL:1/4\nK:C\nV:1\nc d e f | g a b c' |"
                   " c' b a g | f e d c |\nV:2\nC E G C | D F A D | E G B E | F A c F |\n")
    n = load_notes(abc)
    assert n.pitch[n.voice == 0].max() == 84 and n.pitch[n.voice == 1].max() == 72
    assert group_score(n).voices.shape == (2, 16)
    assert load_notes(write_midi(tmp_path / "m.mid", [(0.0, 60, 0.5)])).voice is None


def test_fold_pitch():
    assert list(fold_pitch(np.array([20, 21, 108, 109, 0, 127]))) == [32, 21, 108, 97, 24, 103]


def test_score_grouping_exact():
    n = Notes(np.array([0.0, 0.0, 0.01, 0.5]), np.array([60, 64, 67, 60]),
              grid=np.array([0, 0, 5, 240]))
    f = group_score(n)
    assert f.chords() == [(60, 64), (67,), (60,)]


def test_performance_grouping_threshold_zone():
    # 0.00, 0.03 join; 0.05 opens the next frame (>= t0 + τ); 0.08 joins it (< 0.05 + τ)
    n = Notes(np.array([0.0, 0.03, 0.05, 0.08, 0.2]), np.array([60, 64, 67, 60, 62]))
    f = group_performance(n, 0.05)
    assert f.chords() == [(60, 64), (60, 67), (62,)]
    assert np.allclose(f.onset, [0.0, 0.05, 0.2])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.2), st.integers(10, 120)), min_size=1, max_size=80),
       st.sampled_from([0.03, 0.05, 0.1]))
def test_streaming_grouper_equals_batch(gaps, tau):
    onsets = np.cumsum([g for g, _ in gaps])
    pitches = np.array([p for _, p in gaps])
    batch = group_performance(Notes(onsets, pitches), tau)
    g, frames = FrameGrouper(tau), []
    for t, p in zip(onsets, pitches):
        closed = g.add(float(t), int(p))
        if closed:
            frames.append(closed)
    frames.append(g.flush())
    assert [tuple(c) for _, c in frames] == batch.chords()
    assert np.allclose([t for t, _ in frames], batch.onset)


def test_windows_shapes_hops_and_padding():
    chords = [[60 + i % 12, 72] for i in range(25)]
    f = Frames.from_chords(chords)
    m = frame_matrix(f)
    assert m.shape == (25, 88) and m.sum() == 50 and m[0, 60 - 21] == 1
    w, starts = make_windows(f, LIBRARY_HOP)
    assert w.shape[1:] == (10, 88) and w.dtype == np.uint8
    assert starts[0] == 0 and starts[-1] == 15  # kept flush with the end
    assert np.array_equal(w[1], m[2:12])
    w1, s1 = make_windows(f, 1)
    assert len(s1) == 16
    short, s = make_windows(Frames.from_chords([[60], [62, 65]]), 1)
    assert short.shape == (1, 10, 88) and short[0, 2:].sum() == 0 and list(s) == [0]
    assert list(window_starts(3, 2)) == [0]


def test_transposed_frames_refold():
    f = Frames.from_chords([[105, 60]]).transposed(5)
    assert f.chord(0) == (65, 98)  # 110 folds down an octave to 98


def test_to_frames_auto_kind(tmp_path):
    n = load_notes(write_midi(tmp_path / "q.mid", random_piece(3, 40)))
    frames, kind = to_frames(n)
    assert kind == "score" and len(frames) == 40

