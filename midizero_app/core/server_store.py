"""A shared library's storage on a Milvus server: its address, its errors, its collections.

``milvus://HOST[:PORT]/NAME`` names the library NAME on a Milvus server (port 19530 by
default); ``milvus:///PATH/TO/DATA.db/NAME`` the same in an embedded Milvus Lite data
folder (one process: tests, a laptop trying it out). ``MIDIZERO_MILVUS_TOKEN`` (``user:password``
or an API key) is passed to a server that asks for one. pymilvus (and milvus-lite for the
embedded form) come with the optional extra ``server``: ``pip install midizero-app[server]``;
they are imported on the first connection, never by importing this module, and the rest of
the app never imports them.

A library NAME is four collections:

``NAME_texture``, ``NAME_melody``
    one row per library window of that view (DESIGN §3): ``id`` (the window's label in the
    library it was pushed from), ``piece``, ``start`` (its first frame) and ``vector``
    (128 float32, unit length; HNSW, inner product, the local index's M / ef_construction).
``NAME_catalogue``
    the pieces: row ``piece · 2^16 + part``; part 0 holds the piece's catalogue entry
    (``info``: path, title, composer, …, and the digest of what was pushed) and every part
    a slice of its stored frames (base64 in ``data``, made by :func:`pack_frames`: what
    positions, verification and the melody view's note runs need).
``NAME_meta``
    one record: the model id, the push's state (``uploading`` until the last piece is
    stored, then ``complete``), the label ranges and the counts that ``stats`` gives.

:class:`Server` is one client's view of those collections (every failure one
:class:`ServerError` line); :mod:`.server_push` fills them from a local library and
:mod:`.server_library` serves them to the search.
"""
from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import LibraryError
from .index_store import HNSW_EF_CONSTRUCTION, HNSW_M, VIEWS
from .model_arch import EMBED_DIM

__all__ = ["SCHEME", "ServerAddress", "ServerError", "ServerUnreachable", "ServerModelMismatch",
           "ServerIncomplete", "ServerReadOnly", "Server", "is_server_url", "parse_url",
           "connect", "pack_frames", "unpack_frames", "INSTALL_HINT"]

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
QUERY_PAGE = 4096          # rows a paged query reads at once (a server caps one at 16,384)
PIECE_INFO = ("path", "title", "composer", "format", "status", "error", "n_frames", "duration",
              "kind")
DUMMY_DIM = 2              # Milvus wants a vector field in every collection


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


class Server:
    """The collections of one shared library (module docstring) on one client; every call's
    failure is one :class:`ServerError` line."""

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
def pack_frames(blobs: tuple) -> str:
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


def unpack_frames(text: str) -> tuple:
    """The blobs :func:`pack_frames` packed (the digest as ``str``); ValueError when the text
    is cut short or not of that form."""
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

