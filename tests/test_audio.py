"""Audio input: decoding, transcription with the real basic-pitch ONNX model, audio queries.

Audio fixtures are rendered in the tests with a real SoundFont (pretty_midi's TimGM6mb
through tinysoundfont) and written with libsndfile; nothing is mocked.
"""
from __future__ import annotations

import ctypes.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from midizero_app.audio.render import Renderer, timgm6mb
from midizero_app.audio.decode import AudioError, load_audio
from midizero_app.audio.transcribe import SAMPLE_RATE, transcribe, transcribe_events
from midizero_app.audio.worker import transcribe_files

from .test_cli import midizero
from .test_live import jack_server  # noqa: F401 - a fixture

pytest.importorskip("tinysoundfont")
SR = 44100
CHORDS = [(60, 64, 67), (62, 65, 69), (57, 60, 64), (55, 59, 62, 67), (53, 57, 60, 65),
          (48, 55, 64, 72)]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timgm6mb(), SR)


@pytest.fixture(scope="module")
def audio_lib(tmp_path_factory, bundled_model, mini_scores) -> Path:
    """The mini_scores library (12 random pieces, 3 music21 scores), indexed once."""
    lib = tmp_path_factory.mktemp("audio") / "lib"
    midizero("index", mini_scores, "--library", lib, check=True)
    return lib


@pytest.fixture(scope="module")
def chord_audio(renderer) -> tuple[np.ndarray, list[tuple[float, tuple[int, ...]]]]:
    """Six chords, 0.6 s apart from 0.5 s, each held 0.5 s: (audio at 44.1 kHz, truth)."""
    truth = [(0.5 + 0.6 * i, c) for i, c in enumerate(CHORDS)]
    on = np.array([t for t, c in truth for _ in c])
    pitch = np.array([p for _, c in truth for p in c])
    y = renderer.render(on, on + 0.5, pitch, np.full(len(on), 90))
    return y, truth


def test_rendered_chords_transcribe_to_the_right_pitches(chord_audio):
    y, truth = chord_audio
    ev = transcribe_events(y, SR)
    for t, chord in truth:
        near = set(ev.pitch[np.abs(ev.onset - t) <= 0.05].tolist())
        assert set(chord) <= near, (t, chord, sorted(near))
    # every true note found, onsets within 50 ms; few extras (octave partials)
    assert len(ev) <= 1.4 * sum(len(c) for _, c in truth)
    assert np.all(ev.offset > ev.onset)
    assert np.all(np.diff(ev.onset) >= 0)


def test_silence_and_empty_input_give_no_notes():
    assert len(transcribe(np.zeros(3 * SR, np.float32), SR)) == 0
    assert len(transcribe(np.zeros(0, np.float32), SR)) == 0


def test_progress_and_cancel(chord_audio):
    import threading

    from midizero_app.audio.transcribe import Cancelled

    y = np.tile(chord_audio[0], 4)
    calls = []
    transcribe(y, SR, progress=lambda d, t, m: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        transcribe(y, SR, cancel=cancel)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"),
                                         ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_each_format_decodes_and_transcribes(tmp_path, chord_audio, fmt, subtype):
    import soundfile as sf

    y, truth = chord_audio
    path = tmp_path / f"chords.{fmt}"
    sf.write(str(path), np.stack([y, y], axis=1) * 0.5, SR, subtype=subtype)
    x, duration = load_audio(path, SAMPLE_RATE)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(duration - len(y) / SR) < 0.1  # MP3 adds encoder padding
    assert abs(len(x) - duration * SAMPLE_RATE) < 2
    notes = transcribe(x, SAMPLE_RATE)
    first = set(notes.pitch[np.abs(notes.onset - truth[0][0]) <= 0.08].tolist())
    assert set(truth[0][1]) <= first


def test_bad_files_give_a_reason(tmp_path, chord_audio):
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    unsupported = tmp_path / "song.aac"
    unsupported.write_bytes(b"\x00" * 100)
    header_only = tmp_path / "header.wav"
    sf.write(str(header_only), np.zeros((0, 1), np.float32), SR)
    truncated = tmp_path / "truncated.wav"
    sf.write(str(truncated), chord_audio[0], SR, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:30])
    reasons = {}
    for p in (empty, garbage, unsupported, header_only, truncated, tmp_path / "missing.wav"):
        with pytest.raises(AudioError) as err:
            load_audio(p, SAMPLE_RATE)
        reasons[p.name] = str(err.value)
    assert "empty" in reasons["empty.wav"]
    assert "not an audio file" in reasons["garbage.flac"]
    assert "unsupported audio format '.aac'" in reasons["song.aac"]
    assert "0 samples" in reasons["header.wav"]
    assert "not a readable audio file" in reasons["truncated.wav"]
    assert "cannot open" in reasons["missing.wav"]
    with pytest.raises(AudioError, match="too long"):
        load_audio(_write(tmp_path, chord_audio[0]), SAMPLE_RATE, max_seconds=1.0)
    # the same reasons come back from the limited worker processes, and the batch goes on
    good = _write(tmp_path, chord_audio[0])
    results = {Path(r.path).name: r for r in transcribe_files([empty, garbage, good])}
    assert "empty" in results["empty.wav"].error
    assert "not an audio file" in results["garbage.flac"].error
    assert results["good.wav"].error is None and len(results["good.wav"].notes) >= 20


