"""Score following: the follower through tempo changes, omitted notes and a jump back;
the follow session identifying the piece first; ``midizero follow --replay --json``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midizero_app.core.follower import ScoreFollower
from midizero_app.core.frames import to_frames
from midizero_app.core.library import Library
from midizero_app.core.scores import load_notes

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
MOZART = DEMO / "scores" / "Mozart - Sonata K.545 (I, exposition).mxl"


@pytest.fixture(scope="module")
def mozart():
    notes = load_notes(MOZART)
    frames, _ = to_frames(notes, "score")
    return notes, frames


def perform(notes, segments, rng, drop=0.0):
    """Play score notes: ``segments`` are (score from, score to, tempo) in order; each
    segment continues the performance clock. Returns (perf times, pitches, truth map
    perf time → score time as a list of (perf, score) anchors)."""
    t, on, pit, anchors = 0.0, [], [], []
    for s0, s1, tempo in segments:
        sel = (notes.onset >= s0) & (notes.onset < s1)
        for o, p in zip(notes.onset[sel], notes.pitch[sel]):
            if rng.random() < drop:
                continue
            on.append(t + (o - s0) / tempo + rng.normal(0, 0.01))
            pit.append(int(p))
        anchors += [(t, s0), (t + (s1 - s0) / tempo, s1)]
        t += (s1 - s0) / tempo
    order = np.argsort(on, kind="stable")
    return np.asarray(on)[order], np.asarray(pit)[order], anchors


def truth_at(anchors, t):
    for (p0, s0), (p1, s1) in zip(anchors[::2], anchors[1::2]):
        if p0 <= t < p1:
            return s0 + (t - p0) * (s1 - s0) / (p1 - p0)
    return None


def test_follower_keeps_within_a_beat_through_tempo_changes_omissions_and_a_jump(mozart):
    notes, frames = mozart
    rng = np.random.default_rng(3)
    beat = 0.5  # K.545 is written at 120 quarters a minute: a beat is 0.5 score seconds
    # slower, then faster, then a jump back of four bars (8 s of score) and on
    segments = [(0.0, 10.0, 0.8), (10.0, 18.0, 1.3), (10.0, 24.0, 1.0)]
    on, pit, anchors = perform(notes, segments, rng, drop=0.1)
    f = ScoreFollower(frames)
    errors, jump_at = [], sum((s1 - s0) / tp for s0, s1, tp in segments[:2])
    for t, p in zip(on, pit):
        pos = f.note(float(t), int(p))
        truth = truth_at(anchors, t)
        if truth is not None and not jump_at <= t < jump_at + 3.0 and t > 1.0:
            errors.append(abs(pos.score_seconds - truth))
    errors = np.asarray(errors)
    assert np.mean(errors <= beat) >= 0.95, np.percentile(errors, [50, 90, 99])
    assert f.jumps >= 1  # the jump back was followed as a jump


def test_follower_on_a_long_silence_and_a_click_on_a_measure(mozart):
    notes, frames = mozart
    f = ScoreFollower(frames)
    pos = f.position(0.0)
    assert pos.frame == -1  # nothing played yet
    f.place(12.0)
    first = frames.onset.searchsorted(12.0)
    sel = (notes.onset >= frames.onset[first]) & (notes.onset < frames.onset[first] + 3.0)
    for o, p in zip(notes.onset[sel], notes.pitch[sel]):
        pos = f.note(float(o) + 100.0, int(p))  # after a long pause
    assert abs(pos.score_seconds - notes.onset[sel][-1]) < 0.5
    assert pos.measure == frames.measure[frames.onset.searchsorted(pos.score_seconds) - 1] or \
        pos.measure == frames.measure[pos.frame]


def test_position_runs_on_through_a_delayed_inputs_lead(mozart):
    """A microphone hands notes on late: with ``lead`` the cursor moves on at the tempo past
    the next chord (by at most the lead), through the chords after it; without, it waits."""
    notes, frames = mozart
    f = ScoreFollower(frames)
    sel = notes.onset < 4.0
    for o, p in zip(notes.onset[sel], notes.pitch[sel]):
        f.note(float(o), int(p))
    last = float(notes.onset[sel][-1])
    later = last + 1.5  # 1.5 s on, at the written tempo, with no new notes heard
    plain, led = f.position(later), f.position(later, lead=0.8)
    nxt = frames.onset[frames.onset.searchsorted(last + 1e-6)]
    assert plain.score_seconds < nxt  # stops short of the next chord
    assert led.score_seconds > nxt  # runs on into the chords after it
    assert led.score_seconds <= nxt + 0.8 * f.tempo + 1e-6
    assert led.frame > plain.frame
    assert led.measure == frames.measure[led.frame]


@pytest.fixture(scope="module")
def demo_library(tmp_path_factory, bundled_model) -> Path:
    lib_dir = tmp_path_factory.mktemp("follow") / "lib"
    with Library(lib_dir) as lib:
        lib.add([DEMO / "scores"])
    return lib_dir


def test_follow_session_identifies_then_follows(demo_library):
    from midizero_app.live.follow import FollowSession
    from midizero_app.live.replay import load_performance, simulate

    lib = Library(demo_library)
    onsets, pitches = load_performance(DEMO / "queries" / "played - mozart.mid")
    updates = []
    session = FollowSession(lib, on_follow=updates.append)
    simulate(session, onsets, pitches)
    found = [u for u in updates if u["piece"] is not None]
    assert found and found[0]["identified"]
    assert all(u["piece"] == str(MOZART) for u in found)
    measures = [u["measure"] for u in found if u["measure"] is not None]
    assert measures[-1] > measures[0]  # it moved on with the playing
    assert found[-1]["confidence"] > 0.5
    # the search's answer was confirmed, and following well it is no longer consulted
    assert not session.reads_search()
    lib.close()


def write_performance(path: Path, onsets, pitches) -> None:
    """A MIDI file of the notes (seconds, MIDI pitches), as a keyboard would record them."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for o, p in zip(onsets, pitches):
        piano.notes.append(pretty_midi.Note(velocity=64, pitch=int(p), start=float(o),
                                            end=float(o) + 0.25))
    pm.instruments.append(piano)
    pm.write(str(path))


