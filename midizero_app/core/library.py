"""The score library: a folder with an SQLite catalogue and hnswlib window indexes (DESIGN §3).

The façade the CLI, the app and the benchmarks use. Its parts have one job each:
:mod:`.catalogue` (the SQLite database: pieces, frames, vectors), :mod:`.index_store`
(the derived hnswlib files), :mod:`.scan` (finding files), :mod:`.sources` (reading them:
scores here, recordings from the audio package), :mod:`.locks` (readers and one writer),
:mod:`.check` (verify and repair).

Everything that is written is either committed whole (SQLite transactions; index files
through :mod:`.atomic`) or not at all, so a killed process, a full disk or a failing write
leaves the library as it was before that step, searchable; ``index`` or ``rescan`` then
carries on where it stopped.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import index_store
from .catalogue import DB_NAME, DISK_FULL, Catalogue, decode_frames, library_error, row_digest
from .errors import (DISK_FULL_ERRNOS, LibraryBusy, LibraryDamaged, LibraryError, MidizeroError,
                     NoLibrary, WriteFailed)
from .frames import DEFAULT_TAU, Frames, to_frames
from .hashing import file_hash
from .index_store import (DEFAULT_KIND, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M,
                          INDEX_KINDS, VIEWS, IndexView, check_kind)
from .model_arch import EMBED_DIM
from .locks import RWLock, WriterLock
from .paths import from_db, to_db
from .scan import scan_paths
from .scores import Notes
from .sources import SCORES, source_for

__all__ = ["Library", "IndexReport", "LibraryBusy", "LibraryError", "default_library_dir",
           "scan_paths", "check_library", "HNSW_M", "HNSW_EF_CONSTRUCTION", "HNSW_EF_SEARCH", "VIEWS",
           "INDEX_KINDS"]

FRAMES_CACHE_PIECES = 64
SAVE_EVERY_S = 120  # a long indexing run saves its index this often
ProgressFn = Callable[[int, int, str], None]  # (done, total, message)
DISK_FULL_RUN = ("the disk is full: {what} stopped, and what was stored before is kept; "
                 "free space and run `midizero index` again")
VOICE_FORMATS = ("musicxml", "mei", "humdrum", "abc")  # formats whose notes carry voices
PIECE_COLUMNS = ("id", "path", "title", "composer", "format", "status", "error", "n_frames",
                 "duration", "kind")


def default_library_dir() -> Path:
    """``MIDIZERO_LIBRARY`` (a folder) or the platform's user data dir."""
    env = os.environ.get("MIDIZERO_LIBRARY")
    if env and not env.lower().startswith("milvus://"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("midizero", "MIDI-Zero")) / "library"


def default_library() -> Path | str:
    """The library opened when none is named: ``MIDIZERO_LIBRARY`` — a folder, or a shared
    library's ``milvus://`` address (kept a string: a path would fold its ``//``) — else
    the platform's user data dir."""
    env = os.environ.get("MIDIZERO_LIBRARY")
    if env and env.lower().startswith("milvus://"):
        return env
    return default_library_dir()


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


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _voices_blob(frames: Frames, notes: Notes) -> bytes | None:
    """``frames.voices`` for storage: NULL for sources without voices (MIDI, audio), an
    empty blob for a score whose voices are all too short — so NULL on a score marks one
    stored before voices were kept (:data:`VOICE_FORMATS`; :meth:`Library.add` parses it
    again)."""
    if frames.voices is not None:
        return _blob(frames.voices)
    return None if notes.voice is None else b""


