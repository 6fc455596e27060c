"""A shared library on a Milvus server: many copies of the app search one collection.

``milvus://HOST[:PORT]/NAME`` names the library NAME on a Milvus server (port 19530 by
default); ``milvus:///PATH/TO/DATA.db/NAME`` the same in an embedded Milvus Lite data
folder (one process: tests, a laptop trying it out). ``MIDIZERO_MILVUS_TOKEN`` (``user:password``
or an API key) is passed to a server that asks for one. pymilvus (and milvus-lite for the
embedded form) come with the optional extra ``server``: ``pip install midizero-app[server]``;
the rest of the app never imports them.

A library NAME is four collections:

``NAME_texture``, ``NAME_melody``
    one row per library window of that view (DESIGN §3): ``id`` (the window's label in the
    library it was pushed from), ``piece``, ``start`` (its first frame) and ``vector``
    (128 float32, unit length; HNSW, inner product, the local index's M / ef_construction).
``NAME_catalogue``
    the pieces: row ``piece · 2^16 + part``; part 0 holds the piece's catalogue entry
    (``info``: path, title, composer, …, and the digest of what was pushed) and every part
    a slice of its stored frames (base64 in ``data``: what positions, verification and the
    melody view's note runs need).
``NAME_meta``
    one record: the model id, the push's state (``uploading`` until the last piece is
    stored, then ``complete``), the label ranges and the counts that ``stats`` gives.

:func:`push` copies a local library (opened read-only) into a server; it is restartable
(pieces already there with the same digest are skipped) and writes the meta record's
``complete`` last, so a stopped push is never served as a whole library.
:class:`ServerLibrary` is the read-only library the search, the follower and the CLI use
(the calls :func:`~.query.search_library` makes: ``knn``, ``label_maps`` / ``view_maps``,
``window_vectors``, ``frames_of``, ``piece``, ``pieces``, ``stats``…); the query is
embedded locally by the app's model, which must be the model the library was pushed with.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from .catalogue import DB_NAME, decode_frames
from .errors import LibraryError, NoLibrary
from .frames import Frames
from .hashing import bytes_hash
from .index_store import (HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, VIEWS, IndexView,
                          decode_vectors)
from .model_arch import EMBED_DIM
from .paths import from_db

__all__ = ["SCHEME", "ServerAddress", "ServerError", "ServerUnreachable", "ServerModelMismatch",
           "ServerIncomplete", "ServerReadOnly", "ServerLibrary", "PushReport", "is_server_url",
           "parse_url", "push", "INSTALL_HINT"]

SCHEME = "milvus://"
DEFAULT_PORT = 19530
CONNECT_TIMEOUT_S = 5.0    # an unreachable server is said within this, not waited for
CALL_TIMEOUT_S = 60.0      # one search, query or insert
LOAD_TIMEOUT_S = 600.0     # loading a collection (Milvus Lite builds missing indexes then)
FORMAT_VERSION = 2
INSTALL_HINT = "pip install midizero-app[server]"
TOKEN_ENV = "MIDIZERO_MILVUS_TOKEN"
PART_CHARS = 60_000        # base64 characters a catalogue row holds (VARCHAR ≤ 65,535)
PART_SHIFT = 16            # catalogue row id = piece << PART_SHIFT | part
PUSH_BATCH_WINDOWS = 8192  # windows sent in one insert
PUSH_BATCH_FRAMES = 16384  # pieces are replaced in batches of about this many frames
QUERY_PAGE = 4096          # rows a paged query reads at once (a server caps one at 16,384)
CACHE_PIECES = 64          # pieces whose frames and window vectors stay in memory
READ_AHEAD = 32            # pieces read together when they are asked for in order
PIECE_INFO = ("path", "title", "composer", "format", "status", "error", "n_frames", "duration",
              "kind")
DUMMY_DIM = 2              # Milvus wants a vector field in every collection
ProgressFn = Callable[[int, int, str], None]


class ServerError(LibraryError):
    """The shared library on the server cannot do what was asked (one line for the user)."""


class ServerUnreachable(ServerError):
    """No Milvus server answers at the address (or the pymilvus client is missing)."""


class ServerModelMismatch(ServerError):
    """The shared library holds another model's vectors than the app's (or the push's)."""


class ServerIncomplete(ServerError):
    """The shared library's push has not finished: it is not served."""


class ServerReadOnly(ServerError):
    """A change asked of a shared library: it is changed by pushing a local library."""


# --- addresses ------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerAddress:
    """A parsed ``milvus://`` URL: ``uri`` as pymilvus takes it (``http://host:port`` or
    a Milvus Lite ``.db`` folder), the library ``name`` and the URL as the user wrote it."""

    uri: str
    name: str
    url: str

    @property
    def embedded(self) -> bool:
        return not self.uri.startswith("http")

    def collection(self, part: str) -> str:
        return f"{self.name}_{part}"

    def where(self) -> str:
        return (f"the Milvus Lite data folder {self.uri}" if self.embedded
                else f"the Milvus server at {self.uri[len('http://'):]}")


def is_server_url(text: str | os.PathLike | None) -> bool:
    """Whether ``text`` names a shared library (``milvus://…``) rather than a folder."""
    return isinstance(text, str) and text.lower().startswith(SCHEME)


def parse_url(url: str) -> ServerAddress:
    """``milvus://HOST[:PORT]/NAME`` or ``milvus:///PATH/DATA.db/NAME`` → :class:`ServerAddress`;
    :class:`ServerError` naming the expected form otherwise. NAME: letters, digits and
    ``_``, starting with a letter or ``_`` (Milvus's collection names), at most 200."""
    form = (f"write a shared library as milvus://HOST[:PORT]/NAME (or milvus:///PATH/DATA.db/NAME "
            f"for an embedded Milvus Lite), not {url!r:.80}")
    if not is_server_url(url):
        raise ServerError(form)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ServerError(form) from None
    host, path = parts.hostname, parts.path.rstrip("/")
    head, _, name = path.rpartition("/")
    valid = (name and len(name) <= 200 and (name[0].isalpha() or name[0] == "_")
             and all(c.isascii() and (c.isalnum() or c == "_") for c in name))
    if not valid or parts.query or parts.fragment:
        raise ServerError(form)
    if host:
        if head:
            raise ServerError(form)
        host = f"[{host}]" if ":" in host else host
        return ServerAddress(f"http://{host}:{port or DEFAULT_PORT}", name, url)
    if parts.netloc or not head.endswith(".db"):
        raise ServerError(form)
    return ServerAddress(head, name, url)


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ServerUnreachable(f"a shared library needs the Milvus client: {INSTALL_HINT}") \
            from None
    return pymilvus


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:200]


