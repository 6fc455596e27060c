"""Library tab: the pieces table (scores and recordings) with a filter box, adding (buttons
or drag-and-drop), remove, rescan, checking (and repairing) the library, and "Practise" (a
piece opened in the Identify tab's score view, ready to follow). A library grown past the
size where the compact index kind serves it better offers to convert (DESIGN §3)."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..audio.decode import AUDIO_SUFFIXES, is_audio
from ..core.index_store import HNSW_FLOAT, IVF_SQ6
from .widgets import minutes_seconds
from .workers import Job

SCORE_FILTER = ("Scores and MIDI (*.mid *.midi *.kar *.xml *.musicxml *.mxl *.krn *.mei *.abc);;"
                f"Recordings ({' '.join('*' + s for s in AUDIO_SUFFIXES)});;All files (*)")
TRANSCRIBING = "transcribing…"
SECONDS = Qt.UserRole + 1  # a duration cell's sort value
HAYSTACK = Qt.UserRole + 2  # a row's title, composer and file name in lower case
PIECE_ID = Qt.UserRole + 3  # a row's library id


class _DurationCell(QTableWidgetItem):
    """Shows m:ss, sorts by seconds (as text, 10:00 would come before 9:59)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return (self.data(SECONDS) or 0.0) < (other.data(SECONDS) or 0.0)


def _kind(piece: dict) -> str:
    """The kind shown: score or recording."""
    return piece.get("kind") or "score"


