"""Screenshots of the real app for the README: ``docs/screenshots/{identify,library,training}.png``.

    QT_QPA_PLATFORM=offscreen python packaging/screenshots.py [--out docs/screenshots]

Runs the app offscreen on a fresh demo library (temporary settings and library), plays a
demo performance into the live session in real time and selects the top result (Identify:
the incoming pitch matrix, the ranked results and the query beside the matched passage),
shows the indexed demo library (Library), and runs a short training (Training: loss curve
and progress), grabbing the window with ``QWidget.grab()`` after each.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = "played - mozart.mid"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--width", type=int, default=1180)
    ap.add_argument("--height", type=int, default=760)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="midizero-shots-"))
    os.environ.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
                      XDG_DATA_HOME=str(home / "data"))

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("MIDI-Zero")
    from midizero_app.core.bundled import demo_dir
    from midizero_app.gui.app import MainWindow
    from midizero_app.live.replay import load_performance, replay

    performance = load_performance(demo_dir() / "queries" / QUERY)
    settings = QSettings(str(home / "settings.ini"), QSettings.IniFormat)
    win = MainWindow(settings=settings, library_dir=str(home / "library"), first_run_demo=True)
    win.resize(args.width, args.height)
    win.show()

    def wait(cond, timeout=600.0):
        deadline = time.monotonic() + timeout
        while not cond():
            app.processEvents()
            time.sleep(0.01)
            if time.monotonic() > deadline:
                raise SystemExit("timed out")

    def shot(name: str) -> None:
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        path = out / f"{name}.png"
        assert win.grab().save(str(path)), path
        print(f"{path.relative_to(ROOT) if ROOT in path.parents else path}: "
              f"{path.stat().st_size // 1024} KB")

    wait(lambda: win.identify.session is not None)
    # Identify: a played performance, its final ranking, the top result selected
    done = threading.Event()

    def play():
        replay(*performance, lambda t, p: win.identify.session.feed_note(t, p))
        done.set()

    n0 = win.identify.updates
    threading.Thread(target=play, daemon=True).start()
    wait(done.is_set)
    wait(lambda: win.identify.updates > n0 and (win.identify.last_update or {}).get("results"))
    time.sleep(0.3)
    app.processEvents()
    win.identify.results.selectRow(0)
    win.tabs.setCurrentWidget(win.identify)
    shot("identify")

    # Library: the demo library as indexed on the first start
    win.tabs.setCurrentWidget(win.library_tab)
    shot("library")

    # Training: a short run of mode P, with its loss curve and progress
    tr = win.training
    win.tabs.setCurrentWidget(tr)
    tr.mode_buttons["P"].setChecked(True)
    tr.steps.setValue(300)
    tr.batch.setValue(32)
    tr.out_dir.setText(str(home / "models" / "my-model"))
    job = tr.start()
    wait(lambda: job.settled, timeout=900)
    shot("training")
    win.tabs.setCurrentWidget(win.identify)
    win.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
