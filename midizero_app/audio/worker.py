"""Decode and transcribe untrusted audio files in limited worker processes.

The pattern of :mod:`midizero_app.core.parsing`: each worker is a spawned process with an
address-space limit; a file that takes longer than its time limit gets its worker killed
and replaced; results come back as ``.npz`` bytes (``allow_pickle=False``), never pickles.
A worker keeps its ONNX session between files, so a batch pays the model load once.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..core.parsing import ParseResult
from ..core.scores import Notes

DEFAULT_MEMORY_MB = 4096
# A file gets BASE + PER_MINUTE · minutes seconds (decoding and transcription run at about
# 0.03 × real time on 2 cores; this leaves a wide margin for a loaded machine).
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


def _worker_main(conn, memory_mb: int) -> None:
    import resource

    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from .decode import AudioError, load_audio
    from .transcribe import SAMPLE_RATE, TranscriptionError, transcribe

    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        if path is None:
            return
        try:
            samples, _ = load_audio(path, SAMPLE_RATE)
            conn.send(("ok", _encode(transcribe(samples, SAMPLE_RATE))))
        except (AudioError, TranscriptionError) as exc:
            conn.send(("err", str(exc)))
        except MemoryError:
            conn.send(("err", f"audio needs more than the {memory_mb} MB memory limit"))
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not take the batch down
            conn.send(("err", f"unreadable audio ({type(exc).__name__}: {str(exc)[:160]})"))


def _timeout_for(path: str) -> float:
    """Time limit for one file from its header duration (a bad header: the base)."""
    try:
        import soundfile as sf

        minutes = sf.info(path).duration / 60.0
    except Exception:  # noqa: BLE001 - the worker reports the real reason
        minutes = 0.0
    return TIMEOUT_BASE_S + TIMEOUT_PER_MINUTE_S * max(minutes, 0.0)


class _Worker:
    def __init__(self, ctx, memory_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_mb), daemon=True)
        self.proc.start()
        child.close()
        self.task: str | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


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
    queue = [str(p) for p in paths][::-1]
    total, done = len(queue), 0
    if not queue:
        return
    ctx = mp.get_context("spawn")
    pool = [_Worker(ctx, memory_mb) for _ in range(max(1, min(workers, total)))]
    try:
        while True:
            for w in pool:
                if w.task is None and queue and not (cancel is not None and cancel.is_set()):
                    w.task = queue.pop()
                    w.deadline = time.monotonic() + _timeout_for(w.task)
                    w.conn.send(w.task)
            busy = [w for w in pool if w.task is not None]
            if not busy:
                return
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy], timeout=min(wait_s, 0.5))
            for i, w in enumerate(pool):
                if w.task is None:
                    continue
                result, broken = None, False
                if w.conn in ready:
                    try:
                        status, payload = w.conn.recv()
                        result = (ParseResult(w.task, _decode(payload, Path(w.task).suffix[1:]),
                                              None)
                                  if status == "ok" else ParseResult(w.task, None, payload))
                    except (EOFError, OSError):
                        result = ParseResult(w.task, None, "the audio decoder crashed on this "
                                                           "file (corrupt or too large)")
                        broken = True
                elif time.monotonic() > w.deadline:
                    result = ParseResult(w.task, None, "transcription took too long")
                    broken = True
                if result is None:
                    continue
                w.task = None
                if broken or not w.proc.is_alive():
                    w.kill()
                    pool[i] = _Worker(ctx, memory_mb)
                done += 1
                if progress is not None:
                    progress(done, total, result.path)
                yield result
    finally:
        for w in pool:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in pool:
            w.proc.join(1)
            w.kill()
