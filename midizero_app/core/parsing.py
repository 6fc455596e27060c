"""Parse untrusted score files in worker processes with a time and memory limit.

Real parsers hang or exhaust memory on some corrupt files, and raise assorted exceptions
on real files. Each worker is a separate process with an address-space limit
(``RLIMIT_AS``); a file that takes longer than ``timeout`` seconds gets its worker killed
and replaced. Results come back as ``.npz`` bytes (``allow_pickle=False``), never pickles.

Workers keep third-party output off the user's terminal: their stderr (file descriptor 2,
where C libraries such as mpg123 print) goes to the null device and Python warnings are
ignored, unless ``MIDIZERO_VERBOSE=1`` is set (``midizero --verbose``). A worker whose
parent has gone (killed, or interrupted) exits without a word.
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .bundled import bundled_path
from .hashing import file_hash
from .paths import display_path
from .scores import Notes, ScoreError

VERBOSE_ENV = "MIDIZERO_VERBOSE"  # "1": workers keep their stderr and warnings
DEFAULT_TIMEOUT = 120.0   # seconds per file (a 200-tune ABC file takes ~15 s)
DEFAULT_MEMORY_MB = 3072  # address space per worker


@dataclass
class ParseResult:
    """One file's outcome: its path, and its notes or a one-line printable reason."""

    path: str
    notes: Notes | None
    error: str | None

    def __iter__(self):  # allows ``for path, notes, error in parse_files(...)``
        return iter((self.path, self.notes, self.error))


def encode_notes(notes: Notes) -> bytes:
    """Notes → ``.npz`` bytes (arrays plus a JSON ``meta`` string; no pickles)."""
    d = notes.to_arrays()
    meta = {k: d.pop(k) for k in ("title", "composer", "format", "repaired", "quantised",
                                  "warnings")}
    arrays = {k: v for k, v in d.items() if v is not None}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def decode_notes(data: bytes, _path: str | None = None) -> Notes:
    """The inverse of :func:`encode_notes` (``_path`` is unused: the signature of a
    :func:`run_limited` decoder)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    arrays.setdefault("grid", None)
    return Notes(**arrays, **meta)


def _parsed_cache_dir() -> Path | None:
    d = bundled_path("resources", "demo", "parsed", must_exist=False)
    return d if (d / "index.json").is_file() else None


_PARSED_INDEX: dict | None = None


def cached_notes(path: str | Path) -> Notes | None:
    """The bundled demo scores' notes, parsed in advance (``resources/demo/parsed``), so a
    first start indexes the demo library in a second instead of starting parser processes.

    Looked up by the file's content hash (:func:`~midizero_app.core.hashing.file_hash`;
    only files of a cached size are hashed); anything else returns None and is parsed as
    usual. ``tests/test_packaging.py`` checks the cache still equals a fresh parse;
    :func:`write_parsed_cache` makes it.
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
        digest = file_hash(path)
        if digest not in sizes[str(size)]:
            return None
        return decode_notes((_PARSED_INDEX["dir"] / f"{digest}.npz").read_bytes())
    except (OSError, ValueError, KeyError):
        return None


