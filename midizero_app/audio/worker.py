"""Decode and transcribe untrusted audio files in limited worker processes.

The score parser's pool (:func:`midizero_app.core.parsing.run_limited`): each worker is a
spawned process with an address-space limit; a file that takes longer than its time limit
gets its worker killed and replaced; results come back as ``.npz`` bytes
(``allow_pickle=False``), never pickles.
A worker keeps its ONNX session between files, so a batch pays the model load once, and
keeps decoder output (mpg123's notes on stderr) off the user's terminal unless
``MIDIZERO_VERBOSE=1``.
"""
from __future__ import annotations

import io
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..core.parsing import ParseResult, run_limited, set_time_limit
from ..core.paths import display_path
from ..core.scores import Notes

DEFAULT_MEMORY_MB = 4096
# A file gets BASE + PER_MINUTE · minutes seconds, minutes from its header, read in the
# worker (decoding and transcription run at about 0.03 × real time on 2 cores; this leaves
# a wide margin for a loaded machine); BASE alone until the header is read.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_MINUTE_S = 20.0

ProgressFn = Callable[[int, int, str], None]


def _encode(notes: Notes) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, onset=notes.onset, pitch=notes.pitch)
    return buf.getvalue()


def _decode(data: bytes, fmt: str) -> Notes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Notes(z["onset"], z["pitch"], format=fmt)


def transcribe_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One audio file → ``("ok", npz bytes of its notes)`` or ``("err", reason)`` (runs in a
    worker; the transcription model stays loaded there between files)."""
    from .decode import AudioError, load_audio
    from .transcribe import SAMPLE_RATE, TranscriptionError, transcribe

    try:
        set_time_limit(time_limit(path))
        samples, _ = load_audio(path, SAMPLE_RATE)
        return "ok", _encode(transcribe(samples, SAMPLE_RATE))
    except (AudioError, TranscriptionError) as exc:
        return "err", display_path(str(exc))
    except MemoryError:
        return "err", f"audio needs more than the {memory_mb} MB memory limit"
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not take the batch down
        return "err", display_path(f"unreadable audio ({type(exc).__name__}: {str(exc)[:160]})")


def time_limit(path: str) -> float:
    """Seconds allowed for decoding and transcribing one file, from its header's duration
    (the base alone when the header cannot be read: the decoder then says why). Reads the
    header through libsndfile, which may print: call it in a worker."""
    try:
        import soundfile as sf

        if not stat.S_ISREG(os.stat(path).st_mode):
            return TIMEOUT_BASE_S
        minutes = sf.info(path if sys.platform == "win32" else os.fsencode(path)).duration / 60
    except Exception:  # noqa: BLE001 - the decoder reports the real reason
        minutes = 0.0
    return TIMEOUT_BASE_S + TIMEOUT_PER_MINUTE_S * max(minutes, 0.0)


def transcribe_files(paths: Iterable[str | Path], workers: int = 1,
                     memory_mb: int = DEFAULT_MEMORY_MB,
                     cancel: threading.Event | None = None,
                     progress: ProgressFn | None = None) -> Iterator[ParseResult]:
    """Decode + transcribe files in ``workers`` limited processes.

    Yields one :class:`~midizero_app.core.parsing.ParseResult` per file, in completion
    order: ``notes`` (possibly empty: silence) or ``error`` (a one-line reason). The notes'
    ``format`` is the file suffix. ``cancel`` stops handing out files; ``progress`` gets
    ``(files done, files total, path)``.
    """
    yield from run_audio_workers(paths, transcribe_task,
                                 lambda data, path: _decode(data, Path(path).suffix[1:]),
                                 "transcription took too long", workers, memory_mb, cancel,
                                 progress)


def run_audio_workers(paths: Iterable[str | Path], task, decode, too_long: str, workers: int,
                      memory_mb: int, cancel: threading.Event | None,
                      progress: ProgressFn | None) -> Iterator[ParseResult]:
    """Run ``task(path, memory_mb)`` for each audio file in ``workers`` limited processes
    (:func:`~midizero_app.core.parsing.run_limited`) and ``decode(data, path)`` its answer;
    ``too_long`` is the message for a file past its time. Yields in completion order, with
    ``progress(files done, files total, path)``."""
    paths = [str(p) for p in paths]
    results = run_limited(paths, task, decode, lambda _path: TIMEOUT_BASE_S, too_long,
                          "the audio decoder crashed on this file (corrupt, or too large for "
                          f"the {memory_mb} MB memory limit)",
                          workers, memory_mb, cancel)
    for done, result in enumerate(results, 1):
        if progress is not None:
            progress(done, len(paths), result.path)
        yield result
