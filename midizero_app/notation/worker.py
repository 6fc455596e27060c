"""Engrave untrusted score files in a worker process with a time and memory limit.

Verovio and partitura are C++ and Python parsers fed the user's files; a corrupt file may
hang them, exhaust memory or crash the process. :class:`EngraverProcess` keeps one spawned
process (started ahead of need, reused for every score) that holds the loaded scores and
renders their pages on request. Requests and replies cross the pipe as JSON (never pickles
of user data). A request that runs past its time limit gets the process killed (the next
request starts a fresh one) and raises :class:`~.engrave.NotationError`; so does a crash or
an out-of-memory failure.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import threading
from collections import OrderedDict

from . import cache
from .engrave import Engraver, NotationError

OPEN_TIMEOUT_S = 60.0   # load, lay out (and for MIDI, convert) one score
PAGE_TIMEOUT_S = 10.0   # render one page
MEMORY_MB = 3072        # address space of the worker process
KEEP_SCORES = 2         # loaded scores a worker keeps (the oldest is dropped first)


def _reply(conn, payload: dict) -> None:
    conn.send_bytes(json.dumps(payload).encode("utf-8"))


def _serve(conn, memory_mb: int) -> None:
    """The worker's loop: ``open``, ``page`` and ``drop`` requests, one reply each."""
    import resource

    from ..core.parsing import quiet_worker
    from ..core.readers.common import short_reason

    quiet_worker()
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    scores: OrderedDict[int, Engraver] = OrderedDict()
    to_cache: dict[int, tuple[str, str]] = {}  # score key → (cache folder, cache key)
    try:
        while True:
            msg = json.loads(conn.recv_bytes().decode("utf-8"))
            op = msg.get("op")
            try:
                if op == "open":
                    path = msg["path"]
                    if isinstance(path, dict):  # an undecodable file name, as hex bytes
                        path = bytes.fromhex(path["surrogateescape"]).decode(
                            "utf-8", "surrogateescape")
                    eng = Engraver(path, msg.get("options"))
                    key = int(msg["key"])
                    scores[key] = eng
                    if msg.get("cache"):
                        to_cache[key] = tuple(msg["cache"])
                    while len(scores) > KEEP_SCORES:
                        to_cache.pop(scores.popitem(last=False)[0], None)
                    _reply(conn, {"ok": {"key": key, "layout": eng.layout()}})
                elif op == "page":
                    eng = scores.get(msg["key"])
                    if eng is None:
                        _reply(conn, {"gone": True})
                    else:
                        scores.move_to_end(msg["key"])
                        svg = eng.page_svg(int(msg["page"]))
                        _reply(conn, {"ok": svg})
                        where = to_cache.pop(msg["key"], None) if msg["page"] == 1 else None
                        if where:  # after the reply: the page is on screen meanwhile
                            cache.write(where[0], where[1], eng.layout(), svg, eng.mei())
                elif op == "drop":
                    scores.pop(msg.get("key"), None)
                    to_cache.pop(msg.get("key"), None)
                    _reply(conn, {"ok": None})
                elif op == "quit":
                    return
                else:
                    _reply(conn, {"error": f"unknown request {op!r}"})
            except NotationError as exc:
                _reply(conn, {"error": str(exc)})
            except MemoryError:
                scores.clear()
                _reply(conn, {"error": "the score needs more memory than allowed to engrave"})
            except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
                _reply(conn, {"error": f"could not engrave this score ({short_reason(exc)})"})
    except (EOFError, BrokenPipeError, ConnectionError, KeyboardInterrupt):
        return  # the parent has gone: nothing to report to


class EngraverProcess:
    """A worker process that engraves scores (thread-safe: one request at a time).

    ``start()`` spawns it ahead of need (a spawn and verovio's import take ~0.3–1 s);
    :meth:`open` and :meth:`page` start it if it is not running. ``close()`` ends it.
    """

    def __init__(self, memory_mb: int = MEMORY_MB):
        self.memory_mb = memory_mb
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()
        # score keys: chosen here, never reused, so a key from before a restart is unknown
        # to the new worker (it answers "gone") rather than naming another score
        self._keys = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The worker process's id while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.is_alive() else None

    def start(self) -> "EngraverProcess":
        with self._lock:
            self._ensure()
        return self

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._kill()
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.memory_mb), daemon=True,
                                 name="midizero-notation")
        self._proc.start()
        child.close()

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def request(self, msg: dict, timeout_s: float, what: str):
        """Send one request and return its ``ok`` payload (None where the worker no longer
        holds the score). Raises NotationError on the worker's error, a timeout or a crash."""
        with self._lock:
            self._ensure()
            try:
                self._conn.send_bytes(json.dumps(msg).encode("utf-8"))
                if not self._conn.poll(timeout_s):
                    self._kill()
                    raise NotationError(f"{what} took longer than {timeout_s:g} s: given up")
                reply = json.loads(self._conn.recv_bytes().decode("utf-8"))
            except (EOFError, OSError, ValueError):
                code = self._proc.exitcode if self._proc is not None else None
                self._kill()
                raise NotationError(f"{what} failed: the notation process ended "
                                    f"(exit code {code})") from None
        if "error" in reply:
            raise NotationError(reply["error"])
        return reply.get("ok")

    def open(self, path: str | os.PathLike, options: dict, timeout_s: float = OPEN_TIMEOUT_S,
             cache_to: tuple[str, str] | None = None) -> tuple[int, dict]:
        """Load a score in the worker: its key there and its layout (:meth:`Engraver.layout`).
        ``cache_to``: ``(folder, key)`` where the worker stores the score (:mod:`.cache`)
        once its first page is rendered."""
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # JSON carries text: pass an undecodable name escaped
            path = {"surrogateescape": path.encode("utf-8", "surrogateescape").hex()}
        msg = {"op": "open", "path": path, "options": options, "key": next(self._keys)}
        if cache_to:
            msg["cache"] = [os.fspath(cache_to[0]), cache_to[1]]
        r = self.request(msg, timeout_s, "engraving the score")
        return int(r["key"]), r["layout"]

    def page(self, key: int, page: int, timeout_s: float = PAGE_TIMEOUT_S) -> str | None:
        """Page ``page`` of score ``key`` as SVG; None where the worker no longer holds it."""
        return self.request({"op": "page", "key": key, "page": int(page)}, timeout_s,
                            f"rendering page {page}")

    def drop(self, key: int) -> None:
        """Let the worker forget score ``key`` (its pages are no longer needed)."""
        if self._proc is not None and self._proc.is_alive():
            try:
                self.request({"op": "drop", "key": key}, PAGE_TIMEOUT_S, "closing the score")
            except NotationError:
                pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.send_bytes(json.dumps({"op": "quit"}).encode("utf-8"))
                except OSError:
                    pass
                if self._proc is not None:
                    self._proc.join(2)
            self._kill()

    def __enter__(self) -> "EngraverProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
