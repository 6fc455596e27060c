"""Background work: a core function run on QThreadPool with progress, cancel and result
signals delivered on the GUI thread (:class:`Job`), and the microphone listener's threads
(:class:`MicListener`)."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..audio.microphone import Microphone, run_stream

log = logging.getLogger(__name__)


def readable(exc: BaseException) -> str:
    """One line a user can read, never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


class JobSignals(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    ended = Signal()


class Job(QRunnable):
    """Runs ``fn(progress, cancel)`` on the pool; ``progress(obj)`` is thread-safe.

    Connect to ``job.signals`` before :meth:`start`. ``done`` carries the return value,
    ``failed`` a readable message; ``ended`` follows either.
    """

    _alive: set["Job"] = set()  # keep Python references until the job has ended

    def __init__(self, fn: Callable, name: str = "job"):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.name = fn, name
        self.cancel = threading.Event()
        self.signals = JobSignals()
        self.running = False
        self.settled = False  # True once `ended` has been handled on the GUI thread

    def start(self, pool: QThreadPool | None = None) -> "Job":
        Job._alive.add(self)
        self.running = True
        self.signals.ended.connect(self._forget)
        (pool or QThreadPool.globalInstance()).start(self)
        return self

    def _forget(self) -> None:  # connected last, so it runs after the caller's handlers
        self.running = False
        self.settled = True
        Job._alive.discard(self)

    def run(self) -> None:  # on a pool thread
        fn, self.fn = self.fn, None  # its closure may hold much: a Job outlives its run
        try:
            result = fn(self.signals.progress.emit, self.cancel)
        except Exception as exc:  # noqa: BLE001 - reaches the user as a message
            log.exception("%s failed", self.name)
            self.signals.failed.emit(readable(exc))
        else:
            self.signals.done.emit(result)
        self.running = False  # before `ended`, so its handlers see the job as finished
        self.signals.ended.emit()


class MicListener:
    """Microphone → streaming transcription → a live session of its own.

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
    """

    def __init__(self, library, device: str | None, on_update: Callable[[dict], None],
                 on_frame: Callable[[float, list], None], on_note: Callable[[int], None],
                 any_key: bool = True):
        self.library, self.device, self.any_key = library, device, any_key
        self.on_update, self.on_frame, self.on_note = on_update, on_frame, on_note
        self.notes = 0          # transcribed since the start or the last reset
        self.error: str | None = None  # why the transcriber thread ended, if it failed
        self._quiet_from = 0.0  # audio seconds of the start or the last reset
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.mic = self.stream = self.session = None

    def start(self) -> "MicListener":
        """Load the transcriber, open the input and start listening (call off the GUI
        thread: the first load takes a second). Raises AudioDeviceError/TranscriptionError."""
        from ..audio.stream import StreamingTranscriber
        from ..audio.transcribe import AUDIO_SEARCH, warm_up
        from ..live.session import LiveSession

        warm_up()
        self.mic = Microphone(self.device)
        try:
            self.stream = StreamingTranscriber(self.mic.samplerate, self._note)
            self.session = LiveSession(
                self.library, top=10, clock=self.stream.clock, **AUDIO_SEARCH,
                on_update=self.on_update, on_frame=self.on_frame,
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
