"""The score library: SQLite catalogue + hnswlib window index (DESIGN §3).

``library.sqlite`` (WAL) holds watched folders, pieces (with the reason a file failed),
each piece's frames (so a model change never re-parses files) and each piece's window
embeddings per model (float16). ``index-<model_id>.hnsw`` is derived data: written to a
temporary file, fsynced and renamed, then its checksum and count are recorded in SQLite;
a file that does not match its record is rebuilt from the stored vectors, never loaded
(hnswlib can crash the process on a corrupt file).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .frames import DEFAULT_TAU, Frames, to_frames
from .melody import MELODY_VIEW_VERSION, library_windows
from ..audio.decode import AUDIO_SUFFIXES, is_audio
from .scores import SCORE_SUFFIXES, Notes
from .windows import LIBRARY_HOP, make_windows

SCHEMA_VERSION = 1
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
FRAMES_CACHE_PIECES = 64
HNSW_EF_SEARCH = 256  # recall matters for 5 s queries: benchmarks/RESULTS.md
ProgressFn = Callable[[int, int, str], None]  # (done, total, message)
VIEWS = ("texture", "melody")  # full frames, and the key-normalised top line (core/melody.py)
VOICE_FORMATS = ("musicxml", "mei", "humdrum", "abc")  # formats whose notes carry voices

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, added REAL);
CREATE TABLE IF NOT EXISTS pieces (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER, mtime REAL,
    hash TEXT, title TEXT, composer TEXT, format TEXT, status TEXT NOT NULL,
    error TEXT, n_frames INTEGER DEFAULT 0, duration REAL DEFAULT 0,
    kind TEXT DEFAULT 'score', added REAL);
CREATE TABLE IF NOT EXISTS frames (
    piece INTEGER PRIMARY KEY REFERENCES pieces(id) ON DELETE CASCADE,
    onset BLOB, offsets BLOB, pitches BLOB, measure BLOB, beat BLOB, voices BLOB);
CREATE TABLE IF NOT EXISTS vectors (
    piece INTEGER REFERENCES pieces(id) ON DELETE CASCADE, model_id TEXT,
    first_label INTEGER, starts BLOB, emb BLOB, PRIMARY KEY (piece, model_id));
CREATE TABLE IF NOT EXISTS index_state (
    model_id TEXT PRIMARY KEY, count INTEGER, checksum TEXT, next_label INTEGER,
    deleted INTEGER DEFAULT 0);
"""


class _View:
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
        if self.name == "texture":
            return make_windows(frames, LIBRARY_HOP, win_length)
        return library_windows(frames, LIBRARY_HOP, win_length)


def default_library_dir() -> Path:
    """``MIDIZERO_LIBRARY`` or the platform's user data dir."""
    env = os.environ.get("MIDIZERO_LIBRARY")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("midizero", "MIDI-Zero")) / "library"


@dataclass
class IndexReport:
    """What an :meth:`Library.add` or :meth:`Library.rescan` run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged, {len(self.failed)} failed"
                + (f", {len(self.removed)} removed" if self.removed else "")
                + (f", {len(self.repaired)} repaired" if self.repaired else "")
                + (" (cancelled)" if self.cancelled else ""))


class LibraryBusy(Exception):
    """Another process is changing this library (one writer at a time)."""


class RWLock:
    """Many readers or one writer (hnswlib must not search while it inserts)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def scan_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Score and audio files under files/folders (recursive, sorted); unreadable places
    with reasons."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for root in paths:
        root = Path(root).expanduser()
        if root.is_file():
            files.append(root.resolve())
            continue
        if root.exists() and not root.is_dir():
            problems.append((str(root), "not a regular file or folder"))
            continue
        if not root.exists():
            problems.append((str(root), "no such file or folder"))
            continue
        if not os.access(root, os.R_OK | os.X_OK):
            problems.append((str(root), "folder not readable (permission denied)"))
            continue

        def onerror(err: OSError, _root=root):
            problems.append((err.filename or str(_root), f"folder not readable ({err.strerror})"))

        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.lower().endswith(SCORE_SUFFIXES + AUDIO_SUFFIXES) or \
                        name.startswith("."):
                    continue
                path = Path(dirpath) / name
                if path.is_file():  # a FIFO or device named like a score would block a read
                    files.append(path.resolve())
                else:
                    problems.append((str(path), "not a regular file (broken link or special file)"))
    return files, problems


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _voices_blob(frames: Frames, notes: Notes) -> bytes | None:
    """``frames.voices`` for storage: NULL for sources without voices (MIDI, audio), an
    empty blob for a score whose voices are all too short — so NULL on a score marks one
    stored before voices were kept (:data:`VOICE_FORMATS`; :meth:`Library.add` parses it
    again)."""
    if frames.voices is not None:
        return _blob(frames.voices)
    return None if notes.voice is None else b""


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


