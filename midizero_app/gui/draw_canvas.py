"""Piano-roll widgets for the Draw tab: a canvas to draw on and a view of generated notes.

Both share one look: 88 keys up (a narrow keyboard strip at the left, black-key rows
shaded, C rows labelled), time across in 16th-note steps, beat and bar lines.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QSizePolicy, QWidget

from ..draw.drawing import BEATS_PER_BAR, STEPS_PER_BEAT, Drawing
from .widgets import BLACK, PITCH_HI, PITCH_LO, note_name

N_KEYS = PITCH_HI - PITCH_LO + 1
KEYS_W = 34      # pixels of the keyboard strip
UNDO_LIMIT = 100


class RollBase(QWidget):
    """The shared grid and the cell ↔ pixel mapping."""

    def __init__(self, bars: int = 8, parent=None):
        super().__init__(parent)
        self.n_steps = bars * STEPS_PER_BEAT * BEATS_PER_BAR
        self.setMinimumSize(360, 300)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAttribute(Qt.WA_OpaquePaintEvent)

    # geometry ---------------------------------------------------------------------------
    def _cell(self) -> tuple[float, float]:
        return ((self.width() - KEYS_W - 1) / self.n_steps, (self.height() - 1) / N_KEYS)

    def cell_rect(self, step: float, pitch: int, length: float = 1.0) -> QRectF:
        cw, ch = self._cell()
        return QRectF(KEYS_W + step * cw, (PITCH_HI - pitch) * ch, length * cw, ch)

    def cell_center(self, step: float, pitch: float) -> QPointF:
        """Widget pixel of a (fractional) step and pitch."""
        cw, ch = self._cell()
        return QPointF(KEYS_W + (step + 0.5) * cw, (PITCH_HI - pitch + 0.5) * ch)

    def cell_at(self, x: float, y: float) -> tuple[int, int]:
        """(step, pitch) under a pixel, clamped to the roll."""
        cw, ch = self._cell()
        step = int(np.clip((x - KEYS_W) // cw, 0, self.n_steps - 1))
        pitch = int(np.clip(PITCH_HI - y // ch, PITCH_LO, PITCH_HI))
        return step, pitch

    # painting ---------------------------------------------------------------------------
    def draw_grid(self, qp: QPainter) -> None:
        """The grid from a pixmap cached per size and length (a paint costs one call)."""
        key = (self.width(), self.height(), self.n_steps)
        if getattr(self, "_grid_key", None) != key:
            pm = QPixmap(self.size())
            p = QPainter(pm)
            self.paint_grid(p)
            p.end()
            self._grid_key, self._grid = key, pm
        qp.drawPixmap(0, 0, self._grid)

    def cells_image(self, alpha: np.ndarray, rgb: tuple[int, int, int]) -> QImage:
        """A (T, 88) alpha map in 0..1 as an image of one pixel per cell (top = highest)."""
        a = np.clip(np.asarray(alpha, np.float32), 0, 1)[:, ::-1].T  # (88, T), top row high
        buf = np.zeros(a.shape + (4,), np.uint8)
        buf[..., 0], buf[..., 1], buf[..., 2] = rgb[2], rgb[1], rgb[0]  # BGRA in memory
        buf[..., 3] = np.round(a * 255).astype(np.uint8)
        buf = np.ascontiguousarray(buf)
        img = QImage(buf.data, buf.shape[1], buf.shape[0], buf.shape[1] * 4,
                     QImage.Format_ARGB32)
        return img.copy()  # own the pixels (the numpy buffer goes away)

    def draw_cells(self, qp: QPainter, alpha: np.ndarray, rgb: tuple[int, int, int]) -> None:
        """Paint a (T, 88) alpha map over the roll, one cell per step and semitone."""
        cw, ch = self._cell()
        qp.drawImage(QRectF(KEYS_W, 0, self.n_steps * cw, N_KEYS * ch),
                     self.cells_image(alpha, rgb))

    def paint_grid(self, qp: QPainter) -> None:
        cw, ch = self._cell()
        w, h = self.width(), self.height()
        qp.fillRect(0, 0, w, h, QColor("#fbfbfd"))
        shade = QColor("#eef0f5")
        for p in range(PITCH_LO, PITCH_HI + 1):
            if p % 12 in BLACK:
                r = self.cell_rect(0, p, self.n_steps)
                qp.fillRect(r, shade)
        qp.setPen(QPen(QColor("#e2e5ec"), 0))
        for p in range(PITCH_LO, PITCH_HI + 1):
            if p % 12 == 0:
                y = self.cell_rect(0, p).bottom()
                qp.drawLine(QPointF(KEYS_W, y), QPointF(w, y))
        for s in range(0, self.n_steps + 1, STEPS_PER_BEAT):
            x = KEYS_W + s * cw
            bar = s % (STEPS_PER_BEAT * BEATS_PER_BAR) == 0
            qp.setPen(QPen(QColor("#b9bfcc" if bar else "#e2e5ec"), 0))
            qp.drawLine(QPointF(x, 0), QPointF(x, h))
        # keyboard strip
        qp.fillRect(QRectF(0, 0, KEYS_W, h), QColor("white"))
        for p in range(PITCH_LO, PITCH_HI + 1):
            r = QRectF(0, (PITCH_HI - p) * ch, KEYS_W, ch)
            if p % 12 in BLACK:
                qp.fillRect(QRectF(0, r.top(), KEYS_W * 0.6, ch), QColor("#2b2b2b"))
        qp.setPen(QPen(QColor("#777"), 0))
        f = qp.font()
        f.setPixelSize(max(7, min(10, int(ch * 2.2))))
        qp.setFont(f)
        for p in range(PITCH_LO, PITCH_HI + 1):
            if p % 12 == 0:
                r = QRectF(0, (PITCH_HI - p) * ch - ch * 1.5, KEYS_W - 3, ch * 2.5)
                qp.drawText(r, Qt.AlignRight | Qt.AlignVCenter, note_name(p))
        qp.setPen(QPen(QColor("#c7cbd4"), 0))
        qp.drawLine(QPointF(KEYS_W, 0), QPointF(KEYS_W, h))
        qp.drawRect(QRectF(0, 0, w - 1, h - 1))


class DrawCanvas(RollBase):
    """Draw on the roll with the mouse: pen (width, darkness) or eraser; undo/redo/clear.

    The drawing is :attr:`ink` (float32 (T, 88), 0 = empty), see
    :class:`~midizero_app.draw.drawing.Drawing`. ``changed`` is emitted after every edit.
    """

    changed = Signal()

    def __init__(self, bars: int = 8, parent=None):
        super().__init__(bars, parent)
        self.ink = np.zeros((self.n_steps, N_KEYS), np.float32)
        self.pen_width = 2       # cells across
        self.darkness = 1.0      # 0.2..1: the stroke's velocity
        self.eraser = False
        self.ghost: np.ndarray | None = None  # generated roll shown faintly (or None)
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []
        self._last: tuple[float, float] | None = None
        self.setCursor(Qt.CrossCursor)
        self.setMouseTracking(False)

    # the model --------------------------------------------------------------------------
    def drawing(self) -> Drawing:
        return Drawing(self.ink.copy())

    def set_drawing(self, drawing: Drawing, undoable: bool = True) -> None:
        """Replace the picture (an opened image, a length change); undoable by default."""
        if undoable:
            self._push()
        self.n_steps = drawing.n_steps
        self.ink = drawing.ink.copy()
        self.update()
        self.changed.emit()

    def set_bars(self, bars: int) -> None:
        """Stretch or squeeze what is drawn to a new length."""
        self.set_drawing(self.drawing().resized(bars))

    def clear(self) -> None:
        if self.ink.any():
            self._push()
            self.ink[:] = 0
            self.update()
            self.changed.emit()

    def _push(self) -> None:
        self._undo.append(self.ink.copy())
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self.ink)
            self._set_ink(self._undo.pop())

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self.ink)
            self._set_ink(self._redo.pop())

    def _set_ink(self, ink: np.ndarray) -> None:
        self.ink = ink
        self.n_steps = len(ink)
        self.update()
        self.changed.emit()

    # drawing with the mouse ---------------------------------------------------------------
    def _dab(self, step: float, pitch: float) -> None:
        r = max(0.0, (self.pen_width - 1) / 2)
        s0, s1 = int(np.floor(step - r)), int(np.floor(step + r)) + 1
        p0, p1 = int(round(pitch - r)), int(round(pitch + r)) + 1
        s0, s1 = max(s0, 0), min(s1, self.n_steps)
        c0, c1 = max(p0 - PITCH_LO, 0), min(p1 - PITCH_LO, N_KEYS)
        if s0 >= s1 or c0 >= c1:
            return
        if self.eraser:
            self.ink[s0:s1, c0:c1] = 0
        else:
            self.ink[s0:s1, c0:c1] = np.maximum(self.ink[s0:s1, c0:c1], self.darkness)

    def _pos_cell(self, pos: QPointF) -> tuple[float, float]:
        cw, ch = self._cell()
        step = (pos.x() - KEYS_W) / cw
        pitch = PITCH_HI - pos.y() / ch + 0.5
        return (float(np.clip(step, 0, self.n_steps - 1e-3)),
                float(np.clip(pitch, PITCH_LO, PITCH_HI)))

    def _stroke_to(self, cell: tuple[float, float]) -> None:
        a = self._last or cell
        n = int(max(abs(cell[0] - a[0]), abs(cell[1] - a[1])) * 2) + 1
        for t in np.linspace(0, 1, n + 1):
            self._dab(a[0] + (cell[0] - a[0]) * t, a[1] + (cell[1] - a[1]) * t)
        self._last = cell
        self.update()

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        self._push()
        self._last = None
        self._stroke_to(self._pos_cell(event.position()))

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.LeftButton and self._last is not None:
            self._stroke_to(self._pos_cell(event.position()))

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.LeftButton and self._last is not None:
            self._last = None
            self.changed.emit()

    def paintEvent(self, _event) -> None:
        qp = QPainter(self)
        self.draw_grid(qp)
        if self.ghost is not None and len(self.ghost) == self.n_steps:
            self.draw_cells(qp, (self.ghost > 0) * 0.3, (240, 150, 40))
        self.draw_cells(qp, np.where(self.ink > 0, 0.25 + 0.75 * self.ink, 0.0), (28, 58, 120))
        if not self.ink.any():
            qp.setPen(QColor("#9aa1ad"))
            f = qp.font()
            f.setPixelSize(15)
            qp.setFont(f)
            qp.drawText(self.rect(), Qt.AlignCenter,
                        "Draw here with the mouse\n— or open or drop a picture (PNG, JPEG)")
        qp.end()


class NotesView(RollBase):
    """Generated notes as bars on the roll, coloured by velocity, with a play cursor."""

    def __init__(self, bars: int = 8, parent=None):
        super().__init__(bars, parent)
        self.notes = np.zeros((0, 4), np.int64)
        self.drawing_mask: np.ndarray | None = None
        self.cursor_step: float | None = None
        self.placeholder = "Press Generate to turn the drawing into music"

    def set_notes(self, notes: np.ndarray, n_steps: int, drawing_mask=None) -> None:
        self.notes = np.asarray(notes, np.int64).reshape(-1, 4)
        self.n_steps = int(n_steps)
        self.drawing_mask = drawing_mask
        self.cursor_step = None
        self._layer_key = None
        self.update()

    def _paint_notes(self, qp: QPainter) -> None:
        if self.drawing_mask is not None and len(self.drawing_mask) == self.n_steps:
            self.draw_cells(qp, (self.drawing_mask > 0) * 0.11, (28, 58, 120))
        qp.setPen(QPen(QColor(120, 60, 0, 160), 0))
        for s, e, p, v in self.notes:
            t = (float(v) - 30) / 97
            qp.setBrush(QColor.fromHsvF(0.08, 0.55 + 0.4 * t, 0.98 - 0.25 * t))
            qp.drawRect(self.cell_rect(int(s), int(p), int(e - s)))

    def set_cursor(self, step: float | None) -> None:
        self.cursor_step = step
        self.update()

    def paintEvent(self, _event) -> None:
        qp = QPainter(self)
        key = (self.width(), self.height(), self.n_steps, id(self.notes))
        if getattr(self, "_layer_key", None) != key:  # grid + drawing + notes, cached:
            pm = QPixmap(self.size())                  # a cursor move repaints one pixmap
            p = QPainter(pm)
            self.draw_grid(p)
            self._paint_notes(p)
            p.end()
            self._layer_key, self._layer = key, pm
        qp.drawPixmap(0, 0, self._layer)
        if self.cursor_step is not None:
            x = self.cell_rect(self.cursor_step, PITCH_HI).left()
            qp.setPen(QPen(QColor("#d0342c"), 2))
            qp.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        if not len(self.notes):
            qp.setPen(QColor("#9aa1ad"))
            f = qp.font()
            f.setPixelSize(15)
            qp.setFont(f)
            qp.drawText(self.rect(), Qt.AlignCenter, self.placeholder)
        qp.end()


def drag(canvas: DrawCanvas, cells: list[tuple[float, float]]) -> None:
    """Draw one stroke through (step, pitch) points with real mouse events (tests, scripts)."""
    if not cells:
        return
    pts = [canvas.cell_center(s, p) for s, p in cells]
    glob = canvas.mapToGlobal(pts[0].toPoint())

    def send(kind, pos, button, buttons):
        ev = QMouseEvent(kind, pos, QPointF(glob), button, buttons, Qt.NoModifier)
        QApplication.sendEvent(canvas, ev)

    send(QEvent.MouseButtonPress, pts[0], Qt.LeftButton, Qt.LeftButton)
    for p in pts[1:]:
        send(QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton)
    send(QEvent.MouseButtonRelease, pts[-1], Qt.LeftButton, Qt.NoButton)
