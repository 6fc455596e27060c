"""Audio → notes with basic-pitch's bundled ONNX model, run directly through onnxruntime.

The ``basic-pitch`` wheel (installed with ``--no-deps``: its dependencies pull TensorFlow)
ships ``saved_models/icassp_2022/nmp.onnx`` (228 KB). The model computes its own CQT from
raw audio windows of 43,844 samples at 22,050 Hz, so neither librosa nor numba is needed
at run time: this module windows the audio the way ``basic_pitch.inference`` does (30
frames of overlap, half of them trimmed from each side), runs the windows in batches and
decodes the activations with :mod:`.note_creation`. The ``basic_pitch`` package itself is
never imported (its ``__init__`` probes for TensorFlow and CoreML).

Units: samples are float32 mono; times are seconds from the start of the audio; one model
frame is 256 samples (11.6 ms).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.onnx_session import make_session
from ..core.scores import Notes
from .decode import resample
from .note_creation import NoteParams, notes_from_activations

SAMPLE_RATE = 22050
FFT_HOP = 256
WINDOW = 43844                     # samples per model input window (2 s − one hop)
FRAMES_PER_WINDOW = 172
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP  # 7680 samples shared by neighbouring windows
HOP = WINDOW - OVERLAP              # 36164 samples between window starts
KEPT = FRAMES_PER_WINDOW - OVERLAP_FRAMES  # 142 frames kept per window
BATCH = 8                          # windows per onnxruntime call
# Searching transcribed audio (benchmarks/RESULTS.md, Audio): the threshold zone τ
# (DESIGN §1.1) — the chord notes of a transcription start within a frame or two of each
# other. The search is otherwise MIDI's: with the earlier texture-only model fetching
# k = 30 library windows per query window helped audio (5 s 0.944 against 0.936); the
# bundled model, trained on transcription errors, does as well or better with MIDI's 10
# (5 s 0.944 / 0.940, 10 s 0.984 / 0.978 at k = 10 / 30).
AUDIO_TAU = 0.05
AUDIO_SEARCH = {"tau": AUDIO_TAU}

ProgressFn = Callable[[int, int, str], None]


class TranscriptionError(Exception):
    """Transcription could not run (model missing or broken); a one-line reason."""


class Cancelled(Exception):
    """The caller's cancel flag was set."""


MODEL_RELPATH = Path("basic_pitch") / "saved_models" / "icassp_2022" / "nmp.onnx"


def model_path() -> Path:
    """Path of basic-pitch's ONNX model: in the installed package (found without importing
    it), or in a PyInstaller bundle's data folder at :data:`MODEL_RELPATH`."""
    spec = importlib.util.find_spec("basic_pitch")
    roots = [Path(p).parent for p in (spec.submodule_search_locations or [])] if spec else []
    if getattr(sys, "frozen", False):
        roots.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)))
    for root in roots:
        if (root / MODEL_RELPATH).is_file():
            return root / MODEL_RELPATH
    raise TranscriptionError("the transcription model is missing: "
                             "pip install --no-deps basic-pitch")


def _threads() -> int:
    """CPU threads for the transcription model (``MIDIZERO_AUDIO_THREADS``, default 2)."""
    try:
        return max(1, int(os.environ.get("MIDIZERO_AUDIO_THREADS", "2")))
    except ValueError:
        return 2


class _Model:
    """The ONNX session, created once per process and shared by threads (run() is
    thread-safe in onnxruntime)."""

    _lock = threading.Lock()
    _session = None

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._session is None:
                path = model_path()
                try:
                    cls._session = make_session(path, _threads())
                except Exception as exc:  # noqa: BLE001 - a broken install, reported once
                    raise TranscriptionError(f"the transcription model cannot run ({exc}); "
                                             "reinstall it: pip install --no-deps "
                                             "basic-pitch") from None
            return cls._session


def warm_up() -> None:
    """Load the model and run it once (about 0.3 s), so the first query is not slower."""
    activations(np.zeros(WINDOW, np.float32))


