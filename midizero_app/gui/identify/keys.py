"""The on-screen piano and the computer keyboard on the Identify tab: notes played with the
mouse or typed (A S D F … white keys, W E T … black keys, Z / X octave) go to the tab's
live session and the "Hear what I play" piano."""
from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit

from ..widgets import KEY_LAYOUT, PianoKeyboard

SCREEN_HINT = "Play the on-screen piano below or your computer keyboard."
FADE_MS = 80  # how often the lit keys fade


class KeyboardInput(QObject):
    """The on-screen :class:`PianoKeyboard` and an application-wide key filter that plays
    it from the computer keyboard while the tab is visible (never in a text field, a
    dialog or with Ctrl/Alt/Meta held)."""

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.octave = 60
        self.keys_down: dict[str, int] = {}  # computer key → the pitch it pressed
        self.piano = PianoKeyboard()
        self.piano.noteOn.connect(self.play)
        self.piano.noteOff.connect(self.release)
        self._fade = QTimer(self)
        self._fade.timeout.connect(self.piano.fade)
        self._fade.start(FADE_MS)
        QApplication.instance().installEventFilter(self)

    def close(self) -> None:
        QApplication.instance().removeEventFilter(self)

    # --- notes --------------------------------------------------------------------------
    def play(self, pitch: int, t: float | None = None) -> None:
        """A note from the mouse or computer keyboard (or a test)."""
        tab = self.tab
        tab.hear.note_on(int(pitch), 100)
        if tab.mic.listener is not None:  # its session runs on the audio clock, not this one
            tab.status.setText("Listening to the microphone: stop it to search what you "
                               "play on the keyboard.")
            return
        if tab.session is None:
            tab.status.setText("The search engine is still starting; try again in a moment.")
            return
        tab.session.feed_note(time.perf_counter() if t is None else t, int(pitch))

    def release(self, pitch: int) -> None:
        """A key of the mouse or computer keyboard let go (only the sound cares)."""
        self.tab.hear.note_off(int(pitch))

    def play_chord(self, pitches) -> None:
        """Press several keys at once (one frame)."""
        t = time.perf_counter()
        for p in pitches:
            self.piano.light(p)
            self.play(p, t)

    # --- computer keyboard ----------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:
        try:
            kind = event.type()
            if kind not in (QEvent.KeyPress, QEvent.KeyRelease) or not self.tab.isVisible():
                return False
            focus = QApplication.focusWidget()
            if focus is not None and focus.window() is not self.tab.main:
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
                self.keys_down[char] = self.octave + KEY_LAYOUT[char]
                self.piano.press(self.keys_down[char])
        else:
            return False
        return True

    def key_up(self, char: str, autorepeat: bool = False) -> bool:
        """A typed key let go; True if it was a piano key (its note stops sounding)."""
        if char not in KEY_LAYOUT:
            return False
        pitch = None if autorepeat else self.keys_down.pop(char, None)
        if pitch is not None:
            self.piano.release(pitch)
        return True
