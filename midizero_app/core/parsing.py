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


def _decode(data: bytes, _path: str | None = None) -> Notes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    arrays.setdefault("grid", None)
    return Notes(**arrays, **meta)


def _parsed_cache_dir() -> Path | None:
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):  # source tree, or a bundle's data dir
        d = base / "resources" / "demo" / "parsed"
        if (d / "index.json").is_file():
            return d
    return None


_PARSED_INDEX: dict | None = None


def cached_notes(path: str | Path) -> Notes | None:
    """The bundled demo scores' notes, parsed in advance (``resources/demo/parsed``), so a
    first start indexes the demo library in a second instead of starting parser processes.

    Looked up by the file's content hash (only files of a cached size are hashed); anything
    else returns None and is parsed as usual. ``tests/test_packaging.py`` checks the cache
    still equals a fresh parse.
    """
    global _PARSED_INDEX
    if _PARSED_INDEX is None:
        d = _parsed_cache_dir()
        try:
            _PARSED_INDEX = {"dir": d, **json.loads((d / "index.json").read_text())} if d else {}
        except (OSError, ValueError):
            _PARSED_INDEX = {}
    sizes = _PARSED_INDEX.get("sizes") or {}
    try:
        size = Path(path).stat().st_size
        if str(size) not in sizes:
            return None
        import hashlib

        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest not in sizes[str(size)]:
            return None
        return _decode((_PARSED_INDEX["dir"] / f"{digest}.npz").read_bytes())
    except (OSError, ValueError, KeyError):
        return None


def parse_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One score file → ``("ok", npz bytes)`` or ``("err", reason)`` (runs in a worker)."""
    from .scores import load_notes

    try:
        return "ok", _encode(load_notes(path))
    except ScoreError as exc:
        return "err", str(exc)
    except MemoryError:
        return "err", f"file needs more than the {memory_mb} MB parser memory limit"
    except RecursionError:
        return "err", "file nests too deeply to parse"
    except Exception as exc:  # noqa: BLE001 - a parser bug must not take the batch down
        return "err", f"unreadable ({type(exc).__name__}: {str(exc)[:160]})"


def _worker_main(conn, memory_mb: int, task) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")  # parsers warn a lot on real files; reasons go back as text
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        if path is None:
            return
        conn.send(task(path, memory_mb))


class _Worker:
    def __init__(self, ctx, memory_mb: int, task):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_mb, task), daemon=True)
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
    queue = []
    for p in paths:
        notes = cached_notes(p)
        if notes is not None:  # a bundled demo score, parsed in advance
            yield ParseResult(str(p), notes, None)
        else:
            queue.append(str(p))
    yield from run_limited(queue, parse_task, _decode, lambda _path: timeout,
                           f"parsing took longer than {timeout:g} s",
                           "the parser crashed on this file (corrupt or too large)",
                           workers, memory_mb, cancel)


def run_limited(paths: list[str], task, decode, timeout_for, timeout_msg: str, crash_msg: str,
                workers: int, memory_mb: int, cancel: threading.Event | None = None
                ) -> Iterator[ParseResult]:
    """Run ``task(path, memory_mb)`` (a module-level function returning ``("ok", bytes)``
    or ``("err", reason)``) for each path in ``workers`` spawned processes with an
    address-space limit; ``decode(bytes, path)`` makes the Notes. A file running past
    ``timeout_for(path)`` seconds, or one that kills its worker, gets ``timeout_msg`` or
    ``crash_msg`` and a fresh worker. Yields :class:`ParseResult` in completion order."""
    queue = list(paths)[::-1]
    if not queue:
        return
    ctx = mp.get_context("spawn")  # no inherited threads or torch state in the workers
    pool: list[_Worker] = []
    try:
        for _ in range(max(1, min(workers, len(queue)))):
            pool.append(_Worker(ctx, memory_mb, task))
        while True:
            for w in pool:
                if w.task is None and queue and not (cancel is not None and cancel.is_set()):
                    w.task = queue.pop()
                    w.deadline = time.monotonic() + timeout_for(w.task)
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
                        result = (ParseResult(w.task, decode(payload, w.task), None)
                                  if status == "ok" else ParseResult(w.task, None, payload))
                    except (EOFError, OSError):
                        result = ParseResult(w.task, None, crash_msg)
                        broken = True
                elif time.monotonic() > w.deadline:
                    result = ParseResult(w.task, None, timeout_msg)
                    broken = True
                if result is None:
                    continue
                w.task = None
                if broken or not w.proc.is_alive():
                    w.kill()
                    pool[i] = _Worker(ctx, memory_mb, task)
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

