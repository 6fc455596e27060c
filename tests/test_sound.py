"""Sound (issue 5): SoundFont rendering, playback and "hear what I play" (audio/synth.py).

Playback and monitoring run on a real ALSA ``file`` device (FIELD-NOTES §2): a private
``~/.asoundrc`` sends the default output into a WAV, which must hold the notes played.
PortAudio reads the ALSA configuration when sounddevice is imported, so each device test
runs in a child Python started with ``HOME`` pointing at that configuration. The file
device has no clock (it writes as fast as the CPU allows), so the tests find the notes by
where the sound starts, never by wall-clock time.
"""
from __future__ import annotations

import ctypes.util
import json
import os
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from midizero_app.audio.synth import AudioUnavailable, frames_to_notes, render

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
HARMONICS = (0, 12, 19, 24, 28, 31, 34, 36)  # semitones above a fundamental
needs_portaudio = pytest.mark.skipif(ctypes.util.find_library("portaudio") is None,
                                     reason="libportaudio2 not installed (apt-get install "
                                            "libportaudio2)")
ASOUNDRC = """\
pcm.!default {{ type asym; playback.pcm "tofile"; capture.pcm "fromfile" }}
pcm.tofile   {{ type file; slave.pcm "null"; file "{wav}"; format "wav" }}
pcm.fromfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "/dev/null"; format "raw" }}
ctl.!default {{ type hw card 0 }}
"""


# --- analysis ---------------------------------------------------------------------------

