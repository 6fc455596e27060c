"""Identify from audio in the desktop app: the input selector, the microphone through real
sound devices, the level meter, and recordings in the Library tab (real widgets offscreen,
as tests/test_gui.py; no mocks).

The microphone needs a capture device with a clock. The ALSA ``file`` device of
tests/test_audio.py has none: it hands over its file as fast as it is read and then repeats
its last buffer for ever (measured: 288 million frames in 3 s), which ends only a capture of
fixed length such as ``listen --mic --duration``. So the app listens to a private JACK dummy
server (real time, FIELD-NOTES §2 B), and this process plays the rendered piece into it: a
PortAudio output stream wired with ``jack_connect`` to the app's input port. PortAudio reads
the sound setup when it initialises, so each device test re-initialises it for its own HOME
(an ALSA configuration with no devices) and JACK server, and again afterwards.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from .conftest import random_piece, start_jack_dummy, stop_server, write_midi
from .test_audio import _score_notes, needs_portaudio
from .test_gui import WAIT_MS, make_window, shot  # noqa: F401 - make_window: a fixture

SR = 48000  # the JACK server's rate, so the app's input runs at it


@pytest.fixture(scope="module")
def jack_audio() -> str:
    """A private JACK dummy server (a long client timeout: a loaded 2-core machine must not
    drop the app's client); yields its name."""
    if not (shutil.which("jackd") and shutil.which("jack_wait") and shutil.which("jack_connect")):
        pytest.skip("jackd not installed (apt-get install jackd2)")
    name = f"pytest-mic-{uuid.uuid4().hex[:8]}"
    server = start_jack_dummy(name, period=1024, rate=SR)
    if server is None:
        pytest.skip("jackd cannot start here (jackd -d dummy failed)")
    yield name
    stop_server(server)


@pytest.fixture
def portaudio(tmp_path):
    """``use(audio_jack=None, **env)``: PortAudio re-initialised with no ALSA devices and
    the JACK server ``audio_jack`` (None: none), then ``env`` set; all undone afterwards
    (request it before ``make_window``, so that the windows close first)."""
    sd = pytest.importorskip("sounddevice")
    saved = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text("# no devices\n")

    def use(audio_jack: str | None = None, **env: str) -> None:
        os.environ.update(HOME=str(home), JACK_NO_START_SERVER="1",
                          JACK_DEFAULT_SERVER=audio_jack or f"absent-{uuid.uuid4().hex[:6]}")
        sd._terminate()
        sd._initialize()
        os.environ.update(env)

    yield use
    os.environ.clear()
    os.environ.update(saved)
    sd._terminate()
    sd._initialize()


def _library_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A music21-corpus chorale and three generated pieces: (folder, the chorale)."""
    import music21

    folder = tmp_path / "scores"
    folder.mkdir()
    src = Path(str(music21.corpus.getWork("bach/bwv66.6")))
    chorale = folder / f"bach_bwv66.6{src.suffix}"
    chorale.write_bytes(src.read_bytes())
    for s in range(3):
        write_midi(folder / f"piece_{s}.mid", random_piece(700 + s))
    return folder, chorale


def _indexed(window, qtbot, folder: Path) -> None:
    job = window.library_tab.add_paths([folder])
    qtbot.waitUntil(lambda: job.settled, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.identify.session is not None, timeout=WAIT_MS)


def _choose(combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, [combo.itemData(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def _rendered_excerpt(chorale: Path, tmp_path: Path, start: float, end: float) -> np.ndarray:
    """The chorale from ``start`` to ``end`` s, rendered with the SoundFont piano (mono)."""
    from midizero_app.audio.synth import render

    on, off, pitch = _score_notes(chorale, tmp_path)
    keep = (on >= start) & (on < end)
    rows = np.stack([on[keep] - start, np.minimum(off[keep], end) - start, pitch[keep],
                     np.full(keep.sum(), 80)], axis=1)
    return render(rows, sr=SR).mean(axis=1)


class _Player:
    """Plays mono audio through the JACK server into the app's input, in real time."""

    def __init__(self, server: str, audio: np.ndarray):
        import sounddevice as sd

        self.server, self.audio, self.pos = server, audio.astype(np.float32), 0
        self.stream = sd.OutputStream(device="system", samplerate=SR, channels=1,
                                      dtype="float32", callback=self._fill)

    def _fill(self, out, frames, _time, _status) -> None:
        chunk = self.audio[self.pos:self.pos + frames]
        out[:] = 0
        out[:len(chunk), 0] = chunk
        self.pos += frames

    def start(self) -> None:
        self.stream.start()
        ports = subprocess.run(["jack_lsp", "-s", self.server], capture_output=True,
                               text=True, check=True).stdout.split()
        mine = [p for p in ports if not p.startswith("system:")]
        out = next(p for p in mine if re.search(r":out_\d+$", p))
        inp = next(p for p in mine if re.search(r":in_\d+$", p))  # the app's microphone
        subprocess.run(["jack_connect", "-s", self.server, out, inp], check=True)

    @property
    def done(self) -> bool:
        return self.pos >= len(self.audio)

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


@needs_portaudio
def test_microphone_input_identifies_a_played_chorale(portaudio, make_window, qtbot,
                                                      tmp_path, jack_audio):
    """Microphone chosen (and remembered), Listen: silence says "no notes heard"; then the
    rendered chorale arrives in real time through a real input stream, the meter rises, the
    transcribed notes fill the pitch matrix and the session names the chorale."""
    from midizero_app.gui.identify_tab import LISTEN, STOP_LISTENING
    from midizero_app.gui.widgets import LevelMeter

    portaudio(audio_jack=jack_audio)
    folder, chorale = _library_folder(tmp_path)
    w = make_window()
    tab = w.identify
    _indexed(w, qtbot, folder)
    assert tab.input_combo.findData("mic") >= 0  # the selector offers the microphone
    _choose(tab.input_combo, "mic")
    assert w.settings.value("input/source") == "mic"
    assert not tab.port_combo.isVisible() and tab.audio_combo.isVisible()
    qtbot.waitUntil(lambda: tab.audio_combo.count() > 0, timeout=WAIT_MS)
    devices = [tab.audio_combo.itemData(i) for i in range(tab.audio_combo.count())]
    assert "system" in devices, devices  # the JACK server's capture ports
    _choose(tab.audio_combo, "system")
    assert tab.listen_btn.isEnabled() and tab.listen_btn.text() == LISTEN
    qtbot.mouseClick(tab.listen_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: tab.listener is not None, timeout=WAIT_MS)
    assert tab.listen_btn.text() == STOP_LISTENING
    assert tab.midi_label.text() == "Listening at 48 kHz"

    # the server's own capture is digital silence
    qtbot.waitUntil(lambda: "No notes heard" in tab.status.text(), timeout=WAIT_MS)
    assert tab.level_meter.value() == LevelMeter.FLOOR_DB and tab.matrix.count == 0

    updates: list[dict] = []
    tab.updated.connect(updates.append)  # every update, from the session thread
    player = _Player(jack_audio, _rendered_excerpt(chorale, tmp_path, 2.0, 16.0))
    try:
        player.start()
        qtbot.waitUntil(lambda: tab.level_meter.value() > LevelMeter.FLOOR_DB + 20,
                        timeout=WAIT_MS)
        assert not player.done  # the level rose while the piece played
        assert tab.level_meter.text().startswith("peak ")

        def identified():
            u = tab.last_update
            return bool(u and u.get("results")) and u["results"][0]["path"] == str(chorale)

        qtbot.waitUntil(lambda: identified() and tab.last_update["frames"] >= 10,
                        timeout=WAIT_MS)
        # named from the 10th frame on, within 10 s of the excerpt's 14 s (audio seconds:
        # load cannot stretch them)
        later = [u for u in updates if u["frames"] >= 10]
        assert later[0]["t"] <= 10.0
        assert all(u["results"][0]["path"] == str(chorale) for u in later)
        # each frame reaches the view before the update that counts it
        assert tab.matrix.count >= 10 and tab.matrix.buf.sum() >= 10
        assert tab.last_update["query"] == "mic:system"
        qtbot.waitUntil(lambda: tab.last_update["frames"] >= 24, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: tab.results.rowCount() > 0, timeout=WAIT_MS)
        assert tab.results.item(0, 1).text() == tab.last_update["results"][0]["title"]
        tab.results.selectRow(0)  # what was heard beside the matched passage
        assert tab.match.data.sum() > 0
        w.resize(1180, 760)
        shot(w, tmp_path / "identify-microphone.png")
        tab.listen_btn.click()  # stop: the session's final update follows
        assert tab.listener is None and tab.listen_btn.text() == LISTEN
        qtbot.waitUntil(lambda: tab.last_update["final"], timeout=WAIT_MS)
        assert tab.last_update["results"][0]["path"] == str(chorale)
    finally:
        player.close()


@needs_portaudio
def test_without_a_microphone_one_message_and_midi_still_works(portaudio, make_window, qtbot,
                                                                tmp_path, jack_audio):
    """No audio input anywhere (no ALSA devices, no JACK server for PortAudio): choosing the
    remembered Microphone says so once and offers nothing to listen to; switching to the MIDI
    keyboard, a JACK MIDI device's notes still reach the session and name the piece."""
    import rtmidi

    portaudio(audio_jack=None, JACK_DEFAULT_SERVER=jack_audio, MIDIZERO_MIDI_API="jack")
    folder, _ = _library_folder(tmp_path)
    w = make_window(settings_text="[input]\nsource=mic\n")
    tab = w.identify
    assert tab.input_kind == "mic"
    qtbot.waitUntil(lambda: "No microphone found" in tab.midi_label.text(), timeout=WAIT_MS)
    assert "MIDI keyboard or the on-screen piano" in tab.midi_label.text()
    assert "\n" not in tab.midi_label.text()
    assert tab.audio_combo.count() == 0 and not tab.listen_btn.isEnabled()
    _indexed(w, qtbot, folder)
    assert tab.listener is None

    name = f"kbd{uuid.uuid4().hex[:6]}"
    keyboard = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=name)
    keyboard.open_virtual_port("out")
    try:
        _choose(tab.input_combo, "midi")
        qtbot.waitUntil(lambda: tab.refresh_ports() or tab.port_combo.findText(f"{name}:out")
                        >= 0, timeout=WAIT_MS)
        tab.port_combo.setCurrentText(f"{name}:out")
        tab.port_combo.activated.emit(tab.port_combo.currentIndex())
        assert tab.midi is not None, tab.midi_label.text()
        target = next(p for p in w.library.pieces() if p["path"].endswith("piece_1.mid"))
        chords = w.library.frames_of(target["id"]).chords()[20:60]
        for chord in chords:
            for p in chord:
                keyboard.send_message([0x90, int(p), 90])
            qtbot.wait(150)
            for p in chord:
                keyboard.send_message([0x80, int(p), 0])

        def first_is_target():
            u = tab.last_update
            return bool(u and u.get("results")) and u["results"][0]["path"] == target["path"]

        qtbot.waitUntil(first_is_target, timeout=WAIT_MS)
        assert tab.matrix.count >= len(chords) // 2
        assert w.settings.value("input/source") == "midi"
    finally:
        tab.port_combo.setCurrentIndex(0)
        tab.port_combo.activated.emit(0)  # close the port before the device goes
        keyboard.delete()