def test_follow_session_finds_its_place_after_a_spliced_jump_back(demo_library, mozart,
                                                                  tmp_path):
    """A performance that goes back six bars at a bar line, written to a MIDI file and
    replayed through the live path with the piece given: back on the right beat within
    3 s of the jump, and no jump before it."""
    from midizero_app.live.follow import FollowSession
    from midizero_app.live.replay import load_performance, simulate

    notes, frames = mozart
    rng = np.random.default_rng(7)
    # K.545 in 4/4 at 120 quarters a minute: a bar is 2 score seconds; bars 1–10, then
    # from bar 3 again, a little faster
    segments = [(0.0, 20.0, 0.9), (4.0, 22.0, 1.1)]
    on, pit, anchors = perform(notes, segments, rng, drop=0.05)
    path = tmp_path / "spliced.mid"
    write_performance(path, on, pit)
    onsets, pitches = load_performance(path)
    shift = float(on[0])  # load_performance counts from the first note
    jump_at = 20.0 / 0.9 - shift
    lib = Library(demo_library)
    piece_id = next(p["id"] for p in lib.pieces() if p["path"] == str(MOZART))
    updates = []
    session = FollowSession(lib, piece_id, on_follow=updates.append)
    simulate(session, onsets, pitches)
    lib.close()
    late, early = [], []
    for u in updates:
        truth = truth_at(anchors, u["time"] + shift)
        if truth is None or u["score_seconds"] is None:
            continue
        err = abs(u["score_seconds"] - truth)
        if 1.0 < u["time"] < jump_at:
            early.append(err)
        elif u["time"] >= jump_at + 3.0:
            late.append(err)
    assert np.mean(np.asarray(early) <= 0.5) >= 0.95
    assert late and np.mean(np.asarray(late) <= 0.5) >= 0.95, np.percentile(late, [50, 90])
    assert not any(u["jumped"] for u in updates if u["time"] < jump_at)
    assert any(u["jumped"] for u in updates if jump_at <= u["time"] < jump_at + 3.0)
    assert not session.reads_search()  # a piece chosen to practise is not second-guessed