def salience(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """Spectral energy per semitone: float (88,), MIDI pitches 21..108, of mono ``x``."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    midi = np.round(69 + 12 * np.log2(np.maximum(f, 1e-6) / 440)).astype(int)
    ok = (f > 20) & (midi >= 21) & (midi <= 108)
    return np.bincount(midi[ok] - 21, spec[ok], minlength=88)


def check_notes(x: np.ndarray, expected, sr: int = SR, rel: float = 0.1) -> None:
    """``x`` (mono) holds exactly ``expected`` pitches: each is strong, the lowest strong
    pitch is the lowest expected one, and every strong pitch is an expected one or one of
    its overtones."""
    s = salience(x, sr)
    assert s.max() > 0, "silence"
    strong = set((np.nonzero(s >= rel * s.max())[0] + 21).tolist())
    expected = set(expected)
    weak = {p: round(float(s[p - 21] / s.max()), 3) for p in expected if p not in strong}
    assert not weak, f"expected pitches too weak: {weak}"
    assert min(np.nonzero(s >= 0.25 * s.max())[0] + 21) == min(expected)
    stray = {p for p in strong if not any(p - h in expected for h in HARMONICS)}
    assert not stray, f"pitches not played: {sorted(stray)} (expected {sorted(expected)})"


def first_sound(x: np.ndarray, level: float = 1e-3) -> int:
    loud = np.nonzero(np.abs(x) > level)[0]
    assert len(loud), "the audio is silent"
    return int(loud[0])


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, float32 (n, channels)) of a 16- or 32-bit WAV. The ALSA file plugin writes
    the stream's float32 samples under a 32-bit *integer* PCM header (FIELD-NOTES §2), so
    32 bits are read as float32 whatever the header says; ``wave`` cannot read them."""
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a WAV file"
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
        elif cid == b"data":  # a stream killed mid-write leaves size 0: take the rest
            body = data[pos + 8:] if size in (0, 0xFFFFFFFF) else data[pos + 8:pos + 8 + size]
            break
        pos += 8 + size + (size & 1)
    assert fmt is not None and body is not None, "no fmt/data chunk"
    _tag, channels, rate, _, _, bits = fmt
    if bits == 32:
        x = np.frombuffer(body[:len(body) // 4 * 4], "<f4")
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.5, f"not float32 samples {fmt}"
    else:
        assert bits == 16, f"unexpected WAV format {fmt}"
        x = np.frombuffer(body[:len(body) // 2 * 2], "<i2").astype(np.float32) / 32768
    return rate, x[:len(x) // channels * channels].reshape(-1, channels)


def run_with_device(tmp_path: Path, code: str, asoundrc: str | None = None,
                    timeout: float = 180) -> tuple[dict, Path]:
    """Run ``code`` in a child Python whose default ALSA output is a WAV file.

    ``code`` prints one JSON line last; returns (that object, the WAV path). JACK is kept
    out: the child must not join (or start) another test's JACK server.
    """
    home = tmp_path / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    wav = home / "out.wav"
    (home / ".asoundrc").write_text(ASOUNDRC.format(wav=wav) if asoundrc is None else asoundrc)
    env = dict(os.environ, HOME=str(home), JACK_NO_START_SERVER="1",
               JACK_DEFAULT_SERVER=f"none-{uuid.uuid4().hex[:8]}")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), wav


# --- offline rendering ------------------------------------------------------------------

def test_render_is_silence_for_no_notes():
    y = render([], tail_s=0.5)
    assert y.dtype == np.float32 and y.shape == (SR // 2, 2)
    assert not y.any()


def test_render_sounds_each_pitch_at_its_time():
    for pitch in (45, 60, 64, 81):
        y = render([(0.5, 1.0, pitch, 90)], tail_s=0.25)
        assert y.shape == (int(1.25 * SR), 2) and y.dtype == np.float32
        start = first_sound(y[:, 0])
        assert abs(start - 0.5 * SR) < 0.005 * SR  # the onset is where the note says
        check_notes(y[start + 2205:start + SR // 2, :].mean(axis=1), [pitch])
    y = render([(0, 0.6, p, 90) for p in (57, 60, 64)], tail_s=0)
    check_notes(y[2205:].mean(axis=1), [57, 60, 64])
    # velocity is loudness; a note-off lets the sound die away
    soft, loud = render([(0, 0.5, 60, 30)]), render([(0, 0.5, 60, 120)])
    assert np.abs(loud).max() > 2 * np.abs(soft).max()
    assert np.abs(loud[-SR // 10:]).max() < 0.01 * np.abs(loud).max()


def test_frames_to_notes_last_until_the_next_frame_at_most_1_5_s():
    from midizero_app.core.frames import Frames

    frames = Frames.from_chords([(60, 64), (67,), (72,)], onsets=[0.0, 0.5, 3.0])
    notes = frames_to_notes(frames, max_s=1.5, velocity=70)
    assert notes.tolist() == [[0.0, 0.5, 60, 70], [0.0, 0.5, 64, 70], [0.5, 2.0, 67, 70],
                              [3.0, 4.5, 72, 70]]
    assert frames_to_notes(Frames.from_chords([])).shape == (0, 4)


# --- the sound card: an ALSA file device ----------------------------------------------

SCALE = [(0.5 * i, 0.5 * i + 0.4, p, 90) for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72))]


@needs_portaudio
def test_player_plays_the_passage_from_the_start_position(tmp_path):
    out, wav = run_with_device(tmp_path, f"""
        import json, time
        from midizero_app.audio.synth import Player
        seen = []
        p = Player()
        p.play({SCALE!r}, start_s=2.0, on_position=seen.append)
        deadline = time.monotonic() + 120
        while p.is_playing and time.monotonic() < deadline:
            time.sleep(0.01)
        done = not p.is_playing
        p.close()
        print(json.dumps({{"seen": seen, "done": done, "sr": p.sr}}))
    """)
    assert out["done"] and out["sr"] == SR
    seen = out["seen"]
    assert seen[0] == pytest.approx(2.0) and seen == sorted(seen)
    assert seen[-1] >= 3.9  # through the last note (at 3.5-3.9 s in the piece)
    rate, y = read_wav(wav)
    assert rate == SR and y.shape[1] == 2
    x = y.mean(axis=1)
    t0 = first_sound(x)
    # from 2.0 s: G A B C, half a second apart; nothing before G was played
    for i, pitch in enumerate((67, 69, 71, 72)):
        a = t0 + int((0.5 * i + 0.05) * SR)
        check_notes(x[a:a + int(0.3 * SR)], [pitch])
    assert len(x) - t0 < 4 * SR  # the passage and its 1 s tail, not the whole piece


@needs_portaudio
def test_player_stops_at_once_and_plays_again(tmp_path):
    out, wav = run_with_device(tmp_path, """
        import json
        from midizero_app.audio.synth import Player
        p = Player()
        p.play([(0, 600, 60, 90)])       # ten minutes
        p.stop()
        stopped = not p.is_playing
        p.play([(0, 0.5, 64, 90)])
        import time
        while p.is_playing:
            time.sleep(0.01)
        p.close()
        print(json.dumps({"stopped": stopped}))
    """)
    assert out["stopped"]
    _, y = read_wav(wav)  # each stream rewrites the file: the second passage
    x = y.mean(axis=1)
    t0 = first_sound(x)
    check_notes(x[t0 + 2205:t0 + SR // 2], [64])


@needs_portaudio
def test_monitor_sounds_notes_from_another_thread(tmp_path):
    """Notes arrive on a separate thread (as from the MIDI reader); the WAV must hold the
    chord, then (after its note-offs) the next note alone, then silence."""
    out, wav = run_with_device(tmp_path, """
        import json, os, threading, time
        from midizero_app.audio.synth import Monitor
        wav = os.path.join(os.environ["HOME"], "out.wav")
        m = Monitor(blocksize=128)
        marks = []

        def grow(seconds):  # the file device has no clock: wait for audio, not time
            want = os.path.getsize(wav) + seconds * m.sr * 8
            deadline = time.monotonic() + 60
            while os.path.getsize(wav) < want and time.monotonic() < deadline:
                time.sleep(0.001)

        def midi_thread():
            grow(0.1)
            marks.append(os.path.getsize(wav))
            for p in (57, 60, 64):
                m.note_on(p, 100)
            grow(1.0)
            for p in (57, 60, 64):
                m.note_off(p)
            grow(1.5)
            marks.append(os.path.getsize(wav))
            m.note_on(67, 100)
            grow(1.0)
            m.all_notes_off()
            grow(2.0)

        t = threading.Thread(target=midi_thread)
        t.start()
        t.join()
        m.close()
        print(json.dumps({"marks": marks, "latency": m.latency, "sr": m.sr}))
    """)
    assert 0 < out["latency"] < 0.1
    _, y = read_wav(wav)
    x = y.mean(axis=1)
    chord_at = first_sound(x)
    assert chord_at * 8 >= out["marks"][0] - 4096  # nothing sounded before the note-ons
    check_notes(x[chord_at + 2205:chord_at + int(0.6 * SR)], [57, 60, 64])
    g_from = out["marks"][1] // 8  # bytes → stereo float32 frames (header: a few frames)
    g_at = g_from + first_sound(x[g_from:], level=0.02)
    check_notes(x[g_at + 2205:g_at + int(0.6 * SR)], [67])
    assert np.abs(x[g_from - SR // 4:g_from]).max() < 0.01  # the chord's note-offs
    assert np.abs(x[-SR // 2:]).max() < 1e-3  # all notes off: silence at the end


@needs_portaudio
def test_no_output_device_is_one_clear_message(tmp_path):
    """An ALSA configuration with no devices: Player and Monitor refuse with one line;
    offline rendering still works."""
    out, _ = run_with_device(tmp_path, """
        import json
        from midizero_app.audio.synth import AudioUnavailable, Monitor, Player, render
        said = []
        for make in (Player, Monitor):
            try:
                make()
            except AudioUnavailable as exc:
                said.append(str(exc))
        print(json.dumps({"said": said, "render": float(abs(render([(0, .2, 60, 90)])).max())}))
    """, asoundrc="# no devices\n")
    assert len(out["said"]) == 2
    for msg in out["said"]:
        assert msg.startswith("No audio output device") and "\n" not in msg
    assert out["render"] > 0.01


def test_missing_soundfont_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MIDIZERO_SOUNDFONT", str(tmp_path / "nope.sf2"))
    with pytest.raises(AudioUnavailable, match="SoundFont not found: .*nope.sf2"):
        render([(0, 0.1, 60, 90)])
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00sfbk")
    monkeypatch.setenv("MIDIZERO_SOUNDFONT", str(bad))
    with pytest.raises(AudioUnavailable, match="Cannot load the SoundFont"):
        render([(0, 0.1, 60, 90)])