def _write(tmp_path: Path, y: np.ndarray) -> Path:
    import soundfile as sf

    path = tmp_path / "good.wav"
    sf.write(str(path), y, SR, subtype="PCM_16")
    return path


def _score_notes(path: Path, tmp: Path):
    """(onset, offset, pitch) of a score file through pretty_midi (music21 → MIDI)."""
    import music21
    import pretty_midi

    midi = tmp / "score.mid"
    music21.converter.parse(str(path)).write("midi", fp=str(midi))
    notes = [n for inst in pretty_midi.PrettyMIDI(str(midi)).instruments for n in inst.notes]
    return (np.array([n.start for n in notes]), np.array([n.end for n in notes]),
            np.array([n.pitch for n in notes]))


def test_search_identifies_a_rendered_recording(tmp_path, audio_lib, mini_scores, renderer):
    """End to end: a music21-corpus chorale rendered to audio is identified first, a silent
    file says "no notes heard", a corrupt one gives its reason, in one call."""
    import soundfile as sf

    lib = audio_lib
    src = next(mini_scores.glob("bach_bwv66.6*"))
    on, off, pitch = _score_notes(src, tmp_path)
    start = 4.0
    y = renderer.render(on, off, pitch, np.full(len(on), 80), start=start, end=start + 12.0)
    rng = np.random.default_rng(1)
    y = y + rng.normal(0, 0.01 * np.std(y), len(y))
    wav = tmp_path / "chorale.wav"
    sf.write(str(wav), y, SR, subtype="PCM_16")
    silent = tmp_path / "silent.ogg"
    sf.write(str(silent), np.zeros(SR * 2, np.float32), SR)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(200))
    out = midizero("search", wav, silent, broken, "--library", lib, "--json", "--top", "3")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [Path(r["query"]).name for r in lines] == ["chorale.wav", "silent.ogg", "broken.mp3"]
    res = lines[0]
    assert res["query_kind"] == "performance" and not res["not_in_library"]
    top = res["results"][0]
    assert Path(top["path"]).name == src.name, res
    assert abs(top["positions"][0]["seconds"] - start) <= 2.0
    assert lines[1]["error"] == "no notes heard (silence, or too quiet)"
    assert "not a readable audio file" in lines[2]["error"]
    assert out.returncode == 0


# --- streaming and the microphone -------------------------------------------------------

def test_streaming_matches_batch_notes(chord_audio):
    """Overlapping chunks, de-duplicated: each note once, as the batch transcription."""
    from midizero_app.audio.stream import StreamingTranscriber

    y, truth = chord_audio
    batch = transcribe_events(y, SR)
    got: list[tuple[float, int]] = []
    stream = StreamingTranscriber(SR, lambda t, p: got.append((t, p)))
    clocks = []
    for i in range(0, len(y), 1000):  # blocks of an odd size, as a sound card delivers
        stream.push(y[i:i + 1000])
        clocks.append(stream.clock())
        # the audio heard by now: every block received, ahead of the stepwise clock
        assert stream.audio_now() >= min(i + 1000, len(y)) / SR - 1e-6
        assert stream.audio_now() >= stream.clock()
    heard = stream.audio_now(max_ahead_s=0.0)
    assert abs(heard - len(y) / SR) < 0.01
    time.sleep(0.05)  # between blocks it runs on with the wall clock, up to max_ahead_s
    assert heard + 0.04 <= stream.audio_now() <= heard + 1.0
    assert stream.audio_now(max_ahead_s=0.01) <= heard + 0.01
    stream.flush()
    assert clocks == sorted(clocks) and stream.clock() >= len(y) / SR - 0.01
    onsets = [t for t, _ in got]
    assert onsets == sorted(onsets)
    for t, chord in truth:  # every chord note once, at its time
        for p in chord:
            assert sum(1 for s, q in got if q == p and abs(s - t) <= 0.05) == 1, (t, p, got)
    assert abs(len(got) - len(batch)) <= 2


