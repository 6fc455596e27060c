"""The audio branch's data: the published log-frequency spectrogram and the rendered
dataset (real SoundFonts through TinySoundFont, real files on disk)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from midizero_app.audio.branch import dataset as ds
from midizero_app.audio.branch.spectrogram import (FPS, N_BINS, SR, fft_frequencies, filterbank,
                                                   log_frequencies, log_spectrogram)

from .conftest import ROOT

pytest.importorskip("tinysoundfont")
pytest.importorskip("pedalboard")

DEMO = ROOT / "resources" / "demo" / "scores"
TRAIN_SF2 = ds.TRAINING_FONTS["sf_GMbank"][0]  # the smallest training font (4 MB)


def band_centres() -> np.ndarray:
    """Frequency (Hz) of each band's peak FFT bin."""
    return fft_frequencies()[np.argmax(filterbank(), axis=0)]


def demo_notes() -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(DEMO / "Beethoven - Ode to Joy.mid"))
    return np.array(sorted((n.start, n.end, n.pitch, n.velocity) for i in pm.instruments
                           for n in i.notes), np.float64)


def test_filterbank_has_the_published_92_bands():
    fb = filterbank()
    assert fb.shape == (1024, N_BINS) == (1024, 92)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=1e-5)  # each filter area 1
    f = log_frequencies()
    assert 30 <= f[0] < 30 * 2 ** (1 / 16) and 6000 / 2 ** (1 / 16) < f[-1] <= 6000
    c = band_centres()
    assert np.all(np.diff(c) > 0) and 30 <= c[0] and c[-1] <= 6000 * 2 ** (1 / 16)


def test_spectrogram_of_a_rendered_demo_piece():
    notes = demo_notes()
    r = ds.render_one(notes, ds.test_font(), seed=3, room=True, noise_db=30.0, piece="ode")
    duration = len(r.audio) / SR
    assert r.spec.dtype == np.float32 and r.spec.shape == (int(np.ceil(duration * FPS)), 92)
    assert np.all(np.isfinite(r.spec)) and r.spec.min() >= 0 and r.spec.max() > 0.5
    # the notes come back in the rendered time and the audio lasts to the last offset
    np.testing.assert_allclose(r.notes[:, 2], notes[np.lexsort((notes[:, 2], notes[:, 0])), 2])
    assert abs(duration - (notes[:, 1].max() + ds.TAIL_S)) < 0.01
    # a tempo factor scales the rendered time
    fast = ds.render_one(notes, ds.test_font(), seed=3, tempo=1.1, room=False, noise_db=None)
    np.testing.assert_allclose(fast.notes[:, 0], r.notes[:, 0] / 1.1, atol=1e-4)
    # 44.1 kHz stereo input gives the spectrogram of its 22.05 kHz mono version
    y44 = np.repeat(r.audio, 2)[:, None].repeat(2, axis=1)
    assert np.abs(log_spectrogram(y44, 44100) - r.spec).mean() < 0.02


def test_a_c4_lands_in_its_band():
    r = ds.render_one(np.array([[0.5, 1.5, 60, 90]]), ds.test_font(), seed=1, room=False,
                      noise_db=None)
    during = r.spec[int(0.6 * FPS):int(1.4 * FPS)].mean(axis=0)
    before = r.spec[:int(0.4 * FPS)].max()
    assert before < 1e-3  # silence before the note
    band = int(np.argmax(during))
    c4 = 440 * 2 ** ((60 - 69) / 12)  # 261.6 Hz
    assert abs(12 * np.log2(band_centres()[band] / c4)) < 0.5  # within a quarter tone
    # and a pure 440 Hz tone in the band at A4
    t = np.arange(SR * 2) / SR
    spec = log_spectrogram(0.5 * np.sin(2 * np.pi * 440 * t), SR)
    assert abs(12 * np.log2(band_centres()[int(np.argmax(spec[5:30].mean(0)))] / 440)) < 0.5


def test_spectrogram_runs_far_faster_than_real_time():
    y = np.random.default_rng(0).normal(0, 0.1, SR * 30).astype(np.float32)
    log_spectrogram(y[:SR], SR)
    t = time.perf_counter()
    spec = log_spectrogram(y, SR)
    assert spec.shape == (600, 92)
    assert time.perf_counter() - t < 1.5  # 30 s of audio; about 0.03 s on the 2-core VM


