"""Draw tab: draw on a piano roll or open a picture, and get piano music whose
piano roll looks like it — made by chord rules or stitched from your own library.

Generation, image loading and starting the synth run in workers (:class:`Job`); playback
moves a cursor over the generated roll; Export writes a ``.mid``; Send to Identify searches
the library with the result.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QFrame, QGridLayout,
                               QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox, QSplitter,
                               QToolButton, QVBoxLayout, QWidget)

from ..draw.theory import NAMES_FLAT, NAMES_SHARP, PROGRESSIONS, Key
from .draw_canvas import DrawCanvas, NotesView
from .workers import Job

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
METHOD_LABELS = (("rule", "Rule: snap to chords in the key"),
                 ("library", "Library: stitch real music from your scores"),
                 ("naive", "Naive: every drawn cell a note"))


def key_names() -> list[str]:
    """Every major and minor key, as the key box lists them."""
    names = [(NAMES_FLAT if t in (1, 3, 8, 10) else NAMES_SHARP)[t] for t in range(12)]
    return [f"{n} major" for n in names] + [f"{n} minor" for n in names]


class DrawTab(QWidget):
    """The canvas and the generated roll side by side, with the tools above them."""

    message = Signal(str)
    position = Signal(float)   # playback seconds, from the audio thread

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.main = window
        self.result = None          # the latest Generated
        self.player = None
        self.job: Job | None = None
        self._temp_dir = Path(tempfile.mkdtemp(prefix="midizero-draw-"))
        self.setAcceptDrops(True)
        lay = QVBoxLayout(self)
        lay.addLayout(self._drawing_tools())
        lay.addLayout(self._music_options())
        lay.addWidget(self._rolls(), 1)
        lay.addLayout(self._bottom_row())
        self._connect()
        self._play_timer = QTimer(self)
        self._play_timer.timeout.connect(self._check_playing)
        self._restore()
        self._fill_progressions()
        self._method_changed()
        self._update_buttons()

    def _drawing_tools(self) -> QHBoxLayout:
        """Pen, eraser, width, darkness, undo/redo/clear, open a picture."""
        tools = QHBoxLayout()
        self.pen_btn = self._tool("Pen", "Draw notes (darker strokes play louder)", True)
        self.eraser_btn = self._tool("Eraser", "Erase what is drawn", True)
        group = QButtonGroup(self)
        group.addButton(self.pen_btn)
        group.addButton(self.eraser_btn)
        self.pen_btn.setChecked(True)
        tools.addWidget(self.pen_btn)
        tools.addWidget(self.eraser_btn)
        tools.addWidget(QLabel("Width"))
        self.width_spin = QSpinBox()
        self.width_spin.setRange(1, 8)
        self.width_spin.setValue(2)
        self.width_spin.setToolTip("Pen width in cells (16th notes × semitones)")
        tools.addWidget(self.width_spin)
        tools.addWidget(QLabel("Darkness"))
        self.dark_slider = QSlider(Qt.Horizontal)
        self.dark_slider.setRange(20, 100)
        self.dark_slider.setValue(100)
        self.dark_slider.setFixedWidth(90)
        self.dark_slider.setToolTip("How dark the pen draws: darker notes play louder")
        tools.addWidget(self.dark_slider)
        self.undo_btn = self._tool("Undo", "Undo (Ctrl+Z)")
        self.redo_btn = self._tool("Redo", "Redo (Ctrl+Shift+Z)")
        self.clear_btn = self._tool("Clear", "Erase everything")
        for b in (self.undo_btn, self.redo_btn, self.clear_btn):
            tools.addWidget(b)
        sep = QFrame()
        sep.setFrameShape(QFrame.VLine)
        sep.setStyleSheet("color: #ccc;")
        tools.addWidget(sep)
        self.open_btn = QPushButton("Open picture…")
        self.open_btn.setToolTip("A PNG or JPEG is scaled and thresholded onto the roll "
                                 "(you can also drop one here)")
        tools.addWidget(self.open_btn)
        tools.addStretch(1)
        return tools

    def _music_options(self) -> QHBoxLayout:
        """Method, key, tempo, bars, chords, harmonic rhythm and Generate."""
        opts = QHBoxLayout()
        opts.addWidget(QLabel("Method"))
        self.method_combo = QComboBox()
        for value, label in METHOD_LABELS:
            self.method_combo.addItem(label, value)
        opts.addWidget(self.method_combo)
        opts.addWidget(QLabel("Key"))
        self.key_combo = QComboBox()
        self.key_combo.addItems(key_names())
        opts.addWidget(self.key_combo)
        opts.addWidget(QLabel("Tempo"))
        self.tempo_spin = QSpinBox()
        self.tempo_spin.setRange(30, 240)
        self.tempo_spin.setValue(96)
        self.tempo_spin.setSuffix(" bpm")
        opts.addWidget(self.tempo_spin)
        opts.addWidget(QLabel("Bars"))
        self.bars_spin = QSpinBox()
        self.bars_spin.setRange(1, 32)
        self.bars_spin.setValue(8)
        self.bars_spin.setToolTip("Length in 4/4 bars (what is drawn is stretched to fit)")
        opts.addWidget(self.bars_spin)
        self.chords_label = QLabel("Chords")
        opts.addWidget(self.chords_label)
        self.prog_combo = QComboBox()
        self.prog_combo.setToolTip("Rule method: the chord progression (repeated)")
        opts.addWidget(self.prog_combo)
        self.rhythm_combo = QComboBox()
        self.rhythm_combo.addItem("1 chord a bar", 1)
        self.rhythm_combo.addItem("2 chords a bar", 2)
        self.rhythm_combo.addItem("4 chords a bar", 4)
        self.rhythm_combo.setToolTip("Rule method: harmonic rhythm")
        opts.addWidget(self.rhythm_combo)
        opts.addStretch(1)
        self.generate_btn = QPushButton("Generate")
        self.generate_btn.setDefault(True)
        self.generate_btn.setToolTip("Make music from the drawing (Ctrl+Return)")
        self.generate_btn.setStyleSheet(
            "QPushButton { background: #2f6fd0; color: white; font-weight: bold; "
            "padding: 5px 18px; border-radius: 4px; } "
            "QPushButton:disabled { background: #9bb4dd; }")
        opts.addWidget(self.generate_btn)
        return opts

    def _rolls(self) -> QSplitter:
        """The drawing beside the generated music."""
        split = QSplitter(Qt.Horizontal)
        self.canvas = DrawCanvas(8)
        self.view = NotesView(8)
        for title, w in (("Your drawing", self.canvas), ("Generated music", self.view)):
            pane = QWidget()
            pl = QVBoxLayout(pane)
            pl.setContentsMargins(0, 0, 0, 0)
            head = QLabel(f"<b>{title}</b>")
            pl.addWidget(head)
            pl.addWidget(w, 1)
            split.addWidget(pane)
        split.setSizes([500, 500])
        return split

    def _bottom_row(self) -> QGridLayout:
        """Play, stop, export, send to Identify; the status line."""
        bottom = QGridLayout()
        self.play_btn = QPushButton("▶ Play")
        self.stop_btn = QPushButton("■ Stop")
        self.export_btn = QPushButton("Export MIDI…")
        self.identify_btn = QPushButton("Send to Identify")
        self.identify_btn.setToolTip("What does this sound like? Search your library with it")
        row = QHBoxLayout()
        for b in (self.play_btn, self.stop_btn, self.export_btn, self.identify_btn):
            row.addWidget(b)
        row.addStretch(1)
        bottom.addLayout(row, 0, 0)
        self.status = QLabel("Draw something, or open a picture, then press Generate.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        bottom.addWidget(self.status, 1, 0)
        return bottom

    def _connect(self) -> None:
        self.pen_btn.toggled.connect(lambda on: setattr(self.canvas, "eraser", not on))
        self.width_spin.valueChanged.connect(lambda v: setattr(self.canvas, "pen_width", v))
        self.dark_slider.valueChanged.connect(
            lambda v: setattr(self.canvas, "darkness", v / 100.0))
        self.undo_btn.clicked.connect(self.canvas.undo)
        self.redo_btn.clicked.connect(self.canvas.redo)
        self.clear_btn.clicked.connect(self.canvas.clear)
        self.canvas.changed.connect(self._canvas_changed)
        self.open_btn.clicked.connect(self.ask_image)
        self.bars_spin.valueChanged.connect(self.canvas.set_bars)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.key_combo.currentIndexChanged.connect(self._fill_progressions)
        self.generate_btn.clicked.connect(self.generate)
        self.play_btn.clicked.connect(self.play)
        self.stop_btn.clicked.connect(self.stop)
        self.export_btn.clicked.connect(self.ask_export)
        self.identify_btn.clicked.connect(self.send_to_identify)
        self.position.connect(self._on_position)
        for seq, fn in ((QKeySequence.Undo, self.canvas.undo),
                        (QKeySequence.Redo, self.canvas.redo),
                        (QKeySequence("Ctrl+Return"), self.generate)):
            sc = QShortcut(seq, self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)

    @staticmethod
    def _tool(text: str, tip: str, checkable: bool = False) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setCheckable(checkable)
        b.setToolButtonStyle(Qt.ToolButtonTextOnly)
        b.setMinimumWidth(52)
        return b

    # settings ---------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.main.settings
        key = s.value("draw/key", "C major")
        if key in key_names():
            self.key_combo.setCurrentText(key)
        for spin, name in ((self.tempo_spin, "tempo"), (self.bars_spin, "bars")):
            try:
                spin.setValue(int(s.value(f"draw/{name}", spin.value())))
            except (TypeError, ValueError):
                pass
        i = self.method_combo.findData(s.value("draw/method", "rule"))
        self.method_combo.setCurrentIndex(max(i, 0))

    def save_settings(self) -> None:
        s = self.main.settings
        s.setValue("draw/key", self.key_combo.currentText())
        s.setValue("draw/tempo", self.tempo_spin.value())
        s.setValue("draw/bars", self.bars_spin.value())
        s.setValue("draw/method", self.method_combo.currentData())

    # options ----------------------------------------------------------------------------
    @property
    def key(self) -> Key:
        from ..draw.theory import parse_key

        return parse_key(self.key_combo.currentText())

    def _fill_progressions(self) -> None:
        key = self.key
        current = self.prog_combo.currentData()
        self.prog_combo.blockSignals(True)
        self.prog_combo.clear()
        self.prog_combo.addItem("Best fit", None)
        for prog in PROGRESSIONS[key.mode]:
            self.prog_combo.addItem(" – ".join(key.roman(d) for d in prog), prog)
        i = self.prog_combo.findData(current)
        self.prog_combo.setCurrentIndex(max(i, 0))
        self.prog_combo.blockSignals(False)

    def _method_changed(self) -> None:
        rule = self.method_combo.currentData() == "rule"
        for w in (self.chords_label, self.prog_combo, self.rhythm_combo):
            w.setEnabled(rule)

    def _canvas_changed(self) -> None:
        if self.bars_spin.value() != self.canvas.n_steps // 16:
            self.bars_spin.blockSignals(True)
            self.bars_spin.setValue(max(1, self.canvas.n_steps // 16))
            self.bars_spin.blockSignals(False)
        self._update_buttons()

    def _update_buttons(self) -> None:
        has = self.result is not None
        busy = self.job is not None and self.job.running
        self.undo_btn.setEnabled(self.canvas.can_undo)
        self.redo_btn.setEnabled(self.canvas.can_redo)
        self.clear_btn.setEnabled(bool(self.canvas.ink.any()))
        self.generate_btn.setEnabled(bool(self.canvas.ink.any()) and not busy)
        for b in (self.play_btn, self.export_btn, self.identify_btn):
            b.setEnabled(has)
        self.stop_btn.setEnabled(self.player is not None and self.player.is_playing)

    # pictures ---------------------------------------------------------------------------
    def ask_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a picture", str(Path.home()),
            "Pictures (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)")
        if path:
            self.open_image(path)

    def open_image(self, path: str) -> Job:
        """Load a picture in a worker and put it on the canvas (undoable)."""
        bars = self.bars_spin.value()
        lib = self.main.library
        self.status.setText(f"Opening {Path(path).name}…")

        def run(_progress, _cancel):
            from ..draw import image_to_drawing, load_image
            from ..draw.register import library_register

            # the picture goes where the library's music lives (E2–E6 without one)
            return image_to_drawing(load_image(path), bars=bars,
                                    pitch_range=library_register(lib))

        job = Job(run, "open picture")
        job.signals.done.connect(lambda d: (self.canvas.set_drawing(d), self.status.setText(
            f"{Path(path).name}: on the roll ({int(d.mask.sum())} cells). Edit it, or press "
            "Generate.")))
        job.signals.failed.connect(lambda m: self._say(f"Cannot use the picture: {m}"))
        return job.start()

    def dragEnterEvent(self, event) -> None:
        if self._dropped_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        path = self._dropped_image(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.open_image(path)
        else:
            event.ignore()

    @staticmethod
    def _dropped_image(mime) -> str | None:
        urls = [u for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        if len(urls) == 1 and urls[0].toLocalFile().lower().endswith(IMAGE_SUFFIXES):
            return urls[0].toLocalFile()
        return None

    # generating -------------------------------------------------------------------------
    def generate(self) -> Job | None:
        """Make music from the canvas in a worker; the result shows on the right."""
        if self.job is not None and self.job.running:
            return None
        drawing = self.canvas.drawing()
        if drawing.is_empty():
            self._say("Nothing is drawn yet: draw on the left, or open a picture.")
            return None
        method = self.method_combo.currentData()
        lib = self.main.library
        if method == "library" and (lib is None or not lib.stats()["ok"]):
            self._say("The library method needs scores in your library: add some on the "
                      "Library tab, or use the Rule method.")
            return None
        key, tempo = self.key, float(self.tempo_spin.value())
        options = {}
        if method == "rule":
            options = {"progression": self.prog_combo.currentData(),
                       "chords_per_bar": int(self.rhythm_combo.currentData())}
        self.stop()
        self.save_settings()

        def run(_progress, _cancel):
            from ..draw import generate
            from ..draw.metrics import blurred_iou

            g = generate(drawing, method, key, tempo, library=lib, **options)
            return g, blurred_iou(drawing.mask, g.roll())

        self.status.setText("Generating…" if method != "library" else
                            "Generating from your library (the first time loads the model)…")
        self.job = Job(run, "draw")
        self.job.signals.done.connect(lambda r: self._show_result(*r, drawing))
        self.job.signals.failed.connect(lambda m: self._say(f"Cannot generate: {m}"))
        self.job.signals.ended.connect(self._update_buttons)
        self.job.start()
        self._update_buttons()
        return self.job

    def _show_result(self, g, iou: float, drawing) -> None:
        self.result = g
        self.view.set_notes(g.notes, g.n_steps, drawing.mask)
        self.canvas.ghost = None
        text = (f"<b>{len(g)} notes</b> · {g.key} · {g.tempo:g} bpm · "
                f"{g.n_steps // 16} bars ({g.duration:.1f} s) · looks like the drawing: "
                f"{iou:.0%}")
        if g.info.get("progression"):
            text += f" · chords {g.info['progression']}"
        if g.sources:
            parts = []
            for s in g.source_pieces():
                who = f" ({s['composer']})" if s.get("composer") else ""
                bars = ", ".join(str(b) for b in sorted(set(s["bars"])))
                parts.append(f"{s['title']}{who} – bars {bars}")
            text += "<br>Material from: " + "; ".join(parts)
        self.status.setText(text)
        self._update_buttons()

    # playback ---------------------------------------------------------------------------
    def play(self) -> Job | None:
        """Play the result through the SoundFont synth (started in a worker once)."""
        if self.result is None:
            return None
        notes = self.result.seconds()
        if self.player is not None:
            return self._start_playing(notes)

        def run(_progress, _cancel):
            from ..audio.synth import Player

            return Player()

        self.status.setText("Starting the synthesizer…")
        job = Job(run, "synth")
        job.signals.done.connect(lambda p: (setattr(self, "player", p), self._start_playing(notes)))
        job.signals.failed.connect(lambda m: self._say(f"Playback unavailable: {m}. Export the "
                                                       "MIDI file to hear it elsewhere."))
        return job.start()

    def _start_playing(self, notes) -> None:
        try:
            self.player.play(notes, 0.0, on_position=self.position.emit)
        except Exception as exc:  # noqa: BLE001 - AudioUnavailable and device errors
            self._say(f"Playback unavailable: {exc}")
            return
        self._play_timer.start(150)
        self._update_buttons()

    def _on_position(self, seconds: float) -> None:
        if self.result is not None:
            self.view.set_cursor(seconds / self.result.step_seconds)

    def _check_playing(self) -> None:
        if self.player is None or not self.player.is_playing:
            self._play_timer.stop()
            self.view.set_cursor(None)
            self._update_buttons()

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()
        self._play_timer.stop()
        self.view.set_cursor(None)
        self._update_buttons()

    # export and identify ----------------------------------------------------------------
    def ask_export(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export MIDI", str(Path.home() / "drawing.mid"),
                                              "MIDI files (*.mid)")
        if path:
            self.export_midi(path if path.lower().endswith((".mid", ".midi")) else path + ".mid")

    def export_midi(self, path: str) -> Path | None:
        from ..draw import DrawError

        try:
            out = self.result.write_midi(path)
        except DrawError as exc:
            self._say(str(exc))
            return None
        self._say(f"Saved {out}")
        return out

    def send_to_identify(self) -> Job | None:
        """Search the library with the generated piece on the Identify tab."""
        if self.result is None:
            return None
        path = self._temp_dir / "drawing.mid"
        self.result.write_midi(path)
        job = self.main.identify.search_file(str(path))
        self.main.tabs.setCurrentWidget(self.main.identify)
        return job

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    def close_down(self) -> None:
        """Stop playback and forget temporary files (the window is closing)."""
        self.stop()
        if self.player is not None:
            try:
                self.player.close()
            except Exception:  # noqa: BLE001 - closing an audio device must not block exit
                pass
        for f in self._temp_dir.glob("*"):
            try:
                f.unlink()
            except OSError:
                pass
        try:
            os.rmdir(self._temp_dir)
        except OSError:
            pass
