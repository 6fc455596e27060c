"""The library's search indexes: one per view, derived from stored vectors, of one kind.

A library's *index kind* is chosen when it is made (``midizero index --index-kind``) and
recorded in its catalogue (``meta.index_kind``); an existing library keeps its kind.

``hnsw-float`` (the default)
    hnswlib's graph over float32 vectors: the best recall and the fastest search for a
    library that fits in memory, at about 660 bytes a window (benchmarks/RESULTS.md).
``ivf-sq6``
    faiss's inverted file over 6-bit scalar-quantised vectors: about 105 bytes a window in
    memory and on disk (the vectors' codes and their 8-byte labels), for libraries of
    millions of windows; its stored vectors are kept as int8 (128 bytes a window, against
    float16's 256). See :class:`IvfSq`.

``index-<key>.<suffix>`` is derived data (DESIGN §3). It is written through :mod:`.atomic`
(a fresh temporary file, fsynced, test-loaded, renamed) and its checksum and count are then
recorded in the catalogue's ``index_state``; a file that does not match its record — or
that its library refuses — is rebuilt from the stored vectors, never trusted (a damaged
hnswlib file can crash the process).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .atomic import atomic_write
from .catalogue import Catalogue, row_digest
from .errors import LibraryError, WriteFailed
from .frames import Frames
from .hashing import checksum_matches, split_file_hash
from .model_arch import EMBED_DIM
from .locks import RWLock
from .melody import MELODY_VIEW_VERSION, library_windows
from .windows import LIBRARY_HOP, make_windows

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 256  # recall matters for 5 s queries: benchmarks/RESULTS.md
VIEWS = ("texture", "melody")  # full frames, and the key-normalised top line (core/melody.py)

HNSW_FLOAT = "hnsw-float"
IVF_SQ6 = "ivf-sq6"
INDEX_KINDS = (HNSW_FLOAT, IVF_SQ6)
DEFAULT_KIND = HNSW_FLOAT
SUFFIXES = {HNSW_FLOAT: ".hnsw", IVF_SQ6: ".ivfsq"}

# ivf-sq6: one inverted list per IVF_WINDOWS_PER_LIST windows (at least IVF_MIN_LISTS,
# at most IVF_MAX_LISTS); a search visits IVF_NPROBE lists (benchmarks/scale_bench.py).
# The lists' centroids are fitted on IVF_POINTS_PER_LIST windows a list (k-means wants
# about 39), at least IVF_TRAIN_SAMPLE: 16,384 lists take 640 k windows to fit.
IVF_WINDOWS_PER_LIST = 256
IVF_MIN_LISTS = 1
IVF_MAX_LISTS = 16384
IVF_NPROBE = 16
IVF_POINTS_PER_LIST = 39
IVF_TRAIN_SAMPLE = 100_000
IVF_HNSW_QUANTISER_FROM = 4096  # lists from which the nearest lists are found by a graph
IVF_OUTGROWN = 4  # rebuilt (new lists) once it holds this many times what it was fitted on
IVF_MAGIC = b"MZIVFSQ1"
# From this many texture windows (about 2,000 pieces) a library is better served by ivf-sq6:
# there hnsw-float's index file is 330 MB and takes 5–6 s to open (1.3 s at 100 k windows,
# 12 s at 1 M on the benchmark VM), ivf-sq6's 53 MB and under a second, with the same Top-1
# (benchmarks/RESULTS.md, "Indexing and scale").
COMPACT_FROM_WINDOWS = 500_000
INT8_SCALE = 127.0  # int8 stored vectors: unit vectors' components × 127, rounded


class IndexView:
    """One searchable view of the library: its index and label → (piece, frame) maps.

    ``texture`` windows are the frames themselves; ``melody`` windows are the top line and
    the score voices' lines, key-normalised (``frames.voices``, stored with the frames).
    Each view's vectors are stored under its own key (``model_id``, or
    ``melody<version>-<model_id>``) and its index in ``index-<key>.<suffix>``;
    ``index`` is a :class:`HnswFloat` or an :class:`IvfSq` (None until loaded).
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


def check_kind(kind: str) -> str:
    """``kind`` if it is an index kind, else a :class:`LibraryError` naming the kinds."""
    if kind not in INDEX_KINDS:
        raise LibraryError(f"unknown index kind {kind!r:.40}: choose {' or '.join(INDEX_KINDS)}")
    return kind


def suggested_kind(windows: int) -> str:
    """The index kind for a library of ``windows`` texture windows (:data:`COMPACT_FROM_WINDOWS`)."""
    return IVF_SQ6 if windows >= COMPACT_FROM_WINDOWS else DEFAULT_KIND


