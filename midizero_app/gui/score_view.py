"""The score view on the Identify tab: the followed piece as engraved notation (verovio SVG
pages through :mod:`midizero_app.notation`, drawn with QtSvg), the current measure
highlighted, a cursor that moves with the follower, pages that turn by themselves; or,
where a piece has no notation, its piano roll with bar lines and the same cursor.

All engraving runs in workers (:class:`~.workers.Job`, and the notation package's worker
process); a page's SVG is drawn into an image at the view's zoom there too, by Qt's SVG
image reader (QtSvg), which lets go of the interpreter while it works (parsing and
drawing a dense page takes 50–200 ms: on the GUI thread, or holding the interpreter, a
stall). The GUI thread only places items: a position update costs a few item
moves.

Which view a piece gets:

* MusicXML, MEI, Humdrum, ABC → its notation;
* MIDI → notation made from the MIDI file (labelled so);
* anything the notation package cannot engrave (:class:`~midizero_app.notation.NotationError`,
  e.g. a recording, a damaged file) → the piano roll with bar lines and a one-line reason.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import (QBrush, QColor, QImage, QPainter, QPen, QPixmap,
                           QTransform)
from PySide6.QtWidgets import (QComboBox, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView,
                               QHBoxLayout, QLabel, QPushButton, QStackedWidget, QVBoxLayout,
                               QWidget)

from .workers import Job

MODES = (("half", "Half-page turn"), ("scroll", "Scrolling (fixed cursor)"))
FROM_MIDI = "Notation made from the MIDI file."
PAGE_GAP = 16.0           # px between pages in the scene
KEEP_PAGES = 3            # pages kept drawn either side of the one in view
JUMP_CONFIDENCE = 0.5     # a jump this sure may turn pages backwards
BEHIND_NOTES = 3          # ... as may this many sure notes in a row behind the page shown
ROLL_STEP_S = 0.05        # the roll's time resolution
ROLL_SPAN_S = 12.0        # seconds of the roll in view
ZOOMS = (0.5, 0.63, 0.8, 1.0, 1.25, 1.6, 2.0, 2.5)
MARKS = 12                # notes just played, marked on the page
MAX_DEVICE_ZOOM = 2.0     # pages are drawn at most this sharp (a page image: ~16 MB)


def roll_image(frames) -> tuple[np.ndarray, np.ndarray, float]:
    """A piece's frames as a roll image on a time grid: uint8 (T, 88) (each chord held to
    the next one, at most 1 s), the score seconds where a new measure starts (bar lines),
    and the piece's length in seconds."""
    onset = np.asarray(frames.onset, np.float64)
    if not len(onset):
        return np.zeros((1, 88), np.uint8), np.zeros(0), 0.0
    end = float(onset[-1]) + 1.0
    n = int(end / ROLL_STEP_S) + 1
    img = np.zeros((n, 88), np.uint8)
    nxt = np.append(onset[1:], end)
    for j in range(len(onset)):
        a = int(onset[j] / ROLL_STEP_S)
        b = max(a + 1, int(min(nxt[j], onset[j] + 1.0) / ROLL_STEP_S))
        p = frames.pitches[frames.offsets[j]:frames.offsets[j + 1]].astype(np.int64) - 21
        img[a:b, p[(p >= 0) & (p < 88)]] = 1
    measure = np.asarray(frames.measure)
    bars = onset[np.nonzero(np.diff(measure) != 0)[0] + 1] if len(measure) > 1 else np.zeros(0)
    return img, bars, end


_TRANSLATE = re.compile(r"translate\(\s*(-?[\d.]+)[\s,]+(-?[\d.]+)\s*\)")
_VIEW_BOX = re.compile(r'<svg\b[^>]*?\bviewBox="([^"]*)"')
_MARGIN = re.compile(r'<g\b[^>]*class="page-margin(?:\s[^"]*)?"[^>]*transform="([^"]*)"')
_NOTE_HEAD = re.compile(r'<g\b[^>]*\bid="([^"]+)"[^>]*class="note(?:\s[^"]*)?"[^>]*>\s*'
                        r'<g\b[^>]*class="notehead(?:\s[^"]*)?"[^>]*>\s*'
                        r'<use\b[^>]*transform="([^"]*)"')