class Library:
    """A score library in a folder of its own.

    Parameters
    ----------
    path : the library folder (default :func:`default_library_dir`).
    model : a checkpoint to make active. Without it, the library's recorded model is used,
        or the bundled default for a new library.
    create : make the folder and an empty library if there is none; with ``False`` a
        folder without a library raises :class:`~.errors.NoLibrary` (a mistyped
        ``--library`` must not leave an empty library behind).

    Raises :class:`~.errors.LibraryError` (one line for the user) when the library cannot
    be opened: :class:`~.errors.LibraryDamaged` means ``midizero library check``.
    """

    def __init__(self, path: str | Path | None = None, model: str | Path | None = None,
                 create: bool = True):
        self.path = Path(path) if path else default_library_dir()
        self.db_path = self.path / DB_NAME
        if not create and not self.db_path.is_file():
            raise NoLibrary(f"there is no library in {self.path}: index a folder into it "
                            f"first (`midizero index FOLDER --library {self.path}`)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise library_error(exc, self.path) from exc
        self._cat = Catalogue(self.path)
        self._lock = RWLock()
        self._writer = WriterLock(self.path)
        self._views = {name: IndexView(name) for name in VIEWS}
        self._frames_cache: dict[int, Frames] = {}
        self._embedder = None
        if model is not None:
            self._cat.set_meta("model_path", str(Path(model).resolve()))

    # --- index kind -------------------------------------------------------------------
    @property
    def index_kind(self) -> str:
        """The library's index kind (:data:`INDEX_KINDS`), recorded when it was made;
        a library made before kinds were recorded has ``hnsw-float``."""
        kind = self._cat.get_meta("index_kind") or DEFAULT_KIND
        return kind if kind in INDEX_KINDS else DEFAULT_KIND

    def choose_index_kind(self, kind: str) -> None:
        """Make ``kind`` this library's index kind: only a library that holds no windows
        yet may choose; an existing library keeps its kind (:class:`LibraryError`
        otherwise)."""
        check_kind(kind)
        with self.writing():
            current = self._cat.get_meta("index_kind")
            if (current or DEFAULT_KIND) == kind:
                if current is None:
                    self._cat.set_meta("index_kind", kind)
                return
            if self._cat.q("SELECT 1 FROM vectors LIMIT 1"):
                raise LibraryError(f"the library in {self.path} has index kind "
                                   f"{current or DEFAULT_KIND}, chosen when it was made; "
                                   f"convert it with `midizero library convert --index-kind "
                                   f"{kind}`")
            self._cat.set_meta("index_kind", kind)
            with self._lock.write():
                for view in self._views.values():
                    view.index = None

    def convert_index_kind(self, kind: str, progress: ProgressFn | None = None,
                           cancel: threading.Event | None = None) -> int:
        """Make an existing library's index kind ``kind``: its stored vectors re-encoded for
        that kind (float16 or int8, :func:`index_store.encode_vectors`) and its indexes
        rebuilt. The re-encoding is one transaction: a run stopped, cancelled or killed
        anywhere before its end leaves the library exactly as it was, old kind and index
        files included. Rows whose checksums fail are left to ``library check``.

        Returns the windows re-encoded (0 when the library has ``kind`` already or the run
        was cancelled)."""
        check_kind(kind)
        with self.writing(), _conversion_stopped(self.index_kind):
            if self.index_kind == kind:
                return 0
            old_files = index_store.index_files(self.path)
            keys = self._cat.q("SELECT piece, model_id FROM vectors")
            done = 0
            try:
                with self._cat.tx() as db:
                    for i, (pid, key) in enumerate(keys):
                        if cancel is not None and cancel.is_set():
                            raise _Cancelled
                        starts, emb, digest = db.execute(
                            "SELECT starts, emb, digest FROM vectors WHERE piece=? AND model_id=?",
                            (pid, key)).fetchone()
                        try:
                            if digest and row_digest(starts, emb) != digest:
                                continue
                            _, e = index_store.decode_vectors(starts, emb)
                        except (ValueError, TypeError):
                            continue
                        blob = index_store.encode_vectors(e.astype(np.float32), kind)
                        db.execute("UPDATE vectors SET emb=?, digest=? WHERE piece=? AND model_id=?",
                                   (blob, row_digest(starts, blob), pid, key))
                        done += len(e)
                        if progress and (i % 64 == 0 or i + 1 == len(keys)):
                            progress(i + 1, len(keys), f"converting to {kind}")
                    db.execute("UPDATE index_state SET count=0, checksum='', deleted=0")
                    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('index_kind', ?)",
                               (kind,))
            except _Cancelled:
                return 0
            with self._lock.write():
                for view in self._views.values():
                    view.index = None
            for f in old_files:  # the catalogue no longer refers to them
                try:
                    f.unlink()
                except OSError:
                    pass
            # every view's index rebuilt and saved now, so that the next start opens files
            for view in self._views.values():
                if self._cat.q("SELECT 1 FROM index_state WHERE model_id=?",
                               (view.key(self.model_id),)):
                    self.load_index(force_rebuild=True, view=view.name)
            return done

    # --- model ------------------------------------------------------------------------
    @property
    def embedder(self):
        """The active model's embedder (loaded on first use).

        A recorded model that is missing or cannot be loaded falls back to the bundled
        default (its vectors are then made from the stored frames)."""
        if self._embedder is None:
            from .inference import default_model_path, load_embedder  # no torch for ONNX

            recorded = self._cat.get_meta("model_path")
            path = Path(recorded) if recorded and Path(recorded).is_file() else default_model_path()
            try:
                self._embedder = load_embedder(path)
            except (MidizeroError, OSError):  # a damaged model file: the bundled one
                if path == default_model_path():
                    raise
                path = default_model_path()
                self._embedder = load_embedder(path)
            self._cat.set_meta("model_path", str(path))
            self._cat.set_meta("model_id", self._embedder.model_id)
        return self._embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def set_model(self, model_path: str | Path, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None) -> None:
        """Make another checkpoint active and re-embed every piece from its stored frames.

        A model that cannot be loaded raises before anything changes: the previous model
        stays in use."""
        from .inference import load_embedder

        with self.writing():
            emb = load_embedder(model_path)
            self._embedder = emb
            self._cat.set_meta("model_path", str(Path(model_path).resolve()))
            self._cat.set_meta("model_id", emb.model_id)
            with self._lock.write():
                for view in self._views.values():
                    view.index = None
            self._ensure_vectors(progress, cancel)
            self.load_index(force_rebuild=False)

    # --- one writer -------------------------------------------------------------------
    @contextmanager
    def writing(self, wait: bool = True) -> Iterator[None]:
        """Hold the library's writer lock: one thread of this process (re-entrant; others
        wait, or get LibraryBusy with ``wait=False``) and one process (an ``flock``; another
        process's writer gives LibraryBusy). Readers never need it."""
        with self._writer.hold(wait) as first:
            if first:
                self._remove_stale_temp_files()
            yield

    def _remove_stale_temp_files(self) -> None:
        """Temporary files of a writer that was killed (only the writer may remove them)."""
        for p in self.path.glob(".*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass

    # --- adding -----------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], workers: int = 2,
            progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            timeout: float | None = None) -> IndexReport:
        """Add or refresh files and folders (folders are remembered for :meth:`rescan`).

        Unchanged files (same size and mtime, or same content hash) are skipped; changed
        ones are re-parsed and replace their old windows; unreadable ones are recorded with
        their reason. Each file is stored in one transaction and the index is saved at the
        end (and every two minutes of work), so a killed run or a full disk leaves every
        piece stored before it searchable.
        """
        with self.writing(), _stopped_run("indexing"):
            return self._add(paths, workers, progress, cancel, timeout)

    def _add(self, paths, workers, progress, cancel, timeout) -> IndexReport:
        paths = [Path(p).expanduser() for p in paths]
        for p in paths:
            if p.is_dir():
                self._cat.add_folder(str(p.resolve()), time.time())
        files, problems = scan_paths(paths)
        report = IndexReport(failed=list(problems))
        for path, reason in problems:
            # a link loop or a FIFO inside a folder is listed in `library list` too, with
            # its reason; a missing or unreadable folder is only reported
            if os.path.lexists(path) and not os.path.isdir(path):
                self._store_failed(path, 0, 0.0, None, reason)
        known = {from_db(r[0]): r[1:] for r in self._cat.q(
            "SELECT path, size, mtime, hash, status, id FROM pieces")}
        # scores stored before voices were kept: parsed again once, for their voice lines
        stale = {from_db(r[0]) for r in self._cat.q(
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
                hashes[str(f)] = file_hash(f)
            except OSError as exc:
                report.failed.append((str(f), f"not readable ({exc.strerror})"))
                continue
            if row and row[2] == hashes[str(f)]:
                self._cat.q("UPDATE pieces SET size=?, mtime=? WHERE id=?",
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
        for path, notes, error in self._read(todo, workers, timeout, cancel):
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
            if time.monotonic() - last_save > SAVE_EVERY_S:
                self.save_index()
                last_save = time.monotonic()
        report.cancelled = bool(cancel is not None and cancel.is_set() and done < total)
        self.save_index()
        return report

    def _read(self, files: list[Path], workers, timeout, cancel):
        """Notes of each file, from the source that reads its kind (scores first)."""
        groups: dict[object, list[Path]] = {}
        for f in files:
            groups.setdefault(source_for(f) or SCORES, []).append(f)
        for src, group in sorted(groups.items(), key=lambda kv: kv[0] is not SCORES):
            yield from src.read(group, self.path, workers, timeout, cancel)

    def _store_failed(self, path: str, size: int, mtime: float, fhash: str | None,
                      error: str) -> None:
        old = self._cat.q("SELECT id FROM pieces WHERE path=?", (to_db(path),))
        kind = (source_for(path) or SCORES).kind
        if old:
            self._drop_piece_windows(old[0][0])
        with self._cat.tx() as db:
            if old:
                db.execute("DELETE FROM frames WHERE piece=?", (old[0][0],))
                db.execute("DELETE FROM vectors WHERE piece=?", (old[0][0],))
                db.execute("UPDATE pieces SET size=?, mtime=?, hash=?, status='failed', error=?,"
                           " n_frames=0, kind=? WHERE id=?",
                           (size, mtime, fhash, error, kind, old[0][0]))
            else:
                db.execute("INSERT INTO pieces(path, size, mtime, hash, title, status, error,"
                           " kind, added) VALUES (?, ?, ?, ?, ?, 'failed', ?, ?, ?)",
                           (to_db(path), size, mtime, fhash, Path(path).stem, error, kind,
                            time.time()))

    def _store_piece(self, path: str, size: int, mtime: float, fhash: str | None,
                     notes: Notes) -> int:
        frames, _ = to_frames(notes, "score" if notes.quantised else "performance", DEFAULT_TAU)
        old = self._cat.q("SELECT id FROM pieces WHERE path=?", (to_db(path),))
        if old:
            self._drop_piece_windows(old[0][0])
        status = "repaired" if notes.repaired else "ok"
        kind = (source_for(path) or SCORES).kind
        with self._cat.tx() as db:
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
                    (to_db(path), size, mtime, fhash, notes.title, notes.composer, notes.format,
                     status, len(frames), notes.duration, kind, time.time()))
                pid = cur.lastrowid
            blobs = (_blob(frames.onset), _blob(frames.offsets), _blob(frames.pitches),
                     _blob(frames.measure), _blob(frames.beat), _voices_blob(frames, notes))
            db.execute("INSERT OR REPLACE INTO frames(piece, onset, offsets, pitches, measure,"
                       " beat, voices, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (pid, *blobs, row_digest(*blobs)))
        self._frames_cache.pop(pid, None)
        self._embed_piece(pid, frames)
        return pid

    def _embed_piece(self, pid: int, frames: Frames, views: Iterable[str] = VIEWS) -> None:
        for name in views:
            view = self._views[name]
            windows, starts = view.windows(frames, self.embedder.win_length)
            emb = self.embedder.embed(windows)
            key = view.key(self.model_id)
            with self._cat.tx() as db:
                next_label = self._next_label(db, key)
                blobs = (_blob(starts.astype(np.int32)),
                         index_store.encode_vectors(emb, self.index_kind))
                db.execute("INSERT OR REPLACE INTO vectors(piece, model_id, first_label, starts,"
                           " emb, digest) VALUES (?, ?, ?, ?, ?, ?)",
                           (pid, key, next_label, *blobs, row_digest(*blobs)))
                db.execute("UPDATE index_state SET next_label=? WHERE model_id=?",
                           (next_label + len(emb), key))
            labels = np.arange(next_label, next_label + len(emb))
            with self._lock.write():
                if view.index is not None and len(emb):
                    view.grow_maps(labels, pid, starts)
                    view.index.add(emb, labels)

    @staticmethod
    def _next_label(db, model_id: str) -> int:
        row = db.execute("SELECT next_label FROM index_state WHERE model_id=?",
                         (model_id,)).fetchone()
        if row is None:
            db.execute("INSERT INTO index_state(model_id, count, checksum, next_label)"
                       " VALUES (?, 0, '', 0)", (model_id,))
            return 0
        return int(row[0])

    def _drop_piece_windows(self, pid: int) -> None:
        """Mark a piece's windows deleted in the indexes (its rows go separately)."""
        for view in self._views.values():
            key = view.key(self.model_id)
            rows = self._cat.q("SELECT first_label, length(starts) / 4 FROM vectors"
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
                    view.index.remove(range(first, first + n))
                    if first + n <= len(view.label_piece):
                        view.label_piece[first:first + n] = -1
            self._cat.q("UPDATE index_state SET deleted = deleted + ? WHERE model_id=?", (n, key))
        self._frames_cache.pop(pid, None)

    def _ensure_vectors(self, progress: ProgressFn | None = None,
                        cancel: threading.Event | None = None,
                        views: Iterable[str] = VIEWS) -> None:
        """Embed every readable piece that has no vectors for the active model (from its
        frames); a piece whose stored frames are damaged is left to ``library check``."""
        for name in views:
            key = self._views[name].key(self.model_id)
            todo = [r[0] for r in self._cat.q(
                "SELECT p.id FROM pieces p JOIN frames f ON f.piece = p.id"
                " WHERE p.status != 'failed' AND NOT EXISTS"
                " (SELECT 1 FROM vectors v WHERE v.piece = p.id AND v.model_id = ?)", (key,))]
            for i, pid in enumerate(todo):
                if cancel is not None and cancel.is_set():
                    return
                try:
                    frames = self.frames_of(pid)
                except (KeyError, LibraryDamaged):
                    continue
                self._embed_piece(pid, frames, views=(name,))
                if progress:
                    progress(i + 1, len(todo), f"embedding ({name})")

    # --- removing ---------------------------------------------------------------------
    def remove(self, *paths: str | Path) -> list[str]:
        """Forget files, or folders and every piece under them (files are never touched).

        Returns the paths of the pieces removed; the index is saved once at the end."""
        with self.writing():
            return self._remove(paths)

    def _pieces_under(self, path: str) -> list[tuple[int, str]]:
        """``(id, path)`` of the piece at ``path`` and of every piece below it.

        A range on the raw path (binary collation), not LIKE: LIKE ignores the case of ASCII
        letters and reads ``_`` and ``%`` in folder names as wildcards."""
        prefix = path.rstrip(os.sep) + os.sep
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        # names stored as TEXT, and names stored as raw bytes (not UTF-8: paths.to_db)
        text_range = (prefix, upper) if isinstance(to_db(prefix), str) else ("", "")
        rows = self._cat.q("SELECT id, path FROM pieces WHERE path = ? OR (path >= ? AND path < ?)"
                           " OR (path >= ? AND path < ?)",
                           (to_db(path), *text_range, os.fsencode(prefix), os.fsencode(upper)))
        return [(pid, from_db(p)) for pid, p in rows]

    def _remove(self, paths) -> list[str]:
        rows: list[tuple[int, str]] = []
        dropped = []
        for path in paths:
            p = str(Path(path).expanduser().resolve())
            rows += self._pieces_under(p)
            dropped += [f for f in self._cat.folders()
                        if f == p or f.startswith(p.rstrip(os.sep) + os.sep)]
        for pid, _ in rows:
            self._drop_piece_windows(pid)
        with self._cat.tx() as db:
            for pid, _ in rows:
                db.execute("DELETE FROM pieces WHERE id=?", (pid,))
            for f in dropped:
                db.execute("DELETE FROM folders WHERE path = ?", (to_db(f),))
        if dropped:
            self._cat.save_folders()
        if rows:
            try:
                self._save_or_compact()
            except WriteFailed:
                pass  # the removal is stored; the stale index file is rebuilt on next load
        return [r[1] for r in rows]

    def _save_or_compact(self) -> None:
        """Save each loaded index, or rebuild (and so save) one whose windows are now mostly
        marked deleted: a search there walks the dead ones and must widen to find live
        neighbours, and a rebuild costs only what is left."""
        for view in self._views.values():
            if view.index is None:
                continue
            row = self._cat.q("SELECT deleted FROM index_state WHERE model_id=?",
                              (view.key(self.model_id),))
            deleted = row[0][0] if row else 0
            if deleted > view.index.get_current_count() - deleted:
                self.load_index(force_rebuild=True, view=view.name)
            else:
                self._save_view(view)

    def rescan(self, workers: int = 2, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None) -> IndexReport:
        """Re-check every watched folder: new and changed files, and files that are gone."""
        with self.writing(), _stopped_run("the rescan"):
            return self._rescan(workers, progress, cancel)

    def _rescan(self, workers, progress, cancel) -> IndexReport:
        folders = self._cat.folders()
        all_paths = [from_db(r[0]) for r in self._cat.q("SELECT path FROM pieces")]
        singles = [p for p in all_paths
                   if not any(p.startswith(f.rstrip(os.sep) + os.sep) for f in folders)]
        gone = [p for p in all_paths if not os.path.lexists(p)]
        if gone:
            self.remove(*gone)
        report = self.add([Path(f) for f in folders if Path(f).is_dir()]
                          + [Path(s) for s in singles if os.path.lexists(s)],
                          workers, progress, cancel)
        report.removed = gone
        return report

    # --- index ------------------------------------------------------------------------
    def _index_file(self, key: str) -> Path:
        return index_store.index_file(self.path, key, self.index_kind)

    def load_index(self, force_rebuild: bool = False, view: str = "texture") -> None:
        """Load a view's index file if it matches its catalogue record, else rebuild it from
        the stored vectors (and save it, when this process may write)."""
        state = self._views[view]
        key = state.key(self.model_id)
        try:  # pieces stored without vectors for this model (a model change, a killed run)
            with self.writing(wait=False):
                self._ensure_vectors(views=(view,))
        except LibraryBusy:
            pass  # the writing process will embed them
        row = self._cat.q("SELECT count, checksum, deleted FROM index_state WHERE model_id=?",
                          (key,))
        index = None
        vecs: list = []
        if not force_rebuild and row and row[0][1]:
            # a saved index needs only the labels' maps: the vectors are not read
            lp, lf, n_live = index_store.label_maps(index_store.stored_labels(self._cat, key))
            count, checksum, deleted = row[0]
            if count - deleted == n_live:
                index = index_store.load_file(self._index_file(key), checksum, count,
                                              self.index_kind, deleted)
        rebuilt = index is None or index.outgrown()
        if rebuilt:  # from the vectors whose checksums hold
            vecs = list(index_store.live_vectors(self._cat, key))
            lp, lf, n_live = index_store.label_maps(vecs)
            index = index_store.build(vecs, n_live, self.index_kind)
        with self._lock.write():
            state.index = index
            state.label_piece, state.label_frame = lp, lf
        if rebuilt and vecs:
            try:  # only the writer saves; a reader keeps its rebuilt index in memory
                with self.writing(wait=False):
                    self._cat.q("UPDATE index_state SET deleted=0 WHERE model_id=?", (key,))
                    self._save_view(state)
            except LibraryBusy:
                pass
            except WriteFailed:
                pass  # a full disk: the index works from memory and is rebuilt next time

    def save_index(self) -> None:
        """Write each loaded index atomically and record its checksum and count."""
        for state in self._views.values():
            self._save_view(state)

    def _save_view(self, state: IndexView) -> None:
        if state.index is None:
            return
        if state.index.outgrown():  # more windows than its lists were made for: new lists
            self.load_index(force_rebuild=True, view=state.name)
            return
        key = state.key(self.model_id)
        count, checksum = index_store.save(state, self._index_file(key), self._lock)
        self._cat.q("UPDATE index_state SET count=?, checksum=? WHERE model_id=?",
                    (count, checksum, key))

    def knn(self, emb: np.ndarray, k: int, view: str = "texture", ef: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest library windows of a view for query vectors ``emb`` (n, EMBED_DIM):
        labels (n, k) int64 (−1 where fewer exist) and inner-product similarities (n, k).
        ``ef`` overrides the search breadth (default ``HNSW_EF_SEARCH``)."""
        state = self._views[view]
        if state.index is None:
            self.load_index(view=view)
        return index_store.knn(state, self._lock, emb, k, ef)

    def window_vectors(self, pid: int, first_frame: float, last_frame: float,
                       view: str = "texture") -> tuple[np.ndarray, np.ndarray]:
        """A piece's stored windows that start in frames [first_frame, last_frame]: their
        start frames (m,) int64 and unit vectors (m, EMBED_DIM) float32 (empty if none).

        Read from SQLite, only the asked byte range of the vectors: hnswlib's ``get_items``
        costs about 8 µs per vector, too slow for re-scoring candidates on every query."""
        empty = np.zeros(0, np.int64), np.zeros((0, EMBED_DIM), np.float32)
        key = self._views[view].key(self.model_id)
        row = self._cat.q("SELECT starts, length(emb) FROM vectors WHERE piece=? AND model_id=?",
                          (pid, key))
        if not row:
            return empty
        starts = np.frombuffer(row[0][0], np.int32).astype(np.int64)
        size = index_store.vector_width(len(starts), row[0][1])  # float16 or int8
        if not size:
            return empty  # a damaged row: `library check` re-embeds it
        lo, hi = (int(i) for i in np.searchsorted(starts, [first_frame, last_frame + 1e-9]))
        if hi <= lo:
            return empty
        blob = self._cat.q("SELECT substr(emb, ?, ?) FROM vectors WHERE piece=? AND model_id=?",
                           (lo * size + 1, (hi - lo) * size, pid, key))[0][0]
        vecs = index_store.decode_block(blob, size)
        # a damaged row scores nothing instead of NaN (`library check` re-embeds it)
        return starts[lo:hi], np.nan_to_num(vecs, nan=0.0, posinf=0.0, neginf=0.0)

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
        """A piece's stored frames (an LRU cache keeps memory flat through hours of playing).

        Raises KeyError for an unknown piece, :class:`LibraryDamaged` for a damaged row."""
        f = self._frames_cache.pop(pid, None)
        if f is None:
            row = self._cat.q("SELECT onset, offsets, pitches, measure, beat, voices, digest"
                              " FROM frames WHERE piece=?", (pid,))
            if not row:
                raise KeyError(pid)
            try:
                f = decode_frames(row[0])
            except (ValueError, TypeError) as exc:
                raise LibraryDamaged(f"the stored notes of piece {pid} are damaged ({exc}): "
                                     "run `midizero library check` to repair them") from exc
        self._frames_cache[pid] = f  # re-inserted: most recently used last
        while len(self._frames_cache) > FRAMES_CACHE_PIECES:
            self._frames_cache.pop(next(iter(self._frames_cache)))
        return f

    def piece(self, pid: int) -> dict:
        """One piece's catalogue row (keys :data:`PIECE_COLUMNS`); KeyError if unknown."""
        row = self._cat.q(f"SELECT {', '.join(PIECE_COLUMNS)} FROM pieces WHERE id=?", (pid,))
        if not row:
            raise KeyError(pid)
        return self._piece_dict(row[0])

    @staticmethod
    def _piece_dict(row: tuple) -> dict:
        d = dict(zip(PIECE_COLUMNS, row))
        d["path"] = from_db(d["path"])
        return d

    def pieces(self, status: str | None = None) -> list[dict]:
        """Every piece (or those with ``status``: ok, repaired, failed), by path."""
        sql = f"SELECT {', '.join(PIECE_COLUMNS)} FROM pieces"
        rows = self._cat.q(sql + (" WHERE status=?" if status else "") + " ORDER BY path",
                           (status,) if status else ())
        return [self._piece_dict(r) for r in rows]

    def content_state(self) -> tuple[int, int, int]:
        """A cheap fingerprint of the searchable pieces: (count, largest id, total frames).

        It changes whenever a piece is added, updated or removed; caches derived from the
        pieces (the melody search's n-grams) compare it instead of reading every row."""
        row = self._cat.q("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(n_frames), 0)"
                          " FROM pieces WHERE status != 'failed'")[0]
        return int(row[0]), int(row[1]), int(row[2])

    def folders(self) -> list[str]:
        """The watched folders (rescanned by :meth:`rescan`)."""
        return self._cat.folders()

    def stats(self) -> dict:
        """Counts and sizes: pieces (ok, failed, repaired), frames, windows, folders, the
        active model, index and database bytes."""
        model_id = self._cat.get_meta("model_id")
        counts = dict(self._cat.q("SELECT status, COUNT(*) FROM pieces GROUP BY status"))
        windows = self._cat.q("SELECT COALESCE(SUM(length(starts) / 4), 0) FROM vectors"
                              " WHERE model_id=?", (model_id,))[0][0]
        frames = self._cat.q("SELECT COALESCE(SUM(n_frames), 0) FROM pieces")[0][0]
        idx = self._index_file(model_id) if model_id else None
        return {"library": str(self.path), "pieces": sum(counts.values()),
                "ok": counts.get("ok", 0) + counts.get("repaired", 0),
                "failed": counts.get("failed", 0), "repaired": counts.get("repaired", 0),
                "frames": frames, "windows": windows, "folders": len(self.folders()),
                "model_id": model_id, "model_path": self._cat.get_meta("model_path"),
                "index_kind": self.index_kind,
                "suggested_index_kind": index_store.suggested_kind(windows),
                "index_bytes": idx.stat().st_size if idx and idx.is_file() else 0,
                "database_bytes": self.db_path.stat().st_size}

    def search(self, query, **kwargs):
        """Search with a query file path, Notes or Frames; see :func:`query.search_library`."""
        from .query import search_library

        return search_library(self, query, **kwargs)

    def check(self, repair: bool = True, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None, catalogue_checked=None):
        """Verify the catalogue, the stored frames and vectors and the index files, and
        (``repair``) rebuild what can be rebuilt from what is intact; returns a
        :class:`~.check.CheckReport` (see :mod:`.check`). ``catalogue_checked``: the report
        of a catalogue check already made (:func:`~.check.check_library`)."""
        from .check import CheckReport, check_catalogue, check_contents

        with self.writing():
            report = catalogue_checked
            if report is None:
                report = CheckReport()
                self._cat.close()
                try:
                    check_catalogue(self.path, repair, report)
                finally:
                    self._reopen()
                if report.problems and not repair:
                    return report
            check_contents(self, repair, report, progress, cancel)
            return report

    @property
    def catalogue(self) -> Catalogue:
        """The library's SQLite catalogue (for :mod:`.check`; others use the methods)."""
        return self._cat

    @property
    def views(self) -> dict[str, IndexView]:
        """The searchable views by name (:data:`VIEWS`)."""
        return self._views

    def _reopen(self) -> None:
        self._cat = Catalogue(self.path)
        with self._lock.write():
            for view in self._views.values():
                view.index = None
        self._frames_cache.clear()
        self._embedder = None

    def close(self) -> None:
        self._cat.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_library(folder: str | Path, repair: bool = True, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None):
    """Verify the library in ``folder`` and (``repair``) rebuild what can be rebuilt — also
    one that does not open (its catalogue is repaired first). Takes the library's writer
    lock (:class:`LibraryBusy` while another process indexes). Returns a
    :class:`~.check.CheckReport`."""
    from .check import CheckReport, check_catalogue

    folder = Path(folder)
    if not (folder / DB_NAME).exists():
        raise NoLibrary(f"there is no library in {folder}: index a folder into it first "
                        f"(`midizero index FOLDER --library {folder}`)")
    report = CheckReport()
    with WriterLock(folder).hold():
        check_catalogue(folder, repair, report)
    if report.problems and not repair:
        return report
    with Library(folder) as lib:
        return lib.check(repair, progress, cancel, catalogue_checked=report)


@contextmanager
def _conversion_stopped(kind: str) -> Iterator[None]:
    """A conversion that a full disk stops: its transaction rolled back, so the message
    says the library is as it was."""
    try:
        yield
    except (WriteFailed, LibraryError) as exc:
        if isinstance(exc, WriteFailed):
            exc = _write_error(exc)
        if str(exc) == DISK_FULL:
            raise LibraryError(f"the disk is full: the conversion stopped and the library is "
                               f"as it was ({kind}); free space and convert again") from None
        raise


class _Cancelled(Exception):
    """A cancelled conversion: raised inside its transaction so that all of it rolls back."""


def _write_error(exc: WriteFailed) -> LibraryError:
    if exc.errno in DISK_FULL_ERRNOS or "disk is full" in str(exc):
        return LibraryError(DISK_FULL)
    return LibraryError(str(exc))


@contextmanager
def _stopped_run(what: str) -> Iterator[None]:
    """A long run (indexing) that a full disk stops: each file is stored whole or not at
    all, so the message says that what was done before is kept."""
    try:
        yield
    except WriteFailed as exc:
        exc = _write_error(exc)
        raise (LibraryError(DISK_FULL_RUN.format(what=what)) if str(exc) == DISK_FULL
               else exc) from None
    except LibraryError as exc:
        if str(exc) == DISK_FULL:
            raise LibraryError(DISK_FULL_RUN.format(what=what)) from None
        raise