def write_parsed_cache(scores: Path, out: Path) -> int:
    """Parse every file in the folder ``scores`` (in worker processes, the cache unused)
    into ``out/<file_hash>.npz`` + ``out/index.json`` (``{"sizes": {size: [hash…]},
    "names": {hash: file name}}``), the cache :func:`cached_notes` reads. Returns the number
    of files; raises :class:`ScoreError` on the first file that does not parse."""
    import shutil

    global _PARSED_INDEX
    files = sorted(p for p in Path(scores).iterdir() if p.is_file())
    tmp = Path(str(out) + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    saved, _PARSED_INDEX = _PARSED_INDEX, {}
    sizes: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    try:
        for r in parse_files(files, workers=2):
            if r.notes is None:
                raise ScoreError(f"{display_path(r.path)}: {r.error}")
            digest = file_hash(r.path)
            (tmp / f"{digest}.npz").write_bytes(encode_notes(r.notes))
            sizes.setdefault(str(Path(r.path).stat().st_size), []).append(digest)
            names[digest] = display_path(Path(r.path).name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _PARSED_INDEX = saved
    for digests in sizes.values():
        digests.sort()
    (tmp / "index.json").write_text(json.dumps({"sizes": sizes, "names": names}, indent=1,
                                               sort_keys=True, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _PARSED_INDEX = None
    return len(names)


def parse_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One score file → ``("ok", npz bytes)`` or ``("err", reason)`` (runs in a worker)."""
    from .scores import load_notes

    try:
        return "ok", encode_notes(load_notes(path))
    except ScoreError as exc:
        return "err", display_path(str(exc))
    except MemoryError:
        return "err", f"file needs more than the {memory_mb} MB parser memory limit"
    except RecursionError:
        return "err", "file nests too deeply to parse"
    except OSError as exc:
        return "err", f"not readable ({exc.strerror or type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - a parser bug must not take the batch down
        return "err", display_path(f"unreadable ({type(exc).__name__}: {str(exc)[:160]})")


_LIMIT_HOOK = None  # in a worker: sends ("limit", seconds) to the parent


def set_time_limit(seconds: float) -> None:
    """From a task running in a :func:`run_limited` worker: give the current file
    ``seconds`` from now (e.g. once a header tells how long the file is). Does nothing
    outside a worker."""
    if _LIMIT_HOOK is not None:
        _LIMIT_HOOK(float(seconds))


def quiet_worker() -> None:
    """Keep third-party output of this (worker) process off the user's terminal: file
    descriptor 2 to the null device, warnings ignored; nothing changes when
    ``MIDIZERO_VERBOSE=1``."""
    import warnings

    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    warnings.simplefilter("ignore")  # parsers warn a lot on real files; reasons go back as text
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _worker_main(conn, memory_mb: int, task) -> None:
    import resource

    global _LIMIT_HOOK
    quiet_worker()
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _LIMIT_HOOK = lambda seconds: conn.send(("limit", seconds))  # noqa: E731
    try:
        while True:
            path = conn.recv()
            if path is None:
                return
            conn.send(task(path, memory_mb))
    except (EOFError, BrokenPipeError, ConnectionError, KeyboardInterrupt):
        return  # the parent has gone or was interrupted: nothing to report to


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

    A timeout (``timeout`` seconds a file), a crash or an out-of-memory failure (above
    ``memory_mb`` MB of address space) becomes that file's ``error``; the batch goes on.
    Setting ``cancel`` stops handing out new files (running ones finish). Paths may be any
    name the system allows; errors are printable text.
    """
    queue = []
    for p in paths:
        notes = cached_notes(p)
        if notes is not None:  # a bundled demo score, parsed in advance
            yield ParseResult(str(p), notes, None)
        else:
            queue.append(str(p))
    yield from run_limited(queue, parse_task, decode_notes, lambda _path: timeout,
                           f"parsing took longer than {timeout:g} s",
                           "the parser crashed on this file (corrupt, or too large for "
                           f"the {memory_mb} MB parser memory limit)",
                           workers, memory_mb, cancel)


def run_limited(paths: list[str], task, decode, timeout_for, timeout_msg: str, crash_msg: str,
                workers: int, memory_mb: int, cancel: threading.Event | None = None
                ) -> Iterator[ParseResult]:
    """Run ``task(path, memory_mb)`` (a module-level function returning ``("ok", bytes)``
    or ``("err", reason)``) for each path in ``workers`` spawned processes with an
    address-space limit of ``memory_mb`` MB; ``decode(bytes, path)`` makes the Notes. A
    file running past ``timeout_for(path)`` seconds (or past what the task set with
    :func:`set_time_limit`), or one that kills its worker, gets ``timeout_msg`` or
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
                        if status == "limit":  # the task knows how long this file needs
                            w.deadline = time.monotonic() + float(payload)
                            continue
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
    """Parse a single file in a limited worker (``timeout`` seconds, ``memory_mb`` MB);
    raises :class:`ScoreError` on failure."""
    for result in parse_files([path], 1, timeout, memory_mb):
        if result.notes is None:
            raise ScoreError(result.error)
        return result.notes
    raise ScoreError("not parsed")