def connect(addr: ServerAddress):
    """A pymilvus ``MilvusClient`` for ``addr``; :class:`ServerUnreachable` (one line, within
    :data:`CONNECT_TIMEOUT_S`) when nothing answers there."""
    pymilvus = _pymilvus()
    if addr.embedded:
        if not Path(addr.uri).parent.is_dir():
            raise ServerUnreachable(f"no folder {Path(addr.uri).parent} for the Milvus Lite "
                                    f"data of {addr.url}")
        try:
            import milvus_lite  # noqa: F401 - pymilvus starts it for a .db path
            # its start-up failure (a folder another process holds) is said in one line
            # below; without a handler of the app's, logging would print its traceback too
            logging.getLogger("milvus_lite").addHandler(logging.NullHandler())
        except ImportError:
            raise ServerUnreachable(f"an embedded Milvus Lite needs milvus-lite: {INSTALL_HINT}") \
                from None
    try:
        return pymilvus.MilvusClient(uri=addr.uri, token=os.environ.get(TOKEN_ENV, ""),
                                     timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises several kinds for one cause
        if addr.embedded:
            raise ServerUnreachable(f"cannot open {addr.where()} ({_one_line(exc)}): is another "
                                    "process using it? An embedded Milvus Lite serves one "
                                    "process (docs/SERVER.md)") from None
        raise ServerUnreachable(f"cannot reach {addr.where()} for {addr.url} "
                                f"({_one_line(exc)}): is the server running? "
                                "(docs/SERVER.md)") from None


class _Server:
    """The collections of one shared library on one client; every call's failure is one
    :class:`ServerError` line."""

    def __init__(self, addr: ServerAddress):
        self.addr = addr
        self.client = connect(addr)
        self.names = {"meta": addr.collection("meta"), "catalogue": addr.collection("catalogue"),
                      **{v: addr.collection(v) for v in VIEWS}}

    def call(self, what: str, method: str, *args, **kwargs):
        kwargs.setdefault("timeout", CALL_TIMEOUT_S)
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a gRPC or Milvus failure: one line
            raise ServerError(f"{what} on {self.addr.where()} failed ({_one_line(exc)})") \
                from None

    def exists(self, part: str) -> bool:
        return bool(self.call("listing the collections", "has_collection", self.names[part]))

    def read_meta(self) -> dict | None:
        """The library's meta record, or None when there is no library of that name."""
        if not self.exists("meta"):
            return None
        self.call("opening the library", "load_collection", self.names["meta"],
                  timeout=LOAD_TIMEOUT_S)
        rows = self.call("reading the library's record", "query", self.names["meta"],
                         filter="id == 0", output_fields=["info"])
        return dict(rows[0]["info"]) if rows else None

    def write_meta(self, meta: dict) -> None:
        self.call("writing the library's record", "upsert", self.names["meta"],
                  [{"id": 0, "info": meta, "v": [0.0] * DUMMY_DIM}])

    def paged(self, part: str, filter: str, fields: list[str]) -> list[dict]:
        """Every row of a collection that ``filter`` selects, read page by page (by id)."""
        out, last = [], None
        while True:
            cond = filter if last is None else f"({filter}) and id > {last}"
            rows = self.call("reading the catalogue", "query", self.names[part], filter=cond,
                             output_fields=["id", *fields], limit=QUERY_PAGE)
            if not rows:
                return out
            rows = sorted(rows, key=lambda r: r["id"])
            out += rows
            if len(rows) < QUERY_PAGE:
                return out
            last = rows[-1]["id"]

    def drop(self) -> None:
        for name in self.names.values():
            if self.call("listing the collections", "has_collection", name):
                self.call("dropping the old library", "drop_collection", name)

    def create(self, views) -> None:
        """The collections that do not exist yet, with their indexes, loaded."""
        pymilvus = _pymilvus()
        dt = pymilvus.DataType
        for part in ("meta", "catalogue", *views):
            name = self.names[part]
            if self.call("listing the collections", "has_collection", name):
                self.call("loading the library", "load_collection", name,
                          timeout=LOAD_TIMEOUT_S)
                continue
            schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", dt.INT64, is_primary=True)
            index = self.client.prepare_index_params()
            if part in VIEWS:
                schema.add_field("piece", dt.INT64)
                schema.add_field("start", dt.INT32)
                schema.add_field("vector", dt.FLOAT_VECTOR, dim=EMBED_DIM)
                index.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                                params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
                index.add_index(field_name="piece", index_type="INVERTED")
            else:
                if part == "catalogue":
                    schema.add_field("piece", dt.INT64)
                    schema.add_field("part", dt.INT32)
                    schema.add_field("data", dt.VARCHAR, max_length=65535)
                    index.add_index(field_name="piece", index_type="INVERTED")
                schema.add_field("info", dt.JSON)
                schema.add_field("v", dt.FLOAT_VECTOR, dim=DUMMY_DIM)
                index.add_index(field_name="v", index_type="FLAT", metric_type="L2")
            self.call("making the library's collections", "create_collection", name,
                      schema=schema, index_params=index)
            self.call("loading the library", "load_collection", name,
                          timeout=LOAD_TIMEOUT_S)

    def delete_pieces(self, pids: list[int], views) -> None:
        if not pids:
            return
        cond = f"piece in {[int(p) for p in pids]}"
        for part in ("catalogue", *views):
            self.call("removing old pieces", "delete", self.names[part], filter=cond)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass


# --- frames as catalogue parts ----------------------------------------------------------
def _pack(blobs: tuple) -> str:
    """A frames row's blobs (onset, offsets, pitches, measure, beat, voices, digest) as one
    base64 string: each blob's length (8 bytes, −1 for none) then its bytes."""
    out = bytearray()
    for b in blobs:
        if b is None:
            out += (-1).to_bytes(8, "little", signed=True)
        else:
            b = b.encode() if isinstance(b, str) else bytes(b)
            out += len(b).to_bytes(8, "little", signed=True) + b
    return base64.b64encode(bytes(out)).decode("ascii")


def _unpack(text: str) -> tuple:
    raw, blobs, i = base64.b64decode(text), [], 0
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 8], "little", signed=True)
        i += 8
        if n < 0:
            blobs.append(None)
            continue
        blobs.append(raw[i:i + n])
        i += n
    if len(blobs) != 7:
        raise ValueError("a piece's stored frames are cut short")
    blobs[6] = blobs[6].decode() if blobs[6] is not None else None
    return tuple(blobs)