def test_library_lists_recordings_with_kind_duration_and_state(make_window, qtbot, tmp_path):
    """A rendered recording and a silent one: shown as "transcribing…" while the job runs,
    then as a recording with its m:ss duration (ok) and with its reason (failed); a search
    that finds the recording shows it as one, with the time in it."""
    import soundfile as sf

    from midizero_app.audio.synth import render
    from midizero_app.gui.library_tab import TRANSCRIBING

    rec = tmp_path / "recordings"
    rec.mkdir()
    notes = random_piece(800, n_frames=40)  # 10 s
    sf.write(str(rec / "take 1.wav"), render([(t, t + d, p, 90) for t, p, d in notes]), 44100)
    sf.write(str(rec / "silence.wav"), np.zeros(44100, np.float32), 44100)
    w = make_window()
    lt = w.library_tab
    lt.add_paths([rec])
    qtbot.waitUntil(lambda: any(r[4] == TRANSCRIBING for r in lt.rows()) or not lt.busy,
                    timeout=WAIT_MS)
    pending = {r[2]: r for r in lt.rows()}
    assert pending["take 1.wav"][4:6] == (TRANSCRIBING, "recording"), pending
    qtbot.waitUntil(lambda: not lt.busy, timeout=WAIT_MS)
    rows = {r[2]: r for r in lt.rows()}
    assert set(rows) == {"take 1.wav", "silence.wav"}
    take = rows["take 1.wav"]
    assert take[4:6] == ("ok", "recording") and int(take[3]) > 20
    m, s = re.fullmatch(r"(\d+):(\d\d)", take[6]).groups()
    assert abs(60 * int(m) + int(s) - 10) <= 2
    assert rows["silence.wav"][4] == "failed: no notes heard (silence, or too quiet)"
    assert rows["silence.wav"][5] == "recording"
    w.tabs.setCurrentWidget(lt)
    shot(w, tmp_path / "library-recordings.png")

    tab = w.identify
    query = write_midi(tmp_path / "excerpt.mid", [n for n in notes if 3.0 <= n[0] < 9.0])
    w.tabs.setCurrentWidget(tab)
    job = tab.search_file(str(query))
    qtbot.waitUntil(lambda: job.settled, timeout=WAIT_MS)
    top = tab.file_result["results"][0]
    assert top["kind"] == "recording" and top["path"].endswith("take 1.wav")
    position = tab.results.item(0, 4).text()
    assert position.startswith("♫ recording at 0:0"), position


