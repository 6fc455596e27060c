"""The library's catalogue: one SQLite database (``library.sqlite``, WAL) — DESIGN §3.

Tables: ``meta`` (schema version, active model), ``folders`` (watched folders),
``pieces`` (one row per file: status, the reason a file failed, title, composer…),
``frames`` (each piece's chord frames, so a model change never re-parses a file),
``vectors`` (each piece's window embeddings per model and view, float16) and
``index_state`` (each index file's checksum, count and next free label).

Every SQLite failure leaves here as a :class:`~.errors.LibraryError` with one line for the
user: a full disk (SQLite rolls the transaction back: nothing changed), a damaged file
(:class:`~.errors.LibraryDamaged`: run ``midizero library check``), another writer.
Watched folders are also kept in ``folders.json`` (written atomically), so a catalogue
damaged beyond salvage can be rebuilt from the score files.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import write_text
from .errors import LibraryBusy, LibraryDamaged, LibraryError, WriteFailed, is_disk_full
from .frames import Frames
from .hashing import bytes_hash
from .paths import from_db, to_db

SCHEMA_VERSION = 1
DB_NAME = "library.sqlite"
FOLDERS_NAME = "folders.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, added REAL);
CREATE TABLE IF NOT EXISTS pieces (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER, mtime REAL,
    hash TEXT, title TEXT, composer TEXT, format TEXT, status TEXT NOT NULL,
    error TEXT, n_frames INTEGER DEFAULT 0, duration REAL DEFAULT 0,
    kind TEXT DEFAULT 'score', added REAL);
CREATE TABLE IF NOT EXISTS frames (
    piece INTEGER PRIMARY KEY REFERENCES pieces(id) ON DELETE CASCADE,
    onset BLOB, offsets BLOB, pitches BLOB, measure BLOB, beat BLOB, voices BLOB,
    digest TEXT);
CREATE TABLE IF NOT EXISTS vectors (
    piece INTEGER REFERENCES pieces(id) ON DELETE CASCADE, model_id TEXT,
    first_label INTEGER, starts BLOB, emb BLOB, digest TEXT, PRIMARY KEY (piece, model_id));
CREATE TABLE IF NOT EXISTS index_state (
    model_id TEXT PRIMARY KEY, count INTEGER, checksum TEXT, next_label INTEGER,
    deleted INTEGER DEFAULT 0);
"""
TABLES = ("meta", "folders", "pieces", "frames", "vectors", "index_state")

DISK_FULL = "the disk is full: nothing was changed; free space and run `midizero index` again"


LOW_SPACE_BYTES = 1 << 20  # an I/O error with less free space than this is a full disk


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False


def library_error(exc: BaseException, folder: Path) -> LibraryError:
    """The one-line :class:`LibraryError` for an SQLite (or OS) failure in ``folder``."""
    if isinstance(exc, LibraryError):
        return exc
    # SQLite reports a full disk as SQLITE_FULL, or (growing its WAL index) as a plain
    # "disk I/O error": the free space tells which.
    if is_disk_full(exc) or "disk i/o error" in str(exc).lower() and _nearly_full(folder):
        return LibraryError(DISK_FULL)
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return LibraryBusy(f"another process is using the library in {folder} ({text})")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) \
            or any(w in low for w in ("malformed", "not a database", "corrupt", "encrypted")):
        return LibraryDamaged(f"the library in {folder} is damaged ({text}): run "
                              "`midizero library check` to repair it")
    if isinstance(exc, WriteFailed):
        return LibraryError(str(exc))
    if isinstance(exc, OSError):
        return LibraryError(f"the library in {folder} cannot be used "
                            f"({exc.strerror or exc}): check the folder's permissions")
    return LibraryError(f"the library in {folder} cannot be used ({text})")