def test_splits_are_disjoint_by_piece_and_seeded():
    real = [f"m21-{i}" for i in range(2000)]
    gen = {f"gen-{i}" for i in range(400)}
    a = ds.assign_splits(real + sorted(gen), seed=5, no_test=gen)
    assert set(a) == set(real) | gen and set(a.values()) <= set(ds.SPLITS)
    n_test = sum(v == "test" for v in a.values())
    assert 150 <= n_test <= 250  # 10 % of the corpus pieces
    assert all(a[g] != "test" for g in gen)  # generated sequences are never test pieces
    assert 0 < sum(a[g] == "valid" for g in gen) < 50
    # a piece keeps its split in a smaller or larger set, in any order
    b = ds.assign_splits(real[::-1][:700] + ["m21-new"], seed=5)
    assert all(b[p] == a[p] for p in real[1300:])
    assert a != ds.assign_splits(real + sorted(gen), seed=6, no_test=gen)


def test_dataset_round_trip_of_two_pieces(tmp_path):
    rng = np.random.default_rng(0)
    pieces = {"gen-P-00000": ds.generated_notes("P", 6.0, rng),
              "gen-C-00001": ds.generated_notes("C", 6.0, rng)}
    tasks = []
    for (pid, notes), split in zip(pieces.items(), ("train", "valid")):
        out = ds.rendering_path(tmp_path, split, pid, ds.font_name(TRAIN_SF2))
        out.parent.mkdir(parents=True, exist_ok=True)
        tasks.append(ds.Task(pid, "generated", split, ds.font_name(TRAIN_SF2), str(TRAIN_SF2),
                             notes, seed=11, seconds=4.0, out=str(out)))
    entries = list(ds.render_tasks(tasks, workers=1))
    assert sorted(e["piece"] for e in entries) == sorted(pieces)
    got = {s: list(ds.iter_renderings(tmp_path, s)) for s in ds.SPLITS}
    assert [r.piece for r in got["train"]] == ["gen-P-00000"]
    assert [r.piece for r in got["valid"]] == ["gen-C-00001"] and got["test"] == []
    for r in got["train"] + got["valid"]:
        assert r.font == "sf_GMbank" and r.spec.dtype == np.float16 and r.spec.shape[1] == 92
        assert r.notes.dtype == np.float32 and r.notes.shape[1] == 3 and len(r.notes) > 3
        # onsets within the 4 s cap of rendered time, offsets within the rendered audio
        assert r.notes[:, 0].max() < 4.0 and np.all(r.notes[:, 1] > r.notes[:, 0])
        assert r.notes[:, 1].max() <= r.spec.shape[0] / FPS
        assert 0.9 <= r.meta["tempo"] <= 1.1 and 20 <= r.meta["noise_db"] <= 40
        assert r.meta["split"] in ("train", "valid")
    # the same task renders the same data again (seeded)
    again = ds.run_task(tasks[0])
    assert again["tempo"] == got["train"][0].meta["tempo"]
    np.testing.assert_array_equal(ds.load_rendering(tasks[0].out).notes, got["train"][0].notes)


def test_the_test_font_is_refused_for_training(tmp_path):
    for split in ("train", "valid"):
        with pytest.raises(ds.TestFontForTraining, match="held-out test SoundFont"):
            ds.check_training_font(ds.test_font(), split)
    ds.check_training_font(ds.test_font(), "test")
    ds.check_training_font(TRAIN_SF2, "train")
    task = ds.Task("p", "generated", "train", "TimGM6mb", str(ds.test_font()),
                   np.array([[0.0, 0.5, 60, 80]]), 0, 2.0, str(tmp_path / "train" / "p.npz"))
    with pytest.raises(ds.TestFontForTraining):
        ds.run_task(task)
    assert not (tmp_path / "train").exists()
    from scripts.make_audio_dataset import main

    with pytest.raises(ds.TestFontForTraining):
        main(["--out", str(tmp_path / "d"), "--fonts", str(ds.test_font())])


def test_a_corpus_score_becomes_notes_with_durations():
    status, data = ds.music21_task(str(DEMO / "Bach - Chorale BWV 66.6.mxl"), 3072)
    assert status == "ok"
    (notes,) = ds.decode_pieces(data)
    assert notes.shape[1] == 4 and len(notes) > 100
    assert np.all(notes[:, 1] > notes[:, 0]) and np.all(np.diff(notes[:, 0]) >= 0)
    # four voices: chords of up to four notes
    _, counts = np.unique(notes[:, 0], return_counts=True)
    assert counts.max() == 4
    status, reason = ds.music21_task(str(Path(__file__)), 3072)
    assert status == "err" and reason
