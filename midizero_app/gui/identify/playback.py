"""Sound on the Identify tab: "Hear what I play" (a piano sounding every played note) and
"Play match" (audition a result's piece from its matched position).

Both open their audio device in a worker; without one, the tab says so in one line and
everything else works.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton

from ..workers import Job

PLAY, STOP = "▶ Play match", "■ Stop"


class HearWhatIPlay(QObject):
    """The "Hear what I play" box and its :class:`~midizero_app.audio.synth.Monitor`
    (remembered in the settings as ``sound/monitor``)."""

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.monitor = None  # audio.synth.Monitor while the box is ticked and it opened
        self.box = QCheckBox("Hear what I play")
        self.box.setToolTip("Sound every note you play with a piano (for silent MIDI "
                            "controllers, the on-screen and the computer keyboard)")
        self.box.toggled.connect(self.set_on)

    def restore(self) -> None:
        """Tick the box if it was ticked last time (opens the sound)."""
        if str(self.tab.main.settings.value("sound/monitor", "false")).lower() in ("true", "1"):
            self.box.setChecked(True)

    def set_on(self, on: bool) -> Job | None:
        """Switch "Hear what I play" (remembered); the synth and stream open in a worker."""
        self.tab.main.settings.setValue("sound/monitor", bool(on))
        old, self.monitor = self.monitor, None
        if old is not None:
            old.close()
        if not on:
            return None

        def build(_progress, _cancel):
            from ...audio.synth import Monitor

            return Monitor()

        job = Job(build, "monitor")
        job.signals.done.connect(self._ready)
        job.signals.failed.connect(self._unavailable)
        return job.start()

    def _ready(self, monitor) -> None:
        if self.tab.closed or not self.box.isChecked() or self.monitor is not None:
            monitor.close()  # switched off (or closed) while it opened
            return
        self.monitor = monitor

    def _unavailable(self, reason: str) -> None:
        self.box.blockSignals(True)  # unticked, but still wanted next time
        self.box.setChecked(False)
        self.box.blockSignals(False)
        self.tab.message.emit(f"No sound: {reason}. Everything else works.")

    def note_on(self, pitch: int, velocity: int = 100) -> None:
        monitor = self.monitor  # read once: the GUI thread may switch it off
        if monitor is not None:
            monitor.note_on(int(pitch), velocity)  # velocity 0 is its note-off

    def note_off(self, pitch: int) -> None:
        if self.monitor is not None:
            self.monitor.note_off(int(pitch))

    def all_notes_off(self) -> None:
        if self.monitor is not None:
            self.monitor.all_notes_off()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = None


class Audition(QObject):
    """The "Play match" button: plays result ``row``'s library piece from where it matched
    (:class:`~midizero_app.audio.synth.Player`, made on first use), with its position."""

    position = Signal(float)  # seconds in the auditioned piece (from the audio thread)

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.player = None   # audio.synth.Player, made on the first "Play match"
        self.playing: str | None = None  # the title being auditioned
        self.button = QPushButton(PLAY)
        self.button.setToolTip("Hear the selected piece from the matched position "
                               "(or double-click a result)")
        self.label = QLabel("")
        self.label.setStyleSheet("color: #555;")
        self.button.clicked.connect(self.toggle)
        self.position.connect(self._show_position)
        self._timer = QTimer(self)  # notices the end of an audition
        self._timer.timeout.connect(self._check_playing)

    def toggle(self) -> Job | None:
        if self.player is not None and self.player.is_playing:
            self.stop()
            return None
        rows = {i.row() for i in self.tab.results.selectedIndexes()}
        return self.play(min(rows) if rows else 0)

    def play(self, row: int) -> Job | None:
        """Play result ``row``'s library piece from its matched position, in a worker."""
        lib = self.tab.main.library
        results = self.tab.results.results
        if lib is None or not 0 <= row < len(results) \
                or not self.button.isEnabled():  # disabled: an audition is starting
            return None
        r = results[row]
        pos = (r.get("positions") or [{}])[0]
        self.stop()
        self.button.setEnabled(False)
        player = self.player

        def run(_progress, _cancel):
            from ...audio.synth import Player, frames_to_notes

            frames = lib.frames_of(r["piece_id"])
            frame = min(int(pos.get("frame", 0)), len(frames) - 1)
            start = float(frames.onset[frame]) if frame >= 0 else 0.0
            p = player or Player()
            p.play(frames_to_notes(frames), start, on_position=self.position.emit)
            return p

        job = Job(run, "play")
        job.signals.done.connect(lambda p: self._started(p, r.get("title") or "?"))
        job.signals.failed.connect(lambda m: self.tab.message.emit(f"Cannot play: {m}"))
        job.signals.ended.connect(lambda: self.button.setEnabled(True))
        return job.start()

    def _started(self, player, title: str) -> None:
        self.player = player
        if self.tab.closed:
            player.close()
            return
        self.playing = title
        self.button.setText(STOP)
        self._timer.start(200)

    def _show_position(self, seconds: float) -> None:
        if self.playing is not None:
            self.label.setText(f"{self.playing} — {seconds:.1f} s")

    def _check_playing(self) -> None:
        if self.player is None or not self.player.is_playing:
            self.stop()

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()
        self._timer.stop()
        self.playing = None
        self.button.setText(PLAY)
        self.label.setText("")

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
        self.player = None
