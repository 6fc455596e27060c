"""The library's search indexes: one hnswlib index per view, derived from stored vectors.

``index-<key>.hnsw`` is derived data (DESIGN §3). It is written through
:mod:`.atomic` (a fresh temporary file, fsynced, test-loaded, renamed) and its checksum and
count are then recorded in the catalogue's ``index_state``; a file that does not match its
record — or that hnswlib refuses — is rebuilt from the stored vectors, never trusted (a
damaged hnswlib file can crash the process).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import atomic_write
from .catalogue import Catalogue, row_digest
from .errors import WriteFailed
from .frames import Frames
from .hashing import file_hash
from .model_arch import EMBED_DIM
from .locks import RWLock
from .melody import MELODY_VIEW_VERSION, library_windows
from .windows import LIBRARY_HOP, make_windows

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 256  # recall matters for 5 s queries: benchmarks/RESULTS.md
VIEWS = ("texture", "melody")  # full frames, and the key-normalised top line (core/melody.py)


class IndexView:
    """One searchable view of the library: its hnswlib index and label → (piece, frame) maps.

    ``texture`` windows are the frames themselves; ``melody`` windows are the top line and
    the score voices' lines, key-normalised (``frames.voices``, stored with the frames).
    Each view's vectors are stored under its own key (``model_id``, or
    ``melody<version>-<model_id>``) and its index in ``index-<key>.hnsw``.
    """

    def __init__(self, name: str):
        self.name = name
        self.index = None
        self.label_piece = np.zeros(0, np.int64)
        self.label_frame = np.zeros(0, np.int64)

    def key(self, model_id: str) -> str:
        # The melody view's windows are defined by core/melody.py: its version is part of
        # the key, so a library made by an older definition re-embeds instead of mixing.
        return model_id if self.name == "texture" else f"{self.name}{MELODY_VIEW_VERSION}-{model_id}"

    def windows(self, frames: Frames, win_length: int) -> tuple[np.ndarray, np.ndarray]:
        """The view's library windows of a piece: (n, win_length, 88) and start frames (n,)."""
        if self.name == "texture":
            return make_windows(frames, LIBRARY_HOP, win_length)
        return library_windows(frames, LIBRARY_HOP, win_length)

    def grow_maps(self, labels: np.ndarray, pid: int, starts: np.ndarray) -> None:
        """Record that ``labels`` are piece ``pid``'s windows starting at ``starts``."""
        size = int(labels.max()) + 1
        if size > len(self.label_piece):
            grow = max(size, int(len(self.label_piece) * 1.5))
            lp = np.full(grow, -1, np.int64)
            lf = np.zeros(grow, np.int64)
            lp[:len(self.label_piece)] = self.label_piece
            lf[:len(self.label_frame)] = self.label_frame
            self.label_piece, self.label_frame = lp, lf
        self.label_piece[labels] = pid
        self.label_frame[labels] = starts


def index_file(folder: Path, key: str) -> Path:
    return Path(folder) / f"index-{key}.hnsw"


