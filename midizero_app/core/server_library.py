"""A shared library on a Milvus server, served read-only: many copies of the app search one
collection.

:class:`ServerLibrary` is the read-only library the search, the follower and the CLI use
(the calls :func:`~.query.search_library` makes: ``knn``, ``label_maps`` / ``view_maps``,
``window_vectors``, ``frames_of``, ``piece``, ``pieces``, ``stats``…); the query is
embedded locally by the app's model, which must be the model the library was pushed with.
The library's address, errors and four collections are :mod:`.server_store`'s (its
docstring describes them); :func:`push`, which fills them from a local library, is
:mod:`.server_push`'s. Both modules' public names are re-exported here, where the CLI, the
app and the tests import them. pymilvus is imported on the first connection, not here.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .catalogue import decode_frames
from .errors import NoLibrary
from .frames import Frames
from .hashing import bytes_hash
from .index_store import HNSW_EF_SEARCH, VIEWS
from .model_arch import EMBED_DIM
from .server_push import PushReport, push
from .server_store import (FORMAT_VERSION, INSTALL_HINT, LOAD_TIMEOUT_S, PART_SHIFT,
                           PIECE_INFO, QUERY_PAGE, SCHEME, Server, ServerAddress, ServerError,
                           ServerIncomplete, ServerModelMismatch, ServerReadOnly,
                           ServerUnreachable, connect, is_server_url, parse_url, unpack_frames)

__all__ = ["SCHEME", "ServerAddress", "ServerError", "ServerUnreachable", "ServerModelMismatch",
           "ServerIncomplete", "ServerReadOnly", "ServerLibrary", "PushReport", "is_server_url",
           "parse_url", "push", "connect", "cache_dir", "INSTALL_HINT"]

CACHE_PIECES = 64          # pieces whose frames and window vectors stay in memory
READ_AHEAD = 32            # pieces read together when they are asked for in order


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
        self._server = Server(self.addr)
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
                out[pid] = decode_frames(unpack_frames(text))
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