class Catalogue:
    """The SQLite catalogue of a library folder, safe to share between threads.

    Parameters
    ----------
    folder : the library folder (it must exist).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                       isolation_level=None)
            self._db.text_factory = read_text
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._migrate()
            self.q("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                   (str(SCHEMA_VERSION),))
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise library_error(exc, self.folder) from exc

    # --- queries ----------------------------------------------------------------------
    def q(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Run one statement (autocommit) and return its rows."""
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise library_error(exc, self.folder) from exc

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all of it is stored, or none."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise library_error(exc, self.folder) from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already (a failed COMMIT, a full disk)
                if isinstance(exc, sqlite3.Error):
                    raise library_error(exc, self.folder) from exc
                raise

    def get_meta(self, key: str) -> str | None:
        rows = self.q("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.q("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- folders ----------------------------------------------------------------------
    def folders(self) -> list[str]:
        """Watched folders, sorted."""
        return sorted(from_db(r[0]) for r in self.q("SELECT path FROM folders"))

    def add_folder(self, path: str, when: float) -> None:
        self.q("INSERT OR IGNORE INTO folders(path, added) VALUES (?, ?)", (to_db(path), when))
        self.save_folders()

    def save_folders(self) -> None:
        """Mirror the watched folders into ``folders.json`` (the rebuild's starting point).

        Best effort: the catalogue holds the truth, and a full disk must not turn a stored
        change into an error."""
        names = [p.encode("utf-8", "surrogateescape").hex() for p in self.folders()]
        try:
            write_text(self.folder / FOLDERS_NAME, json.dumps({"folders_hex": names}))
        except (WriteFailed, OSError):
            pass

    def saved_folders(self) -> list[str]:
        """The folders recorded in ``folders.json`` (empty if it is missing or damaged)."""
        try:
            data = json.loads((self.folder / FOLDERS_NAME).read_text("utf-8"))
            return [bytes.fromhex(h).decode("utf-8", "surrogateescape")
                    for h in data["folders_hex"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    # --- health -----------------------------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check``'s findings (empty when the database is sound)."""
        rows = self.q("PRAGMA integrity_check")
        found = [r[0] for r in rows]
        return [] if found == ["ok"] else found

    def _migrate(self) -> None:
        """Columns added since a library was made (its pieces keep NULL there)."""
        added = (("frames", "voices", "BLOB"),   # score voice lines (melody view)
                 ("frames", "digest", "TEXT"),   # row checksums (row_digest)
                 ("vectors", "digest", "TEXT"))
        for table, col, kind in added:
            cols = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if col in cols:
                continue
            try:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass
                self._db = None


def read_text(raw: bytes) -> str:
    """TEXT as the catalogue reads it: the software writes only UTF-8 there (names that are
    not UTF-8 go in as BLOBs), so bytes that do not decode are damage — read with
    replacement characters, for `library check` to find, instead of failing every query."""
    return raw.decode("utf-8", "replace")


def row_digest(*blobs: bytes | None) -> str:
    """The checksum stored with a frames or vectors row: SQLite checks its pages' structure,
    not the numbers in them, so a flipped byte inside a blob is found by this."""
    return bytes_hash([b"\0" if b is None else len(b).to_bytes(8, "little") + bytes(b)
                       for b in blobs])


def decode_frames(row: tuple) -> Frames:
    """A stored frames row (onset, offsets, pitches, measure, beat, voices[, digest]) →
    :class:`Frames`; ValueError when its blobs do not agree or do not match their digest."""
    if len(row) > 6 and row[6] and row_digest(*row[:6]) != row[6]:
        raise ValueError("stored frames do not match their checksum")
    on, off, pit, mea, bea, voi = row[:6]
    onset = np.frombuffer(on, np.float64)
    n = len(onset)
    offsets = np.frombuffer(off, np.int64)
    pitches = np.frombuffer(pit, np.int16)
    measure = np.frombuffer(mea, np.int32)
    beat = np.frombuffer(bea, np.float32)
    if len(offsets) != n + 1 or len(measure) != n or len(beat) != n or \
            (n and (offsets[0] != 0 or offsets[-1] != len(pitches)
                    or np.any(np.diff(offsets) < 0))) or \
            (len(pitches) and (pitches.min() < 0 or pitches.max() > 127)) or \
            not np.isfinite(onset).all():
        raise ValueError("stored frames do not agree with each other")
    voices = None
    if voi:
        if len(voi) % (2 * max(n, 1)):
            raise ValueError("stored voice lines do not match the frames")
        voices = np.frombuffer(voi, np.int16).reshape(-1, n)  # (K, F)
    return Frames(onset, offsets, pitches, measure, beat, voices)
