"""Sound: SoundFont rendering, playback and "hear what I play" (audio/synth.py).

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
import shutil
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from midizero_app.audio.synth import AudioUnavailable, frames_to_notes, render

from .conftest import random_piece, start_jack_dummy, stop_server, write_midi

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt makes the app

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


# --- the app: sound switches never get in the way ----------------------------------------

def test_hear_what_i_play_and_play_match_never_break_identification(qtbot, tmp_path,
                                                                    bundled_model):
    """With "Hear what I play" remembered as on, toggled, and keys pressed and released,
    playing still identifies the piece; "Play match" auditions it. Without an output
    device (this test uses the machine's own) each says so in the status bar instead."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from PySide6.QtCore import QPoint, QSettings, Qt

    from midizero_app.gui.app import MainWindow
    from midizero_app.gui.identify_tab import PLAY, STOP

    wait = 180_000  # loaded 2-core machines
    scores = tmp_path / "scores"
    scores.mkdir()
    for s in range(3):
        write_midi(scores / f"piece_{s}.mid", random_piece(500 + s))
    ini = tmp_path / "settings.ini"
    ini.write_text("[sound]\nmonitor=true\n")
    w = MainWindow(settings=QSettings(str(ini), QSettings.IniFormat),
                   library_dir=str(tmp_path / "lib"), first_run_demo=False)
    qtbot.addWidget(w)
    w.show()
    tab = w.identify
    status = w.statusBar().currentMessage

    def sound_settled():
        return tab.monitor is not None or status().startswith("No sound: ")

    try:
        qtbot.waitUntil(sound_settled, timeout=wait)  # the remembered choice, opened
        if os.environ.get("MIDIZERO_TEST_SOUND_DEVICE"):  # set where a device is certain
            assert tab.monitor is not None, status()
        print("hear what I play:", f"on, latency {tab.monitor.latency * 1000:.1f} ms"
              if tab.monitor is not None else status())
        if tab.monitor is None:  # no device: one line, the box unticked, the wish kept
            assert "\n" not in status() and not tab.hear_box.isChecked()
        else:
            assert tab.hear_box.isChecked()
        assert w.settings.value("sound/monitor") in (True, "true")
        qtbot.waitUntil(lambda: w.library is not None, timeout=wait)
        job = w.library_tab.add_paths([scores])
        qtbot.waitUntil(lambda: job.settled, timeout=wait)
        qtbot.waitUntil(lambda: tab.session is not None, timeout=wait)

        for _ in range(2):  # off and on again (without a device: on, refused, off)
            w.statusBar().clearMessage()
            tab.hear_box.click()
            if tab.hear_box.isChecked():
                qtbot.waitUntil(sound_settled, timeout=wait)
            else:
                assert tab.monitor is None
                assert w.settings.value("sound/monitor") in (False, "false")

        target = next(p for p in w.library.pieces() if p["path"].endswith("piece_1.mid"))
        for chord in w.library.frames_of(target["id"]).chords()[20:60]:
            tab.play_chord(chord)
            qtbot.wait(150)
        key = tab.piano.key_rect(60).center()  # mouse and computer keys: press and release
        qtbot.mouseClick(tab.piano, Qt.LeftButton, pos=QPoint(int(key.x()), int(key.y())))
        qtbot.keyClick(tab.results, Qt.Key_D)
        assert not tab.keys.keys_down  # every typed key was let go

        def first_is_target():
            u = tab.last_update
            return bool(u and u.get("results")) and u["results"][0]["path"] == target["path"]

        qtbot.waitUntil(first_is_target, timeout=wait)
        qtbot.waitUntil(lambda: tab.results.rowCount() > 0, timeout=wait)

        tab.results.selectRow(0)
        play = tab.toggle_play()
        assert play is not None
        qtbot.waitUntil(lambda: play.settled, timeout=wait)
        print("play match:", status() if tab.player is None else tab.play_label.text())
        if os.environ.get("MIDIZERO_TEST_SOUND_DEVICE"):
            assert tab.player is not None, status()
        if tab.player is None:  # no output device, or no PortAudio library at all
            assert status().startswith("Cannot play: No audio"), status()
            assert tab.play_btn.text() == PLAY and tab.play_btn.isEnabled()
        else:
            assert tab.play_btn.text() in (STOP, PLAY)  # a short passage may be over
            tab.toggle_play()
            assert not tab.player.is_playing and tab.play_btn.text() == PLAY
    finally:
        w.close()


@needs_portaudio
def test_the_app_with_a_real_time_sound_device(tmp_path):
    """The test above in a child pytest whose PortAudio finds a private JACK dummy server
    (a device with a clock, unlike the file device): the monitor and the audition must
    open, and identification still works while they run."""
    if not (shutil.which("jackd") and shutil.which("jack_wait")):
        pytest.skip("jackd not installed (apt-get install jackd2)")
    name = f"pytest-sound-{uuid.uuid4().hex[:8]}"
    server = start_jack_dummy(name, period=256, rate=SR)
    if server is None:
        pytest.skip("jackd cannot start here (jackd -d dummy failed)")
    try:
        # MIDI on the same JACK server: the port list (refreshed each second) opens and
        # closes rtmidi JACK clients while the monitor and the audition stream play.
        env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1",
                   MIDIZERO_TEST_SOUND_DEVICE="1", MIDIZERO_MIDI_API="jack")
        child = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
             # a child stuck past this dumps every thread's stack into its stderr, which
             # the failure shows
             "-o", "faulthandler_timeout=240",
             f"{__file__}::test_hear_what_i_play_and_play_match_never_break_identification",
             "--basetemp", str(tmp_path / "child")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
        assert "hear what I play: on" in child.stdout
    finally:
        stop_server(server)


@needs_portaudio
def test_midi_port_changes_on_jack_never_stall_the_sound(tmp_path):
    """MIDI and sound on one JACK server: listing the MIDI ports (a JACK client opened
    and closed, as the hot-plug watcher does each second) while the monitor and a
    passage play must take a moment, not JACK's client timeout. With PortAudio callbacks
    in Python, each open or close waited for the server, which waited for the callback,
    which waited for the GIL that python-rtmidi held: 5 s (this server's timeout) per
    call, or for ever under a desktop server."""
    if not (shutil.which("jackd") and shutil.which("jack_wait")):
        pytest.skip("jackd not installed (apt-get install jackd2)")
    pytest.importorskip("rtmidi")
    name = f"pytest-stall-{uuid.uuid4().hex[:8]}"
    server = start_jack_dummy(name, period=256, rate=48000)
    if server is None:
        pytest.skip("jackd cannot start here (jackd -d dummy failed)")
    code = """
        import json, time
        from midizero_app.audio.synth import Monitor, Player
        from midizero_app.live.midi_input import list_input_ports
        m, p = Monitor(), Player()
        p.play([(0.25 * i, 0.25 * i + 0.2, 60 + i % 12, 80) for i in range(400)])
        took = []
        for i in range(12):
            m.note_on(60 + i, 90)
            t0 = time.monotonic()
            api, _ = list_input_ports("jack")
            took.append(time.monotonic() - t0)
            m.note_off(60 + i)
        playing = p.is_playing
        p.close()
        m.close()
        print(json.dumps({"api": api, "took": took, "playing": playing, "sr": m.sr}))
    """
    try:
        env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        stop_server(server)
    assert out["api"] == "jack" and out["sr"] == 48000  # both on the JACK server
    assert out["playing"]  # the passage (100 s) still played
    assert max(out["took"]) < 2.5, out["took"]  # not a server timeout (5 s)