def _printable(path: str) -> str:
    """A path as JSON can carry it (a name that is not UTF-8 keeps a replacement mark)."""
    return os.fsencode(path).decode("utf-8", "replace")


# --- push -------------------------------------------------------------------------------
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
    server = _Server(parse_url(url))
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


def _push_batch(server: _Server, src: _LocalSource, pids: list[int], pieces: dict,
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
        text = _pack(row) if row is not None else ""
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


# --- the served library -----------------------------------------------------------------
def cache_dir(addr: ServerAddress) -> Path:
    """The folder on this machine for caches of the shared library at ``addr`` (made when a
    cache is written): the user cache dir's ``shared/NAME-<hash of the URL>``."""
    import platformdirs

    tag = bytes_hash(addr.url.encode())[:12]
    return Path(platformdirs.user_cache_dir("midizero", "MIDI-Zero")) / "shared" / f"{addr.name}-{tag}"


class ServerLibrary:
    """A shared library on a Milvus server, read-only, with the calls the search makes on a
    :class:`~.library.Library`.

    Parameters
    ----------
    url : ``milvus://HOST[:PORT]/NAME`` (or ``milvus:///PATH/DATA.db/NAME``).
    model : the model file that embeds queries (default: the bundled model); it must be
        the one the library was pushed with.

    Raises one line for the user: :class:`ServerUnreachable` (nothing answers, within
    :data:`CONNECT_TIMEOUT_S`), :class:`~.errors.NoLibrary` (no library of that name),
    :class:`ServerIncomplete` (its push has not finished), :class:`ServerModelMismatch`.
    """

    index_kind = "milvus"
    read_only = True  # changed by pushing from a local library, never through this object

    def __init__(self, url: str, model: str | Path | None = None):
        self.addr = parse_url(url)
        self.url = self.addr.url
        self.path = cache_dir(self.addr)  # this machine's caches for it (recordings' notes)
        self._server = _Server(self.addr)
        self._lock = threading.RLock()
        try:
            meta = self._server.read_meta()
            if meta is None:
                raise NoLibrary(f"there is no shared library {self.addr.name} on "
                                f"{self.addr.where()}: push one first (`midizero library push "
                                f"--library FOLDER --to {url}`)")
            if meta.get("state") != "complete" or meta.get("format") != FORMAT_VERSION:
                raise ServerIncomplete(f"the shared library {url} is not complete (its push has "
                                       "not finished): run `midizero library push` again")
            self._meta = meta
            self._views = tuple(meta.get("views", ()))
            for part in ("catalogue", *self._views):
                self._server.call("opening the library", "load_collection",
                                  self._server.names[part], timeout=LOAD_TIMEOUT_S)
            self._maps = {v: (np.full(int(meta["labels"].get(v, 0)), -1, np.int64),
                              np.zeros(int(meta["labels"].get(v, 0)), np.int64))
                          for v in VIEWS}
            self._frames: dict[int, Frames] = {}
            self._vectors: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
            self._info: dict[int, dict] = {}
            self._labels: dict[int, dict] = {}  # piece → view → [first label, windows]
            self._order: list[int] = []
            self._order_at: dict[int, int] = {}
            self._last_read = -1
            self._embedder = None
            self._model = model
            emb = self.embedder
            if emb.model_id != meta.get("model_id"):
                raise ServerModelMismatch(
                    f"the shared library {url} was pushed with model {meta.get('model_id')}, "
                    f"this app's model is {emb.model_id}: push it again with this model, or "
                    "use that model (--model)")
        except BaseException:
            self._server.close()
            raise

    # --- model ------------------------------------------------------------------------
    @property
    def embedder(self):
        """The app's model (the bundled one unless ``model`` was given)."""
        if self._embedder is None:
            from .inference import default_model_path, load_embedder

            self._embedder = load_embedder(self._model or default_model_path())
        return self._embedder

    @property
    def model_id(self) -> str:
        return self._meta["model_id"]

    # --- search -----------------------------------------------------------------------
    def knn(self, emb: np.ndarray, k: int, view: str = "texture", ef: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest library windows of a view for query vectors ``emb`` (n, EMBED_DIM):
        labels (n, k) int64 (−1 where fewer exist) and inner-product similarities (n, k)
        float32. The hits' pieces and start frames are entered in :meth:`view_maps`."""
        n = len(emb)
        labels = np.full((n, k), -1, np.int64)
        sims = np.zeros((n, k), np.float32)
        if not n or view not in self._views:
            return labels, sims
        breadth = max(ef or HNSW_EF_SEARCH, k)
        res = self._server.call("searching", "search", self._server.names[view],
                                data=np.asarray(emb, np.float32).tolist(), limit=k,
                                search_params={"metric_type": "IP", "params": {"ef": breadth}},
                                output_fields=["piece", "start"])
        lp, lf = self._maps[view]
        hit_l, hit_p, hit_f = [], [], []
        for i, hits in enumerate(res):
            for j, h in enumerate(list(hits)[:k]):
                ent = h["entity"]
                labels[i, j] = h["id"]
                sims[i, j] = h["distance"]
                hit_l.append(h["id"])
                hit_p.append(ent["piece"])
                hit_f.append(ent["start"])
        if hit_l:
            hl = np.asarray(hit_l, np.int64)
            if hl.max() >= len(lp):  # labels past the record's: grow the maps
                with self._lock:
                    lp, lf = self._grow(view, int(hl.max()) + 1)
            lp[hl] = hit_p
            lf[hl] = hit_f
        return labels, np.clip(sims, -1.0, 1.0)

    def _grow(self, view: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        lp, lf = self._maps[view]
        if size > len(lp):
            nlp, nlf = np.full(size, -1, np.int64), np.zeros(size, np.int64)
            nlp[:len(lp)], nlf[:len(lf)] = lp, lf
            self._maps[view] = nlp, nlf
        return self._maps[view]

    @property
    def label_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The texture view's label → piece id and label → first frame maps."""
        return self.view_maps("texture")

    def view_maps(self, view: str) -> tuple[np.ndarray, np.ndarray]:
        """A view's label → piece id (−1 unknown) and label → first frame maps, filled for
        every window :meth:`knn` has returned."""
        return self._maps[view]

    def window_vectors(self, pid: int, first_frame: float, last_frame: float,
                       view: str = "texture") -> tuple[np.ndarray, np.ndarray]:
        """A piece's windows that start in frames [first_frame, last_frame]: start frames
        (m,) int64 and unit vectors (m, EMBED_DIM) float32 (empty if none). A piece's
        windows are read once and kept for the next :data:`CACHE_PIECES` pieces."""
        key = (view, int(pid))
        got = self._vectors.pop(key, None)
        if got is None:
            got = self._read_vectors(view, int(pid))
        self._vectors[key] = got
        while len(self._vectors) > CACHE_PIECES:
            self._vectors.pop(next(iter(self._vectors)))
        starts, vecs = got
        lo, hi = np.searchsorted(starts, [first_frame, last_frame + 1e-9])
        return starts[lo:hi], vecs[lo:hi]

    def _read_vectors(self, view: str, pid: int) -> tuple[np.ndarray, np.ndarray]:
        """A piece's windows of a view, by their labels (the piece's range, recorded with its
        catalogue entry): reading by primary key, not by a filter over every window."""
        try:
            if pid not in self._labels:
                self.piece(pid)  # its entry records its label ranges
            first, n = (int(x) for x in self._labels[pid].get(view, (0, 0)))
        except (KeyError, TypeError, ValueError):
            first, n = 0, 0  # an unknown piece, or one without windows in this view
        rows = []
        for lo in range(first, first + n, QUERY_PAGE):
            ids = list(range(lo, min(lo + QUERY_PAGE, first + n)))
            rows += self._server.call("reading windows", "get", self._server.names[view], ids=ids,
                                      output_fields=["start", "vector"])
        rows.sort(key=lambda r: r["start"])
        starts = np.array([r["start"] for r in rows], np.int64)
        vecs = np.array([r["vector"] for r in rows], np.float32).reshape(-1, EMBED_DIM)
        return starts, np.nan_to_num(vecs, nan=0.0, posinf=0.0, neginf=0.0)

    # --- reading ----------------------------------------------------------------------
    def frames_of(self, pid: int) -> Frames:
        """A piece's stored frames (cached; pieces asked for in the order :meth:`pieces`
        listed them are read :data:`READ_AHEAD` at a time). KeyError for an unknown piece."""
        pid = int(pid)
        f = self._frames.pop(pid, None)
        if f is None:
            want = [pid]
            at = self._order_at.get(self._last_read)
            if at is not None and at + 1 < len(self._order) and self._order[at + 1] == pid:
                want = self._order[at + 1:at + 1 + READ_AHEAD]
            got = self._read_frames(want)
            if pid not in got:
                raise KeyError(pid)
            for other, frames in got.items():
                self._frames[other] = frames
            f = got[pid]
        self._last_read = pid
        self._frames[pid] = f
        while len(self._frames) > max(CACHE_PIECES, READ_AHEAD + 1):
            self._frames.pop(next(iter(self._frames)))
        return f

    def _read_frames(self, pids: list[int]) -> dict[int, Frames]:
        from .errors import LibraryDamaged

        rows = self._server.paged("catalogue", f"piece in {pids}", ["piece", "part", "data"])
        parts: dict[int, list] = {}
        for r in rows:
            parts.setdefault(int(r["piece"]), []).append((int(r["part"]), r["data"]))
        out = {}
        for pid, chunks in parts.items():
            text = "".join(d for _, d in sorted(chunks))
            if not text:
                continue
            try:
                out[pid] = decode_frames(_unpack(text))
            except (ValueError, TypeError) as exc:
                raise LibraryDamaged(f"the stored notes of piece {pid} on {self.addr.url} are "
                                     f"damaged ({exc}): push the library again") from None
        return out

    def piece(self, pid: int) -> dict:
        """One piece's catalogue entry (``id``, ``path``, ``title``, ``composer``, …);
        KeyError if unknown."""
        pid = int(pid)
        if pid not in self._info:
            rows = self._server.call("reading the catalogue", "query",
                                     self._server.names["catalogue"],
                                     filter=f"id == {pid << PART_SHIFT}", output_fields=["info"])
            if not rows:
                raise KeyError(pid)
            self._info[pid] = self._entry(pid, rows[0]["info"])
            self._labels[pid] = rows[0]["info"].get("labels", {})
        return dict(self._info[pid])

    @staticmethod
    def _entry(pid: int, info: dict) -> dict:
        return {"id": pid, **{k: info.get(k) for k in PIECE_INFO}}

    def pieces(self, status: str | None = None) -> list[dict]:
        """Every piece (or those with ``status``), by path."""
        rows = self._server.paged("catalogue", "part == 0", ["piece", "info"])
        for r in rows:
            self._info[int(r["piece"])] = self._entry(int(r["piece"]), r["info"])
            self._labels[int(r["piece"])] = r["info"].get("labels", {})
        listed = sorted(self._info.values(), key=lambda p: p["path"] or "")
        self._order = [p["id"] for p in listed]  # frames_of reads ahead in this order
        self._order_at = {pid: i for i, pid in enumerate(self._order)}
        return [dict(p) for p in listed if status is None or p["status"] == status]

    def content_state(self) -> tuple[int, int, int]:
        """(searchable pieces, largest id, their frames), as recorded by the push."""
        a, b, c = self._meta.get("content_state", (0, 0, 0))
        return int(a), int(b), int(c)

    def folders(self) -> list[str]:
        return []

    def stats(self) -> dict:
        """Counts as the push recorded them, the model, where the library is served."""
        m = self._meta
        return {"library": self.addr.url, "pieces": m.get("pieces", 0), "ok": m.get("ok", 0),
                "failed": m.get("failed", 0), "repaired": m.get("repaired", 0),
                "frames": m.get("frames", 0), "windows": m.get("windows", 0), "folders": 0,
                "model_id": m.get("model_id"), "model_path": None, "index_kind": self.index_kind,
                "index_bytes": 0, "database_bytes": 0, "server": self.addr.where(),
                "pushed": m.get("finished")}

    def search(self, query, **kwargs):
        """Search with a query file path, Notes or Frames; see :func:`query.search_library`."""
        from .query import search_library

        return search_library(self, query, **kwargs)

    def load_index(self, *args, **kwargs) -> None:
        """Nothing to load: the server holds the index."""

    # --- changes ----------------------------------------------------------------------
    def _read_only(self, *args, **kwargs):
        raise ServerReadOnly(f"the shared library {self.addr.url} is changed by pushing a "
                             "local library to it (`midizero library push`)")

    add = remove = rescan = check = set_model = choose_index_kind = convert_index_kind = \
        _read_only

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> "ServerLibrary":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