needs_portaudio = pytest.mark.skipif(
    ctypes.util.find_library("portaudio") is None,
    reason="PortAudio missing (apt-get install libportaudio2)")

ASOUNDRC = """pcm.!default {{ type asym; playback.pcm "tofile"; capture.pcm "fromfile" }}
pcm.tofile {{ type file; slave.pcm "null"; file "/dev/null"; format "raw" }}
pcm.fromfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}
ctl.!default {{ type hw card 0 }}
"""


def _device_env(tmp_path: Path, audio: np.ndarray) -> dict:
    """HOME with an ~/.asoundrc whose default capture device plays ``audio`` (float32 at
    44.1 kHz, PortAudio's default rate for it) through ALSA's ``file`` plugin."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "mic.raw"
    raw.write_bytes(np.asarray(audio, "<f4").tobytes())
    (home / ".asoundrc").write_text(ASOUNDRC.format(raw=raw))
    return dict(os.environ, HOME=str(home), JACK_NO_START_SERVER="1")


@needs_portaudio
def test_listen_mic_identifies_a_rendered_excerpt(tmp_path, audio_lib, mini_scores, renderer):
    """A real sounddevice input stream (ALSA file capture device) → streaming transcription
    → the live session: JSON lines like MIDI listening, the chorale first at the end."""
    import subprocess
    import sys

    from .conftest import ROOT

    lib = audio_lib
    src = next(mini_scores.glob("bach_bwv66.6*"))
    on, off, pitch = _score_notes(src, tmp_path)
    y = renderer.render(on, off, pitch, np.full(len(on), 80), start=2.0, end=16.0)
    env = _device_env(tmp_path, np.concatenate([y, np.zeros(SR * 4, np.float32)]))
    out = subprocess.run([sys.executable, "-m", "midizero_app.cli", "listen", "--mic",
                          "--device", "fromfile", "--duration", "16", "--json", "--top", "3",
                          "--library", str(lib)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, out.stderr
    assert lines and lines[-1]["final"] and not any(u["final"] for u in lines[:-1])
    final = lines[-1]
    assert Path(final["results"][0]["path"]).name == src.name
    assert {"t", "frames", "results", "not_in_library"} <= set(final)
    # identified within the first 8 s of audio and first from then on
    first_right = next(u["t"] for u in lines
                       if Path(u["results"][0]["path"]).name == src.name)
    assert first_right <= 8.0


@needs_portaudio
def test_devices_lists_audio_inputs_and_a_bad_device_is_one_line(tmp_path, jack_server):
    import subprocess
    import sys

    from .conftest import ROOT

    env = dict(_device_env(tmp_path, np.zeros(SR, np.float32)), MIDIZERO_MIDI_API="jack")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "midizero_app.cli", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    out = run("devices", "--json")
    assert out.returncode == 0, out.stderr
    names = [d["name"] for d in json.loads(out.stdout)["audio_inputs"]]
    assert "fromfile" in names
    assert "fromfile" in run("devices").stdout
    out = run("listen", "--mic", "--device", "No Such Mic")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("midizero: no audio input named 'No Such Mic'")


def test_match_recordings_batch_and_cache(tmp_path, audio_lib, mini_scores, renderer):
    """A folder of recordings → each one's piece, with confidence; a second run reads the
    cached transcriptions (content hash) instead of transcribing again."""
    import csv
    import io

    import soundfile as sf

    from .conftest import random_piece

    rec = tmp_path / "Recordings"
    (rec / "sub").mkdir(parents=True)
    src = next(mini_scores.glob("bach_bwv66.6*"))
    on, off, pitch = _score_notes(src, tmp_path)
    y = renderer.render(on, off, pitch, np.full(len(on), 80), start=0.0, end=20.0)
    sf.write(str(rec / "chorale take 1.flac"), y, SR)
    notes = random_piece(4)
    on = np.array([n[0] for n in notes])
    y = renderer.render(on, on + np.array([n[2] for n in notes]), np.array([n[1] for n in notes]),
                        np.full(len(on), 90), start=6.0, end=18.0)
    sf.write(str(rec / "sub" / "piece4.wav"), y, SR)
    sf.write(str(rec / "silence.wav"), np.zeros(SR, np.float32), SR)
    (rec / "notes.txt").write_text("not audio")
    out = midizero("match-recordings", rec, "--library", audio_lib, "--csv")
    assert out.returncode == 0, out.stderr
    rows = {Path(r["recording"]).name: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert set(rows) == {"chorale take 1.flac", "piece4.wav", "silence.wav"}
    assert Path(rows["chorale take 1.flac"]["path"]).name == src.name
    assert Path(rows["piece4.wav"]["path"]).name == "piece_04.mid"
    assert abs(float(rows["piece4.wav"]["seconds"]) - 6.0) <= 2.0
    assert 0 < float(rows["piece4.wav"]["confidence"]) <= 1
    assert rows["silence.wav"]["error"] == "no notes heard (silence, or too quiet)"
    cached = sorted((audio_lib / "recordings-cache").glob("*.npz"))
    assert len(cached) == 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = midizero("match-recordings", rec, "--library", audio_lib, "--json")
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert [Path(r["recording"]).name for r in lines] == \
        ["chorale take 1.flac", "silence.wav", "piece4.wav"]
    assert Path(lines[2]["path"]).name == "piece_04.mid"
    assert [p.stat().st_mtime_ns for p in sorted(cached)] == stamps  # not transcribed again


def test_recordings_in_the_library(tmp_path, bundled_model, mini_scores, renderer):
    """Audio files join the library as recordings: a score excerpt then finds the score and
    the recording, with the time in the recording; a rescan does not transcribe again."""
    import soundfile as sf

    from .conftest import write_midi

    rec = tmp_path / "Recordings"
    rec.mkdir()
    src = next(mini_scores.glob("bach_bwv66.6*"))
    on, off, pitch = _score_notes(src, tmp_path)
    lead_in = 3.0  # the recording starts with 3 s of silence
    y = renderer.render(on + lead_in, off + lead_in, pitch, np.full(len(on), 80), end=25.0)
    sf.write(str(rec / "chorale.ogg"), y, SR)
    sf.write(str(rec / "silent.wav"), np.zeros(SR, np.float32), SR)
    lib = tmp_path / "lib"
    out = midizero("index", mini_scores, rec, "--library", lib, "--json", check=True)
    report = json.loads(out.stdout)
    assert len(report["added"]) == 16
    assert report["failed"] == [{"path": str((rec / "silent.wav").resolve()),
                                 "reason": "no notes heard (silence, or too quiet)"}]
    listed = json.loads(midizero("library", "list", "--library", lib, "--json",
                                 check=True).stdout)
    kinds = {Path(p["path"]).name: p["kind"] for p in listed}
    assert kinds["chorale.ogg"] == "recording" and kinds[src.name] == "score"
    # the score's own notes from 6 s to 14 s, as a query
    m = (on >= 6.0) & (on < 14.0)
    query = write_midi(tmp_path / "excerpt.mid",
                       [(float(t - 6.0), int(p), float(d)) for t, p, d in
                        zip(on[m], pitch[m], (off - on)[m])])
    res = json.loads(midizero("search", query, "--library", lib, "--json", "--top", "3",
                              check=True).stdout)
    top2 = {Path(r["path"]).name: r for r in res["results"][:2]}
    assert set(top2) == {src.name, "chorale.ogg"}, res["results"]
    assert top2["chorale.ogg"]["kind"] == "recording" and top2[src.name]["kind"] == "score"
    assert abs(top2["chorale.ogg"]["positions"][0]["seconds"] - (6.0 + lead_in)) <= 1.0
    cached = sorted((lib / "recordings-cache").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    (rec / "chorale.ogg").rename(rec / "chorale renamed.ogg")  # moved: same content
    out = midizero("library", "rescan", "--library", lib, check=True)
    assert "1 added" in out.stdout, out.stdout
    assert [p.stat().st_mtime_ns for p in sorted((lib / "recordings-cache").glob("*.npz"))] \
        == stamps
