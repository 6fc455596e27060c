"""The main window and the ``midizero-app`` entry point."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QThreadPool, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QTabWidget)

from .. import __version__
from .identify_tab import IdentifyTab
from .library_tab import LibraryTab
from .training_tab import TrainingTab
from .workers import Job, library_problem

APP_NAME = "MIDI-Zero"


def preload() -> None:
    """Import what the background jobs need on the GUI thread, before the event loop runs.

    A worker thread holds the GIL while an extension module initialises (onnxruntime's
    alone takes ~0.1–0.2 s), so importing it there stalls the event loop (measured: 70–460
    ms, benchmarks/stall_bench.py). Imported here they cost ~0.3 s before the window shows,
    and the workers only ever hold the GIL in short steps. torch is not among them: the app
    identifies and indexes through onnxruntime (core/inference.py); only training imports it.
    """
    import importlib

    for name in ("onnxruntime", "hnswlib", "rtmidi", "midizero_app.core.inference",
                 "midizero_app.core.library", "midizero_app.core.parsing",
                 "midizero_app.live.session", "midizero_app.live.midi_input",
                 "midizero_app.core.bundled"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the feature that needs it reports the problem
            pass


def demo_scores() -> Path | None:
    """The bundled demo scores, or None in an installation without them (start empty)."""
    from ..core.bundled import MissingBundledFile, demo_dir

    try:
        return demo_dir() / "scores"
    except MissingBundledFile:
        return None


def model_card_html(model_path) -> str:
    """A few lines of the model card (``model.json`` beside the checkpoint), if there is one."""
    import html
    import json

    try:
        card = json.loads(Path(model_path).with_suffix(".json").read_text())
    except (OSError, TypeError, ValueError):
        return ""
    lines = []
    for key in ("name", "steps", "final_loss", "data_provenance", "device", "torch"):
        if card.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {html.escape(str(card[key]))}")
    return "<br>" + "<br>".join(lines) if lines else ""


class MainWindow(QMainWindow):
    """Tabs Identify · Library · Training over one :class:`Library`.

    Parameters
    ----------
    settings : a QSettings (tests pass an INI file of their own).
    library_dir : overrides the remembered / default library folder.
    first_run_demo : index the demo scores when the library is empty.
    """

    def __init__(self, settings: QSettings | None = None, library_dir: str | None = None,
                 first_run_demo: bool = True):
        super().__init__()
        preload()
        self.settings = settings or QSettings("MIDI-Zero", "midizero-app")
        from ..core.library import default_library

        remembered = self.settings.value("library/dir", "")
        self.library_dir = str(library_dir or remembered or default_library())
        self.first_run_demo = first_run_demo
        self.library = None
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.tabs = QTabWidget()
        self.identify = IdentifyTab(self)
        self.library_tab = LibraryTab(self)
        self.training = TrainingTab(self)
        self.tabs.addTab(self.identify, "Identify")
        self.tabs.addTab(self.library_tab, "Library")
        self.tabs.addTab(self.training, "Training")
        from .draw_tab import DrawTab
        self.draw = DrawTab(self)
        self.tabs.addTab(self.draw, "Draw")
        self.draw.message.connect(self.show_message)
        self.setCentralWidget(self.tabs)
        self.size_label = QLabel("")
        self.model_label = QLabel("")
        self.busy_bar = QProgressBar()
        self.busy_bar.setMaximumWidth(140)
        self.busy_bar.setVisible(False)
        sb = self.statusBar()
        sb.addPermanentWidget(self.busy_bar)
        sb.addPermanentWidget(self.size_label)
        sb.addPermanentWidget(self.model_label)
        sb.addPermanentWidget(self._route_box())
        self.library_tab.message.connect(self.show_message)
        self.identify.message.connect(self.show_message)
        self.library_tab.changed.connect(self.update_status)
        self._menus()
        geom = self.settings.value("window/geometry")
        try:
            ok = bool(geom) and self.restoreGeometry(geom)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            self.resize(1100, 720)
        QThreadPool.globalInstance().setMaxThreadCount(max(4, os.cpu_count() or 2))
        QTimer.singleShot(0, self.open_library)  # after the window shows
        self._ports_timer = QTimer(self)
        self._ports_timer.timeout.connect(self._poll_ports)
        self._ports_timer.start(5000)

    # --- how recordings are searched ---------------------------------------------------
    ROUTE_LABELS = (("transcribe", "Recordings: transcribed"),
                    ("embed", "Recordings: audio embedding"),
                    ("both", "Recordings: both fused"))

    def _route_box(self) -> QComboBox:
        """The audio route setting (``search/audio_route``): how a dropped recording is
        searched (:mod:`midizero_app.audio.routes`). The microphone is always transcribed:
        following the player needs the notes."""
        from ..audio.routes import DEFAULT_ROUTE

        self.route_combo = QComboBox()
        for key, label in self.ROUTE_LABELS:
            self.route_combo.addItem(label, key)
        self.route_combo.setToolTip(
            "How a dropped recording is searched: transcribed to notes, embedded straight "
            "into the library's index by the audio branch, or both fused (the README says "
            "which is best). The microphone is transcribed: following needs the notes.")
        i = self.route_combo.findData(self.settings.value("search/audio_route", DEFAULT_ROUTE))
        self.route_combo.setCurrentIndex(max(0, i))
        self.route_combo.currentIndexChanged.connect(
            lambda _i: self.settings.setValue("search/audio_route", self.audio_route))
        return self.route_combo

    @property
    def audio_route(self) -> str:
        """``"transcribe"``, ``"embed"`` or ``"both"``: the audio route chosen."""
        return self.route_combo.currentData()

    # --- menus ---------------------------------------------------------------------------
    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        a = QAction("Add &folder…", self, shortcut=QKeySequence.Open)
        a.triggered.connect(self.library_tab.ask_folder)
        m.addAction(a)
        a = QAction("Add f&iles…", self)
        a.triggered.connect(self.library_tab.ask_files)
        m.addAction(a)
        m.addSeparator()
        a = QAction("Open library &folder…", self)
        a.triggered.connect(self.ask_library_folder)
        m.addAction(a)
        a = QAction("Open &shared library…", self)
        a.setToolTip("A library on a Milvus server (milvus://HOST:PORT/NAME)")
        a.triggered.connect(self.ask_shared_library)
        m.addAction(a)
        m.addSeparator()
        a = QAction("&Quit", self, shortcut=QKeySequence.Quit)
        a.triggered.connect(self.close)
        m.addAction(a)
        h = self.menuBar().addMenu("&Help")
        a = QAction("&About MIDI-Zero", self)
        a.triggered.connect(self.about)
        h.addAction(a)

    def about(self) -> None:
        import PySide6
        import pyqtgraph

        card = ""
        if self.library is not None:
            st = self.library.stats()
            card = f"<p>Model: {st.get('model_id') or '?'}<br>{st.get('model_path') or ''}"
            card += model_card_html(st.get("model_path")) + "</p>"
        QMessageBox.about(self, "About MIDI-Zero", (
            f"<h3>MIDI-Zero {__version__}</h3><p>Identify which piece of your own score "
            f"library you are playing.</p>{card}<p>Python {sys.version.split()[0]} · "
            f"PySide6 {PySide6.__version__} · pyqtgraph {pyqtgraph.__version__}</p>"))

    # --- library ---------------------------------------------------------------------------
    def open_library(self) -> None:
        from ..core.library import Library
        from ..core.server_library import ServerLibrary, is_server_url

        lib = None
        try:  # a folder, or a shared library on a server (milvus://…, docs/SERVER.md)
            lib = ServerLibrary(self.library_dir) if is_server_url(self.library_dir) \
                else Library(self.library_dir)
            pieces = lib.pieces()  # (a damaged catalogue may open, then fail to read)
        except Exception as exc:  # noqa: BLE001 - one line that says what to do; the app stays up
            if lib is not None:
                lib.close()
            text = library_problem(exc, self.library_dir)
            self.library_tab.cannot_open(text)
            self.identify.status.setText(text)
            self.show_message(text)
            return
        self.library = lib
        self.settings.setValue("library/dir", self.library_dir)
        self.library_tab.refresh()
        self.update_status()
        self.identify.refresh_ports()
        if not pieces and self.first_run_demo and demo_scores() is not None:
            self.show_message("First run: indexing the demo library (public-domain pieces). "
                              "Add your own scores by dropping files or folders on the window.")

            def index_demo():
                job = self.library_tab.add_paths([demo_scores()])
                if job is not None:
                    job.signals.ended.connect(self.identify.start_session)
            # after the window has painted the empty library: indexing at the same moment
            # competes with that paint (a ~100 ms stall, benchmarks/stall_bench.py first-run)
            QTimer.singleShot(150, index_demo)
        elif self.identify.session is None and not self.identify.starting:
            self.identify.start_session()  # (update_status may have started it already)

    def ask_library_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Open a library folder (or an empty "
                                                  "folder for a new library)")
        if folder:
            self.switch_library(folder)

    def ask_shared_library(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        url, ok = QInputDialog.getText(
            self, "Open a shared library",
            "Address of the shared library (milvus://HOST:PORT/NAME; see docs/SERVER.md):",
            text=self.library_dir if self.library_dir.startswith("milvus:") else "milvus://")
        if ok and url.strip():
            self.switch_library(url.strip())

    def switch_library(self, where: str) -> bool:
        """Open another library — a folder or a ``milvus://`` URL — in place of this one
        (the live search starts again on it). False, with the one-line reason shown, when
        it cannot be opened: the app then has no library until another is chosen."""
        if self.library_tab.busy:
            self.show_message("The library is busy; wait for the current job or cancel it.")
            return False
        self.close_library()
        self.library_dir = str(where)
        self.open_library()
        return self.library is not None

    def close_library(self) -> None:
        """Let go of the library (to check and repair it): the live search and the
        microphone stop; :meth:`open_library` opens it again."""
        self.identify.drop_session()
        if self.library is not None:
            self.library.close()
            self.library = None

    def update_status(self) -> None:
        if self.library is None:
            return
        st = self.library.stats()
        self.size_label.setText(f"Library: {st['ok']} pieces"
                                + (f" ({st['failed']} failed)" if st["failed"] else ""))
        self.model_label.setText(f"Model: {(st.get('model_id') or 'default')[:12]}")
        if self.identify.session is None and st["ok"] and not self.library_tab.busy \
                and not self.identify.starting:
            self.identify.start_session()

    def use_model(self, path) -> Job | None:
        lib = self.library
        if lib is None:
            return None
        self.show_message(f"Re-embedding the library with {path}…")
        self.busy_bar.setVisible(True)
        self.busy_bar.setRange(0, 0)
        job = Job(lambda progress, cancel: lib.set_model(
            path, progress=lambda d, t, m: progress((d, t)), cancel=cancel), "set model")
        job.signals.progress.connect(lambda p: (self.busy_bar.setRange(0, max(1, p[1])),
                                                self.busy_bar.setValue(p[0])))
        job.signals.done.connect(lambda _r: self.show_message("The new model is active."))
        job.signals.failed.connect(lambda m: self.show_message(f"Cannot use the model: {m}"))
        job.signals.ended.connect(lambda: (self.busy_bar.setVisible(False), self.update_status(),
                                           self.identify.start_session()))
        return job.start()

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)

    def _poll_ports(self) -> None:
        if self.identify.isVisible() and self.identify.port_combo.isEnabled() \
                and not self.identify.port_combo.view().isVisible():
            self.identify.refresh_ports()

    # --- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.drop_paths(paths)

    def drop_paths(self, paths: list[str]):
        """A drop on the Identify tab of one file searches it; anything else is indexed."""
        if self.tabs.currentWidget() is self.identify and len(paths) == 1 \
                and Path(paths[0]).is_file():
            return self.identify.search_file(paths[0])
        if self.library_tab.read_only:
            self.show_message("This is a shared library: it changes when its librarian pushes "
                              "(midizero library push); drop a file on the Identify tab to "
                              "search it.")
            return None
        self.tabs.setCurrentWidget(self.library_tab)
        return self.library_tab.add_paths(paths)

    # --- closing ---------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.sync()
        for job in (self.library_tab.job, self.training.job):
            if job is not None and job.running:
                job.cancel.set()
        self.identify.stop()
        self.draw.close_down()
        QThreadPool.globalInstance().waitForDone(10000)
        if self.library is not None:
            self.library.close()
            self.library = None
        super().closeEvent(event)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import multiprocessing

    multiprocessing.freeze_support()  # the parse workers in a frozen (PyInstaller) build

    parser = argparse.ArgumentParser(prog="midizero-app", description="MIDI-Zero desktop app")
    parser.add_argument("--library", help="library folder, or a shared library's "
                        "milvus://HOST:PORT/NAME (default: the remembered one)")
    parser.add_argument("--no-demo", action="store_true",
                        help="do not index the demo scores into an empty library")
    parser.add_argument("--startup-probe", action="store_true",
                        help="(benchmarks) print start-up marks and quit once ready to identify")
    parser.add_argument("--smoke-test", metavar="QUERY.mid",
                        help="(packaging) replay QUERY through the live path once ready, print "
                             "the result, exit 0 if a piece was identified")
    parser.add_argument("--probe-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    args, qt_args = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("MIDI-Zero")
    app.setApplicationVersion(__version__)
    win = MainWindow(library_dir=args.library, first_run_demo=not args.no_demo)
    from .probe import install

    probe = install(win, app, args)  # noqa: F841 - kept alive until exec returns
    win.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