def index_file(folder: Path, key: str, kind: str = DEFAULT_KIND) -> Path:
    return Path(folder) / f"index-{key}{SUFFIXES[kind]}"


def index_files(folder: Path) -> list[Path]:
    """Every index file in ``folder``, of any kind."""
    return sorted(p for s in SUFFIXES.values() for p in Path(folder).glob(f"index-*{s}"))


# --- stored vectors -------------------------------------------------------------------
def encode_vectors(emb: np.ndarray, kind: str = DEFAULT_KIND) -> bytes:
    """Window embeddings (m, EMBED_DIM) as the catalogue stores them for ``kind``: float16
    (256 bytes a window), or int8 of the components × :data:`INT8_SCALE` for ``ivf-sq6``
    (128 bytes; unit vectors, so every component fits)."""
    if kind == HNSW_FLOAT:
        return np.ascontiguousarray(emb, np.float16).tobytes()
    q = np.clip(np.rint(np.asarray(emb, np.float32) * INT8_SCALE), -127, 127)
    return np.ascontiguousarray(q, np.int8).tobytes()


def vector_width(n: int, n_bytes: int) -> int:
    """Bytes a window of a stored row with ``n`` windows and ``n_bytes`` of vectors: 2 ×
    EMBED_DIM (float16) or EMBED_DIM (int8); 0 when it is neither (a damaged row)."""
    for width in (2 * EMBED_DIM, EMBED_DIM):
        if n_bytes == n * width:
            return width
    return 0 if n else 2 * EMBED_DIM


def decode_block(blob: bytes, width: int) -> np.ndarray:
    """Stored vectors of ``width`` bytes a window → (m, EMBED_DIM) float32."""
    if width == EMBED_DIM:
        return np.frombuffer(blob, np.int8).reshape(-1, EMBED_DIM).astype(np.float32) / INT8_SCALE
    return np.frombuffer(blob, np.float16).reshape(-1, EMBED_DIM).astype(np.float32)