def decode_vectors(starts: bytes, emb: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A stored vectors row: start frames (m,) int32 and embeddings (m, EMBED_DIM) float16.

    Raises ValueError when the two blobs do not belong together (a damaged row)."""
    s = np.frombuffer(starts, np.int32)
    if len(emb) != len(s) * EMBED_DIM * 2:
        raise ValueError(f"{len(s)} window starts but {len(emb)} bytes of vectors")
    e = np.frombuffer(emb, np.float16).reshape(-1, EMBED_DIM)
    if not np.isfinite(e).all():
        raise ValueError("vectors that are not finite numbers")
    return s, e


def live_vectors(cat: Catalogue, key: str) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(piece id, first label, starts, embeddings)`` of every piece stored under ``key``,
    in label order; rows that do not decode are skipped (``library check`` re-embeds them)."""
    rows = cat.q("SELECT v.piece, v.first_label, v.starts, v.emb, v.digest FROM vectors v "
                 "JOIN pieces p ON p.id = v.piece WHERE v.model_id=? ORDER BY v.first_label",
                 (key,))
    for pid, first, starts, emb, digest in rows:
        try:
            if digest and row_digest(starts, emb) != digest:
                continue
            s, e = decode_vectors(starts, emb)
        except (ValueError, TypeError):
            continue
        yield pid, first, s, e


def label_maps(vecs: list) -> tuple[np.ndarray, np.ndarray, int]:
    """Label → piece id and label → start frame arrays for ``vecs``; and the live count."""
    size = max((first + len(s) for _, first, s, _ in vecs), default=0)
    lp = np.full(size, -1, np.int64)
    lf = np.zeros(size, np.int64)
    for pid, first, starts, _ in vecs:
        lp[first:first + len(starts)] = pid
        lf[first:first + len(starts)] = starts
    return lp, lf, sum(len(s) for _, _, s, _ in vecs)


def load_file(path: Path, checksum: str, count: int):
    """The index in ``path`` if its content hash is ``checksum`` and it holds ``count``
    items; else None (hnswlib refusing the file counts as a mismatch)."""
    import hnswlib

    try:
        if not path.is_file() or file_hash(path) != checksum:
            return None
        index = hnswlib.Index(space="ip", dim=EMBED_DIM)
        index.load_index(str(path), max_elements=max(count, 1))
    except (OSError, RuntimeError, ValueError):
        return None
    if index.get_current_count() != count:
        return None
    index.set_ef(HNSW_EF_SEARCH)
    return index


def build(vecs: list, n_live: int):
    """A new index holding ``vecs`` (room for a quarter more before it must grow)."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=EMBED_DIM)
    index.init_index(max_elements=max(n_live * 5 // 4 + 1024, 1024),
                     ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=100)
    index.set_num_threads(2)
    for _, first, starts, emb in vecs:
        index.add_items(emb.astype(np.float32), np.arange(first, first + len(starts)))
    index.set_ef(HNSW_EF_SEARCH)
    return index


def save(view: IndexView, path: Path, lock: RWLock) -> tuple[int, str]:
    """Write ``view``'s index to ``path`` atomically; return its (count, checksum).

    hnswlib writes through a C++ stream that does not report a full disk, so the written
    file is loaded back before it replaces the old one: a short file is refused
    (:class:`WriteFailed`) and the old file and its record stay as they were."""
    import hnswlib

    result = {}

    def verify(tmp: Path) -> None:
        probe = hnswlib.Index(space="ip", dim=EMBED_DIM)
        try:
            probe.load_index(str(tmp), max_elements=max(result["count"], 1))
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise WriteFailed(f"the disk is full (or failing): {path.name} was not written "
                              "completely, nothing was changed; free some space and try "
                              "again") from exc
        if probe.get_current_count() != result["count"]:
            raise WriteFailed(f"{path.name} was not written completely: nothing was changed")
        result["checksum"] = file_hash(tmp)

    with atomic_write(path, verify=verify) as tmp:
        with lock.read():
            view.index.save_index(str(tmp))
            result["count"] = view.index.get_current_count()
    return result["count"], result["checksum"]


def knn(view: IndexView, lock: RWLock, emb: np.ndarray, k: int, ef: int | None
        ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest library windows: labels (n, k) int64 (−1 where fewer exist), sims (n, k)."""
    with lock.read():
        index = view.index
        n_items = index.get_current_count()
        if n_items == 0:
            return (np.full((len(emb), k), -1, np.int64), np.zeros((len(emb), k), np.float32))
        kk, breadth = min(k, n_items), max(ef or HNSW_EF_SEARCH, k)
        while True:
            index.set_ef(breadth)
            try:
                labels, dist = index.knn_query(emb, k=kk, num_threads=1)
                break
            except RuntimeError:
                # Fewer than kk windows that are not marked deleted were reached (a
                # library most of whose pieces were removed): search wider, then
                # ask for fewer; the missing ones are padded below.
                if breadth < n_items:
                    breadth = min(4 * breadth, n_items)
                elif kk > 1:
                    kk //= 2
                else:
                    return (np.full((len(emb), k), -1, np.int64),
                            np.zeros((len(emb), k), np.float32))
    label_piece = view.label_piece
    labels = labels.astype(np.int64)
    sims = (1.0 - dist).astype(np.float32)
    valid = labels < len(label_piece)
    labels[~valid | (label_piece[np.where(valid, labels, 0)] < 0)] = -1
    if kk < k:
        labels = np.pad(labels, ((0, 0), (0, k - kk)), constant_values=-1)
        sims = np.pad(sims, ((0, 0), (0, k - kk)))
    return labels, sims