def note_heads(svg: str) -> dict[str, tuple[float, float]]:
    """Where each note's head is drawn on a verovio SVG page: note id → (x, y) as
    fractions of the page's width and height (the notehead glyph's origin: its left end,
    on its staff position). A text scan, not an XML parse: it keeps a worker thread's hold
    on the interpreter short."""
    vb = _VIEW_BOX.search(svg)
    size = [float(v) for v in vb.group(1).replace(",", " ").split()] if vb else []
    if len(size) != 4 or not size[2] or not size[3]:
        return {}
    m = _MARGIN.search(svg)
    t = _TRANSLATE.search(m.group(1)) if m else None
    tx, ty = (float(t.group(1)), float(t.group(2))) if t else (0.0, 0.0)
    heads = {}
    for note in _NOTE_HEAD.finditer(svg):
        at = _TRANSLATE.search(note.group(2))
        if at:
            heads[note.group(1)] = ((float(at.group(1)) + tx) / size[2],
                                    (float(at.group(2)) + ty) / size[3])
    return heads


_MEASURE = re.compile(r'<g\b[^>]*\bid="([^"]+)"[^>]*class="measure(?:\s[^"]*)?"[^>]*>')
_STAFF = re.compile(r'<g\b[^>]*class="staff(?:\s[^"]*)?"[^>]*>')
_LINE = re.compile(r'<path\b[^>]*\bd="\s*M\s*(-?[\d.]+)[\s,]+(-?[\d.]+)\s*L\s*(-?[\d.]+)'
                   r'[\s,]+(-?[\d.]+)\s*"')


def page_measure_boxes(svg: str) -> dict:
    """Every measure's box on one verovio SVG page, by measure id, as
    :func:`midizero_app.notation.measure_boxes` gives them (staff lines' extent; a
    :class:`~midizero_app.notation.Box`), from a text scan instead of an XML parse, which
    would hold the interpreter for up to ~100 ms on a dense page (a GUI stall)."""
    from ..notation import Box

    vb = _VIEW_BOX.search(svg)
    size = [float(v) for v in vb.group(1).replace(",", " ").split()] if vb else []
    if len(size) != 4:
        return {}
    page_w, page_h = size[2], size[3]
    m = _MARGIN.search(svg)
    t = _TRANSLATE.search(m.group(1)) if m else None
    tx, ty = (float(t.group(1)), float(t.group(2))) if t else (0.0, 0.0)
    starts = list(_MEASURE.finditer(svg))
    boxes = {}
    for k, measure in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(svg)
        xs, ys = [], []
        for staff in _STAFF.finditer(svg, measure.end(), end):
            nested = svg.find("<g", staff.end(), end)  # its own lines come before its layers
            for line in _LINE.finditer(svg, staff.end(), end if nested < 0 else nested):
                if line.group(2) == line.group(4):
                    xs += [float(line.group(1)), float(line.group(3))]
                    ys.append(float(line.group(2)))
        if not xs:
            continue
        x0, x1, y0, y1 = min(xs) + tx, max(xs) + tx, min(ys) + ty, max(ys) + ty
        w, h = x1 - x0, y1 - y0
        boxes[measure.group(1)] = Box(x0, y0, w, h, x0 / page_w if page_w else 0.0,
                                      y0 / page_h if page_h else 0.0,
                                      w / page_w if page_w else 0.0,
                                      h / page_h if page_h else 0.0)
    return boxes


_SVG_ROOT = re.compile(r"<svg\b[^>]*>")
_SIZE_ATTR = {k: re.compile(rf'\s{k}="[^"]*"') for k in ("width", "height")}


def page_image(svg: str, width: float, height: float, zoom: float) -> QImage:
    """A page's SVG drawn into an image of ``width × height`` page px times ``zoom``
    (device pixels; transparent behind the ink). Safe on a worker thread, and lets the
    GUI thread run meanwhile (Qt's SVG image reader: parsing and drawing a dense page
    takes 50–200 ms).

    The size is written into the SVG's root and the bytes handed to
    ``QImage.fromData``: Qt reads them through a buffer of its own. A buffer made in
    Python would be a wrapped object whose every virtual call asks for the GIL while Qt's
    image-plugin lock is held — and a GUI thread holding the GIL while it loads an icon
    waits on that lock: a deadlock."""
    size = {"width": max(1, int(round(width * zoom))), "height": max(1, int(round(height * zoom)))}
    root = _SVG_ROOT.search(svg)
    if root is None:
        from ..notation import NotationError

        raise NotationError("the page cannot be drawn: it is not SVG")
    tag = root.group(0)
    for key, attr in _SIZE_ATTR.items():
        value = f' {key}="{size[key]}px"'
        tag = attr.sub(value, tag, count=1) if attr.search(tag) else \
            tag[:4] + value + tag[4:]
    image = QImage.fromData((svg[:root.start()] + tag + svg[root.end():]).encode("utf-8"),
                            "svg")
    if image.isNull():
        from ..notation import NotationError

        raise NotationError("the page cannot be drawn: Qt's SVG reader refused it")
    return image


