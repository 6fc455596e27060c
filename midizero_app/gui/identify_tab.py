"""Identify tab: the input (a MIDI keyboard, a microphone, the on-screen and computer
keyboards, a dropped file), the live pitch matrix and the ranked results, sound, and the
score view that follows the player through the identified (or chosen) piece.

The tab owns the follow session (identification, then following: DESIGN §5.3) and the
views; each input and the sound are parts of their own (:mod:`midizero_app.gui.identify`);
the score view is :mod:`.score_view`, the alignment and tempo curve :mod:`.tempo_curve`."""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QStandardPaths, Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from .identify.dropped_file import FileQuery
from .identify.keys import SCREEN_HINT, KeyboardInput
from .identify.microphone import LISTEN, STOP_LISTENING, MicrophoneInput
from .identify.midi_keyboard import NO_PORT, MidiKeyboardInput
from .identify.playback import PLAY, STOP, Audition, HearWhatIPlay
from .engrave_ahead import EngraveAhead
from .score_view import ScoreView
from .tempo_curve import TempoCurveView
from .widgets import KEY_HELP, MatchView, PitchMatrixView, ResultsTable
from .workers import Job

__all__ = ["IdentifyTab", "INPUTS", "LISTEN", "NO_PORT", "PLAY", "STOP", "STOP_LISTENING"]

INPUTS = (("midi", "MIDI keyboard"), ("mic", "Microphone"), ("screen", "On-screen keyboard"))
CURSOR_MS = 33  # the score cursor moves between notes at ~30 Hz


def engraved_cache_dir(settings) -> str:
    """The folder of engraved scores (``score/cache_dir`` in the settings, else the
    user's cache folder): a score seen before shows its first page at once."""
    from pathlib import Path

    folder = settings.value("score/cache_dir", "") if settings is not None else ""
    if not folder:
        folder = str(Path(QStandardPaths.writableLocation(QStandardPaths.CacheLocation))
                     / "engraved")
    return str(folder)