def test_follow_cli_replay_json_parses(demo_library):
    lib_dir = demo_library
    out = subprocess.run([sys.executable, "-m", "midizero_app.cli", "follow", "--replay",
                          str(DEMO / "queries" / "played - mozart.mid"), "--speed", "0",
                          "--json", "--library", str(lib_dir)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    keys = {"time", "piece", "measure", "beat", "score_seconds", "confidence"}
    assert rows and all(keys <= set(r) for r in rows)
    assert all(r["piece"] == str(MOZART) for r in rows)
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    assert rows[-1]["measure"] is not None and rows[-1]["score_seconds"] > 0
    # a named piece is followed from the first note, without identification
    out = subprocess.run([sys.executable, "-m", "midizero_app.cli", "follow", "K.545",
                          "--replay", str(DEMO / "queries" / "played - mozart.mid"),
                          "--speed", "0", "--json", "--library", str(lib_dir)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    first = json.loads(out.stdout.splitlines()[0])
    assert first["piece"] == str(MOZART) and first["time"] < 0.1


def test_follow_session_from_streamed_audio_keeps_within_a_beat(demo_library, mozart):
    """K.545 played, rendered with a real SoundFont, streamed through the microphone path's
    transcriber: the notes the follower gets put it within a beat of the playing."""
    pytest.importorskip("tinysoundfont")
    from midizero_app.audio.render import Renderer, timgm6mb
    from midizero_app.audio.stream import StreamingTranscriber
    from midizero_app.audio.transcribe import AUDIO_SEARCH
    from midizero_app.live.follow import FollowSession

    notes, _ = mozart
    rng = np.random.default_rng(5)
    on, pit, anchors = perform(notes, [(0.0, 6.0, 0.9)], rng)
    sr = 22050
    audio = Renderer(timgm6mb(), sr).render(on, on + 0.3, pit, np.full(len(on), 80),
                                            end=float(on[-1]) + 1.0)
    audio = audio + rng.normal(0, 0.01 * np.std(audio), len(audio)).astype(np.float32)
    lib = Library(demo_library)
    piece = next(p["id"] for p in lib.pieces() if p["path"] == str(MOZART))
    updates: list[dict] = []
    session = FollowSession(lib, piece, on_follow=updates.append, **AUDIO_SEARCH)
    stream = StreamingTranscriber(sr, session.step_note)
    for i in range(0, len(audio), 2048):
        stream.push(audio[i:i + 2048])
    stream.flush()
    lib.close()
    errors = np.array([abs(u["score_seconds"] - truth_at(anchors, u["time"])) for u in updates
                       if u["score_seconds"] is not None and u["time"] > 1.0
                       and truth_at(anchors, u["time"]) is not None])
    assert len(errors) > 30
    assert np.mean(errors <= 0.5) >= 0.9, np.percentile(errors, [50, 90])


def _beats(path: Path) -> np.ndarray:
    return np.array([float(line.split("\t")[0]) for line in path.read_text().splitlines()
                     if line.strip()])


def test_follower_stays_where_the_player_is_when_the_music_recurs(asap):
    """Chopin's Op. 25 No. 12 brings its opening bars back note for note 46 bars on; a
    follower given the piece (start unknown) keeps to the bars being played through the
    first 17 s of a real performance (ASAP), every annotated beat within 300 ms."""
    folder = asap / "Chopin" / "Etudes_op_25" / "12"
    frames, _ = to_frames(load_notes(folder / "midi_score.mid"), "score")
    played = load_notes(folder / "BorickC04M.mid")
    pb = _beats(folder / "BorickC04M_annotations.txt")
    sb = _beats(folder / "midi_score_annotations.txt")
    order = np.argsort(played.onset, kind="stable")
    on, pit = played.onset[order], played.pitch[order]
    f = ScoreFollower(frames)
    beats = iter(pb[(pb > 2.0) & (pb < 17.0)].tolist())
    beat, errors = next(beats), []
    for t, p in zip(on.tolist(), pit.tolist()):
        while beat is not None and beat < t:  # what is shown at the beat
            shown = f.position(beat).score_seconds
            errors.append(abs(float(np.interp(shown, sb, pb)) - beat))
            beat = next(beats, None)
        if beat is None:
            break
        f.note(t, p)
    assert len(errors) > 30
    assert max(errors) <= 0.3, (np.argmax(errors), max(errors))

