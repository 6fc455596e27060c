"""Untrusted audio files read for a route in limited worker processes: decoded once, then
transcribed, embedded by the audio branch, or both (:mod:`.routes`).

The pool is the transcriber's (:func:`midizero_app.core.parsing.run_limited`: spawned
processes with an address-space limit and a time limit from the file's header); results
come back as ``.npz`` bytes, never pickles. Every route decodes the file the same way, so a
silent, corrupt or over-long recording gets the same message whichever route reads it.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..core.parsing import ParseResult, set_time_limit
from ..core.paths import display_path
from ..core.scores import Notes
from .routes import AudioQuery
from .worker import DEFAULT_MEMORY_MB, ProgressFn, run_audio_workers, time_limit


def _encode(q: AudioQuery) -> bytes:
    buf = io.BytesIO()
    arrays = {}
    if q.notes is not None:
        arrays.update(onset=q.notes.onset, pitch=q.notes.pitch)
    if q.emb is not None:
        arrays.update(emb=q.emb, starts=q.starts, times=q.times)
    np.savez(buf, **arrays)
    return buf.getvalue()


def _decode(data: bytes, path: str) -> AudioQuery:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        q = AudioQuery()
        if "onset" in z.files:
            q.notes = Notes(z["onset"], z["pitch"], format=Path(path).suffix[1:])
        if "emb" in z.files:
            q.emb, q.starts, q.times = z["emb"], z["starts"], z["times"]
        return q


def _task(path: str, memory_mb: int, route: str) -> tuple[str, bytes | str]:
    from ..core.errors import MidizeroError
    from .decode import AudioError, load_audio
    from .routes import read_samples
    from .transcribe import SAMPLE_RATE, TranscriptionError

    try:
        set_time_limit(time_limit(path))
        samples, _ = load_audio(path, SAMPLE_RATE)
        return "ok", _encode(read_samples(samples, SAMPLE_RATE, route))
    except (AudioError, TranscriptionError, MidizeroError) as exc:
        return "err", display_path(str(exc))
    except MemoryError:
        return "err", f"audio needs more than the {memory_mb} MB memory limit"
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not take the batch down
        return "err", display_path(f"unreadable audio ({type(exc).__name__}: {str(exc)[:160]})")


def embed_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One audio file → its audio-branch windows (runs in a worker)."""
    return _task(path, memory_mb, "embed")


def both_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One audio file → its transcribed notes and its audio-branch windows (in a worker)."""
    return _task(path, memory_mb, "both")


def transcribe_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One audio file → its transcribed notes (runs in a worker)."""
    return _task(path, memory_mb, "transcribe")


TASKS = {"transcribe": transcribe_task, "embed": embed_task, "both": both_task}


def read_audio_files(paths: Iterable[str | Path], route: str, workers: int = 1,
                     memory_mb: int = DEFAULT_MEMORY_MB,
                     cancel: threading.Event | None = None,
                     progress: ProgressFn | None = None) -> Iterator[ParseResult]:
    """Decode files and read them for ``route`` in ``workers`` limited processes.

    Yields one :class:`~midizero_app.core.parsing.ParseResult` per file, in completion
    order, whose ``notes`` is an :class:`~.routes.AudioQuery` (or ``error`` a one-line
    reason); ``progress`` gets ``(files done, files total, path)``.
    """
    from .routes import check_route

    yield from run_audio_workers(paths, TASKS[check_route(route)], _decode,
                                 "reading the recording took too long", workers, memory_mb,
                                 cancel, progress)