def test_a_recording_dropped_on_identify_is_transcribed_and_identified(make_window, qtbot,
                                                                       tmp_path):
    import soundfile as sf

    folder, chorale = _library_folder(tmp_path)
    w = make_window()
    _indexed(w, qtbot, folder)
    take = tmp_path / "take.flac"
    sf.write(str(take), _rendered_excerpt(chorale, tmp_path, 4.0, 14.0), SR)
    w.tabs.setCurrentWidget(w.identify)
    job = w.drop_paths([str(take)])
    qtbot.waitUntil(lambda: job.settled, timeout=WAIT_MS)
    res = w.identify.file_result
    assert res["results"][0]["path"].endswith(chorale.name) and not res["not_in_library"]
    assert res["audio_route"] == "transcribe"  # the default route
    # the route chosen in the status bar is the one a dropped recording is searched by
    w.route_combo.setCurrentIndex(w.route_combo.findData("both"))
    job = w.drop_paths([str(take)])
    qtbot.waitUntil(lambda: job.settled, timeout=WAIT_MS)
    res = w.identify.file_result
    assert res["audio_route"] == "both" and res["results"][0]["path"].endswith(chorale.name)
    assert w.identify.matrix.count > 0  # the transcribed notes shown
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SR, np.float32), SR)
    job = w.drop_paths([str(silent)])
    qtbot.waitUntil(lambda: job.settled, timeout=WAIT_MS)
    assert "no notes heard" in w.identify.status.text()
