"""Streaming transcription: audio blocks in, notes out, for the live session.

The model needs context, so the stream transcribes overlapping chunks: every ``hop_s``
seconds of new audio, the last ``chunk_s`` seconds are transcribed and the notes whose
onsets fall in the newly *settled* span — up to ``margin_s`` before the end of the audio,
where a note is long enough to be confirmed — are emitted. A note found again by the next
chunk (same pitch, onset within ``dedup_s``) is dropped, so each note is emitted once.

:meth:`StreamingTranscriber.clock` is audio time: the point up to which notes had been
emitted one step earlier. A :class:`~midizero_app.live.session.LiveSession` built with
``clock=stream.clock`` and fed ``stream``'s notes therefore groups frames on the audio's own
timeline: a frame that straddles a chunk border stays open until the next chunk's notes
arrive, as the batch rule groups them, and silence is measured in audio seconds. (The
one-step lag keeps the clock behind notes still in the session's queue: the session drains
its queue and then reads the clock, and a step takes ~0.1 s of transcription.)

Units: seconds of audio from the first sample pushed; samples float32 mono.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from .note_creation import NoteParams
from .transcribe import SAMPLE_RATE, activations, events_from_activations

NoteFn = Callable[[float, int], None]  # (onset seconds, MIDI pitch)


class StreamingTranscriber:
    """Chunked transcription of an audio stream.

    Parameters
    ----------
    sr : sample rate of the pushed audio in Hz (resampled to 22,050 Hz with soxr).
    on_note : called with each new note ``(onset, pitch)`` in onset order, before
        :attr:`clock` moves past it.
    chunk_s : seconds transcribed per step (context + new audio).
    hop_s : seconds of new audio per step.
    margin_s : notes with onsets this close to the end of the audio wait for the next step.
    dedup_s : notes of one pitch with onsets this close are one note.
    params : note-creation thresholds.
    """

    def __init__(self, sr: int, on_note: NoteFn, chunk_s: float = 2.0, hop_s: float = 0.5,
                 margin_s: float = 0.3, dedup_s: float = 0.06,
                 params: NoteParams = NoteParams()):
        if not (0 < hop_s and margin_s + hop_s < chunk_s):
            raise ValueError("need 0 < hop_s and margin_s + hop_s < chunk_s")
        import soxr

        self.sr, self.on_note = int(sr), on_note
        self.chunk, self.hop = int(chunk_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE)
        self.margin_s, self.dedup_s, self.params = float(margin_s), float(dedup_s), params
        self.hop_s = float(hop_s)
        self._resampler = None if self.sr == SAMPLE_RATE else \
            soxr.ResampleStream(self.sr, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._buf = np.zeros(0, np.float32)  # the last ≤ chunk samples at 22,050 Hz
        self._total = 0                       # samples at 22,050 Hz received so far
        self._pending = 0                     # received since the last step
        self._emitted_until = 0.0
        self._clock = 0.0
        self._heard: tuple[float, float | None] = (0.0, None)  # (audio s received, when)
        self._recent: list[tuple[float, int]] = []  # emitted notes near the border
        self._lock = threading.Lock()
        self.steps = 0

    def clock(self) -> float:
        """Audio seconds up to which every note had been emitted one step ago."""
        return self._clock

    def audio_now(self, max_ahead_s: float = 1.0) -> float:
        """Audio seconds heard by now, for a cursor that moves between notes: the audio
        received so far plus the wall time since it came, at most ``max_ahead_s`` more
        (blocks arrive every few milliseconds, but queue while a step transcribes; a stalled
        input does not run on). :meth:`clock` lags this by a step and a margin.

        Reads no lock: the GUI thread calls it while a step may be transcribing."""
        heard, at = self._heard
        if at is None:
            return heard
        return heard + min(max(0.0, time.perf_counter() - at), max_ahead_s)

    @property
    def delay_s(self) -> float:
        """The longest a played note waits before it is handed on, in seconds (a step's new
        audio plus the margin; the step's computing time comes on top)."""
        return self.hop_s + self.margin_s

    def push(self, samples: np.ndarray) -> None:
        """Add audio (float32 (n,) mono at ``sr``); transcribes as many steps as are due."""
        x = np.asarray(samples, np.float32).reshape(-1)
        # counted at the input's rate (the resampler holds a few samples back), set before
        # the steps below: one tuple, read without the lock by audio_now
        self._heard = (self._heard[0] + len(x) / self.sr, time.perf_counter())
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        with self._lock:
            while len(x):
                take = min(len(x), self.hop - self._pending)
                self._append(x[:take])
                x = x[take:]
                if self._pending >= self.hop:
                    self._pending = 0
                    self._step(final=False)

    def flush(self) -> None:
        """End of the stream: emit every remaining note."""
        with self._lock:
            if self._resampler is not None:
                self._append(self._resampler.resample_chunk(np.zeros(0, np.float32),
                                                            last=True))
            self._pending = 0
            self._step(final=True)

    def _append(self, x: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, x])[-self.chunk:]
        self._total += len(x)
        self._pending += len(x)

    def _step(self, final: bool) -> None:
        """Transcribe the last chunk and emit its settled notes."""
        self.steps += 1
        audio = self._buf
        t_start = (self._total - len(audio)) / SAMPLE_RATE
        t_end = self._total / SAMPLE_RATE
        settled = t_end if final else t_end - self.margin_s
        if len(audio) and settled > self._emitted_until:
            frames, onsets = activations(audio)
            ev = events_from_activations(frames, onsets, self.params)
            onset = ev.onset + t_start
            keep = (onset >= self._emitted_until - self.dedup_s) & (onset < settled)
            for t, p in zip(onset[keep].tolist(), ev.pitch[keep].tolist()):
                if any(q == p and abs(t - s) <= self.dedup_s for s, q in self._recent):
                    continue
                t = max(t, self._emitted_until)  # never before what the session has seen
                self._recent.append((t, p))
                self.on_note(t, int(p))
        self._clock = self._emitted_until if not final else max(self._emitted_until, settled)
        self._emitted_until = max(self._emitted_until, settled)
        self._recent = [(s, q) for s, q in self._recent
                        if s >= self._emitted_until - 2 * self.dedup_s]
