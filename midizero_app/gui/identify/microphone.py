"""The microphone input of the Identify tab: the audio input list, Listen / Stop, the level
meter, and :class:`MicListener` (microphone → streaming transcription → a live session of
its own)."""
from __future__ import annotations

import itertools
import logging
import threading
from typing import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QComboBox, QPushButton

from ...audio.microphone import Microphone, run_stream
from ..widgets import LevelMeter
from ..workers import Job, readable

log = logging.getLogger(__name__)

LISTEN, STOP_LISTENING = "● Listen", "■ Stop listening"
NO_NOTES_S = 3.0  # audio seconds without a transcribed note before the status says so
METER_MS = 50     # the level meter's refresh: 20 per second, however many audio blocks


class MicListener:
    """Microphone → streaming transcription → a follow session of its own
    (:class:`~midizero_app.live.follow.FollowSession`: the live search, then following).

    The PortAudio callback only queues blocks (:class:`Microphone`); the
    ``mic-transcriber`` thread runs the :class:`~midizero_app.audio.stream.
    StreamingTranscriber`; the search runs on the session's thread, on the audio's clock
    with the transcription τ (as ``midizero listen --mic``). The callbacks are called from
    those threads: emit Qt signals from them.

    Parameters
    ----------
    library : an open Library with pieces.
    device : an input name from ``list_inputs()``, or None for the default input.
    on_update, on_frame : as for :class:`~midizero_app.live.session.LiveSession`.
    on_note : called with each transcribed pitch.
    any_key : as for the live session.
    on_follow : called with each follow update (as for the follow session).
    """

    def __init__(self, library, device: str | None, on_update: Callable[[dict], None],
                 on_frame: Callable[[float, list], None], on_note: Callable[[int], None],
                 any_key: bool = True, on_follow: Callable[[dict], None] | None = None):
        self.library, self.device, self.any_key = library, device, any_key
        self.on_update, self.on_frame, self.on_note = on_update, on_frame, on_note
        self.on_follow = on_follow
        self.notes = 0          # transcribed since the start or the last reset
        self.error: str | None = None  # why the transcriber thread ended, if it failed
        self._quiet_from = 0.0  # audio seconds of the start or the last reset
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.mic = self.stream = self.session = None

    def start(self) -> "MicListener":
        """Load the transcriber, open the input and start listening (call off the GUI
        thread: the first load takes a second). Raises AudioDeviceError/TranscriptionError."""
        from ...audio.stream import StreamingTranscriber
        from ...audio.transcribe import AUDIO_SEARCH, warm_up
        from ...live.follow import FollowSession

        warm_up()
        self.mic = Microphone(self.device)
        try:
            self.stream = StreamingTranscriber(self.mic.samplerate, self._note)
            self.session = FollowSession(
                self.library, top=10, clock=self.stream.clock, lead_s=self.stream.delay_s,
                **AUDIO_SEARCH,
                on_update=self.on_update, on_frame=self.on_frame, on_follow=self.on_follow,
                name=f"mic:{self.device or 'default'}", any_key=self.any_key).start()
            self.mic.start()
        except Exception:
            self.mic.stop()  # closes the stream, started or not
            if self.session is not None:
                self.session.stop(timeout=5)
            raise
        self._thread = threading.Thread(target=self._run, name="mic-transcriber", daemon=True)
        self._thread.start()
        return self

    def _note(self, t: float, pitch: int) -> None:
        self.notes += 1
        self.session.feed_note(t, pitch)
        self.on_note(pitch)

    def _run(self) -> None:
        try:
            run_stream(self.mic, self.stream, self._stop)
        except Exception as exc:  # noqa: BLE001 - reported by the tab, not a traceback
            log.exception("microphone transcription failed")
            self.error = readable(exc)
        finally:
            self.session.stop(timeout=10)

    @property
    def running(self) -> bool:
        """Listening (False once the input ended, failed or was stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def quiet_seconds(self) -> float:
        """Audio seconds without a single note since the start or the last reset (0 once
        a note was heard)."""
        return 0.0 if self.notes else self.stream.clock() - self._quiet_from

    def reset(self) -> None:
        """End the current query (as the keyboard's Reset) and count silence anew."""
        self.session.reset()
        self.notes = 0
        self._quiet_from = self.stream.clock()

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop the input; the thread transcribes what it holds and ends the session (its
        final update follows). ``wait_s``: join it that long (when closing the app)."""
        self._stop.set()
        try:
            self.mic.stop()
        except Exception:  # noqa: BLE001 - a device already gone: nothing left to stop
            log.debug("closing the microphone failed", exc_info=True)
        if wait_s and self._thread is not None:
            self._thread.join(wait_s)


class MicrophoneInput(QObject):
    """The tab's microphone controls; while listening, a :class:`MicListener` updates the
    tab's pitch matrix and results (its session runs on the audio clock, so the keyboards'
    notes do not go to it)."""

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.listener: MicListener | None = None  # while the microphone listens
        self._opening = 0  # the ticket of the listener being opened (0: none)
        self._tickets = itertools.count(1)
        self._list_job: Job | None = None  # the audio inputs being listed
        self.audio_combo = QComboBox()
        self.audio_combo.setMinimumWidth(200)
        self.listen_btn = QPushButton(LISTEN)
        self.listen_btn.setToolTip("Listen through the chosen audio input and identify what "
                                   "it hears")
        self.level_meter = LevelMeter()
        self.audio_combo.activated.connect(
            lambda _i: tab.main.settings.setValue("audio/device", self.audio_combo.currentData()))
        self.listen_btn.clicked.connect(self.toggle)
        self._meter_timer = QTimer(self)
        self._meter_timer.timeout.connect(self._tick)

    def widgets(self) -> tuple:
        return self.audio_combo, self.listen_btn, self.level_meter

    def refresh(self) -> Job | None:
        """List the audio inputs in a worker (loading PortAudio probes the sound system)."""
        if self._list_job is not None and self._list_job.running:
            return self._list_job
        self.tab.midi_label.setText("Looking for audio inputs…")
        if self.listener is None:
            self.listen_btn.setEnabled(False)

        def run(_progress, _cancel):
            from ...audio.microphone import list_inputs

            return list_inputs()

        job = Job(run, "audio inputs")
        job.signals.done.connect(self._listed)
        job.signals.failed.connect(self._no_input)
        self._list_job = job
        return job.start()

    def _listed(self, inputs: list[dict]) -> None:
        if self.tab.closed or self.listener is not None:
            return  # the device in use stays listed as it is
        want = self.audio_combo.currentData() or self.tab.main.settings.value("audio/device", "")
        self.audio_combo.clear()
        if not inputs:
            self._no_input("")
            return
        for d in inputs:
            self.audio_combo.addItem(f"{d['name']} ({d['host_api']})", d["name"])
        names = [d["name"] for d in inputs]
        default = next((d["name"] for d in inputs if d["default"]), names[0])
        self.audio_combo.setCurrentIndex(names.index(want if want in names else default))
        self.listen_btn.setEnabled(True)
        if self.tab.input_kind == "mic":
            self.tab.midi_label.setText("Choose the microphone, then Listen and play.")

    def _no_input(self, reason: str) -> None:
        """No input, or no audio system (``reason``): one message; the keyboards work."""
        self.audio_combo.clear()
        self.listen_btn.setEnabled(False)
        if self.tab.input_kind == "mic":
            what = f"{reason[:1].upper()}{reason[1:]}" if reason else "No microphone found"
            self.tab.midi_label.setText(f"{what}: connect one and press Refresh, or play a "
                                        "MIDI keyboard or the on-screen piano.")

    def toggle(self) -> Job | None:
        if self.listener is not None:
            self.stop()
            return None
        return self.start()

    def start(self) -> Job | None:
        """Open the chosen audio input in a worker, then identify what it hears."""
        tab = self.tab
        lib = tab.main.library
        if lib is None or not lib.stats()["ok"]:
            tab.status.setText("The library is empty: add scores on the Library tab first.")
            return None
        device = self.audio_combo.currentData()
        tab.main.settings.setValue("audio/device", device or "")
        listener = MicListener(lib, device, on_update=tab.updated.emit,
                               on_frame=lambda o, p: tab.frameClosed.emit(float(o), list(p)),
                               on_note=tab.noteSeen.emit,  # lit only: a monitor would feed back
                               any_key=tab.any_key_box.isChecked(), on_follow=tab.followed.emit)
        self.listen_btn.setEnabled(False)
        self.audio_combo.setEnabled(False)
        tab.midi_label.setText(f"Opening {device or 'the default input'}…")
        # the handlers know their opening by a ticket, not by the listener: a Job lives on
        # after its run, and so would a listener its handlers held (with its resampler)
        ticket = self._opening = next(self._tickets)
        job = Job(lambda _progress, _cancel: listener.start(), "microphone")
        job.signals.done.connect(lambda started: self._listening(ticket, started))
        job.signals.failed.connect(lambda m: self._failed(ticket, m))
        return job.start()

    def _listening(self, ticket: int, listener: MicListener) -> None:
        tab = self.tab
        if ticket != self._opening or tab.closed:  # stopped (or closed) while opening
            listener.stop()
            return
        self._opening = 0
        self.listener = listener
        self.listen_btn.setText(STOP_LISTENING)
        self.listen_btn.setEnabled(True)
        tab.matrix.clear_frames()
        tab.results.show_results([])
        tab.midi_label.setText(f"Listening at {listener.mic.samplerate / 1000:g} kHz")
        tab.midi_label.setToolTip(f"Audio input: {listener.device or 'the default'}")
        tab.status.setText("Listening: play.")
        self._meter_timer.start(METER_MS)

    def _failed(self, ticket: int, message: str) -> None:
        if ticket != self._opening:
            return
        self._opening = 0
        self.listen_btn.setEnabled(True)
        self.audio_combo.setEnabled(True)
        self.tab.midi_label.setText(f"Cannot listen: {message}")

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop the microphone (its final update follows from the session)."""
        listener, self.listener, self._opening = self.listener, None, 0
        self._meter_timer.stop()
        self.level_meter.idle()
        self.listen_btn.setText(LISTEN)
        self.listen_btn.setEnabled(self.audio_combo.count() > 0)
        self.audio_combo.setEnabled(True)
        if listener is not None:
            listener.stop(wait_s)
            self.tab.midi_label.setText("Stopped listening.")

    def reset(self) -> None:
        """End the current query of a listening microphone."""
        if self.listener is not None:
            self.listener.reset()

    def _tick(self) -> None:
        """The meter's timer: show the level, notice silence and an input that ended."""
        listener = self.listener
        if listener is None:
            return
        self.level_meter.show_level(*listener.mic.take_level())
        if not listener.running:
            self.stop()
            self.tab.midi_label.setText(f"The audio input stopped: {listener.error}"
                                        if listener.error else "The audio input ended.")
        elif listener.quiet_seconds() >= NO_NOTES_S:
            self.tab.status.setText("No notes heard yet: play, or move closer to the "
                                    "microphone (see its level).")