def _n_windows(n_samples: int) -> int:
    return max(1, int(np.ceil((n_samples + OVERLAP // 2) / HOP)))


def _windows(audio: np.ndarray, first: int, count: int) -> np.ndarray:
    """Windows ``first .. first + count − 1`` of a signal at 22,050 Hz, as basic-pitch cuts
    them (OVERLAP / 2 zeros in front, zeros after the end): float32 (count, WINDOW, 1)."""
    out = np.zeros((count, WINDOW, 1), np.float32)
    for j in range(count):
        a = (first + j) * HOP - OVERLAP // 2
        src = audio[max(a, 0):max(a + WINDOW, 0)]
        out[j, max(-a, 0):max(-a, 0) + len(src), 0] = src
    return out


def activations(audio: np.ndarray, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the model over a whole signal.

    Parameters
    ----------
    audio : float32 (n,), mono at 22,050 Hz.
    progress : called ``(windows done, windows total, "transcribing")`` after each batch.
    cancel : set it to stop; raises :class:`Cancelled`.

    Returns
    -------
    frames, onsets : float32 (T, 88) with T = floor(n · 86 / 22050), one row per model
        frame, column = MIDI pitch − 21.
    """
    session = _Model.get()
    total = _n_windows(len(audio))
    name = session.get_inputs()[0].name
    notes, onsets = [], []
    for a in range(0, total, BATCH):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        out = session.run(["StatefulPartitionedCall:1", "StatefulPartitionedCall:2"],
                          {name: _windows(audio, a, min(BATCH, total - a))})
        notes.append(out[0])
        onsets.append(out[1])
        if progress is not None:
            progress(min(a + BATCH, total), total, "transcribing")
    half = OVERLAP_FRAMES // 2
    n_out = int(np.floor(len(audio) * (SAMPLE_RATE // FFT_HOP) / SAMPLE_RATE))

    def unwrap(chunks: list[np.ndarray]) -> np.ndarray:
        x = np.concatenate(chunks)[:, half:-half, :]
        return x.reshape(-1, x.shape[-1])[:n_out]

    return unwrap(notes), unwrap(onsets)


def frame_times(frame: np.ndarray) -> np.ndarray:
    """Model frame numbers of the unwrapped output → seconds.

    Window w contributes frames w·142 … w·142 + 141, whose audio starts at w · HOP samples;
    so frame n sits at (n − 142 w) · 256 + w · HOP samples, w = n // 142.
    """
    f = np.asarray(frame, np.float64)
    w = np.floor(f / KEPT)
    return ((f - KEPT * w) * FFT_HOP + w * HOP) / SAMPLE_RATE


@dataclass
class NoteEvents:
    """Transcribed notes, sorted by onset.

    Attributes
    ----------
    onset, offset : float64 (N,), seconds.
    pitch : int16 (N,), MIDI pitch 21..108.
    amplitude : float32 (N,), mean frame activation (0..1), a loudness proxy.
    """

    onset: np.ndarray
    offset: np.ndarray
    pitch: np.ndarray
    amplitude: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)

    def to_notes(self, fmt: str = "audio") -> Notes:
        """The onsets and pitches as :class:`Notes` (performance grouping applies)."""
        return Notes(self.onset.copy(), self.pitch.copy(), format=fmt)


def events_from_activations(frames: np.ndarray, onsets: np.ndarray,
                            params: NoteParams = NoteParams()) -> NoteEvents:
    """Note creation over (T, 88) activations → :class:`NoteEvents` in seconds."""
    ev = notes_from_activations(frames, onsets, params)
    order = np.lexsort((ev[:, 2], ev[:, 0]))
    ev = ev[order]
    return NoteEvents(frame_times(ev[:, 0]),
                      frame_times(ev[:, 1]), ev[:, 2].astype(np.int16),
                      ev[:, 3].astype(np.float32))


def transcribe_events(samples: np.ndarray, sr: int, progress: ProgressFn | None = None,
                      cancel: threading.Event | None = None,
                      params: NoteParams = NoteParams()) -> NoteEvents:
    """Like :func:`transcribe`, with offsets and amplitudes kept."""
    audio = resample(np.asarray(samples, np.float32), int(sr), SAMPLE_RATE)
    frames, onsets = activations(audio, progress, cancel)
    return events_from_activations(frames, onsets, params)


def transcribe(samples: np.ndarray, sr: int, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None,
               params: NoteParams = NoteParams()) -> Notes:
    """Transcribe mono audio to notes.

    Parameters
    ----------
    samples : float32 (n,), mono, any sample rate (resampled to 22,050 Hz with soxr).
    sr : sample rate of ``samples`` in Hz.
    progress : ``(done, total, message)`` callback, per batch of model windows.
    cancel : a ``threading.Event``; when set, raises :class:`Cancelled` at the next batch.
    params : note-creation thresholds.

    Returns
    -------
    Notes (onsets in seconds, MIDI pitches; ``format="audio"``), empty for silence.
    """
    return transcribe_events(samples, sr, progress, cancel, params).to_notes()