class IdentifyTab(QWidget):
    """Everything played (MIDI port, mouse, computer keyboard) goes to one
    :class:`~midizero_app.live.follow.FollowSession` (the live search, then following); a
    microphone, while it listens, feeds a session of its own (audio clock, transcription τ:
    :class:`~.identify.microphone.MicListener`) that updates the same pitch matrix,
    results and score view.

    Once a piece is identified (or chosen with :meth:`practise`), :attr:`score` shows it
    and its cursor follows the updates; :attr:`tempo` keeps the alignment and the tempo
    curve. A click on a measure tells the follower where the player is.

    Parts: :attr:`midi_input`, :attr:`mic`, :attr:`keys` (on-screen and computer
    keyboard), :attr:`files` (a dropped query file), :attr:`hear` ("Hear what I play")
    and :attr:`audition` ("Play match").
    """

    updated = Signal(dict)        # marshalled from the session thread
    followed = Signal(dict)       # a follow update, from the session thread
    frameClosed = Signal(float, list)
    noteSeen = Signal(int)        # a note (from the MIDI or audio thread) to light on the piano
    message = Signal(str)

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.main = window
        self.session = None
        self.starting = False
        self.closed = False
        self.last_update: dict | None = None  # the latest live update
        self.file_result: dict | None = None  # the latest dropped-file search
        self.query_roll: np.ndarray | None = None  # a dropped file's frames (F, 88)
        self.updates = 0
        self.follows = 0
        self.identified_at: float | None = None  # perf_counter of the latest identification
        self.last_follow: dict | None = None  # the latest follow update
        self._practise_id: int | None = None  # a piece chosen before the session was ready
        self._room_made = False  # the score view has been given its height once
        self._first_start_done = self._deferred = self._restart_pending = False
        self._start_job: Job | None = None
        # the one line about the chosen input (the parts write to it)
        self.midi_label = QLabel("")
        self.midi_label.setWordWrap(True)
        self.midi_label.setStyleSheet("color: #555;")
        self.hear = HearWhatIPlay(self)
        self.audition = Audition(self)
        self.midi_input = MidiKeyboardInput(self)
        self.mic = MicrophoneInput(self)
        self.files = FileQuery(self)
        lay = QVBoxLayout(self)
        lay.addLayout(self._tool_bar())
        lay.addWidget(self._views(), 1)
        self.keys = KeyboardInput(self)
        lay.addWidget(self.keys.piano)
        help_ = QLabel("Play a MIDI keyboard or into a microphone, click the keys above, or "
                       "type: " + KEY_HELP[19:] + " Drop a MIDI file here to search it.")
        help_.setWordWrap(True)
        help_.setStyleSheet("color: #555;")
        lay.addWidget(help_)
        self._connect()
        self.hear.restore()
        remembered = self.input_combo.findData(self.main.settings.value("input/source", "midi"))
        self.input_combo.setCurrentIndex(max(0, remembered))
        self.input_combo.currentIndexChanged.connect(self._input_chosen)
        self._show_input(self.input_kind, initial=True)

    def _tool_bar(self) -> QHBoxLayout:
        """Input: [kind] [its device and controls] [one line] [Hear] [Any key] [Reset]."""
        top = QHBoxLayout()
        top.addWidget(QLabel("Input:"))
        self.input_combo = QComboBox()
        for key, label in INPUTS:
            self.input_combo.addItem(label, key)
        self.input_combo.setToolTip("What you play into: a MIDI keyboard, a microphone (an "
                                    "acoustic instrument) or the on-screen keyboard only")
        top.addWidget(self.input_combo)
        self.refresh_btn = QPushButton("Refresh")
        for w in (self.port_combo, self.audio_combo, self.refresh_btn, self.listen_btn,
                  self.level_meter):
            top.addWidget(w)
        self._input_widgets = {  # the controls shown for each input
            "midi": (self.port_combo, self.refresh_btn),
            "mic": (self.audio_combo, self.refresh_btn, self.listen_btn, self.level_meter),
            "screen": ()}
        top.addWidget(self.midi_label, 1)
        top.addWidget(self.hear_box)
        self.any_key_box = QCheckBox("Any key")
        self.any_key_box.setToolTip("Find a tune played one note at a time in any key "
                                    "(untick to keep to the score's key); for a dropped file, "
                                    "also try every key of the full texture")
        self.any_key_box.setChecked(
            str(self.main.settings.value("search/any_key", "true")).lower() in ("true", "1"))
        top.addWidget(self.any_key_box)
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("End this query and start a new search "
                                  "(also happens after 3 s of silence)")
        top.addWidget(self.reset_btn)
        return top

    def _views(self) -> QSplitter:
        """The pitch matrix | status, results, Play match and the matched windows."""
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
        play_row.addWidget(self.play_btn)
        play_row.addWidget(self.play_label, 1)
        rl.addLayout(play_row)
        self.match = MatchView()
        self.match.setMinimumHeight(100)  # gives way to the score view while following
        self.match.setMaximumHeight(190)
        rl.addWidget(self.match)
        split.addWidget(right)
        split.setSizes([420, 580])
        below = QTabWidget()
        cache_dir = engraved_cache_dir(self.main.settings)
        self.score = ScoreView(self.main.settings, cache_dir)
        self.ahead = EngraveAhead(cache_dir, self)
        self.tempo = TempoCurveView()
        below.addTab(self.score, "Score")
        below.addTab(self.tempo, "Tempo and alignment")
        self.below = below
        whole = QSplitter(Qt.Vertical)
        whole.addWidget(split)
        whole.addWidget(below)
        whole.setCollapsible(0, False)
        whole.setSizes([420, 180])
        self.split = whole
        self.score.shown.connect(self._make_room)
        return whole

    def _make_room(self, _kind: str) -> None:
        """The first score shown takes most of the height (once: the user's own split is
        kept afterwards)."""
        if self._room_made:
            return
        self._room_made = True
        total = sum(self.split.sizes())
        self.split.setSizes([int(total * 0.3), total - int(total * 0.3)])

    def _connect(self) -> None:
        self.noteSeen.connect(self.piano.light)
        self.updated.connect(self._on_update)
        self.followed.connect(self._on_follow)
        self.score.placed.connect(self._placed)
        self.cursor_timer = QTimer(self)
        self.cursor_timer.timeout.connect(self._move_cursor)
        self.cursor_timer.start(CURSOR_MS)
        self.frameClosed.connect(self._on_frame)
        self.results.itemSelectionChanged.connect(self.show_match)
        self.reset_btn.clicked.connect(self.reset)
        self.refresh_btn.clicked.connect(self.refresh_inputs)
        self.any_key_box.toggled.connect(self._any_key_changed)
        self.results.cellDoubleClicked.connect(lambda row, _col: self.audition.play(row))

    # --- the parts' widgets and state, by their names on the tab -------------------------
    port_combo = property(lambda self: self.midi_input.port_combo)
    audio_combo = property(lambda self: self.mic.audio_combo)
    listen_btn = property(lambda self: self.mic.listen_btn)
    level_meter = property(lambda self: self.mic.level_meter)
    hear_box = property(lambda self: self.hear.box)
    play_btn = property(lambda self: self.audition.button)
    play_label = property(lambda self: self.audition.label)
    piano = property(lambda self: self.keys.piano)
    midi = property(lambda self: self.midi_input.midi, doc="the open MIDI input, or None")
    listener = property(lambda self: self.mic.listener, doc="the listening microphone, or None")
    monitor = property(lambda self: self.hear.monitor, doc="the Hear-what-I-play synth, or None")
    player = property(lambda self: self.audition.player, doc="the audition player, or None")

    def refresh_ports(self) -> None:
        self.midi_input.refresh()

    def search_file(self, path: str) -> Job | None:
        """Search a query file (score, MIDI or recording) on the library, in a worker."""
        return self.files.search(path)

    def play(self, pitch: int, t: float | None = None) -> None:
        """A note from the mouse or computer keyboard (or a test)."""
        self.keys.play(pitch, t)

    def play_chord(self, pitches) -> None:
        """Press several keys at once (one frame)."""
        self.keys.play_chord(pitches)

    def toggle_play(self) -> Job | None:
        return self.audition.toggle()

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
        if self._deferred:
            return None  # the first start is about to run (below)
        if not self._first_start_done:
            # The very first start waits until the window has painted the opened library:
            # loading the model at the same moment competes with that paint for the GIL
            # (one 70-120 ms stall at start-up, benchmarks/stall_bench.py; 40-60 ms so).
            self._first_start_done = self._deferred = self.starting = True

            def go():
                self._deferred = self.starting = False
                self.start_session(restart)
            QTimer.singleShot(150, go)
            return None
        pending = self._start_job
        if self.starting and pending is not None and pending.running:
            # one start at a time (first run: indexing ended + status update); a ``restart``
            # (a changed setting) builds again once the running start has finished
            self._restart_pending = self._restart_pending or restart
            return pending
        old, self.session = self.session, None
        if old is not None:
            old.stop(timeout=5)
        self.status.setText("Loading the model and index…")
        self.starting = True

        def build(_progress, _cancel):
            from ..live.follow import FollowSession
            from ..notation import shared_worker

            shared_worker().start()  # the engraver ready before the first piece is found
            return FollowSession(lib, top=10, on_update=self.updated.emit,
                                 on_follow=self.followed.emit,
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
        if self._restart_pending:
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
        self.ahead.start(self.main.library)
        if self._practise_id is not None:
            self.practise(self._practise_id)

    def stop(self) -> None:
        """Close every input, the sound and the live session (the window is closing)."""
        self.cursor_timer.stop()
        self.ahead.stop()
        self.score.shut()
        self.keys.close()
        self.closed = True
        self.mic.stop(wait_s=10)  # its session searches the library closing next
        self.hear.close()
        self.audition.close()
        self.midi_input.close()
        if self.session is not None:
            self.session.stop(timeout=5)
            self.session = None

    def drop_session(self) -> None:
        """Stop the live search and the microphone (the library is about to close)."""
        self.ahead.stop()
        self.mic.stop(wait_s=10)
        if self.session is not None:
            self.session.stop(timeout=5)
            self.session = None
        self.status.setText("The library is being checked…")

    def reset(self) -> None:
        self.mic.reset()
        if self.session is not None:
            self.session.reset()
        self.matrix.clear_frames()
        self.results.show_results([])
        self.status.setText("New search: play something.")

    def _on_frame(self, onset: float, pitches: list) -> None:
        self.ahead.last_activity = time.perf_counter()  # playing: no engraving ahead
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
            if self.score.piece is None and res[0].get("path") and not self.closed:
                # engraving starts with the first sure answer, before following begins
                self.score.open_piece({"id": res[0].get("piece_id"), "path": res[0]["path"],
                                       "title": res[0].get("title")}, self.main.library)
        self.status.setText(text)

    # --- following ----------------------------------------------------------------------
    def following(self):
        """The session that follows now: the microphone's while it listens, else the tab's."""
        listener = self.mic.listener
        if listener is not None and getattr(listener, "session", None) is not None:
            return listener.session
        return self.session

    def _on_follow(self, update: dict) -> None:
        if self.closed:
            return
        self.last_follow = update
        self.follows += 1
        pid = update.get("piece_id")
        if pid is None:
            return
        shown = self.score.piece
        row = update
        if update.get("measure") is None and update.get("score_seconds") is not None \
                and shown is not None and shown.get("id") == pid:
            place = self.score.measure_at_seconds(update["score_seconds"])
            if place is not None:  # frames without measures (MIDI): the notation's
                row = dict(update, measure=place[0], beat=place[1])
        self.tempo.add(row)
        if update.get("identified") or shown is None or shown.get("id") != pid:
            if shown is None or shown.get("id") != pid:
                self.score.open_piece({"id": pid, "path": update["piece"],
                                       "title": update.get("title")}, self.main.library)
            self.identified_at = time.perf_counter()
            self.message.emit(f"Following {update.get('title') or update['piece']}")
        self.score.show_position(update, played=True)

    def _move_cursor(self) -> None:
        """Between notes, the cursor moves on at the player's tempo (~30 Hz)."""
        if self.score.kind is None or not self.isVisible():
            return
        follow = self.last_follow
        if follow is None or follow.get("score_seconds") is None:
            return
        session = self.following()
        piece = getattr(session, "piece", None)
        shown = self.score.piece
        if piece is None or shown is None or piece.get("id") != shown.get("id") \
                or not hasattr(session, "position"):
            return
        listener = self.mic.listener
        if listener is not None and session is getattr(listener, "session", None):
            # the microphone's session runs on a clock that moves a step at a time and a
            # step behind: the cursor reads the audio heard by now, as the notes' onsets
            # count it (the position runs on past the last note up to the stream's delay)
            self.score.show_position(session.position(listener.stream.audio_now()))
        else:
            self.score.show_position(session.position())

    def _placed(self, score_seconds: float) -> None:
        """A click on the score: the follower restarts there."""
        session = self.following()
        if session is not None and hasattr(session, "place"):
            session.place(score_seconds)
        self.status.setText(f"Following from {score_seconds:.1f} s in the score: play on.")

    def practise(self, piece_id: int) -> Job | None:
        """Open a library piece in the score view, ready to follow it from the first note
        (no identification needed)."""
        lib = self.main.library
        if lib is None:
            return None
        piece = lib.piece(piece_id)
        if piece is None:
            return None
        self.score.open_piece(piece, lib)
        self.below.setCurrentWidget(self.score)
        title = piece.get("title") or piece["path"]
        session = self.following()
        if session is None:
            self._practise_id = piece_id
            self.status.setText(f"Practise {title}: the search engine is starting…")
            if not self.starting:
                self.start_session()
            return None
        self._practise_id = None
        self.status.setText(f"Practise {title}: play from anywhere; click a measure to say "
                            "where you are.")
        job = Job(lambda _progress, _cancel: session.follow(piece_id), "practise")
        job.signals.failed.connect(lambda m: self.status.setText(f"Cannot follow {title}: {m}"))
        return job.start()

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

    # --- which input ------------------------------------------------------------------
    def _any_key_changed(self, on: bool) -> None:
        self.main.settings.setValue("search/any_key", "true" if on else "false")
        if self.session is not None or self.starting:
            self.start_session(restart=True)  # the live session takes the setting when made

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
            self.midi_input.close()
        if kind != "mic":
            self.mic.stop()
        self.midi_label.setText("")
        self.midi_label.setToolTip("")
        if kind == "mic":
            self.mic.refresh()
        elif kind == "screen":
            self.midi_label.setText(SCREEN_HINT)
        elif not initial:  # at start-up the window lists the ports once the library is open
            self.refresh_ports()

    def refresh_inputs(self) -> None:
        """The Refresh button: list the chosen kind's devices again."""
        if self.input_kind == "mic":
            self.mic.refresh()
        else:
            self.refresh_ports()