class LibraryTab(QWidget):
    """Lists the library's pieces; indexing, removing and rescanning run as jobs."""

    COLS = ("Title", "Composer", "File", "Frames", "Status", "Kind", "Duration")
    changed = Signal()          # the library's content changed (after a job)
    message = Signal(str)       # for the status bar

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.main = window
        self.job: Job | None = None
        lay = QVBoxLayout(self)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #555;")
        lay.addWidget(self.hint)
        buttons = QHBoxLayout()
        self.add_folder_btn = QPushButton("Add folder…")
        self.add_folder_btn.setToolTip("Index every score in a folder (Ctrl+O)")
        self.add_files_btn = QPushButton("Add files…")
        self.remove_btn = QPushButton("Remove selected")
        self.rescan_btn = QPushButton("Rescan")
        self.rescan_btn.setToolTip("Re-read watched folders: new, changed and deleted files")
        self.check_btn = QPushButton("Check library")
        self.check_btn.setToolTip("Verify the library's files and repair what can be rebuilt "
                                  "(indexes, vectors, stored notes); lists anything lost")
        for b in (self.add_folder_btn, self.add_files_btn, self.remove_btn, self.rescan_btn,
                  self.check_btn):
            buttons.addWidget(b)
        self.practise_btn = QPushButton("Practise")
        self.practise_btn.setToolTip("Open the selected piece in the score view on the "
                                     "Identify tab and follow you through it (double-click "
                                     "a row does the same)")
        buttons.addWidget(self.practise_btn)
        buttons.addStretch(1)
        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter: title, composer or file name")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.setMinimumWidth(240)
        buttons.addWidget(self.filter_box)
        lay.addLayout(buttons)
        kind_row = QHBoxLayout()  # shown only when another index kind suits the library
        self.kind_hint = QLabel("")
        self.kind_hint.setWordWrap(True)
        self.convert_btn = QPushButton("Convert")
        self.convert_btn.setToolTip("Re-encode the stored vectors and rebuild the index; a "
                                    "cancelled or interrupted conversion leaves the library "
                                    "as it was")
        kind_row.addWidget(self.kind_hint, 1)
        kind_row.addWidget(self.convert_btn)
        self.kind_hint.setVisible(False)
        self.convert_btn.setVisible(False)
        lay.addLayout(kind_row)
        self.suggested_kind: str | None = None
        self.report = QLabel("")  # the last check's report
        self.report.setWordWrap(True)
        self.report.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.report.setVisible(False)
        lay.addWidget(self.report)
        self.table = QTableWidget(0, len(self.COLS))
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.Stretch)
        h.setSectionResizeMode(2, QHeaderView.Stretch)
        for c in (1, 3, 4, 5, 6):
            h.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        lay.addWidget(self.table, 1)
        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress_label = QLabel("")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.progress_label)
        prog.addWidget(self.cancel_btn)
        lay.addLayout(prog)
        self.add_folder_btn.clicked.connect(self.ask_folder)
        self.add_files_btn.clicked.connect(self.ask_files)
        self.remove_btn.clicked.connect(self.remove_selected)
        self.rescan_btn.clicked.connect(self.rescan)
        self.check_btn.clicked.connect(self.check_library)
        self.convert_btn.clicked.connect(self.convert_index)
        self.cancel_btn.clicked.connect(self.cancel)
        self.practise_btn.clicked.connect(self.practise_selected)
        self.table.cellDoubleClicked.connect(lambda _row, _col: self.practise_selected())
        self.filter_box.textChanged.connect(self.apply_filter)
        self._row_hays: list[str] | None = None  # the rows' lower-case strings, row order
        self._hidden: list[bool] = []            # the rows hidden by the filter
        self.table.horizontalHeader().sortIndicatorChanged.connect(self._sorted)
        self.pieces: list[dict] = []
        self.last_result = None  # the last job's IndexReport (or removed paths)

    def action_buttons(self) -> tuple[QPushButton, ...]:
        """The buttons that start a job (disabled while one runs)."""
        return (self.add_folder_btn, self.add_files_btn, self.remove_btn, self.rescan_btn,
                self.check_btn, self.convert_btn)

    # --- table ------------------------------------------------------------------------
    def cannot_open(self, text: str) -> None:
        """The library could not be opened: say so (one line, what to do) in the tab."""
        self.pieces = []
        self.table.setRowCount(0)
        self.hint.setText(text)

    @property
    def read_only(self) -> bool:
        """The open library is a shared one (on a server): it is searched, not changed."""
        return bool(getattr(self.main.library, "read_only", False))

    def refresh(self) -> None:
        lib = self.main.library
        self.show_pieces(lib.pieces() if lib is not None else [])
        self.show_kind_hint(lib.stats() if lib is not None and not self.read_only else None)
        self._enable_actions(not self.busy)
        if self.read_only:
            self.hint.setText(f"Shared library {lib.url}: searched from this app, changed by "
                              "its librarian (midizero library push).")

    def _enable_actions(self, on: bool) -> None:
        """The job buttons: off while a job runs, and for a shared library (read-only)."""
        for b in self.action_buttons():
            b.setEnabled(on and not self.read_only)

    def show_kind_hint(self, stats: dict | None) -> None:
        """Offer the index kind that suits the library's size (``Library.stats()``), when it
        is not the library's own."""
        want = stats and stats.get("suggested_index_kind")
        self.suggested_kind = want if want and want != stats["index_kind"] else None
        if self.suggested_kind == IVF_SQ6:
            self.kind_hint.setText(
                f"This library holds {stats['windows']:,} windows. The compact index kind "
                "(ivf-sq6) opens in about a second and takes a sixth of the memory, with the "
                "same answers in the benchmarks.")
        elif self.suggested_kind == HNSW_FLOAT:
            self.kind_hint.setText(
                f"This library holds {stats['windows']:,} windows: the default index kind "
                "(hnsw-float) answers a little faster at this size.")
        for w in (self.kind_hint, self.convert_btn):
            w.setVisible(self.suggested_kind is not None)

    def convert_index(self) -> Job | None:
        """Convert the library to the suggested index kind, in a worker (progress, Cancel)."""
        lib, kind = self.main.library, self.suggested_kind
        if lib is None or kind is None:
            return None
        return self._run("Converting", lambda progress, cancel: lib.convert_index_kind(
            kind, progress=lambda d, t, m: progress((d, t, m)), cancel=cancel))

    def show_pieces(self, pieces: list[dict]) -> None:
        """Fill the table with ``pieces`` (``Library.pieces()`` rows), the filter applied."""
        self.pieces = pieces
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.pieces))
        for row, p in enumerate(self.pieces):
            self._fill_row(row, p)
        self.table.setSortingEnabled(True)
        self._rows_moved()
        self.apply_filter()
        n_ok = sum(p["status"] != "failed" for p in self.pieces)
        if not self.pieces:
            self.hint.setText("The library is empty. Drag score files or folders (MIDI, MusicXML,"
                              " kern, ABC…) or recordings (WAV, FLAC, MP3…) onto this window, "
                              "or use Add folder… (Ctrl+O).")
        else:
            self.hint.setText(f"{n_ok} pieces ready, {len(self.pieces) - n_ok} failed. Add your "
                              "own scores: drag files or folders anywhere onto the window, or "
                              "use Add folder… (Ctrl+O).")

    def _fill_row(self, row: int, p: dict) -> None:
        """Table row ``row`` shows piece ``p`` (a ``Library.pieces()`` row; sorting off)."""
        status = p["status"] + (f": {p['error']}" if p.get("error") else "")
        seconds = p.get("duration") or 0.0
        frames = p.get("n_frames")
        cells = (p.get("title") or Path(p["path"]).stem, p.get("composer") or "",
                 Path(p["path"]).name, "" if frames is None else frames, status, _kind(p),
                 minutes_seconds(seconds) if seconds else "")
        for col, val in enumerate(cells):
            item = _DurationCell() if col == 6 else QTableWidgetItem()
            if isinstance(val, int):
                item.setData(Qt.DisplayRole, val)
            else:
                item.setText(str(val))
            if col == 6:
                item.setData(SECONDS, float(seconds))
            item.setToolTip(p["path"] if col != 4 else status)
            item.setData(Qt.UserRole, p["path"])
            if p["status"] == "failed":
                item.setForeground(QColor("#b00020"))
            if col == 0:
                item.setData(HAYSTACK, f"{cells[0]}\n{cells[1]}\n{cells[2]}".lower())
                if p.get("id") is not None:
                    item.setData(PIECE_ID, int(p["id"]))
            self.table.setItem(row, col, item)

    def _show_transcribing(self, paths: list[str]) -> None:
        """Rows for recordings the running job is about to transcribe (the next refresh
        replaces them with the results)."""
        self.table.setSortingEnabled(False)
        first = self.table.rowCount()
        self.table.setRowCount(first + len(paths))
        for row, path in enumerate(paths, first):
            self._fill_row(row, {"path": path, "status": TRANSCRIBING, "kind": "recording"})
        self.table.setSortingEnabled(True)
        self._rows_moved()
        self.apply_filter()

    def apply_filter(self, text: str | None = None) -> int:
        """Show only the rows whose title, composer or file name contain every word of the
        filter (case-insensitive); returns the number of rows shown. A pass over the rows'
        lower-case strings (kept in row order until the table changes or is sorted) and
        a change of only the rows whose state changes: ~10–30 ms a keystroke at 10,000
        pieces."""
        words = (self.filter_box.text() if text is None else text).lower().split()
        table = self.table
        hays = self._row_hays
        if hays is None or len(hays) != table.rowCount():
            hays = self._row_hays = []
            for r in range(table.rowCount()):
                item = table.item(r, 0)
                hays.append((item.data(HAYSTACK) if item is not None else None) or "")
        keep = [all(w in hay for w in words) for hay in hays] if words else \
            [True] * len(hays)
        hidden = self._hidden
        if len(hidden) != len(keep):
            hidden = [table.isRowHidden(r) for r in range(len(keep))]
        table.setUpdatesEnabled(False)
        try:
            for r, k in enumerate(keep):
                if hidden[r] == k:
                    table.setRowHidden(r, not k)
        finally:
            table.setUpdatesEnabled(True)
        self._hidden = [not k for k in keep]
        return sum(keep)

    def _sorted(self) -> None:
        """After a sort (which runs once this returns), the filter over the new order."""
        self._rows_moved()
        QTimer.singleShot(0, self.apply_filter)

    def _rows_moved(self) -> None:
        """The table was sorted or refilled: the rows' strings are read again."""
        self._row_hays = None
        self._hidden = []

    def visible_rows(self) -> list[int]:
        """The rows the filter shows."""
        return [r for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def selected_piece_ids(self) -> list[int]:
        """Library ids of the selected (shown) rows."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        ids = []
        for r in rows:
            item = self.table.item(r, 0)
            pid = item.data(PIECE_ID) if item is not None else None
            if pid is not None and not self.table.isRowHidden(r):
                ids.append(int(pid))
        return ids

    def practise_selected(self):
        """Open the selected piece in the Identify tab's score view, ready to follow."""
        ids = self.selected_piece_ids()
        if not ids:
            self.message.emit("Select a piece to practise first.")
            return None
        piece = next((p for p in self.pieces if p.get("id") == ids[0]), None)
        if piece is not None and piece["status"] == "failed":
            self.message.emit("This piece could not be read, so it cannot be followed.")
            return None
        identify = self.main.identify
        self.main.tabs.setCurrentWidget(identify)
        return identify.practise(ids[0])

    def rows(self) -> list[tuple[str, ...]]:
        """The table's text, row by row (for tests and scripting)."""
        return [tuple(self.table.item(r, c).text() for c in range(self.table.columnCount()))
                for r in range(self.table.rowCount())]

    # --- actions ----------------------------------------------------------------------
    def ask_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Add a folder of scores",
                                             str(Path.home()))
        if d:
            self.add_paths([d])

    def ask_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add scores or recordings",
                                                str(Path.home()), SCORE_FILTER)
        if files:
            self.add_paths(files)

    @property
    def busy(self) -> bool:
        """A job is running or its results are not yet in the table."""
        return self.job is not None

    def add_paths(self, paths) -> Job | None:
        paths = [str(p) for p in paths]
        lib = self.main.library
        listed = {p["path"] for p in self.pieces}

        def run(progress, cancel):
            from ..core.library import scan_paths

            new = [str(f) for f in scan_paths(paths)[0] if is_audio(f) and str(f) not in listed]
            if new:  # shown at once: a recording takes seconds to transcribe
                progress((TRANSCRIBING, new))
            return lib.add(paths, workers=max(1, min(4, (os.cpu_count() or 2) // 2)),
                           progress=lambda d, t, m: progress((d, t, m)), cancel=cancel)

        return self._run("Indexing", run)

    def rescan(self) -> Job | None:
        lib = self.main.library
        return self._run("Rescanning", lambda progress, cancel: lib.rescan(
            progress=lambda d, t, m: progress((d, t, m)), cancel=cancel))

    def remove_selected(self) -> Job | None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        paths = [self.table.item(r, 0).data(Qt.UserRole) for r in rows]
        if not paths:
            self.message.emit("Select the pieces to remove first.")
            return None
        lib = self.main.library
        return self._run("Removing", lambda progress, cancel: lib.remove(*paths))

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
            self.progress_label.setText("cancelling…")

    def check_library(self) -> Job | None:
        """Check the library and repair what can be rebuilt, in a worker (progress and
        Cancel as for indexing); the report shows under the buttons. The window lets go of
        the library meanwhile (the live search stops) and opens it again afterwards — also
        one that could not be opened before."""
        if self.busy:
            self.message.emit("The library is busy; wait for the current job or cancel it.")
            return None
        if self.main.identify.starting:
            self.message.emit("The search engine is starting; check the library in a moment.")
            return None
        folder = self.main.library_dir
        self.main.close_library()

        def run(progress, cancel):
            from ..core.library import check_library

            return check_library(folder, repair=True, cancel=cancel,
                                 progress=lambda d, t, m="": progress((d, t, m)))

        job = self._run("Checking", run, needs_library=False)
        job.signals.ended.connect(self.main.open_library)
        return job

    def show_report(self, report) -> None:
        """A check's report: its summary, then each item repaired and each item lost."""
        import html

        lines = [html.escape(report.summary())]
        lines += [f"repaired: {html.escape(item)}" for item in report.repaired]
        lines += [f"<span style='color:#b00020'>lost: {html.escape(item)}</span>"
                  for item in report.lost]
        self.report.setText("<br>".join(lines))
        self.report.setVisible(True)

    def _run(self, what: str, fn, needs_library: bool = True) -> Job | None:
        if needs_library and self.main.library is None:
            self.message.emit("The library is not open yet.")
            return None
        if self.busy:
            self.message.emit("The library is busy; wait for the current job or cancel it.")
            return None
        self.job = job = Job(fn, what)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_btn.setVisible(True)
        self.progress_label.setText(f"{what}…")
        for b in self.action_buttons():
            b.setEnabled(False)
        job.signals.progress.connect(lambda p, what=what: self._progress(what, p))
        job.signals.done.connect(lambda r, what=what: self._done(what, r))
        job.signals.failed.connect(lambda m, what=what: self._failed(what, m))
        job.signals.ended.connect(self._ended)
        job.start()
        return job

    def _progress(self, what: str, p) -> None:
        if p[0] == TRANSCRIBING:
            self._show_transcribing(p[1])
            return
        done, total, msg = p
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        name = Path(msg).name if msg else ""
        self.progress_label.setText(f"{what} {done}/{total} {name}"[:80])

    def _failed(self, what: str, message: str) -> None:
        self.message.emit(f"{what} failed: {message}")
        if what == "Checking":
            self.report.setText(f"Checking failed: {message}")
            self.report.setVisible(True)

    def _done(self, what: str, result) -> None:
        self.last_result = result
        if what == "Checking":
            self.show_report(result)
        summary = result.summary() if hasattr(result, "summary") else \
            f"{len(result)} removed" if isinstance(result, list) else \
            f"{result:,} windows re-encoded" if isinstance(result, int) else "done"
        self.message.emit(f"{what}: {summary}")

    def _ended(self) -> None:
        self.job = None
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        self.progress_label.setText("")
        self._enable_actions(True)
        if self.main.library is not None:
            self.refresh()
        self.changed.emit()
