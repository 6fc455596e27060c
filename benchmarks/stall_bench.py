"""Event-loop stalls of the desktop app (the target: never more than 50 ms).

    python -m benchmarks.stall_bench [--scenario start,first-run,index,train,live] [--runtime auto|torch]

A ``QTimer`` on the GUI thread asks to tick every 5 ms (``Qt.PreciseTimer``); each scenario
records the gaps between ticks while the real app (``MainWindow``, offscreen, real workers,
real library and model) does one thing, and reports the largest gap. A gap is the time the
event loop could not run: a click, a repaint or a note on the on-screen piano would wait that
long. Each scenario runs in a fresh process (imports are part of what is measured), with its
own settings and library in a temporary folder:

* ``idle``      — the ready app left alone for 8 s: the noise floor of a loaded machine
                  (other processes take the CPUs; no thread of the app is doing anything).
* ``start``     — the window shows; the model and an already-indexed demo library load.
* ``first-run`` — the window shows on an empty library: the demo scores are indexed, then
                  the model and index load (the user's very first start).
* ``index``     — a folder of 60 MIDI pieces dropped on the Library tab is indexed.
* ``train``     — a tiny training run on the Training tab (mode C, 30 steps), from the
                  click to the written checkpoint (the tab trains in a spawned process).
* ``live``      — a demo performance (11 s, 142 notes) played into the live session in real
                  time: frames, live searches, results table and pitch-matrix updates.
* ``follow``    — the demo's Maple Leaf Rag (100 s, 1,489 notes, several pages) played
                  through at its written tempo in real time: it is identified, engraved in
                  the score view and followed, the cursor moving and pages turning
                  (half-page turns).

``--runtime torch`` makes the app infer through torch instead of onnxruntime, to
compare the two runtimes. ``STALL_DIAG=1`` (with ``--json``) adds the threads' stacks
sampled during each gap over 30 ms — where the time went.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCENARIOS = ("idle", "start", "first-run", "index", "train", "live", "follow")
TICK_MS = 5
LIMIT_MS = 50.0
LIVE_QUERY = "played - maple leaf rag, middle.mid"
FOLLOW_SCORE = "Joplin - Maple Leaf Rag.mxl"


# --- the child: one scenario in this process ------------------------------------------------
def _child(scenario: str, home: Path) -> dict:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from midizero_app.gui.app import MainWindow

    gaps: list[tuple[float, float, str]] = []  # (gap s, at s, phase)
    busy: dict[int, tuple] = {}  # gap index → (process, GUI thread) CPU seconds / gap
    state = {"phase": "setup", "last": None, "t0": None, "result": {}}

    def tick():
        now, cpu, mcpu = time.perf_counter(), time.process_time(), time.thread_time()
        if state["last"] is not None and state["phase"] not in ("setup", "done"):
            if state.get("first_paint") is None:  # the window's first layout and paint
                state["first_paint"] = now - state["last"]
            else:
                gap = now - state["last"]
                gaps.append((gap, now - state["t0"], state["phase"]))
                if gap > 0.02:  # share of the gap the process / the GUI thread ran on a CPU
                    busy[len(gaps) - 1] = ((cpu - state["cpu"]) / gap,
                                           (mcpu - state["mcpu"]) / gap)
        state["last"], state["cpu"], state["mcpu"] = now, cpu, mcpu

    if os.environ.get("STALL_DIAG"):  # where the time goes: stacks during long gaps
        import traceback

        main_id = threading.get_ident()
        diag = state["result"].setdefault("diag", [])

        def watch():
            while state["phase"] != "done":
                time.sleep(0.01)
                last = state["last"]
                if last is None or time.perf_counter() - last < 0.03 or len(diag) > 40:
                    continue
                stacks = {}
                for tid, fr in sys._current_frames().items():
                    name = "main" if tid == main_id else next(
                        (t.name for t in threading.enumerate() if t.ident == tid), str(tid))
                    st = traceback.extract_stack(fr)[-14:]
                    stacks[name] = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}"
                                              for f in reversed(st))
                diag.append({"age_ms": round((time.perf_counter() - last) * 1000),
                             "phase": state["phase"], "stacks": stacks})
        threading.Thread(target=watch, daemon=True).start()

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.timeout.connect(tick)

    def measure(phase: str):
        state["phase"] = phase
        state["t0"] = state["t0"] or time.perf_counter()
        state["last"] = time.perf_counter()
        if not timer.isActive():
            timer.start(TICK_MS)

    settings = QSettings(str(home / "settings.ini"), QSettings.IniFormat)
    lib_dir = home / ("empty-lib" if scenario == "first-run" else "lib")
    win = MainWindow(settings=settings, library_dir=str(lib_dir),
                     first_run_demo=(scenario == "first-run"))

    def when(cond, then, timeout_s=600.0):
        deadline = time.perf_counter() + timeout_s

        def check():
            if cond():
                then()
            elif time.perf_counter() > deadline:
                state["result"]["error"] = f"timed out in phase {state['phase']}"
                finish()
            else:
                QTimer.singleShot(20, check)
        QTimer.singleShot(20, check)

    def finish():
        state["phase"] = "done"
        timer.stop()
        win.close()
        app.quit()

    def ready():
        return win.identify.session is not None and not win.library_tab.busy

    def settle_then(then, s=0.5):
        QTimer.singleShot(int(s * 1000), then)

    # scenario steps -----------------------------------------------------------------------
    def after_ready():
        state["result"]["ready_s"] = round(time.perf_counter() - t_show, 2)
        if scenario in ("start", "first-run"):
            settle_then(finish, 1.0)
        elif scenario == "idle":  # nothing to do: the machine's own scheduling noise
            state["phase"] = "idle"
            settle_then(finish, 8.0)
        elif scenario == "index":
            folder = home / "drop"
            measure("index")
            t = time.perf_counter()
            job = win.library_tab.add_paths([str(folder)])
            when(lambda: job.settled, lambda: (state["result"].update(
                work_s=round(time.perf_counter() - t, 2),
                pieces=win.library.stats()["ok"]), settle_then(finish)))
        elif scenario == "train":
            tr = win.training
            win.tabs.setCurrentWidget(tr)
            tr.mode_buttons["C"].setChecked(True)
            tr.steps.setValue(30)
            tr.batch.setValue(32)
            tr.out_dir.setText(str(home / "model"))
            measure("train")
            t = time.perf_counter()
            job = tr.start()
            when(lambda: job.settled, lambda: (state["result"].update(
                work_s=round(time.perf_counter() - t, 2), trained=tr.model_path is not None,
                info=tr.info.text()[:120]), settle_then(finish)))
        elif scenario == "live":
            from midizero_app.live.replay import replay

            onsets, pitches = performance
            measure("live")
            n0 = win.identify.updates
            done = threading.Event()
            t = time.perf_counter()

            def play():
                replay(onsets, pitches, win.identify.session.feed_note)
                time.sleep(0.3)
                done.set()
            threading.Thread(target=play, daemon=True).start()

            def end():
                res = (win.identify.last_update or {}).get("results") or []
                state["result"].update(work_s=round(time.perf_counter() - t, 2),
                                       updates=win.identify.updates - n0,
                                       top=res[0].get("title") if res else None)
                finish()
            when(done.is_set, lambda: settle_then(end, 0.3))
        elif scenario == "follow":
            from midizero_app.live.replay import replay

            tab = win.identify
            win.tabs.setCurrentWidget(tab)
            tab.score.set_mode("half")
            onsets, pitches = performance
            measure("follow")
            done = threading.Event()
            pages, measures = set(), set()
            t = time.perf_counter()

            def play():
                session = tab.session
                replay(onsets, pitches, lambda tt, p: session.feed_note(tt, p), session.clock)
                time.sleep(0.3)
                done.set()
            threading.Thread(target=play, daemon=True).start()

            def watch_score():  # what the user sees: pages in view, the cursor's measure
                if tab.score.drawn is not None:
                    measures.add(tab.score.drawn.number)
                    pages.add(tab.score.page_in_view())
                if not done.is_set():
                    QTimer.singleShot(50, watch_score)
            watch_score()

            def end():
                state["result"].update(work_s=round(time.perf_counter() - t, 2),
                                       followed=(tab.last_follow or {}).get("piece"),
                                       kind=tab.score.kind, pages_seen=len(pages),
                                       pages=getattr(tab.score.rendering, "pages", None),
                                       measures_seen=len(measures))
                finish()
            when(done.is_set, lambda: settle_then(end, 0.3))

    if scenario != "first-run":
        _prepare_library(lib_dir)
    if scenario == "index":  # written before the clock starts
        _write_pieces(home / "drop", 60)
    if scenario == "live":  # parsed before the clock starts (a worker process)
        from midizero_app.core.bundled import demo_dir
        from midizero_app.live.replay import load_performance

        performance = load_performance(demo_dir() / "queries" / LIVE_QUERY)
    if scenario == "follow":
        from midizero_app.core.bundled import demo_dir
        from midizero_app.live.replay import load_performance

        performance = load_performance(demo_dir() / "scores" / FOLLOW_SCORE)
    win.show()
    t_show = time.perf_counter()
    measure("start")
    when(ready, after_ready)
    app.exec()
    gl = sorted(gaps, reverse=True)
    phases = {}
    for g, at, ph in gaps:
        phases.setdefault(ph, []).append(g)
    out = {"scenario": scenario, "ticks": len(gaps),
           "first_paint_ms": round((state.get("first_paint") or 0) * 1000, 1),
           "max_gap_ms": round(gl[0][0] * 1000, 1) if gl else None,
           "max_gap_at_s": round(gl[0][1], 2) if gl else None,
           "max_gap_phase": gl[0][2] if gl else None,
           "over_50ms": sum(1 for g in gaps if g[0] * 1000 > LIMIT_MS),
           "p99_gap_ms": round(sorted(g[0] for g in gaps)[int(0.99 * (len(gaps) - 1))] * 1000, 1)
           if gaps else None,
           "phase_max_ms": {ph: round(max(v) * 1000, 1) for ph, v in phases.items()},
           "phase_stats": {ph: (round(sorted(v)[int(0.99 * (len(v) - 1))] * 1000, 1),
                                sum(1 for g in v if g * 1000 > LIMIT_MS), len(v))
                           for ph, v in phases.items()},
           "top5_ms": [round(g * 1000, 1) for g, _a, _p in gl[:5]],
           "top5_cpu": [[round(c, 2) for c in busy.get(gaps.index(x), (0, 0))]
                        for x in gl[:5]],
           "torch_imported": "torch" in sys.modules,
           "heavy_modules": [m for m in ("torch", "partitura", "music21", "scipy", "onnx",
                                         "pretty_midi", "mido", "sounddevice", "tinysoundfont",
                                         "soundfile", "soxr", "onnxruntime", "hnswlib")
                             if m in sys.modules],
           "runtime": getattr(win.library and win.library._embedder, "runtime", None)
           if win.library is not None else None,
           **state["result"]}
    return out


def _prepare_library(lib_dir: Path) -> None:
    """Index the demo scores into ``lib_dir`` in a separate process (not measured)."""
    if (lib_dir / "library.sqlite").exists():
        return
    code = ("import sys; from midizero_app.cli import main; "
            "sys.exit(main(['index', sys.argv[1], '--library', sys.argv[2]]))")
    from midizero_app.core.bundled import demo_dir

    subprocess.run([sys.executable, "-c", code, str(demo_dir() / "scores"), str(lib_dir)],
                   check=True, capture_output=True, cwd=str(ROOT))


def _write_pieces(folder: Path, n: int) -> None:
    """``n`` distinct music-like MIDI pieces (seeded random walks over chords)."""
    import numpy as np
    import pretty_midi

    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n):
        rng = np.random.default_rng(1000 + s)
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        mel = 60
        for i in range(240):
            t = i * 0.25
            mel = int(np.clip(mel + rng.choice([-4, -2, -1, 1, 2, 3, 5]), 50, 84))
            inst.notes.append(pretty_midi.Note(80, mel, t, t + 0.25))
            if i % 2 == 0:
                root = 36 + int(rng.integers(0, 12))
                for iv in ([0, 7], [0, 4, 7], [0, 3, 7])[int(rng.integers(3))]:
                    inst.notes.append(pretty_midi.Note(70, root + iv, t, t + 0.5))
        pm.instruments.append(inst)
        pm.write(str(folder / f"piece_{s:03d}.mid"))


# --- the parent: run each scenario in a fresh process ---------------------------------------
def run_scenario(scenario: str, runtime: str = "auto", timeout: float = 900.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="midizero-stall-") as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MIDIZERO_PROGRESS="0",
                   HOME=tmp, XDG_CONFIG_HOME=f"{tmp}/config", XDG_DATA_HOME=f"{tmp}/data")
        if runtime != "auto":
            env["MIDIZERO_RUNTIME"] = runtime
        proc = subprocess.run([sys.executable, "-m", "benchmarks.stall_bench", "--child",
                               scenario, "--home", tmp],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=str(ROOT))
    for line in proc.stdout.splitlines():
        if line.startswith("STALL "):
            return json.loads(line[6:])
    return {"scenario": scenario, "error": f"exit {proc.returncode}: {proc.stderr[-800:]}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=",".join(SCENARIOS))
    ap.add_argument("--runtime", default="auto", choices=["auto", "torch"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("STALL " + json.dumps(_child(args.child, Path(args.home))), flush=True)
        return 0
    rows = [run_scenario(s.strip(), args.runtime) for s in args.scenario.split(",") if s.strip()]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"Event-loop stalls (QTimer every {TICK_MS} ms on the GUI thread; limit {LIMIT_MS:.0f} ms), "
          f"runtime={args.runtime}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("  'during' = the scenario's own work; 'start-up' = from the first paint until the "
          "model and library are loaded (every scenario starts the app)")
    print(f"{'scenario':<10} {'during: max':>11} {'p99':>7} {'>50ms':>6} {'ticks':>6} "
          f"{'start-up max':>12} {'work':>7} {'ready':>6}  torch  top 5 gaps (ms) [process, GUI-thread CPU share]")
    worst = 0.0
    for r in rows:
        if r.get("error"):
            print(f"{r['scenario']:<10} ERROR {r['error']}")
            continue
        own = "start" if r["scenario"] in ("start", "first-run") else r["scenario"]
        pm = r["phase_max_ms"]
        during = pm.get(own, 0.0)
        worst = max(worst, during)
        p99, over, ticks = r["phase_stats"].get(own, (0, 0, 0))
        print(f"{r['scenario']:<10} {during:>9.1f}ms {p99:>5.1f}ms {over:>6} {ticks:>6} "
              f"{pm.get('start', 0):>10.1f}ms {r.get('work_s', '-'):>6}s "
              f"{r.get('ready_s', '-'):>5}s  {'yes' if r['torch_imported'] else 'no ':<5}  "
              + " ".join(f"{g:.0f}{c}" for g, c in zip(r["top5_ms"], r["top5_cpu"]))
              + (f"  top={r['top']!r} updates={r['updates']}" if "top" in r else "")
              + (f"  followed={Path(r['followed'] or '-').name!r} ({r['kind']}), "
                 f"{r['measures_seen']} measures, {r['pages_seen']} of {r['pages']} pages"
                 if "followed" in r else ""))
    startup = max((r["phase_max_ms"].get("start", 0) for r in rows if not r.get("error")),
                  default=0.0)
    print(f"worst stall during the work (indexing, training, live search, loading): {worst:.1f} ms"
          f" — {'within' if worst <= LIMIT_MS else 'OVER'} the {LIMIT_MS:.0f} ms target; "
          f"worst at start-up: {startup:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
