"""Verify a library and repair what can be rebuilt (``midizero library check``).

What is stored, and what it is rebuilt from (DESIGN §3, §7):

=================  ==========================================================
index files        the stored vectors (always; they are derived data)
vectors            the stored frames (the active model embeds them again)
frames, pieces     the score and audio files (read again, as ``index`` does)
the catalogue      what SQLite can still read of it, row by row; then the
                   watched folders (also kept in ``folders.json``) are rescanned
=================  ==========================================================

A catalogue that SQLite reports damaged (``PRAGMA integrity_check``, or one that does not
open) is moved aside into ``damaged-<time>/`` — never deleted — and a new one is made from
the rows that can still be read. What cannot be saved (a piece whose file is gone and whose
stored notes are damaged) is listed in :attr:`CheckReport.lost`.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import index_store
from .catalogue import (DB_NAME, SCHEMA, TABLES, Catalogue, decode_frames, read_text,
                        row_digest)
from .errors import LibraryError
from .paths import display_path, from_db

ProgressFn = Callable[[int, int, str], None]
PROBE_CHUNK = 256  # rows read at once while salvaging a damaged table


@dataclass
class CheckReport:
    """What :func:`check_library` found and did.

    ``problems``: everything found wrong; ``repaired``: what was rebuilt or removed;
    ``lost``: what could not be saved. ``clean`` is True when nothing was wrong."""

    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    moved_aside: str | None = None

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.clean:
            return "the library is sound: nothing to repair"
        text = f"{len(self.problems)} problem(s) found, {len(self.repaired)} repaired"
        if self.lost:
            text += f", {len(self.lost)} could not be saved"
        return text


def _salvage_table(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> tuple[int, int]:
    """Copy what can be read of ``table``; returns (rows copied, row ranges unreadable)."""
    cols = [r[1] for r in new.execute(f"PRAGMA table_info({table})")]
    marks = ",".join("?" * len(cols))
    insert = f"INSERT OR IGNORE INTO {table}({','.join(cols)}) VALUES ({marks})"
    try:
        old_cols = {r[1] for r in old.execute(f"PRAGMA table_info({table})")}
        select = ",".join(c if c in old_cols else "NULL" for c in cols)
        rows = old.execute(f"SELECT {select} FROM {table}").fetchall()
        new.executemany(insert, rows)
        return len(rows), 0
    except sqlite3.DatabaseError:
        pass
    # Row by row: a damaged page loses the rows on it, not the table.
    try:
        top = old.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = 1 << 20
    copied = bad = 0
    select = ",".join(cols)
    lo = 1
    while lo <= top:
        hi = lo + PROBE_CHUNK - 1
        try:
            rows = old.execute(f"SELECT {select} FROM {table} WHERE rowid BETWEEN ? AND ?",
                               (lo, hi)).fetchall()
        except sqlite3.DatabaseError:
            rows = []
            for rid in range(lo, hi + 1):
                try:
                    rows += old.execute(f"SELECT {select} FROM {table} WHERE rowid=?",
                                        (rid,)).fetchall()
                except sqlite3.DatabaseError:
                    bad += 1
        new.executemany(insert, rows)
        copied += len(rows)
        if top == 1 << 20 and not rows and lo > 4096:
            break  # no max(rowid) known: stop after a long empty stretch
        lo = hi + 1
    return copied, bad


def _catalogue_problems(folder: Path) -> list[str]:
    """What SQLite says is wrong with the catalogue (empty when it is sound)."""
    try:
        cat = Catalogue(folder)
    except LibraryError as exc:
        return [str(exc)]
    try:
        return cat.integrity_problems()
    except LibraryError as exc:
        return [str(exc)]
    finally:
        cat.close()


def _rebuild_catalogue(folder: Path, report: CheckReport) -> None:
    """Move the damaged database aside and make a new one from its readable rows."""
    aside = folder / time.strftime("damaged-%Y%m%d-%H%M%S")
    aside.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = folder / (DB_NAME + suffix)
        if src.exists():
            shutil.move(str(src), str(aside / src.name))
    report.moved_aside = str(aside)
    new = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    try:
        new.execute("PRAGMA journal_mode=WAL")
        new.executescript(SCHEMA)
        try:
            old = sqlite3.connect(aside / DB_NAME, isolation_level=None)
            old.text_factory = read_text
        except sqlite3.DatabaseError:
            old = None
        new.execute("BEGIN")
        for table in TABLES:
            if table == "index_state" or old is None:
                continue  # index records are remade with the index files
            try:
                copied, bad = _salvage_table(old, new, table)
            except sqlite3.DatabaseError as exc:
                copied, bad = 0, 1
                report.problems.append(f"table {table} unreadable ({exc})")
            if bad:
                report.problems.append(f"table {table}: {bad} row(s) unreadable")
            report.repaired.append(f"catalogue: {copied} row(s) of {table} kept")
        # the label counters: past every stored window, so new windows never reuse a label
        new.execute("INSERT OR REPLACE INTO index_state(model_id, count, checksum, next_label,"
                    " deleted) SELECT model_id, 0, '', MAX(first_label + length(starts) / 4),"
                    " 0 FROM vectors GROUP BY model_id")
        new.execute("COMMIT")
        if old is not None:
            old.close()
    finally:
        new.close()
    for f in index_store.index_files(folder):  # their records went with the old catalogue
        f.unlink()


def check_catalogue(folder: Path, repair: bool, report: CheckReport) -> None:
    """Verify the SQLite catalogue; (``repair``) move a damaged one aside and make a new one
    from its readable rows. The catalogue must not be open in this process."""
    problems = [line for p in _catalogue_problems(folder) for line in p.splitlines()
                if line.strip() and not line.startswith("***")]
    if problems:
        report.problems += [f"catalogue: {p}" for p in problems[:5]]
        if len(problems) > 5:
            report.problems.append(f"catalogue: {len(problems) - 5} more problem(s)")
        if repair:
            _rebuild_catalogue(folder, report)


def check_contents(lib, repair: bool, report: CheckReport, progress: ProgressFn | None = None,
                   cancel: threading.Event | None = None) -> None:
    """Verify (and repair) an open library's folders, frames, vectors and index files.

    The caller holds ``lib``'s writer lock (:meth:`Library.check`)."""
    folder = lib.path
    cat = lib.catalogue

    def step(i: int, what: str) -> None:
        if progress:
            progress(i, 5, what)

    step(1, "checking folders and stored notes")
    if not cat.folders():
        saved = cat.saved_folders()
        if saved:
            report.problems.append("catalogue: the watched folders were lost")
            if repair:
                for f in saved:
                    cat.add_folder(f, time.time())
                report.repaired.append(f"watched folders restored ({len(saved)})")
    orphans = cat.q("SELECT COUNT(*) FROM frames WHERE piece NOT IN (SELECT id FROM pieces)"
                    )[0][0] + cat.q("SELECT COUNT(*) FROM vectors WHERE piece NOT IN "
                                    "(SELECT id FROM pieces)")[0][0]
    if orphans:
        report.problems.append(f"{orphans} stored row(s) of pieces no longer listed")
        if repair:
            cat.q("DELETE FROM frames WHERE piece NOT IN (SELECT id FROM pieces)")
            cat.q("DELETE FROM vectors WHERE piece NOT IN (SELECT id FROM pieces)")
            report.repaired.append(f"{orphans} orphan row(s) removed")
    reread: list[str] = []
    for pid, path in cat.q("SELECT id, path FROM pieces WHERE status != 'failed'"):
        path = from_db(path)
        row = cat.q("SELECT onset, offsets, pitches, measure, beat, voices, digest FROM frames"
                    " WHERE piece=?", (pid,))
        try:
            if not row:
                raise ValueError("missing")
            decode_frames(row[0])
            continue
        except (ValueError, TypeError):
            pass
        report.problems.append(f"stored notes damaged or missing: {display_path(path)}")
        if os.path.isfile(path):
            reread.append(path)
            if repair:  # forget its size and hash, so that `add` reads it again
                cat.q("UPDATE pieces SET size=-1, hash=NULL WHERE id=?", (pid,))
        elif repair:
            report.lost.append(f"{display_path(path)} (its file is gone)")
            cat.q("DELETE FROM pieces WHERE id=?", (pid,))
        else:
            report.lost.append(display_path(path))
    if cancel is not None and cancel.is_set():
        return

    step(2, "checking stored vectors")
    model_id = lib.model_id
    for view in lib.views.values():
        key = view.key(model_id)
        rows = cat.q("SELECT piece, first_label, starts, emb, digest FROM vectors "
                     "WHERE model_id=? ORDER BY first_label", (key,))
        end = 0
        bad = []
        for pid, first, starts, emb, digest in rows:
            try:
                if digest and row_digest(starts, emb) != digest:
                    raise ValueError("checksum")
                index_store.decode_vectors(starts, emb)
                if first is None or first < end:
                    raise ValueError("labels overlap")
                end = first + len(starts) // 4
            except (ValueError, TypeError):
                bad.append(pid)
        if bad:
            report.problems.append(f"{len(bad)} damaged vector row(s) ({view.name})")
            if repair:
                for pid in bad:
                    cat.q("DELETE FROM vectors WHERE piece=? AND model_id=?", (pid, key))
                report.repaired.append(f"{len(bad)} vector row(s) made again ({view.name})")
        state = cat.q("SELECT next_label FROM index_state WHERE model_id=?", (key,))
        if state and state[0][0] < end and repair:
            cat.q("UPDATE index_state SET next_label=? WHERE model_id=?", (end, key))
            report.problems.append(f"label counter behind its vectors ({view.name})")
            report.repaired.append(f"label counter set ({view.name})")

    step(3, "checking the index files")
    for view in lib.views.values():
        key = view.key(model_id)
        rec = cat.q("SELECT count, checksum, deleted FROM index_state WHERE model_id=?",
                    (key,))
        fpath = index_store.index_file(folder, key, lib.index_kind)
        has_vectors = cat.q("SELECT 1 FROM vectors WHERE model_id=? LIMIT 1", (key,))
        if not has_vectors and not fpath.exists():
            continue
        n_live = sum(len(s) for _, _, s, _ in index_store.live_vectors(cat, key))
        ok = bool(rec and rec[0][1]) and rec[0][0] - rec[0][2] == n_live and \
            index_store.load_file(fpath, rec[0][1], rec[0][0], lib.index_kind,
                                  rec[0][2]) is not None
        if not ok:
            report.problems.append(f"index file {fpath.name} missing, damaged or stale")
            if repair:
                lib.load_index(force_rebuild=True, view=view.name)
                report.repaired.append(f"index {fpath.name} rebuilt from stored vectors")
        elif repair:
            lib.load_index(view=view.name)  # embeds pieces whose vectors were removed
    step(4, "reading files again")
    if repair and reread:
        result = lib.add(reread)
        report.repaired += [f"read again: {display_path(p)}" for p in
                            result.added + result.updated]
        report.lost += [f"{display_path(p)} ({why})" for p, why in result.failed]
    if repair and cat.folders():
        # pieces whose rows were lost, or whose path or size was damaged, come back from
        # the watched folders (unchanged files cost a stat each)
        result = lib.rescan()
        if result.added and report.problems:
            report.repaired.append(f"{len(result.added)} piece(s) read again from their "
                                   "folders")

    step(5, "done")
