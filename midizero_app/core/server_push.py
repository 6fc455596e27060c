"""Pushing a local library into a shared library on a Milvus server.

:func:`push` copies a local library (its catalogue opened read-only) into the collections
that :mod:`.server_store`'s docstring describes; it is restartable (pieces already there
with the same digest are skipped) and writes the meta record's ``complete`` last, so a
stopped push is never served as a whole library.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .catalogue import DB_NAME
from .errors import LibraryError, NoLibrary
from .hashing import bytes_hash
from .index_store import VIEWS, IndexView, decode_vectors
from .paths import from_db
from .server_store import (DUMMY_DIM, FORMAT_VERSION, PART_CHARS, PART_SHIFT, PIECE_INFO,
                           Server, ServerModelMismatch, pack_frames, parse_url)

__all__ = ["PushReport", "push"]

PUSH_BATCH_WINDOWS = 8192  # windows sent in one insert
PUSH_BATCH_FRAMES = 16384  # pieces are replaced in batches of about this many frames
ProgressFn = Callable[[int, int, str], None]


def _printable(path: str) -> str:
    """A path as JSON can carry it (a name that is not UTF-8 keeps a replacement mark)."""
    return os.fsencode(path).decode("utf-8", "replace")


@dataclass
class PushReport:
    """What :func:`push` did: pieces sent, already there, removed from the server; windows
    sent per view."""

    sent: int = 0
    unchanged: int = 0
    removed: int = 0
    windows: dict = field(default_factory=dict)
    cancelled: bool = False

    def summary(self) -> str:
        wins = ", ".join(f"{n:,} {v} windows" for v, n in self.windows.items())
        return (f"{self.sent} pieces sent ({wins or 'no windows'}), {self.unchanged} already "
                f"there, {self.removed} removed" + (" (cancelled)" if self.cancelled else ""))


class _LocalSource:
    """A local library's catalogue opened read-only (nothing in its folder is written)."""

    def __init__(self, folder: Path):
        db = Path(folder) / DB_NAME
        if not db.is_file():
            raise NoLibrary(f"there is no library in {folder}: index a folder into it first "
                            f"(`midizero index FOLDER --library {folder}`)")
        try:
            self.db = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            self.db.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
            row = self.db.execute("SELECT value FROM meta WHERE key='model_id'").fetchone()
        except sqlite3.Error as exc:
            raise LibraryError(f"cannot read the library in {folder} ({exc})") from None
        if not row or not row[0]:
            raise LibraryError(f"the library in {folder} has no model yet: index a folder "
                               "into it first")
        self.model_id = str(row[0])

    def q(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.db.execute(sql, args).fetchall()

    def pieces(self) -> dict[int, dict]:
        cols = ("id", *PIECE_INFO)
        rows = self.q(f"SELECT {', '.join(cols)} FROM pieces ORDER BY id")
        out = {}
        for r in rows:
            d = dict(zip(cols, r))
            d["path"] = _printable(from_db(d["path"]))
            out[int(d.pop("id"))] = d
        return out

    def digests(self, keys: dict[str, str]) -> dict[int, list]:
        """Per piece: the digests of its frames row and its vectors row of each view."""
        out: dict[int, list] = {}
        for pid, digest in self.q("SELECT piece, digest FROM frames"):
            out.setdefault(int(pid), []).append(f"f:{digest}")
        for view, key in keys.items():
            for pid, digest, first in self.q("SELECT piece, digest, first_label FROM vectors "
                                             "WHERE model_id=?", (key,)):
                out.setdefault(int(pid), []).append(f"{view}:{digest}:{first}")
        return out

    def frames_row(self, pid: int) -> tuple | None:
        rows = self.q("SELECT onset, offsets, pitches, measure, beat, voices, digest FROM frames "
                      "WHERE piece=?", (pid,))
        return rows[0] if rows else None

    def vectors(self, pid: int, key: str) -> tuple[int, np.ndarray, np.ndarray] | None:
        """A piece's (first label, starts (m,) int32, vectors (m, EMBED_DIM) float32)."""
        rows = self.q("SELECT first_label, starts, emb FROM vectors WHERE piece=? AND model_id=?",
                      (pid, key))
        if not rows:
            return None
        try:
            starts, emb = decode_vectors(rows[0][1], rows[0][2])
        except (ValueError, TypeError):
            return None  # a damaged row: `library check` re-embeds it locally
        return int(rows[0][0]), starts, emb.astype(np.float32)

    def next_labels(self, keys: dict[str, str]) -> dict[str, int]:
        out = {}
        for view, key in keys.items():
            row = self.q("SELECT MAX(first_label + length(starts) / 4) FROM vectors "
                         "WHERE model_id=?", (key,))
            out[view] = int(row[0][0] or 0)
        return out

    def close(self) -> None:
        self.db.close()


def _view_keys(model_id: str, views) -> dict[str, str]:
    return {v: IndexView(v).key(model_id) for v in views}


def push(folder: str | Path, url: str, views=VIEWS, replace: bool = False,
         progress: ProgressFn | None = None, cancel: threading.Event | None = None
         ) -> PushReport:
    """Copy the local library in ``folder`` into the shared library ``url``.

    The local library is read only (its catalogue opened read-only). Pieces already on the
    server with the same digest are skipped, so a stopped push carries on where it stopped;
    pieces the local library no longer has are removed. The server's record says
    ``uploading`` from the start and ``complete`` only after the last piece, so clients
    refuse a half-finished library. A library of that name made with another model is
    refused (:class:`ServerModelMismatch`) unless ``replace`` drops it first.
    """
    src = _LocalSource(Path(folder))
    server = Server(parse_url(url))
    report = PushReport()
    try:
        views = tuple(v for v in VIEWS if v in views)
        meta = server.read_meta()
        if meta is not None and meta.get("model_id") != src.model_id and not replace:
            raise ServerModelMismatch(
                f"{url} holds vectors of model {meta.get('model_id')}, the library in {folder} "
                f"those of {src.model_id}: push to another name, or with --replace to drop it")
        if replace or (meta is not None and (meta.get("format") != FORMAT_VERSION
                                             or tuple(meta.get("views", ())) != views)):
            server.drop()
            meta = None
        server.create(views)
        keys = _view_keys(src.model_id, views)
        record = {"format": FORMAT_VERSION, "model_id": src.model_id, "views": list(views),
                  "state": "uploading", "started": time.time()}
        server.write_meta(record)
        pieces = src.pieces()
        digests = src.digests(keys)
        want = {pid: bytes_hash(json.dumps([info, sorted(digests.get(pid, []))],
                                           sort_keys=True).encode())
                for pid, info in pieces.items()}
        there = {int(r["piece"]): r["info"].get("digest") for r in
                 server.paged("catalogue", "part == 0", ["piece", "info"])}
        gone = sorted(set(there) - set(pieces))
        todo = [pid for pid in pieces if there.get(pid) != want[pid]]
        # every row of a piece that goes or changes is removed before anything is sent: a
        # label the local library gave another piece since is then never held twice
        stale = sorted(set(gone) | set(todo))
        for i in range(0, len(stale), 1000):
            server.delete_pieces(stale[i:i + 1000], views)
        report.removed = len(gone)
        report.unchanged = len(pieces) - len(todo)
        report.windows = {v: 0 for v in views}
        batch: list[int] = []
        size = 0
        for n, pid in enumerate(todo, 1):
            if cancel is not None and cancel.is_set():
                report.cancelled = True  # the batch begun is not marked done: sent again
                break
            batch.append(pid)
            size += int(pieces[pid].get("n_frames") or 0)
            if size >= PUSH_BATCH_FRAMES or n == len(todo):
                _push_batch(server, src, batch, pieces, want, keys, report)
                batch, size = [], 0
                if progress:
                    progress(n, len(todo), "pushing")
        if report.cancelled:
            return report
        ok = [p for p in pieces.values() if p["status"] != "failed"]
        record.update(
            state="complete", finished=time.time(), labels=src.next_labels(keys),
            pieces=len(pieces), ok=len(ok),
            failed=sum(p["status"] == "failed" for p in pieces.values()),
            repaired=sum(p["status"] == "repaired" for p in pieces.values()),
            frames=sum(int(p["n_frames"] or 0) for p in pieces.values()),
            windows=int(src.q("SELECT COALESCE(SUM(length(starts) / 4), 0) FROM vectors "
                              "WHERE model_id=?", (keys.get("texture", ""),))[0][0]),
            content_state=[len(ok), max(pieces, default=0),
                           sum(int(p["n_frames"] or 0) for p in ok)])
        for part in ("catalogue", *views):
            server.call("storing the pieces", "flush", server.names[part])
        server.write_meta(record)  # last: from now on the library is served
        return report
    finally:
        src.close()
        server.close()


def _push_batch(server: Server, src: _LocalSource, pids: list[int], pieces: dict,
                want: dict, keys: dict, report: PushReport) -> None:
    """Send these pieces (their old rows are gone): their windows, then their frames'
    parts, their part 0 (with the digest that marks them done) last."""
    ranges: dict[int, dict] = {pid: {} for pid in pids}
    for view, key in keys.items():
        rows = []
        for pid in pids:
            got = src.vectors(pid, key)
            if got is None:
                continue
            first, starts, emb = got
            ranges[pid][view] = [first, len(starts)]
            rows += [{"id": first + i, "piece": pid, "start": int(s), "vector": v}
                     for i, (s, v) in enumerate(zip(starts, emb.tolist()))]
        for i in range(0, len(rows), PUSH_BATCH_WINDOWS):
            server.call("sending windows", "insert", server.names[view],
                        rows[i:i + PUSH_BATCH_WINDOWS])
        report.windows[view] += len(rows)
    heads, parts = [], []
    for pid in pids:
        row = src.frames_row(pid)
        text = pack_frames(row) if row is not None else ""
        chunks = [text[i:i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        info = {**pieces[pid], "digest": want[pid], "parts": len(chunks),
                "labels": ranges[pid]}
        for i, chunk in enumerate(chunks):
            target = heads if i == 0 else parts
            target.append({"id": (pid << PART_SHIFT) | i, "piece": pid, "part": i, "data": chunk,
                           "info": info if i == 0 else {}, "v": [0.0] * DUMMY_DIM})
    for rows in (parts, heads):
        for i in range(0, len(rows), 64):
            server.call("sending the catalogue", "insert", server.names["catalogue"],
                        rows[i:i + 64])
    report.sent += len(pids)
