"""Start-up time and size of the desktop app.

    python -m benchmarks.startup_bench [--runs 5] [--app venv] [--app dist/MIDI-Zero/MIDI-Zero] ...

For each app (``venv`` = ``midizero-app`` from this Python's venv; a path = a built bundle's
executable) it starts a new process offscreen with ``--startup-probe`` and times, from just
before the process is spawned:

* **window**: the main window's first paint (target ≤ 2 s);
* **ready**: the live search is ready to identify — model and library loaded (target ≤ 5 s).

Run 1 is a user's first start (fresh settings, empty library: it indexes the demo scores,
then loads); runs 2..N start on the now-indexed demo library (every later start). Each app
gets its own temporary home, so the user's settings and library are untouched. Page cache:
warm (files read by earlier runs), as on a user's second start.

It also prints the size of each bundle folder found in ``dist/`` (target ≤ 1.0 GB).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW_TARGET_S, READY_TARGET_S, SIZE_TARGET_GB = 2.0, 5.0, 1.0


def app_command(app: str) -> list[str]:
    if app == "venv":
        script = Path(sys.executable).with_name("midizero-app")
        return [str(script)] if script.is_file() else [sys.executable, "-m", "midizero_app"]
    return [str(Path(app).resolve())]


def start_once(app: str, home: Path, timeout: float = 300.0) -> dict:
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               QT_QPA_PLATFORM="offscreen", MIDIZERO_PROGRESS="0")
    for var in ("MIDIZERO_LIBRARY", "MIDIZERO_MODEL", "MIDIZERO_RUNTIME"):
        env.pop(var, None)
    t0 = time.time()
    proc = subprocess.run([*app_command(app), "--startup-probe", "--probe-timeout", str(timeout)],
                          env=env, cwd=str(home), capture_output=True, text=True,
                          timeout=timeout + 60)
    marks = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "MIDIZERO-MARK":
            try:
                marks[parts[1]] = float(parts[2]) - t0
            except ValueError:
                pass
    return {"window": marks.get("window", marks.get("shown")), "ready": marks.get("ready"),
            "exit": proc.returncode, "wall": time.time() - t0,
            "err": "" if proc.returncode == 0 else proc.stderr[-600:]}


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", action="append",
                    help="'venv' or a built executable (default: venv and every dist/ bundle)")
    ap.add_argument("--runs", type=int, default=5, help="starts per app (run 1 = first run)")
    args = ap.parse_args(argv)
    bundles = [p / p.name for p in sorted((ROOT / "dist").glob("MIDI-Zero*"))
               if (p / p.name).is_file()]
    apps = args.app or ["venv", *map(str, bundles)]

    print(f"Start-up ({os.cpu_count()} CPUs, offscreen, warm page cache); targets: window ≤ "
          f"{WINDOW_TARGET_S} s, ready to identify ≤ {READY_TARGET_S} s")
    print(f"{'app':<34} {'first run: window / ready':>26}   {'later starts: window / ready (median, max)':>44}")
    ok = True
    for app in apps:
        home = Path(tempfile.mkdtemp(prefix="midizero-startup-"))
        try:
            runs = [start_once(app, home) for _ in range(max(2, args.runs))]
        finally:
            shutil.rmtree(home, ignore_errors=True)
        bad = [r for r in runs if r["exit"] != 0 or r["window"] is None or r["ready"] is None]
        name = app if app == "venv" else str(Path(app).relative_to(ROOT) if Path(app).is_absolute()
                                             and ROOT in Path(app).parents else app)
        if bad:
            print(f"{name:<34} FAILED: exit {bad[0]['exit']} {bad[0]['err']}")
            ok = False
            continue
        first, later = runs[0], runs[1:]
        w = [r["window"] for r in later]
        rd = [r["ready"] for r in later]
        print(f"{name:<34} {first['window']:>10.2f} s / {first['ready']:>6.2f} s   "
              f"{statistics.median(w):>12.2f} s, {max(w):.2f} s / "
              f"{statistics.median(rd):.2f} s, {max(rd):.2f} s")
        ok &= max(w) <= WINDOW_TARGET_S and max(rd) <= READY_TARGET_S
    for b in bundles:
        size = folder_size(b.parent)
        print(f"size of {b.parent.relative_to(ROOT)}/: {size / 1e9:.3f} GB ({size / 2**20:.0f} MiB)"
              f" — target ≤ {SIZE_TARGET_GB} GB: {'met' if size <= SIZE_TARGET_GB * 1e9 else 'NOT met'}")
    print("start-up targets " + ("met" if ok else "NOT met") + " for later starts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