class Library:
    """A score library in a folder of its own.

    Parameters
    ----------
    path : the library folder (created if missing; default :func:`default_library_dir`).
    model : a checkpoint to make active. Without it, the library's recorded model is used,
        or the bundled default for a new library.
    """

    def __init__(self, path: str | Path | None = None, model: str | Path | None = None):
        self.path = Path(path) if path else default_library_dir()
        self.path.mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / "library.sqlite"
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db_lock = threading.RLock()
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._set_meta("schema_version", str(SCHEMA_VERSION), only_if_missing=True)
        self._lock = RWLock()
        self._views = {name: _View(name) for name in VIEWS}
        self._frames_cache: dict[int, Frames] = {}
        self._embedder = None
        self._writer_depth = 0
        self._writer_thread_lock = threading.RLock()
        if model is not None:
            self._set_meta("model_path", str(Path(model).resolve()))

    # --- model ------------------------------------------------------------------------
    @property
    def embedder(self):
        """The active model's :class:`~midizero_app.core.encoder.Embedder` (loaded on use)."""
        if self._embedder is None:
            from .inference import default_model_path, load_embedder  # no torch for ONNX

            recorded = self._get_meta("model_path")
            path = Path(recorded) if recorded and Path(recorded).is_file() else default_model_path()
            self._embedder = load_embedder(path)
            self._set_meta("model_path", str(path))
            self._set_meta("model_id", self._embedder.model_id)
        return self._embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def set_model(self, model_path: str | Path, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None) -> None:
        """Make another checkpoint active and re-embed every piece from its stored frames."""
        from .inference import load_embedder

        with self.writing():
            self._set_model(load_embedder(model_path), model_path, progress, cancel)

    def _set_model(self, emb, model_path, progress, cancel) -> None:
        self._embedder = emb
        self._set_meta("model_path", str(Path(model_path).resolve()))
        self._set_meta("model_id", emb.model_id)
        with self._lock.write():
            for view in self._views.values():
                view.index = None
        self._ensure_vectors(progress, cancel)
        self.load_index(force_rebuild=False)

    # --- one writer process -------------------------------------------------------------
    @contextmanager
    def writing(self, wait: bool = True):
        """Hold the library's writer lock: one thread of this process (re-entrant; others
        wait, or get LibraryBusy with ``wait=False``) and one process (an ``flock``; another
        process's writer gives LibraryBusy). Readers never need it."""
        import fcntl

        if not self._writer_thread_lock.acquire(blocking=wait):
            raise LibraryBusy("the library is being updated")
        try:
            if self._writer_depth:
                self._writer_depth += 1
                try:
                    yield
                finally:
                    self._writer_depth -= 1
                return
            fd = os.open(self.path / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LibraryBusy(f"another process is updating the library in {self.path}") from None
            self._writer_depth = 1
            try:
                yield
            finally:
                self._writer_depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._writer_thread_lock.release()

    # --- SQLite helpers ---------------------------------------------------------------
    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._db_lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _tx(self):
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _migrate(self) -> None:
        """Columns added since a library was made (its pieces keep NULL there)."""
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(frames)")}
        if "voices" not in cols:  # score voice lines (melody view), added with view 2
            try:
                self._db.execute("ALTER TABLE frames ADD COLUMN voices BLOB")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    def _get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def _set_meta(self, key: str, value: str, only_if_missing: bool = False) -> None:
        verb = "INSERT OR IGNORE" if only_if_missing else "INSERT OR REPLACE"
        self._q(f"{verb} INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- adding -----------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], workers: int = 2,
            progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            timeout: float | None = None) -> IndexReport:
        """Add or refresh files and folders (folders are remembered for :meth:`rescan`).

        Unchanged files (same size and mtime, or same content hash) are skipped; changed
        ones are re-parsed and replace their old windows; unreadable ones are recorded with
        their reason. The index is saved at the end (and every two minutes of work), so a
        killed run leaves the previous library searchable.
        """
        with self.writing():
            return self._add(paths, workers, progress, cancel, timeout)

    def _add(self, paths, workers, progress, cancel, timeout) -> IndexReport:
        from .parsing import DEFAULT_TIMEOUT, parse_files

        paths = [Path(p).expanduser() for p in paths]
        for p in paths:
            if p.is_dir():
                self._q("INSERT OR IGNORE INTO folders(path, added) VALUES (?, ?)",
                        (str(p.resolve()), time.time()))
        files, problems = scan_paths(paths)
        report = IndexReport(failed=list(problems))
        known = {r[0]: r[1:] for r in self._q(
            "SELECT path, size, mtime, hash, status, id FROM pieces")}
        # scores stored before voices were kept: parsed again once, for their voice lines
        stale = {r[0] for r in self._q(
            "SELECT p.path FROM pieces p JOIN frames f ON f.piece = p.id WHERE p.status = 'ok'"
            f" AND f.voices IS NULL AND p.format IN ({','.join('?' * len(VOICE_FORMATS))})",
            VOICE_FORMATS)}
        todo: list[Path] = []
        hashes: dict[str, str] = {}
        for f in files:
            try:
                st = f.stat()
            except OSError as exc:
                report.failed.append((str(f), f"not readable ({exc.strerror})"))
                continue
            row = known.get(str(f))
            if str(f) in stale:
                todo.append(f)
                continue
            if row and row[0] == st.st_size and abs(row[1] - st.st_mtime) < 1e-6:
                report.unchanged.append(str(f))
                continue
            try:
                hashes[str(f)] = _file_hash(f)
            except OSError as exc:
                report.failed.append((str(f), f"not readable ({exc.strerror})"))
                continue
            if row and row[2] == hashes[str(f)]:
                self._q("UPDATE pieces SET size=?, mtime=? WHERE id=?",
                        (st.st_size, st.st_mtime, row[4]))
                report.unchanged.append(str(f))
                continue
            todo.append(f)
        for name in VIEWS:  # every view must take the new windows, or its file goes stale
            self.load_index(view=name)
        total = len(todo)
        if progress:
            progress(0, total, "parsing")
        last_save = time.monotonic()
        done = 0
        from ..audio.cache import read_recordings

        # Recordings are transcribed once: their notes are cached by content hash.
        results = itertools.chain(
            parse_files([f for f in todo if not is_audio(f)], workers,
                        timeout or DEFAULT_TIMEOUT, cancel=cancel),
            read_recordings([f for f in todo if is_audio(f)], self.path / "recordings-cache",
                            cancel))
        for path, notes, error in results:
            done += 1
            fpath = Path(path)
            existed = path in known
            try:
                st = fpath.stat()
                size, mtime = st.st_size, st.st_mtime
            except OSError:
                size, mtime = 0, 0.0
            if notes is None:
                self._store_failed(path, size, mtime, hashes.get(path), error)
                report.failed.append((path, error))
            else:
                self._store_piece(path, size, mtime, hashes.get(path), notes)
                (report.updated if existed else report.added).append(path)
                if notes.repaired:
                    report.repaired.append(path)
            if progress:
                progress(done, total, fpath.name)
            if time.monotonic() - last_save > 120:
                self.save_index()
                last_save = time.monotonic()
        report.cancelled = bool(cancel is not None and cancel.is_set() and done < total)
        self.save_index()
        return report

    def _store_failed(self, path: str, size: int, mtime: float, fhash: str | None,
                      error: str) -> None:
        old = self._q("SELECT id FROM pieces WHERE path=?", (path,))
        kind = "recording" if is_audio(path) else "score"
        if old:
            self._drop_piece_windows(old[0][0])
        with self._tx() as db:
            if old:
                db.execute("DELETE FROM frames WHERE piece=?", (old[0][0],))
                db.execute("DELETE FROM vectors WHERE piece=?", (old[0][0],))
                db.execute("UPDATE pieces SET size=?, mtime=?, hash=?, status='failed', error=?,"
                           " n_frames=0, kind=? WHERE id=?",
                           (size, mtime, fhash, error, kind, old[0][0]))
            else:
                db.execute("INSERT INTO pieces(path, size, mtime, hash, title, status, error,"
                           " kind, added) VALUES (?, ?, ?, ?, ?, 'failed', ?, ?, ?)",
                           (path, size, mtime, fhash, Path(path).stem, error, kind, time.time()))

    def _store_piece(self, path: str, size: int, mtime: float, fhash: str | None,
                     notes: Notes) -> int:
        frames, _ = to_frames(notes, "score" if notes.quantised else "performance", DEFAULT_TAU)
        old = self._q("SELECT id FROM pieces WHERE path=?", (path,))
        if old:
            self._drop_piece_windows(old[0][0])
        status = "repaired" if notes.repaired else "ok"
        kind = "recording" if is_audio(path) else "score"
        with self._tx() as db:
            if old:
                pid = old[0][0]
                db.execute("UPDATE pieces SET size=?, mtime=?, hash=?, title=?, composer=?, format=?,"
                           " status=?, error=NULL, n_frames=?, duration=?, kind=? WHERE id=?",
                           (size, mtime, fhash, notes.title, notes.composer, notes.format, status,
                            len(frames), notes.duration, kind, pid))
                db.execute("DELETE FROM vectors WHERE piece=?", (pid,))
            else:
                cur = db.execute(
                    "INSERT INTO pieces(path, size, mtime, hash, title, composer, format, status,"
                    " n_frames, duration, kind, added) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (path, size, mtime, fhash, notes.title, notes.composer, notes.format, status,
                     len(frames), notes.duration, kind, time.time()))
                pid = cur.lastrowid
            db.execute("INSERT OR REPLACE INTO frames(piece, onset, offsets, pitches, measure,"
                       " beat, voices) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (pid, _blob(frames.onset), _blob(frames.offsets),
                        _blob(frames.pitches), _blob(frames.measure), _blob(frames.beat),
                        _voices_blob(frames, notes)))
        self._frames_cache.pop(pid, None)
        self._embed_piece(pid, frames)
        return pid

    def _embed_piece(self, pid: int, frames: Frames, views: Iterable[str] = VIEWS) -> None:
        for name in views:
            view = self._views[name]
            windows, starts = view.windows(frames, self.embedder.win_length)
            emb = self.embedder.embed(windows)
            key = view.key(self.model_id)
            with self._tx() as db:
                next_label = self._next_label(db, key)
                db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)",
                           (pid, key, next_label, _blob(starts.astype(np.int32)),
                            _blob(emb.astype(np.float16))))
                db.execute("UPDATE index_state SET next_label=? WHERE model_id=?",
                           (next_label + len(emb), key))
            labels = np.arange(next_label, next_label + len(emb))
            with self._lock.write():
                if view.index is not None:
                    self._grow_maps(view, labels, pid, starts)
                    index = view.index
                    if index.get_max_elements() < index.get_current_count() + len(emb):
                        index.resize_index(int((index.get_current_count() + len(emb)) * 1.5)
                                           + 1024)
                    index.add_items(emb, labels)

    def _next_label(self, db, model_id: str) -> int:
        row = db.execute("SELECT next_label FROM index_state WHERE model_id=?",
                         (model_id,)).fetchone()
        if row is None:
            db.execute("INSERT INTO index_state(model_id, count, checksum, next_label)"
                       " VALUES (?, 0, '', 0)", (model_id,))
            return 0
        return int(row[0])

    @staticmethod
    def _grow_maps(view: _View, labels: np.ndarray, pid: int, starts: np.ndarray) -> None:
        size = int(labels.max()) + 1
        if size > len(view.label_piece):
            grow = max(size, int(len(view.label_piece) * 1.5))
            lp = np.full(grow, -1, np.int64)
            lf = np.zeros(grow, np.int64)
            lp[:len(view.label_piece)] = view.label_piece
            lf[:len(view.label_frame)] = view.label_frame
            view.label_piece, view.label_frame = lp, lf
        view.label_piece[labels] = pid
        view.label_frame[labels] = starts

    def _drop_piece_windows(self, pid: int) -> None:
        """Mark a piece's windows deleted in the indexes (its rows go separately)."""
        for view in self._views.values():
            key = view.key(self.model_id)
            rows = self._q("SELECT first_label, length(starts) / 4 FROM vectors"
                           " WHERE piece=? AND model_id=?", (pid, key))
            if not rows:
                continue
            if view.index is None and self._index_file(key).is_file():
                # the saved index holds these windows: load it to mark them, or the next
                # load would take the file (its count minus the deleted matches) with them
                self.load_index(view=view.name)
            first, n = rows[0]
            with self._lock.write():
                if view.index is not None:
                    for label in range(first, first + n):
                        try:
                            view.index.mark_deleted(label)
                        except RuntimeError:
                            pass  # not in this index file (e.g. added after its last save)
                    if first + n <= len(view.label_piece):
                        view.label_piece[first:first + n] = -1
            self._q("UPDATE index_state SET deleted = deleted + ? WHERE model_id=?", (n, key))
        self._frames_cache.pop(pid, None)

    def _ensure_vectors(self, progress: ProgressFn | None = None,
                        cancel: threading.Event | None = None,
                        views: Iterable[str] = VIEWS) -> None:
        """Embed every ok piece that has no vectors for the active model (from its frames)."""
        for name in views:
            key = self._views[name].key(self.model_id)
            todo = [r[0] for r in self._q(
                "SELECT p.id FROM pieces p JOIN frames f ON f.piece = p.id"
                " WHERE p.status != 'failed' AND NOT EXISTS"
                " (SELECT 1 FROM vectors v WHERE v.piece = p.id AND v.model_id = ?)", (key,))]
            for i, pid in enumerate(todo):
                if cancel is not None and cancel.is_set():
                    return
                self._embed_piece(pid, self.frames_of(pid), views=(name,))
                if progress:
                    progress(i + 1, len(todo), f"embedding ({name})")

    # --- removing ---------------------------------------------------------------------
    def remove(self, *paths: str | Path) -> list[str]:
        """Forget files, or folders and every piece under them (files are never touched).

        Returns the paths of the pieces removed; the index is saved once at the end."""
        with self.writing():
            return self._remove(paths)

    def _remove(self, paths) -> list[str]:
        rows: list[tuple[int, str]] = []
        prefixes = []
        for path in paths:
            p = str(Path(path).expanduser().resolve())
            prefix = p.rstrip(os.sep) + os.sep + "%"
            prefixes.append((p, prefix))
            rows += self._q("SELECT id, path FROM pieces WHERE path = ? OR path LIKE ?", (p, prefix))
        for pid, _ in rows:
            self._drop_piece_windows(pid)
        with self._tx() as db:
            for pid, _ in rows:
                db.execute("DELETE FROM pieces WHERE id=?", (pid,))
            for p, prefix in prefixes:
                db.execute("DELETE FROM folders WHERE path = ? OR path LIKE ?", (p, prefix))
        if rows:
            self._save_or_compact()
        return [r[1] for r in rows]

    def _save_or_compact(self) -> None:
        """Save each loaded index, or rebuild (and so save) one whose windows are now mostly
        marked deleted: a search there walks the dead ones and must widen to find live
        neighbours, and a rebuild costs only what is left."""
        for view in self._views.values():
            if view.index is None:
                continue
            row = self._q("SELECT deleted FROM index_state WHERE model_id=?",
                          (view.key(self.model_id),))
            deleted = row[0][0] if row else 0
            if deleted > view.index.get_current_count() - deleted:
                self.load_index(force_rebuild=True, view=view.name)
            else:
                self._save_view(view)

    def rescan(self, workers: int = 2, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None) -> IndexReport:
        """Re-check every watched folder: new and changed files, and files that are gone."""
        with self.writing():
            return self._rescan(workers, progress, cancel)

    def _rescan(self, workers, progress, cancel) -> IndexReport:
        folders = [r[0] for r in self._q("SELECT path FROM folders ORDER BY path")]
        singles = [r[0] for r in self._q("SELECT path FROM pieces")
                   if not any(r[0].startswith(f.rstrip(os.sep) + os.sep) for f in folders)]
        gone = [r[0] for r in self._q("SELECT path FROM pieces") if not Path(r[0]).exists()]
        if gone:
            self.remove(*gone)
        report = self.add([Path(f) for f in folders if Path(f).is_dir()]
                          + [Path(s) for s in singles if Path(s).exists()],
                          workers, progress, cancel)
        report.removed = gone
        return report

    # --- index ------------------------------------------------------------------------
    def _index_file(self, key: str) -> Path:
        return self.path / f"index-{key}.hnsw"

    def _live_vectors(self, key: str) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT v.piece, v.first_label, v.starts, v.emb FROM vectors v "
                "JOIN pieces p ON p.id = v.piece WHERE v.model_id=? ORDER BY v.first_label",
                (key,)).fetchall()
        for pid, first, starts, emb in rows:
            yield pid, first, np.frombuffer(starts, np.int32), \
                np.frombuffer(emb, np.float16).reshape(-1, 128)

    def load_index(self, force_rebuild: bool = False, view: str = "texture") -> None:
        """Load a view's index file if it matches its SQLite record, else rebuild it from
        the stored vectors."""
        import hnswlib

        state = self._views[view]
        key = state.key(self.model_id)
        try:  # pieces stored without vectors for this model (a model change, a killed run)
            with self.writing(wait=False):
                self._ensure_vectors(views=(view,))
        except LibraryBusy:
            pass  # the writing process will embed them
        vecs = list(self._live_vectors(key))
        n_live = sum(len(s) for _, _, s, _ in vecs)
        size = max((first + len(s) for _, first, s, _ in vecs), default=0)
        lp = np.full(size, -1, np.int64)
        lf = np.zeros(size, np.int64)
        for pid, first, starts, _ in vecs:
            lp[first:first + len(starts)] = pid
            lf[first:first + len(starts)] = starts
        row = self._q("SELECT count, checksum, deleted FROM index_state WHERE model_id=?",
                      (key,))
        fpath = self._index_file(key)
        index = None
        if not force_rebuild and row and fpath.is_file() and row[0][1]:
            count, checksum, deleted = row[0]
            if _file_hash(fpath) == checksum and count - deleted == n_live:
                index = hnswlib.Index(space="ip", dim=128)
                index.load_index(str(fpath), max_elements=max(count, 1))
                index.set_ef(HNSW_EF_SEARCH)
        if index is None:
            index = hnswlib.Index(space="ip", dim=128)
            index.init_index(max_elements=max(n_live * 5 // 4 + 1024, 1024),
                             ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M,
                             random_seed=100)
            index.set_num_threads(2)
            for _, first, starts, emb in vecs:
                index.add_items(emb.astype(np.float32), np.arange(first, first + len(starts)))
            index.set_ef(HNSW_EF_SEARCH)
            with self._lock.write():
                state.index = index
                state.label_piece, state.label_frame = lp, lf
            if vecs:
                try:  # only the writer saves; a reader keeps its rebuilt index in memory
                    with self.writing(wait=False):
                        self._q("UPDATE index_state SET deleted=0 WHERE model_id=?", (key,))
                        self._save_view(state)
                except LibraryBusy:
                    pass
            return
        with self._lock.write():
            state.index = index
            state.label_piece, state.label_frame = lp, lf

    def save_index(self) -> None:
        """Write each loaded index atomically (temp file, fsync, rename) and record its
        checksum and count."""
        for state in self._views.values():
            self._save_view(state)

    def _save_view(self, state: _View) -> None:
        if state.index is None:
            return
        key = state.key(self.model_id)
        fpath = self._index_file(key)
        tmp = fpath.with_suffix(".hnsw.tmp")
        with self._lock.read():
            state.index.save_index(str(tmp))
            count = state.index.get_current_count()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        checksum = _file_hash(tmp)
        os.replace(tmp, fpath)
        self._q("UPDATE index_state SET count=?, checksum=? WHERE model_id=?",
                (count, checksum, key))

    def knn(self, emb: np.ndarray, k: int, view: str = "texture", ef: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest library windows of a view: labels (n, k) int64 (−1 where fewer exist),
        sims (n, k). ``ef`` overrides the search breadth (default ``HNSW_EF_SEARCH``)."""
        state = self._views[view]
        if state.index is None:
            self.load_index(view=view)
        with self._lock.read():
            index = state.index
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
        label_piece = state.label_piece
        labels = labels.astype(np.int64)
        sims = (1.0 - dist).astype(np.float32)
        valid = labels < len(label_piece)
        labels[~valid | (label_piece[np.where(valid, labels, 0)] < 0)] = -1
        if kk < k:
            labels = np.pad(labels, ((0, 0), (0, k - kk)), constant_values=-1)
            sims = np.pad(sims, ((0, 0), (0, k - kk)))
        return labels, sims

    def window_vectors(self, pid: int, first_frame: float, last_frame: float,
                       view: str = "texture") -> tuple[np.ndarray, np.ndarray]:
        """A piece's stored windows that start in frames [first_frame, last_frame]: their
        start frames (m,) int64 and unit vectors (m, 128) float32 (empty if none).

        Read from SQLite, only the asked byte range of the vectors: hnswlib's ``get_items``
        costs about 8 µs per vector, too slow for re-scoring candidates on every query."""
        key = self._views[view].key(self.model_id)
        row = self._q("SELECT starts FROM vectors WHERE piece=? AND model_id=?", (pid, key))
        if not row:
            return np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
        starts = np.frombuffer(row[0][0], np.int32).astype(np.int64)
        lo, hi = (int(i) for i in np.searchsorted(starts, [first_frame, last_frame + 1e-9]))
        if hi <= lo:
            return np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
        size = 128 * 2  # float16
        blob = self._q("SELECT substr(emb, ?, ?) FROM vectors WHERE piece=? AND model_id=?",
                       (lo * size + 1, (hi - lo) * size, pid, key))[0][0]
        return starts[lo:hi], np.frombuffer(blob, np.float16).reshape(-1, 128).astype(np.float32)

    @property
    def label_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The texture view's label → piece id and label → first frame maps."""
        return self.view_maps("texture")

    def view_maps(self, view: str) -> tuple[np.ndarray, np.ndarray]:
        """A view's label → piece id and label → first frame maps (loads the view)."""
        state = self._views[view]
        if state.index is None:
            self.load_index(view=view)
        return state.label_piece, state.label_frame

    # --- reading ----------------------------------------------------------------------
    def frames_of(self, pid: int) -> Frames:
        """A piece's stored frames (an LRU cache keeps memory flat in long live sessions)."""
        f = self._frames_cache.pop(pid, None)
        if f is None:
            row = self._q("SELECT onset, offsets, pitches, measure, beat, voices FROM frames"
                          " WHERE piece=?", (pid,))
            if not row:
                raise KeyError(pid)
            on, off, pit, mea, bea, voi = row[0]
            onset = np.frombuffer(on, np.float64)
            voices = None if not voi else \
                np.frombuffer(voi, np.int16).reshape(-1, len(onset))  # (K, F)
            f = Frames(onset, np.frombuffer(off, np.int64), np.frombuffer(pit, np.int16),
                       np.frombuffer(mea, np.int32), np.frombuffer(bea, np.float32), voices)
        self._frames_cache[pid] = f  # re-inserted: most recently used last
        while len(self._frames_cache) > FRAMES_CACHE_PIECES:
            self._frames_cache.pop(next(iter(self._frames_cache)))
        return f

    def piece(self, pid: int) -> dict:
        cols = ("id", "path", "title", "composer", "format", "status", "error", "n_frames",
                "duration", "kind")
        row = self._q(f"SELECT {', '.join(cols)} FROM pieces WHERE id=?", (pid,))
        if not row:
            raise KeyError(pid)
        return dict(zip(cols, row[0]))

    def pieces(self, status: str | None = None) -> list[dict]:
        cols = ("id", "path", "title", "composer", "format", "status", "error", "n_frames",
                "duration", "kind")
        sql = f"SELECT {', '.join(cols)} FROM pieces"
        rows = self._q(sql + (" WHERE status=?" if status else "") + " ORDER BY path",
                       (status,) if status else ())
        return [dict(zip(cols, r)) for r in rows]

    def folders(self) -> list[str]:
        return [r[0] for r in self._q("SELECT path FROM folders ORDER BY path")]

    def stats(self) -> dict:
        model_id = self._get_meta("model_id")
        counts = dict(self._q("SELECT status, COUNT(*) FROM pieces GROUP BY status"))
        windows = self._q("SELECT COALESCE(SUM(length(starts) / 4), 0) FROM vectors"
                          " WHERE model_id=?", (model_id,))[0][0]
        frames = self._q("SELECT COALESCE(SUM(n_frames), 0) FROM pieces")[0][0]
        idx = self._index_file(model_id) if model_id else None
        return {"library": str(self.path), "pieces": sum(counts.values()),
                "ok": counts.get("ok", 0) + counts.get("repaired", 0),
                "failed": counts.get("failed", 0), "repaired": counts.get("repaired", 0),
                "frames": frames, "windows": windows, "folders": len(self.folders()),
                "model_id": model_id, "model_path": self._get_meta("model_path"),
                "index_bytes": idx.stat().st_size if idx and idx.is_file() else 0,
                "database_bytes": self.db_path.stat().st_size}

    def search(self, query, **kwargs):
        """Search with a query file path, Notes or Frames; see :func:`query.search_library`."""
        from .query import search_library

        return search_library(self, query, **kwargs)

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

