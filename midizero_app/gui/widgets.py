"""Reusable widgets: an on-screen piano, a scrolling pitch-matrix, a results table and an
input level meter."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QProgressBar, QSizePolicy,
                               QTableWidget, QTableWidgetItem, QWidget)

PITCH_LO, PITCH_HI = 21, 108
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
BLACK = {1, 3, 6, 8, 10}


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def minutes_seconds(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour), as players show times."""
    m, s = divmod(int(round(max(0.0, seconds))), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# Computer-keyboard play: the home row is one white-key octave from C, the row above holds
# the black keys (the usual DAW layout); Z / X shift the octave down / up.
KEY_LAYOUT = {"A": 0, "W": 1, "S": 2, "E": 3, "D": 4, "F": 5, "T": 6, "G": 7, "Y": 8,
              "H": 9, "U": 10, "J": 11, "K": 12, "O": 13, "L": 14, "P": 15, ";": 16}
KEY_HELP = ("Computer keyboard: A S D F G H J K L ; = white keys C D E F G A B C D E, "
            "W E T Y U O P = black keys, Z / X = octave down / up.")


class PianoKeyboard(QWidget):
    """An 88-key piano drawn with QPainter; mouse presses emit :attr:`noteOn`, releases
    :attr:`noteOff`.

    :meth:`press` / :meth:`release` are the programmatic API (also used by the computer
    keyboard).
    """

    noteOn = Signal(int)
    noteOff = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(110)
        self._white = [p for p in range(PITCH_LO, PITCH_HI + 1) if p % 12 not in BLACK]
        self.lit: dict[int, int] = {}  # pitch → paint countdown
        self.setToolTip("Click keys to play. " + KEY_HELP)
        self.setFocusPolicy(Qt.NoFocus)
        self._held: int | None = None  # the key under the mouse button

    def press(self, pitch: int) -> None:
        if PITCH_LO <= pitch <= PITCH_HI:
            self.light(pitch)
            self.noteOn.emit(int(pitch))

    def release(self, pitch: int) -> None:
        if PITCH_LO <= pitch <= PITCH_HI:
            self.noteOff.emit(int(pitch))

    def light(self, pitch: int) -> None:
        self.lit[int(pitch)] = 3
        self.update()

    def fade(self) -> None:
        """Called by a timer: let lit keys go dark after a few ticks."""
        if self.lit:
            self.lit = {p: n - 1 for p, n in self.lit.items() if n > 1}
            self.update()

    def _geometry(self):
        w = self.width() / len(self._white)
        rects = {}
        for i, p in enumerate(self._white):
            rects[p] = QRectF(i * w, 0, w, self.height() - 1)
        for p in range(PITCH_LO, PITCH_HI + 1):
            if p % 12 in BLACK:
                left = rects[p - 1]
                rects[p] = QRectF(left.right() - w * 0.3, 0, w * 0.6, self.height() * 0.6)
        return rects

    def key_rect(self, pitch: int) -> QRectF:
        return self._geometry()[pitch]

    def pitch_at(self, x: float, y: float) -> int | None:
        rects = self._geometry()
        for p, r in rects.items():  # black keys lie on top
            if p % 12 in BLACK and r.contains(x, y):
                return p
        for p, r in rects.items():
            if p % 12 not in BLACK and r.contains(x, y):
                return p
        return None

    def mousePressEvent(self, event):
        pos = event.position()
        p = self.pitch_at(pos.x(), pos.y())
        if p is not None:
            self._held = p
            self.press(p)

    def mouseReleaseEvent(self, _event):
        if self._held is not None:
            self.release(self._held)
            self._held = None

    def paintEvent(self, _event):
        qp = QPainter(self)
        qp.setRenderHint(QPainter.Antialiasing)
        rects = self._geometry()
        lit = QColor("#4a90d9")
        qp.setPen(QPen(QColor("#555")))
        for p in self._white:
            qp.setBrush(lit if p in self.lit else QColor("white"))
            qp.drawRect(rects[p])
        qp.setPen(QColor("#888"))
        for p in self._white:
            if p % 12 == 0:
                r = rects[p]
                qp.drawText(QRectF(r.left(), r.bottom() - 18, r.width(), 16),
                            Qt.AlignCenter, note_name(p))
        qp.setPen(QPen(QColor("#222")))
        for p, r in rects.items():
            if p % 12 in BLACK:
                qp.setBrush(lit.darker(130) if p in self.lit else QColor("#1c1c1c"))
                qp.drawRect(r)
        qp.end()


class PitchMatrixView(pg.PlotWidget):
    """Incoming frames as a scrolling pitch matrix (fixed-size ring buffer, 88-key axis)."""

    def __init__(self, n_frames: int = 120, win: int = 10, parent=None):
        super().__init__(parent)
        self.n, self.win = n_frames, win
        self.setAcceptDrops(False)  # file drops go to the window
        self.viewport().setAcceptDrops(False)
        self.buf = np.zeros((n_frames, PITCH_HI - PITCH_LO + 1), np.float32)
        self.count = 0
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.img = pg.ImageItem(axisOrder="col-major")
        lut = np.linspace([255, 255, 255], [25, 80, 165], 64).astype(np.uint8)
        self.img.setLookupTable(lut)
        self.img.setLevels((0, 1))
        self.addItem(self.img)
        left = self.getAxis("left")
        left.setTicks([[(p, note_name(p)) for p in range(24, PITCH_HI + 1, 12)],
                       [(p, "") for p in range(PITCH_LO, PITCH_HI + 1) if p % 12 in (4, 7)]])
        left.setLabel("pitch")
        self.getAxis("bottom").setLabel("frames (newest at 0)")
        self.setXRange(-n_frames, 0, padding=0)
        self.setYRange(PITCH_LO - 0.5, PITCH_HI + 0.5, padding=0)
        self.showGrid(x=False, y=True, alpha=0.15)
        self.window_box = pg.LinearRegionItem((-win, 0), movable=False,
                                              brush=pg.mkBrush(255, 170, 0, 40),
                                              pen=pg.mkPen(230, 140, 0))
        self.addItem(self.window_box)
        self.img.setImage(self.buf, autoLevels=False)
        self.img.setRect(QRectF(-n_frames, PITCH_LO - 0.5, n_frames, 88))  # after an image

    def add_frame(self, pitches) -> None:
        self.buf[:-1] = self.buf[1:]  # ring as a shift: fixed size, no growth
        self.buf[-1] = 0
        for p in pitches:
            if PITCH_LO <= p <= PITCH_HI:
                self.buf[-1, p - PITCH_LO] = 1
        self.count += 1
        self.img.setImage(self.buf, autoLevels=False)

    def show_roll(self, roll) -> None:
        """Show a whole query (its last frames if longer than the view)."""
        self.buf[:] = 0
        tail = np.asarray(roll, np.float32)[-self.n:]
        if len(tail):
            self.buf[-len(tail):] = tail
        self.count = len(roll)
        self.img.setImage(self.buf, autoLevels=False)

    def clear_frames(self) -> None:
        self.buf[:] = 0
        self.count = 0
        self.img.setImage(self.buf, autoLevels=False)


class ResultsTable(QTableWidget):
    """Ranked results: title, composer, a confidence bar and the matched position."""

    COLS = ("#", "Title", "Composer", "Confidence", "Position")

    def __init__(self, parent=None):
        super().__init__(0, len(self.COLS), parent)
        self.setHorizontalHeaderLabels(self.COLS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        h = self.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.Stretch)
        h.setSectionResizeMode(2, QHeaderView.Interactive)  # long names elide, not the title
        self.setColumnWidth(2, 130)
        h.setSectionResizeMode(3, QHeaderView.Fixed)
        self.setColumnWidth(3, 150)
        h.setSectionResizeMode(4, QHeaderView.ResizeToContents)
        self.results: list[dict] = []

    def show_results(self, results: list[dict]) -> None:
        self.results = list(results)
        self.setRowCount(len(results))
        for row, r in enumerate(results):
            pos = (r.get("positions") or [{}])[0]
            where = []
            if pos.get("measure") is not None and pos.get("measure", -1) >= 0:
                where.append(f"m. {pos['measure']}")
            if r.get("kind") == "recording":  # a time in the recording, as a player shows it
                where.append(f"♫ recording at {minutes_seconds(pos.get('seconds') or 0)}")
            elif pos.get("seconds") is not None:
                where.append(f"{pos['seconds']:.1f} s")
            if r.get("transpose"):  # semitones added to the query to reach the score
                where.append(f"played {-r['transpose']:+d} st")
            cells = (str(r.get("rank", row + 1)), r.get("title") or "", r.get("composer") or "",
                     None, ", ".join(where))
            for col, text in enumerate(cells):
                if text is not None:
                    item = QTableWidgetItem(text)
                    item.setToolTip(r.get("path", ""))
                    self.setItem(row, col, item)
            bar = self.cellWidget(row, 3)
            if not isinstance(bar, QProgressBar):
                bar = QProgressBar()
                bar.setRange(0, 100)
                bar.setTextVisible(True)
                self.setCellWidget(row, 3, bar)
            bar.setValue(int(round(100 * float(r.get("confidence") or 0.0))))
            bar.setFormat(f"{100 * float(r.get('confidence') or 0.0):.0f}%")

    def titles(self) -> list[str]:
        return [self.item(r, 1).text() for r in range(self.rowCount())]


class MatchView(pg.PlotWidget):
    """The query window beside the matched library window (10 frames each)."""

    def __init__(self, win: int = 10, parent=None):
        super().__init__(parent)
        self.win = win
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setTitle("Select a result to compare", size="9pt")
        self.img = pg.ImageItem(axisOrder="col-major")
        lut = np.linspace([255, 255, 255], [25, 80, 165], 64).astype(np.uint8)
        self.img.setLookupTable(lut)
        self.img.setLevels((0, 1))
        self.addItem(self.img)
        self.data = np.zeros((2 * win + 1, PITCH_HI - PITCH_LO + 1), np.float32)
        self.data[win] = 0.25  # the divider
        self.img.setImage(self.data, autoLevels=False)
        self.img.setRect(QRectF(0, PITCH_LO - 0.5, 2 * win + 1, 88))
        self.getAxis("bottom").setTicks([[(win / 2, "played"), (win * 1.5 + 1, "library")]])
        self.getAxis("left").setTicks([[(p, note_name(p)) for p in range(24, PITCH_HI + 1, 12)]])
        self.setXRange(0, 2 * win + 1, padding=0)
        self.setYRange(PITCH_LO - 0.5, PITCH_HI + 0.5, padding=0)
        self.setMinimumHeight(160)

    def show_pair(self, query: np.ndarray, match: np.ndarray, title: str = "") -> None:
        """``query``/``match``: (≤ win, 88) binary rolls; shorter ones are left-aligned."""
        w = self.win
        self.data[:] = 0
        self.data[w] = 0.25
        q, m = query[-w:], match[:w]
        self.data[:len(q)] = q
        self.data[w + 1:w + 1 + len(m)] = m
        self.img.setImage(self.data, autoLevels=False)
        self.setTitle(title, size="9pt")


class LevelMeter(QProgressBar):
    """An audio input level in dBFS: the bar is the RMS, the text the peak.

    :meth:`show_level` is meant for a timer (~20 per second), never for each audio block; bar
    and peak fall by at most :data:`FALL_DB` per call, so a short burst stays readable.
    """

    FLOOR_DB = -60  # the empty bar (this and quieter)
    FALL_DB = 1.5   # per update: ~30 dB/s at 20 updates/s

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(self.FLOOR_DB, 0)
        self.setFixedWidth(170)
        self.setToolTip("Microphone level (RMS bar, peak in dBFS); aim for peaks around "
                        "−20 to −6 dBFS")
        self.idle()

    @classmethod
    def dbfs(cls, amplitude: float) -> float:
        """Linear full-scale amplitude → dBFS, clipped to [FLOOR_DB, 0]."""
        if amplitude <= 0:
            return float(cls.FLOOR_DB)
        return min(0.0, max(float(cls.FLOOR_DB), 20 * math.log10(amplitude)))

    def show_level(self, rms: float, peak: float) -> None:
        """Show a new reading (linear RMS and peak of the blocks since the last one)."""
        self.setValue(int(round(max(self.dbfs(rms), self.value() - self.FALL_DB))))
        self.peak_db = max(self.dbfs(peak), self.peak_db - self.FALL_DB)
        self.setFormat("silence" if self.peak_db <= self.FLOOR_DB
                       else f"peak {self.peak_db:.0f} dBFS")

    def idle(self) -> None:
        """Back to the floor at once (no input)."""
        self.setValue(self.FLOOR_DB)
        self.peak_db = float(self.FLOOR_DB)
        self.setFormat("silence")
