"""The MIDI keyboard input of the Identify tab: the port list, opening the chosen port
(remembered as ``midi/port``) and its notes into the live session."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox

NO_PORT = "(none: on-screen keyboard)"


class MidiKeyboardInput(QObject):
    """A MIDI input port feeding the tab's live session (and the "Hear what I play" piano).

    Notes arrive on the MIDI thread: the pitch to light goes through the tab's
    ``noteSeen`` signal, the note itself straight to the session (thread-safe).
    """

    state = Signal(str, str)  # (state, port name) from the MIDI thread

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.midi = None  # live.midi_input.MidiInput while a port is open
        self.port_combo = QComboBox()
        self.port_combo.setMinimumWidth(260)
        self.port_combo.activated.connect(self._port_chosen)
        self.state.connect(lambda s, n: tab.midi_label.setText(f"{n}: {s}"))

    def refresh(self) -> None:
        """List the MIDI inputs and reopen the remembered one (only while the MIDI keyboard
        is the chosen input)."""
        from ...live.midi_input import MidiError, list_input_ports

        tab = self.tab
        if tab.input_kind != "midi":
            return
        current = self.port_combo.currentText()
        self.port_combo.clear()
        self.port_combo.addItem(NO_PORT)
        try:
            api, ports = list_input_ports()
        except MidiError as exc:
            self.port_combo.setEnabled(False)
            # one short line in the tool bar; the details (which systems, why) on hover
            tab.midi_label.setText("No MIDI system here: play the on-screen piano or your "
                                   "computer keyboard.")
            tab.midi_label.setToolTip(f"{exc}. On Linux, MIDI keyboards need ALSA "
                                      "(/dev/snd/seq, the snd-seq module) or a JACK server.")
            return
        self.port_combo.setEnabled(True)
        self.port_combo.addItems(ports)
        want = current if current != NO_PORT else tab.main.settings.value("midi/port", "")
        if not ports:
            tab.midi_label.setText(f"{api}: no MIDI inputs connected.")
        if want and want in ports:
            self.port_combo.setCurrentText(want)
            if self.midi is None or self.midi.port_name != want:
                self.open(want)

    def close(self) -> None:
        if self.midi is not None:
            self.midi.close()
            self.midi = None
            self.tab.hear.all_notes_off()  # its note-offs will not come now

    def _port_chosen(self, _index: int) -> None:
        name = self.port_combo.currentText()
        self.close()
        if name == NO_PORT:
            self.tab.main.settings.setValue("midi/port", "")
            self.tab.midi_label.setText("")
            return
        self.tab.main.settings.setValue("midi/port", name)
        self.open(name)

    def open(self, name: str) -> None:
        from ...live.midi_input import MidiError, MidiInput

        tab = self.tab

        def on_note(t, pitch, vel):
            tab.hear.note_on(pitch, vel)  # velocity 0 is its note-off
            if vel > 0:
                tab.noteSeen.emit(int(pitch))
                session = tab.session
                if session is not None:
                    session.feed_note(t, pitch, vel)

        midi = MidiInput(on_note, on_state=self.state.emit)
        try:
            actual = midi.open(name)
        except MidiError as exc:
            tab.midi_label.setText(str(exc))
            return
        self.midi = midi
        tab.midi_label.setText(f"Listening to {actual}")
