"""After playing: the alignment of what was played to the score (a table of follow
updates, exported as CSV) and a tempo curve over the piece (pyqtgraph).

:class:`Alignment` keeps the follow updates of one piece (performance time → measure,
beat, score seconds, tempo); :class:`TempoCurveView` plots where in the score the player
was against performance time, and the tempo (percent of the score's own) over the score.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout,
                               QWidget)

from ..core.atomic import atomic_write
from ..core.errors import MidizeroError

CSV_COLUMNS = ("performance_seconds", "measure", "beat", "score_seconds", "tempo",
               "confidence")
REDRAW_MS = 500   # the plots are redrawn at most this often while updates arrive


class Alignment:
    """Follow updates of one piece, in arrival order.

    ``rows``: tuples of :data:`CSV_COLUMNS` — performance seconds (the input's clock),
    the score's measure number and beat (beats from the bar line in the score's beat
    unit, as the follower gives them; for a MIDI file, whose frames carry no measures, the
    notation made from it gives the measure and the beat in quarter notes), score
    seconds, tempo (score seconds per performance second) and confidence (0..1).
    ``piece``: the piece's path.
    """

    def __init__(self):
        self.rows: list[tuple] = []
        self.piece: str | None = None
        self.title: str | None = None

    def clear(self) -> None:
        self.rows = []
        self.piece = self.title = None

    def add(self, update: dict) -> bool:
        """Keep an update that has a score position; another piece starts a new
        alignment. True if it was kept."""
        if update.get("score_seconds") is None or update.get("piece") is None:
            return False
        if update["piece"] != self.piece:
            self.rows = []
            self.piece, self.title = update["piece"], update.get("title")
        if self.rows and update["time"] < self.rows[-1][0]:
            return False  # a clock that went back (a new session): not this performance
        self.rows.append((float(update["time"]), update.get("measure"), update.get("beat"),
                          float(update["score_seconds"]), update.get("tempo"),
                          float(update.get("confidence") or 0.0)))
        return True

    def write_csv(self, path: str | os.PathLike) -> int:
        """Write the rows as CSV with a header (:data:`CSV_COLUMNS`); returns the number of
        rows. Raises WriteFailed (one line) where the file cannot be written."""
        with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(CSV_COLUMNS)
            for row in self.rows:
                out.writerow(["" if v is None else v for v in row])
        return len(self.rows)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Performance seconds (N,), score seconds (N,) and tempo in percent (N,; NaN
        where unknown)."""
        if not self.rows:
            empty = np.zeros(0)
            return empty, empty, empty
        t = np.array([r[0] for r in self.rows])
        s = np.array([r[3] for r in self.rows])
        tempo = np.array([np.nan if r[4] is None else 100.0 * r[4] for r in self.rows])
        return t, s, tempo


class TempoCurveView(QWidget):
    """The alignment (score seconds against performance seconds) and the tempo over the
    score, with "Export CSV…". :meth:`add` takes follow updates (cheap: the plots are
    redrawn on a timer)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.alignment = Alignment()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.label = QLabel("Play a piece: where you were in the score and your tempo "
                            "show here.")
        self.label.setWordWrap(True)
        row.addWidget(self.label, 1)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setToolTip("Save the alignment: performance time, measure, beat, "
                                   "score time, tempo")
        self.export_btn.setEnabled(False)
        self.clear_btn = QPushButton("Clear")
        row.addWidget(self.export_btn)
        row.addWidget(self.clear_btn)
        lay.addLayout(row)
        plots = QHBoxLayout()
        self.path_plot = pg.PlotWidget()
        self.tempo_plot = pg.PlotWidget()
        for plot in (self.path_plot, self.tempo_plot):
            plot.setBackground("w")
            plot.setMenuEnabled(False)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setAcceptDrops(False)
            plot.viewport().setAcceptDrops(False)
            plots.addWidget(plot)
        self.path_plot.setLabel("bottom", "performance seconds")
        self.path_plot.setLabel("left", "score seconds")
        self.tempo_plot.setLabel("bottom", "score seconds")
        self.tempo_plot.setLabel("left", "tempo (% of the score's)")
        self.path_curve = self.path_plot.plot([], [], pen=pg.mkPen(25, 80, 165, width=2))
        self.tempo_curve = self.tempo_plot.plot([], [], pen=pg.mkPen(200, 90, 20, width=2))
        self.tempo_plot.addItem(pg.InfiniteLine(100.0, angle=0, movable=False,
                                                pen=pg.mkPen(150, 150, 150, style=Qt.DashLine)))
        lay.addLayout(plots, 1)
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(REDRAW_MS)
        self.export_btn.clicked.connect(self.ask_export)
        self.clear_btn.clicked.connect(self.clear)

    def add(self, update: dict) -> None:
        if self.alignment.add(update):
            self._dirty = True

    def clear(self) -> None:
        self.alignment.clear()
        self._dirty = True
        self.redraw()

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        t, s, tempo = self.alignment.curves()
        self.path_curve.setData(t, s)
        ok = ~np.isnan(tempo)
        self.tempo_curve.setData(s[ok], tempo[ok])
        self.export_btn.setEnabled(bool(len(t)))
        if len(t):
            self.label.setText(f"{self.alignment.title}: {len(t)} positions over "
                               f"{t[-1] - t[0]:.1f} s of playing")
        else:
            self.label.setText("Play a piece: where you were in the score and your tempo "
                               "show here.")

    def export(self, path: str | os.PathLike) -> int:
        """Write the alignment as CSV (see :meth:`Alignment.write_csv`)."""
        return self.alignment.write_csv(path)

    def ask_export(self) -> None:
        stem = Path(self.alignment.piece or "alignment").stem
        path, _ = QFileDialog.getSaveFileName(self, "Export the alignment",
                                              str(Path.home() / f"{stem} - alignment.csv"),
                                              "CSV (*.csv)")
        if not path:
            return
        try:
            n = self.export(path)
        except MidizeroError as exc:
            self.label.setText(f"Not saved: {exc}")
            return
        self.label.setText(f"Saved {n} rows to {path}")
