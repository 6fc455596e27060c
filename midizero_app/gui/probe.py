"""Start-up marks and the built-in smoke test of the desktop app.

``midizero-app --startup-probe`` prints, on stdout, ``MIDIZERO-MARK <name> <unix time>`` when
the window has painted (``shown``) and when the live search is ready to identify (``ready``:
model and library loaded), then quits — :mod:`benchmarks.startup_bench` times a new process
against these marks.

``midizero-app --smoke-test QUERY.mid`` waits until the app is ready (on a fresh library it
first indexes the demo scores, as on a user's first run), replays the file's notes in real
time through the same live path a MIDI keyboard feeds, ends the query, prints
``MIDIZERO-SMOKE {json}`` (the final update: the §4.2 result plus timings) and exits 0 when a
piece was identified (1: nothing identified, 3: timed out). ``packaging/smoke_test.py`` runs
it against the built bundle. With ``MIDIZERO_SMOKE_TRAIN=DIR`` it instead runs a 20-step
training from the Training tab into DIR (the tab's real path: a spawned process) and exits 0
when the checkpoint and its ONNX export were written.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from PySide6.QtCore import QEvent, QObject, QTimer, Signal

MARK = "MIDIZERO-MARK"
SMOKE = "MIDIZERO-SMOKE"


def _say(*parts) -> None:
    print(*parts, flush=True)


class StartupProbe(QObject):
    """Watches a :class:`~midizero_app.gui.app.MainWindow` for its first paint and for the
    live session becoming ready; optionally runs the smoke test."""

    replayed = Signal()

    def __init__(self, win, app, quit_when_ready: bool = False, smoke_query: str | None = None,
                 timeout_s: float = 300.0, smoke_train: str | None = None):
        super().__init__(win)
        self.win, self.app = win, app
        self.quit_when_ready = quit_when_ready
        self.smoke_query = smoke_query
        self.smoke_train = smoke_train
        self.t_shown = self.t_ready = None
        self.replay_done = False
        self.final: dict | None = None
        self.error: str | None = None
        win.installEventFilter(self)
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._check_ready)
        self._poll.start(20)
        self.replayed.connect(self._after_replay)
        win.identify.updated.connect(self._on_update)
        QTimer.singleShot(int(timeout_s * 1000), self._timeout)

    # --- marks --------------------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:
        if self.t_shown is None and obj is self.win and event.type() == QEvent.Paint:
            self.t_shown = time.time()
            QTimer.singleShot(0, lambda: _say(MARK, "shown", f"{self.t_shown:.4f}"))
        return False

    def _check_ready(self) -> None:
        if self.t_ready is not None or self.win.identify.session is None:
            return
        self.t_ready = time.time()
        self._poll.stop()
        _say(MARK, "ready", f"{self.t_ready:.4f}")
        if self.smoke_query:
            threading.Thread(target=self._replay, name="smoke-replay", daemon=True).start()
        elif self.smoke_train:
            self._train()
        elif self.quit_when_ready:
            self._finish(0)

    # --- the training smoke test (the Training tab's own path: a spawned process) --------
    def _train(self) -> None:
        tr = self.win.training
        tr.mode_buttons["C"].setChecked(True)
        tr.steps.setValue(20)
        tr.batch.setValue(16)
        tr.out_dir.setText(self.smoke_train)
        job = tr.start()
        if job is None:
            _say(SMOKE, json.dumps({"error": "training did not start", "info": tr.info.text()}))
            self._finish(1)
            return

        def ended():
            path = tr.model_path
            ok = path is not None and path.is_file() and path.with_suffix(".onnx").is_file()
            _say(SMOKE, json.dumps({"train": str(path) if path else None, "ok": ok,
                                    "losses": len(tr.losses), "info": tr.info.text()}))
            self._finish(0 if ok else 1)
        job.signals.ended.connect(ended)

    # --- the smoke test -----------------------------------------------------------------
    def _replay(self) -> None:  # a worker thread, as a MIDI input thread would be
        try:
            from ..live.replay import load_performance, replay

            onsets, pitches = load_performance(self.smoke_query)
            ident = self.win.identify  # (its session, looked up per note, as the GUI does)
            replay(onsets, pitches, lambda t, p: ident.session.feed_note(t, p))
            time.sleep(0.2)  # let the last frame close (τ) before ending the query
        except Exception as exc:  # noqa: BLE001 - reported, the test fails cleanly
            self.error = f"replay failed: {exc}"
        self.replayed.emit()

    def _after_replay(self) -> None:
        if self.error:
            _say(SMOKE, json.dumps({"error": self.error}))
            self._finish(1)
            return
        self.replay_done = True
        self.win.identify.reset()  # ends the query: its final update follows

    def _on_update(self, update: dict) -> None:
        if not (self.replay_done and update.get("final")):
            return
        res = update.get("results") or []
        out = {"query": self.smoke_query, "ready_s": self.t_ready, "frames": update.get("frames"),
               "not_in_library": update.get("not_in_library"),
               "title": res[0].get("title") if res else None,
               "confidence": res[0].get("confidence") if res else None,
               "results": [r.get("title") for r in res[:3]]}
        _say(SMOKE, json.dumps(out))
        self._finish(0 if res and not update.get("not_in_library") else 1)

    def _timeout(self) -> None:
        _say(SMOKE if self.smoke_query else MARK,
             json.dumps({"error": "timed out", "shown": self.t_shown, "ready": self.t_ready}))
        self._finish(3)

    def _finish(self, code: int) -> None:
        self.win.close()
        self.app.exit(code)


def install(win, app, args) -> StartupProbe | None:
    """Hook the probe onto a window from ``midizero-app``'s parsed arguments."""
    smoke_train = os.environ.get("MIDIZERO_SMOKE_TRAIN")  # an output folder: train there
    if not (args.startup_probe or args.smoke_test or smoke_train):
        return None
    if args.smoke_test:
        from pathlib import Path

        if not Path(args.smoke_test).is_file():
            _say(SMOKE, json.dumps({"error": f"no such file: {args.smoke_test}"}))
            sys.exit(2)
    return StartupProbe(win, app, quit_when_ready=args.startup_probe,
                        smoke_query=args.smoke_test, timeout_s=args.probe_timeout,
                        smoke_train=smoke_train)