def decode_vectors(starts: bytes, emb: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A stored vectors row: start frames (m,) int32 and embeddings (m, EMBED_DIM) float16
    (stored as float16, or as int8 and scaled back).

    Raises ValueError when the two blobs do not belong together (a damaged row)."""
    s = np.frombuffer(starts, np.int32)
    width = vector_width(len(s), len(emb))
    if not width:
        raise ValueError(f"{len(s)} window starts but {len(emb)} bytes of vectors")
    if width == EMBED_DIM:
        e = decode_block(emb, width).astype(np.float16)
    else:
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


def stored_labels(cat: Catalogue, key: str) -> list[tuple[int, int, np.ndarray, None]]:
    """``(piece id, first label, starts, None)`` of every piece stored under ``key`` whose
    vectors have a stored width (:func:`vector_width`), in label order — without reading
    the vectors: what loading a saved index needs (its maps and live count), at a hundredth
    of the time of :func:`live_vectors` (whose checksums a rebuild needs)."""
    rows = cat.q("SELECT v.piece, v.first_label, v.starts, length(v.emb) FROM vectors v "
                 "JOIN pieces p ON p.id = v.piece WHERE v.model_id=? ORDER BY v.first_label",
                 (key,))
    out = []
    for pid, first, starts, n_bytes in rows:
        if not isinstance(starts, bytes) or len(starts) % 4 or first is None:
            continue
        s = np.frombuffer(starts, np.int32)
        if vector_width(len(s), n_bytes or 0):
            out.append((pid, first, s, None))
    return out


def label_maps(vecs: list) -> tuple[np.ndarray, np.ndarray, int]:
    """Label → piece id and label → start frame arrays for ``vecs``; and the live count."""
    size = max((first + len(s) for _, first, s, _ in vecs), default=0)
    lp = np.full(size, -1, np.int64)
    lf = np.zeros(size, np.int64)
    for pid, first, starts, _ in vecs:
        lp[first:first + len(starts)] = pid
        lf[first:first + len(starts)] = starts
    return lp, lf, sum(len(s) for _, _, s, _ in vecs)


def _short_write(path: Path, exc: BaseException | None = None) -> WriteFailed:
    if exc is not None:
        return WriteFailed(f"the disk is full (or failing): {path.name} was not written "
                           "completely, nothing was changed; free some space and try again")
    return WriteFailed(f"{path.name} was not written completely: nothing was changed")


# --- hnsw-float -----------------------------------------------------------------------
class HnswFloat:
    """hnswlib's HNSW graph over float32 vectors, labels as ids; removed windows are marked
    deleted (``count`` includes them until a rebuild). Other hnswlib methods
    (``get_items``…) pass through to the hnswlib index."""

    kind = HNSW_FLOAT

    def __init__(self, index):
        self.index = index

    def __getattr__(self, name):
        return getattr(self.index, name)

    @classmethod
    def build(cls, vecs: Iterable, n_live: int) -> "HnswFloat":
        """A new index holding ``vecs`` (room for a quarter more before it must grow)."""
        import hnswlib

        index = hnswlib.Index(space="ip", dim=EMBED_DIM)
        index.init_index(max_elements=max(n_live * 5 // 4 + 1024, 1024),
                         ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=100)
        index.set_num_threads(2)
        for _, first, starts, emb in vecs:
            index.add_items(emb.astype(np.float32), np.arange(first, first + len(starts)))
        index.set_ef(HNSW_EF_SEARCH)
        return cls(index)

    @classmethod
    def load(cls, path: Path, count: int, deleted: int) -> "HnswFloat | None":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=EMBED_DIM)
        try:
            index.load_index(str(path), max_elements=max(count, 1))
        except (RuntimeError, ValueError, MemoryError):
            return None
        if index.get_current_count() != count:
            return None
        index.set_ef(HNSW_EF_SEARCH)
        return cls(index)

    def count(self) -> int:
        """Windows in the file's record: live ones and those marked deleted."""
        return self.index.get_current_count()

    def stored(self) -> int:
        """Windows the written file holds (deleted ones with their marks)."""
        return self.index.get_current_count()

    def get_current_count(self) -> int:
        return self.index.get_current_count()

    def add(self, emb: np.ndarray, labels: np.ndarray) -> None:
        """Add vectors (m, EMBED_DIM) under ``labels`` (m,)."""
        index = self.index
        if index.get_max_elements() < index.get_current_count() + len(emb):
            index.resize_index(int((index.get_current_count() + len(emb)) * 1.5) + 1024)
        index.add_items(emb, labels)

    def remove(self, labels: Iterable[int]) -> None:
        for label in labels:
            try:
                self.index.mark_deleted(int(label))
            except RuntimeError:
                pass  # not in this index file (e.g. added after its last save)

    def outgrown(self) -> bool:
        return False

    def write(self, tmp: Path) -> None:
        self.index.save_index(str(tmp))

    @staticmethod
    def verify(tmp: Path, count: int) -> None:
        """Load the written file back: hnswlib writes through a C++ stream that does not
        report a full disk."""
        import hnswlib

        probe = hnswlib.Index(space="ip", dim=EMBED_DIM)
        try:
            probe.load_index(str(tmp), max_elements=max(count, 1))
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise _short_write(tmp, exc) from exc
        if probe.get_current_count() != count:
            raise _short_write(tmp)

    def search(self, emb: np.ndarray, k: int, ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Labels (n, k) int64 and similarities (n, k), −1 where fewer were found."""
        index = self.index
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
        labels = labels.astype(np.int64)
        sims = (1.0 - dist).astype(np.float32)
        if kk < k:
            labels = np.pad(labels, ((0, 0), (0, k - kk)), constant_values=-1)
            sims = np.pad(sims, ((0, 0), (0, k - kk)))
        return labels, sims


# --- ivf-sq6 --------------------------------------------------------------------------
def _faiss():
    import faiss

    return faiss


def ivf_lists(n: int) -> int:
    """Inverted lists for an index fitted on ``n`` windows (a power of two)."""
    want = max(IVF_MIN_LISTS, min(IVF_MAX_LISTS, n // IVF_WINDOWS_PER_LIST))
    return 1 << max(0, int(np.floor(np.log2(want))))


class IvfSq:
    """faiss's ``IndexIVFScalarQuantizer``: inverted lists over 6-bit scalar codes
    (96 bytes a window) and 8-byte labels, inner product.

    The lists' centroids and the quantiser's ranges are fitted on the windows it is built
    from (a sample of :data:`IVF_TRAIN_SAMPLE`); later windows are encoded with them, and
    :meth:`outgrown` asks for a rebuild once the index holds :data:`IVF_OUTGROWN` times
    the windows it was fitted with (new ranges and more lists, so a search's work stays
    flat). Removed windows are taken out of their lists at once; ``count`` still includes
    them until the next rebuild, as hnsw-float's does, so the catalogue's record means the
    same for both.

    The file is :data:`IVF_MAGIC`, the number of windows it was fitted with (int64, little
    endian), then faiss's serialised index.
    """

    kind = IVF_SQ6

    def __init__(self, index, removed: int = 0, fitted: int = 0):
        self.index = index
        self.removed = removed
        self.fitted = fitted

    @staticmethod
    def _empty(nlist: int):
        faiss = _faiss()
        if nlist >= IVF_HNSW_QUANTISER_FROM:
            quantiser = faiss.IndexHNSWFlat(EMBED_DIM, 32, faiss.METRIC_INNER_PRODUCT)
        else:
            quantiser = faiss.IndexFlatIP(EMBED_DIM)
        index = faiss.IndexIVFScalarQuantizer(quantiser, EMBED_DIM, nlist,
                                              faiss.ScalarQuantizer.QT_6bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantiser.this.disown()
        return index

    @classmethod
    def build(cls, vecs: Iterable, n_live: int) -> "IvfSq":
        """A new index holding ``vecs``, fitted on them (or empty until the first add)."""
        vecs = list(vecs) if not isinstance(vecs, list) else vecs
        if not n_live:
            return cls(None)
        rng = np.random.default_rng(100)
        want = max(IVF_TRAIN_SAMPLE, IVF_POINTS_PER_LIST * ivf_lists(n_live))
        # the fitting sample: whole rows, drawn until the sample is full
        order = rng.permutation(len(vecs))
        sample, got = [], 0
        for i in order:
            sample.append(vecs[i][3])
            got += len(vecs[i][3])
            if got >= want:
                break
        sample = np.concatenate(sample).astype(np.float32)
        if len(sample) > want:
            sample = sample[rng.choice(len(sample), want, replace=False)]
        self = cls(cls._fitted(sample, n_live), fitted=n_live)
        for _, first, starts, emb in vecs:
            self.index.add_with_ids(np.ascontiguousarray(emb, np.float32),
                                    np.arange(first, first + len(starts), dtype=np.int64))
        return self

    @classmethod
    def _fitted(cls, sample: np.ndarray, n: int):
        nlist = min(ivf_lists(n), max(1, len(sample) // IVF_POINTS_PER_LIST))
        nlist = 1 << int(np.floor(np.log2(nlist)))
        index = cls._empty(nlist)
        index.cp.seed = 100
        index.cp.min_points_per_centroid = 1 if nlist == 1 else IVF_POINTS_PER_LIST
        index.train(np.ascontiguousarray(sample, np.float32))
        index.nprobe = min(IVF_NPROBE, nlist)
        return index

    @staticmethod
    def read(path: Path) -> tuple[object, int]:
        """The faiss index in ``path`` and the windows it was fitted with; ValueError when
        the file is not one (or is cut short)."""
        faiss = _faiss()
        with open(path, "rb") as f:
            head = f.read(len(IVF_MAGIC) + 8)
            if len(head) != len(IVF_MAGIC) + 8 or not head.startswith(IVF_MAGIC):
                raise ValueError(f"{path.name} is not an ivf-sq6 index")
            fitted = int.from_bytes(head[len(IVF_MAGIC):], "little")
            try:
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            except (RuntimeError, MemoryError) as exc:
                raise ValueError(f"{path.name} is damaged or cut short") from exc
        if not isinstance(index, faiss.IndexIVFScalarQuantizer) or index.d != EMBED_DIM:
            raise ValueError(f"{path.name} is not an ivf-sq6 index")
        return index, fitted

    @classmethod
    def load(cls, path: Path, count: int, deleted: int) -> "IvfSq | None":
        try:
            index, fitted = cls.read(path)
        except (OSError, ValueError):
            return None
        if index.ntotal != count - deleted:
            return None
        if not index.is_trained:
            return cls(None, deleted) if index.ntotal == 0 else None
        index.nprobe = min(IVF_NPROBE, index.nlist)
        return cls(index, deleted, fitted)

    def count(self) -> int:
        """Windows in the file's record: live ones and those removed since the last build."""
        return (self.index.ntotal if self.index is not None else 0) + self.removed

    get_current_count = count

    def stored(self) -> int:
        """Windows the written file holds (removed ones are gone from it)."""
        return self.index.ntotal if self.index is not None else 0

    def add(self, emb: np.ndarray, labels: np.ndarray) -> None:
        """Add vectors (m, EMBED_DIM) under ``labels`` (m,); the first vectors of an empty
        index fit it."""
        emb = np.ascontiguousarray(emb, np.float32)
        if self.index is None:
            self.index, self.fitted = self._fitted(emb, len(emb)), len(emb)
        self.index.add_with_ids(emb, np.ascontiguousarray(labels, np.int64))

    def remove(self, labels: Iterable[int]) -> None:
        labels = np.fromiter(labels, np.int64)
        if self.index is None or not len(labels):
            return
        faiss = _faiss()
        lo, hi = int(labels.min()), int(labels.max()) + 1
        if hi - lo == len(labels):
            self.index.remove_ids(faiss.IDSelectorRange(lo, hi))
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(len(labels), faiss.swig_ptr(labels)))
        # counted as the catalogue counts them (``index_state.deleted``), found or not
        self.removed += len(labels)

    def outgrown(self) -> bool:
        """Whether it holds :data:`IVF_OUTGROWN` times the windows it was fitted with."""
        return self.index is not None and self.index.ntotal >= IVF_OUTGROWN * max(self.fitted, 1)

    def write(self, tmp: Path) -> None:
        faiss = _faiss()
        index = self.index if self.index is not None else self._empty(1)
        with open(tmp, "wb") as f:
            f.write(IVF_MAGIC + int(self.fitted).to_bytes(8, "little"))
            faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))

    @classmethod
    def verify(cls, tmp: Path, count: int) -> None:
        """Read the written file back: a short or damaged one is refused."""
        try:
            probe, _ = cls.read(tmp)
        except (OSError, ValueError, MemoryError) as exc:
            raise _short_write(tmp, exc) from exc
        if probe.ntotal != count:
            raise _short_write(tmp)

    def search(self, emb: np.ndarray, k: int, ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Labels (n, k) int64 and similarities (n, k), −1 where fewer were found.
        ``ef`` (hnsw's breadth) scales the lists visited: ``IVF_NPROBE × ef / HNSW_EF_SEARCH``."""
        index = self.index
        if index is None or index.ntotal == 0:
            return (np.full((len(emb), k), -1, np.int64), np.zeros((len(emb), k), np.float32))
        nprobe = IVF_NPROBE if ef is None else max(4, IVF_NPROBE * ef // HNSW_EF_SEARCH)
        # per call, not set on the index: searches from several threads may differ
        params = _faiss().SearchParametersIVF(nprobe=min(nprobe, index.nlist))
        sims, labels = index.search(np.ascontiguousarray(emb, np.float32), k, params=params)
        # quantised codes can give a unit vector's own similarity as 1.005: clipped to
        # the range hnsw-float's exact similarities have
        sims = np.clip(np.where(labels >= 0, sims, 0), -1.0, 1.0).astype(np.float32)
        return labels.astype(np.int64), sims


KINDS = {HNSW_FLOAT: HnswFloat, IVF_SQ6: IvfSq}


def build(vecs: list, n_live: int, kind: str = DEFAULT_KIND):
    """A new index of ``kind`` holding ``vecs`` ((piece, first label, starts, embeddings))."""
    return KINDS[kind].build(vecs, n_live)


def load_file(path: Path, checksum: str, count: int, kind: str = DEFAULT_KIND,
              deleted: int = 0):
    """The index in ``path`` if its content hash is ``checksum`` and it holds ``count``
    items (of which ``deleted`` removed since it was built); else None (the file refused
    by its library counts as a mismatch)."""
    try:
        if not path.is_file() or not checksum_matches(path, checksum):
            return None
    except OSError:
        return None
    return KINDS[kind].load(path, count, deleted)


def save(view: IndexView, path: Path, lock: RWLock) -> tuple[int, str]:
    """Write ``view``'s index to ``path`` atomically; return its (count, checksum).

    The written file is loaded back before it replaces the old one (the index libraries
    write through streams that do not report a full disk): a short file is refused
    (:class:`WriteFailed`) and the old file and its record stay as they were."""
    result = {}
    index = view.index

    def verify(tmp: Path) -> None:
        index.verify(tmp, result["stored"])
        result["checksum"] = split_file_hash(tmp)

    with atomic_write(path, verify=verify) as tmp:
        with lock.read():
            index.write(tmp)
            result["count"], result["stored"] = index.count(), index.stored()
    return result["count"], result["checksum"]


def knn(view: IndexView, lock: RWLock, emb: np.ndarray, k: int, ef: int | None
        ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest library windows: labels (n, k) int64 (−1 where fewer exist), sims (n, k)."""
    with lock.read():
        labels, sims = view.index.search(emb, k, ef)
    label_piece = view.label_piece
    valid = (labels >= 0) & (labels < len(label_piece))
    labels[~valid | (label_piece[np.where(valid, labels, 0)] < 0)] = -1
    return labels, sims
