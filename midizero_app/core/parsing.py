"""Parse untrusted score files in worker processes with a time and memory limit.

Real parsers hang or exhaust memory on some corrupt files, and raise assorted exceptions
on real files. Each worker is a separate process with an address-space limit
(``RLIMIT_AS``); a file that takes longer than ``timeout`` seconds gets its worker killed
and replaced. Results come back as ``.npz`` bytes (``allow_pickle=False``), never pickles.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .scores import Notes, ScoreError

DEFAULT_TIMEOUT = 120.0   # seconds per file (a 200-tune ABC file takes ~15 s)
DEFAULT_MEMORY_MB = 3072  # address space per worker


@dataclass
class ParseResult:
    path: str
    notes: Notes | None
    error: str | None

    def __iter__(self):  # allows ``for path, notes, error in parse_files(...)``
        return iter((self.path, self.notes, self.error))


def _encode(notes: Notes) -> bytes:
    d = notes.to_arrays()
    meta = {k: d.pop(k) for k in ("title", "composer", "format", "repaired", "quantised",
                                  "warnings")}
    arrays = {k: v for k, v in d.items() if v is not None}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def _decode(data: bytes) -> Notes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    arrays.setdefault("grid", None)
    return Notes(**arrays, **meta)


def _worker_main(conn, memory_mb: int) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")  # parsers warn a lot on real files; reasons go back as text
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from .scores import load_notes

    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        if path is None:
            return
        try:
            conn.send(("ok", _encode(load_notes(path))))
        except ScoreError as exc:
            conn.send(("err", str(exc)))
        except MemoryError:
            conn.send(("err", f"file needs more than the {memory_mb} MB parser memory limit"))
        except RecursionError:
            conn.send(("err", "file nests too deeply to parse"))
        except Exception as exc:  # noqa: BLE001 - a parser bug must not take the batch down
            conn.send(("err", f"unreadable ({type(exc).__name__}: {str(exc)[:160]})"))


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


def parse_files(paths: Iterable[str | Path], workers: int = 2,
                timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
                cancel: threading.Event | None = None) -> Iterator[ParseResult]:
    """Parse files in ``workers`` processes; yields one :class:`ParseResult` per file
    (in completion order) as soon as it is ready.

    A timeout, a crash or an out-of-memory failure becomes that file's ``error``; the
    batch goes on. Setting ``cancel`` stops handing out new files (running ones finish).
    """
    queue = [str(p) for p in paths]
    queue.reverse()
    if not queue:
        return
    ctx = mp.get_context("spawn")  # no inherited threads or torch state in the workers
    pool: list[_Worker] = []
    try:
        for _ in range(max(1, min(workers, len(queue)))):
            pool.append(_Worker(ctx, memory_mb))
        while True:
            for w in pool:
                if w.task is None and queue and not (cancel is not None and cancel.is_set()):
                    w.task = queue.pop()
                    w.deadline = time.monotonic() + timeout
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
                        result = (ParseResult(w.task, _decode(payload), None) if status == "ok"
                                  else ParseResult(w.task, None, payload))
                    except (EOFError, OSError):
                        result = ParseResult(w.task, None,
                                             "the parser crashed on this file (corrupt or too large)")
                        broken = True
                elif time.monotonic() > w.deadline:
                    result = ParseResult(w.task, None, f"parsing took longer than {timeout:g} s")
                    broken = True
                if result is None:
                    continue
                w.task = None
                if broken or not w.proc.is_alive():
                    w.kill()
                    pool[i] = _Worker(ctx, memory_mb)
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


def parse_one(path: str | Path, timeout: float = DEFAULT_TIMEOUT,
              memory_mb: int = DEFAULT_MEMORY_MB) -> Notes:
    """Parse a single file in a limited worker; raises :class:`ScoreError` on failure."""
    for result in parse_files([path], 1, timeout, memory_mb):
        if result.notes is None:
            raise ScoreError(result.error)
        return result.notes
    raise ScoreError("not parsed")