class _PagesView(QGraphicsView):
    clicked = Signal(float, float)  # scene coordinates of a left click

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            p = self.mapToScene(event.position().toPoint())
            self.clicked.emit(p.x(), p.y())
        super().mousePressEvent(event)


class ScoreView(QWidget):
    """Notation or roll for one piece, with a cursor (see the module docstring).

    :meth:`open_piece` starts engraving a piece; :meth:`show_position` moves the cursor
    to a follow update (``score_seconds``, ``jumped``, ``confidence``). A click on a
    measure (or on the roll) emits :attr:`placed` with its score seconds.

    Attributes for tests and benchmarks: ``kind`` ("notation", "roll" or None),
    ``piece`` (the shown piece: dict with ``id``, ``path``, ``title``), ``rendering`` (the
    :class:`~midizero_app.notation.ScoreRendering`), ``current`` (the highlighted
    :class:`~midizero_app.notation.Measure`), ``drawn`` (the measure the cursor is drawn
    in: its page is on screen), ``first_page_s`` (seconds from :meth:`open_piece` to the
    first page or the roll on screen), ``shown_at`` (``time.perf_counter()`` then),
    ``played`` (ids of the notes just played) and ``marks`` (their marks on the page),
    ``note`` (the one-line label under the view).
    """

    placed = Signal(float)   # score seconds where the user says they are
    shown = Signal(str)      # "notation" or "roll": a piece's view is on screen

    def __init__(self, settings=None, cache_dir: str | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.cache_dir = cache_dir
        self.piece: dict | None = None
        self.kind: str | None = None
        self.rendering = None
        self.current = None
        self.drawn = None  # the measure the cursor is drawn in (its page is in the scene)
        self.cursor_seconds: float | None = None
        self.first_page_s: float | None = None
        self.shown_at: float | None = None  # perf_counter when the view was on screen
        self.library = None
        self._token = 0
        self._shut = False  # the window is closing: results that arrive later are dropped
        gone = self._gone = [False]  # the widget was destroyed (workers may still answer)
        self.destroyed.connect(lambda *_: gone.__setitem__(0, True))
        self._t_open = 0.0
        self._pages: dict[int, QGraphicsPixmapItem] = {}
        self._boxes: dict[int, dict] = {}
        self._heads: dict[int, dict] = {}   # page → note id → (fx, fy)
        self.played: list[str] = []          # ids of the notes just played, oldest first
        self._played_q: float | None = None
        self._asked: set[int] = set()
        self._jobs: list[Job] = []
        self._page_px = (1.0, 1.0)
        self._allow_back = False
        self._refused = False  # the last move left the cursor behind the page shown
        self._behind = 0       # sure notes played in a row behind the page shown
        self._roll_x0 = 0.0
        self._build()

    # --- widgets --------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.title = QLabel("No piece yet: play, or choose one to practise on the Library tab.")
        self.title.setStyleSheet("font-weight: bold;")
        bar.addWidget(self.title, 1)
        self.where = QLabel("")
        bar.addWidget(self.where)
        self.prev_btn = QPushButton("◀ Page")
        self.next_btn = QPushButton("Page ▶")
        self.page_label = QLabel("")
        self.zoom_out_btn = QPushButton("−")
        self.zoom_in_btn = QPushButton("+")
        for b in (self.zoom_out_btn, self.zoom_in_btn):
            b.setFixedWidth(28)
        self.zoom_out_btn.setToolTip("Zoom out")
        self.zoom_in_btn.setToolTip("Zoom in")
        self.mode_combo = QComboBox()
        for key, label in MODES:
            self.mode_combo.addItem(label, key)
        self.mode_combo.setToolTip("How pages turn while you play: by half a page when the "
                                   "cursor reaches the lower half, or scrolling with the "
                                   "cursor kept at one height")
        for w in (self.prev_btn, self.page_label, self.next_btn, self.zoom_out_btn,
                  self.zoom_in_btn, self.mode_combo):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.stack = QStackedWidget()
        self.scene = QGraphicsScene(self)
        self.scene.setBackgroundBrush(QColor("#d8d8d8"))
        self.view = _PagesView(self.scene)
        self.view.setRenderHints(QPainter.Antialiasing | QPainter.SmoothPixmapTransform)
        self.view.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self.view.setAlignment(Qt.AlignHCenter | Qt.AlignTop)
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)
        self.stack.addWidget(self.view)
        self.roll = pg.PlotWidget()
        self.roll.setAcceptDrops(False)
        self.roll.viewport().setAcceptDrops(False)
        self.roll.setBackground("w")
        self.roll.setMenuEnabled(False)
        self.roll.hideButtons()
        self.roll.getAxis("bottom").setLabel("score seconds")
        self.roll.getAxis("left").setLabel("pitch")
        self.roll_img = pg.ImageItem(axisOrder="col-major")
        self.roll_img.setLookupTable(np.linspace([255, 255, 255], [25, 80, 165], 2)
                                     .astype(np.uint8))
        self.roll.addItem(self.roll_img)
        self.roll_bars = pg.PlotDataItem(pen=pg.mkPen(120, 120, 120, 160))
        self.roll.addItem(self.roll_bars)
        self.roll_cursor = pg.InfiniteLine(0.0, angle=90, movable=False,
                                           pen=pg.mkPen(220, 30, 30, width=2))
        self.roll.addItem(self.roll_cursor)
        self.roll.scene().sigMouseClicked.connect(self._roll_clicked)
        self.stack.addWidget(self.roll)
        lay.addWidget(self.stack, 1)
        self.note = QLabel("")
        self.note.setStyleSheet("color: #555;")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        # the cursor: the measure's box and a line at the place in it
        self.highlight = self.scene.addRect(QRectF(), QPen(Qt.NoPen),
                                            QBrush(QColor(255, 200, 0, 70)))
        self.highlight.setZValue(5)
        self.cursor = self.scene.addLine(0, 0, 0, 0, QPen(QColor(220, 30, 30, 200), 3))
        self.cursor.setZValue(6)
        self.highlight.setVisible(False)
        self.cursor.setVisible(False)
        self.marks = []
        for _ in range(MARKS):  # the notes just played
            mark = self.scene.addEllipse(QRectF(-5, -5, 10, 10), QPen(Qt.NoPen),
                                         QBrush(QColor(30, 110, 230, 110)))
            mark.setZValue(7)
            mark.setVisible(False)
            self.marks.append(mark)
        self.zoom = self._setting("score/zoom", 1.0, float)
        mode = self._setting("score/turn", "half", str)
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.zoom_in_btn.clicked.connect(lambda: self.set_zoom(self._zoom_step(1)))
        self.zoom_out_btn.clicked.connect(lambda: self.set_zoom(self._zoom_step(-1)))
        self.prev_btn.clicked.connect(lambda: self.go_to_page(self.page_in_view() - 1))
        self.next_btn.clicked.connect(lambda: self.go_to_page(self.page_in_view() + 1))
        self.view.clicked.connect(self._page_clicked)
        self.view.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.view.setTransform(QTransform.fromScale(self.zoom, self.zoom))
        self._controls()

    def _setting(self, key: str, default, kind):
        if self.settings is None:
            return default
        try:
            return kind(self.settings.value(key, default))
        except (TypeError, ValueError):
            return default

    @property
    def mode(self) -> str:
        """How pages turn: "half" or "scroll"."""
        return self.mode_combo.currentData()

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    def _mode_changed(self) -> None:
        if self.settings is not None:
            self.settings.setValue("score/turn", self.mode)

    def _controls(self) -> None:
        notation = self.kind == "notation"
        for w in (self.prev_btn, self.next_btn, self.zoom_in_btn, self.zoom_out_btn,
                  self.mode_combo, self.page_label):
            w.setVisible(notation)
        if notation:
            self.page_label.setText(f"{self.page_in_view()} / {self.rendering.pages}")
        else:
            self.page_label.setText("")

    # --- opening a piece ------------------------------------------------------------------
    def open_piece(self, piece: dict, library=None) -> Job | None:
        """Show ``piece`` (a dict with ``id``, ``path``, ``title``): engrave it in a worker,
        its first page on screen as soon as it is ready; a piece already shown is kept."""
        if self._shut or (self.piece is not None and self.piece.get("id") == piece.get("id")
                          and self.piece.get("path") == piece.get("path")):
            return None
        self._clear()
        self._token += 1
        token = self._token
        self.piece = dict(piece)
        self.library = library
        self._t_open = time.perf_counter()
        self.first_page_s = self.shown_at = None
        self.title.setText(piece.get("title") or piece.get("path") or "")
        self.title.setToolTip(piece.get("path") or "")
        self.note.setText("Engraving the score…")
        path, pid, cache_dir = piece["path"], piece.get("id"), self.cache_dir
        zoom = self._device_zoom()

        def run(_progress, _cancel):
            from ..notation import NotationError, ScoreRendering

            try:
                r = ScoreRendering.open(path, cache_dir=cache_dir)
            except NotationError as exc:
                return ("roll", self._roll_data(library, pid), str(exc))
            try:
                svg = r.svg(1)
                boxes = page_measure_boxes(svg)
                w, h = r.page_size[0] * r.scale / 100.0, r.page_size[1] * r.scale / 100.0
                return ("notation", r, (page_image(svg, w, h, zoom), zoom), boxes,
                        note_heads(svg))
            except NotationError as exc:
                r.close()
                return ("roll", self._roll_data(library, pid), str(exc))

        job = Job(run, "engrave score")
        job.signals.done.connect(lambda result: self._opened(token, result))
        job.signals.failed.connect(lambda m: self._open_failed(token, m))
        return self._start(job)

    @staticmethod
    def _roll_data(library, piece_id):
        if library is None or piece_id is None:
            return None
        try:
            return roll_image(library.frames_of(piece_id))
        except Exception:  # noqa: BLE001 - a piece without frames: an empty roll
            return None

    def _start(self, job: Job) -> Job:
        self._jobs = [j for j in self._jobs if j.running] + [job]
        return job.start()

    def _clear(self) -> None:
        for item in self._pages.values():
            self.scene.removeItem(item)
        for item in self.scene.items():
            if item is not self.highlight and item is not self.cursor \
                    and item not in self.marks:
                self.scene.removeItem(item)
        if self.rendering is not None:
            self.rendering.close()
        self.rendering = None
        self._pages, self._boxes, self._heads, self._asked = {}, {}, {}, set()
        self.played, self._played_q = [], None
        for mark in self.marks:
            mark.setVisible(False)
        self.kind = self.current = self.cursor_seconds = self.drawn = None
        self.highlight.setVisible(False)
        self.cursor.setVisible(False)
        self.where.setText("")
        self._allow_back = False

    def close_piece(self) -> None:
        """Forget the shown piece (its engraving in the worker too)."""
        self._token += 1
        self._clear()
        self.piece = None
        self._controls()

    def shut(self) -> None:
        """The window is closing: forget the piece; engravings still running are dropped
        when they end."""
        self.close_piece()
        self._shut = True

    def _open_failed(self, token: int, message: str) -> None:
        if self._live(token):
            self._show_roll(None, message)

    def _opened(self, token: int, result) -> None:
        if not self._live(token):  # another piece was asked for meanwhile (or closed)
            if result[0] == "notation":
                result[1].close()
            return
        if result[0] == "roll":
            self._show_roll(result[1], result[2])
            return
        _, r, image, boxes, heads = result
        self.rendering = r
        self.kind = "notation"
        w, h = r.page_size[0] * r.scale / 100.0, r.page_size[1] * r.scale / 100.0
        self._page_px = (w, h)
        self.scene.setSceneRect(0, 0, w, r.pages * (h + PAGE_GAP))
        for n in range(1, r.pages + 1):  # white sheets; each page's notation when drawn
            sheet = self.scene.addRect(QRectF(0, self._page_top(n), w, h), QPen(Qt.NoPen),
                                       QBrush(Qt.white))
            sheet.setZValue(-1)
        self._add_page(1, image, boxes, heads)
        self.stack.setCurrentWidget(self.view)
        self.view.verticalScrollBar().setValue(0)
        self.note.setText(FROM_MIDI if r.from_midi else "")
        self.shown_at = time.perf_counter()
        self.first_page_s = self.shown_at - self._t_open
        self._controls()
        self._want_pages()
        self.shown.emit("notation")

    def _show_roll(self, data, reason: str) -> None:
        self.kind = "roll"
        self.stack.setCurrentWidget(self.roll)
        img, bars, end = data if data is not None else (np.zeros((1, 88), np.uint8),
                                                         np.zeros(0), 0.0)
        self.roll_img.setImage(img, autoLevels=False, levels=(0, 1))
        self.roll_img.setRect(QRectF(0.0, 20.5, len(img) * ROLL_STEP_S, 88))
        xs = np.repeat(bars, 2)
        ys = np.tile([20.5, 108.5], len(bars))
        self.roll_bars.setData(xs, ys, connect="pairs")
        self.roll.setYRange(20.5, 108.5, padding=0)
        self._roll_x0 = 0.0
        self.roll.setXRange(0.0, ROLL_SPAN_S, padding=0)
        self.note.setText(f"No notation for this piece ({reason}): showing its piano roll.")
        self.shown_at = time.perf_counter()
        self.first_page_s = self.shown_at - self._t_open
        self._controls()
        self.shown.emit("roll")

    # --- pages ----------------------------------------------------------------------------
    def _page_top(self, n: int) -> float:
        return (n - 1) * (self._page_px[1] + PAGE_GAP)

    def _device_zoom(self) -> float:
        """Device pixels per page px the pages are drawn at (the zoom, on high-DPI
        screens times the screen's ratio)."""
        return min(self.zoom * max(1.0, float(self.devicePixelRatioF())), MAX_DEVICE_ZOOM)

    def _add_page(self, n: int, drawn: tuple[QImage, float], boxes: dict, heads: dict) -> None:
        image, zoom = drawn
        old = self._pages.pop(n, None)
        if old is not None:
            self.scene.removeItem(old)
        item = QGraphicsPixmapItem(QPixmap.fromImage(image))
        item.setTransformationMode(Qt.SmoothTransformation)
        item.setScale(1.0 / zoom)
        item.setPos(0.0, self._page_top(n))
        self.scene.addItem(item)
        item.drawn_zoom = zoom
        self._pages[n] = item
        self._boxes[n] = {k: v for k, v in boxes.items() if v is not None}
        self._heads[n] = heads
        self._asked.discard(n)
        if self.cursor_seconds is not None and self.current is not None \
                and self.current.page == n:
            self._draw_cursor()

    def page_in_view(self) -> int:
        """The page at the middle of the view (1-based)."""
        if self.rendering is None:
            return 1
        mid = self.view.mapToScene(self.view.viewport().rect().center()).y()
        n = int(mid // (self._page_px[1] + PAGE_GAP)) + 1
        return min(max(n, 1), self.rendering.pages)

    def pages_drawn(self) -> list[int]:
        """The pages whose notation is in the scene now."""
        return sorted(self._pages)

    def go_to_page(self, n: int) -> None:
        if self.rendering is None:
            return
        n = min(max(int(n), 1), self.rendering.pages)
        self._scroll_to(self._page_top(n))

    def _scroll_to(self, top: float) -> None:
        bar = self.view.verticalScrollBar()
        bar.setValue(int(round(top * self.zoom)))

    def _scrolled(self) -> None:
        if self.kind == "notation":
            self._controls()
            self._want_pages()

    def _want_pages(self) -> None:
        """Draw the pages in view and the next one; forget those far away."""
        r = self.rendering
        if r is None:
            return
        rect = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        step = self._page_px[1] + PAGE_GAP
        first = max(1, int(rect.top() // step) + 1)
        last = min(r.pages, int(rect.bottom() // step) + 2)
        if self.current is not None:
            first, last = min(first, self.current.page), max(last, self.current.page)
        for n in range(first, last + 1):
            self._ask_page(n)
        for n in list(self._pages):
            if n < first - KEEP_PAGES or n > last + KEEP_PAGES:
                self.scene.removeItem(self._pages.pop(n))

    def _ask_page(self, n: int) -> None:
        item = self._pages.get(n)
        if n in self._asked or self.rendering is None or (
                item is not None and abs(item.drawn_zoom - self._device_zoom()) < 1e-3):
            return
        self._asked.add(n)
        r, token, zoom = self.rendering, self._token, self._device_zoom()
        w, h = self._page_px

        def run(_progress, _cancel):
            svg = r.svg(n)
            boxes = page_measure_boxes(svg)
            return (page_image(svg, w, h, zoom), zoom), boxes, note_heads(svg)

        job = Job(run, f"score page {n}")
        job.signals.done.connect(lambda res: self._live(token) and self._add_page(n, *res))
        job.signals.failed.connect(lambda m: self._live(token) and self._page_failed(n, m))
        self._start(job)

    def _live(self, token: int) -> bool:
        """Whether a worker's answer for ``token`` is still wanted."""
        return not self._gone[0] and token == self._token and not self._shut

    def _page_failed(self, n: int, message: str) -> None:
        self._asked.discard(n)
        self.note.setText(f"Page {n} cannot be shown: {message}")

    def set_zoom(self, zoom: float) -> None:
        top = self.view.mapToScene(0, 0).y()
        self.zoom = min(max(float(zoom), ZOOMS[0]), ZOOMS[-1])
        self.view.setTransform(QTransform.fromScale(self.zoom, self.zoom))
        self._scroll_to(top)
        self._want_pages()  # drawn again at the new zoom (scaled meanwhile)
        if self.settings is not None:
            self.settings.setValue("score/zoom", self.zoom)

    def _zoom_step(self, direction: int) -> float:
        i = min(range(len(ZOOMS)), key=lambda k: abs(ZOOMS[k] - self.zoom))
        return ZOOMS[min(max(i + direction, 0), len(ZOOMS) - 1)]

    # --- the cursor -------------------------------------------------------------------------
    def show_position(self, update: dict, played: bool = False) -> None:
        """Move the cursor to a follow update's ``score_seconds`` (ignored for another piece
        or without a position). Pages turn forwards as the cursor needs; backwards only
        after a confident jump, a click, or :data:`BEHIND_NOTES` confident notes in a row
        played behind the page shown (a jump the follower found unsure at first).
        ``played``: the update is a note just played (the notes since the last one are
        marked)."""
        s = update.get("score_seconds")
        if s is None or self.piece is None or self.kind is None:
            return
        if update.get("piece_id") is not None and update["piece_id"] != self.piece.get("id"):
            return
        if update.get("jumped") and (update.get("confidence") or 0.0) >= JUMP_CONFIDENCE:
            self._allow_back = True
        self.cursor_seconds = float(s)
        m = update.get("measure")
        beat = update.get("beat")
        if m is None:  # frames without measures (MIDI): the notation's own
            m, beat = self.measure_at_seconds(float(s)) or (None, None)
        self.where.setText("" if m is None else
                           f"m. {m}" + ("" if beat is None else f", beat {beat + 1:.1f}")
                           + f" · {100 * (update.get('confidence') or 0):.0f} %")
        self._refused = False
        self._move()
        if self.kind == "notation" and played:
            self._mark_played(self.rendering.quarters_at_seconds(self.cursor_seconds),
                              bool(update.get("jumped")))
        if not self._refused:
            self._behind = 0
        elif played and (update.get("confidence") or 0.0) >= JUMP_CONFIDENCE:
            self._behind += 1
            if self._behind >= BEHIND_NOTES:  # the player is really back there
                self._behind = 0
                self._allow_back = True
                self._move()
        self._allow_back = False

    def _move(self) -> None:
        if self.kind == "roll":
            self._roll_cursor()
        else:
            self.current = self.rendering.at_seconds(self.cursor_seconds)[0]
            self._draw_cursor()

    def measure_at_seconds(self, score_seconds: float) -> tuple[int, float] | None:
        """The engraved measure at ``score_seconds`` (its number, the app's readers'
        numbering) and the place in it in quarter notes from its bar line; None without
        notation."""
        r = self.rendering
        if r is None:
            return None
        m, q = r.beat_in_measure(r.quarters_at_seconds(score_seconds))
        return m.number, round(q, 3)

    def _draw_cursor(self) -> None:
        r, m = self.rendering, self.current
        boxes = self._boxes.get(m.page)
        if boxes is None:
            self._ask_page(m.page)
            return
        box = boxes.get(m.id)
        if box is None:
            return
        w, h = self._page_px
        top = self._page_top(m.page)
        pad = 0.35 * box.fh * h + 12.0
        rect = QRectF(box.fx * w, top + box.fy * h - pad, box.fw * w, box.fh * h + 2 * pad)
        self.highlight.setRect(rect)
        q = r.quarters_at_seconds(self.cursor_seconds)
        span = max(m.end_q - m.start_q, 1e-6)
        frac = min(max((q - m.start_q) / span, 0.0), 1.0)
        x = rect.left() + frac * rect.width()
        self.cursor.setLine(x, rect.top(), x, rect.bottom())
        self.highlight.setVisible(True)
        self.cursor.setVisible(True)
        self.drawn = m
        self._turn(rect)

    def _turn(self, rect: QRectF) -> None:
        """Scroll so the cursor's system is in view: forwards freely, backwards only when
        allowed (a confident jump, a click)."""
        view_rect = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        top, height = view_rect.top(), view_rect.height()
        margin = 0.05 * height
        if self.mode == "scroll":
            target = rect.center().y() - height / 3.0
            if target < top - 1.0 and not self._allow_back:
                self._refused = rect.bottom() < top  # out of sight above
                return
            if abs(target - top) > 1.0:
                # ease towards the target: the system glides into place between updates
                step = target - top if self._allow_back or abs(target - top) > height \
                    else 0.35 * (target - top)
                self._scroll_to(top + step)
            return
        if rect.top() < top - 1.0:  # above the view
            if self._allow_back:
                self._scroll_to(rect.top() - margin)
            else:
                self._refused = True
            return
        if rect.bottom() > top + height or (rect.top() > top + height / 2.0
                                            and rect.bottom() > top + 0.9 * height):
            # half a page on; if that is not enough (a jump ahead), the system at the top
            new_top = top + height / 2.0
            if rect.bottom() > new_top + height or rect.top() < new_top:
                new_top = rect.top() - margin
            self._scroll_to(new_top)

    def _mark_played(self, q: float, jumped: bool) -> None:
        r, last = self.rendering, self._played_q
        if last is not None and not jumped and 0.0 <= q - last <= 8.0:
            new = r.notes_between(last + 1e-3, q + 1e-3)
        else:
            self.played = []
            new = r.notes_between(q - 1e-3, q + 1e-3) or r.notes_at(q)
        self._played_q = q
        self.played = (self.played + [i for i in new if i not in self.played])[-MARKS:]
        w, h = self._page_px
        where = {}
        for n, heads in self._heads.items():
            for i in self.played:
                if i in heads:
                    where[i] = (heads[i][0] * w + 4.0, self._page_top(n) + heads[i][1] * h)
        for k, mark in enumerate(self.marks):
            i = self.played[k] if k < len(self.played) else None
            if i in where:
                mark.setPos(*where[i])
                mark.setVisible(True)
            else:
                mark.setVisible(False)

    def _page_clicked(self, x: float, y: float) -> None:
        r = self.rendering
        if r is None:
            return
        w, h = self._page_px
        step = h + PAGE_GAP
        n = int(y // step) + 1
        fx, fy = x / w, (y - self._page_top(n)) / h
        best, best_d = None, None
        for m in r.measures_on(n):
            box = self._boxes.get(n, {}).get(m.id)
            if box is None or not box.fx <= fx <= box.fx + box.fw:
                continue
            d = 0.0 if box.fy <= fy <= box.fy + box.fh else \
                min(abs(fy - box.fy), abs(fy - box.fy - box.fh))
            if d < 0.08 and (best_d is None or d < best_d):
                best, best_d = m, d
        if best is not None:
            self.place(best.start_s)

    def place(self, score_seconds: float) -> None:
        """The user says they are at ``score_seconds``: the cursor goes there (backwards
        too) and :attr:`placed` tells the follower."""
        self.placed.emit(float(score_seconds))
        self._allow_back = True
        self.show_position({"score_seconds": float(score_seconds), "confidence": 1.0,
                            "piece_id": self.piece.get("id") if self.piece else None})

    def click_measure(self, measure) -> None:
        """Click the middle of a measure's box (as the mouse does)."""
        box = self._boxes.get(measure.page, {}).get(measure.id)
        if box is None:
            return
        w, h = self._page_px
        self._page_clicked((box.fx + box.fw / 2) * w,
                           self._page_top(measure.page) + (box.fy + box.fh / 2) * h)

    # --- the roll ---------------------------------------------------------------------------
    def _roll_cursor(self) -> None:
        s = self.cursor_seconds
        self.roll_cursor.setValue(s)
        x0 = self._roll_x0
        if s > x0 + 0.75 * ROLL_SPAN_S or (s < x0 and self._allow_back):
            self._roll_x0 = x0 = max(0.0, s - ROLL_SPAN_S / 3.0)
            self.roll.setXRange(x0, x0 + ROLL_SPAN_S, padding=0)
        elif s < x0:
            self._refused = True

    def _roll_clicked(self, event) -> None:
        if self.kind != "roll" or event.button() != Qt.LeftButton:
            return
        p = self.roll.getPlotItem().vb.mapSceneToView(event.scenePos())
        self.place(max(0.0, float(p.x())))
