"""Identify tab: the input (a MIDI keyboard, a microphone, the on-screen and computer
keyboards), the live pitch matrix and the ranked results (live, or for a dropped query
file)."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QCheckBox, QComboBox,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from .widgets import (KEY_HELP, KEY_LAYOUT, LevelMeter, MatchView, PianoKeyboard,
                      PitchMatrixView, ResultsTable)
from .workers import Job, MicListener

NO_PORT = "(none: on-screen keyboard)"
PLAY, STOP = "▶ Play match", "■ Stop"
LISTEN, STOP_LISTENING = "● Listen", "■ Stop listening"
INPUTS = (("midi", "MIDI keyboard"), ("mic", "Microphone"), ("screen", "On-screen keyboard"))
SCREEN_HINT = "Play the on-screen piano below or your computer keyboard."
NO_NOTES_S = 3.0  # audio seconds without a transcribed note before the status says so
METER_MS = 50     # the level meter's refresh: 20 per second, however many audio blocks


class IdentifyTab(QWidget):
    """Everything played (MIDI port, mouse, computer keyboard) goes to one LiveSession; a
    microphone, while it listens, feeds a session of its own (audio clock, transcription τ:
    :class:`~.workers.MicListener`) that updates the same pitch matrix and results."""

    updated = Signal(dict)        # marshalled from the session thread
    frameClosed = Signal(float, list)
    noteSeen = Signal(int)        # a MIDI note (from the MIDI thread) to light on the piano
    portState = Signal(str, str)
    message = Signal(str)
    playPosition = Signal(float)  # seconds in the auditioned piece (from the audio thread)

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.main = window
        self.session = None
        self.starting = False
        self.midi = None
        self.octave = 60
        self.last_update: dict | None = None  # the latest live update
        self.file_result: dict | None = None  # the latest dropped-file search
        self.updates = 0
        self.monitor = None  # audio.synth.Monitor while "Hear what I play" is on
        self.player = None   # audio.synth.Player, made on the first "Play match"
        self.playing: str | None = None  # the title being auditioned
        self.closed = False
        self.listener: MicListener | None = None  # while the microphone listens
        self._opening = 0  # the ticket of the listener being opened (0: none)
        self._tickets = itertools.count(1)
        self._audio_job: Job | None = None        # the audio inputs being listed
        self._keys_down: dict[str, int] = {}  # computer key → the pitch it pressed
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Input:"))
        self.input_combo = QComboBox()
        for key, label in INPUTS:
            self.input_combo.addItem(label, key)
        self.input_combo.setToolTip("What you play into: a MIDI keyboard, a microphone (an "
                                    "acoustic instrument) or the on-screen keyboard only")
        top.addWidget(self.input_combo)
        self.port_combo = QComboBox()
        self.port_combo.setMinimumWidth(260)
        self.audio_combo = QComboBox()
        self.audio_combo.setMinimumWidth(200)
        self.refresh_btn = QPushButton("Refresh")
        self.listen_btn = QPushButton(LISTEN)
        self.listen_btn.setToolTip("Listen through the chosen audio input and identify what "
                                   "it hears")
        self.level_meter = LevelMeter()
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("End this query and start a new search "
                                  "(also happens after 3 s of silence)")
        for w in (self.port_combo, self.audio_combo, self.refresh_btn, self.listen_btn,
                  self.level_meter):
            top.addWidget(w)
        self._input_widgets = {  # the controls shown for each input
            "midi": (self.port_combo, self.refresh_btn),
            "mic": (self.audio_combo, self.refresh_btn, self.listen_btn, self.level_meter),
            "screen": ()}
        self.midi_label = QLabel("")  # one line about the chosen input
        self.midi_label.setWordWrap(True)
        self.midi_label.setStyleSheet("color: #555;")
        top.addWidget(self.midi_label, 1)
        self.hear_box = QCheckBox("Hear what I play")
        self.hear_box.setToolTip("Sound every note you play with a piano (for silent MIDI "
                                 "controllers, the on-screen and the computer keyboard)")
        top.addWidget(self.hear_box)
        self.any_key_box = QCheckBox("Any key")
        self.any_key_box.setToolTip("Find a tune played one note at a time in any key "
                                    "(untick to keep to the score's key); for a dropped file, "
                                    "also try every key of the full texture")
        self.any_key_box.setChecked(
            str(self.main.settings.value("search/any_key", "true")).lower() in ("true", "1"))
        top.addWidget(self.any_key_box)
        top.addWidget(self.reset_btn)
        lay.addLayout(top)
        split = QSplitter(Qt.Horizontal)
        self.matrix = PitchMatrixView()
        split.addWidget(self.matrix)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("Starting the search engine…")
        self.status.setWordWrap(True)
        f = self.status.font()
        f.setPointSizeF(f.pointSizeF() * 1.15)
        self.status.setFont(f)
        rl.addWidget(self.status)
        self.results = ResultsTable()
        rl.addWidget(self.results, 1)
        play_row = QHBoxLayout()
        self.play_btn = QPushButton(PLAY)
        self.play_btn.setToolTip("Hear the selected piece from the matched position "
                                 "(or double-click a result)")
        self.play_label = QLabel("")
        self.play_label.setStyleSheet("color: #555;")
        play_row.addWidget(self.play_btn)
        play_row.addWidget(self.play_label, 1)
        rl.addLayout(play_row)
        self.match = MatchView()
        self.match.setFixedHeight(190)
        rl.addWidget(self.match)
        self.query_roll: np.ndarray | None = None  # a dropped file's frames (F, 88)
        split.addWidget(right)
        split.setSizes([420, 580])
        lay.addWidget(split, 1)
        self.piano = PianoKeyboard()
        lay.addWidget(self.piano)
        help_ = QLabel("Play a MIDI keyboard or into a microphone, click the keys above, or "
                       "type: " + KEY_HELP[19:] + " Drop a MIDI file here to search it.")
        help_.setWordWrap(True)
        help_.setStyleSheet("color: #555;")
        lay.addWidget(help_)
        self.piano.noteOn.connect(self.play)
        self.piano.noteOff.connect(self.release)
        self.noteSeen.connect(self.piano.light)
        self.updated.connect(self._on_update)
        self.frameClosed.connect(self._on_frame)
        self.portState.connect(lambda s, n: self.midi_label.setText(f"{n}: {s}"))
        self.results.itemSelectionChanged.connect(self.show_match)
        self.reset_btn.clicked.connect(self.reset)
        self.refresh_btn.clicked.connect(self.refresh_inputs)
        self.port_combo.activated.connect(self._port_chosen)
        self.audio_combo.activated.connect(
            lambda _i: self.main.settings.setValue("audio/device", self.audio_combo.currentData()))
        self.listen_btn.clicked.connect(self.toggle_listening)
        self._meter_timer = QTimer(self)
        self._meter_timer.timeout.connect(self._mic_tick)
        self.hear_box.toggled.connect(self.set_monitor)
        self.any_key_box.toggled.connect(self._any_key_changed)
        self.play_btn.clicked.connect(self.toggle_play)
        self.results.cellDoubleClicked.connect(lambda row, _col: self.play_match(row))
        self.playPosition.connect(self._play_position)
        self._play_timer = QTimer(self)  # notices the end of an audition
        self._play_timer.timeout.connect(self._check_playing)
        self._fade = QTimer(self)
        self._fade.timeout.connect(self.piano.fade)
        self._fade.start(80)
        QApplication.instance().installEventFilter(self)
        if str(self.main.settings.value("sound/monitor", "false")).lower() in ("true", "1"):
            self.hear_box.setChecked(True)
        remembered = self.input_combo.findData(self.main.settings.value("input/source", "midi"))
        self.input_combo.setCurrentIndex(max(0, remembered))
        self.input_combo.currentIndexChanged.connect(self._input_chosen)
        self._show_input(self.input_kind, initial=True)

    # --- the live session ---------------------------------------------------------------
    def start_session(self, restart: bool = False) -> Job | None:
        """(Re)build the live session in a worker (loads the model and index)."""
        lib = self.main.library
        if lib is None:
            return None
        if not lib.stats()["ok"]:
            self.status.setText("The library is empty: add scores on the Library tab "
                                "(or drop them on the window).")
            return None
        if getattr(self, "_deferred", False):
            return None  # the first start is about to run (below)
        if not getattr(self, "_first_start_done", False):
            # The very first start waits until the window has painted the opened library:
            # loading the model at the same moment competes with that paint for the GIL
            # (one 70-120 ms stall at start-up, benchmarks/stall_bench.py; 40-60 ms so).
            self._first_start_done = self._deferred = self.starting = True

            def go():
                self._deferred = self.starting = False
                self.start_session(restart)
            QTimer.singleShot(150, go)
            return None
        pending = getattr(self, "_start_job", None)
        if self.starting and pending is not None and pending.running:
            # one start at a time (first run: indexing ended + status update); a ``restart``
            # (a changed setting) builds again once the running start has finished
            self._restart_pending = getattr(self, "_restart_pending", False) or restart
            return pending
        old, self.session = self.session, None
        if old is not None:
            old.stop(timeout=5)
        self.status.setText("Loading the model and index…")
        self.starting = True

        def build(_progress, _cancel):
            from ..live.session import LiveSession

            return LiveSession(lib, top=10, on_update=self.updated.emit,
                               any_key=self.any_key_box.isChecked(),
                               on_frame=lambda o, p: self.frameClosed.emit(float(o), list(p))
                               ).start()

        job = Job(build, "live session")
        job.signals.done.connect(self._session_ready)
        job.signals.failed.connect(lambda m: self.status.setText(f"Live search unavailable: {m}"))
        job.signals.ended.connect(self._start_ended)
        self._start_job = job
        return job.start()

    def _start_ended(self) -> None:
        self.starting = False
        if getattr(self, "_restart_pending", False):
            self._restart_pending = False
            self.start_session()

    def _session_ready(self, session) -> None:
        if self.main.library is None:  # the window closed while the model was loading
            session.stop(timeout=5)
            return
        if self.session is not None and self.session is not session:
            self.session.stop(timeout=5)  # two starts overlapped: keep the newer one only
        self.session = session
        self.status.setText("Ready: play something.")

    def stop(self) -> None:
        QApplication.instance().removeEventFilter(self)
        self.closed = True
        self.stop_listening(wait_s=10)  # its session searches the library closing next
        for sound in (self.monitor, self.player):
            if sound is not None:
                sound.close()
        self.monitor = self.player = None
        if self.midi is not None:
            self.midi.close()
            self.midi = None
        if self.session is not None:
            self.session.stop(timeout=5)
            self.session = None

    def play(self, pitch: int, t: float | None = None) -> None:
        """A note from the mouse or computer keyboard (or a test)."""
        if self.monitor is not None:
            self.monitor.note_on(int(pitch), 100)
        if self.listener is not None:  # its session runs on the audio clock, not this one
            self.status.setText("Listening to the microphone: stop it to search what you "
                                "play on the keyboard.")
            return
        if self.session is None:
            self.status.setText("The search engine is still starting; try again in a moment.")
            return
        self.session.feed_note(time.perf_counter() if t is None else t, int(pitch))

    def release(self, pitch: int) -> None:
        """A key of the mouse or computer keyboard let go (only the sound cares)."""
        if self.monitor is not None:
            self.monitor.note_off(int(pitch))

    def play_chord(self, pitches) -> None:
        """Press several keys at once (one frame)."""
        t = time.perf_counter()
        for p in pitches:
            self.piano.light(p)
            self.play(p, t)

    def reset(self) -> None:
        if self.listener is not None:
            self.listener.reset()
        if self.session is not None:
            self.session.reset()
        self.matrix.clear_frames()
        self.results.show_results([])
        self.status.setText("New search: play something.")

    def _on_frame(self, onset: float, pitches: list) -> None:
        self.matrix.add_frame(pitches)

    def _on_update(self, update: dict) -> None:
        self.last_update = update
        self.query_roll = None
        self.updates += 1
        self.results.show_results(update.get("results", []))
        res = update.get("results") or []
        head = "Final" if update.get("final") else "Listening"
        if update.get("mode") == "melody":
            head += " (a tune: melody search)"
        text = f"{head}: {update.get('frames', 0)} frames, {update.get('t', 0):.1f} s"
        if update.get("verdict") == "unsure":
            text += " — not sure yet: keep playing"
        elif update.get("not_in_library"):
            text += " — probably not in the library"
        elif res:
            text += f" — best: {res[0].get('title')}"
        self.status.setText(text)

    def show_match(self) -> None:
        """The selected result: the query window beside the matched library window."""
        rows = {i.row() for i in self.results.selectedIndexes()}
        lib = self.main.library
        if not rows or lib is None:
            return
        r = self.results.results[min(rows)]
        pos = (r.get("positions") or [None])[0]
        if pos is None:
            return
        frames = lib.frames_of(r["piece_id"])
        from ..core.windows import frame_matrix

        roll = frame_matrix(frames)
        w = self.match.win
        if self.query_roll is not None:  # a file: its first window, at the match start
            query, start = self.query_roll[:w], int(pos["frame"])
        else:  # live: the latest window, at the matched "now"
            query = self.matrix.buf[-w:]
            end = int(pos.get("now", pos)["frame"])
            start = max(0, end - w + 1)
        shift = int(r.get("transpose") or 0)
        match = np.roll(roll[start:start + w], shift, axis=1) if shift else roll[start:start + w]
        self.match.show_pair(query, match, f"{r.get('title')} — from frame {start}")

    # --- sound: hear what I play, audition a match ----------------------------------------
    def set_monitor(self, on: bool) -> Job | None:
        """Switch "Hear what I play" (remembered); the synth and stream open in a worker."""
        self.main.settings.setValue("sound/monitor", bool(on))
        old, self.monitor = self.monitor, None
        if old is not None:
            old.close()
        if not on:
            return None

        def build(_progress, _cancel):
            from ..audio.synth import Monitor

            return Monitor()

        job = Job(build, "monitor")
        job.signals.done.connect(self._monitor_ready)
        job.signals.failed.connect(self._no_monitor)
        return job.start()

    def _monitor_ready(self, monitor) -> None:
        if self.closed or not self.hear_box.isChecked() or self.monitor is not None:
            monitor.close()  # switched off (or closed) while it opened
            return
        self.monitor = monitor

    def _no_monitor(self, reason: str) -> None:
        self.hear_box.blockSignals(True)  # unticked, but still wanted next time
        self.hear_box.setChecked(False)
        self.hear_box.blockSignals(False)
        self.message.emit(f"No sound: {reason}. Everything else works.")

    def toggle_play(self) -> Job | None:
        if self.player is not None and self.player.is_playing:
            self.stop_playing()
            return None
        rows = {i.row() for i in self.results.selectedIndexes()}
        return self.play_match(min(rows) if rows else 0)

    def play_match(self, row: int) -> Job | None:
        """Play result ``row``'s library piece from its matched position, in a worker."""
        lib = self.main.library
        if lib is None or not 0 <= row < len(self.results.results) \
                or not self.play_btn.isEnabled():  # disabled: an audition is starting
            return None
        r = self.results.results[row]
        pos = (r.get("positions") or [{}])[0]
        self.stop_playing()
        self.play_btn.setEnabled(False)
        player = self.player

        def run(_progress, _cancel):
            from ..audio.synth import Player, frames_to_notes

            frames = lib.frames_of(r["piece_id"])
            frame = min(int(pos.get("frame", 0)), len(frames) - 1)
            start = float(frames.onset[frame]) if frame >= 0 else 0.0
            p = player or Player()
            p.play(frames_to_notes(frames), start, on_position=self.playPosition.emit)
            return p

        job = Job(run, "play")
        job.signals.done.connect(lambda p: self._playing(p, r.get("title") or "?"))
        job.signals.failed.connect(lambda m: self.message.emit(f"Cannot play: {m}"))
        job.signals.ended.connect(lambda: self.play_btn.setEnabled(True))
        return job.start()

    def _playing(self, player, title: str) -> None:
        self.player = player
        if self.closed:
            player.close()
            return
        self.playing = title
        self.play_btn.setText(STOP)
        self._play_timer.start(200)

    def _play_position(self, seconds: float) -> None:
        if self.playing is not None:
            self.play_label.setText(f"{self.playing} — {seconds:.1f} s")

    def _check_playing(self) -> None:
        if self.player is None or not self.player.is_playing:
            self.stop_playing()

    def stop_playing(self) -> None:
        if self.player is not None:
            self.player.stop()
        self._play_timer.stop()
        self.playing = None
        self.play_btn.setText(PLAY)
        self.play_label.setText("")

    # --- a dropped query file -----------------------------------------------------------
    def _any_key_changed(self, on: bool) -> None:
        self.main.settings.setValue("search/any_key", "true" if on else "false")
        if self.session is not None or self.starting:
            self.start_session(restart=True)  # the live session takes the setting when made

    def search_file(self, path: str) -> Job | None:
        lib = self.main.library
        if lib is None:
            return None
        self.status.setText(f"Searching {Path(path).name}…")
        any_key = self.any_key_box.isChecked()

        def run(_progress, cancel):
            from ..audio.queries import read_queries, search_options
            from ..core.frames import DEFAULT_TAU, to_frames
            from ..core.windows import frame_matrix

            # a score parsed, a recording transcribed, each in a limited worker
            r = read_queries([path], cancel=cancel)[path]
            if r.notes is None:
                raise ValueError(r.error)
            options = search_options(path)
            result = lib.search(r.notes, top=10, any_key=any_key, **options)
            tau = options.get("tau", DEFAULT_TAU)
            return result, frame_matrix(to_frames(r.notes, tau=tau)[0])

        job = Job(run, "search")
        job.signals.done.connect(lambda r: self._file_result(path, *r))
        job.signals.failed.connect(
            lambda m: self.status.setText(f"Cannot search {Path(path).name}: {m}"))
        return job.start()

    def _file_result(self, path: str, result: dict, roll: np.ndarray) -> None:
        self.file_result = result
        self.query_roll = roll
        self.matrix.show_roll(roll)
        self.results.show_results(result.get("results", []))
        text = f"{Path(path).name}: {result.get('frames', 0)} frames"
        if result.get("verdict") == "unsure":
            text += (f" — not sure: {result['tune_notes']} notes of a tune say too little"
                     " (not in the library, or more of the tune would tell)")
        elif result.get("not_in_library"):
            text += " — probably not in the library"
        elif result.get("results"):
            text += f" — best: {result['results'][0].get('title')}"
        self.status.setText(text)

    # --- the input: MIDI keyboard, microphone or on-screen keyboard -----------------------
    @property
    def input_kind(self) -> str:
        """``"midi"``, ``"mic"`` or ``"screen"``."""
        return self.input_combo.currentData()

    def _input_chosen(self, _index: int) -> None:
        self.main.settings.setValue("input/source", self.input_kind)
        self._show_input(self.input_kind)

    def _show_input(self, kind: str, initial: bool = False) -> None:
        """Show ``kind``'s controls and close the other inputs (their choices stay
        remembered). The on-screen and computer keyboards play with every input."""
        shown = self._input_widgets[kind]
        for w in {w for ws in self._input_widgets.values() for w in ws}:
            w.setVisible(w in shown)
        if kind != "midi":
            self._close_port()
        if kind != "mic":
            self.stop_listening()
        self.midi_label.setText("")
        self.midi_label.setToolTip("")
        if kind == "mic":
            self.refresh_audio_inputs()
        elif kind == "screen":
            self.midi_label.setText(SCREEN_HINT)
        elif not initial:  # at start-up the window lists the ports once the library is open
            self.refresh_ports()

    def refresh_inputs(self) -> None:
        """The Refresh button: list the chosen kind's devices again."""
        if self.input_kind == "mic":
            self.refresh_audio_inputs()
        else:
            self.refresh_ports()

    # --- MIDI input -----------------------------------------------------------------------
    def refresh_ports(self) -> None:
        """List the MIDI inputs and reopen the remembered one (only while the MIDI keyboard
        is the chosen input)."""
        from ..live.midi_input import MidiError, list_input_ports

        if self.input_kind != "midi":
            return
        current = self.port_combo.currentText()
        self.port_combo.clear()
        self.port_combo.addItem(NO_PORT)
        try:
            api, ports = list_input_ports()
        except MidiError as exc:
            self.port_combo.setEnabled(False)
            # one short line in the tool bar; the details (which systems, why) on hover
            self.midi_label.setText("No MIDI system here: play the on-screen piano or your "
                                    "computer keyboard.")
            self.midi_label.setToolTip(f"{exc}. On Linux, MIDI keyboards need ALSA "
                                       "(/dev/snd/seq, the snd-seq module) or a JACK server.")
            return
        self.port_combo.setEnabled(True)
        self.port_combo.addItems(ports)
        want = current if current != NO_PORT else self.main.settings.value("midi/port", "")
        if not ports:
            self.midi_label.setText(f"{api}: no MIDI inputs connected.")
        if want and want in ports:
            self.port_combo.setCurrentText(want)
            if self.midi is None or self.midi.port_name != want:
                self._open_port(want)

    def _close_port(self) -> None:
        if self.midi is not None:
            self.midi.close()
            self.midi = None
            if self.monitor is not None:
                self.monitor.all_notes_off()  # its note-offs will not come now

    def _port_chosen(self, _index: int) -> None:
        name = self.port_combo.currentText()
        self._close_port()
        if name == NO_PORT:
            self.main.settings.setValue("midi/port", "")
            self.midi_label.setText("")
            return
        self.main.settings.setValue("midi/port", name)
        self._open_port(name)

    def _open_port(self, name: str) -> None:
        from ..live.midi_input import MidiError, MidiInput

        def on_note(t, pitch, vel):
            monitor = self.monitor  # read once: the GUI thread may switch it off
            if monitor is not None:
                monitor.note_on(pitch, vel)  # velocity 0 is its note-off
            if vel > 0:
                self.noteSeen.emit(int(pitch))
                if self.session is not None:
                    self.session.feed_note(t, pitch, vel)

        midi = MidiInput(on_note, on_state=self.portState.emit)
        try:
            actual = midi.open(name)
        except MidiError as exc:
            self.midi_label.setText(str(exc))
            return
        self.midi = midi
        self.midi_label.setText(f"Listening to {actual}")

    # --- microphone -----------------------------------------------------------------------
    def refresh_audio_inputs(self) -> Job | None:
        """List the audio inputs in a worker (loading PortAudio probes the sound system)."""
        if self._audio_job is not None and self._audio_job.running:
            return self._audio_job
        self.midi_label.setText("Looking for audio inputs…")
        if self.listener is None:
            self.listen_btn.setEnabled(False)

        def run(_progress, _cancel):
            from ..audio.microphone import list_inputs

            return list_inputs()

        job = Job(run, "audio inputs")
        job.signals.done.connect(self._audio_inputs_listed)
        job.signals.failed.connect(self._no_audio_input)
        self._audio_job = job
        return job.start()

    def _audio_inputs_listed(self, inputs: list[dict]) -> None:
        if self.closed or self.listener is not None:
            return  # the device in use stays listed as it is
        want = self.audio_combo.currentData() or self.main.settings.value("audio/device", "")
        self.audio_combo.clear()
        if not inputs:
            self._no_audio_input("")
            return
        for d in inputs:
            self.audio_combo.addItem(f"{d['name']} ({d['host_api']})", d["name"])
        names = [d["name"] for d in inputs]
        default = next((d["name"] for d in inputs if d["default"]), names[0])
        self.audio_combo.setCurrentIndex(names.index(want if want in names else default))
        self.listen_btn.setEnabled(True)
        if self.input_kind == "mic":
            self.midi_label.setText("Choose the microphone, then Listen and play.")

    def _no_audio_input(self, reason: str) -> None:
        """No input, or no audio system (``reason``): one message; the keyboards work."""
        self.audio_combo.clear()
        self.listen_btn.setEnabled(False)
        if self.input_kind == "mic":
            what = f"{reason[:1].upper()}{reason[1:]}" if reason else "No microphone found"
            self.midi_label.setText(f"{what}: connect one and press Refresh, or play a MIDI "
                                    "keyboard or the on-screen piano.")

    def toggle_listening(self) -> Job | None:
        if self.listener is not None:
            self.stop_listening()
            return None
        return self.start_listening()

    def start_listening(self) -> Job | None:
        """Open the chosen audio input in a worker, then identify what it hears."""
        lib = self.main.library
        if lib is None or not lib.stats()["ok"]:
            self.status.setText("The library is empty: add scores on the Library tab first.")
            return None
        device = self.audio_combo.currentData()
        self.main.settings.setValue("audio/device", device or "")
        listener = MicListener(lib, device, on_update=self.updated.emit,
                               on_frame=lambda o, p: self.frameClosed.emit(float(o), list(p)),
                               on_note=self.noteSeen.emit,  # lit only: a monitor would feed back
                               any_key=self.any_key_box.isChecked())
        self.listen_btn.setEnabled(False)
        self.audio_combo.setEnabled(False)
        self.midi_label.setText(f"Opening {device or 'the default input'}…")
        # the handlers know their opening by a ticket, not by the listener: a Job lives on
        # after its run, and so would a listener its handlers held (with its resampler)
        ticket = self._opening = next(self._tickets)
        job = Job(lambda _progress, _cancel: listener.start(), "microphone")
        job.signals.done.connect(lambda started: self._listening(ticket, started))
        job.signals.failed.connect(lambda m: self._listen_failed(ticket, m))
        return job.start()

    def _listening(self, ticket: int, listener: MicListener) -> None:
        if ticket != self._opening or self.closed:  # stopped (or closed) while opening
            listener.stop()
            return
        self._opening = 0
        self.listener = listener
        self.listen_btn.setText(STOP_LISTENING)
        self.listen_btn.setEnabled(True)
        self.matrix.clear_frames()
        self.results.show_results([])
        self.midi_label.setText(f"Listening at {listener.mic.samplerate / 1000:g} kHz")
        self.midi_label.setToolTip(f"Audio input: {listener.device or 'the default'}")
        self.status.setText("Listening: play.")
        self._meter_timer.start(METER_MS)

    def _listen_failed(self, ticket: int, message: str) -> None:
        if ticket != self._opening:
            return
        self._opening = 0
        self.listen_btn.setEnabled(True)
        self.audio_combo.setEnabled(True)
        self.midi_label.setText(f"Cannot listen: {message}")

    def stop_listening(self, wait_s: float = 0.0) -> None:
        """Stop the microphone (its final update follows from the session)."""
        listener, self.listener, self._opening = self.listener, None, 0
        self._meter_timer.stop()
        self.level_meter.idle()
        self.listen_btn.setText(LISTEN)
        self.listen_btn.setEnabled(self.audio_combo.count() > 0)
        self.audio_combo.setEnabled(True)
        if listener is not None:
            listener.stop(wait_s)
            self.midi_label.setText("Stopped listening.")

    def _mic_tick(self) -> None:
        """The meter's timer: show the level, notice silence and an input that ended."""
        listener = self.listener
        if listener is None:
            return
        self.level_meter.show_level(*listener.mic.take_level())
        if not listener.running:
            self.stop_listening()
            self.midi_label.setText(f"The audio input stopped: {listener.error}"
                                    if listener.error else "The audio input ended.")
        elif listener.quiet_seconds() >= NO_NOTES_S:
            self.status.setText("No notes heard yet: play, or move closer to the microphone "
                                "(see its level).")

    # --- computer keyboard ----------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:
        try:
            kind = event.type()
            if kind not in (QEvent.KeyPress, QEvent.KeyRelease) or not self.isVisible():
                return False
            focus = QApplication.focusWidget()
            if focus is not None and focus.window() is not self.main:
                return False  # a dialog
            if isinstance(focus, (QLineEdit, QAbstractSpinBox)) or (
                    isinstance(focus, QComboBox) and focus.isEditable()):
                return False
            if event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier):
                return False
            if kind == QEvent.KeyRelease:
                return self.key_up(event.text().upper(), event.isAutoRepeat())
            return self.key(event.text().upper(), event.isAutoRepeat())
        except Exception:  # noqa: BLE001 - an app-wide filter must never break input
            return False

    def key(self, char: str, autorepeat: bool = False) -> bool:
        """Handle one typed character; True if it was a piano key."""
        if char == "Z":
            self.octave = max(24, self.octave - 12)
        elif char == "X":
            self.octave = min(96, self.octave + 12)
        elif char in KEY_LAYOUT:
            if not autorepeat:
                self._keys_down[char] = self.octave + KEY_LAYOUT[char]
                self.piano.press(self._keys_down[char])
        else:
            return False
        return True

    def key_up(self, char: str, autorepeat: bool = False) -> bool:
        """A typed key let go; True if it was a piano key (its note stops sounding)."""
        if char not in KEY_LAYOUT:
            return False
        pitch = None if autorepeat else self._keys_down.pop(char, None)
        if pitch is not None:
            self.piano.release(pitch)
        return True
